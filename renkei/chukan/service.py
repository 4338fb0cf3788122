"""Intermediate-server logic over a session: bindings, copies, answers, records.

Plain functions: a session (or nothing) in, values out; no HTTP here. The bodies are
the wire contract's models (renkei.core.wire.contract); the work that calls other
nodes is in renkei/chukan/flows.py.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import IO, Any, Final, cast

import orjson
from sqlalchemy import Table, Text, bindparam, func, insert, select, text, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from renkei.catalogue import Catalogue, Edition, parse_wire_date
from renkei.chukan.models import Fukuhon, PendingAcquisition, ProvisionRecord, PseudonymBinding
from renkei.core import bulk, ids
from renkei.core.crypto.field import FieldCipher
from renkei.core.errors import Problem
from renkei.core.sql import Prepared
from renkei.core.wire import contract
from renkei.core.wire.contract import (
    PROVISION_ANSWER_TYP,
    ChukanInquiry,
    Delivery,
    InquiryResult,
    ProvisionAnswer,
    ProvisionRequest,
)
from renkei.staff.roles import PermissionDenied, has_role

MAX_BATCH = 10_000


def check_atena_no(value: Any) -> str:
    text = str(value) if value is not None else ""
    problem = ids.check(ids.IdKind.ATENA_NO, text)
    if problem is not None:
        raise Problem(422, "invalid_atena_no", problem.message, code_detail=problem.code)
    return text


def parse_date(value: Any, label: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise Problem(422, "bad_date", f"{label}の日付形式が誤っています（YYYY-MM-DD）。", str(value)) from None


# --- pseudonyms ---------------------------------------------------------------


def _parts(values: Sequence[Any], size: int = 5000) -> Iterable[Sequence[Any]]:
    """Slices of at most ``size`` values: one IN list stays well under both backends'
    limits on bound parameters."""
    for i in range(0, len(values), size):
        yield values[i : i + size]


def remember_acquisitions(session: Session, pairs: list[tuple[str, str]], now: datetime) -> None:
    """(atena_no, acquisition_no) pairs handed out by the hub, awaiting the pseudonym (one
    multi-row INSERT)."""
    if pairs:
        session.execute(
            insert(cast(Table, PendingAcquisition.__table__)),
            [{"acquisition_no": acq_no, "atena_no": atena_no, "requested_at": now} for atena_no, acq_no in pairs],
        )


def pending_acquisitions(session: Session, atena_nos: Iterable[str]) -> dict[str, str]:
    """The acquisition number still awaiting its pseudonym of each person that has one (the
    newest): asked again, the person is asked under it, not under a new one."""
    out: dict[str, str] = {}
    for part in _parts(sorted(set(atena_nos))):
        for acq_no, atena_no in session.execute(
            select(PendingAcquisition.acquisition_no, PendingAcquisition.atena_no)
            .where(PendingAcquisition.atena_no.in_(part), PendingAcquisition.completed_at.is_(None))
            .order_by(PendingAcquisition.acquisition_no)
        ):
            out[atena_no] = acq_no
    return out


def acquisition_numbers(session: Session, atena_nos: Iterable[str]) -> dict[str, str]:
    """The number each person is to be asked under, if they already have one: the one still
    awaiting its pseudonym, else — for a person already bound — the newest answered one.

    Asked again (atena retrying after a crash, a timeout, or a list that still names them),
    a person never gets a second number: a second number would be a second request at the
    hub, and a second pseudonym offered for one person."""
    out = pending_acquisitions(session, atena_nos)
    rest = sorted(set(atena_nos) - out.keys())
    for part in _parts(rest):
        for acq_no, atena_no in session.execute(
            select(PendingAcquisition.acquisition_no, PendingAcquisition.atena_no)
            .join(PseudonymBinding, PseudonymBinding.atena_no == PendingAcquisition.atena_no)
            .where(PendingAcquisition.atena_no.in_(part), PendingAcquisition.completed_at.is_not(None))
            .order_by(PendingAcquisition.acquisition_no)
        ):
            out[atena_no] = acq_no
    return out


def bind_deliveries(session: Session, items: Sequence[Delivery], now: datetime) -> dict[str, int]:
    """Step 4: the hub delivers (acquisition number, pseudonym); bind it to the 統合宛名番号.

    Item by item (a count per outcome), so that one unknown or conflicting item does not
    hold up the others; set-based: the acquisitions, the bindings and the holders of the
    pseudonyms are each read in one query, the new bindings written in one multi-row
    INSERT and the answered acquisitions marked in one UPDATE."""
    counts = {"bound": 0, "unchanged": 0, "unknown_acquisition": 0, "conflict": 0}
    pending: dict[str, str] = {}  # acquisition no → atena no
    for part in _parts(sorted({i.acquisition_no for i in items})):
        pending.update(
            session.execute(
                select(PendingAcquisition.acquisition_no, PendingAcquisition.atena_no).where(
                    PendingAcquisition.acquisition_no.in_(part)
                )
            )
            .all()
        )
    binding: dict[str, str] = {}  # atena no → pseudonym
    for part in _parts(sorted(set(pending.values()))):
        binding.update(
            session.execute(
                select(PseudonymBinding.atena_no, PseudonymBinding.pseudonym).where(PseudonymBinding.atena_no.in_(part))
            )
            .all()
        )
    holder: dict[str, str] = {}  # pseudonym → atena no
    for part in _parts(sorted({i.pseudonym for i in items if i.pseudonym})):
        holder.update(
            session.execute(
                select(PseudonymBinding.pseudonym, PseudonymBinding.atena_no).where(PseudonymBinding.pseudonym.in_(part))
            )
            .all()
        )
    new: list[dict[str, Any]] = []
    completed: set[str] = set()
    for item in items:
        atena_no = pending.get(item.acquisition_no)
        pseudonym = item.pseudonym
        if atena_no is None or not pseudonym:
            counts["unknown_acquisition"] += 1
            continue
        held_by = holder.get(pseudonym)
        if held_by is not None and held_by != atena_no:
            # Two 統合宛名番号 for one person (a missed 名寄せ): a person must decide.
            counts["conflict"] += 1
            continue
        bound = binding.get(atena_no)
        if bound is None:
            new.append({"atena_no": atena_no, "pseudonym": pseudonym, "bound_at": now})
            binding[atena_no], holder[pseudonym] = pseudonym, atena_no
            counts["bound"] += 1
        elif bound == pseudonym:
            counts["unchanged"] += 1
        else:
            # One person, one pseudonym per organization: a different one means a mix-up upstream.
            counts["conflict"] += 1
            continue
        completed.add(item.acquisition_no)
    if new:
        session.execute(insert(cast(Table, PseudonymBinding.__table__)), new)  # Core: no per-row ORM work
    for part in _parts(sorted(completed)):
        session.execute(
            update(PendingAcquisition)
            .where(PendingAcquisition.acquisition_no.in_(part), PendingAcquisition.completed_at.is_(None))
            .values(completed_at=now)
        )
    return counts


def bound_atena_nos(session: Session, atena_nos: list[str]) -> list[str]:
    if not atena_nos:
        return []
    return list(session.scalars(select(PseudonymBinding.atena_no).where(PseudonymBinding.atena_no.in_(atena_nos))))


def pseudonym_of(session: Session, atena_no: str) -> str:
    pseudonym = _PSEUDONYM_OF.scalar(session, {"atena_no": atena_no})
    if pseudonym is None:
        raise Problem(
            409,
            "pseudonym_not_acquired",
            f"指定された団体内統合宛名番号「{atena_no}」は符号が未取得です。",
        )
    return str(pseudonym)


def atena_of_pseudonym(session: Session, pseudonym: str) -> str | None:
    found: str | None = _ATENA_OF.scalar(session, {"pseudonym": pseudonym})
    return found


# The inquiry path's lookups, built once, on the table's columns, run lean (`Prepared`:
# neither the ORM's compile step nor Core's execution machinery per statement).
_BINDINGS = cast(Table, PseudonymBinding.__table__)
_PSEUDONYM_OF = Prepared(
    select(_BINDINGS.c.pseudonym).where(_BINDINGS.c.atena_no == bindparam("atena_no")), ("atena_no",)
)
_ATENA_OF = Prepared(
    select(_BINDINGS.c.atena_no).where(_BINDINGS.c.pseudonym == bindparam("pseudonym")), ("pseudonym",)
)


# --- provision copies -----------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    atena_no: str
    info_kind_code: str
    record_key: str
    version: int
    added: bool = field(default=True, compare=False)  # False: the version held said the same


def sealed_aad(row_id: int) -> tuple[str, str, str]:
    return ("fukuhon", "sealed_values", str(row_id))


def copy_values(row: Fukuhon | CopyVersion, cipher: FieldCipher) -> dict[str, str]:
    """All items of a copy: the plain ones and, decrypted, the sensitive ones."""
    values = {str(k): str(v) for k, v in row.values.items()}
    if row.sealed_values is not None:
        values.update(json.loads(cipher.decrypt(row.sealed_values, sealed_aad(row.id))))
    return values


def register_fukuhon(
    session: Session,
    catalogue: Catalogue,
    records: Sequence[Any],
    now: datetime,
    cipher: FieldCipher,
) -> list[Registered]:
    """Validate every record against its layout edition, then add each as a new version.

    All or nothing: one invalid record refuses the batch, naming each problem (a record
    that is not an object too: it is read as empty, so its problems are named). Items
    the layout edition marks sensitive are stored encrypted (`Fukuhon.sealed_values`).
    A copy identical to the newest version held (edition, period, flags, items) adds none.

    Set-based, for batches of thousands: one query for the newest versions held of the
    batch's copies, the row ids reserved at once (they are the sealed items' AAD), one
    executemany insert (COPY on PostgreSQL).
    """
    if not 1 <= len(records) <= MAX_BATCH:
        raise Problem(422, "bad_count", f"副本は1〜{MAX_BATCH}件で登録してください。")
    prepared = _checked(catalogue, records)
    held = _newest_held(session, {c.key for c in prepared})
    out: list[Registered] = []
    new: list[tuple[_Copy, int]] = []
    for c in prepared:
        newest = held.get(c.key)
        if newest is not None and newest.says(cipher, c):
            # Registering the same copy again (a re-run batch) adds no version.
            out.append(Registered(*c.key, newest.version, added=False))
            continue
        version = (newest.version if newest is not None else 0) + 1
        new.append((c, version))
        # A later record of the batch for the same copy compares with this one.
        held[c.key] = _Held(None, version, c.edition.edition, c.valid_from, c.valid_to, c.deleted,
                            c.no_auto_answer, c.values, None)  # fmt: skip
        out.append(Registered(*c.key, version))
    if new:
        _insert(session, new, now, cipher)
    return out


@dataclass(frozen=True, slots=True)
class _Copy:
    """One checked record of a batch."""

    key: tuple[str, str, str]  # (atena_no, info_kind_code, record_key)
    edition: Edition
    sensitive: frozenset[str]
    values: dict[str, str]
    valid_from: date
    valid_to: date | None
    deleted: bool
    no_auto_answer: bool


@dataclass(frozen=True, slots=True)
class _Held:
    """The newest version of one copy: held in the table (``row_id``; its sensitive items
    ``sealed``) or registered earlier in the same batch (``row_id`` None, all items plain)."""

    row_id: int | None
    version: int
    edition: str
    valid_from: date
    valid_to: date | None
    deleted: bool
    no_auto_answer: bool
    values: dict[str, str]
    sealed: bytes | None

    def says(self, cipher: FieldCipher, c: _Copy) -> bool:
        """Whether this version already says exactly ``c`` (edition, period, flags, items)."""
        if (self.edition, self.valid_from, self.valid_to, self.deleted, self.no_auto_answer) != (
            c.edition.edition,
            c.valid_from,
            c.valid_to,
            c.deleted,
            c.no_auto_answer,
        ):
            return False
        values = self.values
        if self.sealed is not None and self.row_id is not None:
            values = {**values, **orjson.loads(cipher.decrypt(self.sealed, sealed_aad(self.row_id)))}
        return values == c.values


_INTEGER = re.compile(r"-?[0-9]+")
_YEAR = re.compile(r"[0-9]{4}")


@dataclass(frozen=True)
class _Layout:
    """An edition's items as the check needs them, worked out once per batch and edition:
    a quick yes for a record without any issue (nearly all of them); for any other, the
    catalogue's `validate_record` names each issue, so the messages are its own."""

    known: frozenset[str]
    sensitive: frozenset[str]
    # (code, required, max_length, type, minimum, maximum, codes) per item, in layout order
    checks: tuple[tuple[str, bool, int | None, str, int | None, int | None, frozenset[str]], ...]

    @classmethod
    def of(cls, edition: Edition) -> _Layout:
        return cls(
            frozenset(it.code for it in edition.items),
            frozenset(it.code for it in edition.items if it.sensitive),
            tuple(
                (it.code, it.required, it.max_length, it.type, it.minimum, it.maximum, frozenset(it.codes or ()))
                for it in edition.items
            ),
        )

    def fits(self, values: dict[str, str]) -> bool:
        """True only if `Catalogue.validate_record` would find no issue (never looser)."""
        if not self.known.issuperset(values):
            return False
        get = values.get
        for code, required, max_length, kind, minimum, maximum, codes in self.checks:
            value = get(code, "")
            if value == "":
                if required:
                    return False
                continue
            if max_length is not None and len(value) > max_length:
                return False
            if kind == "integer" or kind == "year":
                if _INTEGER.fullmatch(value) is None or (kind == "year" and _YEAR.fullmatch(value) is None):
                    return False
                number = int(value)
                if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
                    return False
            elif kind == "date":
                if parse_wire_date(value) is None:
                    return False
            elif kind == "code":
                if value not in codes:
                    return False
            elif kind != "string":
                return False  # a type this check does not know: the catalogue decides
        return True


