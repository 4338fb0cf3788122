"""The resident register feed (住民記録システム → atena): 異動 events, checked and applied.

One event is one 異動 of one person — 転入, 転出, 転居, 出生, 死亡, 氏名変更, 職権修正 —
with its event id (異動ID), effective date (異動日), the person's 個人番号 (and the
register's own 住民宛名番号 if it sends one) and the person's 基本4情報 as they stand
after the event (for 転出 and 死亡: as they stood when leaving), with the household
(世帯番号, 続柄) and, for moves, where from or where to. The same shape arrives online
(`POST /v1/register/changes`, renkei.atena.api) and as a daily file (CSV or fixed width,
renkei.atena.feed_file); docs/register-feed.md describes both.

Applying (`apply_events`, a session in, values out):

- **all or nothing**: every record is checked first; any malformed record, or an event
  id already applied with other content, refuses the whole batch — each error named by
  line (or index), field and reason in Japanese — and nothing is written;
- **idempotent per event id**: an event already applied (same id, same content) is
  skipped, so the same file twice changes nothing;
- **placed by effective date**: the events are applied in 異動日 order, each a version
  of the person's history (renkei.atena.history) — a late-arriving older event becomes
  history, the current version stays;
- 転出 and 死亡 keep the person, as a former resident (status former), searchable, out
  of their household; 転入 and 出生 make a person known to atena (a new 統合宛名番号 if
  the 個人番号 is new) and name them for pseudonym acquisition (``arrivals``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, Final, cast

from sqlalchemy import Table, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from renkei.atena import history, service
from renkei.atena.models import RegisterEvent
from renkei.core import bulk, ids
from renkei.core.crypto.field import FieldCipher
from renkei.core.errors import Problem
from renkei.core.text.wareki import WarekiError, parse_date

__all__ = [
    "FIELDS",
    "KINDS",
    "MAX_EVENTS",
    "FeedError",
    "FeedEvent",
    "FeedField",
    "FeedResult",
    "apply_events",
    "parse_event",
    "refused",
]

KINDS: Final = history.EVENTS  # 転入, 転出, 転居, 出生, 死亡, 氏名変更, 職権修正
MAX_EVENTS: Final = 10_000  # per online request
MAX_ERRORS: Final = 1_000  # reported per file (the count says how many there were)
_APPLY_CHUNK: Final = 5_000


@dataclass(frozen=True, slots=True)
class FeedField:
    """One field of an event: its name (JSON, CSV header in English), its Japanese label
    (the CSV header), its width in the fixed-width layout (bytes, CP932 counting: a kanji
    is two) and whether every event must carry it."""

    name: str
    label: str
    width: int
    required: bool = False
    numeric: bool = False  # fixed width: zero-filled on the left (else space-filled right)


FIELDS: Final = (
    FeedField("event_id", "異動ID", 20, required=True),
    FeedField("kind", "異動事由", 8, required=True),
    FeedField("effective_on", "異動日", 8, required=True, numeric=True),
    FeedField("notified_on", "届出日", 8, numeric=True),
    FeedField("individual_number", "個人番号", 12, required=True, numeric=True),
    FeedField("resident_atena_no", "住民宛名番号", 15, numeric=True),
    FeedField("family_name", "氏", 40, required=True),
    FeedField("given_name", "名", 40, required=True),
    FeedField("family_kana", "氏（カナ）", 40, required=True),
    FeedField("given_kana", "名（カナ）", 40, required=True),
    FeedField("birth_date", "生年月日", 8, required=True, numeric=True),
    FeedField("sex", "性別", 1, required=True, numeric=True),
    FeedField("postal_code", "郵便番号", 7, numeric=True),
    FeedField("address", "住所", 200, required=True),
    FeedField("lg_code", "地方公共団体コード", 6, required=True, numeric=True),
    FeedField("household_no", "世帯番号", 15, numeric=True),
    FeedField("relationship", "続柄", 20),
    FeedField("other_lg_code", "転入元・転出先地方公共団体コード", 6, numeric=True),
    FeedField("other_address", "転入前住所・転出先住所", 200),
)
LABELS: Final = {f.name: f.label for f in FIELDS}
BY_LABEL: Final = {f.label: f.name for f in FIELDS}
RECORD_WIDTH: Final = sum(f.width for f in FIELDS)  # 694 bytes


@dataclass(frozen=True, slots=True)
class FeedError:
    """One malformed record: where (file and line, or the index of an online event), the
    field's Japanese label ("" for the record as a whole) and the reason in Japanese."""

    line: int
    field: str
    reason: str
    file: str = ""

    def message(self) -> str:
        where = f"{self.file} の {self.line} 行目" if self.file else f"{self.line} 件目"
        return where + (f"（項目「{self.field}」）" if self.field else "") + f": {self.reason}"

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"line": self.line, "field": self.field, "reason": self.reason}
        if self.file:
            out["file"] = self.file
        return out


