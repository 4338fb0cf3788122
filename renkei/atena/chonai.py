"""In-house sharing (庁内連携) through atena, under the municipality's ordinance.

Department B's business system publishes records of an info kind to atena under its own
宛名番号 (`publish`); atena keeps them under the 統合宛名番号 (`ChonaiRecord`, the items
sealed). Department A's business system reads them for one of its affairs with its own
宛名番号 (`read`): atena checks the ordinance's table (renkei.catalogue.ordinance) lists
(A's affair, B, the info kind) on the date, translates A's numbers, and answers with A's
numbers and only the items the table's entry names — never a 統合宛名番号, never B's
numbers. Every read is audited: one entry per person read (subject = 統合宛名番号, affair,
ref = the table's entry) and one for the request (`read_events`).

Plain functions, a session in and values out (the routes are renkei.atena.chonai_api,
the command ``renkei chonai export`` renkei.atena.chonai_cli). Design: docs/chonai-renkei.md.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final, cast

import orjson
from sqlalchemy import Table, delete, select, update
from sqlalchemy.orm import Session

from renkei.atena.models import ChonaiRecord, Person
from renkei.atena.service import translate_many
from renkei.catalogue import Catalogue, check_value
from renkei.catalogue.ordinance import Ordinance, OrdinanceEntry, load_ordinance, packaged_ordinance
from renkei.core import bulk, ids
from renkei.core.audit.log import AuditEvent
from renkei.core.config import NodeConfig
from renkei.core.crypto.field import FieldCipher
from renkei.core.errors import Problem
from renkei.core.records import bad_record
from renkei.core.text.wareki import WarekiError, parse_date
from renkei.staff.roles import PermissionDenied, has_role

MAX_BATCH: Final = 10_000
MAX_RECORD_KEY: Final = 40
_CHUNK: Final = 5_000  # values per IN list (SQLite: at most 32,766 parameters)
JST: Final = timezone(timedelta(hours=9), "JST")

READ: Final = "chonai.read"  # audit action of a read request (and of its refusal)
READ_PERSON: Final = "chonai.read.person"  # one per person read
PUBLISH: Final = "chonai.publish"

# Per-person outcome of a read, and how staff read it.
FOUND: Final = "found"
NO_DATA: Final = "no_data"
UNKNOWN: Final = "unknown"
INVALID: Final = "invalid"
STATUS_LABELS: Final = {
    FOUND: "該当あり",
    NO_DATA: "該当なし（提供元の公開データがありません）",
    UNKNOWN: "宛名番号が団体内統合宛名システムに登録されていません",
    INVALID: "宛名番号の形式が誤っています",
}


# --- the ordinance of this atena -----------------------------------------------------------


def ordinance_for(config: NodeConfig, catalogue: Catalogue) -> Ordinance | None:
    """The ordinance this atena applies: ``[extra] ordinance = "<file>"`` in its config, else
    the packaged sample of the municipality whose 地方公共団体コード begins the 機関コード
    (ours: the demo's codes are built so), else None (no in-house sharing at all).
    A bad file stops the start with `OrdinanceError`."""
    configured = config.extra.get("ordinance")
    path = Path(str(configured)) if configured else packaged_ordinance(config.org_code[:6])
    return None if path is None else load_ordinance(path, catalogue)


def require_ordinance(ordinance: Ordinance | None) -> Ordinance:
    if ordinance is None:
        raise Problem(
            403, "ordinance_missing", "この団体には庁内連携の条例（別表）が設定されていないため、庁内連携はできません。"
        )
    return ordinance


def parse_as_of(value: str | None, now: datetime) -> date:
    """The date the ordinance is applied on: as typed (和暦 or 西暦), else today in Japan."""
    if value is None or not value.strip():
        return now.astimezone(JST).date()
    try:
        return parse_date(value)
    except WarekiError as exc:
        raise Problem(422, "bad_date", f"基準日: {exc}") from None


# --- publishing (department B) ---------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    """What a publication changed: records added, replaced, withdrawn, and left as they were."""

    added: int
    replaced: int
    withdrawn: int
    unchanged: int

    def summary(self) -> dict[str, int]:
        return {"added": self.added, "replaced": self.replaced, "withdrawn": self.withdrawn, "unchanged": self.unchanged}


def _aad(provider: str, kind: str, atena_no: str, key: str) -> tuple[str, str, str]:
    return ("chonai_records", "values", f"{provider}/{kind}/{atena_no}/{key}")


def _seal(cipher: FieldCipher, values: dict[str, str], aad: tuple[str, str, str]) -> bytes:
    return cipher.encrypt(orjson.dumps(values, option=orjson.OPT_SORT_KEYS).decode(), aad)


def _unseal(cipher: FieldCipher, blob: bytes, aad: tuple[str, str, str]) -> dict[str, str]:
    loaded = orjson.loads(cipher.decrypt(blob, aad))
    return {str(k): str(v) for k, v in loaded.items()}


def publish(
    session: Session,
    cipher: FieldCipher,
    catalogue: Catalogue,
    ordinance: Ordinance | None,
    system: str,
    info_kind_code: str,
    records: Sequence[Any],
    now: datetime,
    actor: str,
) -> Published:
    """Store B's records of one info kind for sharing; all or nothing.

    Only items some entry of the ordinance lets somebody read from ``system`` may be sent
    (atena keeps nothing the ordinance does not share); each value is checked against the
    layout edition in force today. A record is ``{"business_atena_no", "record_key"
    (optional, e.g. the tax year), "values": {item: value}}`` or, to withdraw one,
    ``{"business_atena_no", "record_key", "delete": true}``. Publishing the same values
    again changes nothing.
    """
    table = require_ordinance(ordinance)
    shared = table.provided_items(system, info_kind_code)
    if not shared:
        raise Problem(
            403,
            "ordinance_not_provided",
            f"業務システム「{system}」の特定個人情報「{info_kind_code}」は、条例の別表のどの項でも"
            "庁内連携の対象になっていないため、公開できません。",
        )
    if not 1 <= len(records) <= MAX_BATCH:
        raise Problem(422, "bad_count", f"公開するレコードは1〜{MAX_BATCH}件で指定してください。")
    kind = catalogue.info_kinds[info_kind_code]  # listed by the ordinance, so in the catalogue
    edition = kind.edition_on(now.astimezone(JST).date())
    if edition is None:
        raise Problem(422, "no_edition", f"特定個人情報「{kind.label}」には本日有効なレイアウトの版がありません。")
    parsed: list[tuple[str, str, dict[str, str] | None]] = []
    for index, raw in enumerate(records):
        rec = raw if isinstance(raw, dict) else {}
        number = rec.get("business_atena_no")
        if not isinstance(number, str) or ids.check(ids.IdKind.ATENA_NO, number) is not None:
            raise Problem(
                422, "invalid_business_atena_no", f"{index + 1}件目: 宛名番号は15桁の数字（検査数字付き）で指定してください。",
                index=index,
            )  # fmt: skip
        key = rec.get("record_key", "")
        if not isinstance(key, str) or len(key) > MAX_RECORD_KEY or not key.isprintable():
            raise Problem(
                422, "too_long", f"{index + 1}件目: レコードキーは{MAX_RECORD_KEY}文字以内の文字列で指定してください。",
                index=index,
            )  # fmt: skip
        if rec.get("delete") is True:
            parsed.append((number, key, None))
            continue
        values = rec.get("values")
        if not isinstance(values, dict) or not values:
            raise Problem(
                422, "bad_values", f"{index + 1}件目: values は {{項目コード: 値}} の形で1項目以上指定してください。",
                index=index,
            )  # fmt: skip
        clean: dict[str, str] = {}
        for code, value in values.items():
            item = edition.item(str(code))
            if item is None:
                raise Problem(
                    422, "bad_items", f"{index + 1}件目: 項目コード「{str(code)[:32]}」は特定個人情報「{kind.label}」の"
                    f"版番号「{edition.edition}」にありません。", index=index, item=str(code)[:32],
                )  # fmt: skip
            if item.code not in shared:
                raise Problem(
                    422, "item_not_shared", f"{index + 1}件目: 項目「{item.label}」は条例の別表で庁内連携の対象に"
                    "なっていないため、公開できません。", index=index, item=item.code,
                )  # fmt: skip
            text = value if isinstance(value, str) else None
            issue = check_value(item, text) if text is not None else None
            if text is None or issue is not None:
                reason = issue.message if issue is not None else f"項目「{item.label}」の値は文字列で指定してください。"
                raise Problem(422, "bad_values", f"{index + 1}件目: {reason}", index=index, item=item.code)
            clean[item.code] = text
        parsed.append((number, key, clean))
    found = translate_many(session, system, [number for number, _k, _v in parsed])
    for index, (number, _key, _values) in enumerate(parsed):
        if number not in found:
            raise Problem(
                404, "unknown_business_atena_no", f"{index + 1}件目: 業務「{system}」の宛名番号「{number}」は登録されていません。",
                index=index,
            )  # fmt: skip
    current = _current(session, system, info_kind_code, {found[n] for n, _k, _v in parsed})
    added = replaced = withdrawn = same = 0
    inserts: list[dict[str, Any]] = []
    seen: dict[tuple[str, str], dict[str, str] | None] = {}
    for number, key, values in parsed:
        seen[(found[number], key)] = values  # the last record of a key wins, as in a file
    for (atena_no, key), values in seen.items():
        aad = _aad(system, info_kind_code, atena_no, key)
        held = current.get((atena_no, key))
        if values is None:
            if held is not None:
                session.execute(delete(ChonaiRecord).where(ChonaiRecord.id == held[0]))
                withdrawn += 1
            else:
                same += 1
        elif held is None:
            inserts.append(
                {
                    "provider_system": system,
                    "info_kind_code": info_kind_code,
                    "atena_no": atena_no,
                    "record_key": key,
                    "values_enc": _seal(cipher, values, aad),
                    "published_by": actor[:64],
                    "published_at": now,
                }
            )
            added += 1
        elif _unseal(cipher, held[1], aad) == values:
            same += 1
        else:
            session.execute(
                update(ChonaiRecord)
                .where(ChonaiRecord.id == held[0])
                .values(values_enc=_seal(cipher, values, aad), published_by=actor[:64], published_at=now)
            )
            replaced += 1
    bulk.insert_rows(session, cast(Table, ChonaiRecord.__table__), inserts)
    return Published(added, replaced, withdrawn, same)


def _current(
    session: Session, system: str, kind: str, atena_nos: Iterable[str]
) -> dict[tuple[str, str], tuple[int, bytes]]:
    wanted = sorted(atena_nos)
    out: dict[tuple[str, str], tuple[int, bytes]] = {}
    for start in range(0, len(wanted), _CHUNK):
        rows = session.execute(
            select(ChonaiRecord.atena_no, ChonaiRecord.record_key, ChonaiRecord.id, ChonaiRecord.values_enc).where(
                ChonaiRecord.provider_system == system,
                ChonaiRecord.info_kind_code == kind,
                bulk.among(session, ChonaiRecord.atena_no, wanted[start : start + _CHUNK]),
            )
        )
        for atena_no, key, rid, blob in rows:
            out[(atena_no, key)] = (rid, blob)
    return out


# --- reading (department A) -------------------------------------------------------------------


@dataclass(frozen=True)
class ReadRequest:
    """Department A asks: its system, the affair it works for, whose data (provider system
    and info kind), about whom (its own 宛名番号), on which date the ordinance applies."""

    system: str
    affair_code: str
    provider_system: str
    info_kind_code: str
    business_atena_nos: Sequence[str]
    on: date


@dataclass(frozen=True)
class SharedRecord:
    record_key: str
    values: dict[str, str]  # only the entry's items
    published_at: datetime


@dataclass(frozen=True)
class PersonRead:
    """The answer about one 宛名番号 of A (``atena_no`` stays inside atena: audit only)."""

    business_atena_no: str
    status: str
    records: tuple[SharedRecord, ...] = ()
    atena_no: str | None = field(default=None, repr=False)

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]


@dataclass(frozen=True)
class ReadResult:
    entry: OrdinanceEntry
    persons: tuple[PersonRead, ...]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUS_LABELS, 0)
        for p in self.persons:
            out[p.status] += 1
        return out


def authorize(ordinance: Ordinance | None, req: ReadRequest) -> OrdinanceEntry:
    """The ordinance's entry for the request, or a 403 Problem with the decision's code."""
    table = require_ordinance(ordinance)
    decision = table.check(req.system, req.affair_code, req.provider_system, req.info_kind_code, req.on)
    if not decision.allowed or decision.entry is None:
        assert decision.code is not None and decision.message is not None
        raise Problem(403, decision.code, decision.message)
    return decision.entry


def check_request(req: ReadRequest) -> None:
    """Formats before anything else (not audited as a read: it names nobody yet)."""
    if ids.check(ids.IdKind.AFFAIR_CODE, req.affair_code) is not None:
        raise Problem(422, "invalid_affair_code", "事務コードは JM＋14桁で指定してください。")
    if ids.check(ids.IdKind.INFO_KIND_CODE, req.info_kind_code) is not None:
        raise Problem(422, "invalid_info_kind_code", "特定個人情報名コードは TM＋14桁で指定してください。")
    if not 1 <= len(req.business_atena_nos) <= MAX_BATCH:
        raise Problem(422, "bad_count", f"宛名番号は1〜{MAX_BATCH}件で指定してください。")


def read(session: Session, cipher: FieldCipher, ordinance: Ordinance | None, req: ReadRequest) -> ReadResult:
    """A's read: the entry allows it (else 403), A's numbers translated, B's published
    records of those persons with only the entry's items. Writes nothing (the caller
    records `read_events` in the same transaction)."""
    check_request(req)
    entry = authorize(ordinance, req)
    numbers = list(req.business_atena_nos)
    found = translate_many(session, req.system, numbers)
    held = _records_of(session, cipher, entry, found.values())
    persons: list[PersonRead] = []
    for number in numbers:
        if ids.check(ids.IdKind.ATENA_NO, number) is not None:
            persons.append(PersonRead(number, INVALID))
            continue
        person = found.get(number)
        if person is None:
            persons.append(PersonRead(number, UNKNOWN))
            continue
        records = tuple(held.get(person, ()))
        persons.append(PersonRead(number, FOUND if records else NO_DATA, records, person))
    return ReadResult(entry, tuple(persons))


def _records_of(
    session: Session, cipher: FieldCipher, entry: OrdinanceEntry, atena_nos: Iterable[str]
) -> dict[str, list[SharedRecord]]:
    """The provider's published records of these persons, with only the entry's items."""
    held: dict[str, list[SharedRecord]] = {}
    wanted = sorted(set(atena_nos))
    for start in range(0, len(wanted), _CHUNK):
        rows = session.execute(
            select(ChonaiRecord.atena_no, ChonaiRecord.record_key, ChonaiRecord.values_enc, ChonaiRecord.published_at)
            .where(
                ChonaiRecord.provider_system == entry.provider_system,
                ChonaiRecord.info_kind_code == entry.info_kind_code,
                ChonaiRecord.atena_no.in_(wanted[start : start + _CHUNK]),
            )
            .order_by(ChonaiRecord.atena_no, ChonaiRecord.record_key)
        )
        for atena_no, key, blob, at in rows:
            values = _unseal(cipher, blob, _aad(entry.provider_system, entry.info_kind_code, atena_no, key))
            shared = {item: values[item] for item in entry.items if item in values}
            held.setdefault(atena_no, []).append(SharedRecord(key, shared, at))
    return held


def entries_for_staff(ordinance: Ordinance | None, roles: Iterable[str]) -> list[OrdinanceEntry]:
    """The entries a staff member may read under: those of affairs they hold ``<affair>:参照`` for."""
    if ordinance is None:
        return []
    held = [str(r) for r in roles]
    return [e for e in ordinance.entries if has_role(held, STAFF_OPERATION, affair=e.affair_code)]


STAFF_SYSTEM: Final = "staff-ui"  # what the audit entries name as the reading system for a staff read


def read_for_staff(
    session: Session,
    cipher: FieldCipher,
    ordinance: Ordinance | None,
    roles: Iterable[str],
    entry_id: str,
    atena_no: str,
    on: date,
) -> tuple[ReadRequest, ReadResult]:
    """A staff member at atena reads one person (by 統合宛名番号, which staff screens
    show) under an entry of the table: they must hold ``<affair>:参照`` for its affair
    and the (affair, provider, info kind) must be in force on ``on`` (the entry in force
    then decides the items). Writes nothing; the caller records `read_events`."""
    table = require_ordinance(ordinance)
    chosen = table.entry(entry_id)
    if chosen is None:
        raise Problem(403, "ordinance_not_listed", f"条例の別表に「{entry_id[:32]}」の項はありません。")
    if not has_role([str(r) for r in roles], STAFF_OPERATION, affair=chosen.affair_code):
        affair = table.affairs[chosen.affair_code]
        raise PermissionDenied(
            "affair_not_permitted",
            f"この職員は事務「{affair.name}」の参照権限を持っていません。",
            needed=f"{chosen.affair_code}:{STAFF_OPERATION}",
        )
    system = table.affairs[chosen.affair_code].systems[0]
    req = ReadRequest(system, chosen.affair_code, chosen.provider_system, chosen.info_kind_code, [atena_no], on)
    entry = authorize(table, req)
    problem = ids.check(ids.IdKind.ATENA_NO, atena_no)
    if problem is not None:
        raise Problem(422, "invalid_atena_no", f"統合宛名番号: {problem.message}")
    if session.get(Person, atena_no) is None:
        raise Problem(404, "unknown_atena_no", f"統合宛名番号「{atena_no}」は登録されていません。")
    records = tuple(_records_of(session, cipher, entry, [atena_no]).get(atena_no, ()))
    person = PersonRead(atena_no, FOUND if records else NO_DATA, records, atena_no)
    return replace(req, system=STAFF_SYSTEM), ReadResult(entry, (person,))


def new_request_id() -> str:
    """An id tying a read's audit entries together: letters only, because the audit log
    refuses any 12-digit run that passes the 個人番号 check (a hex id sometimes has one)."""
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(16))


def read_events(actor: str, terminal: str, req: ReadRequest, result: ReadResult, request_id: str) -> list[AuditEvent]:
    """The audit entries of an allowed read: one per person read (subject = 統合宛名番号,
    affair, ref = the entry, the outcome found/no_data) and one for the request with its
    counts. No value read is logged."""
    entry = result.entry
    common = {"system": req.system, "provider": entry.provider_system, "info_kind": entry.info_kind_code}
    events: list[AuditEvent] = []
    seen: set[str] = set()
    for p in result.persons:
        if p.atena_no is None or p.atena_no in seen:
            continue
        seen.add(p.atena_no)
        events.append(
            AuditEvent(
                actor=actor,
                terminal=terminal,
                action=READ_PERSON,
                outcome=p.status,
                subject=p.atena_no,
                affair=entry.affair_code,
                ref=entry.id,
                detail={**common, "request": request_id},
            )
        )
    events.append(
        AuditEvent(
            actor=actor,
            terminal=terminal,
            action=READ,
            outcome="ok",
            affair=entry.affair_code,
            ref=entry.id,
            detail={**common, "request": request_id, "on": req.on.isoformat(), **result.counts()},
        )
    )
    return events


_LOGGABLE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,40}")
_TWELVE: Final = re.compile(r"(?<![0-9])[0-9]{12}(?![0-9])")


def loggable(value: str) -> str:
    """A code as the caller sent it, fit for the audit log: the log refuses anything that
    could be an individual number, so an odd value is logged as 「形式誤り」 instead."""
    if _LOGGABLE.fullmatch(value) and not _TWELVE.search(value):
        return value
    return "(形式誤り)"


def refusal_detail(req: ReadRequest) -> dict[str, Any]:
    """What a refused read's audit entry says (codes and counts, no person)."""
    return {
        "system": loggable(req.system),
        "provider": loggable(req.provider_system),
        "info_kind": loggable(req.info_kind_code),
        "asked": len(req.business_atena_nos),
    }


