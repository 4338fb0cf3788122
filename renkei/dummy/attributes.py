"""Per-person and per-household facts the business data derive from.

Decided once, in person order, from one random stream, so that every business system
sees the same person: income (総所得金額等 of the year before the tax year), whether the
household is in 国民健康保険 or on 生活保護, 要介護 certification, disability
certificates. The shares are plausible figures for a central Tokyo ward, labelled as
ours in docs/dummy.md; none is a published statistic of 新宿区.
"""

from __future__ import annotations

import math
import random
from datetime import date, timedelta
from typing import Final

from renkei.dummy.households import HouseholdKind
from renkei.dummy.model import (
    CHILD,
    HUSBAND,
    RESIDENT,
    WIFE,
    Household,
    Person,
    SynthPopulation,
    stage_rng,
)

__all__ = ["CARE_LEVELS", "decide", "income_for"]

_SPOUSES: Final = frozenset({WIFE, HUSBAND})
_INCOME_CAP: Final = 200_000_000

# (upper age, share with income, median 総所得金額等) by sex for Japanese residents.
_INCOME_MALE: Final = ((20, 0.25, 600_000), (25, 0.75, 2_100_000), (30, 0.92, 3_300_000), (40, 0.95, 4_400_000),
                       (50, 0.95, 5_300_000), (60, 0.93, 5_700_000), (65, 0.86, 3_700_000), (75, 0.78, 2_000_000),
                       (200, 0.68, 1_300_000))  # fmt: skip
_INCOME_FEMALE: Final = ((20, 0.25, 600_000), (25, 0.75, 2_000_000), (30, 0.90, 3_000_000), (40, 0.83, 3_400_000),
                         (50, 0.78, 3_000_000), (60, 0.75, 2_800_000), (65, 0.66, 2_000_000), (75, 0.65, 1_000_000),
                         (200, 0.60, 900_000))  # fmt: skip
_HIGH_EARNER_SHARE: Final = 0.04  # Shinjuku's long upper tail

# 要介護 certification by age (share of residents of that age), and the level mix.
_CARE_BY_AGE: Final = ((40, 0.0), (65, 0.003), (70, 0.03), (75, 0.06), (80, 0.13), (85, 0.27), (90, 0.50),
                       (95, 0.72), (200, 0.85))  # fmt: skip
CARE_LEVELS: Final = ("12", "13", "21", "22", "23", "24", "25")  # 要支援1–2, 要介護1–5
_CARE_MIX_YOUNGER: Final = (0.16, 0.14, 0.22, 0.17, 0.12, 0.11, 0.08)
_CARE_MIX_OLDER: Final = (0.08, 0.09, 0.18, 0.18, 0.17, 0.17, 0.13)  # 85+

# Disability certificates by age: (upper age, 身体, 療育, 精神) shares.
_DISABILITY_BY_AGE: Final = ((18, 0.003, 0.012, 0.002), (40, 0.006, 0.006, 0.018), (65, 0.015, 0.003, 0.022),
                             (75, 0.04, 0.001, 0.008), (200, 0.08, 0.001, 0.006))  # fmt: skip
_SHINTAI_GRADES: Final = (("1", 0.33), ("2", 0.15), ("3", 0.17), ("4", 0.25), ("5", 0.05), ("6", 0.05))
_SEISHIN_GRADES: Final = (("1", 0.10), ("2", 0.55), ("3", 0.35))


def _lookup(table: tuple[tuple[int, float, int], ...], age: int) -> tuple[float, int]:
    for limit, share, median in table:
        if age < limit:
            return share, median
    return table[-1][1], table[-1][2]