def refused(errors: Sequence[FeedError], total: int | None = None, source: str = "") -> Problem:
    """The one refusal of a batch with malformed records: nothing applied, every error listed
    (up to `MAX_ERRORS`), the first ones in the title."""
    n = total if total is not None else len(errors)
    where = f"{source}: " if source else ""
    head = "／".join(e.message() for e in errors[:3])
    more = f" ほか {n - 3:,} 件" if n > 3 else ""
    return Problem(
        422,
        "bad_feed",
        f"{where}誤りのある記録が {n:,} 件あるため、何も反映していません（全件反映か、反映なし）。{head}{more}",
        errors=[e.dump() for e in errors[:MAX_ERRORS]],
        error_count=n,
    )


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One checked event: what it says, and the person version it makes."""

    line: int  # file line (or index of an online event)
    event_id: str
    kind: str
    effective_on: date
    notified_on: date | None
    resident_atena_no: str | None
    other_lg_code: str | None
    other_address: str | None
    person: service.ResidentInput
    digest: str


def _digest(values: Mapping[str, str]) -> str:
    """The event's content, as sent (each field stripped), hashed: what makes "the same
    event" beyond its id."""
    h = hashlib.sha256()
    for f in FIELDS:
        h.update(values.get(f.name, "").encode("utf-8") + b"\x1f")
    return h.hexdigest()


def _clean(value: Any) -> str:
    # Fixed-width text fields are padded with half- or full-width spaces.
    return "" if value is None else str(value).strip(" \u3000\t")


def _day(text: str) -> date:
    return parse_date(text)


