"""Intermediate-server routes: each a message type of the wire contract and a function of
`service` (or of `flows`, where the chukan calls another node). From the own atena:
acquisitions, their status, copies, inquiries; from the hub: deliveries, provisions."""

from __future__ import annotations

from fastapi import APIRouter

from renkei.chukan import flows, service
from renkei.core.audit.log import AuditEvent
from renkei.core.wire import contract
from renkei.core.wire.contract import (
    Acquiring,
    AtenaNos,
    Bound,
    ChukanInquiry,
    Delivered,
    FukuhonRegister,
    FukuhonRegistered,
    InquiryResult,
    ProvisionRequest,
    PseudonymDeliver,
    RelayedAnswer,
)
from renkei.core.wire.endpoint import Done, Flow, Unit, sealed, sealed_flow

router = APIRouter()


@router.get("/healthz", tags=["運用"])
def healthz() -> dict[str, str]:
    return {"status": "ok", "node": "chukan"}


@sealed_flow(router, contract.PSEUDONYM_ACQUIRE, tags=["符号管理"], summary="符号取得の開始（団体内統合宛名から）")
async def acquire(flow: Flow, body: AtenaNos) -> Acquiring:
    return await flows.acquire(flow, body)


@sealed(router, contract.PSEUDONYM_DELIVER, tags=["符号管理"], summary="符号の受領（ネットワークシステムから）")
def deliver(unit: Unit, body: PseudonymDeliver) -> Done[Delivered]:
    counts = service.bind_deliveries(unit.session, body.items, unit.now)
    return Done(
        Delivered(**counts),
        AuditEvent(actor=unit.msg.iss, action="pseudonym.bind", outcome="ok", ref=unit.msg.id, detail=counts),
    )


@sealed(router, contract.PSEUDONYM_STATUS, tags=["符号管理"], summary="符号取得状況")
def status(unit: Unit, body: AtenaNos) -> Done[Bound]:
    # Only whether a pseudonym exists: the pseudonym itself never leaves the chukan.
    return Done(Bound(bound=service.bound_atena_nos(unit.session, list(body.atena_nos))))


@sealed(router, contract.FUKUHON_REGISTER, tags=["副本登録"], summary="副本の登録（版管理、削除は新しい版）")
def register(unit: Unit, body: FukuhonRegister) -> Done[FukuhonRegistered]:
    done = service.register_fukuhon(unit.session, unit.state.catalogue, body.records, unit.now, unit.state.cipher)
    added = sum(d.added for d in done)
    return Done(
        FukuhonRegistered(registered=len(done), versions=[d.version for d in done], added=added),
        AuditEvent(
            actor=unit.msg.iss,
            action="fukuhon.register",
            outcome="ok",
            ref=unit.msg.id,
            detail={"count": len(done), "added": added},
        ),
    )


@sealed_flow(router, contract.CHUKAN_INQUIRY, tags=["情報照会"], summary="情報照会（団体内統合宛名から）")
async def inquire(flow: Flow, body: ChukanInquiry) -> InquiryResult:
    return await flows.inquire(flow, body)


@sealed_flow(router, contract.PROVISION_REQUEST, tags=["情報提供"], summary="情報提供（ネットワークシステムから）")
async def provide(flow: Flow, body: ProvisionRequest) -> RelayedAnswer:
    return await flows.provide(flow, body)
