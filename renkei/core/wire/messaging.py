"""Signed node-to-node messages: sealing, opening, freshness and replay checks.

A message is a compact JWS (Ed25519) whose payload is JSON:
``{"id", "iss", "aud", "typ", "iat", "body"}``. The key id names the sending
organization and node (``<機関コード>:<node kind>:sig:<n>``), so the signature says who
is speaking; TLS only says the peer belongs to our CA.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from renkei.core.crypto import envelope
from renkei.core.db import KernelTables
from renkei.core.errors import STATUS_OF, Problem
from renkei.core.sql import Prepared

JOSE_MEDIA_TYPE = "application/jose"
_INSERTS: dict[str, Any] = {"sqlite": sqlite_insert, "postgresql": pg_insert}
_KEEP: dict[Any, Prepared] = {}  # by table
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
# Message ids go into audit logs, which refuse anything shaped like an individual number.
_DIGIT_RUN = re.compile(r"[0-9]{12}")
# An envelope refusal as a problem code: a malformed token is 400 like any other
# malformed message, a failed signature check 401.
_ENVELOPE_CODES = {
    "malformed": "malformed_message",
    "unknown_key": "unknown_sender",
    "bad_algorithm": "bad_algorithm",
    "bad_signature": "bad_signature",
}


@dataclass(frozen=True)
class Message:
    id: str
    iss: str
    aud: str
    typ: str
    iat: int
    body: dict[str, Any]
    node: str = ""  # the sending node's kind (atena, chukan, hub …), from the signing key's kid


def new_message_id() -> str:
    """22 URL-safe characters; re-drawn in the rare case of a run of 12 digits."""
    while True:
        value = secrets.token_urlsafe(16)
        if not _DIGIT_RUN.search(value):
            return value


def seal(
    key: envelope.SigningKey,
    iss: str,
    aud: str,
    typ: str,
    body: dict[str, Any],
    *,
    message_id: str | None = None,
    now: datetime | None = None,
) -> str:
    """Sign a message from organization `iss` to `aud`."""
    at = now or datetime.now(UTC)
    payload = {
        "id": message_id or new_message_id(),
        "iss": iss,
        "aud": aud,
        "typ": typ,
        "iat": int(at.timestamp()),
        "body": body,
    }
    return envelope.sign(orjson.dumps(payload), key)


def open_message(
    token: str,
    public_key: Any | None,
    *,
    expected_aud: str,
    now: datetime,
    max_skew_seconds: int,
) -> Message:
    """Verify a sealed message; every failure is a Problem with a stable code."""
    try:
        kid, raw = envelope.verify(token, lambda _kid: public_key)
    except envelope.EnvelopeError as exc:
        code = _ENVELOPE_CODES.get(exc.code, "bad_signature")
        raise Problem(
            STATUS_OF[code], code, "電文の署名を確認できません。", exc.message
        ) from None
    parsed = envelope.parse_kid(kid)
    try:
        data = orjson.loads(raw)
        msg = Message(
            id=str(data["id"]),
            iss=str(data["iss"]),
            aud=str(data["aud"]),
            typ=str(data["typ"]),
            iat=int(data["iat"]),
            body=dict(data["body"]),
            node=parsed.node if parsed is not None else "",
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise Problem(400, "malformed_message", "電文の形式が誤っています。") from None
    check_message_id(msg.id)
    if parsed is None or parsed.org_code != msg.iss:
        raise Problem(401, "issuer_mismatch", "電文の送信元と署名鍵の機関が一致しません。")
    if msg.aud != expected_aud:
        raise Problem(403, "wrong_audience", "この電文の宛先は当機関ではありません。", f"aud={msg.aud}")
    skew = abs(now.timestamp() - msg.iat)
    if skew > max_skew_seconds:
        raise Problem(
            401,
            "stale_message",
            "電文の送信時刻が許容範囲を外れています。",
            f"{int(skew)}秒のずれ（許容{max_skew_seconds}秒）",
        )
    return msg


def check_message_id(message_id: str) -> None:
    """A message id as every node keeps it (also each message of a batch): 8–64 URL-safe
    characters, never a run of 12 digits (ids go into audit logs)."""
    if not _MESSAGE_ID.match(message_id) or _DIGIT_RUN.search(message_id):
        raise Problem(400, "malformed_message", "電文IDの形式が誤っています。")


def remember(session: Session, tables: KernelTables, msg: Message, now: datetime) -> None:
    """Record the message id in the receiver's transaction; a repeat is refused."""
    t = tables.received_messages
    # One statement: the insert that finds the id already there adds nothing, returns nothing.
    dialect = session.connection().dialect.name
    if dialect in _INSERTS:
        keep = _KEEP.get(t)
        if keep is None:  # prepared once per table, run lean on every message
            keep = _KEEP[t] = Prepared(
                {
                    name: make(t)
                    .on_conflict_do_nothing(index_elements=[t.c.message_id])
                    .returning(t.c.message_id)
                    for name, make in _INSERTS.items()
                },
                ("message_id", "sender", "typ", "received_at"),
            )
        kept = keep.first(
            session, {"message_id": msg.id, "sender": msg.iss, "typ": msg.typ, "received_at": now}
        )
        if kept is None:
            raise Problem(409, "replayed_message", "同じ電文が既に受信されています（再送・リプレイ）。", msg.id)
        return
    seen = session.execute(select(t.c.message_id).where(t.c.message_id == msg.id)).first()
    if seen is not None:
        raise Problem(409, "replayed_message", "同じ電文が既に受信されています（再送・リプレイ）。", msg.id)
    session.execute(
        insert(t).values(message_id=msg.id, sender=msg.iss, typ=msg.typ, received_at=now)
    )