def _checked(catalogue: Catalogue, records: Sequence[Any]) -> list[_Copy]:
    """Every record checked; the first problem of each one named, or all of them refused."""
    problems: list[dict[str, Any]] = []
    prepared: list[_Copy] = []
    layouts: dict[tuple[str, str], _Layout] = {}
    for index, raw in enumerate(records):
        rec: dict[str, Any] = raw if isinstance(raw, dict) else {}
        try:
            atena_no = check_atena_no(rec.get("atena_no"))
            kind_code = str(rec.get("info_kind_code", ""))
            kind = catalogue.info_kinds.get(kind_code)
            if kind is None:
                raise Problem(422, "unknown_info_kind", f"特定個人情報名コード「{kind_code}」は登録されていません。")
            valid_from = parse_date(rec.get("valid_from"), "公開開始日")
            valid_to = parse_date(rec["valid_to"], "公開終了日") if rec.get("valid_to") else None
            if valid_to is not None and valid_to < valid_from:
                raise Problem(422, "bad_period", "公開終了日が公開開始日より前です。")
            record_key = str(rec.get("record_key", "")) or "1"
            if len(record_key) > 64:
                raise Problem(422, "too_long", "レコードキーは64文字以内で指定してください。")
            raw_values = rec.get("values", {})
            if not isinstance(raw_values, dict):
                raise Problem(422, "bad_values", "副本の項目（values）は {項目コード: 値} の形で指定してください。")
            values = {str(k): "" if v is None else str(v) for k, v in raw_values.items()}
            deleted = bool(rec.get("delete", False))
            edition = kind.edition_on(valid_from)
            if edition is None:
                raise Problem(422, "no_edition", f"{valid_from.isoformat()} に有効なデータ標準レイアウトの版がありません。")
            layout = layouts.get((kind_code, edition.edition))
            if layout is None:
                layout = layouts[(kind_code, edition.edition)] = _Layout.of(edition)
            if not deleted and not layout.fits(values):
                issues = catalogue.validate_record(kind_code, values, valid_from, edition.edition)
                for issue in issues:
                    problems.append({"index": index, "item": issue.item_code, "code": issue.code, "message": issue.message})
                if issues:
                    continue
            no_auto_answer = bool(rec.get("no_auto_answer", False))
            prepared.append(
                _Copy((atena_no, kind_code, record_key), edition, layout.sensitive, values, valid_from,
                      valid_to, deleted, no_auto_answer)  # fmt: skip
            )
        except Problem as exc:
            problems.append({"index": index, "item": None, "code": exc.code, "message": exc.title})
    if problems:
        raise Problem(
            422,
            "invalid_fukuhon",
            "副本の内容がデータ標準レイアウトに適合しません。",
            f"{len(problems)}件の誤りがあります。",
            errors=problems[:100],
        )
    return prepared


