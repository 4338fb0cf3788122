"""atena routes for business systems and staff terminals (JSON; node-to-node calls are sealed).

Thin: who may call, then a function of `service` (a plain ``def`` route, run by FastAPI in
a worker thread) or of `flows` where the work calls chukan or J-LIS (an ``async def``
route whose database work runs in worker threads too).

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

import io
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from renkei.atena import batch, flows, non_residents, search, service
from renkei.atena.models import auth as auth_t
from renkei.atena.models import oauth as oauth_t
from renkei.atena.schemas import (
    AcquireIn,
    AcquireOut,
    AddresseeOut,
    AddresseeSearchOut,
    CandidateOut,
    ChangesIn,
    ChangesOut,
    FukuhonIn,
    FukuhonOut,
    IndividualNumberSearchIn,
    IndividualNumberSearchOut,
    InquiryIn,
    InquiryOut,
    NonResidentCandidatesOut,
    NonResidentIn,
    NonResidentOut,
    NonResidentQueryIn,
    NumberingIn,
    ResidentsIn,
    ResidentsOut,
    StatusIn,
    StatusOut,
)
from renkei.core.errors import Problem
from renkei.core.text.wareki import to_wareki
from renkei.core.wire.runtime import NodeRuntime
from renkei.staff import auth
from renkei.staff.oauth import (
    ClientPrincipal,
    OAuthError,
    authenticate_bearer,
    client_of_token,
    introspect,
)
from renkei.staff.roles import PermissionDenied, has_role
from renkei.staff.routes import CSRF_HEADER as CSRF_HEADER
from renkei.staff.routes import SESSION_COOKIE as SESSION_COOKIE
from renkei.staff.routes import (
    Done,
    Presented,
    StaffAccess,
    audit_refusal,
    audited,
    bearer_token,
    refusal_of,
)

router = APIRouter()

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
    client: ClientPrincipal | None = None  # a business system whose scopes are checked per item


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
) -> Callable[..., Caller]:
    """Dependency: an OAuth bearer token holding ``scope(request)``.

    ``scope`` returning None means the scope cannot be told yet (the body is malformed):
    the token must then be live, and the body's validation refuses the request. The scope
    is read on the event loop (it may await the body); the token is looked up in the
    database, so the dependency itself is a plain function (FastAPI runs it in a thread).
    """

    # (A default, not Annotated: the annotation is a string, evaluated without this closure.)
    def dependency(request: Request, scope_of_body: str | None = Depends(scope)) -> Caller:
        rt = _rt(request)
        token = bearer_token(request)
        needed: str | None = None
        try:
            if token is None:
                raise _authentication_required(
                    "認証が必要です。業務システムは /oauth/token で取得したアクセストークンを"
                    "Authorization: Bearer ヘッダーで送ってください。"
                )
            needed = scope_of_body
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


def _system_scope(resource: str) -> Callable[[Request], Awaitable[str | None]]:
    """``<system>:<resource>`` for the body's ``system``, the resident register's when the
    body names none (a business system asks about persons by its own numbers)."""

    async def scope(request: Request) -> str | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        system = body.get("system")
        if system is None:
            return f"{resident_system(request)}:{resource}"
        if not isinstance(system, str) or not system:
            return None
        if not _SCOPE_PART.fullmatch(system):
            return _NO_SCOPE
        return f"{system}:{resource}"

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
ResidentRegistrar = Annotated[
    Caller, Depends(business_system(_static_scope("residents:register"), "residents.register"))
]
PseudonymAcquirer = Annotated[
    Caller, Depends(business_system(_system_scope("pseudonyms:acquire"), "pseudonym.acquire"))
]
PseudonymStatusReader = Annotated[
    Caller, Depends(business_system(_system_scope("pseudonyms:acquire"), "pseudonym.status"))
]
Numberer = Annotated[
    Caller, Depends(business_system(_system_scope("numbering:register"), "numbering.register"))
]
NonResidentRegistrar = Annotated[
    Caller, Depends(business_system(_system_scope("non_residents:register"), "non_resident.register"))
]
NumberSearcher = Annotated[
    Caller,
    Depends(business_system(_system_scope("individual_numbers:search"), "individual_number.search")),
]
ChangeRegistrar = Annotated[
    Caller, Depends(business_system(_static_scope("changes:register"), "register.changes"))
]
CopyRegistrar = Annotated[Caller, Depends(business_system(_fukuhon_scope, "fukuhon.register"))]
SearchingStaff = Annotated[Caller, Depends(staff("resident.search"))]
VIEW_ROLE = "宛名:参照"


def _live_client(request: Request, token: str) -> ClientPrincipal | None:
    with _rt(request).sessions() as s:
        return client_of_token(s, oauth_t, token, _now(request))


def _caller_in(s: Session, presented: Presented, *, now: datetime, policy: auth.AuthPolicy) -> Caller:
    """Who asks an inquiry, in the inquiry's first transaction: the business system of a live
    OAuth access token, else a staff member (session + CSRF token, or a personal API
    token); a refusal is `flows.SignInRefused` with its audit entry's actor and code."""
    if presented.token is not None:
        client = client_of_token(s, oauth_t, presented.token, now)
        if client is not None:
            return Caller(actor=client.client_id, kind="client", client=client)
    try:
        principal = _STAFF_ACCESS.authenticate_in(s, presented, policy=policy, now=now)
    except (auth.AuthError, OAuthError, Problem) as exc:
        actor, code = refusal_of(exc)
        raise flows.SignInRefused(exc, actor, code) from None
    return Caller(actor=principal.staff_id, kind="staff", staff=principal)


