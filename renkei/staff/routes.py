"""Staff routes every node mounts: sign-in, administration, alerts, audit, exports (JSON).

`mount_staff_api(app, StaffTables(...))` adds them to a node's app. Parts:

- ``session``: ``POST/GET/DELETE /v1/session`` (password + TOTP; an opaque cookie
  ``__Host-renkei-session``, HttpOnly, Secure, SameSite=Strict, and a CSRF token),
  ``POST /v1/session/password``, personal API tokens ``/v1/api-tokens`` (atena
  mounts these too; its own routes authenticate staff with `StaffAccess`);
- ``admin`` (role 管理): ``/v1/staff`` list and create (the TOTP enrolment URI and QR
  are returned once), roles (separation of duties enforced; never one's own; data
  roles wait for a second administrator at ``/v1/role-requests``, approve/reject),
  disable/enable, lock/unlock, revoke sessions, reset TOTP;
- ``alerts`` (管理): the abnormal-traffic guard's alerts, and acknowledging them;
- ``audit`` (監査 only): ``GET /v1/audit/verify``;
- ``exports``: ``/v1/exports`` — request, approve/reject (another staff member with
  the kind's role), download once (the first line names exporter, request, approver).

Who is calling: the session cookie — with the session's CSRF token in
``X-CSRF-Token`` on every state-changing request, and on an export download, which
runs only once — or a personal API token (``Authorization: Bearer``, no CSRF).
Every refusal is problem+json with a stable code and a Japanese title, is audited,
and changes nothing; the role checks live in the service functions
(renkei.staff.admin, auditor, exports), the routes only translate.
"""

from __future__ import annotations

import hashlib
import io
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Annotated, Any, Final, Generic, Literal, TypeVar, cast

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from renkei.core.audit.log import AuditEvent
from renkei.core.config import ConfigError
from renkei.core.crypto.field import FieldCipher
from renkei.core.db import transaction
from renkei.core.errors import Problem
from renkei.core.wire import guard
from renkei.core.wire.guard import GuardTables
from renkei.core.wire.runtime import NodeRuntime
from renkei.staff import admin as staff_admin
from renkei.staff import auditor, auth, export_kinds, exports, role_requests
from renkei.staff.auth import AuthTables, StaffPrincipal
from renkei.staff.exports import (
    ExportKind,
    ExportPolicy,
    ExportRegistry,
    ExportRequest,
    ExportTables,
)
from renkei.staff.oauth import OAuthError, bearer_problem_response
from renkei.staff.role_requests import RolePolicy, RoleRequest
from renkei.staff.schemas import (
    AlertListOut,
    AlertOut,
    ApiTokenIn,
    ApiTokenInfoOut,
    ApiTokenListOut,
    ApiTokenOut,
    EnrolmentOut,
    ExportIn,
    ExportListOut,
    ExportOut,
    PasswordChangeIn,
    PrincipalOut,
    RevokedOut,
    RoleRequestListOut,
    RoleRequestOut,
    RolesIn,
    RolesOut,
    SessionIn,
    SessionOut,
    StaffCreateIn,
    StaffListOut,
    StaffOut,
    StaffStateOut,
    TotpOut,
    VerifyOut,
)

__all__ = [
    "ALL_PARTS",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "Done",
    "Presented",
    "StaffAccess",
    "StaffTables",
    "audit_refusal",
    "audited",
    "bearer_token",
    "mount_staff_api",
    "refusal_of",
    "screen_staff",
    "staff_router",
]

# __Host-: the browser keeps the cookie only if it is Secure, has Path=/ and no Domain.
SESSION_COOKIE: Final = "__Host-renkei-session"
CSRF_HEADER: Final = "X-CSRF-Token"
ANONYMOUS: Final = "anonymous"
ALL_PARTS: Final = frozenset({"session", "admin", "alerts", "audit", "exports"})
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_SAFE_ACTOR: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_DIGIT_RUN: Final = re.compile(r"\d{12,}")
_MAX_ID: Final = 2**63 - 1  # BIGINT: larger ids cannot exist, and must not reach the database
_SPOOL_BYTES: Final = 8 * 1024 * 1024
_CHUNK: Final = 64 * 1024

# No control characters: PostgreSQL text cannot hold NUL, and no staff ID has one.
_PRINTABLE: Final = r"^[^\x00-\x1f\x7f]+$"
StaffIdPath = Annotated[
    str, Path(min_length=1, max_length=64, pattern=_PRINTABLE, description="職員ID")
]
IdPath = Annotated[int, Path(ge=1, le=_MAX_ID)]

T = TypeVar("T")
ExportStatus = Literal["pending", "approved", "running", "done", "rejected"]
RoleRequestStatus = Literal["pending", "applied", "rejected", "superseded"]


@dataclass(frozen=True)
class StaffTables:
    """The node's kernel tables the staff routes use (guard and exports where it has them)."""

    auth: AuthTables
    exports: ExportTables | None = None
    guard: GuardTables | None = None


# --- the request's context -----------------------------------------------------------------


def _rt(request: Request) -> NodeRuntime:
    rt: NodeRuntime = request.app.state.rt
    return rt


def _now(request: Request) -> datetime:
    """The authentication clock (`app.state.clock`; tests move it)."""
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


def _policy(request: Request) -> auth.AuthPolicy:
    policy: auth.AuthPolicy = request.app.state.auth_policy
    return policy


def _cipher(request: Request) -> FieldCipher:
    cipher: FieldCipher = request.app.state.cipher
    return cipher


def _export_policy(request: Request) -> ExportPolicy:
    policy: ExportPolicy = request.app.state.export_policy
    return policy


