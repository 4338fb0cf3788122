"""Tamper-evident, append-only audit log: a hash chain with signed checkpoints.

Every node keeps one. Entry ``seq`` (1, 2, 3 … without gaps) carries the SHA-256 of
its canonical form, which includes ``prev_hash``, the hash of entry ``seq - 1``
(64 zeros for entry 1). Every ``checkpoint_every`` entries or ``checkpoint_seconds``
seconds the node signs ``{"seq", "hash", "at"}`` of the newest entry with its
Ed25519 key (compact JWS). `verify` walks the chain and reports the first broken link
after any edit, deletion, insertion or reordering, and a tail missing after the last
checkpoint.

Canonical form (what auditors recompute): the entry as a JSON object of every column
except ``hash`` — ``seq``, ``at``, ``actor``, ``terminal``, ``action``, ``subject``,
``affair``, ``outcome``, ``ref``, ``detail``, ``prev_hash`` — with ``at`` written as
ISO-8601 UTC with microseconds (``2026-04-01T09:30:00.000000+00:00``), keys sorted at
every level, no whitespace, UTF-8 without escaping non-ASCII (orjson with
OPT_SORT_KEYS); ``json.dumps(obj, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` gives the same bytes unless ``detail`` holds floats, which
orjson writes in its own shortest form (``1e-7``, not ``1e-07``). Each line of `export_jsonl` is that object plus ``hash``
(and ``checkpoint`` where one covers the entry), so an export is checked offline.

Countersignature (the time-stamp authority node; renkei.core.audit.timestamping):
a chain inside the database it protects cannot prove its own length — deleting the
newest entries with their checkpoints and rewinding the head row, or emptying the
tables, leaves a chain that verifies. So each checkpoint is also sent, through the
node's transactional outbox (queued by ``on_checkpoint`` in the transaction that writes
the checkpoint, delivered with retries, once more at shutdown), to the authority as
``tsa.stamp`` {node ``<機関コード>/<kind>``, kind ``audit_checkpoint``, seq, hash, at,
token = the checkpoint's JWS}. The authority checks the signature against the hub's
organization registry, keeps the newest head per node and refuses (and raises an alert
for) a lower seq or another hash at the same seq. Its receipt — a JWS by the
authority's key over {typ "tsa.receipt", tsa, serial, kind, node, seq, hash,
stamped_at}, canonical JSON as above — is kept in ``audit_receipts``. `renkei audit
verify` walks the local chain and then asks the authority for its newest head of the
node (``tsa.head``, the answer believed only through its receipt, checked with the
authority's pinned public key): fewer local entries than the authority's seq is a
truncation (none at all: a wipe), another hash at that seq a rewrite. Entries after
the last delivered checkpoint (at most ``checkpoint_seconds``, or up to the shutdown
checkpoint) are covered by the local chain alone.

Appends run in the caller's transaction, so an entry commits or rolls back with the
change it records. The single-row head table serializes appends: the first statement
of an append is an UPDATE of that row, which takes the row lock on PostgreSQL and the
database write lock on SQLite before anything is read. Other audited transactions
wait on that lock until the appending one ends, so append late in a transaction.

Logs never hold an individual number: an event with a 12-digit run (also written
``1234 5678 9012`` or ``1234-5678-9012``, also in full-width digits) that passes the
個人番号 check digit is refused with ValueError. Answer content must not be logged
either; ``detail`` is for small facts (codes, counts), at most 4 KiB.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Final

import orjson
from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    cast,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session

from renkei.core import ids
from renkei.core.crypto import envelope
from renkei.core.db import BigId, UtcDateTime, utcnow
from renkei.core.sql import Prepared
from renkei.core.sql import executemany as sql_executemany

__all__ = [
    "GENESIS_HASH",
    "AuditEvent",
    "AuditLog",
    "AuditTables",
    "Checkpoint",
    "VerifyReport",
    "audit_tables",
    "check_against_authority",
    "defer_appends",
    "deferred_mark",
    "drop_deferred",
    "entry_hash",
    "export_jsonl",
    "flush_deferred",
    "store_receipt",
    "verify",
    "verify_jsonl",
]

GENESIS_HASH: Final = "0" * 64
MAX_DETAIL_BYTES: Final = 4096

# Column widths; enforced here too, so both backends refuse the same events.
_LIMITS: Final[dict[str, int]] = {
    "actor": 128,
    "terminal": 128,
    "action": 128,
    "subject": 64,
    "affair": 64,
    "outcome": 64,
    "ref": 128,
}
_REQUIRED: Final = ("actor", "action", "outcome")
_ENTRY_KEYS: Final = frozenset(
    (
        "seq",
        "at",
        "actor",
        "terminal",
        "action",
        "subject",
        "affair",
        "outcome",
        "ref",
        "detail",
        "prev_hash",
    )
)
_CHECKPOINT_KEYS: Final = frozenset(("seq", "hash", "at"))


# --- tables ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditTables:
    entries: Table
    checkpoints: Table
    head: Table
    receipts: Table


def audit_tables(metadata: MetaData) -> AuditTables:
    """The audit tables, added to a node's own metadata (like `kernel_tables`)."""
    entries = Table(
        "audit_entries",
        metadata,
        Column("seq", BigId, primary_key=True, autoincrement=False),
        Column("at", UtcDateTime(), nullable=False),
        Column("actor", String(_LIMITS["actor"]), nullable=False),
        Column("terminal", String(_LIMITS["terminal"]), nullable=False),
        Column("action", String(_LIMITS["action"]), nullable=False),
        Column("subject", String(_LIMITS["subject"]), nullable=True),
        Column("affair", String(_LIMITS["affair"]), nullable=True),
        Column("outcome", String(_LIMITS["outcome"]), nullable=False),
        Column("ref", String(_LIMITS["ref"]), nullable=True),
        Column("detail", JSON(none_as_null=True), nullable=True),
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
    )
    # (at, seq): export by time range finds its seq bounds from the index alone.
    Index("ix_audit_entries_at", entries.c.at, entries.c.seq)
    checkpoints = Table(
        "audit_checkpoints",
        metadata,
        Column("seq", BigId, primary_key=True, autoincrement=False),
        Column("at", UtcDateTime(), nullable=False),
        Column("hash", String(64), nullable=False),
        Column("kid", String(128), nullable=False),
        Column("signature", Text, nullable=False),
    )
    head = Table(
        "audit_head",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("seq", BigId, nullable=False),
        Column("hash", String(64), nullable=False),
        Column("last_checkpoint_seq", BigId, nullable=False),
        # Time of the last checkpoint, or of the head's creation before the first one.
        Column("last_checkpoint_at", UtcDateTime(), nullable=False),
        CheckConstraint("id = 1", name="single_row"),
    )
    # The time-stamp authority's receipts for this node's checkpoints (one per stamped seq).
    receipts = Table(
        "audit_receipts",
        metadata,
        Column("seq", BigId, primary_key=True, autoincrement=False),
        Column("hash", String(64), nullable=False),
        Column("tsa", String(16), nullable=False),
        Column("serial", BigId, nullable=False),
        Column("stamped_at", String(40), nullable=False),
        Column("receipt", Text, nullable=False),
    )
    return AuditTables(entries=entries, checkpoints=checkpoints, head=head, receipts=receipts)


