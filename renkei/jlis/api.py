"""J-LIS routes: each a message type of the wire contract and a function of `service`."""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter

from renkei.core.audit.log import AuditEvent
from renkei.core.wire import contract
from renkei.core.wire.contract import (
    AcquisitionSubmit,
    IdentityFound,
    IdentitySearch,
    ItemStatus,
    ItemStatuses,
)
from renkei.core.wire.endpoint import Done, Unit, sealed
from renkei.jlis import service

router = APIRouter()


@router.get("/healthz", tags=["運用"])
def healthz() -> dict[str, str]:
    return {"status": "ok", "node": "jlis"}


@sealed(router, contract.ACQUISITION_SUBMIT, tags=["符号取得"], summary="符号取得依頼の中継（個人番号→住民票コード）")
def submit(unit: Unit, body: AcquisitionSubmit) -> Done[ItemStatuses]:
    """The resident code of each individual number goes to the hub through the outbox,
    in this transaction; the individual number never leaves J-LIS."""
    results = service.submit_acquisitions(
        unit.session,
        unit.rt.kernel,
        unit.state.cipher,
        org_code=unit.msg.iss,
        items=body.items,
        hub_url=unit.rt.config.peer("hub"),
        hub_org=unit.rt.config.hub_org_code,
        now=unit.now,
    )
    return Done(
        ItemStatuses(results=[ItemStatus(acquisition_no=r.acquisition_no, status=r.status) for r in results]),
        AuditEvent(
            actor=unit.msg.iss,
            action="acquisition.relay",
            outcome="ok",
            ref=unit.msg.id,
            detail=dict(Counter(r.status for r in results)),
        ),
    )


@sealed(router, contract.IDENTITY_SEARCH, tags=["本人確認情報"], summary="本人確認情報の検索（基本4情報→個人番号）")
def identity_search(unit: Unit, body: IdentitySearch) -> Done[IdentityFound]:
    """The individual number of the one citizen matching the 基本4情報, to the atena that
    asked (signed to it, like every reply); none for no match or several. Audited with
    the asking organization and affair, never with the number or the facts searched."""
    answer = service.search_identity(unit.session, unit.state.cipher, body)
    return Done(
        IdentityFound(
            status=answer.status,
            matches=answer.matches,
            individual_number=answer.individual_number,
            message=answer.message,
        ),
        AuditEvent(
            actor=unit.msg.iss,
            action="identity.search",
            outcome=answer.status,
            ref=unit.msg.id,
            affair=body.affair_code,
            detail={"matches": answer.matches},
        ),
    )
