"""Intermediate-server routes: from the own atena (acquire, copies, inquiries) and from the hub."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from renkei.catalogue import Catalogue
from renkei.chukan import service
from renkei.core import ids
from renkei.core.audit import AuditEvent
from renkei.core.crypto import envelope
from renkei.core.db import transaction
from renkei.core.errors import Problem
from renkei.core.messaging import open_message, remember, seal
from renkei.core.node import SEALED_BODY, NodeRuntime, expect_sender, expect_typ

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


@router.post(
    "/v1/inquiries",
    openapi_extra=SEALED_BODY,
    tags=["情報照会"],
    summary="情報照会（団体内統合宛名から）",
)
async def inquire(request: Request) -> Response:
    rt = _rt(request)
    msg = await rt.receive(request)
    expect_typ(msg, "inquiry.request")
    expect_sender(msg, rt.org_code)
    body = msg.body
    atena_no = service.check_atena_no(body.get("atena_no"))
    fields = {
        k: str(body.get(k, ""))
        for k in ("provider_org", "procedure_code", "info_kind_code", "as_of")
    }
    service.parse_date(fields["as_of"], "基準日")
    with transaction(rt.sessions) as s:
        remember(s, rt.kernel, msg, rt.clock())
        pseudonym = service.pseudonym_of(s, atena_no)
    hub_url, hub_org = _hub(rt)
    try:
        answer = await rt.peer.call(
            hub_url + "/v1/inquiries",
            hub_org,
            "inquiry.request",
            {"pseudonym": pseudonym, **fields},
        )
    except Problem as exc:
        serial = exc.extra.get("serial")
        if serial:
            with transaction(rt.sessions) as s:
                service.record(
                    s,
                    serial=str(serial),
                    direction="inquiry",
                    counterpart_org=fields["provider_org"],
                    procedure_code=fields["procedure_code"],
                    info_kind_code=fields["info_kind_code"],
                    atena_no=atena_no,
                    as_of=fields["as_of"],
                    outcome="refused" if exc.code == "rule_violation" else "error",
                    now=rt.clock(),
                    reason=exc.detail or exc.title,
                )
                rt.record(
                    s,
                    AuditEvent(
                        actor=msg.iss,
                        action="inquiry.send",
                        outcome=exc.code,
                        subject=atena_no,
                        affair=fields["procedure_code"],
                        ref=str(serial),
                    ),
                )
        raise
    serial = str(answer.body.get("serial", ""))
    status = str(answer.body.get("status", ""))
    result: dict[str, Any] = {"serial": serial, "status": status}
    token = answer.body.get("answer")
    if isinstance(token, str) and token:
        try:
            inner = envelope.decrypt(token, rt.encryption_key).decode("ascii")
        except (envelope.EnvelopeError, UnicodeDecodeError):
            raise Problem(502, "answer_undecryptable", "回答を復号できません。", serial) from None
        key = await rt.registry.lookup(envelope.peek_kid(inner))
        signed = open_message(
            inner,
            key,
            expected_aud=rt.org_code,
            now=rt.clock(),
            max_skew_seconds=rt.config.max_clock_skew_seconds,
        )
        if signed.iss != fields["provider_org"] or signed.body.get("serial") != serial:
            raise Problem(
                502, "answer_mismatch", "回答の提供者または処理通番が照会と一致しません。", serial
            )
        result.update(
            {
                k: signed.body.get(k)
                for k in ("edition", "record_key", "values", "valid_from", "valid_to")
            }
        )
    with transaction(rt.sessions) as s:
        service.record(
            s,
            serial=serial,
            direction="inquiry",
            counterpart_org=fields["provider_org"],
            procedure_code=fields["procedure_code"],
            info_kind_code=fields["info_kind_code"],
            atena_no=atena_no,
            as_of=fields["as_of"],
            outcome=status,
            now=rt.clock(),
        )
        rt.record(
            s,
            AuditEvent(
                actor=msg.iss,
                action="inquiry.send",
                outcome=status,
                subject=atena_no,
                affair=fields["procedure_code"],
                ref=serial,
            ),
        )
    return rt.reply(msg, "inquiry.result", result)


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
            422, "unknown_organization", "照会者の暗号鍵が機関登録簿にありません。", inquirer
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
