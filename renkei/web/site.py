"""Staff sign-in, sessions and CSRF for the UI of any node (given its AuthTables).

Sign-in is ID + password + TOTP (`renkei.staff.auth.login`). The session is the
kernel's DB session behind an opaque cookie (``__Host-renkei-staff``: HttpOnly,
Secure, SameSite=Strict), bound to the terminal it was opened on. Every POST carries
the session's synchronizer CSRF token (form field ``csrf_token`` or header
``X-CSRF-Token``, which htmx sends from ``hx-headers``); the sign-in form itself is
protected by a double-submit token in a ``__Host-`` cookie (login CSRF).

First-login TOTP enrolment. An administrator creates the account with an initial
password (the TOTP secret is created with it but never shown to the administrator).
While the secret has never been used (``totp_last_step`` is NULL: new account or a
reset by an administrator), a sign-in with the right password and no or a wrong code
shows the QR code instead of refusing; the staff member scans it and signs in with the
password and the first code, which `login` checks and marks used (so it cannot be
replayed). `login` itself proves the password: it raises ``totp_required`` or
``totp_invalid`` only after the password verified (a throttled or locked account gets
``bad_credentials`` first, so no QR code), and wrong passwords count towards the
sign-in throttle as on any sign-in. Once a code has been used, the QR is never shown again.

Expired passwords (`PasswordRules`): the initial password set by an administrator,
and optionally any password older than a number of days, must be changed before any
other page opens.
"""

from __future__ import annotations

import hmac
import re
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.responses import Response

from renkei.core.audit.log import AuditEvent, AuditTables
from renkei.core.crypto.field import FieldCipher
from renkei.core.errors import Problem
from renkei.staff import auth
from renkei.staff.auth import AUTH_ERROR_CODES, AuthError, AuthPolicy, AuthTables, StaffPrincipal
from renkei.staff.role_requests import RolePolicy
from renkei.staff.roles import ADMIN, AUDIT, PermissionDenied, parse_role, require
from renkei.web.pages import PasswordChangeRequired, SignInRequired, redirect, render

SESSION_COOKIE: Final = "__Host-renkei-staff"
LOGIN_COOKIE: Final = "__Host-renkei-login"
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "X-CSRF-Token"
LOGIN_CSRF_FIELD: Final = "login_csrf"
ANONYMOUS: Final = "anonymous"
_LOGIN_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{43}")
_SAFE_ACTOR: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_DIGIT_RUN: Final = re.compile(r"\d{12,}")
_MAX_FIELD: Final = 4096

# Messages for the sign-in page, by reason code (never text taken from the URL).
REASONS: Final[dict[str, str]] = {
    **{code: message for code, (_status, message) in AUTH_ERROR_CODES.items()},
    "logged_out": "ログアウトしました。",
    "terminal_changed": "別の端末で開始されたログインは使用できません。この端末でログインしてください。",
}
DONE: Final = {"password": "パスワードを変更しました。"}


@dataclass(frozen=True)
class MenuItem:
    """A node's own page on the home page and in the header, shown to roles that may use it."""

    label: str
    path: str
    visible: Callable[[frozenset[str]], bool]


@dataclass(frozen=True)
class PasswordRules:
    """When a password counts as expired (0 days: no age limit)."""

    max_age_days: int = 0
    change_initial: bool = True


def _plain_role(role: str) -> str:
    return role


@dataclass
class StaffSite:
    """Everything the generic pages need from a node; kept on ``app.state.site``.

    ``clock``, ``policy``, ``role_policy`` and ``cipher`` are read per request (tests
    move the clock).
    ``screen(staff_id, person)`` applies the node's abnormal-traffic guard.
    """

    title: str
    org_name: str
    tables: AuthTables
    audit_tables: AuditTables
    sessions: sessionmaker[Session]
    cipher: Callable[[], FieldCipher]
    record: Callable[[Session, AuditEvent], int]
    clock: Callable[[], datetime]
    policy: Callable[[], AuthPolicy]
    screen: Callable[[str, str | None], None]
    terminal_check: bool
    passwords: PasswordRules = field(default_factory=PasswordRules)
    menu: tuple[MenuItem, ...] = ()
    describe_role: Callable[[str], str] = _plain_role
    role_policy: Callable[[], RolePolicy] = RolePolicy

    def menu_for(self, roles: frozenset[str]) -> list[MenuItem]:
        return [m for m in self.menu if m.visible(roles)]