# --- CSV files ------------------------------------------------------------------------------

REQUEST_HEADER: Final = "宛名番号"
RESULT_FIXED: Final = ("宛名番号", "状態", "状態の説明", "レコードキー")


def decode_csv(data: bytes, source: str) -> tuple[str, str]:
    """The text of a CSV file and its encoding: UTF-8 (a BOM allowed), else CP932."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp932"), "cp932"
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise bad_record(source, line, "文字コードが UTF-8 でも CP932 でもありません") from None


def parse_request_csv(data: bytes, source: str) -> tuple[list[str], str]:
    """A request file: a header line ``宛名番号`` then one 宛名番号 a line (blank lines
    skipped). Returns the numbers in order and the file's encoding (the result is
    written in the same). A malformed line refuses the file, naming it and the line."""
    text, encoding = decode_csv(data, source)
    numbers: list[str] = []
    header_seen = False
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            cells = next(csv.reader([line], strict=True))
        except csv.Error as exc:
            raise bad_record(source, lineno, f"CSVとして読めません（{exc}）") from None
        cells = [c.strip() for c in cells]
        if not header_seen:
            if cells[:1] != [REQUEST_HEADER]:
                raise bad_record(source, lineno, f"1行目は見出し「{REQUEST_HEADER}」でなければなりません")
            header_seen = True
            continue
        if len(cells) != 1:
            raise bad_record(source, lineno, f"列の数が{len(cells)}です（宛名番号の1列だけにしてください）")
        number = cells[0].translate(_FULL_WIDTH_DIGITS)
        problem = ids.check(ids.IdKind.ATENA_NO, number)
        if problem is not None:
            raise bad_record(source, lineno, f"宛名番号「{number[:20]}」: {problem.message}", field=REQUEST_HEADER)
        numbers.append(number)
        if len(numbers) > MAX_BATCH:
            raise bad_record(source, lineno, f"1ファイルの宛名番号は{MAX_BATCH}件までです")
    if not header_seen:
        raise bad_record(source, 1, f"見出し行「{REQUEST_HEADER}」がありません")
    if not numbers:
        raise Problem(422, "bad_count", f"{source} に宛名番号が1件もありません。")
    return numbers, encoding


_FULL_WIDTH_DIGITS: Final = str.maketrans("０１２３４５６７８９", "0123456789")


def item_headers(catalogue: Catalogue, entry: OrdinanceEntry) -> list[str]:
    """「K001（課税年度）」 for each item of the entry, in the entry's order."""
    kind = catalogue.info_kinds[entry.info_kind_code]
    names: dict[str, str] = {}
    for ed in kind.editions:
        for it in ed.items:
            names.setdefault(it.code, it.name)
    return [f"{code}（{names.get(code, code)}）" for code in entry.items]