def _role_policy(request: Request) -> RolePolicy:
    policy: RolePolicy = request.app.state.role_policy
    return policy


def _registry(request: Request) -> ExportRegistry:
    registry: ExportRegistry = request.app.state.export_registry
    return registry


def _terminal(request: Request) -> str:
    return request.client.host if request.client else ""


def _actor_of(presented: str) -> str:
    """A presented (unauthenticated) staff ID fit for the audit log, else "anonymous"."""
    sid = presented.strip()
    if _SAFE_ACTOR.fullmatch(sid) and not _DIGIT_RUN.search(sid):
        return sid
    return ANONYMOUS


def _ref_of(staff_id: str) -> str | None:
    """A staff ID named in a request (path or body) fit for the audit entry's ref."""
    actor = _actor_of(staff_id)
    return None if actor == ANONYMOUS else actor


def bearer_token(request: Request) -> str | None:
    """The credentials of an ``Authorization: Bearer`` header, else None."""
    header = request.headers.get("authorization")
    if header is None or not header.strip():
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip()


def audit_refusal(request: Request, actor: str, action: str, outcome: str, **fields: Any) -> None:
    """Audit a refusal in a transaction of its own (the refused work was rolled back)."""
    rt = _rt(request)
    with transaction(rt.sessions) as s:
        rt.record(
            s,
            AuditEvent(
                actor=actor, terminal=_terminal(request), action=action, outcome=outcome, **fields
            ),
        )


@dataclass(frozen=True)
class Done(Generic[T]):
    """A unit of work's result and what its audit entry says about it."""

    value: T
    subject: str | None = None
    ref: str | None = None
    detail: dict[str, Any] | None = None
    affair: str | None = None
    outcome: str = "ok"


def audited(
    request: Request,
    actor: str,
    action: str,
    work: Callable[[Session], Done[T]],
    *,
    ref: str | None = None,
    subject: str | None = None,
    keep_auth_failures: bool = False,
) -> T:
    """Run ``work`` in one transaction that ends with its audit entry.

    A `Problem` rolls the work back and is audited on its own (outcome = its code,
    with ``ref`` and ``subject``: never put unchecked input there).
    ``keep_auth_failures`` commits an `AuthError`'s failure counter (a wrong current
    password counts towards the lockout).
    """
    rt = _rt(request)
    unit = auth.auth_transaction if keep_auth_failures else transaction
    try:
        with unit(rt.sessions) as s:
            done = work(s)
            rt.record(
                s,
                AuditEvent(
                    actor=actor,
                    terminal=_terminal(request),
                    action=action,
                    outcome=done.outcome,
                    subject=done.subject or subject,
                    affair=done.affair,
                    ref=done.ref or ref,
                    detail=done.detail,
                ),
            )
            return done.value
    except Problem as exc:
        audit_refusal(request, actor, action, exc.code, ref=ref, subject=subject)
        raise


def _authentication_required() -> OAuthError:
    # reason "missing_token": the bare RFC 6750 challenge, without an error attribute.
    return OAuthError(
        401,
        "authentication_required",
        "認証が必要です。職員IDとパスワード、ワンタイムパスワードでログインしてください。",
        reason="missing_token",
        challenge=True,
    )


# --- who is calling ------------------------------------------------------------------------


@dataclass(frozen=True)
class Presented:
    """The credentials a request presents, read from its headers without the database, so
    that a route may check them inside its own first transaction (`StaffAccess.authenticate_in`)."""

    token: str | None  # Authorization: Bearer (a personal API token; "" if sent empty)
    cookie: str | None  # the session cookie
    csrf: str | None  # X-CSRF-Token
    safe_method: bool  # GET, HEAD, OPTIONS: no CSRF token needed by default

    @classmethod
    def of(cls, request: Request) -> Presented:
        return cls(
            token=bearer_token(request),
            cookie=request.cookies.get(SESSION_COOKIE),
            csrf=request.headers.get(CSRF_HEADER),
            safe_method=request.method in _SAFE_METHODS,
        )


def refusal_of(exc: auth.AuthError | OAuthError | Problem) -> tuple[str, str]:
    """The audit entry's actor and outcome for an authentication refusal: the staff ID a
    CSRF refusal names (the session was valid), else "anonymous"."""
    if isinstance(exc, OAuthError):
        return ANONYMOUS, exc.error
    return str(exc.extra.pop("actor", ANONYMOUS)), exc.code