_FUKUHON: Table = Fukuhon.__table__  # type: ignore[assignment]  # Core statements on the table
_IN_CHUNK = 2000  # persons per look-up (SQLite takes at most 32,766 parameters)


def _newest_held(session: Session, keys: set[tuple[str, str, str]]) -> dict[tuple[str, str, str], _Held]:
    """The newest version held of each copy in ``keys``: one query per 2,000 persons."""
    t = _FUKUHON
    kinds = sorted({k[1] for k in keys})
    persons = sorted({k[0] for k in keys})
    held: dict[tuple[str, str, str], _Held] = {}
    for start in range(0, len(persons), _IN_CHUNK):
        chunk = persons[start : start + _IN_CHUNK]
        newest = (
            select(t.c.atena_no, t.c.info_kind_code, t.c.record_key, func.max(t.c.version).label("version"))
            .where(bulk.among(session, t.c.atena_no, chunk), t.c.info_kind_code.in_(kinds))
            .group_by(t.c.atena_no, t.c.info_kind_code, t.c.record_key)
            .subquery()
        )
        rows = session.execute(
            select(t.c.id, t.c.atena_no, t.c.info_kind_code, t.c.record_key, t.c.version, t.c.edition,
                   t.c.valid_from, t.c.valid_to, t.c.deleted, t.c.no_auto_answer,
                   sql_cast(t.c["values"], Text).label("plain"), t.c.sealed_values)
            .join(newest, (t.c.atena_no == newest.c.atena_no) & (t.c.info_kind_code == newest.c.info_kind_code)
                  & (t.c.record_key == newest.c.record_key) & (t.c.version == newest.c.version))
        )  # fmt: skip
        for row in rows:
            key = (row.atena_no, row.info_kind_code, row.record_key)
            if key in keys:
                # The JSON as text, read with orjson: several times faster than the column type's json.
                plain = {str(k): str(v) for k, v in orjson.loads(row.plain).items()}
                held[key] = _Held(row.id, row.version, row.edition, row.valid_from, row.valid_to, row.deleted,
                                  row.no_auto_answer, plain, row.sealed_values)  # fmt: skip
    return held