@dataclass(frozen=True)
class Staff:
    """The signed-in staff member of a request, with the session's CSRF token."""

    principal: StaffPrincipal
    csrf_token: str

    @property
    def staff_id(self) -> str:
        return self.principal.staff_id

    @property
    def roles(self) -> frozenset[str]:
        return self.principal.roles


def site_of(request: Request) -> StaffSite:
    site: StaffSite = request.app.state.site
    return site


def terminal_of(request: Request) -> str:
    return request.client.host if request.client else ""


def actor_of(presented: str) -> str:
    """A presented (unauthenticated) staff ID fit for the audit log, else "anonymous"."""
    sid = presented.strip()
    if _SAFE_ACTOR.fullmatch(sid) and not _DIGIT_RUN.search(sid):
        return sid
    return ANONYMOUS


def audit(
    request: Request, actor: str, action: str, outcome: str, **fields: Any
) -> None:
    """Record one event in a transaction of its own (refusals, reads).

    Values that the audit log refuses (they look like an individual number) are left
    out rather than losing the entry.
    """
    site = site_of(request)
    event = AuditEvent(
        actor=actor, terminal=terminal_of(request), action=action, outcome=outcome, **fields
    )
    with site.sessions() as s:
        try:
            site.record(s, event)
        except ValueError:
            site.record(s, replace(event, subject=None, ref=None, detail={"redacted": True}))
        s.commit()


def require_role(
    request: Request, staff: Staff, needed: str, action: str, *, affair: str | None = None
) -> None:
    """`roles.require`, with the refusal audited under ``action``."""
    try:
        require(staff.roles, needed, affair=affair)
    except PermissionDenied as exc:
        audit(request, staff.staff_id, action, exc.code, affair=affair)
        raise


# --- forms ------------------------------------------------------------------------------


def clean_text(value: str, label: str = "入力") -> str:
    """Refuse control characters (NUL would even break PostgreSQL) with a 422 Problem."""
    if any(unicodedata.category(ch) == "Cc" and ch not in "\t\r\n" for ch in value):
        raise Problem(422, "invalid_characters", f"{label}に使用できない文字が含まれています。")
    return value


async def form_fields(request: Request) -> dict[str, str]:
    """The text fields of a posted form (files ignored, each value at most 4 KiB)."""
    if request.method in {"GET", "HEAD"}:
        return {}
    form = await request.form()
    out: dict[str, str] = {}
    for key, value in form.multi_items():
        if isinstance(value, str) and key not in out:
            out[clean_text(key)] = clean_text(value[:_MAX_FIELD])
    return out


Form = Annotated[dict[str, str], Depends(form_fields)]


# --- who is signed in -------------------------------------------------------------------


def password_expired(
    session: Session, tables: AuthTables, rules: PasswordRules, staff_id: str, now: datetime
) -> bool:
    """Whether the staff member must change the password before using any other page."""
    st = tables.staff
    row = session.execute(
        select(st.c.created_at, st.c.password_changed_at).where(st.c.staff_id == staff_id)
    ).one_or_none()
    if row is None:
        return False
    created, changed = row
    if rules.change_initial and changed == created:
        return True  # still the password the administrator set
    return rules.max_age_days > 0 and now - changed >= timedelta(days=rules.max_age_days)


def _signed_in(request: Request, *, csrf: str | None, check_csrf: bool, allow_expired: bool) -> Staff:
    site = site_of(request)
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired("session_unknown")
    now = site.clock()
    actor = ANONYMOUS
    with site.sessions() as s:
        try:
            principal = auth.authenticate(s, site.tables, token, policy=site.policy(), now=now)
            actor = principal.staff_id
            if principal.terminal is not None and principal.terminal != terminal_of(request):
                # The cookie was carried to another terminal: end that session.
                auth.logout(s, site.tables, principal, now=now)
                s.commit()
                audit(request, actor, "session.check", "terminal_changed")
                raise SignInRequired("terminal_changed")
            if check_csrf:
                auth.check_csrf(s, site.tables, principal, csrf)
            expired = password_expired(s, site.tables, site.passwords, principal.staff_id, now)
            s.commit()
        except AuthError as exc:
            s.rollback()  # a forged request does not even extend the idle timeout
            audit(request, actor, "session.check", exc.code)
            if exc.code == "csrf_failed":
                raise
            raise SignInRequired(exc.code) from None
    staff = Staff(principal=principal, csrf_token=auth.csrf_token_for(token))
    request.state.staff = staff
    if expired and not allow_expired:
        raise PasswordChangeRequired()
    return staff