async def _json_body_fits(request: Request, model: type[BaseModel]) -> bool:
    """Whether FastAPI will take the request's body as ``model`` (a JSON media type, and
    JSON of that shape), judged as FastAPI does: the body it has already read and decoded."""
    ctype = request.headers.get("content-type")
    if ctype is None:
        return False  # FastAPI reads a body without a content type as bytes (strict): refused
    media = ctype.partition(";")[0].strip().lower()
    if not (media == "application/json" or (media.startswith("application/") and media.endswith("+json"))):
        return False
    try:
        model.model_validate(await request.json())
    except (ValueError, ValidationError):  # JSONDecodeError is a ValueError
        return False
    return True


def inquirer(action: str) -> Callable[[Request], Awaitable[Presented]]:
    """Dependency: the credentials of a business system (a live OAuth access token; its
    inquiry scopes are checked against the affair of the request, as the route reads it)
    or of a staff member (session + CSRF token, or a personal API token), read from the
    headers and checked in the inquiry's first transaction (`_caller_in`, run by
    `flows.inquire_signing_in`). Neither is screened here: the inquiry flow screens the
    caller with the person asked about.

    Without credentials, or with a body FastAPI will refuse after this dependency, the
    caller is authenticated here at once (in the node's database thread), so that a
    refused caller gets its 401/403 (audited) before the body's 422, as on every route.
    """
    staff_of = staff(action, screen=False)

    def now_or_refused(request: Request) -> Caller:
        token = bearer_token(request)
        if token is not None:
            client = _live_client(request, token)
            if client is not None:
                return Caller(actor=client.client_id, kind="client", client=client)
        return staff_of(request)

    async def dependency(request: Request) -> Presented:
        presented = Presented.of(request)
        if (presented.token is None and not presented.cookie) or not await _json_body_fits(request, InquiryIn):
            await _rt(request).run_db(now_or_refused, request)
        return presented

    return dependency


def batch_client(request: Request) -> Caller:
    """Dependency: a business system with a live OAuth access token (any scope: each
    record of its file is checked for its own affair); refusals are audited."""
    token = bearer_token(request)
    try:
        if token is None:
            raise _authentication_required(
                "認証が必要です。業務システムは /oauth/token で取得したアクセストークンを"
                "Authorization: Bearer ヘッダーで送ってください。"
            )
        client = _live_client(request, token)
        if client is None:
            raise OAuthError(
                401,
                "invalid_token",
                "アクセストークンが無効です（期限切れ・失効・不明）。トークンを取得し直してください。",
                reason="inactive_token",
                challenge=True,
            )
    except OAuthError as exc:
        audit_refusal(request, ANONYMOUS, "inquiry.batch", exc.error)
        raise
    return Caller(actor=client.client_id, kind="client", client=client)


Inquirer = Annotated[Presented, Depends(inquirer("inquiry"))]
BatchClient = Annotated[Caller, Depends(batch_client)]


@router.get("/healthz", tags=["運用"])
def healthz() -> dict[str, str]:
    return {"status": "ok", "node": "atena"}


def _work(request: Request, caller: Caller) -> flows.Work:
    return flows.Work(_rt(request), caller.actor, _terminal(request))