def _reserve_ids(session: Session, n: int) -> list[int]:
    """``n`` row ids for new copies, taken before the insert: they are the AAD of the
    sealed items, so each row is written once, sealed, instead of inserted and updated."""
    if session.get_bind().dialect.name == "postgresql":
        return list(
            session.scalars(
                text("SELECT nextval(pg_get_serial_sequence('fukuhon', 'id')) FROM generate_series(1, :n)"),
                {"n": n},
            )
        )
    # SQLite: the rowid SQLite itself would give. The batch's transaction already writes
    # (its message's replay record), so no other writer can take these ids meanwhile;
    # one that did would meet the primary key, never share an id.
    top = session.scalar(select(func.max(_FUKUHON.c.id))) or 0
    return list(range(top + 1, top + 1 + n))


_INSERT_COLUMNS: Final = ("id", "atena_no", "info_kind_code", "dataset", "edition", "record_key", "version", "values",
                          "sealed_values", "valid_from", "valid_to", "deleted", "no_auto_answer", "registered_at")  # fmt: skip


def _bound(session: Session, column: str) -> Callable[[Any], Any]:
    """What SQLAlchemy would send the driver for a value of ``column`` (its bind processor)."""
    dialect = session.get_bind().dialect
    proc = _FUKUHON.c[column].type.dialect_impl(dialect).bind_processor(dialect)
    return proc if proc is not None else (lambda v: v)