class StaffAccess:
    """Authenticates staff on a node: session cookie (+ CSRF) or personal API token."""

    def __init__(self, tables: AuthTables) -> None:
        self.tables = tables

    def authenticate(
        self, request: Request, *, api_token_ok: bool = True, csrf: bool | None = None
    ) -> StaffPrincipal:
        """The principal, or an AuthError/OAuthError/Problem; ``csrf`` None = by method.

        A CSRF refusal names the (authenticated) staff ID in ``extra["actor"]``.
        """
        rt = _rt(request)
        now = _now(request)
        with auth.auth_transaction(rt.sessions) as s:
            return self.authenticate_in(
                s, Presented.of(request), policy=_policy(request), now=now, api_token_ok=api_token_ok, csrf=csrf
            )

    def authenticate_in(
        self,
        session: Session,
        presented: Presented,
        *,
        policy: auth.AuthPolicy,
        now: datetime,
        api_token_ok: bool = True,
        csrf: bool | None = None,
    ) -> StaffPrincipal:
        """`authenticate` in the caller's transaction (a route's own first unit of work).

        The caller commits on an `auth.AuthError` as `auth.auth_transaction` does (a session
        touched before a CSRF refusal stays touched) and audits the refusal.
        """
        token = presented.token
        if token is not None:
            if not api_token_ok:
                raise Problem(
                    403,
                    "session_required",
                    "この操作にはログインが必要です（APIトークンでは実行できません）。",
                )
            return auth.authenticate_api_token(session, self.tables, token, now=now)
        if not presented.cookie:
            raise _authentication_required()
        principal = auth.authenticate(session, self.tables, presented.cookie, policy=policy, now=now)
        if csrf or (csrf is None and not presented.safe_method):
            try:
                auth.check_csrf(session, self.tables, principal, presented.csrf)
            except auth.AuthError as exc:
                exc.extra["actor"] = principal.staff_id
                raise
        return principal

    def staff(
        self,
        action: str,
        *,
        api_token_ok: bool = True,
        csrf: bool | None = None,
        screen: bool = True,
    ) -> Callable[[Request], StaffPrincipal]:
        """Dependency: a signed-in staff member (or their API token); refusals are audited.

        ``screen`` applies the node's rate limits and abnormal-traffic rules
        (renkei.core.wire.guard); a route about one person screens itself with that person.
        """

        def dependency(request: Request) -> StaffPrincipal:
            try:
                principal = self.authenticate(request, api_token_ok=api_token_ok, csrf=csrf)
            except (auth.AuthError, OAuthError, Problem) as exc:
                actor, code = refusal_of(exc)
                audit_refusal(request, actor, action, code)
                raise
            if screen:
                screen_staff(request, principal.staff_id, action)
            return principal

        return dependency


def screen_staff(
    request: Request, staff_id: str, action: str, *, person: str | None = None
) -> None:
    """Rate limits and rules for a staff member; a refusal is audited under the action."""
    try:
        _rt(request).screen("staff", staff_id, person)
    except Problem as exc:
        audit_refusal(request, staff_id, action, exc.code, subject=person)
        raise


# --- shapes --------------------------------------------------------------------------------


def _staff_out(info: staff_admin.StaffInfo) -> StaffOut:
    return StaffOut(
        staff_id=info.staff_id,
        name=info.name,
        roles=list(info.roles),
        active=info.active,
        locked=info.locked,
        locked_until=info.locked_until,
        throttled_until=info.throttled_until,
        failed_count=info.failed_count,
        totp_enrolled=info.totp_enrolled,
        open_sessions=info.open_sessions,
        created_at=info.created_at,
        password_changed_at=info.password_changed_at,
    )


def _role_request_out(req: RoleRequest) -> RoleRequestOut:
    return RoleRequestOut(
        id=req.id,
        staff_id=req.staff_id,
        roles=list(req.roles),
        previous_roles=list(req.previous_roles),
        added=list(req.added),
        removed=list(req.removed),
        requested_by=req.requested_by,
        requested_at=req.requested_at,
        status=req.status,
        status_label=req.status_label,
        decided_by=req.decided_by,
        decided_at=req.decided_at,
    )


def _alert_out(alert: guard.Alert) -> AlertOut:
    return AlertOut(
        id=alert.id,
        at=alert.at,
        rule=alert.rule,
        subject_kind=alert.subject_kind,
        subject=alert.subject,
        action=alert.action,
        detail=dict(alert.detail),
        acknowledged_at=alert.acknowledged_at,
        acknowledged_by=alert.acknowledged_by,
    )


def _export_out(req: ExportRequest) -> ExportOut:
    return ExportOut(
        id=req.id,
        kind=req.kind,
        params=req.params,
        status=req.status,
        status_label=exports.STATUS_LABELS.get(req.status, req.status),
        estimated_rows=req.estimated_rows,
        needs_approval=req.needs_approval,
        requested_by=req.requested_by,
        requested_at=req.requested_at,
        decided_by=req.decided_by,
        decided_at=req.decided_at,
        rows_written=req.rows_written,
        finished_at=req.finished_at,
    )


def _qr(uri: str) -> str:
    return auth.totp_qr_svg(uri)


# --- session: sign-in, password, API tokens ------------------------------------------------


def _set_session_cookie(response: Response, token: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )


def _add_session_routes(router: APIRouter, access: StaffAccess) -> None:
    tables = access.tables
    shown = Depends(access.staff("session.show"))
    leaving = Depends(access.staff("session.logout", api_token_ok=False))
    changing = Depends(access.staff("session.password", api_token_ok=False))
    issuing = Depends(access.staff("api_token.issue", api_token_ok=False))
    listing = Depends(access.staff("api_token.list"))
    revoking = Depends(access.staff("api_token.revoke"))

    @router.post(
        "/v1/session",
        response_model=SessionOut,
        tags=["職員認証"],
        summary="職員のログイン（職員ID・パスワード・ワンタイムパスワード）",
        description="成功するとセッションCookie（HttpOnly, Secure, SameSite=Strict）を設定し、"
        "CSRFトークンを返します。Cookieで送る状態変更の要求にはヘッダー X-CSRF-Token が必要です。",
    )
    def sign_in(request: Request, response: Response, body: SessionIn) -> SessionOut:
        rt = _rt(request)
        now = _now(request)
        policy = _policy(request)
        with auth.auth_transaction(rt.sessions) as s:
            try:
                result = auth.login(
                    s,
                    tables,
                    _cipher(request),
                    body.staff_id,
                    body.password,
                    body.totp,
                    terminal=_terminal(request),
                    policy=policy,
                    now=now,
                )
            except auth.AuthError as exc:
                # Committed with the throttle's counters (auth_transaction commits on
                # AuthError). The log says why (throttled, locked …); the answer does not.
                rt.record(
                    s,
                    AuditEvent(
                        actor=_actor_of(body.staff_id),
                        terminal=_terminal(request),
                        action="session.login",
                        outcome=exc.reason,
                    ),
                )
                raise
            principal = auth.authenticate(s, tables, result.token, policy=policy, now=now)
            rt.record(
                s,
                AuditEvent(
                    actor=principal.staff_id,
                    terminal=_terminal(request),
                    action="session.login",
                    outcome="ok",
                ),
            )
        _set_session_cookie(response, result.token, int((result.expires_at - now).total_seconds()))
        response.headers["Cache-Control"] = "no-store"
        return SessionOut(
            staff_id=principal.staff_id,
            name=principal.name,
            roles=sorted(principal.roles),
            csrf_token=result.csrf_token,
            expires_at=result.expires_at,
        )

    @router.get(
        "/v1/session", response_model=PrincipalOut, tags=["職員認証"], summary="ログイン中の職員"
    )
    def who_am_i(principal: StaffPrincipal = shown) -> PrincipalOut:
        return PrincipalOut(
            staff_id=principal.staff_id,
            name=principal.name,
            roles=sorted(principal.roles),
            via="session" if principal.session_id is not None else "api_token",
        )

    @router.delete(
        "/v1/session",
        status_code=204,
        tags=["職員認証"],
        summary="ログアウト",
        response_class=Response,
    )
    def sign_out(request: Request, principal: StaffPrincipal = leaving) -> Response:
        def work(s: Session) -> Done[None]:
            auth.logout(s, tables, principal, now=_now(request))
            return Done(None)

        audited(request, principal.staff_id, "session.logout", work)
        response = Response(status_code=204)
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict"
        )
        return response

    @router.post(
        "/v1/session/password",
        status_code=204,
        response_class=Response,
        tags=["職員認証"],
        summary="パスワードの変更（本人）",
        description="現在のパスワードが誤っているとログイン失敗として数えます。"
        "変更すると、このセッション以外のセッションは終了します。",
    )
    def change_password(
        request: Request, body: PasswordChangeIn, principal: StaffPrincipal = changing
    ) -> Response:
        def work(s: Session) -> Done[None]:
            auth.change_password(
                s,
                tables,
                principal.staff_id,
                body.current_password,
                body.new_password,
                policy=_policy(request),
                now=_now(request),
                keep_session_id=principal.session_id,
                source=_terminal(request),
            )
            return Done(None)

        audited(request, principal.staff_id, "session.password", work, keep_auth_failures=True)
        return Response(status_code=204)

    @router.post(
        "/v1/api-tokens",
        response_model=ApiTokenOut,
        tags=["職員認証"],
        summary="個人用APIトークンの発行（ログイン中の職員の権限の一部に限定）",
    )
    def issue_api_token(
        request: Request, body: ApiTokenIn, principal: StaffPrincipal = issuing
    ) -> ApiTokenOut:
        now = _now(request)

        def work(s: Session) -> Done[ApiTokenOut]:
            try:
                token = auth.issue_api_token(
                    s,
                    tables,
                    principal.staff_id,
                    body.name,
                    body.scopes,
                    now + timedelta(days=body.expires_in_days),
                    policy=_policy(request),
                    now=now,
                )
            except ValueError as exc:
                raise Problem(422, "invalid_expiry", str(exc)) from None
            digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
            at = tables.api_tokens
            token_id = s.execute(select(at.c.id).where(at.c.token_hash == digest)).scalar_one()
            info = next(
                t for t in auth.list_api_tokens(s, tables, principal.staff_id) if t.id == token_id
            )
            out = ApiTokenOut(
                id=info.id, token=token, scopes=list(info.scopes), expires_at=info.expires_at
            )
            return Done(out, ref=info.id, detail={"scopes": list(info.scopes)})

        return audited(request, principal.staff_id, "api_token.issue", work)

    @router.get(
        "/v1/api-tokens",
        response_model=ApiTokenListOut,
        tags=["職員認証"],
        summary="自分の個人用APIトークンの一覧（トークン自体は表示しません）",
    )
    def list_api_tokens(request: Request, principal: StaffPrincipal = listing) -> ApiTokenListOut:
        with _rt(request).sessions() as s:
            tokens = auth.list_api_tokens(s, tables, principal.staff_id)
        return ApiTokenListOut(
            tokens=[
                ApiTokenInfoOut(
                    id=t.id,
                    name=t.name,
                    scopes=list(t.scopes),
                    created_at=t.created_at,
                    expires_at=t.expires_at,
                    revoked_at=t.revoked_at,
                    last_used_at=t.last_used_at,
                )
                for t in tokens
            ]
        )

    @router.delete(
        "/v1/api-tokens/{token_id}",
        status_code=204,
        response_class=Response,
        tags=["職員認証"],
        summary="個人用APIトークンの失効（本人または管理者）",
    )
    def revoke_api_token(
        request: Request,
        token_id: Annotated[str, Path(min_length=1, max_length=32, pattern=_PRINTABLE)],
        principal: StaffPrincipal = revoking,
    ) -> Response:
        def work(s: Session) -> Done[None]:
            try:
                auth.revoke_api_token(s, tables, token_id, principal, now=_now(request))
            except LookupError as exc:
                raise Problem(404, "token_not_found", str(exc)) from None
            return Done(None)

        audited(request, principal.staff_id, "api_token.revoke", work, ref=token_id)
        return Response(status_code=204)


# --- administrators (管理) ------------------------------------------------------------------


