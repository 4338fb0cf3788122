"""基本4情報 and household history: versions ordered by effective date, and as-of reads.

Nothing is overwritten: every change of a person's 基本4情報 is a `BasicFour` row with
its effective date (異動日), reason (異動事由) and source, and every change of their
household membership a `HouseholdMember` row. The version *in force on a day* is the
one with the latest effective date not after that day, ties broken by recorded order
(the row id); the *current* version is the one with the latest effective date overall.
So a change that arrives late with an older date becomes history and leaves the current
version alone.

`Timeline` is that rule in memory (what a batch of registrations or feed events
consults and extends); `current_clause` is the same rule in SQL; `as_of` and
`household_on` answer "where did this person live on that day, under which name" and
"who made up that household on that day". Plain functions: a session in, values out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final

from sqlalchemy import and_, bindparam, exists, inspect, or_, select
from sqlalchemy.orm import Session, aliased

from renkei.atena.models import BasicFour, HouseholdMember, Person
from renkei.core import bulk
from renkei.core.errors import Problem

__all__ = [
    "ARRIVING",
    "EVENTS",
    "FIRST",
    "FORMER",
    "HEAD",
    "LEAVING",
    "NON_RESIDENT",
    "REASONS",
    "RESIDENT",
    "STATUS_LABELS",
    "AsOf",
    "HouseholdOn",
    "Member",
    "Membership",
    "Timeline",
    "Version",
    "as_of",
    "current_clause",
    "current_household",
    "current_rows",
    "derive_reason",
    "history",
    "household_on",
    "load_memberships",
    "load_versions",
    "version_of",
]

SEX_LABELS: Final = {"1": "男", "2": "女", "9": "不明"}
FIRST: Final = "新規"  # a person's first registration (not from a register event)
MOVE_IN, MOVE_OUT, MOVE_WITHIN, BIRTH, DEATH = "転入", "転出", "転居", "出生", "死亡"
NAME_CHANGE, CORRECTION = "氏名変更", "職権修正"
EVENTS: Final = (MOVE_IN, MOVE_OUT, MOVE_WITHIN, BIRTH, DEATH, NAME_CHANGE, CORRECTION)
REASONS: Final = (FIRST, *EVENTS)
LEAVING: Final = frozenset({MOVE_OUT, DEATH})  # the person leaves the register (除票)
ARRIVING: Final = frozenset({MOVE_IN, BIRTH})  # starts pseudonym acquisition

RESIDENT: Final = "resident"
FORMER: Final = "former"
NON_RESIDENT: Final = "non_resident"
STATUS_LABELS: Final = {RESIDENT: "住民", FORMER: "除票（転出・死亡）", NON_RESIDENT: "住登外者"}
HEAD: Final = "世帯主"

# The facts of one version, in this order everywhere (a tuple compares them at once).
FACT_FIELDS: Final = (
    "family_name", "given_name", "family_kana", "given_kana", "birth_date", "sex", "postal_code", "address",
    "lg_code",
)  # fmt: skip
_NAME_FIELDS: Final = frozenset(range(4))
_ADDRESS_FIELDS: Final = frozenset({6, 7, 8})
_CHUNK: Final = 5_000


def derive_reason(before: tuple[Any, ...] | None, after: tuple[Any, ...]) -> str:
    """The 異動事由 of a registration that names none: 新規 for a first version; 氏名変更
    when only the name changed, 転居 when only the address did, else 職権修正."""
    if before is None:
        return FIRST
    changed = {i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b}
    if changed and changed <= _NAME_FIELDS:
        return NAME_CHANGE
    if changed and changed <= _ADDRESS_FIELDS:
        return MOVE_WITHIN
    return CORRECTION


@dataclass(slots=True)
class _Entry:
    effective_on: date
    order: int
    value: tuple[Any, ...]


@dataclass
class Timeline:
    """One person's versions (of 基本4情報, or of household membership) in memory.

    ``value`` is whatever a version holds — (facts, status) or (household, 続柄). Rows
    loaded from the database keep their id as order; rows added here take orders above
    every id, in the order added, as their ids will be.
    """

    entries: list[_Entry] = field(default_factory=list)

    def load(self, effective_on: date, order: int, value: tuple[Any, ...]) -> None:
        self.entries.append(_Entry(effective_on, order, value))

    def add(self, effective_on: date, value: tuple[Any, ...], order: int) -> None:
        self.entries.append(_Entry(effective_on, order, value))

    def at(self, day: date) -> tuple[Any, ...] | None:
        """The value in force on ``day`` (None before the first)."""
        best: _Entry | None = None
        for e in self.entries:
            if e.effective_on <= day and (best is None or (e.effective_on, e.order) > (best.effective_on, best.order)):
                best = e
        return None if best is None else best.value

    def current(self) -> tuple[Any, ...] | None:
        best = max(self.entries, key=lambda e: (e.effective_on, e.order), default=None)
        return None if best is None else best.value

    def first(self) -> tuple[Any, ...] | None:
        best = min(self.entries, key=lambda e: (e.effective_on, e.order), default=None)
        return None if best is None else best.value

    def holds(self, effective_on: date, value: tuple[Any, ...]) -> bool:
        """A version with this date and value exists (registered before)."""
        return any(e.effective_on == effective_on and e.value == value for e in self.entries)

    def is_current(self, value: tuple[Any, ...], order: int) -> bool:
        best = max(self.entries, key=lambda e: (e.effective_on, e.order), default=None)
        return best is not None and best.order == order and best.value == value

    def __bool__(self) -> bool:
        return bool(self.entries)


_FACT_COLUMNS = tuple(getattr(BasicFour, name) for name in FACT_FIELDS)


def load_versions(session: Session, atena_nos: Iterable[str]) -> dict[str, Timeline]:
    """Every 基本4情報 version of these persons, as timelines of (facts, status)."""
    out: dict[str, Timeline] = {}
    wanted = sorted(set(atena_nos))
    for part in range(0, len(wanted), _CHUNK):
        rows = session.execute(
            select(BasicFour.atena_no, BasicFour.effective_on, BasicFour.id, BasicFour.status, *_FACT_COLUMNS).where(
                bulk.among(session, BasicFour.atena_no, wanted[part : part + _CHUNK])
            )
        )
        for atena_no, effective_on, id_, status, *facts in rows:
            out.setdefault(atena_no, Timeline()).load(effective_on, int(id_), (tuple(facts), status))
    return out


def load_memberships(session: Session, atena_nos: Iterable[str]) -> dict[str, Timeline]:
    """Every household membership version of these persons, as timelines of (世帯番号, 続柄)."""
    out: dict[str, Timeline] = {}
    wanted = sorted(set(atena_nos))
    for part in range(0, len(wanted), _CHUNK):
        rows = session.execute(
            select(
                HouseholdMember.atena_no,
                HouseholdMember.effective_on,
                HouseholdMember.id,
                HouseholdMember.household_no,
                HouseholdMember.relationship,
            ).where(bulk.among(session, HouseholdMember.atena_no, wanted[part : part + _CHUNK]))
        )
        for atena_no, effective_on, id_, household_no, relationship in rows:
            out.setdefault(atena_no, Timeline()).load(effective_on, int(id_), (household_no, relationship))
    return out


def current_clause(row: Any, day: Any = None) -> Any:
    """SQL: ``row`` (an alias of `BasicFour` or `HouseholdMember`) is the version in force
    on ``day`` (a date or a bound parameter; None: the current version) — no version of
    the same person with a later effective date (not after ``day``), or the same date
    recorded later."""
    newer = aliased(inspect(row).mapper.class_)
    later = or_(
        newer.effective_on > row.effective_on,
        and_(newer.effective_on == row.effective_on, newer.id > row.id),
    )
    cond = [newer.atena_no == row.atena_no, later]
    if day is not None:
        cond.append(newer.effective_on <= day)
    clause = ~exists().where(*cond)
    return clause if day is None else and_(row.effective_on <= day, clause)


# --- as-of reads --------------------------------------------------------------------------


@dataclass(frozen=True)
class Version:
    """One version of 基本4情報 as read back."""

    family_name: str
    given_name: str
    family_kana: str
    given_kana: str
    birth_date: date
    sex: str
    postal_code: str
    address: str
    lg_code: str
    change_kind: str
    effective_on: date
    status: str
    source: str
    recorded_at: datetime

    @property
    def sex_label(self) -> str:
        return SEX_LABELS.get(self.sex, self.sex)

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)


def version_of(row: BasicFour) -> Version:
    return Version(
        family_name=row.family_name,
        given_name=row.given_name,
        family_kana=row.family_kana,
        given_kana=row.given_kana,
        birth_date=row.birth_date,
        sex=row.sex,
        postal_code=row.postal_code,
        address=row.address,
        lg_code=row.lg_code,
        change_kind=row.change_kind,
        effective_on=row.effective_on,
        status=row.status,
        source=row.source,
        recorded_at=row.recorded_at,
    )


@dataclass(frozen=True)
class Membership:
    household_no: str
    relationship: str  # 続柄
    head: str | None  # the 統合宛名番号 of the 世帯主 on that day, if any
    effective_on: date


@dataclass(frozen=True)
class AsOf:
    """A person on one day: the 基本4情報 in force, the residence status and household.

    ``version`` None: the person was not yet known on that day (status "unregistered").
    """

    atena_no: str
    day: date
    version: Version | None
    household: Membership | None

    @property
    def status(self) -> str:
        return self.version.status if self.version is not None else "unregistered"


# Built once: an as-of read runs them for every person asked about. One person's version
# in force is an index range read backwards ((atena_no, effective_on, id)), never an
# anti-join: PostgreSQL may plan the NOT EXISTS of `current_clause` as a hash anti-join over
# the whole table when the outer rows are not found by 統合宛名番号.
_VERSION_ON = (
    select(BasicFour)
    .where(BasicFour.atena_no == bindparam("atena_no"), BasicFour.effective_on <= bindparam("day"))
    .order_by(BasicFour.effective_on.desc(), BasicFour.id.desc())
    .limit(1)
)
_MEMBERSHIP_ON = (
    select(HouseholdMember)
    .where(HouseholdMember.atena_no == bindparam("atena_no"), HouseholdMember.effective_on <= bindparam("day"))
    .order_by(HouseholdMember.effective_on.desc(), HouseholdMember.id.desc())
    .limit(1)
)
_EVER_MEMBERS = select(HouseholdMember.atena_no).where(HouseholdMember.household_no == bindparam("household_no")).distinct()


def _membership_on(session: Session, atena_no: str, day: date) -> HouseholdMember | None:
    return session.scalars(_MEMBERSHIP_ON, {"atena_no": atena_no, "day": day}).first()


def current_household(session: Session, atena_no: str) -> Membership | None:
    """The person's current household (the membership with the latest effective date),
    None when in none."""
    member = _membership_on(session, atena_no, date.max)
    if member is None or member.household_no is None:
        return None
    head = household_on(session, member.household_no, date.max).head
    return Membership(member.household_no, member.relationship, head, member.effective_on)


def as_of(session: Session, atena_no: str, day: date) -> AsOf:
    """Where the person lived on ``day``, under which name, with which status, in which
    household. Problem 404 if the 統合宛名番号 is unknown."""
    if session.get(Person, atena_no) is None:
        raise Problem(404, "unknown_atena_no", f"統合宛名番号「{atena_no}」は登録されていません。")
    row = session.scalars(_VERSION_ON, {"atena_no": atena_no, "day": day}).first()
    member = _membership_on(session, atena_no, day)
    household = None
    if member is not None and member.household_no is not None:
        head = household_on(session, member.household_no, day).head
        household = Membership(member.household_no, member.relationship, head, member.effective_on)
    return AsOf(atena_no, day, version_of(row) if row is not None else None, household)


@dataclass(frozen=True)
class Member:
    atena_no: str
    relationship: str


@dataclass(frozen=True)
class HouseholdOn:
    """A household on one day: its members with their 続柄 (世帯主 first)."""

    household_no: str
    day: date
    members: tuple[Member, ...]

    @property
    def head(self) -> str | None:
        return next((m.atena_no for m in self.members if m.relationship == HEAD), None)


def household_on(session: Session, household_no: str, day: date) -> HouseholdOn:
    """The members of a household on ``day``: of the persons ever in it, those whose
    membership in force that day is this household (a household has few members)."""
    members = []
    for atena_no in session.scalars(_EVER_MEMBERS, {"household_no": household_no}):
        m = _membership_on(session, atena_no, day)
        if m is not None and m.household_no == household_no:
            members.append(Member(atena_no, m.relationship))
    members.sort(key=lambda x: (x.relationship != HEAD, x.atena_no))
    return HouseholdOn(household_no, day, tuple(members))


def history(session: Session, atena_no: str) -> list[Version]:
    """Every version of the person's 基本4情報, the current first (effective date, then
    recorded order, both descending)."""
    rows = session.scalars(
        select(BasicFour)
        .where(BasicFour.atena_no == atena_no)
        .order_by(BasicFour.effective_on.desc(), BasicFour.id.desc())
    ).all()
    return [version_of(r) for r in rows]


def current_rows(session: Session, atena_nos: Sequence[str]) -> dict[str, Version]:
    """The current version of each person named."""
    out: dict[str, Version] = {}
    b = aliased(BasicFour)
    for part in range(0, len(atena_nos), _CHUNK):
        for row in session.scalars(
            select(b).where(bulk.among(session, b.atena_no, list(atena_nos[part : part + _CHUNK])), current_clause(b))
        ):
            out[row.atena_no] = version_of(row)
    return out
