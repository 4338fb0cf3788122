"""Integrated-addressee logic over a session: numbering, links, translation, affair checks.

Plain functions, a session in and values out; no network here (what calls chukan or
J-LIS is renkei.atena.flows) and no HTTP (renkei.atena.api, renkei.web.atena).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from renkei.atena import history
from renkei.atena.history import Membership
from renkei.atena.models import (
    AtenaSerial,
    BasicFour,
    BusinessLink,
    Household,
    HouseholdMember,
    InquiryLog,
    Person,
)
from renkei.atena.search import refresh_search_keys
from renkei.catalogue import Catalogue
from renkei.core import bulk, ids
from renkei.core.crypto.field import FieldCipher
from renkei.core.errors import Problem
from renkei.core.records import Columns
from renkei.core.sql import Prepared
from renkei.core.text.wareki import WarekiError, parse_date, to_wareki
from renkei.core.wire.contract import AcquisitionPair, ItemStatus, SubmitItem
from renkei.staff.exports import EXPORT_ROLES, ExportKind
from renkei.staff.roles import PermissionDenied, has_role

MAX_BATCH = 10_000
_IN_CHUNK = 5_000  # values per IN (…) list: under SQLite's 32,766 bound parameters
NUMBER_AAD = ("persons", "individual_number")
SEXES = {"1", "2", "9"}


def _aad(atena_no: str) -> tuple[str, str, str]:
    return (*NUMBER_AAD, atena_no)


def _text(rec: dict[str, Any], name: str, label: str, max_len: int) -> str:
    value = rec.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Problem(422, "missing_field", f"{label}を入力してください。", name)
    if len(value) > max_len:
        raise Problem(422, "too_long", f"{label}は{max_len}文字以内で入力してください。", name)
    return value


def _date(value: Any, label: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise Problem(422, "bad_date", f"{label}の日付形式が誤っています（YYYY-MM-DD）。") from None


def issue_atena_no(session: Session, now: datetime) -> str:
    row = AtenaSerial(issued_at=now)
    session.add(row)
    session.flush()
    return ids.make_atena_no(row.id)


@dataclass(frozen=True)
class ResidentInput:
    individual_number: str
    family_name: str
    given_name: str
    family_kana: str
    given_kana: str
    birth_date: date
    sex: str
    postal_code: str
    address: str
    lg_code: str
    business_numbers: dict[str, str]
    effective_on: date | None  # 異動日; None: the birth date for a new person, else today
    reason: str | None = None  # 異動事由; None: derived (history.derive_reason)
    status: str | None = None  # resident | former; None: as in force on the day (else resident)
    # (世帯番号 or None for "in no household", 続柄); None: the membership is not stated.
    household: tuple[str | None, str] | None = None

    def facts(self) -> tuple[Any, ...]:
        return (
            self.family_name, self.given_name, self.family_kana, self.given_kana, self.birth_date, self.sex,
            self.postal_code, self.address, self.lg_code,
        )  # fmt: skip


def _household(rec: dict[str, Any]) -> tuple[str | None, str] | None:
    number = str(rec.get("household_no") or "").strip()
    relationship = str(rec.get("relationship") or "").strip()
    if not number and not relationship:
        return None
    if not number:
        raise Problem(422, "missing_household_no", "続柄を指定するときは世帯番号も指定してください。", "household_no")
    problem = ids.check(ids.IdKind.ATENA_NO, number)
    if problem is not None:
        raise Problem(422, "invalid_household_no", f"世帯番号: {problem.message}", "household_no")
    if not relationship:
        raise Problem(422, "missing_relationship", "世帯番号を指定するときは続柄も指定してください。", "relationship")
    if len(relationship) > 20:
        raise Problem(422, "too_long", "続柄は20文字以内で入力してください。", "relationship")
    return number, relationship


def parse_resident(rec: dict[str, Any]) -> ResidentInput:
    number = str(rec.get("individual_number", ""))
    problem = ids.check(ids.IdKind.INDIVIDUAL_NUMBER, number)
    if problem is not None:
        raise Problem(422, "invalid_individual_number", problem.message, reason=problem.code)
    sex = str(rec.get("sex", ""))
    if sex not in SEXES:
        raise Problem(422, "invalid_sex", "性別は 1（男）、2（女）、9（不明）のいずれかです。")
    lg = str(rec.get("lg_code", ""))
    lg_problem = ids.check(ids.IdKind.LG_CODE, lg)
    if lg_problem is not None:
        raise Problem(422, "invalid_lg_code", lg_problem.message)
    business = rec.get("business_numbers") or {}
    if not isinstance(business, dict):
        raise Problem(422, "bad_business_numbers", "業務宛名番号は {業務: 番号} の形で指定してください。")
    for system, no in business.items():
        if not isinstance(system, str) or not 1 <= len(system) <= 40:
            raise Problem(422, "bad_business_system", "業務システムIDは1〜40文字で指定してください。")
        p = ids.check(ids.IdKind.ATENA_NO, str(no))
        if p is not None:
            raise Problem(422, "invalid_business_atena_no", f"業務「{system}」の宛名番号: {p.message}")
    postal = str(rec.get("postal_code", ""))
    if not (postal.isascii() and postal.isdigit() and len(postal) == 7):
        raise Problem(422, "invalid_postal_code", "郵便番号は7桁の数字で入力してください。")
    return ResidentInput(
        individual_number=number,
        family_name=_text(rec, "family_name", "氏", 100),
        given_name=_text(rec, "given_name", "名", 100),
        family_kana=_text(rec, "family_kana", "氏（カナ）", 100),
        given_kana=_text(rec, "given_kana", "名（カナ）", 100),
        birth_date=_date(rec.get("birth_date"), "生年月日"),
        sex=sex,
        postal_code=postal,
        address=_text(rec, "address", "住所", 300),
        lg_code=lg,
        business_numbers={str(k): str(v) for k, v in business.items()},
        effective_on=_date(rec["effective_on"], "異動日") if rec.get("effective_on") else None,
        household=_household(rec),
    )


def register_residents(
    session: Session, cipher: FieldCipher, records: list[dict[str, Any]], now: datetime, *, source: str = ""
) -> list[str]:
    """Number residents: reuse the 統合宛名番号 of a known individual number, else issue one.

    All or nothing: the first invalid record refuses the batch, naming its index.
    """
    if not 1 <= len(records) <= MAX_BATCH:
        raise Problem(422, "bad_count", f"1〜{MAX_BATCH}件で指定してください。")
    return register_parsed(session, cipher, parse_residents(records), now, source=source).atena_nos


def parse_residents(records: Sequence[Any]) -> list[ResidentInput]:
    """Each record checked (`parse_resident`); the first invalid one refuses them all with
    its ``index``."""
    parsed = []
    for index, rec in enumerate(records):
        try:
            parsed.append(parse_resident(rec if isinstance(rec, dict) else {}))
        except Problem as exc:
            exc.extra["index"] = index
            raise
    return parsed


# Columns of a residents CSV (`renkei atena import residents`): the person record's
# fields by their Japanese names, business numbers as 業務宛名番号:<system>.
RESIDENT_COLUMNS = Columns(
    names={
        "個人番号": "individual_number",
        "氏": "family_name",
        "名": "given_name",
        "氏（カナ）": "family_kana",
        "名（カナ）": "given_kana",
        "生年月日": "birth_date",
        "性別": "sex",
        "郵便番号": "postal_code",
        "住所": "address",
        "地方公共団体コード": "lg_code",
        "異動日": "effective_on",
        "世帯番号": "household_no",
        "続柄": "relationship",
    },
    nested={"業務宛名番号:": "business_numbers"},
    required=frozenset(
        {"individual_number", "family_name", "given_name", "family_kana", "given_kana", "birth_date", "sex",
         "postal_code", "address", "lg_code"}
    ),
)


NUMBERED, LINKED, UNCHANGED = "numbered", "linked", "unchanged"
OUTCOME_LABELS = {NUMBERED: "新規付番", LINKED: "既存の宛名に紐付け・更新", UNCHANGED: "変更なし"}


@dataclass(frozen=True)
class Registration:
    """What `register_parsed` did: the 統合宛名番号 of each record in order, what each
    record did (``outcomes``: applied — its version is now current; history — placed
    before the current version; no_change), and how many persons, 基本4情報 versions,
    household memberships and business links it added."""

    atena_nos: list[str]
    persons: int
    versions: int
    links: int
    changed: int  # records that added anything
    memberships: int = 0
    outcomes: tuple[str, ...] = ()
    # The numbering of each record (`NUMBERED`: a new 統合宛名番号; `LINKED`: a person
    # already held, something added; `UNCHANGED`), and the persons newly numbered, whose
    # pseudonym acquisition starts (0320008). 統合宛名番号 are atena's own: never handed
    # to a business system.
    numbering: tuple[str, ...] = ()
    numbered: tuple[str, ...] = ()


APPLIED, HISTORY, NO_CHANGE = "applied", "history", "no_change"


def search_by_individual_number(session: Session, indexes: Sequence[str]) -> dict[str, str]:
    """機能ID 0320004 団体内統合宛名基本情報検索: the 統合宛名番号 held for each individual
    number (by its blind index; the number itself is never compared in clear)."""
    known: dict[str, str] = {}
    wanted = list(set(indexes))
    for part in range(0, len(wanted), _IN_CHUNK):
        for index, atena_no in session.execute(
            select(Person.individual_number_index, Person.atena_no).where(
                bulk.among(session, Person.individual_number_index, wanted[part : part + _IN_CHUNK])
            )
        ):
            if index is not None:
                known[index] = atena_no
    return known


def issue_atena_nos(session: Session, count: int, now: datetime) -> list[str]:
    """機能ID 0320002 団体内統合宛名番号付番: ``count`` new 統合宛名番号 in one block of serials."""
    serials_t = cast(Table, AtenaSerial.__table__)
    return [ids.make_atena_no(serial) for serial in bulk.issue_ids(session, serials_t, [{"issued_at": now}] * count)]


def register_parsed(
    session: Session,
    cipher: FieldCipher,
    residents: Sequence[ResidentInput],
    now: datetime,
    *,
    source: str = "",
    residence: str = "resident",
) -> Registration:
    """団体内統合宛名番号の付番 (共通機能標準仕様書 第2.7版 §2.4.3), set-based: a few
    statements per batch, not per person. The steps of the standard's flow:

    - 0320001 付番依頼受信: the request (個人番号, the business system's 宛名番号, 基本4情報),
      checked by `parse_resident` before this is called;
    - 0320004 基本情報検索: `search_by_individual_number`;
    - 0320002 付番: a new 統合宛名番号 (`issue_atena_nos`) only if no record holds that
      individual number; otherwise the business number is linked to the person held;
    - 0320008 中間サーバー連携: the caller starts pseudonym acquisition for
      ``Registration.numbered`` (renkei.atena.flows.number_persons).

    ``residence`` is what a newly numbered person is recorded as (``resident`` from the
    resident register, ``non_resident`` from another business system).

    A known individual number (by its blind index) keeps its 統合宛名番号; an unknown one
    gets the next serial. A record is a version of the person's 基本4情報 from its
    effective date (`renkei.atena.history`): added only when it differs from the version
    in force on that day (and no identical version of that day exists), so registering
    the same facts twice adds nothing; a version older than the current one becomes
    history. Its reason is the record's, else derived (新規 for a new person). The same
    for the household membership when the record states one. A business link is added
    only when it is not there yet; a business number linked to another person refuses
    the batch (409 ``business_number_taken``, with the record's ``index``). The search
    keys of every person given a new version are rebuilt in the same transaction
    (`renkei.atena.search.refresh_search_keys`).
    """
    persons_t, basic_t = cast(Table, Person.__table__), cast(Table, BasicFour.__table__)
    links_t = cast(Table, BusinessLink.__table__)
    members_t, households_t = cast(Table, HouseholdMember.__table__), cast(Table, Household.__table__)
    indexes = [cipher.blind_index(r.individual_number) for r in residents]
    known = search_by_individual_number(session, indexes)  # 0320004
    known_nos = list(set(known.values()))
    timelines = history.load_versions(session, known_nos) if known_nos else {}
    stated = any(r.household is not None for r in residents)
    memberships = history.load_memberships(session, known_nos) if known_nos and stated else {}
    # New persons: one block of serials for all of them.
    seen_new: dict[str, int] = {}
    for i, index in enumerate(indexes):
        if index not in known and index not in seen_new:
            seen_new[index] = i
    fresh = list(seen_new.values())
    new_persons = []
    for i, atena_no in zip(fresh, issue_atena_nos(session, len(fresh), now), strict=True):  # 0320002
        known[indexes[i]] = atena_no
        new_persons.append(
            {
                "atena_no": atena_no,
                "individual_number_enc": cipher.encrypt(residents[i].individual_number, _aad(atena_no)),
                "individual_number_index": indexes[i],
                "residence": residence,
                "pseudonym_status": "none",
                "created_at": now,
            }
        )
    # Business links already held: per system, so that the (system, number) key is used.
    pairs = {(system, no) for r in residents for system, no in r.business_numbers.items()}
    linked: dict[tuple[str, str], str] = {}
    by_system: dict[str, list[str]] = {}
    for system, no in set(pairs):
        by_system.setdefault(system, []).append(no)
    for system, numbers in by_system.items():
        for part in range(0, len(numbers), _IN_CHUNK):
            for no, atena_no in session.execute(
                select(BusinessLink.business_atena_no, BusinessLink.atena_no).where(
                    BusinessLink.system == system,
                    bulk.among(session, BusinessLink.business_atena_no, numbers[part : part + _IN_CHUNK]),
                )
            ):
                linked[(system, no)] = atena_no
    # Households named that are not held yet.
    named = {r.household[0] for r in residents if r.household is not None and r.household[0] is not None}
    held_households: set[str] = set()
    wanted_households = sorted(named)
    for part in range(0, len(wanted_households), _IN_CHUNK):
        held_households.update(
            session.scalars(
                select(Household.household_no).where(
                    bulk.among(session, Household.household_no, wanted_households[part : part + _IN_CHUNK])
                )
            )
        )
    versions: list[dict[str, Any]] = []
    members: list[dict[str, Any]] = []
    new_households: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    out: list[str] = []
    outcomes: list[str] = []
    changed = 0
    numbering: list[str] = []
    fresh_at = set(fresh)
    order = 1 << 62  # orders of the rows added here: above every id, in the order added
    for i, (r, index) in enumerate(zip(residents, indexes, strict=True)):
        atena_no = known[index]
        facts = r.facts()
        added = len(versions) + len(links) + len(members)
        line = timelines.setdefault(atena_no, history.Timeline())
        day = r.effective_on or (r.birth_date if not line else now.date())
        before = line.at(day)
        status = r.status or (before[1] if before is not None else history.RESIDENT)
        value = (facts, status)
        outcome = NO_CHANGE
        if before != value and not line.holds(day, value):
            replaced = before if before is not None else line.first()
            reason = r.reason or history.derive_reason(replaced[0] if replaced is not None else None, facts)
            order += 1
            line.add(day, value, order)
            outcome = APPLIED if line.is_current(value, order) else HISTORY
            versions.append(
                {
                    "atena_no": atena_no,
                    "family_name": r.family_name,
                    "given_name": r.given_name,
                    "family_kana": r.family_kana,
                    "given_kana": r.given_kana,
                    "birth_date": r.birth_date,
                    "sex": r.sex,
                    "postal_code": r.postal_code,
                    "address": r.address,
                    "lg_code": r.lg_code,
                    "change_kind": reason,
                    "effective_on": day,
                    "status": status,
                    "source": source[:200],
                    "recorded_at": now,
                }
            )
        if r.household is not None:
            belong = memberships.setdefault(atena_no, history.Timeline())
            stated_now = r.household
            was = belong.at(day)
            # Leaving is recorded even with no household known then: a membership that
            # arrives late with an older date must not become current.
            leaving_none = stated_now[0] is None and was is not None and was[0] is None
            if was != stated_now and not leaving_none and not belong.holds(day, stated_now):
                order += 1
                belong.add(day, stated_now, order)
                if outcome == NO_CHANGE:
                    outcome = APPLIED if belong.is_current(stated_now, order) else HISTORY
                household_no, relationship = stated_now
                if household_no is not None and household_no not in held_households:
                    held_households.add(household_no)
                    new_households.append({"household_no": household_no, "lg_code": r.lg_code, "created_at": now})
                members.append(
                    {
                        "atena_no": atena_no,
                        "household_no": household_no,
                        "relationship": relationship,
                        "change_kind": r.reason or (history.FIRST if len(belong.entries) == 1 else history.CORRECTION),
                        "effective_on": day,
                        "source": source[:200],
                        "recorded_at": now,
                    }
                )
        for system, no in r.business_numbers.items():
            holder = linked.get((system, no))
            if holder is None:
                links.append({"system": system, "business_atena_no": no, "atena_no": atena_no, "linked_at": now})
                linked[(system, no)] = atena_no
            elif holder != atena_no:
                raise Problem(
                    409,
                    "business_number_taken",
                    f"業務「{system}」の宛名番号は別の人に紐付いています。",
                    index=i,
                )
        grew = len(versions) + len(links) + len(members) > added
        changed += grew
        numbering.append(NUMBERED if i in fresh_at else LINKED if grew else UNCHANGED)
        out.append(atena_no)
        outcomes.append(outcome)
    # persons and households first: the other rows refer to them.
    bulk.insert_rows(session, persons_t, new_persons)
    bulk.insert_rows(session, households_t, new_households)
    bulk.insert_rows(session, basic_t, versions)
    bulk.insert_rows(session, members_t, members)
    bulk.insert_rows(session, links_t, links)
    refresh_search_keys(session, {v["atena_no"] for v in versions})
    return Registration(
        atena_nos=out,
        persons=len(new_persons),
        versions=len(versions),
        links=len(links),
        changed=changed,
        memberships=len(members),
        outcomes=tuple(outcomes),
        numbering=tuple(numbering),
        numbered=tuple(str(p["atena_no"]) for p in new_persons),
    )


def _parts(values: Sequence[str], size: int = 5000) -> Iterable[Sequence[str]]:
    """Slices of at most ``size`` values: one IN list stays well under both backends'
    limits on bound parameters."""
    for i in range(0, len(values), size):
        yield values[i : i + size]


def individual_numbers(session: Session, cipher: FieldCipher, atena_nos: Iterable[str]) -> dict[str, str]:
    """Decrypt individual numbers (for the J-LIS relay only); one query per 5,000 persons."""
    out = {}
    for part in _parts(sorted(set(atena_nos))):
        rows = session.execute(
            select(Person.atena_no, Person.individual_number_enc).where(
                Person.atena_no.in_(part), Person.individual_number_enc.is_not(None)
            )
        )
        for atena_no, sealed in rows:
            assert sealed is not None
            out[atena_no] = cipher.decrypt(sealed, _aad(atena_no))
    return out


def persons_without_pseudonym(session: Session, limit: int = MAX_BATCH) -> list[str]:
    return list(
        session.scalars(
            select(Person.atena_no).where(Person.pseudonym_status != "bound").order_by(Person.atena_no).limit(limit)
        )
    )


PSEUDONYM_STATUSES = ("none", "requested", "bound")


def persons_to_acquire(session: Session, statuses: Collection[str]) -> list[str]:
    """Every person with an individual number (only those can be acquired for) whose
    pseudonym status is one of ``statuses``, in 統合宛名番号 order."""
    return list(
        session.scalars(
            select(Person.atena_no)
            .where(Person.pseudonym_status.in_(sorted(statuses)), Person.individual_number_index.is_not(None))
            .order_by(Person.atena_no)
        )
    )


def requested_persons(session: Session, after: str = "", limit: int = MAX_BATCH) -> list[str]:
    """Persons whose acquisition was requested and is not known to be bound, in order from ``after``."""
    return list(
        session.scalars(
            select(Person.atena_no)
            .where(Person.pseudonym_status == "requested", Person.atena_no > after)
            .order_by(Person.atena_no)
            .limit(limit)
        )
    )


def pseudonym_counts(session: Session) -> dict[str, int]:
    """Persons per pseudonym status, and ``no_number``: those without an individual number
    (nobody can acquire a pseudonym for them)."""
    out = dict.fromkeys(PSEUDONYM_STATUSES, 0)
    rows = session.execute(
        select(Person.pseudonym_status, func.count())
        .where(Person.individual_number_index.is_not(None))
        .group_by(Person.pseudonym_status)
    )
    for status, n in rows:
        out[status] = int(n)
    out["no_number"] = int(
        session.scalar(select(func.count()).select_from(Person).where(Person.individual_number_index.is_(None))) or 0
    )
    return out


def set_pseudonym_status(session: Session, atena_nos: Iterable[str], status: str) -> None:
    """One UPDATE per 5,000 persons. ``requested`` never overwrites ``bound``: a person
    asked for again keeps the pseudonym the chukan holds."""
    for part in _parts(sorted(set(atena_nos))):
        stmt = update(Person).where(Person.atena_no.in_(part))
        if status != "bound":
            stmt = stmt.where(Person.pseudonym_status != "bound")
        session.execute(stmt.values(pseudonym_status=status).execution_options(synchronize_session=False))


# --- pseudonym acquisition (the calls to chukan and J-LIS are renkei.atena.flows) ---------


def check_atena_nos(atena_nos: Iterable[str]) -> list[str]:
    """The 統合宛名番号 a business system names, each well-formed, else Problem 422
    ``invalid_atena_no`` with the identifier's reason."""
    out = []
    for atena_no in atena_nos:
        problem = ids.check(ids.IdKind.ATENA_NO, atena_no)
        if problem is not None:
            raise Problem(422, "invalid_atena_no", problem.message)
        out.append(atena_no)
    return out


@dataclass(frozen=True)
class Submission:
    """What atena sends J-LIS for one chunk: (individual number, acquisition number) per
    person, never the 統合宛名番号; ``atena_nos`` are the persons whose acquisition started,
    ``person_of`` names the person of each acquisition number sent (kept here, never sent)."""

    atena_nos: list[str]
    items: list[SubmitItem]
    person_of: dict[str, str]

    def relayed(self, results: Iterable[ItemStatus]) -> list[str]:
        """The persons J-LIS relayed to the hub, by its answer per item."""
        return [self.person_of[r.acquisition_no] for r in results if r.status == "relayed" and r.acquisition_no in self.person_of]


def submission(
    session: Session, cipher: FieldCipher, asked: Collection[str], pairs: Iterable[AcquisitionPair]
) -> Submission:
    """The J-LIS submission for the acquisition numbers our chukan obtained. Only persons
    atena asked about count: a number the chukan names for anybody else is ignored, so no
    other person's individual number leaves atena."""
    wanted = {p.atena_no: p.acquisition_no for p in pairs if p.atena_no in asked}
    numbers = individual_numbers(session, cipher, wanted)
    items = [
        SubmitItem(individual_number=numbers[a], acquisition_no=n) for a, n in wanted.items() if a in numbers
    ]
    person_of = {n: a for a, n in wanted.items() if a in numbers}
    return Submission(atena_nos=list(wanted), items=items, person_of=person_of)


def tally(results: Iterable[ItemStatus]) -> tuple[int, dict[str, int]]:
    """J-LIS's answer per item: how many were relayed to the hub, and the other statuses counted."""
    relayed = 0
    problems: dict[str, int] = {}
    for r in results:
        if r.status == "relayed":
            relayed += 1
        else:
            problems[r.status] = problems.get(r.status, 0) + 1
    return relayed, problems


def mark_bound(session: Session, asked: Collection[str], bound: Iterable[str]) -> list[str]:
    """Record the pseudonyms our chukan holds (of the persons asked about); returns them."""
    found = [a for a in bound if a in asked]
    set_pseudonym_status(session, found, "bound")
    return found


# --- provision copies ------------------------------------------------------------------


def copies_for_chukan(session: Session, system: str, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A business system's copies as its chukan takes them: each 業務宛名番号 replaced by
    the 統合宛名番号 (the chukan never sees business numbers). The first unknown or
    malformed number refuses the batch, naming its index. One query per 5,000 numbers."""
    numbers = [str(rec.get("business_atena_no", "")) for rec in records]
    found = translate_many(session, system, numbers)
    out: list[dict[str, Any]] = []
    for index, (rec, number) in enumerate(zip(records, numbers, strict=True)):
        atena_no = found.get(number)
        if atena_no is None:
            try:
                atena_no = translate(session, system, number)  # names the problem as one look-up does
            except Problem as exc:
                exc.extra["index"] = index
                raise
        copy = {k: v for k, v in rec.items() if k != "business_atena_no"}
        copy["atena_no"] = atena_no
        out.append(copy)
    if not out:
        raise Problem(422, "bad_count", "副本を1件以上指定してください。")
    return out


_LOOKUP_CHUNK = 5000  # numbers per query (SQLite takes at most 32,766 parameters)


def translate_many(session: Session, system: str, business_atena_nos: Sequence[str]) -> dict[str, str]:
    """業務宛名番号 → 統合宛名番号 of those well formed and known (the others are left out)."""
    wanted = sorted({n for n in business_atena_nos if ids.check(ids.IdKind.ATENA_NO, n) is None})
    found: dict[str, str] = {}
    for start in range(0, len(wanted), _LOOKUP_CHUNK):
        rows = session.execute(
            select(BusinessLink.business_atena_no, BusinessLink.atena_no).where(
                BusinessLink.system == system,
                bulk.among(session, BusinessLink.business_atena_no, wanted[start : start + _LOOKUP_CHUNK]),
            )
        )
        found.update((number, atena_no) for number, atena_no in rows)
    return found


def translate(session: Session, system: str, business_atena_no: str) -> str:
    """業務宛名番号 → 統合宛名番号; business systems never see the latter."""
    problem = ids.check(ids.IdKind.ATENA_NO, business_atena_no)
    if problem is not None:
        raise Problem(422, "invalid_business_atena_no", problem.message)
    atena_no: str | None = _TRANSLATE.scalar(session, {"system": system, "business_atena_no": business_atena_no})
    if atena_no is None:
        raise Problem(404, "unknown_business_atena_no", f"業務「{system}」の宛名番号「{business_atena_no}」は登録されていません。")
    return atena_no


def translate_all(session: Session, system: str, business_atena_nos: Sequence[str]) -> list[str]:
    """業務宛名番号 → 統合宛名番号 of every number a business system names, in order; the
    first malformed one (checked before any look-up), then the first unknown one,
    refuses them all, naming its ``index``."""
    for index, number in enumerate(business_atena_nos):
        problem = ids.check(ids.IdKind.ATENA_NO, number)
        if problem is not None:
            raise Problem(422, "invalid_business_atena_no", problem.message, index=index)
    found = translate_many(session, system, business_atena_nos)
    out = []
    for index, number in enumerate(business_atena_nos):
        atena_no = found.get(number)
        if atena_no is None:
            try:
                atena_no = translate(session, system, number)  # names the problem as one look-up does
            except Problem as exc:
                exc.extra["index"] = index
                raise
        out.append(atena_no)
    return out


def business_numbers_of(session: Session, system: str, atena_nos: Iterable[str]) -> dict[str, str]:
    """統合宛名番号 → ``system``'s 業務宛名番号 (the other way of `translate_many`), for
    what atena hands back to a business system: its own numbers, never atena's."""
    wanted = sorted(set(atena_nos))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), _LOOKUP_CHUNK):
        rows = session.execute(
            select(BusinessLink.atena_no, BusinessLink.business_atena_no).where(
                BusinessLink.system == system,
                bulk.among(session, BusinessLink.atena_no, wanted[start : start + _LOOKUP_CHUNK]),
            )
        )
        found.update((atena_no, number) for atena_no, number in rows)
    return found


UNKNOWN_TO_CALLER = "（宛名番号なし）"


def atena_nos_in(problem: Problem) -> list[str]:
    """The 15-digit numbers a refusal's words name (candidates for 統合宛名番号)."""
    texts = [problem.title, problem.detail, *(v for v in problem.extra.values() if isinstance(v, str))]
    return sorted({m.group(0) for t in texts if t for m in _ATENA_NO_IN_TEXT.finditer(t)})


def for_business(session: Session, problem: Problem, system: str) -> Problem:
    """A refusal as a business system may read it: every 統合宛名番号 in its title, detail
    and string members (a peer's words, e.g. the chukan's 「…は符号が未取得です」)
    replaced by the caller's own 宛名番号 in ``system`` (or a placeholder for a person it
    has no number for). Other 15-digit numbers — the caller's own — are left as they are."""
    named = atena_nos_in(problem)
    held = set(session.scalars(select(Person.atena_no).where(Person.atena_no.in_(named)))) if named else set()
    if not held:
        return problem
    business_of = business_numbers_of(session, system, held)

    def swap(text: str) -> str:
        return _ATENA_NO_IN_TEXT.sub(
            lambda m: business_of.get(m.group(0), UNKNOWN_TO_CALLER) if m.group(0) in held else m.group(0), text
        )

    problem.title = swap(problem.title)
    problem.detail = swap(problem.detail) if problem.detail else problem.detail
    for key, value in list(problem.extra.items()):
        if isinstance(value, str):
            problem.extra[key] = swap(value)
    return problem


# Any run of 15 digits is taken for a 統合宛名番号: a business number also has 15 digits,
# so one the caller sent comes back as itself (the map names it only when it is atena's).
_ATENA_NO_IN_TEXT = re.compile(r"(?<![0-9])[0-9]{15}(?![0-9])")


# Built once: every inquiry and lookup by 業務宛名番号 runs it (lean: `Prepared`, on the
# table's columns — a read only, so no ORM autoflush is missed).
_LINKS = cast(Table, BusinessLink.__table__)
_TRANSLATE = Prepared(
    select(_LINKS.c.atena_no).where(
        _LINKS.c.system == bindparam("system"), _LINKS.c.business_atena_no == bindparam("business_atena_no")
    ),
    ("system", "business_atena_no"),
)

INQUIRY = "照会"


STAFF = "staff"
CLIENT = "client"
_WHO = {STAFF: "この職員", CLIENT: "この業務システム"}


def authorize_inquiry(
    catalogue: Catalogue, roles: Iterable[str], procedure_code: str, who: str = STAFF
) -> str:
    """The principal must hold ``<affair>:照会`` for the procedure's affair; returns the affair code.

    ``roles`` are the authenticated principal's roles (a session's staff roles, an API
    token's scopes that the staff member still holds, or a business system's inquiry
    scopes as roles: `client_inquiry_roles`); ``who`` (staff | client) names it in the
    refusal.
    """
    affair = catalogue.affair_of(procedure_code)
    if affair is None:
        raise Problem(422, "unknown_procedure", f"事務手続「{procedure_code}」は登録されていません。")
    if not has_role(roles, INQUIRY, affair=affair.code):
        raise PermissionDenied(
            "affair_not_permitted",
            f"{_WHO.get(who, _WHO[STAFF])}は事務「{affair.name}」の照会権限を持っていません。",
            needed=f"{affair.code}:{INQUIRY}",
        )
    return affair.code


INQUIRY_RESOURCE_PREFIX = "inquiries."
INQUIRY_OPERATION = "inquire"


def inquiry_scope(system: str, affair_code: str) -> str:
    """The OAuth scope a business system needs to inquire for an affair:
    ``<業務システムID>:inquiries.<事務コード>:inquire`` (one scope per affair)."""
    return f"{system}:{INQUIRY_RESOURCE_PREFIX}{affair_code}:{INQUIRY_OPERATION}"


def client_inquiry_roles(scopes: Iterable[str], system: str) -> frozenset[str]:
    """A business system's inquiry scopes for ``system`` as the roles `authorize_inquiry`
    checks (``<事務コード>:照会``); other scopes, and those of other systems, grant nothing."""
    out: set[str] = set()
    for scope in scopes:
        parts = scope.split(":")
        if len(parts) != 3 or parts[0] != system or parts[2] != INQUIRY_OPERATION:
            continue
        if not parts[1].startswith(INQUIRY_RESOURCE_PREFIX):
            continue
        affair = parts[1][len(INQUIRY_RESOURCE_PREFIX) :]
        if ids.check(ids.IdKind.AFFAIR_CODE, affair) is None:
            out.add(f"{affair}:{INQUIRY}")
    return frozenset(out)


def log_inquiry(session: Session, **fields: Any) -> None:
    # A plain INSERT (Core, built once): the ORM's unit of work is most of the cost of one row.
    _INSERT_INQUIRY_LOG.run(session, fields)


_INQUIRY_LOG = cast(Table, InquiryLog.__table__)
# Every column but the id; run lean (`Prepared`).
_INSERT_INQUIRY_LOG = Prepared(insert(_INQUIRY_LOG), [c.key for c in _INQUIRY_LOG.columns if c.key != "id"])


# --- staff screens (web) ---
#
# Read models for the staff UI (renkei.web.atena) and the checks of the inquiry path
# shared by the JSON route /v1/inquiries and the inquiry screen (the relay itself is
# renkei.atena.flows.inquire). Every function here takes what it needs explicitly; the
# callers authorize and audit the views.

STATUS_LABELS = {"answered": "回答あり", "no_data": "該当なし", "pending": "回答待ち"}
SEX_LABELS = history.SEX_LABELS
RESIDENCE_LABELS = {"resident": "住民", "non_resident": "住登外者"}
MAX_SYSTEM_LENGTH = 40  # the search itself is renkei.atena.search


# One version of 基本4情報 as staff read it (with its 性別 and 状態 labels).
BasicFourView = history.Version


@dataclass(frozen=True)
class LinkView:
    system: str
    business_atena_no: str
    linked_at: datetime


@dataclass(frozen=True)
class ResidentDetail:
    atena_no: str
    residence: str
    pseudonym_status: str
    created_at: datetime
    history: tuple[BasicFourView, ...]  # the current first (effective date, recorded order)
    links: tuple[LinkView, ...]
    has_individual_number: bool
    household: Membership | None = None  # the current 世帯 (世帯番号, 続柄, 世帯主)

    @property
    def current(self) -> BasicFourView:
        return self.history[0]


def check_atena_no(atena_no: str) -> str:
    """A well-formed 統合宛名番号 (15 digits, check digit) or Problem 422 invalid_atena_no."""
    problem = ids.check(ids.IdKind.ATENA_NO, atena_no)
    if problem is not None:
        raise Problem(422, "invalid_atena_no", f"統合宛名番号: {problem.message}")
    return atena_no


def check_system(system: str) -> str:
    """A business-system ID as stored in the links (1–40 characters)."""
    text = system.strip()
    if not 1 <= len(text) <= MAX_SYSTEM_LENGTH:
        raise Problem(
            422, "bad_business_system", f"業務システムIDは1〜{MAX_SYSTEM_LENGTH}文字で指定してください。"
        )
    return text


def _is_current(row: type[BasicFour]) -> Any:
    """The current version of the person's 基本4情報: the latest effective date, ties by
    recorded order (renkei.atena.history)."""
    return history.current_clause(row)


def resident_detail(session: Session, atena_no: str) -> ResidentDetail:
    """Current 基本4情報, its history (the current first) and the business links; Problem
    404 if unknown."""
    person = session.get(Person, check_atena_no(atena_no))
    if person is None:
        raise Problem(404, "unknown_atena_no", f"統合宛名番号「{atena_no}」は登録されていません。")
    versions = session.scalars(
        select(BasicFour)
        .where(BasicFour.atena_no == atena_no)
        .order_by(BasicFour.effective_on.desc(), BasicFour.id.desc())
    ).all()
    links = session.scalars(
        select(BusinessLink)
        .where(BusinessLink.atena_no == atena_no)
        .order_by(BusinessLink.system, BusinessLink.business_atena_no)
    ).all()
    if not versions:
        raise Problem(404, "unknown_atena_no", f"統合宛名番号「{atena_no}」の基本4情報がありません。")
    return ResidentDetail(
        atena_no=person.atena_no,
        residence=person.residence,
        pseudonym_status=person.pseudonym_status,
        created_at=person.created_at,
        history=tuple(history.version_of(r) for r in versions),
        links=tuple(LinkView(li.system, li.business_atena_no, li.linked_at) for li in links),
        has_individual_number=person.individual_number_enc is not None,
        household=history.current_household(session, atena_no),
    )


def individual_number_of(session: Session, cipher: FieldCipher, atena_no: str) -> str | None:
    """The decrypted individual number of one person (None if none is held).

    The caller decides what may be shown: masked for every viewer, in clear only for a
    reveal that passed `can_see_individual_number` and is audited.
    """
    person = session.get(Person, check_atena_no(atena_no))
    if person is None:
        raise Problem(404, "unknown_atena_no", f"統合宛名番号「{atena_no}」は登録されていません。")
    if person.individual_number_enc is None:
        return None
    return cipher.decrypt(person.individual_number_enc, _aad(person.atena_no))


@dataclass(frozen=True)
class InquiryRequest:
    """An inquiry as staff ask it: the person by 統合宛名番号 or by (system, 業務宛名番号)."""

    procedure_code: str
    info_kind_code: str
    provider_org: str
    as_of: str  # 和暦 or 西暦, as typed
    system: str | None = None
    business_atena_no: str | None = None
    atena_no: str | None = None
    # Who asked inside the organization (照会者部署コード, 照会者ユーザーID): kept in the
    # inquiry log and passed on to the provision records of our chukan and the hub.
    department: str | None = None
    user_id: str | None = None


@dataclass(frozen=True)
class InquiryResult:
    serial: str
    status: str
    values: dict[str, str] | None
    edition: Any
    record_key: Any
    as_of: date
    affair_code: str
    atena_no: str

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)


