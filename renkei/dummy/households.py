"""Household plans drawn against age quotas, so that the people match an age table.

The published age structure becomes a quota: how many people of each group (Japanese /
foreign), sex and single year of age the ward must hold. Households are then built kind
by kind; every member's age is drawn from the ages the kind allows, weighted by what is
still left of the quota (times a shape: a mother is most often about 31 years older than
her first child, a husband about two years older than his wife, …). Whatever the
families, couples and shared households leave over becomes single-person households —
which is what Shinjuku mostly is. Draws that find the allowed ages already used up take
an age anyway and overshoot that cell; `Quota.settle` takes the overshoot back from the
singles, so the total is exact and the marginals stay close to the table.

Ages are on the reference date; `synth` turns them into birth dates.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Final

from renkei.dummy import tables
from renkei.dummy.model import CHILD, FATHER, FEMALE, HEAD, HUSBAND, MALE, MOTHER, WIFE

__all__ = [
    "COHABITANT",
    "GROUPS",
    "JAPANESE",
    "FOREIGN",
    "HouseholdKind",
    "HouseholdPlan",
    "MemberPlan",
    "Quota",
    "plan_households",
    "quota_from_table",
]

JAPANESE: Final = 0
FOREIGN: Final = 1
GROUPS: Final = (JAPANESE, FOREIGN)
_SEXES: Final = (MALE, FEMALE)
COHABITANT: Final = "同居人"
_AGES: Final = tables.MAX_AGE + 1


class HouseholdKind:
    """Kinds of household (plain strings, so they serialise as they are)."""

    SINGLE = "single"
    COUPLE = "couple"
    FAMILY = "family"  # parents (or one) and children, at least one under 18
    SINGLE_PARENT = "single_parent"
    THREE_GENERATIONS = "three_generations"
    ADULT_CHILDREN = "adult_children"  # parents with children aged 18–34 only
    PARENT_AND_CHILD = "parent_and_child"  # a middle-aged 世帯主 with an elderly parent
    SHARED = "shared"  # unrelated adults registered as one household (同居人)


@dataclass(slots=True)
class MemberPlan:
    relationship: str
    sex: str
    age: int
    foreign: bool


@dataclass(slots=True)
class HouseholdPlan:
    kind: str
    foreign: bool  # the 世帯主's group
    members: list[MemberPlan] = field(default_factory=list)


class Quota:
    """Remaining persons per (group, sex, age); cells may go negative (overshoot)."""

    def __init__(self, cells: list[list[list[int]]]) -> None:
        self.cells = cells  # [group][sex index][age]

    def copy(self) -> Quota:
        return Quota([[list(ages) for ages in group] for group in self.cells])

    def total(self) -> int:
        return sum(sum(ages) for group in self.cells for ages in group)

    def positive(self, group: int, lo: int = 0, hi: int = tables.MAX_AGE) -> int:
        return self.positive_sex(group, 0, lo, hi) + self.positive_sex(group, 1, lo, hi)

    def draw(
        self,
        rng: random.Random,
        group: int,
        sex: str,
        lo: int,
        hi: int,
        shape: Sequence[float] | None = None,
    ) -> int:
        """An age in [lo, hi] for `sex`, weighted by the remaining quota × shape[age]."""
        lo, hi = max(0, lo), min(tables.MAX_AGE, hi)
        if lo > hi:
            lo = hi = max(0, min(tables.MAX_AGE, lo))
        ages = self.cells[group][0 if sex == MALE else 1]
        span = range(lo, hi + 1)
        weights: list[float]
        if shape is None:
            weights = [v if v > 0 else 0 for v in ages[lo : hi + 1]]
        else:
            weights = [(v if v > 0 else 0) * w for v, w in zip(ages[lo : hi + 1], shape[lo : hi + 1], strict=True)]
        if sum(weights) <= 0:
            # The allowed ages are used up: overshoot one (by shape, else uniformly).
            weights = list(shape[lo : hi + 1]) if shape is not None else [1.0] * len(span)
            if sum(weights) <= 0:
                weights = [1.0] * len(span)
        age = rng.choices(span, weights)[0]
        ages[age] -= 1
        return age

    def draw_any_sex(
        self, rng: random.Random, group: int, lo: int, hi: int, shape: Sequence[float] | None = None
    ) -> tuple[str, int]:
        male = self.positive_sex(group, 0, lo, hi)
        female = self.positive_sex(group, 1, lo, hi)
        if male + female <= 0:
            sex = MALE if rng.random() < 0.51 else FEMALE
        else:
            sex = MALE if rng.random() * (male + female) < male else FEMALE
        return sex, self.draw(rng, group, sex, lo, hi, shape)

    def positive_sex(self, group: int, sex_index: int, lo: int, hi: int) -> int:
        part = self.cells[group][sex_index][max(0, lo) : hi + 1]
        if not part:
            return 0
        # Cells are rarely negative: the plain sum is the fast path.
        return sum(part) if min(part) >= 0 else sum(v for v in part if v > 0)

    def settle(self, overshoot: int) -> None:
        """Take `overshoot` persons back from the largest remaining cells."""
        while overshoot > 0:
            g, s, a = max(
                ((g, s, a) for g in GROUPS for s in (0, 1) for a in range(18, _AGES)),
                key=lambda k: self.cells[k[0]][k[1]][k[2]],
            )
            take = min(overshoot, max(1, self.cells[g][s][a] // 4))
            if self.cells[g][s][a] <= 0:
                raise ValueError("quota too small for the households already planned")
            take = min(take, self.cells[g][s][a])
            self.cells[g][s][a] -= take
            overshoot -= take

    def overshoot(self) -> int:
        return -sum(v for group in self.cells for ages in group for v in ages if v < 0)


def quota_from_table(
    n: int,
    foreign_share: float | None = None,
    weight: Callable[[int, int], float] | None = None,
) -> Quota:
    """Target persons per (group, sex, age) for a ward of `n` people.

    `foreign_share` rescales the foreign part (None: the table's own share); `weight(group,
    age)` reweights cells (for movers: mostly young adults). Rounding by largest remainder
    makes the total exactly `n`.
    """
    bands = tables.age_structure()
    raw: list[tuple[tuple[int, int, int], float]] = []
    for b in bands:
        ages = list(range(b.low, b.high + 1))
        if b.high == tables.MAX_AGE:
            spread = [0.72**i for i in range(len(ages))]  # 95+ thins out with age
        else:
            spread = [1.0] * len(ages)
        total_spread = sum(spread)
        counts = ((JAPANESE, 0, b.japanese_male), (JAPANESE, 1, b.japanese_female),
                  (FOREIGN, 0, b.foreign_male), (FOREIGN, 1, b.foreign_female))  # fmt: skip
        for group, sex, count in counts:
            for age, s in zip(ages, spread, strict=True):
                w = weight(group, age) if weight is not None else 1.0
                raw.append(((group, sex, age), count * s / total_spread * w))
    if foreign_share is not None:
        j = sum(v for (g, _, _), v in raw if g == JAPANESE)
        f = sum(v for (g, _, _), v in raw if g == FOREIGN)
        if f > 0 and 0 <= foreign_share < 1:
            jf = (1 - foreign_share) / j
            ff = foreign_share / f
            raw = [(k, v * (jf if k[0] == JAPANESE else ff)) for k, v in raw]
    total = sum(v for _, v in raw)
    scaled = [(k, v * n / total) for k, v in raw]
    cells = [[[0] * _AGES for _ in (0, 1)] for _ in GROUPS]
    floors = 0
    for (g, s, a), v in scaled:
        cells[g][s][a] = int(v)
        floors += int(v)
    remainders = sorted(scaled, key=lambda kv: kv[1] - int(kv[1]), reverse=True)
    for (g, s, a), _ in remainders[: n - floors]:
        cells[g][s][a] += 1
    return Quota(cells)


# --- shapes -----------------------------------------------------------------------------


@cache
def _gauss(mean: float, sd: float) -> tuple[float, ...]:
    """exp(-z²/2) by age: a shape peaked at `mean` (cached: means are whole ages)."""
    return tuple(math.exp(-(((a - mean) / sd) ** 2) / 2) for a in range(_AGES))


# Relative propensity to be (registered as) one of a couple, by age. Shinjuku's young
# adults are mostly single; the elderly are often couples, then widowed.
_COUPLE_BY_AGE: Final = (
    (20, 0.02), (25, 0.12), (30, 0.32), (35, 0.45), (40, 0.5), (50, 0.5), (60, 0.55),
    (65, 0.6), (75, 0.5), (80, 0.35), (85, 0.18), (90, 0.07), (200, 0.0),
)  # fmt: skip


def _couple_value(age: int) -> float:
    if age < 20:
        return 0.0
    for limit, value in _COUPLE_BY_AGE:
        if age < limit:
            return value
    return 0.0


_COUPLE_SHAPE: Final = tuple(_couple_value(a) for a in range(_AGES))
_SIBLING_GAP: Final = tuple(math.exp(-d / 3.0) for d in range(_AGES))


# Share of each age 18–34 living with their parents (Japanese; foreign residents rarely).
def _at_home_share(group: int, age: int) -> float:
    if not 18 <= age <= 34:
        return 0.0
    if group == FOREIGN:
        return 0.03 if age < 25 else 0.0
    return 0.16 if age < 25 else 0.09 if age < 30 else 0.05


_AT_HOME_SHAPE: Final = {g: tuple(_at_home_share(g, a) for a in range(_AGES)) for g in (0, 1)}


@dataclass(frozen=True, slots=True)
class _Mix:
    single_share: float  # target share of single-person households
    two_parent: float  # of families with minors
    single_parent: float
    mixed_marriage: float  # of Japanese couples, a foreign spouse
    parent_and_child: float  # per person, households of an adult child with an elderly parent
    shared_foreign: float  # per foreign person aged 18–34, shared households
    shared_japanese: float


_MIX: Final = _Mix(
    single_share=0.66,
    two_parent=0.83,
    single_parent=0.12,
    mixed_marriage=0.03,
    parent_and_child=0.010,
    shared_foreign=0.06,
    shared_japanese=0.005,
)


class _Planner:
    def __init__(self, rng: random.Random, quota: Quota, mix: _Mix) -> None:
        self.rng = rng
        self.q = quota
        self.mix = mix
        self.plans: list[HouseholdPlan] = []

    # --- members ------------------------------------------------------------------------

    def member(self, rel: str, group: int, sex: str, lo: int, hi: int,
               shape: Sequence[float] | None = None) -> MemberPlan:  # fmt: skip
        return MemberPlan(rel, sex, self.q.draw(self.rng, group, sex, lo, hi, shape), group == FOREIGN)

    def parents(self, group: int, eldest: int, youngest: int, *, single: bool) -> list[MemberPlan]:
        rng = self.rng
        m_lo, m_hi = max(youngest + 20, eldest + 19), min(eldest + 44, youngest + 45)
        mother_group = group
        if group == JAPANESE and not single and rng.random() < self.mix.mixed_marriage * 0.7:
            mother_group = FOREIGN
        if single and rng.random() < 0.12:  # single fathers
            father = self.member(HEAD, group, MALE, max(youngest + 20, eldest + 20), eldest + 55,
                                 _gauss(eldest + 34, 6))  # fmt: skip
            return [father]
        mother = self.member(WIFE, mother_group, FEMALE, m_lo, m_hi, _gauss(eldest + 31, 5))
        if single:
            mother.relationship = HEAD
            return [mother]
        father_group = group
        if group == JAPANESE and mother_group == JAPANESE and rng.random() < self.mix.mixed_marriage * 0.3:
            father_group = FOREIGN
        f_lo = max(eldest + 20, mother.age - 6)
        father = self.member(HEAD, father_group, MALE, f_lo, mother.age + 12, _gauss(mother.age + 2, 3.5))
        if rng.random() < 0.12:  # the wife is 世帯主
            mother.relationship, father.relationship = HEAD, HUSBAND
            return [mother, father]
        return [father, mother]

    def children(
        self, group: int, first_age: int, first_sex: str, n: int, max_age: int, min_age: int = 0
    ) -> list[MemberPlan]:
        kids = [MemberPlan(CHILD, first_sex, first_age, group == FOREIGN)]
        for _ in range(n - 1):
            anchor = kids[0].age
            taken = {k.age for k in kids}
            lo, hi = max(min_age, anchor - 9), min(max_age, anchor + 9)
            # Siblings a few years apart; the same age only as twins.
            shape = [0.0] * _AGES
            for a in range(lo, hi + 1):
                shape[a] = 0.02 if a in taken else _SIBLING_GAP[abs(a - anchor)]
            sex, age = self.q.draw_any_sex(self.rng, group, lo, hi, shape)
            kids.append(MemberPlan(CHILD, sex, age, group == FOREIGN))
        kids.sort(key=lambda m: -m.age)
        return kids

    # --- kinds --------------------------------------------------------------------------

    def families(self, group: int) -> None:
        rng, q, mix = self.rng, self.q, self.mix
        while q.positive(group, 0, 17) > 0:
            r = rng.random()
            kind = (HouseholdKind.FAMILY if r < mix.two_parent
                    else HouseholdKind.SINGLE_PARENT if r < mix.two_parent + mix.single_parent
                    else HouseholdKind.THREE_GENERATIONS)  # fmt: skip
            n = rng.choices((1, 2, 3, 4), (0.46, 0.40, 0.12, 0.02))[0]
            sex, age = q.draw_any_sex(rng, group, 0, 17)
            kids = self.children(group, age, sex, n, 24)
            parents = self.parents(group, kids[0].age, kids[-1].age,
                                   single=kind == HouseholdKind.SINGLE_PARENT)  # fmt: skip
            members = parents + kids
            if kind == HouseholdKind.THREE_GENERATIONS:
                head = parents[0]
                for rel, s, p in ((MOTHER, FEMALE, 0.85), (FATHER, MALE, 0.45)):
                    if rng.random() < p:
                        members.append(self.member(rel, group, s, head.age + 22, head.age + 42,
                                                   _gauss(head.age + 30, 5)))  # fmt: skip
            self.plans.append(HouseholdPlan(kind, parents[0].foreign, members))

    def adult_children(self, group: int) -> None:
        rng, q = self.rng, self.q
        target = sum(
            max(0, q.cells[group][s][a]) * _at_home_share(group, a) for s in (0, 1) for a in range(18, 35)
        )
        placed = 0.0
        while placed < target:
            sex, age = q.draw_any_sex(rng, group, 18, 34, _AT_HOME_SHAPE[group])
            n = 2 if rng.random() < 0.3 else 1
            kids = self.children(group, age, sex, n, 34, min_age=18)
            parents = self.parents(group, kids[0].age, kids[-1].age, single=rng.random() < 0.25)
            self.plans.append(HouseholdPlan(HouseholdKind.ADULT_CHILDREN, parents[0].foreign, parents + kids))
            placed += len(kids)

    def parent_and_child(self, n_people: int) -> None:
        rng = self.rng
        for _ in range(round(n_people * self.mix.parent_and_child)):
            sex = MALE if rng.random() < 0.55 else FEMALE
            head = self.member(HEAD, JAPANESE, sex, 40, 69, _gauss(55, 7))
            rel, psex = (MOTHER, FEMALE) if rng.random() < 0.8 else (FATHER, MALE)
            parent = self.member(rel, JAPANESE, psex, head.age + 20, head.age + 42, _gauss(head.age + 29, 5))
            self.plans.append(HouseholdPlan(HouseholdKind.PARENT_AND_CHILD, False, [head, parent]))

    def shared(self, group: int, share: float) -> None:
        rng, q = self.rng, self.q
        target = q.positive(group, 18, 34) * share
        placed = 0
        while placed < target:
            size = 2 if rng.random() < 0.8 else 3
            members = []
            for i in range(size):
                sex, age = q.draw_any_sex(rng, group, 18, 34, _gauss(24, 4))
                members.append(MemberPlan(HEAD if i == 0 else COHABITANT, sex, age, group == FOREIGN))
            self.plans.append(HouseholdPlan(HouseholdKind.SHARED, group == FOREIGN, members))
            placed += size

    def couples(self, n_couples: int) -> None:
        rng, q = self.rng, self.q
        j_weight = sum(max(0, q.cells[JAPANESE][0][a]) * _COUPLE_SHAPE[a] for a in range(_AGES))
        f_weight = sum(max(0, q.cells[FOREIGN][0][a]) * _COUPLE_SHAPE[a] * 0.6 for a in range(_AGES))
        f_share = f_weight / (j_weight + f_weight) if j_weight + f_weight else 0.0
        for _ in range(n_couples):
            group = FOREIGN if rng.random() < f_share else JAPANESE
            husband = self.member(HEAD, group, MALE, 20, tables.MAX_AGE, _COUPLE_SHAPE)
            wife_group = group
            if group == JAPANESE and rng.random() < self.mix.mixed_marriage:
                wife_group = FOREIGN
            wife = self.member(WIFE, wife_group, FEMALE, max(18, husband.age - 15), husband.age + 8,
                               _gauss(husband.age - 2, 3.5))  # fmt: skip
            members = [husband, wife]
            if rng.random() < 0.1:
                wife.relationship, husband.relationship = HEAD, HUSBAND
                members = [wife, husband]
            self.plans.append(HouseholdPlan(HouseholdKind.COUPLE, members[0].foreign, members))

    def singles(self) -> None:
        for group in GROUPS:
            for s_index, sex in enumerate(_SEXES):
                ages = self.q.cells[group][s_index]
                for age in range(_AGES):
                    for _ in range(max(0, ages[age])):
                        self.plans.append(
                            HouseholdPlan(HouseholdKind.SINGLE, group == FOREIGN,
                                          [MemberPlan(HEAD, sex, age, group == FOREIGN)])  # fmt: skip
                        )
                    ages[age] = min(0, ages[age])


def plan_households(
    rng: random.Random, quota: Quota, *, single_share: float | None = None
) -> list[HouseholdPlan]:
    """Households for exactly `quota.total()` people, in a shuffled order.

    `single_share` is the target share of single-person households (default about two
    thirds, as in Shinjuku); couples are added until what is left makes that share.
    """
    n_people = quota.total()
    mix = _MIX
    if single_share is not None:
        mix = _Mix(single_share, _MIX.two_parent, _MIX.single_parent, _MIX.mixed_marriage,
                   _MIX.parent_and_child, _MIX.shared_foreign, _MIX.shared_japanese)  # fmt: skip
    p = _Planner(rng, quota, mix)
    for group in GROUPS:
        p.families(group)
    for group in GROUPS:
        p.adult_children(group)
    p.parent_and_child(n_people)
    p.shared(FOREIGN, mix.shared_foreign)
    p.shared(JAPANESE, mix.shared_japanese)
    # Couples: as many as leave the target share of single-person households.
    h0 = len(p.plans)
    remaining = sum(quota.positive(g, 18) for g in GROUPS)
    s = mix.single_share
    n_couples = max(0, int((remaining * (1 - s) - s * h0) / (2 - s)))
    p.couples(n_couples)
    quota.settle(quota.overshoot())
    p.singles()
    rng.shuffle(p.plans)
    return p.plans


def plan_sizes(plans: Sequence[HouseholdPlan]) -> int:
    return sum(len(p.members) for p in plans)