@router.post(
    "/v1/residents",
    response_model=ResidentsOut,
    tags=["宛名管理"],
    summary="住民の登録（団体内統合宛名番号の付番。応答は業務宛名番号で返す）",
)
async def residents(request: Request, body: ResidentsIn, caller: ResidentRegistrar) -> ResidentsOut:
    """機能ID 0320001 → 0320004 → 0320002 → 0320008 (`flows.number_persons`)."""
    return await flows.number_persons(
        _work(request, caller), request.app.state.cipher, body.persons, start_acquisition=body.start_acquisition
    )


@router.post(
    "/v1/numbering",
    response_model=ResidentsOut,
    tags=["宛名管理"],
    summary="団体内統合宛名番号の付番依頼（個人番号・宛名番号・基本4情報。応答は宛名番号で返す）",
)
async def numbering(request: Request, body: NumberingIn, caller: Numberer) -> ResidentsOut:
    """機能ID 0320001 → 0320004 → 0320002 → 0320008 for one person a business system
    holds: a new 統合宛名番号 only if nobody holds the individual number (a person new to
    atena from a business system other than the resident register is a 住登外者)."""
    record = body.model_dump(exclude={"system", "business_atena_no"})
    record["business_numbers"] = {body.system: body.business_atena_no}
    return await flows.number_persons(
        _work(request, caller),
        request.app.state.cipher,
        [record],
        residence="non_resident",
        action="numbering.register",
    )


def _candidate_out(c: non_residents.Candidate, ref: int, own: str | None) -> CandidateOut:
    return CandidateOut(
        ref=ref,
        match=c.match,
        match_label=c.match_label,
        residence_label=service.RESIDENCE_LABELS.get(c.residence, c.residence),
        business_atena_no=own,
        family_name=c.family_name,
        given_name=c.given_name,
        family_kana=c.family_kana,
        given_kana=c.given_kana,
        birth_date=c.birth_date.isoformat(),
        sex=c.sex,
        address=c.address,
    )


@router.post(
    "/v1/non-residents/candidates",
    response_model=NonResidentCandidatesOut,
    tags=["住登外者"],
    summary="住登外者宛名基本情報照会（完全一致・部分一致の候補と確認票）",
)
def non_resident_candidates(
    request: Request, body: NonResidentQueryIn, caller: NonResidentRegistrar
) -> NonResidentCandidatesOut:
    """機能ID 0310007 → 0310005: the candidates (named by the caller's own numbers where
    it has them) and the acknowledgement to send with the registration."""
    cipher = request.app.state.cipher

    def work(s: Session) -> Done[NonResidentCandidatesOut]:
        basic4 = non_residents.parse_basic_four(body.model_dump())
        found = non_residents.candidates(s, basic4)
        own = service.business_numbers_of(s, body.system, [c.atena_no for c in found])
        out = NonResidentCandidatesOut(
            candidates=[_candidate_out(c, i, own.get(c.atena_no)) for i, c in enumerate(found, start=1)],
            acknowledgement=non_residents.acknowledgement(cipher, basic4, found),
        )
        return Done(out, detail={"system": body.system, "count": len(found)})

    return audited(request, caller.actor, "non_resident.search", work)


@router.post(
    "/v1/non-residents",
    response_model=NonResidentOut,
    tags=["住登外者"],
    summary="住登外者宛名番号付番（候補を確認した確認票が必要）",
)
def non_resident_register(request: Request, body: NonResidentIn, caller: NonResidentRegistrar) -> NonResidentOut:
    """機能ID 0310004 → 0310001: a new number (choice ``new``) or the caller's number
    linked to a candidate shown (choice = its ``ref``); refused if the candidates changed
    since the acknowledgement was issued."""
    cipher = request.app.state.cipher
    now = _rt(request).clock()

    def work(s: Session) -> Done[NonResidentOut]:
        basic4 = non_residents.parse_basic_four(body.model_dump())
        done = non_residents.register(
            s, cipher, basic4, ack=body.acknowledgement, choice=body.choice.strip(), now=now,
            system=body.system, business_atena_no=body.business_atena_no, source=f"api:{caller.actor}",
        )  # fmt: skip
        out = NonResidentOut(
            system=body.system,
            business_atena_no=body.business_atena_no,
            outcome=done.outcome,
            outcome_label=service.OUTCOME_LABELS[done.outcome],
            candidates=done.candidates,
        )
        return Done(out, subject=done.atena_no, detail={"system": body.system, "outcome": done.outcome})

    return audited(request, caller.actor, "non_resident.register", work)


