"""Hub work that calls another node: relaying an inquiry to the provider's chukan."""

from __future__ import annotations

from renkei.core.audit.log import AuditEvent
from renkei.core.errors import Problem
from renkei.core.wire import contract
from renkei.core.wire.contract import HubInquiry, ProvisionRequest, RelayedAnswer
from renkei.core.wire.endpoint import Flow, Unit
from renkei.hub import service

__all__ = ["relay_inquiry"]


async def relay_inquiry(flow: Flow, req: HubInquiry) -> RelayedAnswer:
    """Check the rule, issue the serial and convert the pseudonym (one unit: the record
    and its audit entry commit together, a refusal too); ask the provider; record the
    outcome. The answer stays an opaque JWE: the hub relays bytes it cannot read."""
    inquirer = flow.msg.iss

    def begin(unit: Unit) -> tuple[service.Route | None, Problem | None]:
        route, refusal = service.begin_inquiry(
            unit.session,
            unit.state.catalogue,
            inquirer,
            req,
            unit.now,
            service.today_in_japan(unit.now),
        )
        unit.record(
            AuditEvent(
                actor=inquirer,
                action="inquiry.check",
                outcome="forwarded" if route is not None else "refused",
                affair=req.procedure_code,
                ref=route.serial if route is not None else str(refusal.extra.get("serial") if refusal else ""),
                detail={
                    "provider": req.provider_org,
                    "info_kind": req.info_kind_code,
                    **(
                        {"reason": refusal.code, "reason_code": str(refusal.extra.get("reason_code"))}
                        if refusal
                        else {}
                    ),
                },
            )
        )
        return route, refusal

    route, refusal = await flow.unit(begin)
    if refusal is not None:
        raise refusal
    assert route is not None
    ask = ProvisionRequest(
        serial=route.serial,
        pseudonym=route.provider_pseudonym,
        inquirer_org=inquirer,
        procedure_code=req.procedure_code,
        info_kind_code=req.info_kind_code,
        as_of=req.as_of,
    )
    try:
        answer = await flow.send(contract.PROVISION_REQUEST, route.provider_url, req.provider_org, ask)
    except Problem as exc:
        reason = exc.code

        def failed(unit: Unit) -> None:
            service.finish_inquiry(unit.session, route.serial, "error", unit.now, reason_code=reason)

        await flow.unit(failed)
        raise Problem(
            502 if exc.status >= 500 else exc.status,
            exc.code,
            exc.title,
            exc.detail,
            serial=route.serial,
        ) from None
    outcome = answer.status if answer.status in {"answered", "no_data", "pending"} else "error"

    def finish(unit: Unit) -> None:
        service.finish_inquiry(unit.session, route.serial, outcome, unit.now)
        unit.record(
            AuditEvent(
                actor=inquirer,
                action="inquiry.relay",
                outcome=outcome,
                affair=req.procedure_code,
                ref=route.serial,
            )
        )

    await flow.unit(finish)
    return RelayedAnswer(serial=route.serial, status=outcome, answer=answer.answer)
