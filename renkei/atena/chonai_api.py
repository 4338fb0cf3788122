"""atena routes for in-house sharing (庁内連携): a router of its own, included by the app.

Business systems only, with OAuth 2.0 client credentials (共通機能標準仕様書 §2.2.5):

- ``POST /v1/chonai/publications`` — department B publishes records of an info kind under
  its own 宛名番号; scope ``<B>:chonai:publish`` (B = the body's ``system``);
- ``GET /v1/chonai/records`` — department A pulls one person (REST pull) by its own
  宛名番号; scope ``<A>:chonai:read`` (A = the query's ``system``);
- ``POST /v1/chonai/reads`` — the same for up to 10,000 persons (JSON);
- ``POST /v1/chonai/reads.csv`` — the same as a file: request CSV in, result CSV out.

The ordinance's table decides (renkei.atena.chonai): an affair, provider or info kind it
does not list is a 403 problem+json with the decision's stable code, audited, and nothing
else is written. Plain ``def`` routes: FastAPI runs them in worker threads.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from renkei.atena import chonai
from renkei.atena.api import Caller, business_system
from renkei.catalogue.ordinance import Ordinance
from renkei.core.audit.log import AuditEvent
from renkei.core.db import transaction
from renkei.core.errors import Problem
from renkei.core.text.wareki import to_wareki
from renkei.core.wire.runtime import NodeRuntime
from renkei.staff.routes import audit_refusal

router = APIRouter(tags=["庁内連携"])

T = TypeVar("T")
_SCOPE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_NO_SCOPE = "-"  # as renkei.atena.api: the request names a system no client can be
CSV_MEDIA_TYPE = "text/csv"


def _rt(request: Request) -> NodeRuntime:
    rt: NodeRuntime = request.app.state.rt
    return rt


def _ordinance(request: Request) -> Ordinance | None:
    ordinance: Ordinance | None = getattr(request.app.state, "ordinance", None)
    return ordinance


def _now(request: Request) -> datetime:
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


def _terminal(request: Request) -> str:
    return request.client.host if request.client else ""


def _scope_for(system: object, operation: str) -> str | None:
    if not isinstance(system, str) or not system:
        return None
    if not _SCOPE_PART.fullmatch(system) or chonai.loggable(system) != system:
        # No client can hold a scope for it; and a refusal's audit entry names the scope,
        # which must not look like an individual number (the audit log would refuse it).
        return _NO_SCOPE
    return f"{system}:chonai:{operation}"


def _query_scope(operation: str) -> Callable[[Request], Awaitable[str | None]]:
    async def scope(request: Request) -> str | None:
        return _scope_for(request.query_params.get("system"), operation)

    return scope


def _body_scope(operation: str) -> Callable[[Request], Awaitable[str | None]]:
    async def scope(request: Request) -> str | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        return _scope_for(body.get("system") if isinstance(body, dict) else None, operation)

    return scope


Publisher = Annotated[Caller, Depends(business_system(_body_scope("publish"), chonai.PUBLISH))]
QueryReader = Annotated[Caller, Depends(business_system(_query_scope("read"), chonai.READ))]
BodyReader = Annotated[Caller, Depends(business_system(_body_scope("read"), chonai.READ))]


# --- shapes ---------------------------------------------------------------------------------


class PublishIn(BaseModel):
    system: str = Field(min_length=1, max_length=40, description="提供元の業務システムID")
    info_kind_code: str = Field(min_length=1, max_length=32, description="特定個人情報名コード")
    records: list[dict[str, Any]] = Field(
        max_length=chonai.MAX_BATCH,
        description="{business_atena_no, record_key（任意）, values: {項目コード: 値}} または削除 {…, delete: true}",
    )


class PublishOut(BaseModel):
    added: int
    replaced: int
    withdrawn: int
    unchanged: int


class ReadsIn(BaseModel):
    system: str = Field(min_length=1, max_length=40, description="利用する業務システムID")
    affair_code: str = Field(min_length=1, max_length=32, description="利用事務の事務コード")
    provider_system: str = Field(min_length=1, max_length=40, description="提供元の業務システムID")
    info_kind_code: str = Field(min_length=1, max_length=32, description="特定個人情報名コード")
    business_atena_nos: list[str] = Field(min_length=1, max_length=chonai.MAX_BATCH)
    as_of: str | None = Field(default=None, max_length=32, description="基準日（和暦または西暦、省略時は本日）")


class EntryOut(BaseModel):
    id: str
    article: str
    affair_code: str
    provider_system: str
    info_kind_code: str
    items: list[str]


class RecordOut(BaseModel):
    record_key: str
    values: dict[str, str]
    published_at: datetime


class PersonOut(BaseModel):
    business_atena_no: str
    status: str
    status_label: str
    records: list[RecordOut]


class ReadOut(PersonOut):
    entry: EntryOut
    as_of: str
    as_of_wareki: str
    request_id: str


class ReadsOut(BaseModel):
    entry: EntryOut
    as_of: str
    as_of_wareki: str
    request_id: str
    counts: dict[str, int]
    results: list[PersonOut]


def _entry_out(result: chonai.ReadResult) -> EntryOut:
    e = result.entry
    return EntryOut(
        id=e.id,
        article=e.article,
        affair_code=e.affair_code,
        provider_system=e.provider_system,
        info_kind_code=e.info_kind_code,
        items=list(e.items),
    )


def _person_out(p: chonai.PersonRead) -> PersonOut:
    return PersonOut(
        business_atena_no=p.business_atena_no,
        status=p.status,
        status_label=p.status_label,
        records=[RecordOut(record_key=r.record_key, values=r.values, published_at=r.published_at) for r in p.records],
    )


# --- the audited read -------------------------------------------------------------------------


def _audited_read(
    request: Request,
    caller: Caller,
    req: chonai.ReadRequest,
    then: Callable[[chonai.ReadResult], T],
) -> tuple[T, chonai.ReadResult, str]:
    """The read and its audit entries in one transaction; a refusal audited on its own
    (the request's affair and what it asked for, no person) and nothing else written."""
    rt = _rt(request)
    request_id = chonai.new_request_id()
    try:
        with transaction(rt.sessions) as s:
            result = chonai.read(s, request.app.state.cipher, _ordinance(request), req)
            value = then(result)
            rt.audit.append_many(s, chonai.read_events(caller.actor, _terminal(request), req, result, request_id))
            return value, result, request_id
    except Problem as exc:
        _refused(request, caller, req, exc)
        raise


def _refused(request: Request, caller: Caller, req: chonai.ReadRequest, exc: Problem) -> None:
    """Audit a refused read: the affair and what was asked for, never a person."""
    detail = chonai.refusal_detail(req)
    for key in ("index", "line"):
        if key in exc.extra:
            detail[key] = exc.extra[key]
    audit_refusal(request, caller.actor, chonai.READ, exc.code, affair=chonai.loggable(req.affair_code), detail=detail)


def _request(
    request: Request,
    caller: Caller,
    system: str,
    affair_code: str,
    provider_system: str,
    info_kind_code: str,
    numbers: list[str],
    as_of: str | None,
) -> chonai.ReadRequest:
    req = chonai.ReadRequest(
        system=system,
        affair_code=affair_code,
        provider_system=provider_system,
        info_kind_code=info_kind_code,
        business_atena_nos=numbers,
        on=chonai.parse_as_of(None, _now(request)),
    )
    try:
        return replace(req, on=chonai.parse_as_of(as_of, _now(request)))
    except Problem as exc:
        _refused(request, caller, req, exc)
        raise


# --- routes -------------------------------------------------------------------------------------


@router.post(
    "/v1/chonai/publications", response_model=PublishOut, summary="庁内連携データの公開（提供元の業務システム）"
)
def publish(request: Request, body: PublishIn, caller: Publisher) -> PublishOut:
    rt = _rt(request)
    try:
        with transaction(rt.sessions) as s:
            done = chonai.publish(
                s,
                request.app.state.cipher,
                request.app.state.catalogue,
                _ordinance(request),
                body.system,
                body.info_kind_code,
                body.records,
                rt.clock(),
                caller.actor,
            )
            rt.record(
                s,
                AuditEvent(
                    actor=caller.actor,
                    terminal=_terminal(request),
                    action=chonai.PUBLISH,
                    outcome="ok",
                    detail={"system": body.system, "info_kind": body.info_kind_code, **done.summary()},
                ),
            )
    except Problem as exc:
        detail: dict[str, Any] = {"system": chonai.loggable(body.system), "info_kind": chonai.loggable(body.info_kind_code)}
        if "index" in exc.extra:
            detail["index"] = exc.extra["index"]
        audit_refusal(request, caller.actor, chonai.PUBLISH, exc.code, detail=detail)
        raise
    return PublishOut(**done.summary())


@router.get("/v1/chonai/records", response_model=ReadOut, summary="庁内連携データの取得（1人、REST pull）")
def read_one(
    request: Request,
    caller: QueryReader,
    system: Annotated[str, Query(min_length=1, max_length=40, description="利用する業務システムID")],
    affair_code: Annotated[str, Query(min_length=1, max_length=32, description="利用事務の事務コード")],
    provider_system: Annotated[str, Query(min_length=1, max_length=40, description="提供元の業務システムID")],
    info_kind_code: Annotated[str, Query(min_length=1, max_length=32, description="特定個人情報名コード")],
    business_atena_no: Annotated[str, Query(min_length=1, max_length=32, description="利用側の宛名番号")],
    as_of: Annotated[str | None, Query(max_length=32, description="基準日（省略時は本日）")] = None,
) -> ReadOut:
    req = _request(request, caller, system, affair_code, provider_system, info_kind_code, [business_atena_no], as_of)

    def one(result: chonai.ReadResult) -> chonai.PersonRead:
        person = result.persons[0]
        # One named person: an unknown or malformed number is the request's error.
        if person.status == chonai.INVALID:
            raise Problem(422, "invalid_business_atena_no", "宛名番号は15桁の数字（検査数字付き）で指定してください。")
        if person.status == chonai.UNKNOWN:
            raise Problem(404, "unknown_business_atena_no", f"業務「{system}」の宛名番号「{business_atena_no}」は登録されていません。")
        return person

    person, result, request_id = _audited_read(request, caller, req, one)
    return ReadOut(
        **_person_out(person).model_dump(),
        entry=_entry_out(result),
        as_of=req.on.isoformat(),
        as_of_wareki=to_wareki(req.on),
        request_id=request_id,
    )


@router.post("/v1/chonai/reads", response_model=ReadsOut, summary="庁内連携データの取得（複数人）")
def read_many(request: Request, body: ReadsIn, caller: BodyReader) -> ReadsOut:
    req = _request(
        request, caller, body.system, body.affair_code, body.provider_system, body.info_kind_code, body.business_atena_nos, body.as_of
    )
    _, result, request_id = _audited_read(request, caller, req, lambda r: r)
    return ReadsOut(
        entry=_entry_out(result),
        as_of=req.on.isoformat(),
        as_of_wareki=to_wareki(req.on),
        request_id=request_id,
        counts=result.counts(),
        results=[_person_out(p) for p in result.persons],
    )


@router.post(
    "/v1/chonai/reads.csv",
    summary="庁内連携データの取得（CSVファイル）",
    response_class=Response,
    responses={200: {"content": {CSV_MEDIA_TYPE: {}}, "description": "結果CSV（依頼と同じ文字コード、CRLF）"}},
)
def read_csv(
    request: Request,
    caller: QueryReader,
    file: Annotated[bytes, Body(media_type=CSV_MEDIA_TYPE, description="依頼CSV（見出し「宛名番号」、UTF-8 または CP932）")],
    system: Annotated[str, Query(min_length=1, max_length=40)],
    affair_code: Annotated[str, Query(min_length=1, max_length=32)],
    provider_system: Annotated[str, Query(min_length=1, max_length=40)],
    info_kind_code: Annotated[str, Query(min_length=1, max_length=32)],
    as_of: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    try:
        numbers, encoding = chonai.parse_request_csv(file, "依頼CSV")
    except Problem as exc:
        asked = chonai.ReadRequest(system, affair_code, provider_system, info_kind_code, [], _now(request).date())
        _refused(request, caller, asked, exc)
        raise
    req = _request(request, caller, system, affair_code, provider_system, info_kind_code, numbers, as_of)
    catalogue = request.app.state.catalogue
    data, _result, request_id = _audited_read(
        request, caller, req, lambda result: chonai.result_csv(catalogue, result, encoding)
    )
    charset = "Shift_JIS" if encoding == "cp932" else "utf-8"
    return Response(
        data, media_type=f"{CSV_MEDIA_TYPE}; charset={charset}", headers={"X-Renkei-Request-Id": request_id}
    )
