"""Time-stamp authority work that may need another node: stamping a head, whose
submitter's key may have to be fetched from the hub's registry first."""

from __future__ import annotations

from renkei.core.audit import timestamping
from renkei.core.audit.log import AuditEvent
from renkei.core.crypto import envelope
from renkei.core.errors import Problem
from renkei.core.wire.contract import TsaStamp, TsaStamped
from renkei.core.wire.endpoint import Flow, Unit
from renkei.core.wire.guard import Alert, alert_event, record_alert
from renkei.tsa import service
from renkei.tsa.models import guard

__all__ = ["stamp"]


async def stamp(flow: Flow, req: TsaStamp) -> TsaStamped:
    """Countersign the sending node's head, if it is its own, signed by it, and moves forward.

    The signer's key is looked up first (on the loop: an unknown key id refreshes the
    registry from the hub). Then one unit: the checks of `service.check_request` (a
    refusal writes nothing), the stamp, and for a head that moves back or forks the
    alert; the audit entry either way. Such a refusal is raised after the commit, so
    that the alert and the audit entry stay.
    """
    try:
        signer = envelope.peek_kid(req.token)
    except envelope.EnvelopeError:
        raise Problem(422, "bad_stamp_signature", "依頼元の署名の形式が誤っています。") from None
    signer_key = await flow.rt.registry.lookup(signer)
    sender_node = timestamping.node_id(flow.msg.iss, flow.msg.node)

    def work(unit: Unit) -> service.StampResult:
        service.check_request(
            req, sender_node=sender_node, resolve_key=lambda kid: signer_key if kid == signer else None
        )
        result = service.stamp(
            unit.session, req, sender=unit.msg.iss, key=unit.rt.signing_key, tsa=unit.rt.org_code, now=unit.now
        )
        if result.alert is not None:
            rule, detail = result.alert

            def audit(alert: Alert) -> None:
                unit.record(alert_event(alert))

            record_alert(
                unit.session, guard, rule=rule, kind="peer", subject=unit.msg.iss, detail=detail,
                action="block", now=unit.now, audit=audit,
            )  # fmt: skip
        unit.record(
            AuditEvent(
                actor=unit.msg.iss,
                action="tsa.stamp",
                outcome=result.refusal.code if result.refusal else ("ok" if result.new else "repeated"),
                ref=unit.msg.id,
                detail={"node": req.node, "kind": req.kind, "seq": req.seq},
            )
        )
        return result

    result = await flow.unit(work)
    if result.refusal is not None:
        raise result.refusal
    assert result.receipt is not None
    return TsaStamped(receipt=result.receipt.token)
