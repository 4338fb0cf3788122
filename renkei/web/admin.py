"""Staff administration (role 管理) and the audit log viewer (role 監査), for any node.

An administrator creates accounts (with a generated initial password, shown once, that
the staff member must change at first sign-in, where they also enrol their TOTP app),
lifts lockouts, ends sessions and orders a TOTP re-enrolment. An administrator cannot
read the audit log; an auditor can read it and change nothing (separation of duties:
`roles.check_separation` keeps the two roles apart). Every action and every refusal
is audited.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request
from sqlalchemy import select
from starlette.responses import Response

from renkei.core import auth, staff_admin
from renkei.core.audit import AuditEvent
from renkei.core.errors import Problem
from renkei.core.roles import ADMIN, PermissionDenied, may_read_audit
from renkei.web.pages import redirect, render
from renkei.web.site import (
    Actor,
    Form,
    Staff,
    Viewer,
    audit,
    clean_text,
    require_role,
    site_of,
    terminal_of,
)

AUDIT_PAGE_SIZE: Final = 100
DONE: Final = {
    "unlock": "ロックを解除しました。",
    "revoke": "ログイン中のセッションをすべて終了しました。",
    "totp": "ワンタイムパスワードを再登録にしました。次回ログイン時に登録します。",
}

router = APIRouter()


def _staff_page(
    request: Request,
    staff: Staff,
    *,
    status: int = 200,
    message: str | None = None,
    error: str | None = None,
    created: dict[str, Any] | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    site = site_of(request)
    with site.sessions() as s:
        members = staff_admin.list_staff(s, site.tables, staff.principal, now=site.clock())
    return render(
        request,
        "admin/staff.html",
        {
            "staff": staff,
            "members": members,
            "message": message,
            "error": error,
            "created": created,
            "form": form or {},
        },
        status=status,
    )


@router.get("/admin/staff")
def staff_list(request: Request, staff: Viewer, done: str = "") -> Response:
    require_role(request, staff, ADMIN, "staff.list")
    return _staff_page(request, staff, message=DONE.get(done))


@router.post("/admin/staff")
def staff_create(request: Request, staff: Actor, form: Form) -> Response:
    require_role(request, staff, ADMIN, "staff.create")
    site = site_of(request)
    staff_id = form.get("staff_id", "").strip()
    roles = [line.strip() for line in form.get("roles", "").splitlines() if line.strip()]
    policy = site.policy()
    password = staff_admin.generate_password(staff_id, policy)
    try:
        with site.sessions() as s:
            auth.create_staff(
                s,
                site.tables,
                site.cipher(),
                staff_id,
                form.get("name", ""),
                password,
                roles,
                policy=policy,
                now=site.clock(),
            )  # the provisioning URI is not shown here: the staff member enrols at sign-in
            site.record(
                s,
                AuditEvent(
                    actor=staff.staff_id,
                    terminal=terminal_of(request),
                    action="staff.create",
                    outcome="ok",
                    ref=staff_id,
                    detail={"roles": sorted(roles)},
                ),
            )
            s.commit()
    except (ValueError, auth.AuthError) as exc:
        message = exc.message_ja if isinstance(exc, auth.AuthError) else str(exc)
        audit(request, staff.staff_id, "staff.create", "invalid_input", ref=_ref(staff_id))
        return _staff_page(request, staff, status=422, error=message, form=form)
    return _staff_page(
        request, staff, created={"staff_id": staff_id, "password": password}, status=201
    )


def _ref(staff_id: str) -> str | None:
    return staff_id[:64] if staff_id and staff_id.isascii() and staff_id.isprintable() else None


def _member_action(request: Request, staff: Staff, target: str, action: str) -> int | None:
    site = site_of(request)
    require_role(request, staff, ADMIN, action)
    clean_text(target, "職員ID")
    now = site.clock()
    try:
        with site.sessions() as s:
            count: int | None = None
            if action == "staff.unlock":
                auth.unlock(s, site.tables, target, staff.principal)
            elif action == "staff.revoke_sessions":
                count = auth.revoke_sessions(s, site.tables, target, staff.principal, now=now)
            else:
                auth.reset_totp(s, site.tables, site.cipher(), target, staff.principal, policy=site.policy())
            site.record(
                s,
                AuditEvent(
                    actor=staff.staff_id,
                    terminal=terminal_of(request),
                    action=action,
                    outcome="ok",
                    ref=target,
                    detail={"sessions": count} if count is not None else None,
                ),
            )
            s.commit()
            return count
    except LookupError as exc:
        audit(request, staff.staff_id, action, "staff_not_found", ref=_ref(target))
        raise Problem(404, "staff_not_found", str(exc).strip("'\"")) from None


@router.post("/admin/staff/{target}/unlock")
def staff_unlock(request: Request, target: str, staff: Actor) -> Response:
    _member_action(request, staff, target, "staff.unlock")
    return redirect(request, "/admin/staff?done=unlock")


@router.post("/admin/staff/{target}/revoke")
def staff_revoke(request: Request, target: str, staff: Actor) -> Response:
    _member_action(request, staff, target, "staff.revoke_sessions")
    return redirect(request, "/admin/staff?done=revoke")


@router.post("/admin/staff/{target}/totp")
def staff_totp_reset(request: Request, target: str, staff: Actor) -> Response:
    _member_action(request, staff, target, "staff.totp_reset")
    return redirect(request, "/admin/staff?done=totp")


# --- audit log (監査) ---------------------------------------------------------------------


@router.get("/audit")
def audit_log(
    request: Request, staff: Viewer, actor: str = "", subject: str = "", action: str = ""
) -> Response:
    site = site_of(request)
    if not may_read_audit(staff.roles):
        audit(request, staff.staff_id, "audit.read", "role_required")
        raise PermissionDenied("role_required", "監査ログの閲覧には権限「監査」が必要です。", needed="監査")
    filters = {
        "actor": clean_text(actor.strip()[:128], "職員ID"),
        "subject": clean_text(subject.strip()[:64], "対象"),
        "action": clean_text(action.strip()[:128], "操作"),
    }
    e = site.audit_tables.entries
    stmt = select(e).order_by(e.c.seq.desc()).limit(AUDIT_PAGE_SIZE)
    for name, value in filters.items():
        if value:
            stmt = stmt.where(e.c[name] == value)
    with site.sessions() as s:
        entries = [dict(r) for r in s.execute(stmt).mappings()]
        try:
            site.record(
                s,
                AuditEvent(
                    actor=staff.staff_id,
                    terminal=terminal_of(request),
                    action="audit.read",
                    outcome="ok",
                    detail={k: v for k, v in filters.items() if v and k != "subject"} or None,
                    subject=filters["subject"] or None,
                ),
            )
        except ValueError:
            raise Problem(
                422,
                "individual_number_in_filter",
                "個人番号で監査ログを検索することはできません（監査ログに個人番号は記録されません）。",
            ) from None
        s.commit()
    return render(request, "audit.html", {"staff": staff, "entries": entries, "filters": filters})