# --- canonical form -------------------------------------------------------------------


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _canonical(obj: Mapping[str, Any]) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def entry_hash(entry: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of an entry's canonical form: every field but ``hash``, ``at`` as ISO text."""
    return hashlib.sha256(_canonical(entry)).hexdigest()


def _entry_object(
    seq: int,
    at: datetime,
    actor: str,
    terminal: str,
    action: str,
    subject: str | None,
    affair: str | None,
    outcome: str,
    ref: str | None,
    detail: Any,
    prev_hash: str,
) -> dict[str, Any]:
    return {
        "seq": seq,
        "at": _iso(at),
        "actor": actor,
        "terminal": terminal,
        "action": action,
        "subject": subject,
        "affair": affair,
        "outcome": outcome,
        "ref": ref,
        "detail": detail,
        "prev_hash": prev_hash,
    }


def _checkpoint_payload(seq: int, hash_: str, at: datetime) -> bytes:
    return _canonical({"seq": seq, "hash": hash_, "at": _iso(at)})


# --- the individual-number guard ------------------------------------------------------

_DIGIT_RUN = re.compile(r"[0-9]+")
_SPACED = re.compile(
    r"(?<![0-9])(?<![0-9][ -])[0-9]{4}([ -])[0-9]{4}\1[0-9]{4}(?![0-9])(?![ -][0-9])"
)


def _holds_individual_number(text: str) -> bool:
    """True if a 12-digit run, or 4-4-4 digits split by spaces or hyphens, is a valid 個人番号."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)  # full-width digits and hyphens
    fours = 0
    for run in _DIGIT_RUN.findall(text):
        size = len(run)
        if size == 12:
            if ids.check(ids.IdKind.INDIVIDUAL_NUMBER, run) is None:
                return True
        elif size == 4:
            fours += 1
    if fours >= 3:
        for m in _SPACED.finditer(text):
            run = m.group(0).replace(m.group(1), "")
            if ids.check(ids.IdKind.INDIVIDUAL_NUMBER, run) is None:
                return True
    return False


# --- appending ------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A signed checkpoint: ``signature`` is the node's JWS over {"seq", "hash", "at"}."""

    seq: int
    hash: str
    at: str
    signature: str


@dataclass(frozen=True)
class AuditEvent:
    """What happened: who (actor, terminal), what (action, outcome), to whom, why, which request.

    ``subject`` is the person by this node's own id (統合宛名番号, 符号 link id …), never
    an individual number; ``ref`` a request id or serial; ``detail`` small facts only.
    """

    actor: str
    action: str
    outcome: str
    terminal: str = ""
    subject: str | None = None
    affair: str | None = None
    ref: str | None = None
    detail: Mapping[str, Any] | None = None


_FIELDS: Final = ("actor", "terminal", "action", "subject", "affair", "outcome", "ref")
_NULLABLE: Final = frozenset(("subject", "affair", "ref"))


_Prepared = tuple[list[Any], str | None]


def _prepare(event: AuditEvent) -> _Prepared:
    """Check one event; return its text fields in column order and its detail as JSON text."""
    values: list[Any] = [
        event.actor,
        event.terminal,
        event.action,
        event.subject,
        event.affair,
        event.outcome,
        event.ref,
    ]
    texts: list[str] = []
    for name, value in zip(_FIELDS, values, strict=True):
        if isinstance(value, str):
            if len(value) > _LIMITS[name]:
                raise ValueError(f"audit event: {name} longer than {_LIMITS[name]} characters")
            if not value and name in _REQUIRED:
                raise ValueError(f"audit event: {name} must not be empty")
            texts.append(value)
        elif value is not None:
            raise ValueError(f"audit event: {name} must be a string")
        elif name not in _NULLABLE:
            raise ValueError(f"audit event: {name} is required")
    detail_text: str | None = None
    if event.detail is not None:
        if not isinstance(event.detail, Mapping):
            raise ValueError("audit event: detail must be a mapping")
        try:
            blob = orjson.dumps(event.detail, option=orjson.OPT_SORT_KEYS)
        except TypeError as err:  # orjson.JSONEncodeError: non-str keys, odd types, huge ints
            raise ValueError(f"audit event: detail is not plain JSON ({err})") from err
        if len(blob) > MAX_DETAIL_BYTES:
            raise ValueError(f"audit event: detail larger than {MAX_DETAIL_BYTES} bytes")
        detail_text = blob.decode()
        if b"\\u" in blob:  # control characters: escapes could glue digit runs together
            _scalars(orjson.loads(blob), texts)
        else:  # keys, strings and numbers appear verbatim, apart from each other
            texts.append(detail_text)
    # One scan over everything; NUL (refused) keeps the fields' digit runs apart.
    joined = "\x00".join(texts)
    if joined.count("\x00") != len(texts) - 1:
        raise ValueError("audit event: NUL character")
    if _holds_individual_number(joined):
        where = [
            n for n, v in zip(_FIELDS, values, strict=True) if v and _holds_individual_number(v)
        ]
        raise ValueError(
            f"監査ログに個人番号と思われる値は記録できません（{', '.join(where) or 'detail'}）。"
        )
    return values, detail_text


def _scalars(value: Any, out: list[str]) -> None:
    """Every key and scalar of a JSON value as text, for the individual-number scan."""
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            out.append(k)
            _scalars(v, out)
    elif isinstance(value, list):
        for v in value:
            _scalars(v, out)
    elif value is not None and not isinstance(value, bool):
        out.append(str(value))


class AuditLog:
    """Appends to one node's audit log and signs checkpoints with the node's key."""

    def __init__(
        self,
        tables: AuditTables,
        signing_key: envelope.SigningKey,
        *,
        checkpoint_every: int = 1000,
        checkpoint_seconds: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
        on_checkpoint: Callable[[Session, Checkpoint], None] | None = None,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.tables = tables
        self.signing_key = signing_key
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = timedelta(seconds=checkpoint_seconds)
        self.clock = clock
        # Runs in the transaction that writes each checkpoint: a node queues the
        # countersignature request there (outbox), so it commits with the checkpoint.
        self.on_checkpoint = on_checkpoint
        # The statements of every append, built once (not rebuilt and re-keyed for the
        # statement cache on each entry), and run lean (`Prepared`: no Core execution
        # machinery per statement).
        h = tables.head
        self._claim_stmt = Prepared(
            update(h)
            .where(h.c.id == 1)
            .values(seq=h.c.seq + bindparam("count", type_=h.c.seq.type))
            .returning(h.c.seq, h.c.hash, h.c.last_checkpoint_seq, h.c.last_checkpoint_at),
            ("count",),
        )
        self._quoted: dict[Any, tuple[str, str]] = {}
        self._sqlite: dict[Any, tuple[Any, str]] = {}
        self._advance_stmt = Prepared(
            update(h)
            .where(h.c.id == 1)
            .values(
                hash=bindparam("new_hash", type_=h.c.hash.type),
                last_checkpoint_seq=bindparam("cp_seq", type_=h.c.last_checkpoint_seq.type),
                last_checkpoint_at=bindparam("cp_at", type_=h.c.last_checkpoint_at.type),
            ),
            ("new_hash", "cp_seq", "cp_at"),
        )

    def _signed(self, session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
        if self.on_checkpoint is None:
            return
        for row in rows:
            self.on_checkpoint(
                session,
                Checkpoint(int(row["seq"]), str(row["hash"]), _iso(row["at"]), str(row["signature"])),
            )

    def _now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None:
            raise ValueError("audit clock returned a naive datetime")
        return now.astimezone(UTC)

    def _claim(self, session: Session, count: int) -> tuple[int, str, int, datetime]:
        """Lock the head and reserve ``count`` seqs: (last seq before, its hash, last checkpoint)."""
        stmt, params = self._claim_stmt, {"count": count}
        row = stmt.first(session, params)
        if row is None:
            self._create_head(session, self._now())
            row = stmt.first(session, params)
            if row is None:
                raise RuntimeError("audit head missing after it was created")
        seq, hash_, cp_seq, cp_at = row
        return int(seq) - count, str(hash_), int(cp_seq), cp_at

    def _create_head(self, session: Session, now: datetime) -> None:
        h = self.tables.head
        values = {
            "id": 1,
            "seq": 0,
            "hash": GENESIS_HASH,
            "last_checkpoint_seq": 0,
            "last_checkpoint_at": now,
        }
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            session.execute(pg_insert(h).values(values).on_conflict_do_nothing())
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            session.execute(sqlite_insert(h).values(values).on_conflict_do_nothing())
        else:
            session.execute(insert(h).values(values))

    def _sign(self, seq: int, hash_: str, at: datetime) -> dict[str, Any]:
        token = envelope.sign(_checkpoint_payload(seq, hash_, at), self.signing_key)
        return {
            "seq": seq,
            "at": at,
            "hash": hash_,
            "kid": self.signing_key.kid,
            "signature": token,
        }

    def _names(self, dialect: Any) -> tuple[str, str]:
        """The entries table and its column list, quoted for ``dialect`` (worked out once)."""
        found = self._quoted.get(dialect)
        if found is None:
            e = self.tables.entries
            quote = dialect.identifier_preparer
            found = self._quoted[dialect] = (
                quote.format_table(e),
                ", ".join(quote.quote(c.name) for c in e.columns),
            )
        return found

    def _sqlite_insert(self, dialect: Any) -> tuple[Any, str]:
        """SQLite: the time column's bind processor and the INSERT, worked out once."""
        found = self._sqlite.get(dialect)
        if found is None:
            e = self.tables.entries
            table, names = self._names(dialect)
            found = self._sqlite[dialect] = (
                e.c.at.type.dialect_impl(dialect).bind_processor(dialect),
                f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(e.columns))})",
            )
        return found

    def _inserter(
        self, session: Session, now: datetime
    ) -> tuple[Any, Callable[[list[tuple[Any, ...]]], None]]:
        """The engine's bulk path for entry rows (in column order, detail as JSON text).

        PostgreSQL (psycopg): COPY. SQLite: one executemany of driver-level values, the
        time converted once by the column's own type. Others: a Core executemany.
        """
        e = self.tables.entries
        conn = session.connection()
        dialect = conn.dialect
        table, names = self._names(dialect)
        if dialect.name == "postgresql" and dialect.driver == "psycopg":

            def copy(rows: list[tuple[Any, ...]]) -> None:
                raw = conn.connection.driver_connection
                assert raw is not None
                with raw.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as out:
                    for row in rows:
                        out.write_row(row)

            return now, copy
        if dialect.name == "sqlite" and dialect.paramstyle == "qmark":
            process, sql = self._sqlite_insert(dialect)

            def executemany(rows: list[tuple[Any, ...]]) -> None:
                sql_executemany(session, sql, rows)

            return (process(now) if process else now), executemany

        keys = [c.name for c in e.columns]

        def core(rows: list[tuple[Any, ...]]) -> None:
            params = [dict(zip(keys, row, strict=True)) for row in rows]
            for p in params:
                p["detail"] = None if p["detail"] is None else orjson.loads(p["detail"])
            session.execute(insert(e), params)

        return now, core

    def append(self, session: Session, event: AuditEvent) -> int | None:
        """Append one entry in the caller's transaction; return its seq (None while the
        session defers its appends: see `defer_appends`)."""
        seqs = self.append_many(session, [event])
        return seqs[0] if seqs else None

    def append_many(self, session: Session, events: Sequence[AuditEvent]) -> list[int]:
        """Append entries in order in the caller's transaction (one executemany); return their
        seqs — none while the session defers its appends (`defer_appends`): they are then
        written, in the same order and transaction, by `flush_deferred`."""
        if not events:
            return []
        prepared = [_prepare(e) for e in events]  # refuse before touching the database
        deferred: list[tuple[AuditLog, list[_Prepared]]] | None = session.info.get(_DEFERRED)
        if deferred is not None:
            deferred.append((self, prepared))
            return []
        return self._write(session, prepared)

    def _write(self, session: Session, prepared: list[_Prepared]) -> list[int]:
        """Checked entries into the chain: one head claim, one insert, one head advance."""
        last, prev, cp_seq, cp_at = self._claim(session, len(prepared))
        now = self._now()  # read under the lock, so times follow the chain's order
        at_text = _iso(now)
        every = self.checkpoint_every
        at_value, insert_rows = self._inserter(session, now)
        rows: list[tuple[Any, ...]] = []
        checkpoints: list[dict[str, Any]] = []
        seq = last
        sha256, dumps, loads, sort_keys = (
            hashlib.sha256,
            orjson.dumps,
            orjson.loads,
            orjson.OPT_SORT_KEYS,
        )
        for (actor, terminal, action, subject, affair, outcome, ref), detail in prepared:
            seq += 1
            # What is hashed is what a read gives back: the detail after a JSON round trip
            # (tuples → lists, NaN → null …), the time as UTC text.
            obj = {
                "seq": seq,
                "at": at_text,
                "actor": actor,
                "terminal": terminal,
                "action": action,
                "subject": subject,
                "affair": affair,
                "outcome": outcome,
                "ref": ref,
                "detail": None if detail is None else loads(detail),
                "prev_hash": prev,
            }
            hash_ = sha256(dumps(obj, option=sort_keys)).hexdigest()
            rows.append(
                (
                    seq,
                    at_value,
                    actor,
                    terminal,
                    action,
                    subject,
                    affair,
                    outcome,
                    ref,
                    detail,
                    prev,
                    hash_,
                )
            )
            prev = hash_
            if seq - cp_seq >= every:
                checkpoints.append(self._sign(seq, prev, now))
                cp_seq, cp_at = seq, now
        if cp_seq < seq and now - cp_at >= self.checkpoint_interval:
            checkpoints.append(self._sign(seq, prev, now))
            cp_seq, cp_at = seq, now
        insert_rows(rows)
        t = self.tables
        if checkpoints:
            session.execute(insert(t.checkpoints), checkpoints)
            self._signed(session, checkpoints)
        self._advance_stmt.run(session, {"new_hash": prev, "cp_seq": cp_seq, "cp_at": cp_at})
        return list(range(last + 1, seq + 1))

    def checkpoint(self, session: Session) -> int | None:
        """Sign the newest entry if no checkpoint covers it yet; return its seq, else None."""
        seq, hash_, cp_seq, _ = self._claim(session, 0)
        if seq <= cp_seq:
            return None
        now = self._now()
        t = self.tables
        row = self._sign(seq, hash_, now)
        session.execute(insert(t.checkpoints).values(row))
        self._signed(session, [row])
        session.execute(
            update(t.head)
            .where(t.head.c.id == 1)
            .values(last_checkpoint_seq=seq, last_checkpoint_at=now)
        )
        return seq


