"""Intermediate-server work that calls other nodes (DESIGN.md §8).

- `acquire`: hand out acquisition numbers the hub issues for our atena's people;
- `inquire`: our atena's inquiry through the hub, the provider's answer checked and the
  outcome kept under the serial;
- `provide`: the hub asks us for a provision (the inquirer's encryption key may have to
  be fetched from the hub's registry);
- `open_answer`: decrypt and verify a relayed answer (the provider's key may have to be
  fetched from the hub's registry).

Each step that touches the database is a unit of work (`Flow.unit`, a transaction in a
worker thread); the decisions themselves are `service` functions.
"""

from __future__ import annotations

from typing import Any

from renkei.chukan import service
from renkei.chukan.service import BadAnswer
from renkei.core.audit.log import AuditEvent
from renkei.core.crypto import envelope
from renkei.core.errors import Problem
from renkei.core.wire import contract
from renkei.core.wire.contract import (
    PROVISION_ANSWER_TYP,
    Acquiring,
    AcquisitionCreate,
    AcquisitionPair,
    AtenaNos,
    ChukanInquiry,
    HubInquiry,
    InquiryResult,
    ProvisionRequest,
    RelayedAnswer,
)
from renkei.core.wire.endpoint import Flow, Unit
from renkei.core.wire.messaging import Message, open_message, seal
from renkei.core.wire.runtime import NodeRuntime

__all__ = ["BAD_ANSWER_TITLE", "acquire", "inquire", "open_answer", "provide"]


def _hub(rt: NodeRuntime) -> tuple[str, str]:
    return rt.config.peer("hub"), rt.config.hub_org_code


# --- pseudonym acquisition -------------------------------------------------------------


async def acquire(flow: Flow, req: AtenaNos) -> Acquiring:
    """Step 1 of 符号取得: an acquisition number from the hub per 統合宛名番号, kept here
    until the hub delivers the pseudonym for it.

    A person asked for again while their number still awaits its pseudonym (atena retrying
    after a crash or a timeout) gets the same number back, not a new one: the retry is the
    same request, and the hub answers it with the same pseudonym. A person already bound
    gets the number they were bound under (service.acquisition_numbers)."""
    if not req.atena_nos:
        raise Problem(422, "bad_count", "統合宛名番号を1件以上指定してください。")
    # The first unit screens the sender and keeps the message id, before the hub is asked.
    known = await flow.unit(lambda unit: service.acquisition_numbers(unit.session, req.atena_nos))
    missing = list(dict.fromkeys(a for a in req.atena_nos if a not in known))
    if missing:
        hub_url, hub_org = _hub(flow.rt)
        created = await flow.send(contract.ACQUISITION_CREATE, hub_url, hub_org, AcquisitionCreate(count=len(missing)))
        if len(created.acquisition_nos) != len(missing):
            raise Problem(502, "peer_error", "取得番号の件数が一致しません。")
        fresh = list(zip(missing, created.acquisition_nos, strict=True))

        def keep(unit: Unit) -> None:
            service.remember_acquisitions(unit.session, fresh, unit.now)
            unit.record(
                AuditEvent(
                    actor=unit.msg.iss, action="pseudonym.acquire", outcome="ok", ref=unit.msg.id,
                    detail={"count": len(fresh), "again": len(known)},
                )
            )  # fmt: skip

        await flow.unit(keep)
        known = {**known, **dict(fresh)}
    else:
        await flow.unit(
            lambda unit: unit.record(
                AuditEvent(
                    actor=unit.msg.iss, action="pseudonym.acquire", outcome="ok", ref=unit.msg.id,
                    detail={"count": 0, "again": len(known)},
                )
            )
        )  # fmt: skip
    return Acquiring(items=[AcquisitionPair(atena_no=a, acquisition_no=known[a]) for a in req.atena_nos])


# --- our inquiries ------------------------------------------------------------------------

BAD_ANSWER_TITLE = (
    "情報提供者からの回答を検証できないため、受け付けませんでした。"
    "処理通番を添えて管理者に連絡してください。"
)


