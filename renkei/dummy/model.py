"""Records of the full-scale synthetic population (`renkei.dummy.synth`).

One `Person` per real (made-up) human, whichever ward knows them: a 新宿区 resident, a
中野区 resident, someone who moved out or died during the event window, or an invented
non-resident who lives elsewhere. A person who moved between the two wards is one
record (current ward in `lg_code`, the other in `previous_lg_code`), so that both
wards' change records and business data point to the same key.

`Person` satisfies `renkei.dummy.noise.SourcePerson` (same attribute names, including
the optional ``previous_address``/``previous_postal_code`` and ``alias_family_*``).
Records are mutable slotted dataclasses: the generator fills them stage by stage.

The constants every stage shares (the two wards, 性別 and 続柄 codes, the business
systems and their serial ranges) and the small date and random-stream helpers live here
too, at the bottom of the package's imports: every other module may import this one,
and this one imports none of them but `noise_records`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Final

from renkei.dummy.noise_records import NonResidentRecord, TruthRow

__all__ = [
    "BIRTH",
    "CHANGE_KINDS",
    "CHILD",
    "DEATH",
    "DECEASED",
    "FATHER",
    "FEMALE",
    "HEAD",
    "HUSBAND",
    "MALE",
    "MOTHER",
    "MOVED_OUT",
    "MOVE_IN",
    "MOVE_OUT",
    "MOVE_WITHIN",
    "NAKANO",
    "OUTSIDER",
    "RESIDENT",
    "SERIAL_OFFSET",
    "SHINJUKU",
    "SYSTEMS",
    "SYSTEM_CARE",
    "SYSTEM_CHILD_ALLOWANCE",
    "SYSTEM_DISABILITY",
    "SYSTEM_NHI",
    "SYSTEM_TAX",
    "SYSTEM_WELFARE",
    "WARDS",
    "WIFE",
    "ChangeRecord",
    "Household",
    "Person",
    "SynthPopulation",
    "Ward",
    "add_years",
    "age_on",
    "child_allowance_cutoff",
    "fiscal_year",
    "serial_base",
    "stage_rng",
    "tax_year_for",
]

# --- the two wards ----------------------------------------------------------------------

SHINJUKU: Final = "131041"
NAKANO: Final = "131148"


@dataclass(frozen=True, slots=True)
class Ward:
    lg_code: str
    name: str
    number: int  # selects the ward's serial ranges (`serial_base`)


WARDS: Final[Mapping[str, Ward]] = MappingProxyType(
    {SHINJUKU: Ward(SHINJUKU, "新宿区", 1), NAKANO: Ward(NAKANO, "中野区", 2)}
)

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

# --- business systems and their serial ranges -------------------------------------------

SYSTEM_TAX: Final = "tax"  # 個人住民税
SYSTEM_CHILD_ALLOWANCE: Final = "child_allowance"  # 児童手当
SYSTEM_NHI: Final = "nhi"  # 国民健康保険
SYSTEM_CARE: Final = "care"  # 介護保険
SYSTEM_WELFARE: Final = "welfare"  # 生活保護
SYSTEM_DISABILITY: Final = "disability"  # 障害者手帳
SYSTEMS: Final = (SYSTEM_TAX, SYSTEM_CHILD_ALLOWANCE, SYSTEM_NHI, SYSTEM_CARE, SYSTEM_WELFARE, SYSTEM_DISABILITY)

# Serials (for `renkei.core.ids.make_atena_no`): ward number × 10^11 + range number × 10^10
# + n; "household" numbers the 世帯番号.
_RANGE_NUMBERS: Final[Mapping[str, int]] = MappingProxyType({
    "household": 0, SYSTEM_TAX: 1, SYSTEM_CHILD_ALLOWANCE: 2, SYSTEM_NHI: 3,
    SYSTEM_CARE: 4, SYSTEM_WELFARE: 5, SYSTEM_DISABILITY: 6,
})  # fmt: skip
_RANGE_SIZE: Final = 10**10

# The business numbers of `renkei dummy generate`/`load` start at serial 1,000,001 of each
# range; the demo's small population (`renkei.dummy.synth.demo_config`) takes the first
# ones, so that both live in one federation (`renkei dummy load` into `renkei demo --serve`).
SERIAL_OFFSET: Final = 1_000_000


def serial_base(lg_code: str, system: str) -> int:
    """First serial minus one of the range of `system` ("household" or a business system)."""
    return WARDS[lg_code].number * 10 * _RANGE_SIZE + _RANGE_NUMBERS[system] * _RANGE_SIZE


# --- dates and random streams -----------------------------------------------------------


def add_years(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


def age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def fiscal_year(day: date) -> int:
    """年度: April to March."""
    return day.year if day.month >= 4 else day.year - 1


def tax_year_for(reference_date: date) -> int:
    """The latest 課税年度 whose assessment exists on `reference_date` (decided in June)."""
    return reference_date.year if reference_date >= date(reference_date.year, 6, 1) else reference_date.year - 1


def child_allowance_cutoff(reference_date: date) -> date:
    """Earliest birth date of a child 児童手当 covers on `reference_date`.

    Since October 2024 the allowance runs to the first 31 March after the 18th birthday
    (高校生年代まで).
    """
    return date(fiscal_year(reference_date) - 18, 4, 2)


def stage_rng(seed: int, stage: str) -> random.Random:
    """An independent stream per stage (string seeds hash with SHA-512: stable across runs)."""
    return random.Random(f"renkei-dummy:{seed}:{stage}")


# Person.status
RESIDENT: Final = "resident"  # on the register of `lg_code` on the reference date
MOVED_OUT: Final = "moved_out"  # left `lg_code` (to `destination_lg_code`) in the window
DECEASED: Final = "deceased"  # died in the window while registered in `lg_code`
OUTSIDER: Final = "outsider"  # never registered in either ward (a non-resident source)

# 異動 kinds (the register's words).
MOVE_IN: Final = "転入"
MOVE_OUT: Final = "転出"
MOVE_WITHIN: Final = "転居"
BIRTH: Final = "出生"
DEATH: Final = "死亡"
CHANGE_KINDS: Final = (MOVE_IN, BIRTH, MOVE_WITHIN, MOVE_OUT, DEATH)


@dataclass(slots=True, eq=False)
class Person:
    key: str
    lg_code: str  # the ward whose register holds (or held) the person; else where they live
    status: str
    sex: str  # "1" male, "2" female
    birth_date: date
    relationship: str  # 続柄 to the 世帯主
    nationality: str  # "JP" or an ISO 3166 code
    family_name: str = ""
    given_name: str = ""
    family_kana: str = ""
    given_kana: str = ""
    alpha_name: str | None = None  # roman letters of a foreign resident, family name first
    alias_family_name: str | None = None  # 通称
    alias_family_kana: str | None = None
    individual_number: str = ""
    resident_code: str = ""
    household_id: str = ""
    postal_code: str = ""
    address: str = ""
    resident_since: date | None = None  # 住民となった日 in `lg_code`
    moved_in_on: date | None = None  # 転入 within the window (else None)
    previous_lg_code: str | None = None  # where they came from (転入); None: abroad or unknown
    previous_address: str | None = None  # before 転入 or 転居
    previous_postal_code: str | None = None
    previous_household_id: str | None = None  # 世帯番号 in the other of the two wards
    moved_within_on: date | None = None  # 転居 within the window
    left_on: date | None = None  # 転出 or death
    destination_lg_code: str | None = None
    destination_address: str | None = None
    destination_postal_code: str | None = None
    # Attributes the business data derive from (decided once, see renkei.dummy.attributes).
    income: int = 0  # 総所得金額等 of the year before the tax year (yen)
    employee_insured: bool = False
    care_level: str | None = None  # layout code: 12, 13 (要支援), 21–25 (要介護)
    care_certified_on: date | None = None
    disability: tuple[str | None, str | None, str | None] | None = None  # 身体, 療育, 精神
    disability_issued_on: date | None = None

    @property
    def is_foreign(self) -> bool:
        return self.nationality != "JP"

    def age_on(self, day: date) -> int:
        b = self.birth_date
        return day.year - b.year - ((day.month, day.day) < (b.month, b.day))

    def lived_in(self, lg_code: str, day: date) -> bool:
        """Whether the person was on `lg_code`'s register on `day` (as this data set knows)."""
        if day < self.birth_date:
            return False
        if self.lg_code == lg_code and self.status != OUTSIDER:
            since = self.resident_since or self.birth_date
            if day < since:
                return False
            return self.left_on is None or day < self.left_on
        if self.previous_lg_code == lg_code and self.moved_in_on is not None:
            return day < self.moved_in_on
        return False