def parse_event(record: Mapping[str, Any], line: int) -> FeedEvent | list[FeedError]:
    """Check one event record (field name → value): the event, or every error it has."""
    v = {f.name: _clean(record.get(f.name)) for f in FIELDS}
    errors: list[FeedError] = []

    def bad(name: str, reason: str) -> None:
        errors.append(FeedError(line, LABELS[name], reason))

    for f in FIELDS:
        if f.required and not v[f.name]:
            bad(f.name, "必須項目が空です。")
    if v["event_id"] and (len(v["event_id"]) > 20 or not v["event_id"].isascii() or not v["event_id"].isprintable()):
        bad("event_id", "異動IDは半角英数字記号20文字以内です。")
    if v["kind"] and v["kind"] not in KINDS:
        bad("kind", f"異動事由「{v['kind'][:20]}」は扱えません（{'・'.join(KINDS)} のいずれか）。")
    dates: dict[str, date | None] = {}
    for name in ("effective_on", "notified_on", "birth_date"):
        dates[name] = None
        if v[name]:
            try:
                dates[name] = _day(v[name])
            except WarekiError as exc:
                bad(name, str(exc))
    for name, kind in (("individual_number", ids.IdKind.INDIVIDUAL_NUMBER), ("lg_code", ids.IdKind.LG_CODE)):
        if v[name]:
            problem = ids.check(kind, v[name])
            if problem is not None:
                bad(name, problem.message)
    for name in ("resident_atena_no", "household_no"):
        if v[name]:
            problem = ids.check(ids.IdKind.ATENA_NO, v[name])
            if problem is not None:
                bad(name, problem.message)
    if v["other_lg_code"]:
        problem = ids.check(ids.IdKind.LG_CODE, v["other_lg_code"])
        if problem is not None:
            bad("other_lg_code", problem.message)
    if v["sex"] and v["sex"] not in service.SEXES:
        bad("sex", "性別は 1（男）、2（女）、9（不明）のいずれかです。")
    if v["postal_code"] and not (v["postal_code"].isascii() and v["postal_code"].isdigit() and len(v["postal_code"]) == 7):
        bad("postal_code", "郵便番号は7桁の数字です。")
    for name, limit in (("family_name", 100), ("given_name", 100), ("family_kana", 100), ("given_kana", 100),
                        ("address", 300), ("other_address", 300), ("relationship", 20)):  # fmt: skip
        if len(v[name]) > limit:
            bad(name, f"{limit}文字以内で入力してください。")
    leaving = v["kind"] in history.LEAVING
    if v["relationship"] and not v["household_no"]:
        bad("household_no", "続柄があるときは世帯番号も必要です。")
    if v["household_no"] and not v["relationship"] and not leaving:
        bad("relationship", "世帯番号があるときは続柄も必要です。")
    birth, effective = dates["birth_date"], dates["effective_on"]
    if birth is not None and effective is not None and effective < birth:
        bad("effective_on", "異動日が生年月日より前です。")
    if v["kind"] == history.BIRTH and birth is not None and effective is not None and effective != birth:
        bad("effective_on", "出生の異動日は生年月日と同じ日です。")
    if errors:
        return errors
    assert effective is not None and birth is not None
    household: tuple[str | None, str] | None
    if leaving:
        household = (None, "")  # out of the household: the person left the register
    elif v["household_no"]:
        household = (v["household_no"], v["relationship"])
    else:
        household = None
    status = history.FORMER if leaving else None if v["kind"] == history.CORRECTION else history.RESIDENT
    person = service.ResidentInput(
        individual_number=v["individual_number"],
        family_name=v["family_name"],
        given_name=v["given_name"],
        family_kana=v["family_kana"],
        given_kana=v["given_kana"],
        birth_date=birth,
        sex=v["sex"],
        postal_code=v["postal_code"],
        address=v["address"],
        lg_code=v["lg_code"],
        business_numbers={},
        effective_on=effective,
        reason=v["kind"],
        status=status,
        household=household,
    )
    return FeedEvent(
        line=line,
        event_id=v["event_id"],
        kind=v["kind"],
        effective_on=effective,
        notified_on=dates["notified_on"],
        resident_atena_no=v["resident_atena_no"] or None,
        other_lg_code=v["other_lg_code"] or None,
        other_address=v["other_address"] or None,
        person=person,
        # Dates as dates: the same event sent as 20250401, 2025-04-01 or R7.4.1 is one event.
        digest=_digest({**v, **{k: d.isoformat() for k, d in dates.items() if d is not None}}),
    )


@dataclass
class FeedResult:
    """What one batch did: events read, applied (new), skipped as already applied; how
    the new ones landed (applied = current now, history = placed before the current
    version, no_change); persons, versions and memberships added; the persons of 転入 and
    出生 (for pseudonym acquisition); each new or skipped event's outcome by id."""

    read: int = 0
    applied: int = 0
    duplicates: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    persons: int = 0
    versions: int = 0
    memberships: int = 0
    arrivals: list[str] = field(default_factory=list)
    by_event: dict[str, str] = field(default_factory=dict)


