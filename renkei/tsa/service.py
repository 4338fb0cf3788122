"""Time-stamp authority logic: countersign heads that only move forward, answer the newest.

Plain functions over a session; no HTTP here. Refusals come in a stated order (see
`check_request` and `stamp`); a head that moves back or forks is refused AND reported
(``StampResult.alert``), because it is what a node that shortened or rewrote its own
history would send.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from renkei.core.audit import timestamping
from renkei.core.audit.timestamping import AuthorityHead, Receipt
from renkei.core.crypto import envelope
from renkei.core.errors import Problem
from renkei.core.wire.contract import TsaStamp
from renkei.tsa.models import Head
from renkei.tsa.models import Receipt as ReceiptRow

_NONE = "0" * 64


def check_request(req: TsaStamp, *, sender_node: str, resolve_key: Callable[[str], Any | None]) -> None:
    """Refuse, in this order: 1. a head of another node than the sending one
    (``sender_node`` = ``<機関コード>/<node kind>`` of the message's signing key: every node
    has its own key, so an organization's chukan cannot stamp a head for its atena);
    2. a token that is not that node's valid signature over exactly (seq, hash, at).
    Pure: reads and writes nothing."""
    if req.node != sender_node:
        raise Problem(
            403,
            "node_not_yours",
            "他のノードの記録にはタイムスタンプを付与できません。",
            f"node={req.node} sender={sender_node}",
        )
    if not timestamping.token_matches(req, resolve_key):
        raise Problem(
            422,
            "bad_stamp_signature",
            "依頼元の署名を検証できません（署名の偽造、未登録の鍵、または内容の不一致）。",
            f"node={req.node} seq={req.seq}",
        )


def require_own_node(node: str, *, sender_node: str) -> None:
    """A node asks about its own records only (its own key signs the question): else 403.
    ``sender_node`` is ``<機関コード>/<node kind>`` of the message's signing key."""
    if node != sender_node:
        raise Problem(403, "node_not_yours", "他のノードの記録は照会できません。", f"node={node}")


@dataclass(frozen=True)
class StampResult:
    """The receipt, or the refusal; ``alert`` (rule, detail) when the refusal is reported."""

    receipt: Receipt | None
    refusal: Problem | None = None
    alert: tuple[str, dict[str, Any]] | None = None
    new: bool = False


def _locked_head(session: Session, node: str, kind: str, now: datetime) -> Head:
    """The node's head row, created as a placeholder (seq 0) if absent, locked for this transaction."""
    dialect = session.get_bind().dialect.name
    values = {
        "node": node,
        "kind": kind,
        "seq": 0,
        "hash": _NONE,
        "signed_at": "",
        "token": "",
        "receipt_serial": 0,
        "stamped_at": now,
    }
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(Head).values(values).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(sqlite_insert(Head).values(values).on_conflict_do_nothing())
    head = session.execute(
        select(Head).where(Head.node == node, Head.kind == kind).with_for_update()
    ).scalar_one()
    return head


def _receipt(row: ReceiptRow, tsa: str) -> Receipt:
    return Receipt(
        tsa=tsa, serial=row.serial, kind=row.kind, node=row.node, seq=row.seq, hash=row.hash,
        stamped_at=timestamping.iso(row.stamped_at), token=row.receipt,
    )


def stamp(
    session: Session,
    req: TsaStamp,
    *,
    sender: str,
    key: envelope.SigningKey,
    tsa: str,
    now: datetime,
) -> StampResult:
    """Countersign ``req`` (already through `check_request`) if it moves the node's head forward.

    Against the stored head: 3. a lower seq is refused (head_regression, reported);
    4. the same seq with another hash is refused (head_conflict, reported); the same
    seq and hash again gets the receipt already issued (a retry); a higher seq is
    stored as the new head and gets a new receipt.
    """
    head = _locked_head(session, req.node, req.kind, now)
    known = {"node": req.node, "kind": req.kind, "seq": req.seq, "hash": req.hash,
             "known_seq": head.seq, "known_hash": head.hash}
    if req.seq < head.seq:
        return StampResult(
            None,
            Problem(
                422,
                "head_regression",
                "記録の番号が後退しています。タイムスタンプ局には、より新しい記録が登録済みです"
                "（末尾の削除または消去の疑い）。",
                f"{req.node}: 登録済み {head.seq:,} 番、依頼 {req.seq:,} 番",
            ),
            ("head_regression", known),
        )
    if req.seq == head.seq:
        if req.hash != head.hash:
            return StampResult(
                None,
                Problem(
                    422,
                    "head_conflict",
                    "同じ番号の記録に、登録済みのものと異なる内容が届きました（記録の書き換えの疑い）。",
                    f"{req.node}: {req.seq:,} 番",
                ),
                ("head_conflict", known),
            )
        existing = session.get(ReceiptRow, head.receipt_serial)
        if existing is not None:
            return StampResult(_receipt(existing, tsa))
    row = ReceiptRow(
        node=req.node, kind=req.kind, seq=req.seq, hash=req.hash, submitted_by=sender, stamped_at=now, receipt=""
    )
    session.add(row)
    session.flush()  # the serial
    receipt = timestamping.sign_receipt(
        key, tsa=tsa, serial=row.serial, kind=req.kind, node=req.node, seq=req.seq, hash_=req.hash, stamped_at=now
    )
    row.receipt = receipt.token
    session.execute(
        update(Head)
        .where(Head.node == req.node, Head.kind == req.kind)
        .values(seq=req.seq, hash=req.hash, signed_at=req.at, token=req.token, receipt_serial=row.serial,
                stamped_at=now)
    )
    return StampResult(receipt, new=True)


def current_head(session: Session, node: str, kind: str, *, tsa: str) -> AuthorityHead:
    """The newest head stamped for (node, kind), with its receipt; seq 0 if none."""
    head = session.get(Head, (node, kind))
    if head is None or head.seq == 0:
        return AuthorityHead(node, kind, 0, None, None, None)
    row = session.get(ReceiptRow, head.receipt_serial)
    if row is None:  # the authority's own tables disagree: answer nothing rather than a guess
        raise Problem(500, "tsa_inconsistent", "タイムスタンプ局の記録に不整合があります。")
    receipt = _receipt(row, tsa)
    return AuthorityHead(node, kind, head.seq, head.hash, receipt.stamped_at, receipt)


def stamped(session: Session, node: str, kind: str, *, after: int, limit: int) -> tuple[list[tuple[int, str]], bool]:
    """Every head stamped for (node, kind) after seq ``after``, by seq: (pairs, more)."""
    rows = session.execute(
        select(ReceiptRow.seq, ReceiptRow.hash)
        .where(ReceiptRow.node == node, ReceiptRow.kind == kind, ReceiptRow.seq > after)
        .order_by(ReceiptRow.seq)
        .limit(limit + 1)
    ).all()
    return [(int(r[0]), str(r[1])) for r in rows[:limit]], len(rows) > limit