@dataclass(slots=True, eq=False)
class Household:
    id: str  # 世帯番号
    lg_code: str
    kind: str
    foreign: bool
    members: list[Person] = field(default_factory=list)
    postal_code: str = ""
    address: str = ""
    town: str = ""
    current: bool = True  # False: a household that left the ward (or died out) in the window
    nhi: bool = False
    welfare: bool = False
    welfare_since: date | None = None

    @property
    def head(self) -> Person:
        return self.members[0]


@dataclass(slots=True)
class ChangeRecord:
    """One 異動 of one person in one ward's register (`seq`: its order in the ward)."""

    seq: int
    lg_code: str
    kind: str  # MOVE_IN, MOVE_OUT, MOVE_WITHIN, BIRTH, DEATH
    effective_on: date  # 異動日
    notified_on: date  # 届出日
    person_key: str
    household_id: str
    postal_code: str  # the address the person has in this ward after (or, leaving, before) it
    address: str
    other_lg_code: str | None  # from (転入) / to (転出)
    other_address: str | None  # previous (転入, 転居) / destination (転出)

    @property
    def change_id(self) -> str:
        return f"{self.lg_code}-{self.seq:07d}"


@dataclass(slots=True)
class SynthPopulation:
    """Everything the generator made, with the parameters that made it."""

    seed: int
    reference_date: date
    window_start: date
    tax_year: int
    persons: list[Person]
    households: list[Household]
    changes: list[ChangeRecord]
    lg_codes: tuple[str, ...]
    serial_offset: int = SERIAL_OFFSET  # of the business numbers (see SERIAL_OFFSET)
    by_key: dict[str, Person] = field(default_factory=dict)
    # 業務宛名番号 serials: "lg_code:system" → {person key: serial} (see renkei.dummy.business)
    numbers: dict[str, dict[str, int]] = field(default_factory=dict)
    non_resident_records: dict[str, Sequence[NonResidentRecord]] = field(default_factory=dict)
    non_resident_truth: dict[str, Sequence[TruthRow]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.by_key:
            self.by_key = {p.key: p for p in self.persons}

    def residents(self, lg_code: str) -> Iterator[Person]:
        return (p for p in self.persons if p.status == RESIDENT and p.lg_code == lg_code)

    def households_of(self, lg_code: str, *, current: bool = True) -> Iterator[Household]:
        return (h for h in self.households if h.lg_code == lg_code and h.current == current)
