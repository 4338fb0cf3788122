"""atena routes for business systems and staff terminals (JSON; node-to-node calls are sealed).

Who may call what (DESIGN.md §5):

- staff sign in with `POST /v1/session` (staff ID, password, TOTP) and are then known by
  an opaque session cookie (HttpOnly, Secure, SameSite=Strict); state-changing requests
  made with the cookie also carry the session's CSRF token in ``X-CSRF-Token``. Scripts
  of a staff member use a personal API token (``Authorization: Bearer``, no CSRF),
  limited to some of the staff member's roles;
- business systems use OAuth 2.0 client credentials (``client_secret_jwt`` at
  ``/oauth/token``) and send the short-lived access token as ``Authorization: Bearer``;
  each route needs one scope ``業務システムID:リソース:操作``.

Every refusal is problem+json with a stable code and a Japanese title, and is audited.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import select

from renkei.atena import service
from renkei.atena.models import auth as auth_t
from renkei.atena.models import oauth as oauth_t
from renkei.atena.schemas import (
    AcquireIn,
    AcquireOut,
    ApiTokenIn,
    ApiTokenOut,
    FukuhonIn,
    FukuhonOut,
    InquiryIn,
    InquiryOut,
    PrincipalOut,
    ResidentsIn,
    ResidentsOut,
    SessionIn,
    SessionOut,
    StatusIn,
    StatusOut,
)
from renkei.core import auth, ids
from renkei.core.audit import AuditEvent
from renkei.core.db import transaction
from renkei.core.errors import Problem
from renkei.core.node import NodeRuntime
from renkei.core.oauth import OAuthError, authenticate_bearer, introspect
from renkei.core.text.wareki import to_wareki

router = APIRouter()

STATUS_LABELS = service.STATUS_LABELS
CHUNK = 1000

# __Host-: the browser keeps the cookie only if it is Secure, has Path=/ and no Domain.
SESSION_COOKIE = "__Host-renkei-session"
CSRF_HEADER = "X-CSRF-Token"
DEFAULT_RESIDENT_SYSTEM = "jumin01"
ANONYMOUS = "anonymous"
_SCOPE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_SAFE_ACTOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_DIGIT_RUN = re.compile(r"\d{12,}")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_NO_SCOPE = "-"  # a scope no token can hold (the request names a malformed system ID)


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


def resident_system(request: Request) -> str:
    """The business-system ID of the resident register (scopes ``<id>:residents:register``)."""
    return str(request.app.state.resident_system)


def _terminal(request: Request) -> str:
    return request.client.host if request.client else ""


def _actor_of(presented: str) -> str:
    """A presented (unauthenticated) staff ID fit for the audit log, else "anonymous"."""
    sid = presented.strip()
    if _SAFE_ACTOR.fullmatch(sid) and not _DIGIT_RUN.search(sid):
        return sid
    return ANONYMOUS


def _audit_refusal(
    request: Request, actor: str, action: str, outcome: str, **fields: Any
) -> None:
    rt = _rt(request)
    with transaction(rt.sessions) as s:
        rt.record(
            s,
            AuditEvent(
                actor=actor, terminal=_terminal(request), action=action, outcome=outcome, **fields
            ),
        )


def _screen(
    request: Request, kind: str, subject: str, action: str, *, person: str | None = None
) -> None:
    """Rate limits and abnormal-traffic rules for a staff member or business system.

    A refusal (429 rate_limited, 403 blocked_by_rule) is audited under the action; the
    guard itself records the alert.
    """
    try:
        _rt(request).screen(kind, subject, person)
    except Problem as exc:
        _audit_refusal(request, subject, action, exc.code, subject=person)
        raise


# --- who is calling -------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: a staff member or a business system (OAuth client)."""

    actor: str  # staff ID or OAuth client ID
    kind: str  # staff | client
    staff: auth.StaffPrincipal | None = None


def _authentication_required(message: str) -> OAuthError:
    # reason "missing_token": the bare RFC 6750 challenge, without an error attribute.
    return OAuthError(401, "authentication_required", message, reason="missing_token", challenge=True)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None or not header.strip():
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip()


