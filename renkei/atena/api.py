"""atena routes for business systems and staff terminals (JSON; node-to-node calls are sealed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from renkei.atena import service
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
from renkei.core.audit import AuditEvent
from renkei.core.db import transaction
from renkei.core.errors import Problem
from renkei.core.node import NodeRuntime
from renkei.core.text.wareki import WarekiError, parse_date, to_wareki

router = APIRouter()

STATUS_LABELS = {"answered": "回答あり", "no_data": "該当なし", "pending": "回答待ち"}
CHUNK = 1000


def _rt(request: Request) -> NodeRuntime:
    rt: NodeRuntime = request.app.state.rt
    return rt


@router.get("/healthz", tags=["運用"])
async def healthz() -> dict[str, str]:
    return {"status": "ok", "node": "atena"}


@router.post(
    "/v1/residents",
    response_model=ResidentsOut,
    tags=["宛名管理"],
    summary="住民の登録（団体内統合宛名番号の付番）",
)
async def residents(request: Request, body: ResidentsIn) -> ResidentsOut:
    rt = _rt(request)
    with transaction(rt.sessions) as s:
        atena_nos = service.register_residents(
            s, request.app.state.cipher, body.persons, rt.clock()
        )
        rt.record(
            s,
            AuditEvent(
                actor=_client(request),
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
async def acquire(request: Request, body: AcquireIn) -> AcquireOut:
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
                    actor=_client(request),
                    terminal=_terminal(request),
                    action="pseudonym.acquire",
                    outcome="ok",
                    detail={"count": len(pairs)},
                ),
            )
    return AcquireOut(requested=len(targets), relayed=relayed, problems=problems)


def _client(request: Request) -> str:
    # Until staff sign-in and OAuth clients are wired in, the caller is the terminal itself.
    return "terminal"


def _terminal(request: Request) -> str:
    return request.client.host if request.client else ""


def _bad(value: str) -> str:
    problem = ids.check(ids.IdKind.ATENA_NO, value)
    assert problem is not None
    raise Problem(422, "invalid_atena_no", problem.message)


@router.post(
    "/v1/pseudonyms/status", response_model=StatusOut, tags=["符号取得"], summary="符号取得状況"
)
async def status(request: Request, body: StatusIn) -> StatusOut:
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
async def fukuhon(request: Request, body: FukuhonIn) -> FukuhonOut:
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
                actor=_client(request),
                terminal=_terminal(request),
                action="fukuhon.register",
                outcome="ok",
                detail={"system": body.system, "count": int(answer.body.get("registered", 0))},
            ),
        )
    return FukuhonOut(registered=int(answer.body.get("registered", 0)))


@router.post("/v1/inquiries", response_model=InquiryOut, tags=["情報照会"], summary="情報照会")
async def inquiry(request: Request, body: InquiryIn) -> InquiryOut:
    rt = _rt(request)
    catalogue = request.app.state.catalogue
    for kind, value in (
        (ids.IdKind.PROCEDURE_CODE, body.procedure_code),
        (ids.IdKind.INFO_KIND_CODE, body.info_kind_code),
        (ids.IdKind.ORG_CODE, body.provider_org),
    ):
        problem = ids.check(kind, value)
        if problem is not None:
            raise Problem(422, f"invalid_{kind.name.lower()}", problem.message)
    try:
        as_of = parse_date(body.as_of)
    except WarekiError as exc:
        raise Problem(422, "bad_date", f"基準日: {exc}") from None
    try:
        with rt.sessions() as s:
            affair_code = service.authorize_inquiry(
                s, catalogue, body.staff_id, body.procedure_code
            )
            atena_no = service.translate(s, body.system, body.business_atena_no)
    except Problem as exc:
        # Refusals are audited too: who tried what, for which procedure.
        with transaction(rt.sessions) as s:
            rt.record(
                s,
                AuditEvent(
                    actor=body.staff_id,
                    terminal=_terminal(request),
                    action="inquiry",
                    outcome=exc.code,
                    affair=body.procedure_code,
                ),
            )
        raise
    log = {
        "staff_id": body.staff_id,
        "affair_code": affair_code,
        "procedure_code": body.procedure_code,
        "info_kind_code": body.info_kind_code,
        "provider_org": body.provider_org,
        "atena_no": atena_no,
    }
    try:
        answer = await rt.peer.call(
            rt.config.peer("chukan") + "/v1/inquiries",
            rt.org_code,
            "inquiry.request",
            {
                "atena_no": atena_no,
                "procedure_code": body.procedure_code,
                "info_kind_code": body.info_kind_code,
                "provider_org": body.provider_org,
                "as_of": as_of.isoformat(),
            },
        )
    except Problem as exc:
        with transaction(rt.sessions) as s:
            service.log_inquiry(
                s,
                at=rt.clock(),
                serial=exc.extra.get("serial"),
                outcome=exc.code,
                reason=exc.detail or exc.title,
                **log,
            )
            rt.record(
                s,
                AuditEvent(
                    actor=body.staff_id,
                    terminal=_terminal(request),
                    action="inquiry",
                    outcome=exc.code,
                    subject=atena_no,
                    affair=affair_code,
                    ref=str(exc.extra.get("serial") or "") or None,
                ),
            )
        raise
    result = answer.body
    status_value = str(result.get("status", ""))
    with transaction(rt.sessions) as s:
        service.log_inquiry(
            s,
            at=rt.clock(),
            serial=str(result.get("serial")),
            outcome=status_value,
            reason=None,
            **log,
        )
        rt.record(
            s,
            AuditEvent(
                actor=body.staff_id,
                terminal=_terminal(request),
                action="inquiry",
                outcome=status_value,
                subject=atena_no,
                affair=affair_code,
                ref=str(result.get("serial")),
            ),
        )
    values = result.get("values")
    return InquiryOut(
        serial=str(result.get("serial", "")),
        status=status_value,
        status_label=STATUS_LABELS.get(status_value, status_value),
        values={str(k): str(v) for k, v in values.items()} if isinstance(values, dict) else None,
        edition=result.get("edition"),
        record_key=result.get("record_key"),
        as_of=as_of.isoformat(),
        as_of_wareki=to_wareki(as_of),
    )