def _bad_hub_reply(reason_code: str, why: str, serial: str | None = None) -> Problem:
    extra: dict[str, Any] = {"reason_code": reason_code}
    if serial is not None:
        extra["serial"] = serial
    return Problem(502, "bad_peer_response", "連携先の応答を検証できません。", why, **extra)


def _serial_of(value: Any) -> str | None:
    """A serial as the hub issues them (20 digits), or None."""
    if isinstance(value, str) and len(value) == 20 and value.isascii() and value.isdigit():
        return value
    return None


async def inquire(flow: Flow, req: ChukanInquiry) -> InquiryResult:
    """Ask the hub; check the provider's answer it relays; keep the outcome.

    Whatever comes back is kept under the serial (provision record + audit entry, one
    unit): an answer, 該当なし, 回答待ち, the hub's refusal, or an answer we cannot
    accept, which atena receives as 502 ``bad_answer`` with the serial and a
    ``reason_code`` (see ``service.BAD_ANSWER_REASONS``).
    """
    asker = flow.msg.iss

    async def keep(
        serial: str,
        outcome: str,
        *,
        audit_outcome: str | None = None,
        reason: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> bool:
        """A unit: the record under ``serial`` and its audit entry; a serial we hold
        already gets the audit entry only (``duplicate_serial``) and returns False."""

        def work(unit: Unit) -> bool:
            kept = service.keep_inquiry(unit.session, req, serial, outcome, unit.now, reason)
            unit.record(
                AuditEvent(
                    actor=asker,
                    action="inquiry.send",
                    outcome=(audit_outcome or outcome) if kept else "duplicate_serial",
                    subject=req.atena_no,
                    affair=req.procedure_code,
                    ref=serial,
                    detail=detail,
                )
            )
            return kept

        return await flow.unit(work)

    # The first unit screens the sender and keeps the message id: a person without a
    # pseudonym is refused there, and nothing is kept.
    pseudonym = await flow.unit(lambda unit: service.pseudonym_of(unit.session, req.atena_no))
    hub_url, hub_org = _hub(flow.rt)
    ask = HubInquiry(
        pseudonym=pseudonym,
        provider_org=req.provider_org,
        procedure_code=req.procedure_code,
        info_kind_code=req.info_kind_code,
        as_of=req.as_of,
        inquirer_department=req.inquirer_department,
        inquirer_user=req.inquirer_user,
    )
    try:
        relayed = await flow.send(contract.HUB_INQUIRY, hub_url, hub_org, ask)
    except Problem as exc:
        refused_serial = _serial_of(exc.extra.get("serial"))
        if refused_serial is not None:
            await keep(
                refused_serial,
                "refused" if exc.code == "rule_violation" else "error",
                audit_outcome=exc.code,
                reason=exc.detail or exc.title,
            )
        else:
            exc.extra.pop("serial", None)  # not one of the hub's serials: not passed on
        raise
    serial = relayed.serial
    if serial is None:
        # Signed by the hub, yet no serial to keep it under: audited, then refused.
        def audit_only(unit: Unit) -> None:
            unit.record(
                AuditEvent(
                    actor=asker, action="inquiry.send", outcome="bad_peer_response", subject=req.atena_no,
                    affair=req.procedure_code, detail={"reason_code": "bad_serial"},
                )
            )  # fmt: skip

        await flow.unit(audit_only)
        raise _bad_hub_reply("bad_serial", "ネットワークシステムの応答に処理通番がありません。")
    try:
        if relayed.status not in service.ANSWER_STATUSES:
            raise BadAnswer("bad_status")
        status = str(relayed.status)
        signed = await open_answer(flow.rt, relayed.answer, provider_org=req.provider_org)
        result = service.check_answer(
            flow.state.catalogue, signed.typ, signed.body, serial=serial, status=status, req=req
        )
    except BadAnswer as bad:
        await keep(serial, "bad_answer", reason=f"{bad.reason}: {bad.message}", detail={"reason_code": bad.reason})
        raise Problem(
            502, "bad_answer", BAD_ANSWER_TITLE, bad.message, serial=serial, reason_code=bad.reason
        ) from None
    if not await keep(serial, status):
        raise _bad_hub_reply(
            "duplicate_serial", "ネットワークシステムが既に使われた処理通番を返しました。", serial
        )
    return result


# --- provisions to other organizations -----------------------------------------------------


async def provide(flow: Flow, req: ProvisionRequest) -> RelayedAnswer:
    """Answer the hub's provision request: decided and recorded in one unit
    (`service.answer_provision`, with its audit entry), then signed by us and encrypted
    for the inquirer, so that the hub relays bytes it cannot read."""
    enc = await flow.rt.registry.encryption_key(req.inquirer_org)
    if enc is None:
        raise Problem(404, "unknown_organization", "照会者の暗号鍵が機関登録簿にありません。", req.inquirer_org)

    def answer(unit: Unit) -> service.Provision:
        provision = service.answer_provision(unit.session, unit.state.cipher, req, unit.now)
        unit.record(
            AuditEvent(
                actor=req.inquirer_org,
                action="provision.answer",
                outcome=provision.answer.status,
                subject=provision.atena_no,
                affair=req.procedure_code,
                ref=req.serial,
            )
        )
        return provision

    provision = await flow.unit(answer)
    rt = flow.rt
    inner = seal(rt.signing_key, rt.org_code, req.inquirer_org, PROVISION_ANSWER_TYP, provision.answer.dump(),
                 now=rt.clock())  # fmt: skip
    token = envelope.encrypt(inner.encode("ascii"), enc[1], enc[0])
    return RelayedAnswer(serial=req.serial, status=provision.answer.status, answer=token)


# --- opening a relayed answer ---------------------------------------------------------------

# What the receiver's checks of a signed message say, as a bad-answer reason.
_ENVELOPE_REASONS = {
    "malformed": "malformed",
    "bad_algorithm": "bad_algorithm",
    "decrypt_failed": "decrypt_failed",
}
_MESSAGE_REASONS = {
    "bad_signature": "bad_signature",
    "bad_algorithm": "bad_algorithm",
    "unknown_sender": "unknown_signer",
    "malformed_message": "malformed_message",
    "issuer_mismatch": "issuer_mismatch",
    "wrong_audience": "wrong_audience",
    "stale_message": "stale_message",
}


async def open_answer(rt: NodeRuntime, token: str | None, *, provider_org: str) -> Message:
    """Decrypt the relayed answer (JWE for us) and verify the provider's signature (JWS).

    The signer must be ``provider_org``, the provider the hub named; its key comes
    from the registry (refreshed from the hub for a key id we do not know yet).
    Raises BadAnswer; the content is checked afterwards by `service.check_answer`.
    """
    if not token:
        raise BadAnswer("no_answer")
    try:
        plaintext = envelope.decrypt(token, rt.encryption_key)
    except envelope.EnvelopeError as exc:
        raise BadAnswer(_ENVELOPE_REASONS.get(exc.code, "decrypt_failed")) from None
    try:
        inner = plaintext.decode("ascii")
        kid = envelope.peek_kid(inner)
    except (UnicodeDecodeError, envelope.EnvelopeError):
        raise BadAnswer("not_signed") from None
    signer = envelope.parse_kid(kid)
    if signer is None or signer.org_code != provider_org or signer.node != "chukan":
        # Checked before the registry is asked: another organization's key, or another
        # node's of the provider (its atena), never vouches for the provider's answer.
        raise BadAnswer("wrong_signer")
    try:
        key = await rt.registry.lookup(kid)
    except Problem:
        key = None  # the registry could not be fetched: we cannot tell who signed
    if key is None:
        raise BadAnswer("unknown_signer")
    try:
        return open_message(
            inner,
            key,
            expected_aud=rt.org_code,
            now=rt.clock(),
            max_skew_seconds=rt.config.max_clock_skew_seconds,
        )
    except Problem as exc:
        raise BadAnswer(_MESSAGE_REASONS.get(exc.code, "bad_signature")) from None