def _token_client(request: Request, token: str | None) -> str:
    """The OAuth client of a live token, for the audit entry of a refusal."""
    if not token:
        return ANONYMOUS
    with _rt(request).sessions() as s:
        info = introspect(s, oauth_t, token, _now(request))
    return str(info.get("client_id") or ANONYMOUS)


def business_system(
    scope: Callable[[Request], Awaitable[str | None]], action: str
) -> Callable[[Request], Awaitable[Caller]]:
    """Dependency: an OAuth bearer token holding ``scope(request)``.

    ``scope`` returning None means the scope cannot be told yet (the body is malformed):
    the token must then be live, and the body's validation refuses the request.
    """

    async def dependency(request: Request) -> Caller:
        rt = _rt(request)
        token = _bearer(request)
        needed: str | None = None
        try:
            if token is None:
                raise _authentication_required(
                    "認証が必要です。業務システムは /oauth/token で取得したアクセストークンを"
                    "Authorization: Bearer ヘッダーで送ってください。"
                )
            needed = await scope(request)
            now = _now(request)
            with rt.sessions() as s:
                if needed is None or needed == _NO_SCOPE:
                    info = introspect(s, oauth_t, token, now)
                    if not info.get("active"):
                        raise OAuthError(
                            401,
                            "invalid_token",
                            "アクセストークンが無効です（期限切れ・失効・不明）。トークンを取得し直してください。",
                            reason="inactive_token",
                            challenge=True,
                        )
                    if needed == _NO_SCOPE:
                        raise OAuthError(
                            403,
                            "insufficient_scope",
                            "業務システムIDの形式が正しくないため、この操作を許可できません"
                            "（英数字・_・-・.の64文字以内）。",
                            reason="insufficient_scope",
                            challenge=True,
                        )
                    return Caller(actor=str(info["client_id"]), kind="client")
                principal = authenticate_bearer(
                    s, oauth_t, request.headers.get("authorization"), needed, now
                )
        except OAuthError as exc:
            detail = {"scope": needed} if needed and needed != _NO_SCOPE else None
            _audit_refusal(request, _token_client(request, token), action, exc.error, detail=detail)
            raise
        _screen(request, "client", principal.client_id, action)
        return Caller(actor=principal.client_id, kind="client")

    return dependency


def _static_scope(resource: str) -> Callable[[Request], Awaitable[str | None]]:
    async def scope(request: Request) -> str | None:
        return f"{resident_system(request)}:{resource}"

    return scope


async def _fukuhon_scope(request: Request) -> str | None:
    """``<system>:fukuhon:register`` for the body's ``system``."""
    try:
        body = await request.json()
    except ValueError:
        return None
    system = body.get("system") if isinstance(body, dict) else None
    if not isinstance(system, str) or not system:
        return None
    if not _SCOPE_PART.fullmatch(system):
        return _NO_SCOPE  # no client can hold a scope for such a system ID
    return f"{system}:fukuhon:register"


def _staff_principal(request: Request, *, api_token_ok: bool = True) -> auth.StaffPrincipal:
    """Session cookie (CSRF token for state-changing methods) or personal API token."""
    rt = _rt(request)
    now = _now(request)
    token = _bearer(request)
    with auth.auth_transaction(rt.sessions) as s:
        if token is not None:
            if not api_token_ok:
                raise Problem(
                    403,
                    "session_required",
                    "この操作にはログインが必要です（APIトークンでは実行できません）。",
                )
            return auth.authenticate_api_token(s, auth_t, token, now=now)
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise _authentication_required(
                "認証が必要です。職員IDとパスワード、ワンタイムパスワードでログインしてください。"
            )
        principal = auth.authenticate(s, auth_t, cookie, policy=_policy(request), now=now)
        if request.method not in _SAFE_METHODS:
            try:
                auth.check_csrf(s, auth_t, principal, request.headers.get(CSRF_HEADER))
            except auth.AuthError as exc:
                exc.extra["actor"] = principal.staff_id
                raise
        return principal