def _inquiry_target(session: Session, req: InquiryRequest) -> str:
    if req.atena_no is not None:
        atena_no = check_atena_no(req.atena_no)
        if session.get(Person, atena_no) is None:
            raise Problem(404, "unknown_atena_no", f"統合宛名番号「{atena_no}」は登録されていません。")
        return atena_no
    return translate(session, req.system or "", req.business_atena_no or "")


def inquiry_date(req: InquiryRequest) -> date:
    """The format checks of an inquiry (codes, then the date), before anything is looked up:
    the 基準日 as a date, or a Problem 422 (not audited: nothing about a person yet)."""
    for kind, value in (
        (ids.IdKind.PROCEDURE_CODE, req.procedure_code),
        (ids.IdKind.INFO_KIND_CODE, req.info_kind_code),
        (ids.IdKind.ORG_CODE, req.provider_org),
    ):
        problem = ids.check(kind, value)
        if problem is not None:
            raise Problem(422, f"invalid_{kind.name.lower()}", problem.message)
    try:
        return parse_date(req.as_of)
    except WarekiError as exc:
        raise Problem(422, "bad_date", f"基準日: {exc}") from None


@dataclass(frozen=True)
class InquiryTarget:
    """Whom an authorized inquiry is about, and for which affair."""

    atena_no: str
    affair_code: str


