"""Time-stamp authority routes: each a message type of the wire contract and a function of
`service` (or of `flows`, where the sender's key may have to be fetched from the hub)."""

from __future__ import annotations

from fastapi import APIRouter

from renkei.core.audit import timestamping
from renkei.core.audit.log import AuditEvent
from renkei.core.wire import contract
from renkei.core.wire.contract import (
    TsaHead,
    TsaHeadQuery,
    TsaStamp,
    TsaStamped,
    TsaStampsList,
    TsaStampsQuery,
)
from renkei.core.wire.endpoint import Done, Flow, Unit, sealed, sealed_flow
from renkei.tsa import flows, service

router = APIRouter()


@router.get("/healthz", tags=["運用"])
def healthz() -> dict[str, str]:
    return {"status": "ok", "node": "tsa"}


@sealed_flow(
    router,
    contract.TSA_STAMP,
    tags=["タイムスタンプ"],
    summary="記録の先頭（監査ログのチェックポイント等）へのタイムスタンプの付与",
)
async def stamp(flow: Flow, body: TsaStamp) -> TsaStamped:
    return await flows.stamp(flow, body)


def _sender_node(unit: Unit) -> str:
    return timestamping.node_id(unit.msg.iss, unit.msg.node)


@sealed(router, contract.TSA_HEAD, tags=["タイムスタンプ"], summary="ノードの最新の記録の先頭（受領証付き）の照会")
def head(unit: Unit, body: TsaHeadQuery) -> Done[TsaHead]:
    service.require_own_node(body.node, sender_node=_sender_node(unit))
    current = service.current_head(unit.session, body.node, body.kind, tsa=unit.rt.org_code)
    return Done(
        timestamping.head_body(current),
        AuditEvent(
            actor=unit.msg.iss,
            action="tsa.head",
            outcome="ok",
            ref=unit.msg.id,
            detail={"node": body.node, "kind": body.kind, "seq": current.seq},
        ),
    )


@sealed(
    router,
    contract.TSA_STAMPS,
    tags=["タイムスタンプ"],
    summary="ノードについて付与したすべての記録の先頭（番号とハッシュ）の照会",
)
def stamps(unit: Unit, body: TsaStampsQuery) -> Done[TsaStampsList]:
    service.require_own_node(body.node, sender_node=_sender_node(unit))
    pairs, more = service.stamped(unit.session, body.node, body.kind, after=body.after, limit=body.limit)
    return Done(timestamping.stamps_body(body.node, body.kind, pairs, more))
