"""Business data consistent with the people: each system's 宛名番号 and its records.

Systems (`SYSTEMS`) and who is in them, per ward:

- ``tax`` 個人住民税 — everyone aged 16+ on 1 January of the tax year (賦課期日) who was
  on the ward's register that day, including those who have since moved out or died.
  特別区民税 and 都民税 (tax year 2024 onward): 均等割 3,000 + 1,000 yen and 森林環境税
  1,000 yen; 所得割 6 % + 4 % of the taxable income after 基礎控除, 配偶者控除, 扶養控除 and an
  estimated 社会保険料控除, less 調整控除. Non-taxable limits of a 1級地 (the 23 wards).
- ``child_allowance`` 児童手当 — households with children up to 高校生年代 (from the October
  2024 reform: no income cap; ¥15,000 a month under 3, ¥10,000 from 3, ¥30,000 for the
  third child on, counting children up to 22); the recipient is the parent who earns more.
- ``nhi`` 国民健康保険 — members under 75 of NHI households (not 生活保護).
- ``care`` 介護保険 — everyone 65+ (第1号被保険者) with a 保険料段階; certified 40–64 as 第2号.
- ``welfare`` 生活保護 — members of households on public assistance.
- ``disability`` — holders of 身体障害者手帳, 療育手帳, 精神障害者保健福祉手帳.

Records are generated on demand (`records`), deterministic for the seed, so that 343,000
people's business data need not sit in memory. Each record carries the file columns
(`COLUMNS`), and `fukuhon_items` gives the data-standard-layout items of the shipped
catalogue sample (K…, C…, H…, L…, S…, D…) for provision copies.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from operator import mul
from types import MappingProxyType
from typing import Final

from renkei.dummy.model import (
    CHILD,
    FATHER,
    HEAD,
    HUSBAND,
    MOTHER,
    NAKANO,
    RESIDENT,
    SERIAL_OFFSET,
    SHINJUKU,
    SYSTEM_CARE,
    SYSTEM_CHILD_ALLOWANCE,
    SYSTEM_DISABILITY,
    SYSTEM_NHI,
    SYSTEM_TAX,
    SYSTEM_WELFARE,
    SYSTEMS,
    WIFE,
    Household,
    Person,
    SynthPopulation,
    child_allowance_cutoff,
    fiscal_year,
    serial_base,
    stage_rng,
)

__all__ = [
    "COLUMNS",
    "INFO_KINDS",
    "KINTOWARI_TOTAL",
    "NHI_INSURER",
    "SERIAL_OFFSET",
    "SYSTEMS",
    "SYSTEM_CARE",
    "SYSTEM_CHILD_ALLOWANCE",
    "SYSTEM_DISABILITY",
    "SYSTEM_NHI",
    "SYSTEM_TAX",
    "SYSTEM_WELFARE",
    "BusinessRecord",
    "TaxAssessment",
    "allowance_amounts",
    "assess_tax",
    "assign_numbers",
    "atena_no",
    "business_serial_base",
    "fukuhon_item_codes",
    "fukuhon_items",
    "insurer_check_digit",
    "number",
    "numbers_in",
    "records",
    "system_label",
]

# The shipped catalogue's information kinds for each system (see catalogue/data/layouts).
INFO_KINDS: Final = MappingProxyType({
    SYSTEM_TAX: "TM00000000000002", SYSTEM_CHILD_ALLOWANCE: "TM00000000009001", SYSTEM_NHI: "TM00000000009002",
    SYSTEM_CARE: "TM00000000009003", SYSTEM_WELFARE: "TM00000000009004", SYSTEM_DISABILITY: "TM00000000009005",
})  # fmt: skip

_SPOUSES: Final = frozenset({WIFE, HUSBAND})
_PARENTS: Final = frozenset({HEAD, WIFE, HUSBAND})

# 個人住民税 (tax year 2024 onward), yen.
KINTOWARI_WARD: Final = 3_000  # 特別区民税 均等割
KINTOWARI_METRO: Final = 1_000  # 都民税 均等割
FOREST_TAX: Final = 1_000  # 森林環境税 (national, levied with the 均等割 from 2024)
KINTOWARI_TOTAL: Final = KINTOWARI_WARD + KINTOWARI_METRO + FOREST_TAX
RATE_WARD: Final = 6  # 所得割 %
RATE_METRO: Final = 4
TAXED: Final = "1"
NOT_TAXED: Final = "2"
UNDECLARED: Final = "3"
_DEPENDANT_INCOME_LIMIT: Final = 480_000  # 合計所得金額 of a 扶養親族 / 控除対象配偶者
_SPECIAL_LIMIT: Final = 1_350_000  # 未成年者・障害者・ひとり親: non-taxable up to this


def insurer_check_digit(first5: str) -> int:
    """Check digit of a 6-digit NHI 保険者番号 (weights 2,1,2,1,2; digits of products summed)."""
    total = 0
    for i, ch in enumerate(first5):
        prod = int(ch) * (2 if i % 2 == 0 else 1)
        total += prod // 10 + prod % 10
    return (10 - total % 10) % 10


# 国民健康保険 保険者番号 of each ward: 都道府県 13 + the ward's number + check digit.
NHI_INSURER: Final = MappingProxyType({
    lg: lg[:5] + str(insurer_check_digit(lg[:5])) for lg in (SHINJUKU, NAKANO)
})  # fmt: skip


def business_serial_base(lg_code: str, system: str, offset: int = SERIAL_OFFSET) -> int:
    """First serial minus one of `system`'s 宛名番号 in `lg_code`: `offset` serials into the
    system's range (`renkei.dummy.model.SERIAL_OFFSET`; the population's `serial_offset`)."""
    return serial_base(lg_code, system) + offset


_ATENA_WEIGHTS: Final = tuple(2 + i % 6 for i in range(14))[::-1]  # left to right


def atena_no(serial: int) -> str:
    """`renkei.core.ids.make_atena_no` without its argument checks (the serials here are
    ours and in range); a test holds the two equal. Hundreds of thousands are made."""
    body = f"{serial:014d}"
    r = sum(map(mul, map(int, body), _ATENA_WEIGHTS)) % 11
    return body + str(0 if r <= 1 else 11 - r)


def number(pop: SynthPopulation, p: Person, lg_code: str, system: str) -> str | None:
    """`p`'s 宛名番号 in `system` of `lg_code`, or None when the system does not know them."""
    serial = pop.numbers.get(f"{lg_code}:{system}", {}).get(p.key)
    return None if serial is None else atena_no(serial)


