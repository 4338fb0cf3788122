"""Intermediate-server routes: from the own atena (acquire, copies, inquiries) and from the hub."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from renkei.catalogue import Catalogue
from renkei.chukan import flows, service
from renkei.core import ids
from renkei.core.audit.log import AuditEvent
from renkei.core.crypto import envelope
from renkei.core.db import transaction
from renkei.core.errors import Problem
from renkei.core.wire.messaging import Message, remember, seal
from renkei.core.wire.runtime import SEALED_BODY, NodeRuntime, expect_sender, expect_typ

router = APIRouter()


def _rt(request: Request) -> NodeRuntime:
    rt: NodeRuntime = request.app.state.rt
    return rt


def _catalogue(request: Request) -> Catalogue:
    cat: Catalogue = request.app.state.catalogue
    return cat


def _hub(rt: NodeRuntime) -> tuple[str, str]:
    return rt.config.peer("hub"), rt.config.hub_org_code


def _codes(body: dict[str, Any]) -> None:
    """Check code fields before they reach records or the audit log."""
    for name, kind in (("procedure_code", ids.IdKind.PROCEDURE_CODE), ("info_kind_code", ids.IdKind.INFO_KIND_CODE)):
        problem = ids.check(kind, str(body.get(name, "")))
        if problem is not None:
            raise Problem(422, f"invalid_{name}", problem.message)


def _list(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(name)
    if not isinstance(value, list):
        raise Problem(422, "bad_items", f"{name} を配列で指定してください。")
    if len(value) > service.MAX_BATCH:
        raise Problem(422, "bad_count", f"一度に{service.MAX_BATCH}件までです。")
    return value


@router.get("/healthz", tags=["運用"])
async def healthz() -> dict[str, str]:
    return {"status": "ok", "node": "chukan"}


@router.post(
    "/v1/acquisitions",
    openapi_extra=SEALED_BODY,
    tags=["符号管理"],
    summary="符号取得の開始（団体内統合宛名から）",
)
async def acquire(request: Request) -> Response:
    rt = _rt(request)
    msg = await rt.receive(request)
    expect_typ(msg, "pseudonym.acquire")
    expect_sender(msg, rt.org_code)
    atena_nos = [service.check_atena_no(a) for a in _list(msg.body, "atena_nos")]
    if not atena_nos:
        raise Problem(422, "bad_count", "統合宛名番号を1件以上指定してください。")
    with transaction(rt.sessions) as s:
        remember(s, rt.kernel, msg, rt.clock())
    hub_url, hub_org = _hub(rt)
    answer = await rt.peer.call(
        hub_url + "/v1/acquisitions", hub_org, "acquisition.create", {"count": len(atena_nos)}
    )
    numbers = [str(n) for n in answer.body.get("acquisition_nos", [])]
    if len(numbers) != len(atena_nos):
        raise Problem(502, "peer_error", "取得番号の件数が一致しません。")
    pairs = list(zip(atena_nos, numbers, strict=True))
    with transaction(rt.sessions) as s:
        service.remember_acquisitions(s, pairs, rt.clock())
        rt.record(
            s,
            AuditEvent(
                actor=msg.iss,
                action="pseudonym.acquire",
                outcome="ok",
                ref=msg.id,
                detail={"count": len(pairs)},
            ),
        )
    return rt.reply(
        msg,
        "pseudonym.acquiring",
        {"items": [{"atena_no": a, "acquisition_no": n} for a, n in pairs]},
    )


@router.post(
    "/v1/acquisitions/deliver",
    openapi_extra=SEALED_BODY,
    tags=["符号管理"],
    summary="符号の受領（ネットワークシステムから）",
)
async def deliver(request: Request) -> Response:
    rt = _rt(request)
    msg = await rt.receive(request)
    expect_typ(msg, "pseudonym.deliver")
    expect_sender(msg, rt.config.hub_org_code)
    items = [i for i in _list(msg.body, "items") if isinstance(i, dict)]
    with transaction(rt.sessions) as s:
        remember(s, rt.kernel, msg, rt.clock())
        counts = service.bind_deliveries(s, items, rt.clock())
        rt.record(
            s,
            AuditEvent(
                actor=msg.iss, action="pseudonym.bind", outcome="ok", ref=msg.id, detail=counts
            ),
        )
    return rt.reply(msg, "pseudonym.delivered", counts)


@router.post(
    "/v1/acquisitions/status", openapi_extra=SEALED_BODY, tags=["符号管理"], summary="符号取得状況"
)
async def status(request: Request) -> Response:
    rt = _rt(request)
    msg = await rt.receive(request)
    expect_typ(msg, "pseudonym.status")
    expect_sender(msg, rt.org_code)
    atena_nos = [service.check_atena_no(a) for a in _list(msg.body, "atena_nos")]
    with transaction(rt.sessions) as s:
        remember(s, rt.kernel, msg, rt.clock())
        bound = service.bound_atena_nos(s, atena_nos)
    # Only whether a pseudonym exists: the pseudonym itself never leaves the chukan.
    return rt.reply(msg, "pseudonym.status", {"bound": bound})


@router.post(
    "/v1/fukuhon",
    openapi_extra=SEALED_BODY,
    tags=["副本登録"],
    summary="副本の登録（版管理、削除は新しい版）",
)
async def register(request: Request) -> Response:
    rt = _rt(request)
    msg = await rt.receive(request)
    expect_typ(msg, "fukuhon.register")
    expect_sender(msg, rt.org_code)
    records = [r if isinstance(r, dict) else {} for r in _list(msg.body, "records")]
    with transaction(rt.sessions) as s:
        remember(s, rt.kernel, msg, rt.clock())
        done = service.register_fukuhon(
            s, _catalogue(request), records, rt.clock(), request.app.state.cipher
        )
        rt.record(
            s,
            AuditEvent(
                actor=msg.iss,
                action="fukuhon.register",
                outcome="ok",
                ref=msg.id,
                detail={"count": len(done)},
            ),
        )
    return rt.reply(
        msg, "fukuhon.registered", {"registered": len(done), "versions": [d.version for d in done]}
    )


BAD_ANSWER_TITLE = (
    "情報提供者からの回答を検証できないため、受け付けませんでした。"
    "処理通番を添えて管理者に連絡してください。"
)


def _serial_of(value: Any) -> str | None:
    """A serial as the hub issues them (20 digits), or None."""
    if isinstance(value, str) and len(value) == 20 and value.isascii() and value.isdigit():
        return value
    return None


@dataclass(frozen=True)
class _Inquiry:
    """One inquiry of our atena, and how its outcome is kept (record + audit entry)."""

    rt: NodeRuntime
    msg: Message
    atena_no: str
    fields: dict[str, str]

    def keep(
        self,
        serial: str,
        outcome: str,
        *,
        audit_outcome: str | None = None,
        reason: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> bool:
        """The provision record and the audit entry, in one transaction.

        A serial we already hold (the hub repeated one) gets the audit entry only, with
        outcome ``duplicate_serial``; then False is returned.
        """
        with transaction(self.rt.sessions) as s:
            duplicate = service.inquiry_recorded(s, serial)
            if not duplicate:
                service.record(
                    s,
                    serial=serial,
                    direction="inquiry",
                    counterpart_org=self.fields["provider_org"],
                    procedure_code=self.fields["procedure_code"],
                    info_kind_code=self.fields["info_kind_code"],
                    atena_no=self.atena_no,
                    as_of=self.fields["as_of"],
                    outcome=outcome,
                    now=self.rt.clock(),
                    reason=reason,
                )
            self.rt.record(
                s,
                AuditEvent(
                    actor=self.msg.iss,
                    action="inquiry.send",
                    outcome="duplicate_serial" if duplicate else (audit_outcome or outcome),
                    subject=self.atena_no,
                    affair=self.fields["procedure_code"],
                    ref=serial,
                    detail=detail,
                ),
            )
        return not duplicate


def _bad_hub_reply(reason_code: str, why: str, serial: str | None = None) -> Problem:
    extra: dict[str, Any] = {"reason_code": reason_code}
    if serial is not None:
        extra["serial"] = serial
    return Problem(502, "bad_peer_response", "連携先の応答を検証できません。", why, **extra)


@router.post(
    "/v1/inquiries",
    openapi_extra=SEALED_BODY,
    tags=["情報照会"],
    summary="情報照会（団体内統合宛名から）",
)
async def inquire(request: Request) -> Response:
    """Ask the hub; check the provider's answer it relays; keep the outcome.

    Whatever comes back is kept under the serial (provision record + audit entry) in
    one transaction: an answer, 該当なし, 回答待ち, the hub's refusal, or an answer we
    cannot accept, which atena receives as 502 ``bad_answer`` with the serial and a
    ``reason_code`` (see ``service.BAD_ANSWER_REASONS``).
    """
    rt = _rt(request)
    msg = await rt.receive(request)
    expect_typ(msg, "inquiry.start")
    expect_sender(msg, rt.org_code)
    body = msg.body
    atena_no = service.check_atena_no(body.get("atena_no"))
    fields = {
        k: str(body.get(k, ""))
        for k in ("provider_org", "procedure_code", "info_kind_code", "as_of")
    }
    as_of = service.parse_date(fields["as_of"], "基準日")
    with transaction(rt.sessions) as s:
        remember(s, rt.kernel, msg, rt.clock())
        pseudonym = service.pseudonym_of(s, atena_no)
    inquiry = _Inquiry(rt, msg, atena_no, fields)
    hub_url, hub_org = _hub(rt)
    try:
        answer = await rt.peer.call(
            hub_url + "/v1/inquiries",
            hub_org,
            "inquiry.request",
            {"pseudonym": pseudonym, **fields},
        )
    except Problem as exc:
        refused_serial = _serial_of(exc.extra.get("serial"))
        if refused_serial is not None:
            inquiry.keep(
                refused_serial,
                "refused" if exc.code == "rule_violation" else "error",
                audit_outcome=exc.code,
                reason=exc.detail or exc.title,
            )
        else:
            exc.extra.pop("serial", None)  # not one of the hub's serials: not passed on
        raise
    serial = _serial_of(answer.body.get("serial"))
    if serial is None:
        # Signed by the hub, yet no serial to keep it under: audited, then refused.
        with transaction(rt.sessions) as s:
            rt.record(
                s,
                AuditEvent(
                    actor=msg.iss,
                    action="inquiry.send",
                    outcome="bad_peer_response",
                    subject=atena_no,
                    affair=fields["procedure_code"],
                    detail={"reason_code": "bad_serial"},
                ),
            )
        raise _bad_hub_reply("bad_serial", "ネットワークシステムの応答に処理通番がありません。")
    status = answer.body.get("status")
    try:
        if not isinstance(status, str) or status not in service.ANSWER_STATUSES:
            raise service.BadAnswer("bad_status")
        signed = await flows.open_answer(
            rt, answer.body.get("answer"), provider_org=fields["provider_org"]
        )
        found = service.check_answer(
            _catalogue(request),
            signed.typ,
            signed.body,
            serial=serial,
            status=status,
            info_kind_code=fields["info_kind_code"],
            as_of=as_of,
        )
    except service.BadAnswer as bad:
        inquiry.keep(
            serial,
            "bad_answer",
            reason=f"{bad.reason}: {bad.message}",
            detail={"reason_code": bad.reason},
        )
        raise Problem(
            502, "bad_answer", BAD_ANSWER_TITLE, bad.message, serial=serial, reason_code=bad.reason
        ) from None
    if not inquiry.keep(serial, status):
        raise _bad_hub_reply(
            "duplicate_serial", "ネットワークシステムが既に使われた処理通番を返しました。", serial
        )
    return rt.reply(msg, "inquiry.result", {"serial": serial, "status": status, **found})


@router.post(
    "/v1/provisions",
    openapi_extra=SEALED_BODY,
    tags=["情報提供"],
    summary="情報提供（ネットワークシステムから）",
)
async def provide(request: Request) -> Response:
    rt = _rt(request)
    msg = await rt.receive(request)
    expect_typ(msg, "provision.request")
    expect_sender(msg, rt.config.hub_org_code)
    body = msg.body
    serial = body.get("serial")
    if not (
        isinstance(serial, str) and serial.isascii() and serial.isdigit() and len(serial) == 20
    ):
        raise Problem(422, "invalid_serial", "処理通番の形式が誤っています（20桁の数字）。")
    _codes(body)
    inquirer = str(body.get("inquirer_org", ""))
    kind_code = str(body.get("info_kind_code", ""))
    as_of = service.parse_date(body.get("as_of"), "基準日")
    enc = await rt.registry.encryption_key(inquirer)
    if enc is None:
        raise Problem(
            404, "unknown_organization", "照会者の暗号鍵が機関登録簿にありません。", inquirer
        )
    with transaction(rt.sessions) as s:
        remember(s, rt.kernel, msg, rt.clock())
        if service.provision_recorded(s, serial):
            raise Problem(
                409, "duplicate_serial", "この処理通番の情報提供は既に記録されています。", serial
            )
        atena_no = service.atena_of_pseudonym(s, str(body.get("pseudonym", "")))
        copy = service.find_copy(s, atena_no, kind_code, as_of) if atena_no else None
        if copy is None:
            status = "no_data"
        elif copy.no_auto_answer:
            status = "pending"  # a person decides (manual answer queue)
        else:
            status = "answered"
        service.record(
            s,
            serial=serial,
            direction="provision",
            counterpart_org=inquirer,
            procedure_code=str(body.get("procedure_code", "")),
            info_kind_code=kind_code,
            atena_no=atena_no,
            as_of=as_of.isoformat(),
            outcome=status,
            now=rt.clock(),
        )
        rt.record(
            s,
            AuditEvent(
                actor=inquirer,
                action="provision.answer",
                outcome=status,
                subject=atena_no,
                affair=str(body.get("procedure_code", "")),
                ref=serial,
            ),
        )
    payload: dict[str, Any] = {
        "serial": serial,
        "status": status,
        "info_kind_code": kind_code,
        "as_of": as_of.isoformat(),
    }
    if copy is not None and status == "answered":
        with rt.sessions() as s:
            values = service.copy_values(copy, request.app.state.cipher)
        payload.update(
            {
                "edition": copy.edition,
                "record_key": copy.record_key,
                "values": values,
                "valid_from": copy.valid_from.isoformat(),
                "valid_to": copy.valid_to.isoformat() if copy.valid_to else None,
            }
        )
    # Signed by us, encrypted for the inquirer: the hub relays bytes it cannot read.
    inner = seal(rt.signing_key, rt.org_code, inquirer, "provision.answer", payload, now=rt.clock())
    answer = envelope.encrypt(inner.encode("ascii"), enc[1], enc[0])
    return rt.reply(msg, "provision.answer", {"serial": serial, "status": status, "answer": answer})