def _insert(session: Session, new: list[tuple[_Copy, int]], now: datetime, cipher: FieldCipher) -> None:
    """One executemany on the driver with the rows as tuples (COPY on PostgreSQL): SQLAlchemy's
    per-row parameter handling would take as long as the rest of the registration. Each value is what its
    column type sends (dates and flags through their bind processors, a few distinct
    values each); the items as compact JSON text (orjson), which the column reads back."""
    ids = _reserve_ids(session, len(new))
    date_of, flag_of = _bound(session, "valid_from"), _bound(session, "deleted")
    dates: dict[date | None, Any] = {None: None}
    flags = {True: flag_of(True), False: flag_of(False)}
    registered_at = _bound(session, "registered_at")(now)
    encrypt, dumps, sort = cipher.encrypt, orjson.dumps, orjson.OPT_SORT_KEYS
    rows: list[tuple[Any, ...]] = []
    for row_id, (c, version) in zip(ids, new, strict=True):
        sensitive = c.sensitive
        plain = {k: v for k, v in c.values.items() if k not in sensitive}
        sealed = {k: v for k, v in c.values.items() if k in sensitive}
        for d in (c.valid_from, c.valid_to):
            if d not in dates:
                dates[d] = date_of(d)
        rows.append((
            row_id, c.key[0], c.key[1], c.edition.dataset, c.edition.edition, c.key[2], version,
            dumps(plain).decode(),
            encrypt(dumps(sealed, option=sort).decode(), sealed_aad(row_id)) if sealed else None,
            dates[c.valid_from], dates[c.valid_to], flags[c.deleted], flags[c.no_auto_answer], registered_at,
        ))  # fmt: skip
    conn = session.connection()
    columns = ", ".join(f'"{name}"' for name in _INSERT_COLUMNS)
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        # COPY: psycopg's executemany sends one INSERT per row.
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur, cur.copy(f"COPY fukuhon ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" for _ in _INSERT_COLUMNS)
    conn.exec_driver_sql(f"INSERT INTO fukuhon ({columns}) VALUES ({marks})", rows)


@dataclass(frozen=True, slots=True)
class CopyVersion:
    """One version of a provision copy as the provision path reads it: the columns of
    `Fukuhon`, without an ORM object (read by `find_copy` in one lean statement)."""

    id: int
    atena_no: str
    info_kind_code: str
    dataset: str
    edition: str
    record_key: str
    version: int
    values: dict[str, Any]
    sealed_values: bytes | None
    valid_from: date
    valid_to: date | None
    deleted: bool
    no_auto_answer: bool
    registered_at: datetime


def find_copy(session: Session, atena_no: str, info_kind_code: str, as_of: date) -> CopyVersion | None:
    """The copy published at `as_of`.

    Per record, the newest version whose publication had started by `as_of` decides;
    a deletion or an ended publication means nothing is published for that record.
    A version published later does not hide what was published on `as_of`.
    """
    rows = _COPIES.all(session, {"atena_no": atena_no, "info_kind_code": info_kind_code, "as_of": as_of})
    newest: dict[str, CopyVersion] = {}
    for values in rows:
        row = CopyVersion(*values)
        newest.setdefault(row.record_key, row)
    candidates = [
        r
        for r in newest.values()
        if not r.deleted and r.valid_from <= as_of and (r.valid_to is None or as_of <= r.valid_to)
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda r: (r.valid_from, r.registered_at))


# Built once (the provision path runs it for every request), on the table's columns in
# `CopyVersion`'s order, run lean.
_FUKUHON = cast(Table, Fukuhon.__table__)
_COPIES = Prepared(
    select(*(_FUKUHON.c[f.name] for f in dataclasses.fields(CopyVersion)))
    .where(
        _FUKUHON.c.atena_no == bindparam("atena_no"),
        _FUKUHON.c.info_kind_code == bindparam("info_kind_code"),
        _FUKUHON.c.valid_from <= bindparam("as_of"),
    )
    .order_by(_FUKUHON.c.record_key, _FUKUHON.c.version.desc()),
    ("atena_no", "info_kind_code", "as_of"),
)