def numbers_in(pop: SynthPopulation, p: Person, lg_code: str) -> dict[str, str]:
    """{system: 宛名番号} of `p` in `lg_code`'s business systems."""
    out = {}
    for system in SYSTEMS:
        no = number(pop, p, lg_code, system)
        if no is not None:
            out[system] = no
    return out


# --- who is in which system -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    pop: SynthPopulation
    households: Mapping[str, Household]
    base: date  # 賦課期日

    def household(self, p: Person) -> Household | None:
        return self.households.get(p.household_id)


_CONTEXTS: dict[int, _Context] = {}


def _context(pop: SynthPopulation) -> _Context:
    ctx = _CONTEXTS.get(id(pop))
    if ctx is None or ctx.pop is not pop:
        ctx = _Context(pop, {h.id: h for h in pop.households}, date(pop.tax_year, 1, 1))
        _CONTEXTS.clear()  # one population at a time is enough
        _CONTEXTS[id(pop)] = ctx
    return ctx


def _taxed_here(p: Person, lg_code: str, base: date) -> bool:
    return p.age_on(base) >= 16 and p.lived_in(lg_code, base)


def _eligible_children(h: Household, ref: date) -> list[Person]:
    cutoff = child_allowance_cutoff(ref)
    return [m for m in h.members if m.status == RESIDENT and m.relationship == CHILD and m.birth_date >= cutoff]


def _allowance_recipient(h: Household) -> Person | None:
    parents = [m for m in h.members if m.status == RESIDENT and m.relationship in _PARENTS]
    if not parents:
        return None
    return max(parents, key=lambda m: (m.income, m.relationship == HEAD))


def _in_nhi(p: Person, h: Household | None, ref: date) -> bool:
    return h is not None and h.nhi and p.status == RESIDENT and p.age_on(ref) < 75