def result_csv(catalogue: Catalogue, result: ReadResult, encoding: str = "utf-8") -> bytes:
    """The result file: one row per record read (a person without records: one row with
    the items empty), in the order of the request; A's 宛名番号 only; CRLF."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*RESULT_FIXED, *item_headers(catalogue, result.entry)])
    for p in result.persons:
        rows = p.records or (None,)
        for rec in rows:
            values = rec.values if rec is not None else {}
            writer.writerow(
                [
                    p.business_atena_no,
                    p.status,
                    p.status_label,
                    rec.record_key if rec is not None else "",
                    *(values.get(code, "") for code in result.entry.items),
                ]
            )
    try:
        return out.getvalue().encode(encoding)
    except UnicodeEncodeError:
        return out.getvalue().encode("utf-8")  # a value CP932 cannot carry: the whole file in UTF-8


PUBLICATION_NUMBER: Final = "宛名番号"
PUBLICATION_KEY: Final = "レコードキー"
PUBLICATION_DELETE: Final = "削除"


def parse_publication_csv(data: bytes, source: str) -> tuple[list[dict[str, Any]], list[int]]:
    """A provider's publication file: header ``宛名番号, レコードキー`` (optional), one
    column per item code (K001 …), optional ``削除`` (1 = withdraw the record); an empty
    item cell is an item not sent. UTF-8 or CP932. Returns the records (as `publish`
    takes them) and the line of each; a malformed line refuses the file."""
    text, _encoding = decode_csv(data, source)
    header: list[str] | None = None
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            cells = [c.strip() for c in next(csv.reader([line], strict=True))]
        except csv.Error as exc:
            raise bad_record(source, lineno, f"CSVとして読めません（{exc}）") from None
        if header is None:
            if PUBLICATION_NUMBER not in cells:
                raise bad_record(source, lineno, f"見出し行に「{PUBLICATION_NUMBER}」の列がありません")
            if len(set(cells)) != len(cells):
                raise bad_record(source, lineno, "見出し行に同じ列名が二つあります")
            header = cells
            continue
        if len(cells) != len(header):
            raise bad_record(source, lineno, f"列の数が{len(cells)}です（見出し行は{len(header)}列）")
        row = dict(zip(header, cells, strict=True))
        rec: dict[str, Any] = {
            "business_atena_no": row.pop(PUBLICATION_NUMBER).translate(_FULL_WIDTH_DIGITS),
            "record_key": row.pop(PUBLICATION_KEY, ""),
        }
        flag = row.pop(PUBLICATION_DELETE, "")
        if flag not in ("", "0", "1"):
            raise bad_record(source, lineno, f"「{PUBLICATION_DELETE}」は 1（削除）か 0・空欄で指定してください", field=PUBLICATION_DELETE)
        if flag == "1":
            rec["delete"] = True
        else:
            rec["values"] = {code: value for code, value in row.items() if value != ""}
        records.append(rec)
        lines.append(lineno)
        if len(records) > MAX_BATCH:
            raise bad_record(source, lineno, f"1ファイルのレコードは{MAX_BATCH}件までです")
    if header is None or not records:
        raise Problem(422, "bad_count", f"{source} に公開するレコードが1件もありません。")
    return records, lines


# --- staff at atena (the command line's --actor) ---------------------------------------------------

STAFF_OPERATION: Final = "参照"  # the role <affair>:参照 lets a staff member read for the affair


def authorize_staff(session: Session, staff: Table, staff_id: str, affair_code: str, now: datetime) -> str:
    """A staff member who runs a read at atena: known, active, not locked, holding
    ``<affair>:参照`` for the using affair (the ordinance is checked after). Returns the id."""
    row = session.execute(
        select(staff.c.active, staff.c.roles, staff.c.locked_until).where(staff.c.staff_id == staff_id)
    ).first()
    if row is None:
        raise Problem(403, "unknown_staff", f"職員ID「{staff_id[:64]}」は登録されていません。")
    if not row.active:
        raise Problem(403, "inactive", "この職員アカウントは無効です。")
    if row.locked_until is not None and now < row.locked_until:
        raise Problem(403, "locked", "この職員アカウントはロックされています。")
    roles = row.roles if isinstance(row.roles, list) else []
    if ids.check(ids.IdKind.AFFAIR_CODE, affair_code) is not None or not has_role(
        [str(r) for r in roles], STAFF_OPERATION, affair=affair_code
    ):
        raise PermissionDenied(
            "affair_not_permitted",
            f"この職員は事務「{loggable(affair_code)}」の参照権限を持っていません。",
            needed=f"{loggable(affair_code)}:{STAFF_OPERATION}",
        )
    return staff_id