def apply_events(
    session: Session,
    cipher: FieldCipher,
    events: Sequence[FeedEvent],
    now: datetime,
    *,
    system: str,
    source: str,
    file: str = "",
    progress: Callable[[int, int | None], None] | None = None,
) -> FeedResult:
    """Apply checked events of the register ``system`` (all or nothing; see the module
    docstring). Raises `refused` (Problem 422 ``bad_feed``) for an event id applied
    before with other content, or repeated in the batch with other content, or a
    住民宛名番号 that belongs to another person; nothing is written then. ``progress`` is
    told (events done, events to do) after each chunk."""
    result = FeedResult(read=len(events))
    errors: list[FeedError] = []
    first_of: dict[str, FeedEvent] = {}
    fresh: list[FeedEvent] = []
    for e in events:
        seen = first_of.get(e.event_id)
        if seen is None:
            first_of[e.event_id] = e
            fresh.append(e)
        elif seen.digest != e.digest:
            errors.append(FeedError(e.line, LABELS["event_id"], f"同じ異動ID「{e.event_id}」で内容の違う記録が {seen.line} 行目にあります。", file))
        else:
            result.duplicates += 1
            result.by_event[e.event_id] = "duplicate"
    held: dict[str, str] = {}
    wanted = sorted(first_of)
    for part in range(0, len(wanted), _APPLY_CHUNK):
        found = session.execute(
            select(RegisterEvent.event_id, RegisterEvent.digest).where(
                RegisterEvent.system == system,
                bulk.among(session, RegisterEvent.event_id, wanted[part : part + _APPLY_CHUNK]),
            )
        )
        held.update((str(event_id), str(digest)) for event_id, digest in found)
    todo: list[FeedEvent] = []
    for e in fresh:
        known = held.get(e.event_id)
        if known is None:
            todo.append(e)
        elif known != e.digest:
            errors.append(FeedError(e.line, LABELS["event_id"], f"異動ID「{e.event_id}」は内容の違う異動として反映済みです。", file))
        else:
            result.duplicates += 1
            result.by_event[e.event_id] = "duplicate"
    if errors:
        raise refused(errors, source=file)
    # In effective-date order (ties: as sent), so that recorded order follows it.
    todo.sort(key=lambda e: (e.effective_on, e.line))
    rows: list[dict[str, Any]] = []
    if progress is not None:
        progress(0, len(todo))
    for part in range(0, len(todo), _APPLY_CHUNK):
        chunk = todo[part : part + _APPLY_CHUNK]
        inputs = [
            e.person if e.resident_atena_no is None
            else _with_link(e.person, system, e.resident_atena_no)
            for e in chunk
        ]  # fmt: skip
        try:
            done = service.register_parsed(session, cipher, inputs, now, source=source)
        except Problem as exc:
            index = exc.extra.get("index")
            if exc.code == "business_number_taken" and isinstance(index, int):
                raise refused(
                    [FeedError(chunk[index].line, LABELS["resident_atena_no"], "この住民宛名番号は別の人（別の個人番号）に紐付いています。", file)],
                    source=file,
                ) from None
            raise
        result.persons += done.persons
        result.versions += done.versions
        result.memberships += done.memberships
        for e, atena_no, outcome in zip(chunk, done.atena_nos, done.outcomes, strict=True):
            result.outcomes[outcome] = result.outcomes.get(outcome, 0) + 1
            result.by_event[e.event_id] = outcome
            if e.kind in history.ARRIVING:
                result.arrivals.append(atena_no)
            rows.append(
                {
                    "system": system,
                    "event_id": e.event_id,
                    "digest": e.digest,
                    "kind": e.kind,
                    "effective_on": e.effective_on,
                    "notified_on": e.notified_on,
                    "atena_no": atena_no,
                    "other_lg_code": e.other_lg_code,
                    "other_address": e.other_address,
                    "outcome": outcome,
                    "source": source[:200],
                    "received_at": now,
                }
            )
        if progress is not None:
            progress(part + len(chunk), len(todo))
    # COPY (PostgreSQL) raises the driver's own IntegrityError, not SQLAlchemy's.
    driver_integrity: type[Exception] = session.get_bind().dialect.loaded_dbapi.IntegrityError
    try:
        bulk.insert_rows(session, cast(Table, RegisterEvent.__table__), rows)
    except (IntegrityError, driver_integrity):
        # Another request or file applied some of these event ids meanwhile: this one
        # rolls back whole (the caller's transaction), and sent again finds them applied.
        raise Problem(
            409,
            "feed_conflict",
            "同じ異動が別の処理で同時に反映されました。もう一度送ってください（反映済みの異動は重複しません）。",
        ) from None
    result.applied = len(rows)
    result.arrivals = sorted(set(result.arrivals))
    return result


def _with_link(person: service.ResidentInput, system: str, number: str) -> service.ResidentInput:
    return replace(person, business_numbers={system: number})
