"""Staff administration (role 管理) and the audit log viewer (role 監査), for any node.

An administrator creates accounts (with a generated initial password, shown once, that
the staff member must change at first sign-in, where they also enrol their TOTP app),
changes roles, locks and unlocks accounts, ends sessions and orders a TOTP
re-enrolment. Roles follow renkei.staff.role_requests: never one's own; removals and
管理/監査 at once; data roles — also those given to a new account — only when another
administrator approves the request, which this page lists with approve/reject buttons.
An administrator cannot read the audit log; an auditor can read it and change nothing
(separation of duties: `roles.check_separation`). Every action and every refusal is
audited, under the same actions and outcomes as the JSON routes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import Response

from renkei.core.audit.log import AuditEvent
from renkei.core.errors import Problem
from renkei.staff import admin as staff_admin
from renkei.staff import role_requests
from renkei.staff.roles import ADMIN, PermissionDenied, may_read_audit
from renkei.staff.routes import Done
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
    "unlock": "ロックとログイン制限を解除しました。",
    "lock": "アカウントをロックしました（ログイン中のセッションも終了しました）。",
    "revoke": "ログイン中のセッションをすべて終了しました。",
    "totp": "ワンタイムパスワードを再登録にしました。次回ログイン時に登録します。",
    "roles": "権限を変更しました。",
    "roles_pending": "権限の変更を依頼しました。個人情報を扱う権限は、別の管理者の承認後に付与されます。",
    "approved": "依頼を承認し、権限を適用しました。",
    "rejected": "依頼を却下しました。",
}

T = TypeVar("T")
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
        pending = role_requests.list_requests(s, site.tables, staff.principal)
    return render(
        request,
        "admin/staff.html",
        {
            "staff": staff,
            "members": members,
            "pending": pending,
            "message": message,
            "error": error,
            "created": created,
            "form": form or {},
        },
        status=status,
    )


def _ref(staff_id: str) -> str | None:
    return staff_id[:64] if staff_id and staff_id.isascii() and staff_id.isprintable() else None


def _work(
    request: Request, staff: Staff, action: str, ref: str | None, work: Callable[[Session], Done[T]]
) -> T:
    """One audited unit of work (the `Done` shape of the JSON routes); a refusal is audited
    under its code and raised, having written nothing."""
    site = site_of(request)
    try:
        with site.sessions() as s:
            done = work(s)
            site.record(
                s,
                AuditEvent(
                    actor=staff.staff_id,
                    terminal=terminal_of(request),
                    action=action,
                    outcome=done.outcome,
                    ref=done.ref or ref,
                    detail=done.detail,
                ),
            )
            s.commit()
            return done.value
    except Problem as exc:
        audit(request, staff.staff_id, action, exc.code, ref=ref)
        raise


def _roles_of(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


@router.get("/admin/staff")
def staff_list(request: Request, staff: Viewer, done: str = "") -> Response:
    require_role(request, staff, ADMIN, "staff.list")
    return _staff_page(request, staff, message=DONE.get(done))


@router.post("/admin/staff")
def staff_create(request: Request, staff: Actor, form: Form) -> Response:
    require_role(request, staff, ADMIN, "staff.create")
    site = site_of(request)
    staff_id = form.get("staff_id", "").strip()

    def work(s: Session) -> Done[staff_admin.Enrolment]:
        made = staff_admin.enrol_staff(
            s,
            site.tables,
            site.cipher(),
            staff_id=staff_id,
            name=form.get("name", ""),
            roles=_roles_of(form.get("roles", "")),
            by=staff.principal,
            policy=site.policy(),
            now=site.clock(),
            role_policy=site.role_policy(),
        )  # the provisioning URI is not shown here: the staff member enrols at sign-in
        detail: dict[str, Any] = {"roles": list(made.roles)}
        if made.pending_request is not None:
            detail["request"] = made.pending_request.audit_detail()
        outcome = "ok" if made.pending_request is None else "pending"
        return Done(made, ref=made.staff_id, detail=detail, outcome=outcome)

    try:
        made = _work(request, staff, "staff.create", _ref(staff_id), work)
    except Problem as exc:
        return _staff_page(request, staff, status=exc.status, error=exc.title, form=form)
    pending = made.pending_request
    created = {
        "staff_id": made.staff_id,
        "password": made.initial_password,
        "pending": list(pending.added) if pending is not None else [],
    }
    return _staff_page(request, staff, created=created, status=201)


@router.post("/admin/staff/{target}/roles")
def staff_roles(request: Request, target: str, staff: Actor, form: Form) -> Response:
    require_role(request, staff, ADMIN, "staff.roles.request")
    site = site_of(request)
    clean_text(target, "職員ID")

    def work(s: Session) -> Done[role_requests.RoleChange]:
        change = staff_admin.set_staff_roles(
            s,
            site.tables,
            target,
            _roles_of(form.get("roles", "")),
            staff.principal,
            role_policy=site.role_policy(),
            now=site.clock(),
        )
        return Done(change, detail=change.audit_detail(), outcome=change.status)

    try:
        change = _work(request, staff, "staff.roles.request", _ref(target), work)
    except Problem as exc:
        return _staff_page(request, staff, status=exc.status, error=exc.title)
    return redirect(request, "/admin/staff?done=" + ("roles_pending" if change.pending else "roles"))


def _decide(request: Request, staff: Staff, request_id: int, reject: bool) -> Response:
    action = "staff.roles.reject" if reject else "staff.roles.approve"
    require_role(request, staff, ADMIN, action)
    site = site_of(request)

    def work(s: Session) -> Done[role_requests.RoleRequest]:
        req = role_requests.decide(
            s,
            site.tables,
            request_id,
            staff.principal,
            reject=reject,
            policy=site.role_policy(),
            now=site.clock(),
        )
        return Done(req, detail=req.audit_detail(), outcome=req.status)

    try:
        _work(request, staff, action, f"role-request:{request_id}", work)
    except Problem as exc:
        return _staff_page(request, staff, status=exc.status, error=exc.title)
    return redirect(request, "/admin/staff?done=" + ("rejected" if reject else "approved"))


@router.post("/admin/role-requests/{request_id}/approve")
def role_request_approve(request: Request, request_id: int, staff: Actor) -> Response:
    return _decide(request, staff, request_id, False)


@router.post("/admin/role-requests/{request_id}/reject")
def role_request_reject(request: Request, request_id: int, staff: Actor) -> Response:
    return _decide(request, staff, request_id, True)


def _member_action(request: Request, staff: Staff, target: str, action: str) -> None:
    site = site_of(request)
    require_role(request, staff, ADMIN, action)
    clean_text(target, "職員ID")
    now = site.clock()

    def work(s: Session) -> Done[None]:
        count: int | None = None
        if action == "staff.unlock":
            staff_admin.unlock_staff(s, site.tables, target, staff.principal)
        elif action == "staff.lock":
            count = staff_admin.lock_staff(s, site.tables, target, staff.principal, now=now)
        elif action == "staff.revoke_sessions":
            count = staff_admin.revoke_staff_sessions(
                s, site.tables, target, staff.principal, now=now
            )
        else:
            staff_admin.reset_staff_totp(
                s, site.tables, site.cipher(), target, staff.principal, policy=site.policy(), now=now
            )
        return Done(None, detail={"sessions": count} if count is not None else None)

    _work(request, staff, action, _ref(target), work)


@router.post("/admin/staff/{target}/unlock")
def staff_unlock(request: Request, target: str, staff: Actor) -> Response:
    _member_action(request, staff, target, "staff.unlock")
    return redirect(request, "/admin/staff?done=unlock")


@router.post("/admin/staff/{target}/lock")
def staff_lock(request: Request, target: str, staff: Actor) -> Response:
    _member_action(request, staff, target, "staff.lock")
    return redirect(request, "/admin/staff?done=lock")


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