@router.post(
    "/v1/non-residents/individual-number",
    response_model=IndividualNumberSearchOut,
    tags=["住登外者"],
    summary="住登外者の個人番号の照会（J-LIS 本人確認情報の検索、番号利用事務のみ）",
)
async def individual_number_search(
    request: Request, body: IndividualNumberSearchIn, caller: NumberSearcher
) -> IndividualNumberSearchOut:
    """The person named by the caller's number, searched at J-LIS by the 基本4情報 atena
    holds; the number is returned (and recorded) only for a 番号利用事務 (§2.4.2: 個人番号の
    送受信は番号利用事務に限られる). Audited at atena and at J-LIS."""
    work = _work(request, caller)
    atena_no = (await _translated(work, "individual_number.search", body.system, [body.business_atena_no]))[0]
    try:
        found = await flows.search_individual_number(
            work, request.app.state.cipher, request.app.state.catalogue, atena_no, body.affair_code
        )
    except Problem as exc:
        raise await _for_business(work, exc, body.system) from None
    return IndividualNumberSearchOut(
        system=body.system,
        business_atena_no=body.business_atena_no,
        status=found.status,
        message=found.message,
        individual_number=found.individual_number,
    )


def _no_atena_nos(value: Any) -> None:
    """A business system names persons by its own 宛名番号 (共通機能標準仕様書 §2.4.2)."""
    if value is not None:
        raise Problem(
            422,
            "atena_no_not_accepted",
            "業務システムは団体内統合宛名番号を使いません。業務システムID（system）と"
            "宛名番号（business_atena_nos）で指定してください。",
        )


async def _translated(work: flows.Work, action: str, system: str, numbers: list[str]) -> list[str]:
    async with work.refusals_audited(action):
        return await work.unit(lambda s: service.translate_all(s, system, numbers))


@router.post(
    "/v1/register/changes",
    response_model=ChangesOut,
    tags=["宛名管理"],
    summary="住民異動の反映（住民記録システムから: 転入・転出・転居・出生・死亡・氏名変更・職権修正）",
)
async def register_changes(request: Request, body: ChangesIn, caller: ChangeRegistrar) -> ChangesOut:
    """All or nothing; idempotent per 異動ID; placed by 異動日; 転入・出生 start pseudonym
    acquisition. The answer names events by their 異動ID, never a 統合宛名番号."""
    return await flows.apply_register_changes(
        _work(request, caller), request.app.state.cipher, resident_system(request), body.events
    )


@router.post(
    "/v1/pseudonyms/acquire",
    response_model=AcquireOut,
    tags=["符号取得"],
    summary="符号取得（中間サーバー・J-LIS経由、業務宛名番号で指定）",
)
async def acquire(request: Request, body: AcquireIn, caller: PseudonymAcquirer) -> AcquireOut:
    work = _work(request, caller)
    system = body.system or resident_system(request)
    async with work.refusals_audited("pseudonym.acquire"):
        _no_atena_nos(body.atena_nos)
    atena_nos: list[str] | None = None
    if not body.all_pending:
        atena_nos = await _translated(work, "pseudonym.acquire", system, body.business_atena_nos or [])
    try:
        return await flows.acquire_pseudonyms(work, request.app.state.cipher, atena_nos)
    except Problem as exc:
        raise await _for_business(work, exc, system) from None


async def _for_business(work: flows.Work, exc: Problem, system: str) -> Problem:
    """A refusal with every 統合宛名番号 in its words replaced by the caller's 宛名番号."""
    if not service.atena_nos_in(exc):
        return exc
    return await work.unit(lambda s: service.for_business(s, exc, system))


@router.post(
    "/v1/pseudonyms/status",
    response_model=StatusOut,
    tags=["符号取得"],
    summary="符号取得状況（業務宛名番号で指定）",
)
async def status(request: Request, body: StatusIn, caller: PseudonymStatusReader) -> StatusOut:
    work = _work(request, caller)
    system = body.system or resident_system(request)
    async with work.refusals_audited("pseudonym.status"):
        _no_atena_nos(body.atena_nos)
    if body.all_persons:
        counts = await flows.refresh_all_bound(work)
        return StatusOut(total=counts["none"] + counts["requested"] + counts["bound"], bound=counts["bound"])
    atena_nos = await _translated(work, "pseudonym.status", system, body.business_atena_nos)
    try:
        bound = await flows.bound_persons(work, atena_nos)
    except Problem as exc:
        raise await _for_business(work, exc, system) from None
    bound_set = set(bound)
    return StatusOut(
        total=len(atena_nos),
        bound=len(bound_set),
        bound_business_atena_nos=[
            number for number, a in zip(body.business_atena_nos, atena_nos, strict=True) if a in bound_set
        ],
    )