def viewer(request: Request) -> Staff:
    """A signed-in staff member (GET)."""
    return _signed_in(request, csrf=None, check_csrf=False, allow_expired=False)


def actor(request: Request, form: Form) -> Staff:
    """A signed-in staff member whose POST carries the session's CSRF token."""
    presented = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    return _signed_in(request, csrf=presented, check_csrf=True, allow_expired=False)


def password_viewer(request: Request) -> Staff:
    return _signed_in(request, csrf=None, check_csrf=False, allow_expired=True)


def password_actor(request: Request, form: Form) -> Staff:
    presented = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    return _signed_in(request, csrf=presented, check_csrf=True, allow_expired=True)


Viewer = Annotated[Staff, Depends(viewer)]
Actor = Annotated[Staff, Depends(actor)]
PasswordViewer = Annotated[Staff, Depends(password_viewer)]
PasswordActor = Annotated[Staff, Depends(password_actor)]


def set_cookie(response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="strict"
    )


def clear_cookie(response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", secure=True, httponly=True, samesite="strict")


# --- TOTP enrolment ---------------------------------------------------------------------


def _sid(staff_id: str) -> str:
    return unicodedata.normalize("NFKC", staff_id).strip()  # as core.auth looks staff up


def unenrolled(session: Session, tables: AuthTables, staff_id: str) -> bool:
    """The account has a TOTP secret that no sign-in has used yet."""
    st = tables.staff
    sid = _sid(staff_id)
    row = session.execute(
        select(st.c.totp_secret, st.c.totp_last_step).where(st.c.staff_id == sid)
    ).one_or_none()
    return row is not None and row[0] is not None and row[1] is None


def enrolment_uri(
    session: Session, tables: AuthTables, cipher: FieldCipher, staff_id: str, policy: AuthPolicy
) -> str:
    """The provisioning URI of a not yet enrolled account (call only after the password verified)."""
    st = tables.staff
    sid, blob = session.execute(
        select(st.c.staff_id, st.c.totp_secret).where(st.c.staff_id == _sid(staff_id))
    ).one()
    secret = cipher.decrypt(bytes(blob), (auth.TOTP_AAD_TABLE, auth.TOTP_AAD_COLUMN, sid))
    return auth.totp_uri(sid, secret, issuer=policy.totp_issuer)


def _secret_of(uri: str) -> str:
    """The base32 secret in groups of four, for typing it into an app by hand."""
    match = re.search(r"[?&]secret=([A-Z2-7]+)", uri)
    raw = match.group(1) if match else ""
    return " ".join(raw[i : i + 4] for i in range(0, len(raw), 4))


# --- role descriptions ------------------------------------------------------------------


def describe_named_role(role: str) -> str:
    """Japanese description of a role that names no affair."""
    parsed = parse_role(role)
    if parsed.scope is None:
        return {ADMIN: "職員・システムの管理", AUDIT: "監査ログの閲覧"}.get(parsed.operation, role)
    return f"{parsed.scope}：{parsed.operation}"


# --- routes -----------------------------------------------------------------------------

router = APIRouter()


def _login_token(request: Request) -> str:
    current = request.cookies.get(LOGIN_COOKIE, "")
    return current if _LOGIN_TOKEN.fullmatch(current) else secrets.token_urlsafe(32)


def _login_page(
    request: Request,
    *,
    status: int = 200,
    message: str | None = None,
    staff_id: str = "",
    template: str = "login.html",
    extra: dict[str, Any] | None = None,
) -> Response:
    token = _login_token(request)
    response = render(
        request,
        template,
        {"login_csrf": token, "message": message, "staff_id": staff_id, **(extra or {})},
        status=status,
    )
    set_cookie(response, LOGIN_COOKIE, token, 3600)
    return response


@router.get("/login")
def login_form(request: Request, reason: str = "") -> Response:
    return _login_page(request, message=REASONS.get(reason))


@router.post("/login")
def login(request: Request, form: Form) -> Response:
    site = site_of(request)
    staff_id = form.get("staff_id", "").strip()
    password = form.get("password", "")
    code = form.get("totp", "").strip()
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    presented = form.get(LOGIN_CSRF_FIELD, "")
    if not (
        _LOGIN_TOKEN.fullmatch(cookie)
        and hmac.compare_digest(cookie.encode(), presented.encode("utf-8", "replace"))
    ):
        audit(request, actor_of(staff_id), "session.login", "csrf_failed")
        return _login_page(
            request, status=403, message=AUTH_ERROR_CODES["csrf_failed"][1], staff_id=staff_id
        )
    policy = site.policy()
    now = site.clock()
    enrol_uri: str | None = None
    refusal: AuthError | None = None
    with auth.auth_transaction(site.sessions) as s:
        first = unenrolled(s, site.tables, staff_id) if staff_id else False
        try:
            result = auth.login(
                s,
                site.tables,
                site.cipher(),
                staff_id,
                password,
                code or None,
                terminal=terminal_of(request),
                policy=policy,
                now=now,
            )
        except AuthError as exc:
            # Committed with the failure counter (the with-block ends normally).
            refusal = exc
            if first and exc.code in {"totp_required", "totp_invalid"}:
                # The password verified (login checks it before the code): show the QR.
                enrol_uri = enrolment_uri(s, site.tables, site.cipher(), staff_id, policy)
            site.record(
                s,
                AuditEvent(
                    actor=actor_of(staff_id),
                    terminal=terminal_of(request),
                    action="session.login",
                    # The log says why (throttled, locked …); the page does not.
                    outcome="totp_enrolment" if enrol_uri is not None and not code else exc.reason,
                ),
            )
        else:
            site.record(
                s,
                AuditEvent(
                    actor=actor_of(staff_id),
                    terminal=terminal_of(request),
                    action="session.login",
                    outcome="ok",
                    detail={"totp_enrolled": True} if first else None,
                ),
            )
    if enrol_uri is not None:
        assert refusal is not None
        return _login_page(
            request,
            status=200 if not code else refusal.status,
            message=None if not code else refusal.message_ja,
            staff_id=staff_id,
            template="enrol.html",
            extra={"qr": Markup(auth.totp_qr_svg(enrol_uri)), "secret": _secret_of(enrol_uri)},
        )
    if refusal is not None:
        return _login_page(
            request, status=refusal.status, message=refusal.message_ja, staff_id=staff_id
        )
    response = redirect(request, "/")
    set_cookie(response, SESSION_COOKIE, result.token, int((result.expires_at - now).total_seconds()))
    clear_cookie(response, LOGIN_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, staff: Actor) -> Response:
    site = site_of(request)
    with site.sessions() as s:
        auth.logout(s, site.tables, staff.principal, now=site.clock())
        site.record(
            s,
            AuditEvent(
                actor=staff.staff_id, terminal=terminal_of(request), action="session.logout", outcome="ok"
            ),
        )
        s.commit()
    response = redirect(request, "/login?reason=logged_out")
    clear_cookie(response, SESSION_COOKIE)
    return response


@router.get("/")
def home(request: Request, staff: Viewer, done: str = "") -> Response:
    site = site_of(request)
    roles = [(r, site.describe_role(r)) for r in sorted(staff.roles)]
    return render(
        request,
        "home.html",
        {"staff": staff, "roles": roles, "menu": site.menu_for(staff.roles), "done": DONE.get(done)},
    )


@router.get("/password")
def password_form(request: Request, staff: PasswordViewer) -> Response:
    return _password_page(request, staff)


def _password_page(
    request: Request, staff: Staff, *, status: int = 200, problems: list[str] | None = None
) -> Response:
    site = site_of(request)
    with site.sessions() as s:
        expired = password_expired(s, site.tables, site.passwords, staff.staff_id, site.clock())
    return render(
        request,
        "password.html",
        {"staff": staff, "expired": expired, "problems": problems or [], "policy": site.policy()},
        status=status,
    )


@router.post("/password")
def change_password(request: Request, staff: PasswordActor, form: Form) -> Response:
    site = site_of(request)
    new = form.get("new_password", "")
    if new != form.get("new_password_again", ""):
        return _password_page(
            request, staff, status=422, problems=["新しいパスワード（確認）が一致しません。"]
        )
    try:
        with auth.auth_transaction(site.sessions) as s:
            auth.change_password(
                s,
                site.tables,
                staff.staff_id,
                form.get("current_password", ""),
                new,
                policy=site.policy(),
                now=site.clock(),
                keep_session_id=staff.principal.session_id,
                source=terminal_of(request),
            )
            site.record(
                s,
                AuditEvent(
                    actor=staff.staff_id,
                    terminal=terminal_of(request),
                    action="password.change",
                    outcome="ok",
                ),
            )
    except AuthError as exc:
        audit(request, staff.staff_id, "password.change", exc.reason)
        problems = list(exc.problems) or [exc.message_ja]
        if exc.code == "password_policy":
            problems = ["パスワードが要件を満たしていません。", *exc.problems]
        return _password_page(request, staff, status=exc.status, problems=problems)
    return redirect(request, "/?done=password")