def inquiry_target(
    session: Session, catalogue: Catalogue, req: InquiryRequest, roles: Iterable[str], who: str = STAFF
) -> InquiryTarget:
    """The principal holds ``<affair>:照会`` for the procedure (`authorize_inquiry`),
    then the person is found; a Problem says why not."""
    affair_code = authorize_inquiry(catalogue, roles, req.procedure_code, who)
    return InquiryTarget(atena_no=_inquiry_target(session, req), affair_code=affair_code)


def refused_affair(catalogue: Catalogue, procedure_code: str) -> str:
    """What a refused inquiry's audit entry names as its affair: the procedure's affair,
    or the procedure code as asked when the catalogue does not know it."""
    known = catalogue.affair_of(procedure_code)
    return known.code if known is not None else procedure_code


# --- exports ---------------------------------------------------------------------------

ADDRESSEE_RESIDENCES = frozenset({"resident", "non_resident"})
ADDRESSEE_CSV_HEADER = (
    "統合宛名番号",
    "住民区分",
    "氏",
    "名",
    "氏（カナ）",
    "名（カナ）",
    "生年月日",
    "性別",
    "郵便番号",
    "住所",
)


def parse_addressee_params(raw: Any, _now: datetime) -> dict[str, Any]:
    """``{"residence": "resident" | "non_resident"}`` or ``{}`` for everybody."""
    if not isinstance(raw, dict):
        raise Problem(422, "bad_export_params", "条件は「residence」を持つオブジェクトで指定してください。")
    unknown = sorted(str(k)[:40] for k in raw if k != "residence")
    if unknown:
        raise Problem(
            422, "bad_export_params", "指定できない条件があります（指定できるのは residence です）。", "、".join(unknown)
        )
    residence = raw.get("residence")
    if residence is not None and residence not in ADDRESSEE_RESIDENCES:
        raise Problem(422, "bad_export_params", "residence は resident（住民）か non_resident（住登外者）です。")
    return {"residence": residence}


