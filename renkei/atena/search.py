"""Addressee search: by number, or by kana name, kanji name, birth date and address, alone
or combined, for residents and non-residents (former residents included).

The keys are `renkei.core.text.normalize`'s, kept per version of 基本4情報 in
``person_search_keys``. `refresh_search_keys` rebuilds a person's rows from ``persons``
and ``basic_four``; whatever writes those calls it (`renkei.atena.service.register_parsed`
and every path through it), so the keys never drift. A prefix is one index range on both
engines (``key >= q AND key < successor(q)``: the key columns compare code points).

Staff type what they have: 全角 digits, 和暦 or 西暦 dates, hiragana or half-width kana,
旧字 or 新字, any way of writing 丁目・番地・号. Bad input is a Problem 422 with a stable
code and a Japanese title; nothing here writes but `refresh_search_keys`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any, Final, cast

from sqlalchemy import ColumnElement, Table, delete, func, or_, select
from sqlalchemy.orm import Session

from renkei.atena.models import BasicFour, BusinessLink, Person, PersonSearchKey
from renkei.core import bulk, ids
from renkei.core.crypto.field import FieldCipher
from renkei.core.errors import Problem
from renkei.core.text import normalize
from renkei.core.text.wareki import WarekiError, parse_date

__all__ = [
    "COUNT_CAP",
    "Criteria",
    "Found",
    "SearchPage",
    "find_by_atena_no",
    "find_by_business_no",
    "find_by_individual_number",
    "parse_criteria",
    "refresh_all",
    "refresh_search_keys",
    "search",
]

PAGE_SIZE: Final = 20
COUNT_CAP: Final = 1000  # counted up to here; beyond, staff narrow the search
MAX_TERM: Final = 60
MIN_KANA_ALONE: Final = 2  # a kana prefix alone of at least this many characters
MIN_ADDRESS_ALONE: Final = 2
RESIDENT, FORMER, NON_RESIDENT = "resident", "former", "non_resident"  # as renkei.atena.history
RESIDENCES: Final = (RESIDENT, FORMER, NON_RESIDENT)
_CHUNK: Final = 5000  # persons per statement (SQLite's bound-parameter limit)


# --- keeping the keys -------------------------------------------------------------------

# Names and addresses repeat (surnames, buildings): the keys of a bulk import are mostly
# cache hits.
_kana = lru_cache(maxsize=65536)(normalize.kana_key)
_name = lru_cache(maxsize=65536)(normalize.name_key)
_address = lru_cache(maxsize=65536)(normalize.address_parts)


def _key_rows(session: Session, atena_nos: Sequence[str]) -> list[dict[str, Any]]:
    rows = session.execute(
        select(
            BasicFour.id, BasicFour.atena_no, BasicFour.family_name, BasicFour.given_name, BasicFour.family_kana,
            BasicFour.given_kana, BasicFour.birth_date, BasicFour.address, BasicFour.effective_on, BasicFour.status,
            Person.residence,
        )
        .join(Person, Person.atena_no == BasicFour.atena_no)
        .where(bulk.among(session, BasicFour.atena_no, atena_nos))
    ).all()  # fmt: skip
    # The current version: the latest effective date, ties by recorded order — the rule
    # of renkei.atena.history (current_clause), applied to the rows at hand.
    newest: dict[str, tuple[Any, int]] = {}
    for row in rows:
        mark = (row.effective_on, row.id)
        if row.atena_no not in newest or mark > newest[row.atena_no]:
            newest[row.atena_no] = mark
    out = []
    for row in rows:
        parts = _address(row.address)
        out.append(
            {
                "atena_no": row.atena_no,
                "version_id": row.id,
                "kana_key": _kana(row.family_kana + row.given_kana)[:200],
                "name_key": _name(row.family_name + row.given_name)[:200],
                "birth_date": row.birth_date,
                "place_key": parts.place[:300],
                "town_key": parts.town[:300],
                # resident | former (転出・死亡) | non_resident: the version's, unless the
                # person is a non-resident
                "residence": NON_RESIDENT if row.residence == NON_RESIDENT else row.status,
                "current": newest[row.atena_no] == (row.effective_on, row.id),
            }
        )
    return out


def refresh_search_keys(session: Session, atena_nos: Iterable[str]) -> int:
    """Rebuild the search keys of these persons from their 基本4情報 and residence; returns
    the rows written. Call it in the transaction that wrote 基本4情報 (set-based: a few
    statements per 5,000 persons)."""
    table = cast(Table, PersonSearchKey.__table__)
    wanted = sorted(set(atena_nos))
    written = 0
    for start in range(0, len(wanted), _CHUNK):
        part = wanted[start : start + _CHUNK]
        session.execute(delete(PersonSearchKey).where(bulk.among(session, PersonSearchKey.atena_no, part)))
        rows = _key_rows(session, part)
        written += bulk.insert_rows(session, table, rows) if rows else 0
    return written


def refresh_all(session: Session, batch: int = _CHUNK) -> int:
    """Rebuild every person's keys (after a change of the normalization rules)."""
    written, after = 0, ""
    while True:
        part = list(
            session.scalars(select(Person.atena_no).where(Person.atena_no > after).order_by(Person.atena_no).limit(batch))
        )
        if not part:
            return written
        written += refresh_search_keys(session, part)
        after = part[-1]


