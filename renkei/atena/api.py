"""atena routes for business systems and staff terminals (JSON; node-to-node calls are sealed).

Who may call what (DESIGN.md §5):

- staff sign in with `POST /v1/session` (staff ID, password, TOTP) and are then known by
  an opaque session cookie (HttpOnly, Secure, SameSite=Strict); state-changing requests
  made with the cookie also carry the session's CSRF token in ``X-CSRF-Token``. Scripts
  of a staff member use a personal API token (``Authorization: Bearer``, no CSRF),
  limited to some of the staff member's roles. Sign-in, password change and API tokens
  are the kernel's staff routes (renkei.staff.routes, mounted by renkei.atena.app);
  `staff(...)` here authenticates with the same `StaffAccess`;
- business systems use OAuth 2.0 client credentials (``client_secret_jwt`` at
  ``/oauth/token``) and send the short-lived access token as ``Authorization: Bearer``;
  each route needs one scope ``業務システムID:リソース:操作``.

Every refusal is problem+json with a stable code and a Japanese title, and is audited.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from renkei.atena import service
from renkei.atena.models import auth as auth_t
from renkei.atena.models import oauth as oauth_t
from renkei.atena.schemas import (
    AcquireIn,
    AcquireOut,
    FukuhonIn,
    FukuhonOut,
    InquiryIn,
    InquiryOut,
    ResidentsIn,
    ResidentsOut,
    StatusIn,
    StatusOut,
)
from renkei.core import ids
from renkei.core.audit.log import AuditEvent
from renkei.core.db import transaction
from renkei.core.errors import Problem
from renkei.core.text.wareki import to_wareki
from renkei.core.wire.runtime import NodeRuntime
from renkei.staff import auth
from renkei.staff.oauth import OAuthError, authenticate_bearer, introspect
from renkei.staff.routes import CSRF_HEADER as CSRF_HEADER
from renkei.staff.routes import SESSION_COOKIE as SESSION_COOKIE
from renkei.staff.routes import StaffAccess, audit_refusal, bearer_token

router = APIRouter()

STATUS_LABELS = service.STATUS_LABELS
CHUNK = 1000

DEFAULT_RESIDENT_SYSTEM = "jumin01"
ANONYMOUS = "anonymous"
_SCOPE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_NO_SCOPE = "-"  # a scope no token can hold (the request names a malformed system ID)


def _rt(request: Request) -> NodeRuntime:
    rt: NodeRuntime = request.app.state.rt
    return rt


def _now(request: Request) -> datetime:
    """The authentication clock (`app.state.clock`; tests move it)."""
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


def resident_system(request: Request) -> str:
    """The business-system ID of the resident register (scopes ``<id>:residents:register``)."""
    return str(request.app.state.resident_system)


def _terminal(request: Request) -> str:
    return request.client.host if request.client else ""


def _screen_client(request: Request, client_id: str, action: str) -> None:
    """Rate limits and abnormal-traffic rules for a business system.

    A refusal (429 rate_limited, 403 blocked_by_rule) is audited under the action; the
    guard itself records the alert. (Staff are screened by renkei.staff.routes.)
    """
    try:
        _rt(request).screen("client", client_id, None)
    except Problem as exc:
        audit_refusal(request, client_id, action, exc.code)
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
        token = bearer_token(request)
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
            audit_refusal(request, _token_client(request, token), action, exc.error, detail=detail)
            raise
        _screen_client(request, principal.client_id, action)
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


# Staff are authenticated as on every node (renkei.staff.routes): session cookie with
# the CSRF token on state-changing methods, or a personal API token.
_STAFF_ACCESS = StaffAccess(auth_t)


def staff(
    action: str, *, api_token_ok: bool = True, screen: bool = True
) -> Callable[[Request], Caller]:
    """Dependency: a signed-in staff member (or their API token); refusals are audited.

    ``screen=False`` leaves the abnormal-traffic check to the route, which knows the
    person the request is about (a lookup counts towards "many unrelated persons").
    """
    principal_of = _STAFF_ACCESS.staff(action, api_token_ok=api_token_ok, screen=screen)

    def dependency(request: Request) -> Caller:
        principal = principal_of(request)
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