def income_for(rng: random.Random, p: Person, age: int, household: Household | None) -> int:
    """総所得金額等 (yen, rounded down to 1,000) for a person aged `age` on the tax base date."""
    if age < 16:
        return 0
    if household is not None and household.welfare:
        return 0 if rng.random() < 0.75 else int(rng.lognormvariate(math.log(600_000), 0.4)) // 1000 * 1000
    share, median = _lookup(_INCOME_MALE if p.sex == "1" else _INCOME_FEMALE, age)
    if p.relationship == CHILD and age < 23:
        share, median = 0.3, 600_000
    elif p.relationship in _SPOUSES and p.sex == "2" and age < 65:
        share, median = 0.6, 1_300_000
    if p.is_foreign:
        if age < 30:
            share, median = 0.55, 1_100_000  # students on part-time work
        else:
            median = int(median * 0.85)
    if rng.random() >= share:
        return 0
    value = rng.lognormvariate(math.log(median), 0.55)
    if rng.random() < _HIGH_EARNER_SHARE and age >= 30:
        value *= rng.lognormvariate(math.log(3.0), 0.5)
    return min(_INCOME_CAP, int(value) // 1000 * 1000)


def _welfare_probability(h: Household, ref: date) -> float:
    head = h.members[0]
    age = head.age_on(ref)
    if h.kind == HouseholdKind.SINGLE:
        p = 0.11 if age >= 65 else 0.06 if age >= 40 else 0.008
    elif h.kind == HouseholdKind.SINGLE_PARENT:
        p = 0.10
    elif h.kind == HouseholdKind.COUPLE and age >= 65:
        p = 0.04
    elif h.kind == HouseholdKind.SHARED:
        p = 0.0
    else:
        p = 0.006
    return p * (0.3 if head.is_foreign else 1.0)


def _nhi_probability(h: Household, ref: date) -> float:
    """国民健康保険 for the household (members under 75); not for 生活保護 households."""
    if h.welfare:
        return 0.0
    head = h.members[0]
    age = head.age_on(ref)
    if age >= 75:
        return 0.85 if any(m.age_on(ref) < 75 for m in h.members) else 0.0
    if age >= 65:
        return 0.8
    if head.is_foreign:
        return 0.75 if age < 35 else 0.35
    return 0.15 if age < 25 else 0.2


def _care(rng: random.Random, p: Person, ref: date) -> None:
    age = p.age_on(ref)
    share = next(s for limit, s in _CARE_BY_AGE if age < limit)
    if share and rng.random() < share:
        mix = _CARE_MIX_OLDER if age >= 85 else _CARE_MIX_YOUNGER
        p.care_level = rng.choices(CARE_LEVELS, mix)[0]
        # Certified within the last 1–3 years (certifications run 12–48 months).
        p.care_certified_on = ref - timedelta(days=rng.randint(30, 1000))


def _disability(rng: random.Random, p: Person, ref: date, welfare: bool) -> None:
    age = p.age_on(ref)
    _, shintai, ryoiku, seishin = next(row for row in _DISABILITY_BY_AGE if age < row[0])
    boost = 3.0 if welfare else 1.0
    s = rng.choices([g for g, _ in _SHINTAI_GRADES], [w for _, w in _SHINTAI_GRADES])[0] \
        if rng.random() < shintai * boost else None  # fmt: skip
    r = ("A" if rng.random() < 0.4 else "B") if rng.random() < ryoiku * boost else None
    m = rng.choices([g for g, _ in _SEISHIN_GRADES], [w for _, w in _SEISHIN_GRADES])[0] \
        if rng.random() < seishin * boost else None  # fmt: skip
    if s or r or m:
        p.disability = (s, r, m)
        earliest = p.birth_date + timedelta(days=180)
        span = max(0, (ref - timedelta(days=1) - earliest).days)
        p.disability_issued_on = earliest + timedelta(days=rng.randint(0, min(span, 365 * 15))) \
            if span else earliest  # fmt: skip
        if p.disability_issued_on >= ref:
            p.disability_issued_on = ref - timedelta(days=1)


def decide(pop: SynthPopulation) -> None:
    """Fill income, insurance, welfare, care and disability facts (deterministic)."""
    rng = stage_rng(pop.seed, "attributes")
    ref = pop.reference_date
    base = date(pop.tax_year, 1, 1)
    for h in pop.households:
        if h.current and rng.random() < _welfare_probability(h, ref):
            h.welfare = True
            head = h.members[0]
            lo = max(head.resident_since or head.birth_date, head.birth_date + timedelta(days=18 * 365))
            h.welfare_since = lo + timedelta(days=rng.randint(0, max(0, (ref - timedelta(days=1) - lo).days)))
        h.nhi = h.current and rng.random() < _nhi_probability(h, ref)
        for p in h.members:
            p.income = income_for(rng, p, p.age_on(base), h)
            p.employee_insured = not h.nhi and 18 <= p.age_on(ref) < 75 and p.income > 0
            if h.current and p.status == RESIDENT:
                _care(rng, p, ref)
                _disability(rng, p, ref, h.welfare)