# --- appends deferred to the end of a transaction ---------------------------------------
#
# A transaction that carries several units of work (renkei.core.units: a group of units
# committed together on SQLite) would claim the head row, insert and advance it once per
# entry. Deferred, the entries of the whole transaction are checked at once (a refused
# event still raises in the unit that made it), queued in order, and written by ONE
# append just before the commit: the same chain, the same canonical form, in the same
# transaction as the work they record — nothing is written that the work does not commit.

_DEFERRED = "renkei_audit_deferred"


def defer_appends(session: Session) -> None:
    """From now on, appends in ``session`` are queued until `flush_deferred`."""
    session.info.setdefault(_DEFERRED, [])


def deferred_mark(session: Session) -> int:
    """Where the queue stands now (for `drop_deferred` if the work after it is undone)."""
    return len(session.info.get(_DEFERRED, ()))


def drop_deferred(session: Session, mark: int) -> None:
    """Forget the appends queued after ``mark`` (their work was rolled back to a savepoint)."""
    queued = session.info.get(_DEFERRED)
    if queued is not None:
        del queued[mark:]


def flush_deferred(session: Session) -> int:
    """Write the queued appends in order (one append per log) and stop deferring; call it
    last in the transaction, before the commit. Returns how many entries were written."""
    queued: list[tuple[AuditLog, list[_Prepared]]] = session.info.pop(_DEFERRED, None) or []
    by_log: dict[int, tuple[AuditLog, list[_Prepared]]] = {}
    for log, prepared in queued:
        by_log.setdefault(id(log), (log, []))[1].extend(prepared)
    written = 0
    for log, prepared in by_log.values():
        written += len(log._write(session, prepared))
    return written