# --- reading what staff typed -----------------------------------------------------------


@dataclass(frozen=True)
class Criteria:
    """A search by the person's facts, as keys. Empty strings and None are "any"."""

    kana: str = ""
    name: str = ""
    birth_date: date | None = None
    place: str = ""  # the address key to match with its 市区町村 …
    town: str = ""  # … or the town part of addresses (both set: either matches)
    residence: str | None = None  # resident | former | non_resident | None (all)
    history: bool = False  # also former names and addresses

    def terms(self) -> list[str]:
        """Which criteria are set (for the audit entry: never their values)."""
        named = {"kana": self.kana, "name": self.name, "birth_date": self.birth_date, "address": self.place or self.town}
        return [k for k, v in named.items() if v]


def _term(fields: Mapping[str, str], name: str, label: str) -> str:
    text = str(fields.get(name, "") or "").strip()
    if len(text) > MAX_TERM:
        raise Problem(422, "too_long", f"{label}は{MAX_TERM}文字以内で入力してください。", name)
    return text


def _is_kana_key(key: str) -> bool:
    return all("\u30a1" <= c <= "\u30fa" or c.isascii() and c.isalpha() for c in key)


def parse_criteria(fields: Mapping[str, str]) -> Criteria:
    """What staff typed (``kana``, ``name``, ``birth_date``, ``address``, ``residence``,
    ``history``), checked and turned into keys; Problem 422 with the reason in Japanese."""
    kana_text = _term(fields, "kana", "カナ氏名")
    name_text = _term(fields, "name", "氏名")
    born_text = _term(fields, "birth_date", "生年月日")
    address_text = _term(fields, "address", "住所")
    kana = normalize.kana_key(kana_text) if kana_text else ""
    if kana_text and (not kana or not _is_kana_key(kana)):
        raise Problem(422, "bad_kana", "カナ氏名はカタカナまたはひらがなで入力してください。", "kana")
    name = normalize.name_key(name_text) if name_text else ""
    if name_text and (not name or any(c in name for c in "%_\\")):
        raise Problem(422, "bad_name", "氏名に使用できない文字が含まれています。", "name")
    born = None
    if born_text:
        try:
            born = parse_date(born_text)
        except WarekiError as exc:
            raise Problem(422, "bad_date", f"生年月日: {exc}", "birth_date") from None
    place = town = ""
    if address_text:
        parts = normalize.address_parts(address_text)
        # Typed with its 市区町村 (新宿区西新宿…), the address is matched whole; typed from
        # the town (西新宿2-8), against the town part of every address. What reads as a
        # 町 or 村 may be a town's name (新宿区中町): matched both ways.
        if parts.city.endswith(("市", "区")) or "郡" in parts.city:
            place = parts.place
        elif parts.city:
            place = town = parts.place
        else:
            town = parts.town
        if not parts.place:
            raise Problem(422, "bad_address", "住所を市区町村名か町名から入力してください。", "address")
    residence = str(fields.get("residence", "") or "").strip() or None
    if residence not in (None, *RESIDENCES):
        raise Problem(
            422, "bad_residence", "住民区分は resident（住民）、former（除票）、non_resident（住登外者）のいずれかです。",
            "residence",
        )
    history = str(fields.get("history", "") or "").strip().lower() in {"1", "true", "on", "yes"}
    criteria = Criteria(kana, name, born, place, town, residence, history)
    if not criteria.terms():
        raise Problem(
            422, "missing_criteria", "検索条件（カナ氏名・氏名・生年月日・住所のいずれか）を入力してください。"
        )
    if born is None and not name:
        if kana and not town and len(kana) < MIN_KANA_ALONE:
            raise Problem(
                422, "too_broad", f"カナ氏名だけで探すときは{MIN_KANA_ALONE}文字以上入力してください。", "kana"
            )
        if (place or town) and not kana and len(place or town) < MIN_ADDRESS_ALONE:
            raise Problem(
                422, "too_broad", f"住所だけで探すときは{MIN_ADDRESS_ALONE}文字以上入力してください。", "address"
            )
    return criteria