@dataclass(frozen=True)
class Provision:
    """What we answer the hub's provision request with, and about whom (for the audit)."""

    answer: ProvisionAnswer
    atena_no: str | None


def answer_provision(session: Session, cipher: FieldCipher, req: ProvisionRequest, now: datetime) -> Provision:
    """Answer a provision request from the copies here, and record it (情報提供等の記録).

    The copy published at the date answers (回答あり, its items decrypted); a copy marked
    for manual answers waits for a person (回答待ち); no pseudonym or no copy is 該当なし.
    A serial answered before is refused (409), writing nothing.
    """
    atena_no = atena_of_pseudonym(session, req.pseudonym)
    copy = find_copy(session, atena_no, req.info_kind_code, req.as_of) if atena_no else None
    if copy is None:
        status = "no_data"
    elif copy.no_auto_answer:
        status = "pending"  # a person decides (manual answer queue)
    else:
        status = "answered"
    as_of = req.as_of.isoformat()
    # The record and the check for a repeated serial in one statement; a repeat adds
    # nothing, and the refusal rolls back the unit (the replay record with it).
    kept = _record_once(
        session,
        {
            "serial": req.serial,
            "direction": "provision",
            "at": now,
            "counterpart_org": req.inquirer_org,
            "procedure_code": req.procedure_code,
            "info_kind_code": req.info_kind_code,
            "atena_no": atena_no,
            "as_of": as_of,
            "outcome": status,
            "reason": None,
        },
    )
    if not kept:
        raise Problem(409, "duplicate_serial", "この処理通番の情報提供は既に記録されています。", req.serial)
    if copy is None or status != "answered":
        # 該当なし and 回答待ち carry no content (`ProvisionAnswer.dump` sends none).
        answer = ProvisionAnswer(serial=req.serial, status=status, info_kind_code=req.info_kind_code, as_of=as_of)
        return Provision(answer, atena_no)
    answer = ProvisionAnswer(
        serial=req.serial,
        status=status,
        info_kind_code=req.info_kind_code,
        as_of=as_of,
        edition=copy.edition,
        record_key=copy.record_key,
        values=copy_values(copy, cipher),
        valid_from=copy.valid_from.isoformat(),
        valid_to=copy.valid_to.isoformat() if copy.valid_to else None,
    )
    return Provision(answer, atena_no)


# --- answers to our inquiries -------------------------------------------------------
# The hub relays the provider's answer as a JWE it cannot read; only we can check it.
# Every way it can be wrong is one refusal, ``bad_answer`` (502), with a finer reason
# from the list below. The staff text is ours alone: nothing the provider wrote is
# echoed into a record, a log or a screen.

ANSWER_STATUSES = ("answered", "no_data", "pending")
BAD_ANSWER_REASONS: dict[str, str] = {
    "no_answer": "回答（暗号化された情報提供）が含まれていません。",
    "bad_status": "回答の状態が「回答あり」「該当なし」「回答待ち」のいずれでもありません。",
    "malformed": "回答の暗号文の形式が正しくありません。",
    "bad_algorithm": "回答に許可されていない暗号方式が使われています。",
    "decrypt_failed": "回答を復号できません（当機関宛てではないか、改ざんされています）。",
    "not_signed": "回答に情報提供者の署名がありません。",
    "wrong_signer": "回答の署名者が照会先の情報提供者ではありません。",
    "unknown_signer": "回答の署名鍵が機関登録簿にありません。",
    "bad_signature": "回答の署名を検証できません。",
    "malformed_message": "署名された回答の形式が正しくありません。",
    "issuer_mismatch": "回答の送信元と署名鍵の機関が一致しません。",
    "wrong_audience": "回答の宛先が当機関ではありません。",
    "stale_message": "回答の作成時刻が許容範囲を外れています。",
    "wrong_type": "署名された電文が情報提供の回答ではありません。",
    "mismatch": "回答の処理通番・状態・特定個人情報・基準日が照会と一致しません。",
    "bad_fields": "回答の項目（版番号・レコードキー・値・公開期間など）の形式が正しくありません。",
    "out_of_period": "回答された副本は基準日に公開されていません。",
    "layout": "回答の内容がデータ標準レイアウトに適合しません。",
}


class BadAnswer(Exception):
    """A provider's answer we refuse; ``reason`` is a key of `BAD_ANSWER_REASONS`."""

    def __init__(self, reason: str, note: str = "") -> None:
        if reason not in BAD_ANSWER_REASONS:
            raise ValueError(f"unknown bad-answer reason: {reason}")
        super().__init__(reason)
        self.reason = reason
        self.note = note  # our own words only (counts, codes), never the provider's

    @property
    def message(self) -> str:
        text = BAD_ANSWER_REASONS[self.reason]
        return f"{text}（{self.note}）" if self.note else text