@router.post(
    "/v1/fukuhon",
    response_model=FukuhonOut,
    tags=["副本登録"],
    summary="副本の登録（業務宛名番号で指定）",
)
async def fukuhon(request: Request, body: FukuhonIn, caller: CopyRegistrar) -> FukuhonOut:
    work = _work(request, caller)
    try:
        return await flows.register_copies(work, body.system, body.records)
    except Problem as exc:
        raise await _for_business(work, exc, body.system) from None


@router.post(
    "/v1/inquiries",
    response_model=InquiryOut,
    tags=["情報照会"],
    summary="情報照会（職員、または業務システム: スコープ <業務システムID>:inquiries.<事務コード>:inquire）",
)
async def inquiry(request: Request, body: InquiryIn, presented: Inquirer) -> InquiryOut:
    """The person by the business system's own 宛名番号; atena translates it to the
    統合宛名番号, which the answer never carries. The caller is authenticated in the
    inquiry's first transaction, with its authorization and the person's look-up."""
    policy: auth.AuthPolicy = request.app.state.auth_policy

    def sign_in(s: Session) -> flows.Asker:
        caller = _caller_in(s, presented, now=_now(request), policy=policy)
        if caller.client is not None:
            roles = service.client_inquiry_roles(caller.client.scopes, body.system)
            who, user = service.CLIENT, body.user_id
        else:
            roles = caller.staff.roles if caller.staff is not None else frozenset()
            staff_id = caller.actor
            who, user = service.STAFF, body.user_id or (staff_id if flows.fits_inquirer_field(staff_id) else None)
        req = service.InquiryRequest(
            procedure_code=body.procedure_code,
            info_kind_code=body.info_kind_code,
            provider_org=body.provider_org,
            as_of=body.as_of,
            system=body.system,
            business_atena_no=body.business_atena_no,
            department=body.department,
            user_id=user,
        )
        return flows.Asker(actor=caller.actor, roles=roles, who=who, req=req)

    work = flows.Work(_rt(request), ANONYMOUS, _terminal(request))
    try:
        result = await flows.inquire_signing_in(work, request.app.state.catalogue, sign_in)
    except Problem as exc:
        # Asked by a business system's number: a relayed refusal names that number, not
        # the 統合宛名番号 (e.g. the chukan's 「…は符号が未取得です」).
        raise await _for_business(work, exc, body.system) from None
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


@router.get("/v1/addressees", response_model=AddresseeSearchOut, tags=["宛名検索"], summary="宛名検索（職員）")
def addressees(
    request: Request,
    caller: SearchingStaff,
    kana: str = "",
    name: str = "",
    birth_date: str = "",
    address: str = "",
    residence: str = "",
    history: str = "",
    page: int = 1,
) -> AddresseeSearchOut:
    """Staff search addressees by カナ氏名, 氏名, 生年月日 (和暦 or 西暦) and 住所, alone or
    combined, as on the search screen (renkei.atena.search); needs ``宛名:参照``. The audit
    entry names which criteria were used, never their values."""
    roles = caller.staff.roles if caller.staff is not None else frozenset()
    if not has_role(roles, VIEW_ROLE):
        audit_refusal(request, caller.actor, "resident.search", "role_required")
        raise PermissionDenied("role_required", "宛名を検索する権限（宛名:参照）がありません。", needed=VIEW_ROLE)
    typed = {"kana": kana, "name": name, "birth_date": birth_date, "address": address,
             "residence": residence, "history": history}  # fmt: skip
    for value in typed.values():
        if any(ord(c) < 0x20 for c in value):
            raise Problem(422, "invalid_characters", "検索条件に使用できない文字が含まれています。")

    def work(s: Session) -> Done[search.SearchPage]:
        criteria = search.parse_criteria({k: v[:200] for k, v in typed.items()})
        found = search.search(s, criteria, page=page)
        detail = {"mode": "person", "terms": criteria.terms(), "count": found.total, "page": found.page}
        return Done(found, detail=detail)

    found = audited(request, caller.actor, "resident.search", work)
    return AddresseeSearchOut(
        total=min(found.total, search.COUNT_CAP),
        capped=found.capped,
        page=found.page,
        pages=found.pages,
        items=[
            AddresseeOut(
                atena_no=f.atena_no, residence=f.residence, current=f.current, family_name=f.family_name,
                given_name=f.given_name, family_kana=f.family_kana, given_kana=f.given_kana,
                birth_date=f.birth_date.isoformat(), birth_date_wareki=to_wareki(f.birth_date), sex=f.sex,
                address=f.address,
            )
            for f in found.rows
        ],  # fmt: skip
    )