def _add_admin_routes(router: APIRouter, access: StaffAccess) -> None:
    tables = access.tables
    as_list = Depends(access.staff("staff.list"))
    as_create = Depends(access.staff("staff.create"))
    as_roles = Depends(access.staff("staff.roles.request"))
    as_requests = Depends(access.staff("staff.roles.list"))
    as_approve = Depends(access.staff("staff.roles.approve"))
    as_reject = Depends(access.staff("staff.roles.reject"))
    as_lock = Depends(access.staff("staff.lock"))
    as_unlock = Depends(access.staff("staff.unlock"))
    as_revoke_sessions = Depends(access.staff("staff.revoke_sessions"))
    as_reset_totp = Depends(access.staff("staff.reset_totp"))

    @router.get(
        "/v1/staff", response_model=StaffListOut, tags=["職員管理"], summary="職員の一覧（管理）"
    )
    def list_staff(request: Request, principal: StaffPrincipal = as_list) -> StaffListOut:
        def work(s: Session) -> Done[StaffListOut]:
            found = staff_admin.list_staff(s, tables, principal, now=_now(request))
            return Done(
                StaffListOut(staff=[_staff_out(i) for i in found]), detail={"count": len(found)}
            )

        return audited(request, principal.staff_id, "staff.list", work)

    @router.post(
        "/v1/staff",
        response_model=EnrolmentOut,
        status_code=201,
        tags=["職員管理"],
        summary="職員の登録（管理）：初期パスワードとワンタイムパスワードの登録情報を一度だけ返す",
    )
    def create_staff(
        request: Request,
        response: Response,
        body: StaffCreateIn,
        principal: StaffPrincipal = as_create,
    ) -> EnrolmentOut:
        def work(s: Session) -> Done[EnrolmentOut]:
            made = staff_admin.enrol_staff(
                s,
                tables,
                _cipher(request),
                staff_id=body.staff_id,
                name=body.name,
                roles=body.roles,
                by=principal,
                password=body.password,
                policy=_policy(request),
                now=_now(request),
                role_policy=_role_policy(request),
            )
            pending = made.pending_request
            out = EnrolmentOut(
                staff_id=made.staff_id,
                name=made.name,
                roles=list(made.roles),
                pending_request=None if pending is None else _role_request_out(pending),
                initial_password=made.initial_password,
                totp_uri=made.totp_uri,
                totp_qr_svg=_qr(made.totp_uri),
            )
            detail: dict[str, Any] = {"roles": list(made.roles)}
            if pending is not None:  # the data roles' request: audited with the creation
                detail["request"] = pending.audit_detail()
            return Done(
                out,
                ref=made.staff_id,
                detail=detail,
                outcome="ok" if pending is None else "pending",
            )

        response.headers["Cache-Control"] = "no-store"
        return audited(
            request, principal.staff_id, "staff.create", work, ref=_ref_of(body.staff_id)
        )

    @router.put(
        "/v1/staff/{staff_id}/roles",
        response_model=RolesOut,
        responses={202: {"model": RolesOut, "description": "別の管理者の承認待ち"}},
        tags=["職員管理"],
        summary="職員の権限の設定（管理、職務分掌を確認）：個人情報を扱う権限は別の管理者の承認後",
        description="自分自身の権限は変更できません。権限を外すこと、管理・監査の付与はすぐに適用します。"
        "個人情報を扱う権限（管理・監査以外）を加えると、依頼全体が別の管理者の承認待ちになり（202）、"
        "/v1/role-requests/{id}/approve で適用されます。",
    )
    def set_roles(
        request: Request,
        response: Response,
        staff_id: StaffIdPath,
        body: RolesIn,
        principal: StaffPrincipal = as_roles,
    ) -> RolesOut:
        def work(s: Session) -> Done[RolesOut]:
            change = staff_admin.set_staff_roles(
                s,
                tables,
                staff_id,
                body.roles,
                principal,
                role_policy=_role_policy(request),
                now=_now(request),
            )
            out = RolesOut(
                staff_id=change.staff_id,
                roles=list(change.roles),
                status=change.status,
                request=None if change.pending is None else _role_request_out(change.pending),
            )
            return Done(out, detail=change.audit_detail(), outcome=change.status)

        out = audited(
            request, principal.staff_id, "staff.roles.request", work, ref=_ref_of(staff_id)
        )
        if out.status == "pending":
            response.status_code = 202
        return out

    @router.get(
        "/v1/role-requests",
        response_model=RoleRequestListOut,
        tags=["職員管理"],
        summary="権限変更の依頼の一覧（管理）",
    )
    def list_role_requests(
        request: Request,
        principal: StaffPrincipal = as_requests,
        status: Annotated[
            RoleRequestStatus | None, Query(description="例: pending（承認待ち、既定）")
        ] = "pending",
        everything: Annotated[bool, Query(alias="all", description="状態を問わずすべて")] = False,
    ) -> RoleRequestListOut:
        def work(s: Session) -> Done[RoleRequestListOut]:
            found = role_requests.list_requests(
                s, tables, principal, status=None if everything else status
            )
            out = RoleRequestListOut(requests=[_role_request_out(r) for r in found])
            return Done(out, detail={"count": len(found)})

        return audited(request, principal.staff_id, "staff.roles.list", work)

    def _role_decision(path: str, reject: bool, action: str, summary: str, who: Any) -> None:
        @router.post(path, response_model=RoleRequestOut, tags=["職員管理"], summary=summary)
        def decide(
            request: Request, request_id: IdPath, principal: StaffPrincipal = who
        ) -> RoleRequestOut:
            def work(s: Session) -> Done[RoleRequestOut]:
                req = role_requests.decide(
                    s,
                    tables,
                    request_id,
                    principal,
                    reject=reject,
                    policy=_role_policy(request),
                    now=_now(request),
                )
                return Done(
                    _role_request_out(req), detail=req.audit_detail(), outcome=req.status
                )

            return audited(
                request, principal.staff_id, action, work, ref=f"role-request:{request_id}"
            )

    _role_decision(
        "/v1/role-requests/{request_id}/approve",
        False,
        "staff.roles.approve",
        "権限変更の承認と適用（依頼者・対象職員以外の管理者）",
        as_approve,
    )
    _role_decision(
        "/v1/role-requests/{request_id}/reject",
        True,
        "staff.roles.reject",
        "権限変更の却下（対象職員以外の管理者。依頼者は取り下げ）",
        as_reject,
    )

    @router.post(
        "/v1/staff/{staff_id}/lock",
        response_model=RevokedOut,
        tags=["職員管理"],
        summary="職員のロック（管理）：解除するまでログインを拒否し、セッションも終了",
        description="ロック中のログインは、誤ったパスワードと同じ応答で拒否します。",
    )
    def lock(
        request: Request, staff_id: StaffIdPath, principal: StaffPrincipal = as_lock
    ) -> RevokedOut:
        def work(s: Session) -> Done[RevokedOut]:
            n = staff_admin.lock_staff(s, tables, staff_id, principal, now=_now(request))
            return Done(RevokedOut(staff_id=staff_id, revoked=n), detail={"sessions": n})

        return audited(request, principal.staff_id, "staff.lock", work, ref=_ref_of(staff_id))

    def _state_route(path: str, active: bool, action: str, summary: str) -> None:
        who = Depends(access.staff(action))

        @router.post(path, response_model=StaffStateOut, tags=["職員管理"], summary=summary)
        def change_state(
            request: Request, staff_id: StaffIdPath, principal: StaffPrincipal = who
        ) -> StaffStateOut:
            def work(s: Session) -> Done[StaffStateOut]:
                staff_admin.set_staff_active(
                    s, tables, staff_id, active, principal, now=_now(request)
                )
                return Done(StaffStateOut(staff_id=staff_id, active=active))

            return audited(request, principal.staff_id, action, work, ref=_ref_of(staff_id))

    _state_route(
        "/v1/staff/{staff_id}/disable",
        False,
        "staff.disable",
        "職員の利用停止（管理、セッションも終了）",
    )
    _state_route("/v1/staff/{staff_id}/enable", True, "staff.enable", "職員の利用再開（管理）")

    @router.post(
        "/v1/staff/{staff_id}/unlock",
        response_model=StaffStateOut,
        tags=["職員管理"],
        summary="ロックの解除（管理）：ログインの失敗による制限も解除",
    )
    def unlock(
        request: Request, staff_id: StaffIdPath, principal: StaffPrincipal = as_unlock
    ) -> StaffStateOut:
        def work(s: Session) -> Done[StaffStateOut]:
            staff_admin.unlock_staff(s, tables, staff_id, principal)
            row = s.execute(
                select(tables.staff.c.active).where(tables.staff.c.staff_id == staff_id)
            ).scalar_one()
            return Done(StaffStateOut(staff_id=staff_id, active=bool(row)))

        return audited(request, principal.staff_id, "staff.unlock", work, ref=_ref_of(staff_id))

    @router.post(
        "/v1/staff/{staff_id}/revoke-sessions",
        response_model=RevokedOut,
        tags=["職員管理"],
        summary="職員のセッションをすべて終了（管理）",
    )
    def revoke_sessions(
        request: Request, staff_id: StaffIdPath, principal: StaffPrincipal = as_revoke_sessions
    ) -> RevokedOut:
        def work(s: Session) -> Done[RevokedOut]:
            n = staff_admin.revoke_staff_sessions(s, tables, staff_id, principal, now=_now(request))
            return Done(RevokedOut(staff_id=staff_id, revoked=n), detail={"revoked": n})

        return audited(
            request, principal.staff_id, "staff.revoke_sessions", work, ref=_ref_of(staff_id)
        )

    @router.post(
        "/v1/staff/{staff_id}/reset-totp",
        response_model=TotpOut,
        tags=["職員管理"],
        summary="ワンタイムパスワードの再登録（管理）：新しい登録情報を一度だけ返す",
    )
    def reset_totp(
        request: Request,
        response: Response,
        staff_id: StaffIdPath,
        principal: StaffPrincipal = as_reset_totp,
    ) -> TotpOut:
        def work(s: Session) -> Done[TotpOut]:
            uri = staff_admin.reset_staff_totp(
                s,
                tables,
                _cipher(request),
                staff_id,
                principal,
                policy=_policy(request),
                now=_now(request),
            )
            return Done(TotpOut(staff_id=staff_id, totp_uri=uri, totp_qr_svg=_qr(uri)))

        response.headers["Cache-Control"] = "no-store"
        return audited(request, principal.staff_id, "staff.reset_totp", work, ref=_ref_of(staff_id))