def _answer_date(value: str | None) -> date:
    if value is None:
        raise BadAnswer("bad_fields")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadAnswer("bad_fields") from None


def check_answer(
    catalogue: Catalogue,
    typ: str,
    body: dict[str, Any],
    *,
    serial: str,
    status: str,
    req: ChukanInquiry,
) -> InquiryResult:
    """The provider's verified answer, checked against the question and the layout.

    ``typ`` and ``body`` are the signed message's, read as the contract's
    `ProvisionAnswer` (a body of another form is ``bad_fields``); ``status`` is what the
    hub relayed, ``req`` what we asked. Refuses, in this order: another message type;
    a body of another form; an answer to another serial, status, info kind or date;
    an answer without its edition, record key (1–64 characters), values or period in
    form; a copy not published at the date; values off the layout. Returns what atena
    is told: for 回答あり also the edition, record key, values and publication period;
    serial and status alone for 該当なし or 回答待ち. Raises BadAnswer.
    """
    if typ != PROVISION_ANSWER_TYP:
        raise BadAnswer("wrong_type")
    try:
        answer = contract.parse(ProvisionAnswer, body)
    except Problem:
        raise BadAnswer("bad_fields") from None
    as_of = req.as_of
    if (answer.serial, answer.status, answer.info_kind_code, answer.as_of) != (
        serial,
        status,
        req.info_kind_code,
        as_of.isoformat(),
    ):
        raise BadAnswer("mismatch")
    if status != "answered":
        return InquiryResult(serial=serial, status=status)
    edition, record_key, values = answer.edition, answer.record_key, answer.values
    if edition is None or record_key is None or not 1 <= len(record_key) <= 64 or values is None:
        raise BadAnswer("bad_fields")
    valid_from = _answer_date(answer.valid_from)
    valid_to = None if answer.valid_to is None else _answer_date(answer.valid_to)
    if not (valid_from <= as_of and (valid_to is None or as_of <= valid_to)):
        raise BadAnswer("out_of_period")
    issues = catalogue.validate_record(req.info_kind_code, values, valid_from, edition)
    if issues:
        codes = sorted({issue.code for issue in issues})
        raise BadAnswer("layout", f"{len(issues)}件: {', '.join(codes)}")
    return InquiryResult(
        serial=serial,
        status=status,
        edition=edition,
        record_key=record_key,
        values=values,
        valid_from=valid_from.isoformat(),
        valid_to=valid_to.isoformat() if valid_to is not None else None,
    )


def inquiry_recorded(session: Session, serial: str) -> bool:
    return session.scalar(_RECORDED, {"serial": serial, "direction": "inquiry"}) is not None


def keep_inquiry(
    session: Session, req: ChukanInquiry, serial: str, outcome: str, now: datetime, reason: str | None = None
) -> bool:
    """Keep the outcome of our inquiry under the hub's serial (情報提供等の記録).

    A serial we already hold (the hub repeated one) is not kept again: False.
    """
    values = {
        "serial": serial,
        "direction": "inquiry",
        "at": now,
        "counterpart_org": req.provider_org,
        "inquirer_department": req.inquirer_department,
        "inquirer_user": req.inquirer_user,
        "procedure_code": req.procedure_code,
        "info_kind_code": req.info_kind_code,
        "atena_no": req.atena_no,
        "as_of": req.as_of.isoformat(),
        "outcome": outcome,
        "reason": reason,
    }
    return _record_once(session, values)


def _record_once(session: Session, values: dict[str, Any]) -> bool:
    """Insert a provision record unless its (serial, direction) is kept already: False then."""
    if session.connection().dialect.name in _ONCE_INSERTS:
        # One statement: the insert that meets the serial already kept adds nothing, returns nothing.
        return _INSERT_RECORD_ONCE.first(session, {**_RECORD_UNSET, **values}) is not None
    if session.scalar(_RECORDED, {"serial": values["serial"], "direction": values["direction"]}) is not None:
        return False
    session.execute(_INSERT_RECORD, values)
    return True


# --- records --------------------------------------------------------------------


def record(
    session: Session,
    *,
    serial: str,
    direction: str,
    counterpart_org: str,
    procedure_code: str,
    info_kind_code: str,
    atena_no: str | None,
    as_of: str,
    outcome: str,
    now: datetime,
    reason: str | None = None,
) -> None:
    # A plain INSERT (Core, built once): no ORM unit of work for a row nobody reads back here.
    session.execute(
        _INSERT_RECORD,
        {
            "serial": serial,
            "direction": direction,
            "at": now,
            "counterpart_org": counterpart_org,
            "procedure_code": procedure_code,
            "info_kind_code": info_kind_code,
            "atena_no": atena_no,
            "as_of": as_of,
            "outcome": outcome,
            "reason": reason,
        },
    )