def staff(
    action: str, *, api_token_ok: bool = True, screen: bool = True
) -> Callable[[Request], Caller]:
    """Dependency: a signed-in staff member (or their API token); refusals are audited.

    ``screen=False`` leaves the abnormal-traffic check to the route, which knows the
    person the request is about (a lookup counts towards "many unrelated persons").
    """

    def dependency(request: Request) -> Caller:
        try:
            principal = _staff_principal(request, api_token_ok=api_token_ok)
        except (auth.AuthError, OAuthError, Problem) as exc:
            code = exc.error if isinstance(exc, OAuthError) else exc.code
            actor = ANONYMOUS
            if isinstance(exc, Problem):
                actor = str(exc.extra.pop("actor", ANONYMOUS))
            _audit_refusal(request, actor, action, code)
            raise
        if screen:
            _screen(request, "staff", principal.staff_id, action)
        return Caller(actor=principal.staff_id, kind="staff", staff=principal)

    return dependency


# Who may call each route (FastAPI dependencies; refusals are audited under the action).
ResidentRegister = Annotated[
    Caller, Depends(business_system(_static_scope("residents:register"), "residents.register"))
]
PseudonymAcquirer = Annotated[
    Caller, Depends(business_system(_static_scope("pseudonyms:acquire"), "pseudonym.acquire"))
]
PseudonymStatusReader = Annotated[
    Caller, Depends(business_system(_static_scope("pseudonyms:acquire"), "pseudonym.status"))
]
FukuhonRegister = Annotated[Caller, Depends(business_system(_fukuhon_scope, "fukuhon.register"))]
InquiringStaff = Annotated[Caller, Depends(staff("inquiry", screen=False))]
SignedInStaff = Annotated[Caller, Depends(staff("session.show"))]
LeavingStaff = Annotated[Caller, Depends(staff("session.logout", api_token_ok=False))]
TokenIssuingStaff = Annotated[Caller, Depends(staff("api_token.issue", api_token_ok=False))]


@router.get("/healthz", tags=["運用"])
async def healthz() -> dict[str, str]:
    return {"status": "ok", "node": "atena"}


@router.post(
    "/v1/residents",
    response_model=ResidentsOut,
    tags=["宛名管理"],
    summary="住民の登録（団体内統合宛名番号の付番）",
)
async def residents(
    request: Request,
    body: ResidentsIn,
    caller: ResidentRegister,
) -> ResidentsOut:
    rt = _rt(request)
    with transaction(rt.sessions) as s:
        atena_nos = service.register_residents(
            s, request.app.state.cipher, body.persons, rt.clock()
        )
        rt.record(
            s,
            AuditEvent(
                actor=caller.actor,
                terminal=_terminal(request),
                action="residents.register",
                outcome="ok",
                detail={"count": len(atena_nos)},
            ),
        )
    return ResidentsOut(atena_nos=atena_nos)


@router.post(
    "/v1/pseudonyms/acquire",
    response_model=AcquireOut,
    tags=["符号取得"],
    summary="符号取得（中間サーバー・J-LIS経由）",
)
async def acquire(
    request: Request,
    body: AcquireIn,
    caller: PseudonymAcquirer,
) -> AcquireOut:
    rt = _rt(request)
    with rt.sessions() as s:
        if body.all_pending:
            targets = service.persons_without_pseudonym(s)
        else:
            targets = [
                ids.validate(ids.IdKind.ATENA_NO, a)
                if ids.check(ids.IdKind.ATENA_NO, a) is None
                else _bad(a)
                for a in body.atena_nos or []
            ]
    problems: dict[str, int] = {}
    relayed = 0
    jlis_org = str(rt.config.extra.get("jlis_org_code", ""))
    for start in range(0, len(targets), CHUNK):
        chunk = targets[start : start + CHUNK]
        # Step 1: our chukan gets acquisition numbers from the hub.
        answer = await rt.peer.call(
            rt.config.peer("chukan") + "/v1/acquisitions",
            rt.org_code,
            "pseudonym.acquire",
            {"atena_nos": chunk},
        )
        pairs = {str(i["atena_no"]): str(i["acquisition_no"]) for i in answer.body.get("items", [])}
        with rt.sessions() as s:
            numbers = service.individual_numbers(s, request.app.state.cipher, pairs)
        # Step 2: J-LIS gets (individual number, acquisition number), never the 統合宛名番号.
        items = [
            {"individual_number": numbers[a], "acquisition_no": n}
            for a, n in pairs.items()
            if a in numbers
        ]
        result = await rt.peer.call(
            rt.config.peer("jlis") + "/v1/acquisitions",
            jlis_org,
            "acquisition.submit",
            {"items": items},
        )
        for r in result.body.get("results", []):
            st = str(r.get("status"))
            if st == "relayed":
                relayed += 1
            else:
                problems[st] = problems.get(st, 0) + 1
        with transaction(rt.sessions) as s:
            service.set_pseudonym_status(s, pairs.keys(), "requested")
            rt.record(
                s,
                AuditEvent(
                    actor=caller.actor,
                    terminal=_terminal(request),
                    action="pseudonym.acquire",
                    outcome="ok",
                    detail={"count": len(pairs)},
                ),
            )
    return AcquireOut(requested=len(targets), relayed=relayed, problems=problems)


