"""Hub routes: thin wrappers over `service`; every body is a sealed message."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from renkei.core.audit.log import AuditEvent
from renkei.core.db import transaction
from renkei.core.errors import Problem
from renkei.core.wire.messaging import remember
from renkei.core.wire.runtime import SEALED_BODY, NodeRuntime, expect_typ
from renkei.hub import service
from renkei.hub.models import Organization

router = APIRouter()


def _rt(request: Request) -> NodeRuntime:
    rt: NodeRuntime = request.app.state.rt
    return rt


@router.get("/healthz", tags=["運用"])
async def healthz() -> dict[str, str]:
    return {"status": "ok", "node": "hub"}


@router.post(
    "/v1/registry",
    openapi_extra=SEALED_BODY,
    tags=["機関登録簿"],
    summary="機関登録簿（公開鍵）の照会",
)
async def registry(request: Request) -> Response:
    rt = _rt(request)
    msg = await rt.receive(request)
    expect_typ(msg, "registry.query")
    with transaction(rt.sessions) as s:
        remember(s, rt.kernel, msg, rt.clock())
        docs = service.registry_documents(s)
    return rt.reply(msg, "registry.list", {"organizations": docs})


@router.post(
    "/v1/acquisitions", openapi_extra=SEALED_BODY, tags=["符号取得"], summary="取得番号の払出し"
)
async def acquisitions(request: Request) -> Response:
    rt = _rt(request)
    msg = await rt.receive(request)
    expect_typ(msg, "acquisition.create")
    count = msg.body.get("count")
    if not isinstance(count, int) or isinstance(count, bool):
        raise Problem(422, "bad_count", "件数（count）を整数で指定してください。")
    with transaction(rt.sessions) as s:
        remember(s, rt.kernel, msg, rt.clock())
        nos = service.create_acquisitions(s, msg.iss, count, rt.clock())
        rt.record(
            s,
            AuditEvent(
                actor=msg.iss,
                action="acquisition.create",
                outcome="ok",
                ref=msg.id,
                detail={"count": len(nos)},
            ),
        )
    return rt.reply(msg, "acquisition.created", {"acquisition_nos": nos})


@router.post(
    "/v1/acquisitions/resolve",
    openapi_extra=SEALED_BODY,
    tags=["符号取得"],
    summary="J-LISからの符号生成依頼",
)
async def resolve(request: Request) -> Response:
    rt = _rt(request)
    msg = await rt.receive(request)
    expect_typ(msg, "acquisition.resolve")
    items = msg.body.get("items")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise Problem(422, "bad_items", "items を配列で指定してください。")
    with transaction(rt.sessions) as s:
        sender = s.get(Organization, msg.iss)
        if sender is None or sender.role != "jlis":
            raise Problem(
                403, "sender_not_allowed", "符号生成依頼はJ-LISのみが送信できます。", msg.iss
            )
        remember(s, rt.kernel, msg, rt.clock())
        results = service.resolve_acquisitions(
            s, rt.kernel, request.app.state.secret, items, rt.clock()
        )
        rt.record(
            s,
            AuditEvent(
                actor=msg.iss,
                action="acquisition.resolve",
                outcome="ok",
                ref=msg.id,
                detail=dict(Counter(r.status for r in results)),
            ),
        )
    return rt.reply(
        msg,
        "acquisition.resolved",
        {"results": [{"acquisition_no": r.acquisition_no, "status": r.status} for r in results]},
    )


@router.post(
    "/v1/inquiries", openapi_extra=SEALED_BODY, tags=["情報照会"], summary="情報照会の中継"
)
async def inquiries(request: Request) -> Response:
    rt = _rt(request)
    msg = await rt.receive(request)
    expect_typ(msg, "inquiry.request")
    now = rt.clock()
    with transaction(rt.sessions) as s:
        remember(s, rt.kernel, msg, now)
        route, refusal = service.begin_inquiry(
            s, request.app.state.catalogue, msg.iss, msg.body, now, _today(rt)
        )
        rt.record(
            s,
            AuditEvent(
                actor=msg.iss,
                action="inquiry.check",
                outcome="forwarded" if route is not None else "refused",
                affair=str(msg.body.get("procedure_code")),
                ref=route.serial
                if route is not None
                else str(refusal.extra.get("serial") if refusal else ""),
                detail={
                    "provider": str(msg.body.get("provider_org")),
                    "info_kind": str(msg.body.get("info_kind_code")),
                    **(
                        {
                            "reason": refusal.code,
                            "reason_code": str(refusal.extra.get("reason_code")),
                        }
                        if refusal
                        else {}
                    ),
                },
            ),
        )
    if refusal is not None:
        raise refusal
    assert route is not None
    forward: dict[str, Any] = {
        "serial": route.serial,
        "pseudonym": route.provider_pseudonym,
        "inquirer_org": msg.iss,
        "procedure_code": msg.body["procedure_code"],
        "info_kind_code": msg.body["info_kind_code"],
        "as_of": msg.body["as_of"],
    }
    try:
        answer = await rt.peer.call(
            route.provider_url.rstrip("/") + "/v1/provisions",
            msg.body["provider_org"],
            "provision.request",
            forward,
        )
    except Problem as exc:
        with transaction(rt.sessions) as s:
            service.finish_inquiry(s, route.serial, "error", rt.clock(), reason_code=exc.code)
        # Relayed with the serial; the status is the code's own (a provider's internal
        # error or unverifiable answer already arrives as a 502 code, see PeerClient).
        raise Problem(exc.status, exc.code, exc.title, exc.detail, serial=route.serial) from None
    status = str(answer.body.get("status", ""))
    outcome = status if status in {"answered", "no_data", "pending"} else "error"
    with transaction(rt.sessions) as s:
        service.finish_inquiry(s, route.serial, outcome, rt.clock())
        rt.record(
            s,
            AuditEvent(
                actor=msg.iss,
                action="inquiry.relay",
                outcome=outcome,
                affair=msg.body["procedure_code"],
                ref=route.serial,
            ),
        )
    # The answer stays an opaque JWE: the hub relays bytes it cannot read.
    return rt.reply(
        msg,
        "inquiry.answer",
        {"serial": route.serial, "status": outcome, "answer": answer.body.get("answer")},
    )


def _today(rt: NodeRuntime) -> date:
    from zoneinfo import ZoneInfo

    return rt.clock().astimezone(ZoneInfo("Asia/Tokyo")).date()