_RECORDS = cast(Table, ProvisionRecord.__table__)
_INSERT_RECORD = insert(_RECORDS)
# Run lean (`Prepared`) with every column but the id: a provision names no inquirer.
_RECORD_UNSET: Final[dict[str, Any]] = {"inquirer_department": None, "inquirer_user": None}
_ONCE_INSERTS: Final[dict[str, Any]] = {"sqlite": sqlite_insert, "postgresql": pg_insert}
_INSERT_RECORD_ONCE = Prepared(
    {
        name: make(_RECORDS)
        .on_conflict_do_nothing(index_elements=[_RECORDS.c.serial, _RECORDS.c.direction])
        .returning(_RECORDS.c.id)
        for name, make in _ONCE_INSERTS.items()
    },
    [c.key for c in _RECORDS.columns if c.key != "id"],
)
_RECORDED = select(_RECORDS.c.id).where(
    _RECORDS.c.serial == bindparam("serial"), _RECORDS.c.direction == bindparam("direction")
)


# --- staff: provision records by affair role, and their export ------------------------------
# (情報提供等の記録 at this chukan; the staff routes are in renkei/chukan/staff_routes.py)

READ = "参照"


@dataclass(frozen=True)
class RecordView:
    """One provision record as staff see it: no reason text, the affair named."""

    serial: str
    direction: str
    at: datetime
    counterpart_org: str
    procedure_code: str
    affair_code: str
    info_kind_code: str
    as_of: str
    outcome: str


def readable_affairs(catalogue: Catalogue, roles: Iterable[str]) -> list[str]:
    """The affairs whose records the roles may read (``<affair>:参照``)."""
    held = list(roles)
    return sorted(code for code in catalogue.affairs if has_role(held, READ, affair=code))


def provision_records_for_staff(
    session: Session,
    catalogue: Catalogue,
    roles: Iterable[str],
    atena_no: str,
    *,
    limit: int = 500,
) -> tuple[list[RecordView], list[str]]:
    """One person's provision records here, only those of affairs the staff member may read.

    A record's affair is its procedure's (catalogue); a tax clerk sees tax records only.
    Returns (records newest first, the affairs read). PermissionDenied without any
    ``<affair>:参照`` role.
    """
    person = check_atena_no(atena_no)
    affairs = readable_affairs(catalogue, roles)
    if not affairs:
        raise PermissionDenied(
            "role_required",
            "情報提供等の記録を参照するには、事務の参照権限（例: JM01000000074000:参照）が必要です。",
            needed=f"<事務コード>:{READ}",
        )
    affair_of = {
        code: proc.affair_code
        for code, proc in catalogue.procedures.items()
        if proc.affair_code in affairs
    }
    rows = session.scalars(
        select(ProvisionRecord)
        .where(
            ProvisionRecord.atena_no == person,
            ProvisionRecord.procedure_code.in_(sorted(affair_of)),
        )
        .order_by(ProvisionRecord.at.desc(), ProvisionRecord.id.desc())
        .limit(limit)
    ).all()
    views = [
        RecordView(
            serial=r.serial,
            direction=r.direction,
            at=r.at,
            counterpart_org=r.counterpart_org,
            procedure_code=r.procedure_code,
            affair_code=affair_of[r.procedure_code],
            info_kind_code=r.info_kind_code,
            as_of=r.as_of,
            outcome=r.outcome,
        )
        for r in rows
    ]
    return views, affairs


def _in_period(stmt: Any, start: datetime | None, end: datetime | None) -> Any:
    if start is not None:
        stmt = stmt.where(ProvisionRecord.at >= start)
    if end is not None:
        stmt = stmt.where(ProvisionRecord.at < end)
    return stmt


def count_provision_records(session: Session, start: datetime | None, end: datetime | None) -> int:
    """How many provision records fall in [start, end)."""
    stmt = _in_period(select(func.count()).select_from(ProvisionRecord), start, end)
    return int(session.execute(stmt).scalar_one())


def write_provision_records(
    session: Session, start: datetime | None, end: datetime | None, out: IO[str], *, batch: int = 5000
) -> int:
    """The provision records of [start, end) as JSON Lines, oldest first; returns how many."""
    written = 0
    after = 0
    while True:
        stmt = _in_period(
            select(ProvisionRecord).where(ProvisionRecord.id > after), start, end
        ).order_by(ProvisionRecord.id).limit(batch)
        rows = session.scalars(stmt).all()
        for r in rows:
            line = {
                "serial": r.serial,
                "direction": r.direction,
                "at": r.at.isoformat(),
                "counterpart_org": r.counterpart_org,
                "procedure_code": r.procedure_code,
                "info_kind_code": r.info_kind_code,
                "atena_no": r.atena_no,
                "as_of": r.as_of,
                "outcome": r.outcome,
            }
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
        written += len(rows)
        if len(rows) < batch:
            return written
        after = rows[-1].id
