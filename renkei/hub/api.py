"""Hub routes: each a message type of the wire contract and a function of `service`
(or of `flows`, where the hub calls another node). Every body is a sealed message."""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter

from renkei.core.audit.log import AuditEvent
from renkei.core.wire import contract
from renkei.core.wire.contract import (
    AcquisitionCreate,
    AcquisitionCreated,
    AcquisitionResolve,
    Empty,
    HubInquiry,
    ItemStatus,
    ItemStatuses,
    RegistryList,
    RelayedAnswer,
)
from renkei.core.wire.endpoint import Done, Flow, Unit, sealed, sealed_flow
from renkei.hub import flows, service

router = APIRouter()


@router.get("/healthz", tags=["運用"])
def healthz() -> dict[str, str]:
    return {"status": "ok", "node": "hub"}


@sealed(router, contract.REGISTRY_QUERY, tags=["機関登録簿"], summary="機関登録簿（公開鍵）の照会")
def registry(unit: Unit, _body: Empty) -> Done[RegistryList]:
    return Done(RegistryList(organizations=service.registry_documents(unit.session)))


@sealed(router, contract.ACQUISITION_CREATE, tags=["符号取得"], summary="取得番号の払出し")
def acquisitions(unit: Unit, body: AcquisitionCreate) -> Done[AcquisitionCreated]:
    nos = service.create_acquisitions(unit.session, unit.msg.iss, body.count, unit.now)
    return Done(
        AcquisitionCreated(acquisition_nos=nos),
        AuditEvent(
            actor=unit.msg.iss,
            action="acquisition.create",
            outcome="ok",
            ref=unit.msg.id,
            detail={"count": len(nos)},
        ),
    )


@sealed(router, contract.ACQUISITION_RESOLVE, tags=["符号取得"], summary="J-LISからの符号生成依頼")
def resolve(unit: Unit, body: AcquisitionResolve) -> Done[ItemStatuses]:
    service.require_role(unit.session, unit.msg.iss, "jlis", "符号生成依頼はJ-LISのみが送信できます。")
    results = service.resolve_acquisitions(
        unit.session, unit.rt.kernel, unit.state.secret, body.items, unit.now
    )
    return Done(
        ItemStatuses(results=[ItemStatus(acquisition_no=r.acquisition_no, status=r.status) for r in results]),
        AuditEvent(
            actor=unit.msg.iss,
            action="acquisition.resolve",
            outcome="ok",
            ref=unit.msg.id,
            detail=dict(Counter(r.status for r in results)),
        ),
    )


@sealed_flow(router, contract.HUB_INQUIRY, tags=["情報照会"], summary="情報照会の中継")
async def inquiries(flow: Flow, body: HubInquiry) -> RelayedAnswer:
    return await flows.relay_inquiry(flow, body)
