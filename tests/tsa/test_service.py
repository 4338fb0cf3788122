"""The time-stamp authority's logic: heads only move forward, receipts verify, refusals are
reported and write nothing else; on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from joserfc.jwk import OKPKey
from sqlalchemy import MetaData, func, select
from sqlalchemy.orm import Session, sessionmaker

from renkei.core.audit import timestamping
from renkei.core.audit.log import AuditEvent, AuditLog, Checkpoint, audit_tables
from renkei.core.audit.timestamping import AUDIT_CHECKPOINT
from renkei.core.crypto import envelope
from renkei.core.db import make_engine, transaction
from renkei.core.errors import Problem
from renkei.core.wire import contract
from renkei.core.wire.contract import TsaStamp
from renkei.tsa import service
from renkei.tsa.models import Base
from tests.api.fed import fresh_ed25519

TSA = "9000000000000003"
SHINJUKU = "1310410000000000"
NAKANO = "1311480000000000"
NODE = f"{SHINJUKU}/atena"
T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


def _public(key: envelope.SigningKey) -> Any:
    return OKPKey.import_key(key.key.as_dict(private=False))


# Every node its own key; KEYS by node id (and the authority's own under TSA).
KEYS = {
    TSA: fresh_ed25519(f"{TSA}:tsa:sig:1"),
    **{
        f"{org}/{node}": fresh_ed25519(f"{org}:{node}:sig:1")
        for org in (SHINJUKU, NAKANO)
        for node in ("atena", "chukan")
    },
}
PUBLIC = {k.kid: _public(k) for k in KEYS.values()}


def _hash(n: int, fork: str = "") -> str:
    return hashlib.sha256(f"entry {n}{fork}".encode()).hexdigest()


def _request(seq: int, hash_: str | None = None, *, node: str = NODE, signer: str | None = None) -> TsaStamp:
    """A head of ``node`` signed by ``signer``'s key (by default the node's own)."""
    signer = signer or node
    h = hash_ or _hash(seq)
    at = timestamping.iso(T0 + timedelta(minutes=seq))
    token = envelope.sign(timestamping.signed_payload(seq, h, at), KEYS[signer])
    return TsaStamp(node=node, kind=AUDIT_CHECKPOINT, seq=seq, hash=h, at=at, token=token)


def _stamp(sessions: sessionmaker[Session], req: TsaStamp, now: datetime = T0) -> service.StampResult:
    service.check_request(req, sender_node=req.node, resolve_key=PUBLIC.get)
    with transaction(sessions) as s:
        return service.stamp(s, req, sender=req.org_code, key=KEYS[TSA], tsa=TSA, now=now)


def _counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as s:
        return {
            t.name: int(s.execute(select(func.count()).select_from(t)).scalar_one())
            for t in Base.metadata.sorted_tables
        }


def test_heads_move_forward_and_each_receipt_verifies(node_db: Any) -> None:
    sessions = node_db("tsa")
    first = _stamp(sessions, _request(5))
    assert first.refusal is None and first.new and first.receipt is not None
    receipt = timestamping.open_receipt(first.receipt.token, PUBLIC.get, tsa=TSA)
    assert (receipt.node, receipt.kind, receipt.seq, receipt.hash) == (NODE, AUDIT_CHECKPOINT, 5, _hash(5))
    assert receipt.serial == 1 and receipt.stamped_at == "2026-04-01T09:00:00.000000+00:00"
    later = _stamp(sessions, _request(9), T0 + timedelta(minutes=1))
    assert later.receipt is not None and later.receipt.serial == 2
    with sessions() as s:
        head = service.current_head(s, NODE, AUDIT_CHECKPOINT, tsa=TSA)
    assert (head.seq, head.hash) == (9, _hash(9))
    assert head.receipt is not None and head.receipt.token == later.receipt.token
    # What a node does with the answer to tsa.head: believed through its receipt.
    parsed = timestamping.parse_head(
        timestamping.head_body(head), PUBLIC.get, tsa=TSA, node=NODE, kind=AUDIT_CHECKPOINT
    )
    assert (parsed.seq, parsed.hash) == (9, _hash(9))
    # Another node of the same organization has its own head.
    other = _stamp(sessions, _request(2, node=f"{SHINJUKU}/chukan"))
    assert other.new
    with sessions() as s:
        assert service.current_head(s, NODE, AUDIT_CHECKPOINT, tsa=TSA).seq == 9
        assert service.current_head(s, f"{SHINJUKU}/chukan", AUDIT_CHECKPOINT, tsa=TSA).seq == 2
        assert service.current_head(s, f"{NAKANO}/atena", AUDIT_CHECKPOINT, tsa=TSA).seq == 0


def test_the_same_head_again_gets_the_same_receipt(node_db: Any) -> None:
    sessions = node_db("tsa")
    first = _stamp(sessions, _request(7))
    before = _counts(sessions)
    again = _stamp(sessions, _request(7), T0 + timedelta(hours=1))
    assert again.refusal is None and not again.new
    assert again.receipt is not None and first.receipt is not None
    assert again.receipt.token == first.receipt.token
    assert _counts(sessions) == before


@pytest.mark.parametrize(
    ("seq", "fork", "code", "rule"),
    [(4, "", "head_regression", "head_regression"), (7, "x", "head_conflict", "head_conflict")],
)
def test_a_head_that_moves_back_or_forks_is_refused_and_reported(
    node_db: Any, seq: int, fork: str, code: str, rule: str
) -> None:
    sessions = node_db("tsa")
    _stamp(sessions, _request(7))
    before = _counts(sessions)
    result = _stamp(sessions, _request(seq, _hash(seq, fork)))
    assert result.receipt is None and result.refusal is not None
    assert result.refusal.code == code and result.refusal.status == 422
    assert "タイムスタンプ局" in result.refusal.title or "記録" in result.refusal.title
    assert result.alert is not None and result.alert[0] == rule
    assert result.alert[1]["known_seq"] == 7 and result.alert[1]["seq"] == seq
    # The service itself wrote nothing (the route records the alert and the audit entry).
    assert _counts(sessions) == before
    with sessions() as s:
        head = service.current_head(s, NODE, AUDIT_CHECKPOINT, tsa=TSA)
    assert (head.seq, head.hash) == (7, _hash(7))


def test_check_request_refuses_in_order_and_reads_nothing() -> None:
    # 1. A head of another node than the sender: of another organization (even with a
    # valid token of that node), or another node of the sender's own organization.
    for node in (f"{NAKANO}/atena", f"{SHINJUKU}/chukan"):
        req = _request(3, node=node, signer=node)
        with pytest.raises(Problem) as exc:
            service.check_request(req, sender_node=NODE, resolve_key=PUBLIC.get)
        assert exc.value.code == "node_not_yours" and exc.value.status == 403
    # 2. A token by another node's key (of another organization or the same one), over
    # another head, or unverifiable.
    forged = _request(3, node=NODE, signer=f"{NAKANO}/atena")
    sibling = _request(3, node=NODE, signer=f"{SHINJUKU}/chukan")
    other_head = _request(3).model_copy(update={"seq": 4, "hash": _hash(4)})
    garbage = _request(3).model_copy(update={"token": "a.b.c"})
    for bad in (forged, sibling, other_head, garbage):
        with pytest.raises(Problem) as exc:
            service.check_request(bad, sender_node=NODE, resolve_key=PUBLIC.get)
        assert exc.value.code == "bad_stamp_signature" and exc.value.status == 422
    service.check_request(_request(3), sender_node=NODE, resolve_key=PUBLIC.get)


def test_an_audit_checkpoint_is_what_the_authority_accepts(tmp_path: Any) -> None:
    """The checkpoint AuditLog signs, handed to on_checkpoint, passes the authority's check as is."""
    md = MetaData()
    tables = audit_tables(md)
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    md.create_all(engine)
    seen: list[Checkpoint] = []
    log = AuditLog(tables, KEYS[NODE], checkpoint_every=3, on_checkpoint=lambda _s, cp: seen.append(cp))
    with Session(engine) as s:
        log.append_many(s, [AuditEvent(actor="S0001", action="x", outcome="ok") for _ in range(4)])
        log.checkpoint(s)
        s.commit()
    assert [cp.seq for cp in seen] == [3, 4]
    for cp in seen:
        body = {"node": NODE, "kind": AUDIT_CHECKPOINT, "seq": cp.seq, "hash": cp.hash, "at": cp.at,
                "token": cp.signature}
        req = contract.parse(TsaStamp, body)
        service.check_request(req, sender_node=NODE, resolve_key=PUBLIC.get)
    engine.dispose()