MAX_BATCH_BYTES = 8 * 1024 * 1024  # 10,000 records of about 270 bytes fit with room to spare
_BATCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")


async def _upload(request: Request) -> bytes:
    """The request body, refused beyond `MAX_BATCH_BYTES` as it arrives (never held whole)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BATCH_BYTES:
        raise Problem(413, "body_too_large", "一括照会ファイルが大きすぎます（8 MiB まで）。")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BATCH_BYTES:
            raise Problem(413, "body_too_large", "一括照会ファイルが大きすぎます（8 MiB まで）。")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/v1/inquiries/batch",
    tags=["情報照会"],
    summary="一括照会ファイル（業務システム: ファイルを送り、結果ファイルを受け取る）",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "結果ファイル（CSV、見出しなし）"}},
    # The body is read as it arrives (_upload), not by FastAPI: declared here for the document.
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "一括照会依頼ファイル（カンマ区切りまたは固定長、UTF-8 または CP932）",
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def inquiry_batch(
    request: Request,
    caller: BatchClient,
    system: Annotated[str, Query(min_length=1, max_length=40, description="宛名番号の業務システムID")],
    name: Annotated[str, Query(max_length=100, description="依頼ファイル名（P640R110_<日時>_<連番>.DAT）")] = "request.DAT",
    encoding: Annotated[
        str | None, Query(max_length=20, description="結果の文字コード（utf-8 / cp932。既定は依頼と同じ）")
    ] = None,
) -> Response:
    """The body is a 一括照会 request file as the command takes it (docs/batch-inquiry.md),
    persons named by the business system's 宛名番号 (番号体系 01) only; each record is
    checked against the system's scope for its affair. The answer is the result file in
    the request's encoding and line ends, the 統合宛名番号 column left empty."""
    assert caller.client is not None
    if not _BATCH_NAME.fullmatch(name):
        raise Problem(422, "invalid_request", "ファイル名は半角英数字・_・-・.の100文字以内で指定してください。")
    rt = _rt(request)
    catalogue = request.app.state.catalogue
    if encoding is not None:
        batch.result_encoding(encoding)  # refused before any work
    data = await _upload(request)
    ctx = batch.Context(
        own_org=rt.org_code,
        today=batch.today_in_japan(rt.clock()),
        system=service.check_system(system),
        atena_nos_allowed=False,
    )
    shape, records = await run_in_threadpool(batch.read_request, data, ctx, catalogue, name)
    roles = service.client_inquiry_roles(caller.client.scopes, ctx.system or "")
    summary = await flows.inquire_batch(
        _work(request, caller), catalogue, records, roles,
        who=service.CLIENT, source=name, show_atena_no=False,
    )  # fmt: skip
    out = io.BytesIO()
    shape = batch.with_encoding(shape, encoding)
    batch.write_result(out, shape, summary.rows, source=batch.result_file_name(name))
    charset = "utf-8" if shape.encoding == "utf-8" else "Shift_JIS"
    answered = sum(summary.counts.get(k, 0) for k in ("answered", "no_data", "pending"))
    return Response(
        out.getvalue(),
        media_type=f"text/csv; charset={charset}",
        headers={
            "Content-Disposition": f'attachment; filename="{batch.result_file_name(name)}"',
            "X-Batch-Records": str(len(records)),
            "X-Batch-Errors": str(len(records) - answered),
        },
    )


# FastAPI tries a request against the routes in order, and each try costs tens of
# microseconds; nearly all of atena's traffic is inquiries, so that route is tried first.
router.routes.sort(key=lambda route: getattr(route, "path", None) != "/v1/inquiries")