def _in_care(p: Person, ref: date) -> bool:
    if p.status != RESIDENT:
        return False
    age = p.age_on(ref)
    return age >= 65 or (age >= 40 and p.care_level is not None)


def assign_numbers(pop: SynthPopulation) -> None:
    """Give every person the 宛名番号 of each system that concerns them, per ward."""
    ctx = _context(pop)
    ref = pop.reference_date
    for lg in pop.lg_codes:
        for system in SYSTEMS:
            pop.numbers.setdefault(f"{lg}:{system}", {})

    def give(p: Person, lg_code: str, system: str) -> None:
        serials = pop.numbers[f"{lg_code}:{system}"]
        if p.key not in serials:
            serials[p.key] = business_serial_base(lg_code, system, pop.serial_offset) + len(serials) + 1

    for lg in pop.lg_codes:
        for p in pop.persons:
            if _taxed_here(p, lg, ctx.base):
                give(p, lg, SYSTEM_TAX)
            if p.lg_code != lg or p.status != RESIDENT:
                continue
            h = ctx.household(p)
            if h is not None and p.relationship in _PARENTS | {CHILD}:
                kids = _eligible_children(h, ref)
                if kids and (p in kids or p is _allowance_recipient(h)):
                    give(p, lg, SYSTEM_CHILD_ALLOWANCE)
            if _in_nhi(p, h, ref):
                give(p, lg, SYSTEM_NHI)
            if _in_care(p, ref):
                give(p, lg, SYSTEM_CARE)
            if h is not None and h.welfare:
                give(p, lg, SYSTEM_WELFARE)
            if p.disability is not None:
                give(p, lg, SYSTEM_DISABILITY)


# --- local tax --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaxAssessment:
    kubun: str  # 1 課税, 2 非課税, 3 未申告
    income: int  # 総所得金額等
    taxable: int  # 課税標準額 (after deductions, rounded down to 1,000)
    dependants: int  # 扶養親族数 (年少扶養 included)
    young_dependants: int  # under 16
    spouse_deduction: bool
    shotokuwari_ward: int
    shotokuwari_metro: int
    kintowari_ward: int
    kintowari_metro: int
    forest_tax: int

    @property
    def total(self) -> int:
        return (self.shotokuwari_ward + self.shotokuwari_metro + self.kintowari_ward
                + self.kintowari_metro + self.forest_tax)  # fmt: skip


def _basic_deduction(income: int) -> tuple[int, int]:
    """(基礎控除, its 人的控除差 for 調整控除) of 住民税."""
    if income <= 24_000_000:
        return 430_000, 50_000
    if income <= 24_500_000:
        return 290_000, 50_000
    if income <= 25_000_000:
        return 150_000, 50_000
    return 0, 0


def _dependant_deduction(age: int, parent_living_together: bool) -> tuple[int, int]:
    """(扶養控除, 人的控除差) for a 扶養親族 aged `age` on 31 December of the income year."""
    if age < 16:
        return 0, 0  # 年少扶養: counted, not deducted
    if 19 <= age <= 22:
        return 450_000, 180_000  # 特定扶養
    if age >= 70:
        return (450_000, 130_000) if parent_living_together else (380_000, 100_000)
    return 330_000, 50_000