def _bad(value: str) -> str:
    problem = ids.check(ids.IdKind.ATENA_NO, value)
    assert problem is not None
    raise Problem(422, "invalid_atena_no", problem.message)


@router.post(
    "/v1/pseudonyms/status", response_model=StatusOut, tags=["符号取得"], summary="符号取得状況"
)
async def status(
    request: Request,
    body: StatusIn,
    caller: PseudonymStatusReader,
) -> StatusOut:
    rt = _rt(request)
    for a in body.atena_nos:
        if ids.check(ids.IdKind.ATENA_NO, a) is not None:
            _bad(a)
    bound: list[str] = []
    for start in range(0, len(body.atena_nos), CHUNK):
        chunk = body.atena_nos[start : start + CHUNK]
        answer = await rt.peer.call(
            rt.config.peer("chukan") + "/v1/acquisitions/status",
            rt.org_code,
            "pseudonym.status",
            {"atena_nos": chunk},
        )
        bound.extend(str(a) for a in answer.body.get("bound", []))
    with transaction(rt.sessions) as s:
        service.set_pseudonym_status(s, bound, "bound")
    return StatusOut(total=len(body.atena_nos), bound=len(bound))


@router.post(
    "/v1/fukuhon",
    response_model=FukuhonOut,
    tags=["副本登録"],
    summary="副本の登録（業務宛名番号で指定）",
)
async def fukuhon(
    request: Request,
    body: FukuhonIn,
    caller: FukuhonRegister,
) -> FukuhonOut:
    rt = _rt(request)
    records: list[dict[str, Any]] = []
    with rt.sessions() as s:
        for index, rec in enumerate(body.records):
            try:
                atena_no = service.translate(s, body.system, str(rec.get("business_atena_no", "")))
            except Problem as exc:
                exc.extra["index"] = index
                raise
            out = {k: v for k, v in rec.items() if k != "business_atena_no"}
            out["atena_no"] = atena_no
            records.append(out)
    if not records:
        raise Problem(422, "bad_count", "副本を1件以上指定してください。")
    answer = await rt.peer.call(
        rt.config.peer("chukan") + "/v1/fukuhon",
        rt.org_code,
        "fukuhon.register",
        {"records": records},
    )
    with transaction(rt.sessions) as s:
        rt.record(
            s,
            AuditEvent(
                actor=caller.actor,
                terminal=_terminal(request),
                action="fukuhon.register",
                outcome="ok",
                detail={"system": body.system, "count": int(answer.body.get("registered", 0))},
            ),
        )
    return FukuhonOut(registered=int(answer.body.get("registered", 0)))


@router.post("/v1/inquiries", response_model=InquiryOut, tags=["情報照会"], summary="情報照会")
async def inquiry(
    request: Request, body: InquiryIn, caller: InquiringStaff
) -> InquiryOut:
    roles = caller.staff.roles if caller.staff is not None else frozenset()
    result = await service.inquire(
        _rt(request),
        request.app.state.catalogue,
        service.InquiryRequest(
            procedure_code=body.procedure_code,
            info_kind_code=body.info_kind_code,
            provider_org=body.provider_org,
            as_of=body.as_of,
            system=body.system,
            business_atena_no=body.business_atena_no,
        ),
        actor=caller.actor,
        roles=roles,
        terminal=_terminal(request),
    )
    return InquiryOut(
        serial=result.serial,
        status=result.status,
        status_label=result.status_label,
        values=result.values,
        edition=result.edition,
        record_key=result.record_key,
        as_of=result.as_of.isoformat(),
        as_of_wareki=to_wareki(result.as_of),
    )