# --- verifying ------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of a verification; ``problem`` is a stable code, ``message`` is for auditors.

    Codes: hash_mismatch (an entry's content was edited), gap (entries deleted),
    prev_mismatch (entries inserted or reordered), bad_checkpoint_signature,
    checkpoint_mismatch (a checkpoint no longer matches its entry: the chain before it
    was rewritten), missing_tail (the head or a checkpoint points beyond the last entry),
    head_mismatch (the head row disagrees with the last entry), malformed (an export
    line cannot be read), and the warning unsigned_tail (``ok`` stays True). Against
    the time-stamp authority (`check_against_authority`): truncated (fewer entries than
    the authority stamped), wiped (none at all), authority_mismatch (another hash at the
    authority's seq).
    """

    ok: bool
    entries: int
    checkpoints: int
    first_broken_seq: int | None
    problem: str | None
    message: str


_PROBLEMS: Final[dict[str, str]] = {
    "hash_mismatch": "監査ログの連鎖が {n} 番で壊れています（内容の改ざん）。",
    "gap": "監査ログの連鎖が {n} 番で壊れています（記録の削除）。",
    "prev_mismatch": "監査ログの連鎖が {n} 番で壊れています（記録の挿入または順序の入れ替え）。",
    "bad_checkpoint_signature": "{n} 番のチェックポイントの署名を検証できません（署名の偽造または未登録の鍵）。",
    "checkpoint_mismatch": "{n} 番のチェックポイントが記録と一致しません（それ以前の記録の書き換え）。",
    "missing_tail": "監査ログの {n} 番以降の記録がありません（末尾の削除）。",
    "head_mismatch": "監査ログの管理情報が {n} 番の記録と一致しません（末尾の改ざん）。",
    "malformed": "監査ログの書き出しの {n} 行目を読み取れません。",
}


def _broken(
    code: str, seq: int | None, entries: int, checkpoints: int, *, where: int | None = None
) -> VerifyReport:
    n = where if where is not None else seq
    return VerifyReport(False, entries, checkpoints, seq, code, _PROBLEMS[code].format(n=n))


def _done(
    entries: int, checkpoints: int, unsigned: int, last_checkpoint: int, *, signed: bool = True
) -> VerifyReport:
    """The report for an intact chain, warning about entries no checkpoint covers yet."""
    text = f"監査ログ {entries} 件とチェックポイント {checkpoints} 件を検証しました。改ざんは見つかりませんでした。"
    if not signed:
        return VerifyReport(
            True,
            entries,
            0,
            None,
            None,
            f"監査ログ {entries} 件の連鎖を検証しました（署名は検証していません）。",
        )
    if unsigned:
        if last_checkpoint:
            tail = f"最後のチェックポイント（{last_checkpoint} 番）より後の {unsigned} 件はまだ署名されていません。"
        else:
            tail = f"チェックポイントがなく、{unsigned} 件すべてがまだ署名されていません。"
        return VerifyReport(
            True, entries, checkpoints, None, "unsigned_tail", f"{text[:-1]}が、{tail}"
        )
    return VerifyReport(True, entries, checkpoints, None, None, text)


def _checkpoint_problem(
    seq: int,
    at: datetime | str,
    row_hash: str | None,
    kid: str,
    signature: str,
    entry_hash_: str,
    resolve_key: Callable[[str], Any | None],
) -> str | None:
    """None if a known key signed exactly this checkpoint and it names this entry's hash.

    ``row_hash`` is the checkpoint row's own hash column (None in an export, which has none).
    """
    try:
        signer, payload = envelope.verify(signature, resolve_key)
        data = orjson.loads(payload)
    except (envelope.EnvelopeError, orjson.JSONDecodeError):
        return "bad_checkpoint_signature"
    at_text = at if isinstance(at, str) else _iso(at)
    if (
        signer != kid
        or not isinstance(data, dict)
        or data.keys() != _CHECKPOINT_KEYS
        or type(data["seq"]) is not int
        or data["seq"] != seq
        or data["at"] != at_text
        or (row_hash is not None and data["hash"] != row_hash)
    ):
        return "bad_checkpoint_signature"
    if data["hash"] != entry_hash_:
        return "checkpoint_mismatch"
    return None


def _entry_columns(e: Table) -> list[Any]:
    """Every column in canonical order; detail as its stored JSON text, parsed with orjson (faster)."""
    return [
        e.c.seq,
        e.c.at,
        e.c.actor,
        e.c.terminal,
        e.c.action,
        e.c.subject,
        e.c.affair,
        e.c.outcome,
        e.c.ref,
        cast(e.c.detail, Text),
        e.c.prev_hash,
        e.c.hash,
    ]


def _detail(raw: str | None) -> Any:
    """The stored detail; text that is not JSON (an edit) stays text, so the hash shows it."""
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


def _pages(
    session: Session,
    table: Table,
    columns: Sequence[Any],
    batch: int,
    lo: int | None = None,
    hi: int | None = None,
) -> Iterator[Any]:
    """Rows of ``table`` in seq order, fetched ``batch`` at a time by keyset."""
    after = (lo - 1) if lo is not None else None
    while True:
        q = select(*columns).order_by(table.c.seq).limit(batch)
        if after is not None:
            q = q.where(table.c.seq > after)
        if hi is not None:
            q = q.where(table.c.seq <= hi)
        rows = session.execute(q).all()
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1][0]


def verify(
    session: Session,
    tables: AuditTables,
    resolve_key: Callable[[str], Any | None],
    *,
    batch: int = 50_000,
) -> VerifyReport:
    """Walk the whole chain and its checkpoints; report the first broken link."""
    e, c, h = tables.entries, tables.checkpoints, tables.head
    cols = _entry_columns(e)
    cps = _pages(
        session, c, [c.c.seq, c.c.at, c.c.hash, c.c.kid, c.c.signature], max(1, batch // 100)
    )
    cp = next(cps, None)
    expected = 1
    prev = GENESIS_HASH
    n_cp = 0
    last_cp = 0
    sha256, dumps, loads, sort_keys = (
        hashlib.sha256,
        orjson.dumps,
        orjson.loads,
        orjson.OPT_SORT_KEYS,
    )
    for (
        seq,
        at,
        actor,
        terminal,
        action,
        subject,
        affair,
        outcome,
        ref,
        detail,
        prev_hash,
        stored,
    ) in _pages(session, e, cols, batch):
        if seq != expected:
            return _broken("gap", expected, expected - 1, n_cp)
        if prev_hash != prev:
            return _broken("prev_mismatch", seq, expected - 1, n_cp)
        try:
            value = None if detail is None else loads(detail)
        except orjson.JSONDecodeError:
            return _broken("hash_mismatch", seq, expected - 1, n_cp)
        obj = {
            "seq": seq,
            "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
            "actor": actor,
            "terminal": terminal,
            "action": action,
            "subject": subject,
            "affair": affair,
            "outcome": outcome,
            "ref": ref,
            "detail": value,
            "prev_hash": prev_hash,
        }
        if sha256(dumps(obj, option=sort_keys)).hexdigest() != stored:
            return _broken("hash_mismatch", seq, expected - 1, n_cp)
        while cp is not None and cp[0] <= seq:
            if cp[0] < seq:  # only a seq < 1 can be left behind: a forged checkpoint
                return _broken("checkpoint_mismatch", cp[0], expected - 1, n_cp)
            code = _checkpoint_problem(cp[0], cp[1], cp[2], cp[3], cp[4], stored, resolve_key)
            if code is not None:
                return _broken(code, seq, expected, n_cp)
            n_cp += 1
            last_cp = seq
            cp = next(cps, None)
        prev = stored
        expected += 1
    last = expected - 1
    count = last
    head = session.execute(
        select(h.c.seq, h.c.hash, h.c.last_checkpoint_seq).where(h.c.id == 1)
    ).first()
    beyond = [cp[0]] if cp is not None else []
    if head is not None:
        beyond += [int(head[0]), int(head[2])]
    if any(s > last for s in beyond):
        return _broken("missing_tail", last + 1, count, n_cp)
    if head is None:
        if last:
            return _broken("head_mismatch", last, count, n_cp)
        return _done(0, n_cp, 0, 0)
    head_seq, head_hash, head_cp = int(head[0]), str(head[1]), int(head[2])
    if head_seq < last:
        return _broken("head_mismatch", head_seq + 1, count, n_cp)
    if head_hash != prev:
        return _broken("head_mismatch", last, count, n_cp)
    if head_cp != last_cp:
        return _broken("head_mismatch", head_cp or last_cp, count, n_cp)
    return _done(count, n_cp, last - last_cp, last_cp)


# --- the time-stamp authority's head -------------------------------------------------------

_AUTHORITY: Final[dict[str, str]] = {
    "wiped": "監査ログが消去されています（タイムスタンプ局の記録: {a:,} 番まで、この監査ログ: 0 件）。{a:,} 件が失われています。",
    "truncated": "監査ログの末尾 {k:,} 件が失われています（タイムスタンプ局の記録: {a:,} 番まで、この監査ログ: {b:,} 番まで）。",
    "authority_mismatch": "タイムスタンプ局が記録した {a:,} 番の記録がこの監査ログと一致しません（記録の書き換え）。",
}


def check_against_authority(
    session: Session,
    tables: AuditTables,
    report: VerifyReport,
    seq: int,
    hash_: str | None,
    stamps: Iterable[tuple[int, str]] = (),
    *,
    batch: int = 1000,
) -> VerifyReport:
    """Compare an intact local chain with the authority's newest head (seq, hash) of it,
    and with every earlier head it stamped (``stamps``, by seq).

    A chain inside the database it protects cannot prove its own length; the authority's
    head can: fewer local entries than the authority stamped is a truncation (no entries
    at all: a wipe), and a different hash at a stamped seq a rewritten history (also one
    rewritten and then carried past the newest head).
    """
    if not report.ok:
        return report
    last = report.entries
    if seq == 0:
        note = "タイムスタンプ局にはこの監査ログの記録がまだありません（長さは確認できる範囲で一致）。"
        return dataclasses.replace(report, message=f"{report.message}{note}")
    if last < seq:
        code = "wiped" if last == 0 else "truncated"
        text = _AUTHORITY[code].format(a=seq, b=last, k=seq - last)
        return VerifyReport(False, last, report.checkpoints, last + 1, code, text)
    e = tables.entries
    pending = sorted({*stamps, (seq, hash_ or "")})
    for i in range(0, len(pending), batch):
        chunk = pending[i : i + batch]
        local = dict(session.execute(select(e.c.seq, e.c.hash).where(e.c.seq.in_([s for s, _ in chunk]))).all())
        for at, stamped_hash in chunk:
            if local.get(at) != stamped_hash:
                text = _AUTHORITY["authority_mismatch"].format(a=at)
                return VerifyReport(False, last, report.checkpoints, at, "authority_mismatch", text)
    note = f"タイムスタンプ局の記録（{seq:,} 番まで）と一致しました。"
    return dataclasses.replace(report, message=f"{report.message}{note}")


def store_receipt(session: Session, tables: AuditTables, receipt: Any) -> bool:
    """Keep the authority's receipt for a checkpoint (a `timestamping.Receipt`); False if held."""
    r = tables.receipts
    if session.execute(select(r.c.seq).where(r.c.seq == receipt.seq)).first() is not None:
        return False
    session.execute(
        insert(r).values(
            seq=receipt.seq,
            hash=receipt.hash,
            tsa=receipt.tsa,
            serial=receipt.serial,
            stamped_at=receipt.stamped_at,
            receipt=receipt.token,
        )
    )
    return True


# --- export ---------------------------------------------------------------------------


def export_jsonl(
    session: Session,
    tables: AuditTables,
    out: IO[str],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    batch: int = 10_000,
) -> int:
    """Write entries as JSON Lines (UTF-8, by seq); return how many.

    The export is the contiguous stretch of the chain from the first entry at or after
    ``start`` to the last entry before ``end``, so it verifies on its own even if the
    clock stepped back meanwhile. Each line is the canonical object plus ``hash``, and
    ``checkpoint`` ({at, kid, signature}) where one covers the entry.
    """
    e, c = tables.entries, tables.checkpoints
    lo_q = select(func.min(e.c.seq))
    hi_q = select(func.max(e.c.seq))
    if start is not None:
        lo_q = lo_q.where(e.c.at >= start)
    if end is not None:
        hi_q = hi_q.where(e.c.at < end)
    lo = session.execute(lo_q).scalar()
    hi = session.execute(hi_q).scalar()
    if lo is None or hi is None or lo > hi:
        return 0
    cols = _entry_columns(e)
    cps = _pages(session, c, [c.c.seq, c.c.at, c.c.kid, c.c.signature], batch, int(lo), int(hi))
    cp = next(cps, None)
    written = 0
    for row in _pages(session, e, cols, batch, int(lo), int(hi)):
        (
            seq,
            at,
            actor,
            terminal,
            action,
            subject,
            affair,
            outcome,
            ref,
            detail,
            prev_hash,
            hash_,
        ) = row
        obj = _entry_object(
            seq,
            at,
            actor,
            terminal,
            action,
            subject,
            affair,
            outcome,
            ref,
            _detail(detail),
            prev_hash,
        )
        obj["hash"] = hash_
        while cp is not None and cp[0] < seq:
            cp = next(cps, None)
        if cp is not None and cp[0] == seq:
            obj["checkpoint"] = {"at": _iso(cp[1]), "kid": cp[2], "signature": cp[3]}
        out.write(
            orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE).decode()
        )
        written += 1
    return written


def verify_jsonl(
    lines: Iterable[str],
    resolve_key: Callable[[str], Any | None] | None = None,
) -> VerifyReport:
    """Check the chain within an export; with ``resolve_key``, also its checkpoints' signatures.

    The first line anchors the chain (an export may start anywhere). Without a key the
    checkpoints are not checked: anyone can recompute hashes, only signatures bind.
    """
    expected: int | None = None
    prev: str | None = None
    count = n_cp = 0
    last_cp = 0
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            return _broken("malformed", expected, count, n_cp, where=lineno)
        if lineno == 1 and isinstance(obj, dict) and obj.keys() == {"renkei_export"}:
            continue  # the export header (exporter, request, approver): not part of the chain
        if not isinstance(obj, dict) or not _ENTRY_KEYS <= obj.keys():
            return _broken("malformed", expected, count, n_cp, where=lineno)
        stored = obj.pop("hash", None)
        cp = obj.pop("checkpoint", None)
        seq = obj["seq"]
        if type(seq) is not int or not isinstance(stored, str):
            return _broken("malformed", expected, count, n_cp, where=lineno)
        if expected is not None and seq != expected:
            if seq > expected:
                return _broken("gap", expected, count, n_cp)
            return _broken("prev_mismatch", seq, count, n_cp)
        if prev is not None and obj["prev_hash"] != prev:
            return _broken("prev_mismatch", seq, count, n_cp)
        if entry_hash(obj) != stored:
            return _broken("hash_mismatch", seq, count, n_cp)
        if cp is not None and resolve_key is not None:
            if not isinstance(cp, dict) or not {"at", "kid", "signature"} <= cp.keys():
                return _broken("malformed", seq, count, n_cp, where=lineno)
            bad = _checkpoint_problem(
                seq, cp["at"], None, cp["kid"], cp["signature"], stored, resolve_key
            )
            if bad is not None:
                return _broken(bad, seq, count, n_cp)
            n_cp += 1
            last_cp = seq
        prev = stored
        expected = seq + 1
        count += 1
    if resolve_key is None:
        return _done(count, 0, 0, 0, signed=False)
    unsigned = seq - last_cp if last_cp else count
    return _done(count, n_cp, unsigned, last_cp)