# --- alerts (管理) --------------------------------------------------------------------------


def _add_alert_routes(router: APIRouter, access: StaffAccess, tables: GuardTables) -> None:
    reading = Depends(access.staff("alert.list"))
    acking = Depends(access.staff("alert.acknowledge"))

    @router.get(
        "/v1/alerts",
        response_model=AlertListOut,
        tags=["不正通信の検知"],
        summary="警告の一覧（管理）",
    )
    def alerts(
        request: Request,
        principal: StaffPrincipal = reading,
        everything: Annotated[bool, Query(alias="all", description="確認済みも含める")] = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> AlertListOut:
        def work(s: Session) -> Done[AlertListOut]:
            found = staff_admin.list_guard_alerts(
                s, tables, principal, everything=everything, limit=limit
            )
            return Done(
                AlertListOut(alerts=[_alert_out(a) for a in found]), detail={"count": len(found)}
            )

        return audited(request, principal.staff_id, "alert.list", work)

    @router.post(
        "/v1/alerts/{alert_id}/acknowledge",
        response_model=AlertOut,
        tags=["不正通信の検知"],
        summary="警告を確認済みにする（管理）",
    )
    def acknowledge(
        request: Request, alert_id: IdPath, principal: StaffPrincipal = acking
    ) -> AlertOut:
        def work(s: Session) -> Done[AlertOut]:
            alert = staff_admin.acknowledge_guard_alert(
                s, tables, alert_id, principal, now=_now(request)
            )
            return Done(_alert_out(alert))

        return audited(
            request, principal.staff_id, "alert.acknowledge", work, ref=f"guard-alert:{alert_id}"
        )


# --- auditors (監査) ------------------------------------------------------------------------


def _add_audit_routes(router: APIRouter, access: StaffAccess) -> None:
    verifying = Depends(access.staff("audit.verify"))

    @router.get(
        "/v1/audit/verify",
        response_model=VerifyOut,
        tags=["監査"],
        summary="監査ログの改ざん検証（監査）",
    )
    def verify(request: Request, principal: StaffPrincipal = verifying) -> VerifyOut:
        rt = _rt(request)
        resolve = request.app.state.audit_key_resolver

        def work(s: Session) -> Done[VerifyOut]:
            report = auditor.verify_audit_log(s, rt.audit.tables, resolve, roles=principal.roles)
            out = VerifyOut(
                ok=report.ok,
                entries=report.entries,
                checkpoints=report.checkpoints,
                first_broken_seq=report.first_broken_seq,
                problem=report.problem,
                message=report.message,
            )
            detail = {"entries": report.entries, "problem": report.problem}
            return Done(out, detail=detail, outcome="ok" if report.ok else str(report.problem))

        return audited(request, principal.staff_id, "audit.verify", work)


# --- exports --------------------------------------------------------------------------------


def _spool() -> IO[bytes]:
    return cast(IO[bytes], tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES, mode="w+b"))