# --- staff sign-in --------------------------------------------------------------------------


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


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _encodable(*values: str | None) -> None:
    """Refuse lone surrogates and control characters (PostgreSQL rejects NUL in text)."""
    for value in values:
        try:
            (value or "").encode("utf-8")
            usable = not _CONTROL.search(value or "")
        except UnicodeEncodeError:
            usable = False
        if not usable:
            raise Problem(
                422, "invalid_request", "入力内容に誤りがあります。", "使用できない文字が含まれています。"
            )


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
    _encodable(body.staff_id, body.password, body.totp)
    with auth.auth_transaction(rt.sessions) as s:
        try:
            result = auth.login(
                s,
                auth_t,
                request.app.state.cipher,
                body.staff_id,
                body.password,
                body.totp,
                terminal=_terminal(request),
                policy=policy,
                now=now,
            )
        except auth.AuthError as exc:
            # Committed with the failure counter (auth_transaction commits on AuthError).
            rt.record(
                s,
                AuditEvent(
                    actor=_actor_of(body.staff_id),
                    terminal=_terminal(request),
                    action="session.login",
                    outcome=exc.code,
                ),
            )
            raise
        principal = auth.authenticate(s, auth_t, result.token, policy=policy, now=now)
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
def who_am_i(caller: SignedInStaff) -> PrincipalOut:
    principal = caller.staff
    if principal is None:  # pragma: no cover - staff() always sets it
        raise Problem(401, "authentication_required", "認証が必要です。")
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
def sign_out(
    request: Request, caller: LeavingStaff
) -> Response:
    rt = _rt(request)
    principal = caller.staff
    if principal is None:  # pragma: no cover - staff() always sets it
        raise Problem(401, "authentication_required", "認証が必要です。")
    with transaction(rt.sessions) as s:
        auth.logout(s, auth_t, principal, now=_now(request))
        rt.record(
            s,
            AuditEvent(
                actor=principal.staff_id,
                terminal=_terminal(request),
                action="session.logout",
                outcome="ok",
            ),
        )
    response = Response(status_code=204)
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict"
    )
    return response


@router.post(
    "/v1/api-tokens",
    response_model=ApiTokenOut,
    tags=["職員認証"],
    summary="個人用APIトークンの発行（ログイン中の職員の権限の一部に限定）",
)
def issue_api_token(
    request: Request,
    body: ApiTokenIn,
    caller: TokenIssuingStaff,
) -> ApiTokenOut:
    rt = _rt(request)
    now = _now(request)
    _encodable(body.name, *body.scopes)
    expires_at = now + timedelta(days=body.expires_in_days)
    with auth.auth_transaction(rt.sessions) as s:
        try:
            token = auth.issue_api_token(
                s, auth_t, caller.actor, body.name, body.scopes, expires_at,
                policy=_policy(request), now=now,
            )
        except auth.AuthError as exc:
            rt.record(
                s,
                AuditEvent(
                    actor=caller.actor,
                    terminal=_terminal(request),
                    action="api_token.issue",
                    outcome=exc.code,
                ),
            )
            raise
        except ValueError as exc:
            raise Problem(422, "invalid_expiry", str(exc)) from None
        digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
        token_id = s.execute(
            select(auth_t.api_tokens.c.id).where(auth_t.api_tokens.c.token_hash == digest)
        ).scalar_one()
        info = next(t for t in auth.list_api_tokens(s, auth_t, caller.actor) if t.id == token_id)
        rt.record(
            s,
            AuditEvent(
                actor=caller.actor,
                terminal=_terminal(request),
                action="api_token.issue",
                outcome="ok",
                ref=info.id,
                detail={"scopes": list(info.scopes)},
            ),
        )
    return ApiTokenOut(id=info.id, token=token, scopes=list(info.scopes), expires_at=info.expires_at)