def test_receipts_do_not_verify_when_altered_or_signed_by_another() -> None:
    good = timestamping.sign_receipt(
        KEYS[TSA], tsa=TSA, serial=1, kind=AUDIT_CHECKPOINT, node=NODE, seq=5, hash_=_hash(5), stamped_at=T0
    )
    assert timestamping.open_receipt(good.token, PUBLIC.get, tsa=TSA).seq == 5
    by_node = timestamping.sign_receipt(
        KEYS[NODE], tsa=TSA, serial=1, kind=AUDIT_CHECKPOINT, node=NODE, seq=50, hash_=_hash(5), stamped_at=T0
    )
    header, _payload, sig = good.token.split(".")
    tampered = ".".join((header, by_node.token.split(".")[1], sig))
    for bad in (by_node.token, tampered, "x", None):
        with pytest.raises(timestamping.ReceiptError):
            timestamping.open_receipt(bad, PUBLIC.get, tsa=TSA)
    # A head answer whose receipt names another seq is not believed.
    body = {"node": NODE, "kind": AUDIT_CHECKPOINT, "seq": 9, "hash": _hash(9), "receipt": good.token}
    with pytest.raises(timestamping.ReceiptError):
        timestamping.parse_head(
            contract.parse_reply(contract.TsaHead, body, "tsa"), PUBLIC.get, tsa=TSA, node=NODE, kind=AUDIT_CHECKPOINT
        )


@pytest.mark.parametrize(
    "change",
    [
        {"node": "131041/atena"},
        {"node": "1310410000000000"},
        {"kind": "whatever"},
        {"kind": ["audit_checkpoint"]},
        {"kind": {"a": 1}},
        {"seq": 0},
        {"seq": "5"},
        {"seq": True},
        {"hash": "ABC"},
        {"token": ""},
        {"at": None},
    ],
)
def test_malformed_stamp_bodies_are_refused_in_japanese(change: dict[str, Any]) -> None:
    body = {**_request(5).dump(), **change}
    with pytest.raises(Problem) as exc:
        contract.parse(TsaStamp, body)
    assert exc.value.code == "bad_stamp_request" and exc.value.status == 422
    assert "タイムスタンプ" in exc.value.title