def _chunks(spool: IO[bytes]) -> Iterator[bytes]:
    try:
        spool.seek(0)
        while chunk := spool.read(_CHUNK):
            yield chunk
    finally:
        spool.close()


def _add_export_routes(router: APIRouter, access: StaffAccess, tables: ExportTables) -> None:
    asking = Depends(access.staff("export.request"))
    reading = Depends(access.staff("export.show"))
    approving = Depends(access.staff("export.approve"))
    rejecting = Depends(access.staff("export.reject"))
    # A download changes state (it runs once): the CSRF token is needed even on GET.
    downloading = Depends(access.staff("export.download", csrf=True))

    @router.get(
        "/v1/exports",
        response_model=ExportListOut,
        tags=["書き出し"],
        summary="書き出し依頼の一覧（その種類の権限を持つ職員）",
    )
    def list_exports(
        request: Request,
        principal: StaffPrincipal = reading,
        status: Annotated[ExportStatus | None, Query(description="例: pending（承認待ち）")] = None,
    ) -> ExportListOut:
        with _rt(request).sessions() as s:
            found = exports.list_exports(
                s, tables, _registry(request), roles=principal.roles, status=status
            )
        return ExportListOut(exports=[_export_out(r) for r in found])

    @router.post(
        "/v1/exports",
        response_model=ExportOut,
        status_code=201,
        tags=["書き出し"],
        summary="書き出しの依頼（件数が上限を超えると別の職員の承認が必要）",
    )
    def request_export(
        request: Request, body: ExportIn, principal: StaffPrincipal = asking
    ) -> ExportOut:
        def work(s: Session) -> Done[ExportOut]:
            req = exports.ask_export(
                s,
                tables,
                _registry(request),
                staff_id=principal.staff_id,
                roles=principal.roles,
                kind=body.kind,
                params=body.params,
                policy=_export_policy(request),
                now=_now(request),
            )
            detail = {
                "kind": req.kind,
                "params": req.params,
                "estimated_rows": req.estimated_rows,
                "status": req.status,
            }
            return Done(_export_out(req), ref=f"export:{req.id}", detail=detail)

        return audited(request, principal.staff_id, "export.request", work)

    @router.get(
        "/v1/exports/{request_id}",
        response_model=ExportOut,
        tags=["書き出し"],
        summary="書き出し依頼の状態",
    )
    def show_export(
        request: Request, request_id: IdPath, principal: StaffPrincipal = reading
    ) -> ExportOut:
        try:
            with _rt(request).sessions() as s:
                req = exports.get_export(
                    s, tables, _registry(request), request_id, roles=principal.roles
                )
        except Problem as exc:
            audit_refusal(
                request, principal.staff_id, "export.show", exc.code, ref=f"export:{request_id}"
            )
            raise
        return _export_out(req)

    def _decision(path: str, reject: bool, action: str, summary: str, who: Any) -> None:
        @router.post(path, response_model=ExportOut, tags=["書き出し"], summary=summary)
        def decide(
            request: Request, request_id: IdPath, principal: StaffPrincipal = who
        ) -> ExportOut:
            def work(s: Session) -> Done[ExportOut]:
                req = exports.decide_export(
                    s,
                    tables,
                    _registry(request),
                    request_id,
                    staff_id=principal.staff_id,
                    roles=principal.roles,
                    now=_now(request),
                    reject=reject,
                )
                return Done(
                    _export_out(req), detail={"kind": req.kind, "requested_by": req.requested_by}
                )

            return audited(request, principal.staff_id, action, work, ref=f"export:{request_id}")

    _decision(
        "/v1/exports/{request_id}/approve",
        False,
        "export.approve",
        "書き出しの承認（依頼者以外で、同じ権限を持つ職員）",
        approving,
    )
    _decision(
        "/v1/exports/{request_id}/reject",
        True,
        "export.reject",
        "書き出しの却下（依頼者以外で、同じ権限を持つ職員）",
        rejecting,
    )

    @router.get(
        "/v1/exports/{request_id}/download",
        tags=["書き出し"],
        summary="書き出しの実行とダウンロード（依頼者本人、1回限り）",
        description="1行目に出力者・依頼番号・承認者・出力日時を記録します。"
        "Cookieでの要求にはヘッダー X-CSRF-Token が必要です。",
        response_class=StreamingResponse,
    )
    def download(
        request: Request, request_id: IdPath, principal: StaffPrincipal = downloading
    ) -> StreamingResponse:
        registry = _registry(request)
        spool = _spool()
        text = io.TextIOWrapper(spool, encoding="utf-8", newline="", write_through=True)

        def work(s: Session) -> Done[ExportKind]:
            result = exports.run_export(
                s,
                tables,
                registry,
                request_id,
                staff_id=principal.staff_id,
                roles=principal.roles,
                policy=_export_policy(request),
                now=_now(request),
                out=text,
            )
            header = result.header
            detail = {
                "kind": header.kind,
                "params": header.params,
                "rows": result.rows,
                "approver": header.approver,
            }
            return Done(registry.get(header.kind), detail=detail)

        try:
            kind = audited(
                request, principal.staff_id, "export.download", work, ref=f"export:{request_id}"
            )
            text.flush()
            text.detach()  # keep the spool open for the response
        except BaseException:
            spool.close()
            raise
        return StreamingResponse(
            _chunks(spool),
            media_type=kind.media_type,
            headers={
                "Content-Disposition": f'attachment; filename="{kind.filename(request_id)}"',
                "Cache-Control": "no-store",
            },
        )