# --- the search ---------------------------------------------------------------------------


def _successor(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix``."""
    last = ord(prefix[-1]) + 1
    if 0xD800 <= last <= 0xDFFF:
        last = 0xE000  # no surrogate in a key
    return prefix[:-1] + chr(last)


def _prefix(column: Any, prefix: str) -> ColumnElement[bool]:
    return (column >= prefix) & (column < _successor(prefix))  # type: ignore[no-any-return]


def _address_match(column: Any, key: str) -> ColumnElement[bool]:
    """A key ending in a number matches that number whole (西新宿2-8 is not 西新宿2-80):
    the key itself and what continues it with "-", as one range ["2-8", "2-8.") — "."
    follows "-", and no key has a character between them after a number."""
    if key[-1].isdigit():
        return (column >= key) & (column < key + ".")  # type: ignore[no-any-return]
    return _prefix(column, key)


@dataclass(frozen=True)
class Found:
    """One person found, shown by the version of 基本4情報 that matched."""

    atena_no: str
    residence: str  # the matched version's: resident | former | non_resident
    current: bool  # matched on the person's current facts (else on a former version)
    family_name: str
    given_name: str
    family_kana: str
    given_kana: str
    birth_date: date
    sex: str
    address: str


@dataclass(frozen=True)
class SearchPage:
    rows: list[Found]
    total: int  # capped at COUNT_CAP + 1
    page: int
    page_size: int

    @property
    def capped(self) -> bool:
        return self.total > COUNT_CAP

    @property
    def pages(self) -> int:
        return max(1, -(-min(self.total, COUNT_CAP) // self.page_size))


def _conditions(c: Criteria) -> list[ColumnElement[bool]]:
    k = PersonSearchKey
    where: list[ColumnElement[bool]] = []
    if c.kana:
        where.append(_prefix(k.kana_key, c.kana))
    if c.name:
        where.append(_prefix(k.name_key, c.name))
    if c.birth_date is not None:
        where.append(k.birth_date == c.birth_date)
    if c.place and c.town:
        where.append(or_(_address_match(k.place_key, c.place), _address_match(k.town_key, c.town)))
    elif c.place:
        where.append(_address_match(k.place_key, c.place))
    elif c.town:
        where.append(_address_match(k.town_key, c.town))
    if c.residence:
        where.append(k.residence == c.residence)
    if not c.history:
        where.append(k.current.is_(True))
    return where


def _order(c: Criteria) -> tuple[Any, ...]:
    """The order the driving index gives for free."""
    k = PersonSearchKey
    if c.birth_date is not None:
        return (k.birth_date, k.kana_key, k.id)
    if c.kana:
        return (k.kana_key, k.id)
    if c.name:
        return (k.name_key, k.id)
    if c.place:
        return (k.place_key, k.id)
    return (k.town_key, k.id)


def search(session: Session, c: Criteria, *, page: int = 1, page_size: int = PAGE_SIZE) -> SearchPage:
    """One page (1-based) of the persons matching every criterion, and how many match
    (counted up to COUNT_CAP + 1). With ``history`` a person may match on several versions:
    each shows once per page, by the first."""
    page = max(1, min(page, -(-COUNT_CAP // page_size)))
    where = _conditions(c)
    k = PersonSearchKey
    total = int(
        session.scalar(select(func.count()).select_from(select(k.id).where(*where).limit(COUNT_CAP + 1).subquery()))
        or 0
    )
    if total == 0:
        return SearchPage([], 0, page, page_size)
    rows = session.execute(
        select(k.current, BasicFour, k.residence)
        .join(BasicFour, BasicFour.id == k.version_id)
        .where(*where)
        .order_by(*_order(c))
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).all()
    out: list[Found] = []
    seen: set[str] = set()
    for cur, bf, residence in rows:
        if bf.atena_no in seen:
            continue
        seen.add(bf.atena_no)
        out.append(
            Found(
                bf.atena_no, residence, bool(cur), bf.family_name, bf.given_name, bf.family_kana, bf.given_kana,
                bf.birth_date, bf.sex, bf.address,
            )
        )  # fmt: skip
    return SearchPage(out, total, page, page_size)


# --- by number ----------------------------------------------------------------------------


def _digits(text: str) -> str | None:
    try:
        return normalize.digits(text[:40])
    except ValueError:
        return None


def find_by_atena_no(session: Session, text: str) -> str:
    """統合宛名番号 as typed (全角, spaces and hyphens accepted) → the person's number."""
    atena_no = _digits(text)
    if atena_no is None:
        raise Problem(422, "invalid_atena_no", "統合宛名番号は数字で入力してください（全角も可）。")
    problem = ids.check(ids.IdKind.ATENA_NO, atena_no)
    if problem is not None:
        raise Problem(422, "invalid_atena_no", f"統合宛名番号: {problem.message}")
    if session.get(Person, atena_no) is None:
        raise Problem(404, "unknown_atena_no", f"統合宛名番号「{atena_no}」は登録されていません。")
    return atena_no


def find_by_business_no(session: Session, system: str, text: str) -> str:
    """(業務システム, 業務宛名番号 as typed) → 統合宛名番号."""
    number = _digits(text)
    if number is None:
        raise Problem(422, "invalid_business_atena_no", "業務宛名番号は数字で入力してください（全角も可）。")
    problem = ids.check(ids.IdKind.ATENA_NO, number)
    if problem is not None:
        raise Problem(422, "invalid_business_atena_no", f"業務宛名番号: {problem.message}")
    found = session.scalar(
        select(BusinessLink.atena_no).where(BusinessLink.system == system, BusinessLink.business_atena_no == number)
    )
    if found is None:
        raise Problem(404, "unknown_business_atena_no", f"業務「{system}」の宛名番号「{number}」は登録されていません。")
    return found


def find_by_individual_number(session: Session, cipher: FieldCipher, text: str) -> str:
    """個人番号 as typed → 統合宛名番号, through the blind index (the number itself is never
    compared or stored in clear). The caller checks the role and audits the use."""
    number = _digits(text)
    if number is None:
        raise Problem(422, "invalid_individual_number", "個人番号は数字で入力してください（全角も可）。")
    problem = ids.check(ids.IdKind.INDIVIDUAL_NUMBER, number)
    if problem is not None:
        raise Problem(422, "invalid_individual_number", f"個人番号: {problem.message}")
    found = session.scalar(select(Person.atena_no).where(Person.individual_number_index == cipher.blind_index(number)))
    if found is None:
        raise Problem(404, "unknown_individual_number", "この個人番号の方は登録されていません。")
    return found