def assess_tax(
    income: int,
    *,
    dependant_ages: Sequence[tuple[int, bool]] = (),
    spouse_age: int | None = None,
    special: bool = False,
    welfare: bool = False,
    undeclared: bool = False,
) -> TaxAssessment:
    """特別区民税・都民税 of one person (tax year 2024 onward, simplified).

    `dependant_ages`: (age on 31 December of the income year, is a parent living together)
    of each 扶養親族; `spouse_age`: the 控除対象配偶者's age, if any; `special`: 未成年者,
    障害者 or ひとり親 (non-taxable up to ¥1,350,000); `welfare`: 生活扶助 recipient.
    """
    n_deps = len(dependant_ages) + (1 if spouse_age is not None else 0)
    young = sum(1 for age, _ in dependant_ages if age < 16)
    if undeclared:
        return TaxAssessment(UNDECLARED, 0, 0, len(dependant_ages), young, False, 0, 0, 0, 0, 0)
    kinto_limit = 450_000 if n_deps == 0 else 350_000 * (1 + n_deps) + 310_000
    shotoku_limit = 450_000 if n_deps == 0 else 350_000 * (1 + n_deps) + 420_000
    if welfare or income <= kinto_limit or (special and income <= _SPECIAL_LIMIT):
        return TaxAssessment(NOT_TAXED, income, 0, len(dependant_ages), young, spouse_age is not None,
                             0, 0, 0, 0, 0)  # fmt: skip
    basic, diff = _basic_deduction(income)
    deduction = basic + min(2_500_000, income * 15 // 100)  # 社会保険料控除 (estimate)
    spouse = False
    if spouse_age is not None and income <= 10_000_000:
        spouse = True
        full, full_diff = (380_000, 100_000) if spouse_age >= 70 else (330_000, 50_000)
        scale = 3 if income <= 9_000_000 else 2 if income <= 9_500_000 else 1
        deduction += full * scale // 3
        diff += full_diff
    for age, together in dependant_ages:
        d, dd = _dependant_deduction(age, together)
        deduction += d
        diff += dd
    taxable = max(0, income - deduction) // 1000 * 1000
    if income > 25_000_000:
        adjustment = 0
    elif taxable <= 2_000_000:
        adjustment = min(diff, taxable) * 5 // 100
    else:
        adjustment = max(diff - (taxable - 2_000_000), 50_000) * 5 // 100
    ward = metro = 0
    if income > shotoku_limit:
        ward = max(0, taxable * RATE_WARD // 100 - adjustment * 3 // 5) // 100 * 100
        metro = max(0, taxable * RATE_METRO // 100 - adjustment * 2 // 5) // 100 * 100
    return TaxAssessment(TAXED, income, taxable, len(dependant_ages), young, spouse, ward, metro,
                         KINTOWARI_WARD, KINTOWARI_METRO, FOREST_TAX)  # fmt: skip


def _undeclared(p: Person, household_size: int) -> bool:
    """No income and no return filed: about a quarter of those who live alone or are a
    parent in the household (a stable choice per person, so every system agrees)."""
    eligible = p.income == 0 and (household_size == 1 or p.relationship in (MOTHER, FATHER))
    return eligible and zlib.crc32(p.key.encode()) % 100 < 25


def _tax_for(ctx: _Context, p: Person, lg_code: str) -> TaxAssessment:
    base = ctx.base
    year_end = base - timedelta(days=1)  # ages for deductions: 31 December of the income year
    h = ctx.household(p)
    members = [m for m in h.members if m.lived_in(lg_code, base)] if h is not None else [p]
    head = next((m for m in members if m.relationship == HEAD), None)
    spouse = next((m for m in members if m.relationship in _SPOUSES), None)
    claimant = head
    partner = spouse
    if head is not None and spouse is not None and spouse.income > head.income:
        claimant, partner = spouse, head
    dependant_ages: list[tuple[int, bool]] = []
    spouse_age = None
    if p is claimant:
        for m in members:
            if m is claimant or m is partner:
                continue
            if m.relationship in (CHILD, MOTHER, FATHER) and m.income <= _DEPENDANT_INCOME_LIMIT:
                dependant_ages.append((m.age_on(year_end), m.relationship in (MOTHER, FATHER)))
        if partner is not None and partner.income <= _DEPENDANT_INCOME_LIMIT:
            spouse_age = partner.age_on(year_end)
    single_parent = p is head and spouse is None and any(m.relationship == CHILD for m in members)
    special = p.age_on(base) < 18 or p.disability is not None or single_parent
    welfare = h is not None and h.welfare and h.welfare_since is not None and h.welfare_since <= base
    undeclared = _undeclared(p, len(members))
    return assess_tax(p.income, dependant_ages=dependant_ages, spouse_age=spouse_age, special=special,
                      welfare=welfare, undeclared=undeclared)  # fmt: skip


# --- records ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BusinessRecord:
    """One row of one system's file: values in the order of `COLUMNS[system]`."""

    system: str
    lg_code: str
    business_atena_no: str
    person_key: str
    values: tuple[str, ...]

    def as_dict(self) -> dict[str, str]:
        return dict(zip((code for code, _ in COLUMNS[self.system]), self.values, strict=True))


# (column code, Japanese header). Codes that are layout item codes (K001, C003, …) go
# into the provision copy (`fukuhon_items`); the others are for the business file only.
COLUMNS: Final[Mapping[str, tuple[tuple[str, str], ...]]] = MappingProxyType({
    SYSTEM_TAX: (
        ("atena_no", "宛名番号"), ("K001", "課税年度"), ("K002", "課税区分"), ("K003", "総所得金額等"),
        ("taxable", "課税標準額"), ("K006", "扶養親族数"), ("young", "うち年少扶養親族数"),
        ("spouse", "配偶者控除"), ("K004", "特別区民税所得割額"), ("metro_shotoku", "都民税所得割額"),
        ("K005", "特別区民税均等割額"), ("metro_kinto", "都民税均等割額"), ("forest", "森林環境税額"),
        ("total", "年税額"),
    ),
    SYSTEM_CHILD_ALLOWANCE: (
        ("atena_no", "受給者宛名番号"), ("C001", "受給状況"), ("C003", "支給対象児童数"),
        ("under3", "3歳未満児童数"), ("third", "第3子以降児童数"), ("C004", "認定年月日"),
        ("C005", "手当月額"), ("children", "児童宛名番号"),
    ),
    SYSTEM_NHI: (
        ("atena_no", "宛名番号"), ("household_id", "世帯番号"), ("H001", "資格区分"), ("H002", "保険者番号"),
        ("H003", "資格取得年月日"), ("H004", "資格喪失年月日"), ("H005", "高額療養費所得区分"),
    ),
    SYSTEM_CARE: (
        ("atena_no", "宛名番号"), ("L001", "被保険者区分"), ("L002", "要介護状態区分"),
        ("L003", "認定有効期間開始年月日"), ("L004", "認定有効期間終了年月日"), ("L005", "保険料段階"),
    ),
    SYSTEM_WELFARE: (
        ("atena_no", "宛名番号"), ("household_id", "世帯番号"), ("S001", "保護の状況"),
        ("S002", "保護開始年月日"), ("S003", "保護廃止年月日"), ("S004", "扶助の種類"),
    ),
    SYSTEM_DISABILITY: (
        ("atena_no", "宛名番号"), ("D001", "身体障害者手帳の等級"), ("D002", "療育手帳の判定"),
        ("D003", "精神障害者保健福祉手帳の等級"), ("D004", "手帳交付年月日"),
    ),
})  # fmt: skip


def _is_item(code: str) -> bool:
    return code[:1] in "KCHLSD" and code[1:].isdigit()


def fukuhon_items(record: BusinessRecord) -> dict[str, str]:
    """The layout items of `record` (empty values left out), for a provision copy."""
    return {
        code: value
        for (code, _), value in zip(COLUMNS[record.system], record.values, strict=True)
        if _is_item(code) and value != ""
    }


def fukuhon_item_codes(system: str) -> tuple[str, ...]:
    """The layout item codes `fukuhon_items` gives for `system`'s records, in column order."""
    return tuple(code for code, _ in COLUMNS[system] if _is_item(code))


def allowance_amounts(children_ages: Sequence[int], eligible: Sequence[bool]) -> list[int]:
    """Monthly 児童手当 per child (October 2024 rules).

    `children_ages`: ages of the household's children up to 22, eldest first;
    `eligible`: which of them the allowance covers (up to 高校生年代). The third and later
    children — counting from the eldest up to 22 — get ¥30,000; otherwise ¥15,000 under 3
    and ¥10,000 from 3.
    """
    out = []
    for rank, (age, ok) in enumerate(zip(children_ages, eligible, strict=True)):
        if not ok:
            out.append(0)
        elif rank >= 2:
            out.append(30_000)
        else:
            out.append(15_000 if age < 3 else 10_000)
    return out


def _iso(d: date | None) -> str:
    return d.isoformat() if d is not None else ""


def _days(rng: random.Random, lo: date, hi: date) -> date:
    return lo + timedelta(days=rng.randint(0, (hi - lo).days)) if hi > lo else lo


def _members(ctx: _Context, lg: str, system: str) -> Iterator[tuple[Person, str]]:
    """(person, 宛名番号) of everyone in `system`, in numbering (= person) order."""
    by_key = ctx.pop.by_key
    for key, serial in ctx.pop.numbers.get(f"{lg}:{system}", {}).items():
        yield by_key[key], atena_no(serial)


def _tax_records(ctx: _Context, lg: str, rng: random.Random) -> Iterator[BusinessRecord]:
    year = str(ctx.pop.tax_year)
    for p, no in _members(ctx, lg, SYSTEM_TAX):
        t = _tax_for(ctx, p, lg)
        yield BusinessRecord(SYSTEM_TAX, lg, no, p.key, (
            no, year, t.kubun, str(t.income), str(t.taxable), str(t.dependants), str(t.young_dependants),
            "1" if t.spouse_deduction else "0", str(t.shotokuwari_ward), str(t.shotokuwari_metro),
            str(t.kintowari_ward), str(t.kintowari_metro), str(t.forest_tax), str(t.total),
        ))  # fmt: skip


def _child_allowance_records(ctx: _Context, lg: str, rng: random.Random) -> Iterator[BusinessRecord]:
    ref = ctx.pop.reference_date
    fy = fiscal_year(ref)
    last_day = ref - timedelta(days=1)
    reform = date(2024, 10, 1)  # 高校生年代 covered from October 2024
    counted_from = date(fy - 22, 4, 2)  # children counted for the third-child rank
    for h in ctx.pop.households_of(lg):
        kids = _eligible_children(h, ref)
        recipient = _allowance_recipient(h)
        if not kids or recipient is None:
            continue
        no = number(ctx.pop, recipient, lg, SYSTEM_CHILD_ALLOWANCE)
        if no is None:
            continue
        counted = sorted(
            (m for m in h.members if m.status == RESIDENT and m.relationship == CHILD and m.birth_date >= counted_from),
            key=lambda m: m.birth_date,
        )
        kid_set = {m.key for m in kids}
        amounts = allowance_amounts([m.age_on(ref) for m in counted], [m.key in kid_set for m in counted])
        eldest = min(kids, key=lambda m: m.birth_date)
        start = max(recipient.resident_since or recipient.birth_date, eldest.birth_date)
        if all(m.age_on(ref) >= 15 for m in kids) and start < reform <= last_day:
            start = reform
        certified = min(last_day, _days(rng, start, start + timedelta(days=14)))
        under3 = sum(1 for m in kids if m.age_on(ref) < 3)
        third = sum(1 for a in amounts if a == 30_000)
        children = " ".join(number(ctx.pop, m, lg, SYSTEM_CHILD_ALLOWANCE) or "" for m in kids)
        yield BusinessRecord(SYSTEM_CHILD_ALLOWANCE, lg, no, recipient.key, (
            no, "1", str(len(kids)), str(under3), str(third), certified.isoformat(), str(sum(amounts)), children,
        ))  # fmt: skip


def _income_class(h: Household) -> str:
    """高額療養費 所得区分 from the household's incomes after the basic deduction."""
    incomes = [m.income for m in h.members if m.status == RESIDENT]
    if all(i <= 450_000 for i in incomes):
        return "オ"  # 住民税非課税世帯
    base = sum(max(0, i - 430_000) for i in incomes)
    return "ア" if base > 9_010_000 else "イ" if base > 6_000_000 else "ウ" if base > 2_100_000 else "エ"


def _nhi_records(ctx: _Context, lg: str, rng: random.Random) -> Iterator[BusinessRecord]:
    ref = ctx.pop.reference_date
    last_day = ref - timedelta(days=1)
    insurer = NHI_INSURER[lg]
    for p, no in _members(ctx, lg, SYSTEM_NHI):
        h = ctx.household(p)
        assert h is not None
        since = p.resident_since or p.birth_date
        if p.moved_in_on is None and since != p.birth_date:
            since = _days(rng, max(since, p.birth_date), last_day)  # e.g. left an employer's scheme
        yield BusinessRecord(SYSTEM_NHI, lg, no, p.key, (
            no, h.id, "1", insurer, since.isoformat(), "", _income_class(h),
        ))  # fmt: skip


def _premium_stage(ctx: _Context, p: Person, h: Household | None, own: TaxAssessment) -> int:
    """介護保険料の段階 (a simplified 13-stage table of a Tokyo ward)."""
    if h is not None and h.welfare:
        return 1
    household_taxed = h is not None and any(
        m.status == RESIDENT and m is not p and m.income > 450_000 for m in h.members
    )
    income = p.income
    if own.kubun != TAXED:
        if not household_taxed:
            return 1 if income <= 800_000 else 2 if income <= 1_200_000 else 3
        return 4 if income <= 800_000 else 5
    for stage, limit in ((6, 1_200_000), (7, 2_100_000), (8, 3_200_000), (9, 4_000_000),
                         (10, 5_000_000), (11, 7_000_000), (12, 10_000_000)):  # fmt: skip
        if income < limit:
            return stage
    return 13


def _care_records(ctx: _Context, lg: str, rng: random.Random) -> Iterator[BusinessRecord]:
    ref = ctx.pop.reference_date
    for p, no in _members(ctx, lg, SYSTEM_CARE):
        h = ctx.household(p)
        first = p.age_on(ref) >= 65
        level, start, end = p.care_level or "", "", ""
        if p.care_certified_on is not None and p.care_level is not None:
            months = rng.choice((12, 24, 36, 48))
            until = p.care_certified_on + timedelta(days=months * 30)
            if until < ref:
                until = ref + timedelta(days=rng.randint(30, 360))
            start, end = p.care_certified_on.isoformat(), until.isoformat()
        stage = ""
        if first:
            own = _tax_for(ctx, p, lg) if p.lived_in(lg, ctx.base) else assess_tax(p.income)
            stage = str(_premium_stage(ctx, p, h, own))
        yield BusinessRecord(SYSTEM_CARE, lg, no, p.key, (no, "1" if first else "2", level, start, end, stage))


def _welfare_records(ctx: _Context, lg: str, rng: random.Random) -> Iterator[BusinessRecord]:
    ref = ctx.pop.reference_date
    for p, no in _members(ctx, lg, SYSTEM_WELFARE):
        h = ctx.household(p)
        assert h is not None and h.welfare_since is not None
        since = max(h.welfare_since, p.resident_since or p.birth_date)
        kinds = ["生活扶助", "住宅扶助", "医療扶助"]
        age = p.age_on(ref)
        if p.care_level is not None:
            kinds.append("介護扶助")
        if 6 <= age <= 15:
            kinds.append("教育扶助")
        yield BusinessRecord(SYSTEM_WELFARE, lg, no, p.key, (no, h.id, "1", since.isoformat(), "", "・".join(kinds)))


def _disability_records(ctx: _Context, lg: str, rng: random.Random) -> Iterator[BusinessRecord]:
    for p, no in _members(ctx, lg, SYSTEM_DISABILITY):
        if p.disability is None:
            continue
        s, r, m = p.disability
        yield BusinessRecord(SYSTEM_DISABILITY, lg, no, p.key, (no, s or "", r or "", m or "", _iso(p.disability_issued_on)))


_MAKERS: Final = MappingProxyType({
    SYSTEM_TAX: _tax_records, SYSTEM_CHILD_ALLOWANCE: _child_allowance_records, SYSTEM_NHI: _nhi_records,
    SYSTEM_CARE: _care_records, SYSTEM_WELFARE: _welfare_records, SYSTEM_DISABILITY: _disability_records,
})  # fmt: skip


def records(pop: SynthPopulation, lg_code: str, system: str) -> Iterator[BusinessRecord]:
    """`system`'s records in `lg_code` (deterministic: the same every time it is asked)."""
    if system not in _MAKERS:
        raise ValueError(f"unknown business system {system!r}")
    return _MAKERS[system](_context(pop), lg_code, stage_rng(pop.seed, f"business:{lg_code}:{system}"))


@cache
def system_label(system: str) -> str:
    return {
        SYSTEM_TAX: "個人住民税", SYSTEM_CHILD_ALLOWANCE: "児童手当", SYSTEM_NHI: "国民健康保険",
        SYSTEM_CARE: "介護保険", SYSTEM_WELFARE: "生活保護", SYSTEM_DISABILITY: "障害者手帳",
    }[system]  # fmt: skip