# --- assembling ----------------------------------------------------------------------------


def staff_router(tables: StaffTables, *, parts: Iterable[str] = ALL_PARTS) -> APIRouter:
    """The staff routes of ``parts`` over the node's tables (see the module docstring)."""
    wanted = frozenset(parts)
    unknown = wanted - ALL_PARTS
    if unknown:
        raise ValueError(f"unknown staff route parts: {sorted(unknown)}")
    router = APIRouter()
    access = StaffAccess(tables.auth)
    if "session" in wanted:
        _add_session_routes(router, access)
    if "admin" in wanted:
        _add_admin_routes(router, access)
    if "alerts" in wanted:
        if tables.guard is None:
            raise ValueError("the alerts part needs the node's guard tables")
        _add_alert_routes(router, access, tables.guard)
    if "audit" in wanted:
        _add_audit_routes(router, access)
    if "exports" in wanted:
        if tables.exports is None:
            raise ValueError("the exports part needs the node's export tables")
        _add_export_routes(router, access, tables.exports)
    return router


def mount_staff_api(
    app: FastAPI,
    tables: StaffTables,
    *,
    parts: Iterable[str] = ALL_PARTS,
    extra_exports: Iterable[ExportKind] = (),
    cipher: FieldCipher | None = None,
    auth_policy: auth.AuthPolicy | None = None,
) -> StaffAccess:
    """Add the staff routes to a node's app (built by `renkei.core.app.node_app`).

    Keeps what the node already put on ``app.state`` (atena's cipher, clock and auth
    policy) and fills in the rest: the authentication clock (the runtime's), the field
    cipher (the node's keyring), the auth policy, the role policy (``[extra]
    admin_may_hold_data_roles``), the export policy (``[extra]
    export_approval_rows``), the export registry (``audit`` plus
    ``extra_exports``; a node may register more on ``app.state.export_registry``) and
    the node's audit-key resolver. Returns the `StaffAccess` for the node's own staff
    routes.
    """
    rt: NodeRuntime = app.state.rt
    state = app.state
    if cipher is not None:
        state.cipher = cipher
    if getattr(state, "cipher", None) is None:
        state.cipher = staff_admin.node_cipher(rt.config)
    if getattr(state, "clock", None) is None:
        state.clock = rt.clock
    if auth_policy is not None:
        state.auth_policy = auth_policy
    if getattr(state, "auth_policy", None) is None:
        state.auth_policy = auth.DEFAULT_POLICY
    if getattr(state, "export_policy", None) is None:
        try:
            state.export_policy = ExportPolicy.from_config(rt.config.extra)
        except ValueError as exc:
            raise ConfigError(f"[extra] export_approval_rows の値が誤っています: {exc}") from None
    if getattr(state, "role_policy", None) is None:
        try:
            state.role_policy = RolePolicy.from_config(rt.config.extra)
        except ValueError as exc:
            raise ConfigError(
                f"[extra] admin_may_hold_data_roles の値が誤っています: {exc}"
            ) from None
    if getattr(state, "export_registry", None) is None:
        state.export_registry = ExportRegistry([export_kinds.audit_export_kind(rt.audit.tables)])
    for kind in extra_exports:
        state.export_registry.register(kind)
    if getattr(state, "audit_key_resolver", None) is None:
        state.audit_key_resolver = auditor.node_key_resolver(rt.config)
    app.include_router(staff_router(tables, parts=parts))
    if OAuthError not in app.exception_handlers:

        async def _bearer_refusal(_: Request, exc: Exception) -> Response:
            assert isinstance(exc, OAuthError)
            return bearer_problem_response(exc)

        app.add_exception_handler(OAuthError, _bearer_refusal)
    return StaffAccess(tables.auth)