def _addressee_filter(params: Any) -> Any:
    residence = params.get("residence")
    return Person.residence == residence if residence else Person.residence.in_(ADDRESSEE_RESIDENCES)


def count_addressees(session: Session, params: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(Person).where(_addressee_filter(params))) or 0)


def write_addressees_csv(session: Session, params: Any, out: Any) -> int:
    """The current 基本4情報 of each addressee as CSV; never an individual number."""
    rows = session.execute(
        select(Person.atena_no, Person.residence, BasicFour)
        .join(BasicFour, BasicFour.atena_no == Person.atena_no)
        .where(_addressee_filter(params), _is_current(BasicFour))
        .order_by(Person.atena_no)
        .execution_options(yield_per=1000)
    )
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(ADDRESSEE_CSV_HEADER)
    n = 0
    for atena_no, residence, b in rows:
        writer.writerow(
            (
                atena_no,
                RESIDENCE_LABELS.get(residence, residence),
                b.family_name,
                b.given_name,
                b.family_kana,
                b.given_kana,
                to_wareki(b.birth_date),
                SEX_LABELS.get(b.sex, b.sex),
                b.postal_code,
                b.address,
            )
        )
        n += 1
    return n


def addressees_export() -> ExportKind:
    """宛名一覧 (CSV, role 宛名:参照): the current 基本4情報 of residents and/or non-residents."""
    return ExportKind(
        name="addressees",
        role=EXPORT_ROLES["addressees"],
        label="宛名一覧",
        format="csv",
        parse_params=parse_addressee_params,
        count=count_addressees,
        write=write_addressees_csv,
    )
