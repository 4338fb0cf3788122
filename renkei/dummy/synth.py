"""The full-scale synthetic 新宿区 (and a 中野区 sample): people, households, moves.

`generate(SynthConfig(...))` runs the stages below, each with its own random stream
derived from the seed (so a change in one stage does not reshuffle the others), and
returns a `SynthPopulation`:

1. plans — households of each ward drawn against the age quota (`households`);
2. people — birth dates, nationality, names, addresses (`names`, `addresses`);
3. moves — who moved in during the event window and from where (中野区 ↔ 新宿区 both
   ways), who moved within the ward, who moved out (households that are gone), who died;
4. outsiders — invented non-residents living elsewhere (sources of 住登外者 records);
5. identifiers — 個人番号 and 住民票コード for everyone, unique, by the J-LIS
   simulator's scheme (`renkei.core.ids`);
6. attributes, business numbers, business data (`attributes`, `business`);
7. change records (`events`); 8. non-resident records with noise (`nonresidents`).

Everything is deterministic for a seed. Everything is made up.

The demo's small population (`renkei demo`, the end-to-end tests, the benchmark) is a
configuration of the same generator: `demo_config` (500 people, a few 新宿区 families who
moved in from 中野区 after the 賦課期日, no outsiders or noisy records).
"""

from __future__ import annotations

import gc
import random
from bisect import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import accumulate
from typing import Final

from renkei.core.ids import generate_individual_number, generate_resident_code, make_atena_no
from renkei.dummy import attributes, business, events, nonresidents, tables
from renkei.dummy import households as hh_plan
from renkei.dummy.addresses import ABROAD, OutsideAddresses, WardAddresses
from renkei.dummy.households import COHABITANT, HouseholdPlan, plan_households, quota_from_table
from renkei.dummy.model import (
    CHILD,
    DECEASED,
    FEMALE,
    HEAD,
    HUSBAND,
    MALE,
    MOVED_OUT,
    NAKANO,
    OUTSIDER,
    RESIDENT,
    SERIAL_OFFSET,
    SHINJUKU,
    WARDS,
    WIFE,
    Household,
    Person,
    SynthPopulation,
    add_years,
    serial_base,
    stage_rng,
    tax_year_for,
)
from renkei.dummy.names import ALIASES, NamePools, name_pools

__all__ = [
    "DEFAULT_NAKANO_RATIO",
    "DEMO_SEED",
    "SynthConfig",
    "demo_config",
    "generate",
]

# 中野区 is a sample: by default 20,000 people for 343,000 in 新宿区 (configurable).
DEFAULT_NAKANO_RATIO: Final = 20_000 / 343_000
NAKANO_FOREIGN_SHARE: Final = 0.07

# Moves in the event window (per household, by the 世帯主's age): Shinjuku takes in
# about 13 % of its population a year, mostly young adults and foreign residents.
_MOVE_IN_BY_AGE: Final = ((20, 0.80), (25, 0.55), (30, 0.42), (35, 0.30), (45, 0.18), (65, 0.08), (200, 0.03))
_FOREIGN_MOVE_BONUS: Final = 0.2
_MOVE_WITHIN_SHARE: Final = 0.09  # of households not new in the window
_FROM_OTHER_WARD: Final = {SHINJUKU: 0.05, NAKANO: 0.5}  # 転入 from the other of the two
_FROM_ABROAD_FOREIGN: Final = 0.45
_FROM_ABROAD_JAPANESE: Final = 0.03
_OUT_TO_IN_RATIO: Final = 0.95  # 転出 persons per 転入 person (the ward grows slowly)
_DEATHS_PER_YEAR: Final = 0.0077
_WIDOWED_SHARE: Final = 0.4  # of deaths: a spouse of a 世帯主 who now lives alone
_KEEP_OWN_FAMILY_NAME: Final = frozenset({"CN", "TW", "KR", "VN", "MM"})


@dataclass(frozen=True, slots=True)
class SynthConfig:
    seed: int = 20240101
    people: int = 343_000  # 新宿区 residents on the reference date
    nakano_people: int | None = None  # default: people × DEFAULT_NAKANO_RATIO
    reference_date: date = date(2025, 4, 1)
    window_years: int = 2  # register events of the last N years
    outsiders: int | None = None  # invented non-residents; default people // 100
    non_residents: int | None = None  # 住登外者 records in 新宿区's systems; default people // 20
    with_noise: bool = True
    # Families of 新宿区 (with a child under 15) made movers from 中野区 after the 賦課期日 of
    # the tax year, on top of the moves drawn for everyone: 中野区 then taxes their parents.
    family_movers: int = 0
    serial_offset: int = SERIAL_OFFSET  # of the business numbers in each range

    @property
    def nakano(self) -> int:
        if self.nakano_people is not None:
            return self.nakano_people
        return max(50, round(self.people * DEFAULT_NAKANO_RATIO))

    @property
    def window_start(self) -> date:
        return add_years(self.reference_date, -self.window_years)


DEMO_SEED: Final = 20151201
DEMO_FAMILY_MOVERS: Final = 8


def demo_config(seed: int = DEMO_SEED, people: int = 300, nakano_people: int = 200) -> SynthConfig:
    """The demo's small population: `people` in 新宿区 and `nakano_people` in 中野区.

    `DEMO_FAMILY_MOVERS` families moved from 中野区 to 新宿区 after the 賦課期日, so that
    中野区 holds their parents' local-tax copies and their children have none (the demo's
    scenarios); no invented outsiders and no noisy non-resident records (the demo loads
    neither); business numbers from the first serial of each range, below those of
    `renkei dummy load` (`SERIAL_OFFSET`), so that both can be loaded into one federation.
    """
    return SynthConfig(seed=seed, people=people, nakano_people=nakano_people, outsiders=0, non_residents=0,
                       with_noise=False, family_movers=DEMO_FAMILY_MOVERS, serial_offset=0)  # fmt: skip


# --- small helpers ----------------------------------------------------------------------


def _uniform_date(rng: random.Random, lo: date, hi: date) -> date:
    if hi <= lo:
        return lo
    return lo + timedelta(days=rng.randint(0, (hi - lo).days))


def _age_window(ref: date, age: int) -> tuple[date, date]:
    """Birth dates giving `age` on `ref`."""
    return add_years(ref, -(age + 1)) + timedelta(days=1), add_years(ref, -age)


class _Ids:
    def __init__(self) -> None:
        self.next_person = 0
        self.households: dict[str, int] = {}

    def person_key(self) -> str:
        self.next_person += 1
        return f"P{self.next_person:07d}"

    def household_id(self, lg_code: str) -> str:
        n = self.households.get(lg_code, 0) + 1
        self.households[lg_code] = n
        return make_atena_no(serial_base(lg_code, "household") + n)


# --- stage 2: people --------------------------------------------------------------------


class _Nationalities:
    def __init__(self, lg_code: str) -> None:
        self.items = tuple(n for n in tables.nationalities() if n.share[lg_code] > 0)
        self.cum = tuple(accumulate(n.share[lg_code] for n in self.items))

    def draw(self, rng: random.Random) -> tables.Nationality:
        return self.items[bisect(self.cum, rng.random() * self.cum[-1])]


class _People:
    """Turns household plans into households of persons with names and an address."""

    def __init__(self, seed: int, ids: _Ids, ref: date) -> None:
        self.rng = stage_rng(seed, "people")
        self.ids = ids
        self.ref = ref
        self.pools: NamePools = name_pools()
        self.nat = {lg: _Nationalities(lg) for lg in (SHINJUKU, NAKANO)}
        self.by_code = {n.code: n for n in tables.nationalities()}
        self.addresses = {
            lg: WardAddresses(stage_rng(seed, f"addresses:{lg}"), lg, WARDS[lg].name)
            for lg in (SHINJUKU, NAKANO)
        }

    def birth_dates(self, plan: HouseholdPlan) -> list[date]:
        """Birth dates for the plan's ages; siblings at least 300 days apart (or twins)."""
        rng, ref = self.rng, self.ref
        out: list[date | None] = [None] * len(plan.members)
        kids = sorted((i for i, m in enumerate(plan.members) if m.relationship == CHILD),
                      key=lambda i: -plan.members[i].age)  # fmt: skip
        previous: tuple[int, date] | None = None
        for i in kids:
            age = plan.members[i].age
            lo, hi = _age_window(ref, age)
            if previous is not None and previous[0] == age:
                out[i] = previous[1]  # twins
                continue
            if previous is not None:
                lo = max(lo, previous[1] + timedelta(days=300))
            d = _uniform_date(rng, lo, hi)
            out[i] = d
            previous = (age, d)
        for i, m in enumerate(plan.members):
            if out[i] is None:
                out[i] = _uniform_date(rng, *_age_window(ref, m.age))
        return [d for d in out if d is not None]

    def household(self, plan: HouseholdPlan, lg_code: str, *, status: str = RESIDENT) -> Household:
        rng = self.rng
        household = Household(self.ids.household_id(lg_code), lg_code, plan.kind, plan.foreign,
                              current=status == RESIDENT)  # fmt: skip
        births = self.birth_dates(plan)
        home_nat = self.nat[lg_code].draw(rng) if plan.foreign else None
        for m, birth in zip(plan.members, births, strict=True):
            if not m.foreign:
                nationality = "JP"
            elif home_nat is not None and (m.relationship != COHABITANT or rng.random() < 0.8):
                nationality = home_nat.code
            else:
                nationality = self.nat[lg_code].draw(rng).code
            household.members.append(
                Person(self.ids.person_key(), lg_code, status, m.sex, birth, m.relationship, nationality)
            )
        self.name(household)
        address = self.addresses[lg_code].allocate(kind=plan.kind, foreign=plan.foreign)
        household.postal_code, household.address, household.town = address.postal_code, address.text, address.town
        for p in household.members:
            p.household_id, p.postal_code, p.address = household.id, address.postal_code, address.text
        return household

    def name(self, household: Household) -> None:
        rng, pools = self.rng, self.pools
        head = household.members[0]
        japanese_family = pools.japanese_family(rng) if not household.foreign else None
        home_family: dict[str, tables.ForeignName] = {}
        used_given: set[str] = set()
        for p in household.members:
            if not p.is_foreign:
                if japanese_family is None:  # a Japanese member of a foreign household
                    japanese_family = pools.japanese_family(rng)
                p.family_name, p.family_kana = japanese_family
                for _ in range(8):  # siblings do not share a given name
                    given, given_kana = pools.japanese_given(rng, p.sex, p.birth_date.year)
                    if given not in used_given:
                        break
                used_given.add(given)
                p.given_name, p.given_kana = given, given_kana
                continue
            nat = self.by_code[p.nationality]
            own = (
                p.relationship == COHABITANT
                or nat.code != head.nationality
                or (nat.code in _KEEP_OWN_FAMILY_NAME and p.relationship in (WIFE, HUSBAND))
                or nat.code == "MM"  # Myanmar names have no family name
            )
            if own or nat.pool not in home_family:
                family = pools.foreign_family(rng, nat.pool)
                if not own:
                    home_family[nat.pool] = family
            else:
                family = home_family[nat.pool]
            full = pools.foreign_full(rng, nat.pool, p.sex, family, nat.kanji_names)
            p.family_name, p.given_name = full.family_name, full.given_name
            p.family_kana, p.given_kana, p.alpha_name = full.family_kana, full.given_kana, full.alpha_name
        if head.nationality == "KR" and head.family_name in ALIASES:
            # Older Korean residents (特別永住者) often registered a Japanese 通称.
            share = 0.5 if head.age_on(self.ref) >= 50 else 0.08
            if rng.random() < share:
                alias, alias_kana = rng.choice(ALIASES[head.family_name])
                for p in household.members:
                    if p.nationality == "KR" and p.family_name == head.family_name:
                        p.alias_family_name, p.alias_family_kana = alias, alias_kana


# --- stage 3: moves ---------------------------------------------------------------------


def _move_in_probability(head: Person, ref: date) -> float:
    age = head.age_on(ref)
    p = next(v for limit, v in _MOVE_IN_BY_AGE if age < limit)
    if head.is_foreign:
        p = min(0.9, p + _FOREIGN_MOVE_BONUS)
    return p


class _Moves:
    def __init__(self, seed: int, people: _People, window_start: date, ref: date) -> None:
        self.rng = stage_rng(seed, "moves")
        self.people = people
        self.w0 = window_start
        self.ref = ref
        self.last_day = ref - timedelta(days=1)
        self.outside = OutsideAddresses(stage_rng(seed, "outside-addresses"))
        self.nationality_names = {n.code: n.name for n in tables.nationalities()}

    def earlier_since(self, household: Household) -> date:
        """A 住民となった日 before the window, not before the 世帯主 was 18 (or born)."""
        head = household.members[0]
        earliest = max(add_years(head.birth_date, 18), add_years(self.w0, -40))
        latest = self.w0 - timedelta(days=1)
        if earliest > latest:
            earliest = head.birth_date
        return _uniform_date(self.rng, earliest, latest)

    def origin(self, household: Household, lg_code: str) -> tuple[str | None, str, str]:
        """(previous lg_code or None for abroad, previous address, previous postal code)."""
        rng = self.rng
        other = NAKANO if lg_code == SHINJUKU else SHINJUKU
        abroad = _FROM_ABROAD_FOREIGN if household.foreign else _FROM_ABROAD_JAPANESE
        r = rng.random()
        if r < _FROM_OTHER_WARD[lg_code]:
            a = self.people.addresses[other].allocate(kind=household.kind, foreign=household.foreign)
            return other, a.text, a.postal_code
        if r < _FROM_OTHER_WARD[lg_code] + abroad:
            country = self.nationality_names.get(household.members[0].nationality, "")
            return None, f"{ABROAD}（{country}）" if household.foreign else f"{ABROAD}（米国）", ""
        lg, a = self.outside.draw()
        return lg, a.text, a.postal_code

    def settle(self, household: Household) -> None:
        """Decide when the household came and whether it moved within the ward."""
        rng, w0 = self.rng, self.w0
        head = household.members[0]
        if rng.random() < _move_in_probability(head, self.ref):
            moved = _uniform_date(rng, w0, self.last_day)
            self.move_in(household, moved, self.origin(household, household.lg_code))
            return
        since = self.earlier_since(household)
        for p in household.members:
            p.resident_since = max(since, p.birth_date)
        if rng.random() < _MOVE_WITHIN_SHARE:
            on = _uniform_date(rng, w0, self.last_day)
            old = self.people.addresses[household.lg_code].allocate(kind=household.kind, foreign=household.foreign)
            for p in household.members:
                if p.birth_date < on:
                    p.moved_within_on = on
                    p.previous_address, p.previous_postal_code = old.text, old.postal_code

    def move_in(self, household: Household, moved: date, origin: tuple[str | None, str, str]) -> None:
        """The household moved in on `moved` from `origin` (see `origin`); whatever was
        decided before about where its members came from is replaced."""
        prev_lg, prev_address, prev_postal = origin
        prev_household = self.people.ids.household_id(prev_lg) if prev_lg is not None and prev_lg in WARDS else None
        for p in household.members:
            p.moved_within_on = None
            if p.birth_date < moved:
                p.resident_since, p.moved_in_on = moved, moved
                p.previous_lg_code, p.previous_address = prev_lg, prev_address
                p.previous_postal_code = prev_postal or None
                p.previous_household_id = prev_household
            else:
                p.resident_since = p.birth_date  # born here after the move
                p.moved_in_on = p.previous_lg_code = p.previous_address = None
                p.previous_postal_code = p.previous_household_id = None

    def families_from(self, seed: int, households: Sequence[Household], n: int, after: date) -> None:
        """Make up to `n` families of 新宿区 with a child under 15 movers from 中野区 after
        `after` (`SynthConfig.family_movers`), each with a child born before the move."""
        rng = stage_rng(seed, "moves:families")
        young = add_years(self.ref, -15)
        candidates = [h for h in households if h.lg_code == SHINJUKU and h.current
                      and any(m.relationship == CHILD and m.birth_date > young for m in h.members)]  # fmt: skip
        for h in rng.sample(candidates, min(n, len(candidates))):
            eldest = min(m.birth_date for m in h.members if m.relationship == CHILD and m.birth_date > young)
            lo = max(self.w0, after, eldest) + timedelta(days=1)
            moved = _uniform_date(rng, min(lo, self.last_day), self.last_day)
            a = self.people.addresses[NAKANO].allocate(kind=h.kind, foreign=h.foreign)
            self.move_in(h, moved, (NAKANO, a.text, a.postal_code))

    def leave(self, household: Household, status: str) -> None:
        """A household that moved out (or, single, died) during the window."""
        rng = self.rng
        youngest = max(p.birth_date for p in household.members)
        since = self.earlier_since(household)
        left = _uniform_date(rng, max(self.w0, youngest + timedelta(days=1)), self.last_day)
        destination: tuple[str | None, str | None, str | None] = (None, None, None)
        if status == MOVED_OUT:
            abroad = _FROM_ABROAD_FOREIGN if household.foreign else _FROM_ABROAD_JAPANESE
            if rng.random() < abroad:
                country = self.nationality_names.get(household.members[0].nationality, "米国")
                destination = (None, f"{ABROAD}（{country}）", None)
            else:
                lg, a = self.outside.draw()
                destination = (lg, a.text, a.postal_code)
        for p in household.members:
            p.resident_since = max(since, p.birth_date)
            p.left_on = left
            p.destination_lg_code, p.destination_address, p.destination_postal_code = destination


# --- assembly ---------------------------------------------------------------------------


def _mobility_weight(group: int, age: int) -> float:
    """Who moves: mostly 18–39, foreign residents more (for the households that left)."""
    base = 0.15 if age < 18 else 1.6 if age < 25 else 1.4 if age < 35 else 0.6 if age < 45 else 0.25 if age < 65 else 0.1
    return base * (1.6 if group == hh_plan.FOREIGN else 1.0)


def _mortality_weight(group: int, age: int) -> float:
    return 0.0 if age < 40 else 2.718 ** ((age - 85) / 9)


def generate(config: SynthConfig = SynthConfig(), progress: Callable[[str], None] | None = None) -> SynthPopulation:
    """Generate the population (see the module docstring for the stages)."""
    # Millions of small objects and no reference cycles: the cyclic collector would only
    # rescan them again and again (about a tenth of the run), so it waits until the end.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _generate(config, progress)
    finally:
        if was_enabled:
            gc.enable()


def _generate(config: SynthConfig, progress: Callable[[str], None] | None) -> SynthPopulation:
    note = progress or (lambda _stage: None)
    if config.people < 100:
        raise ValueError("people must be at least 100")
    ref, w0 = config.reference_date, config.window_start
    tax_year = tax_year_for(ref)
    ids = _Ids()
    seed = config.seed

    note("households")
    plans = {
        SHINJUKU: plan_households(stage_rng(seed, "plans:shinjuku"), quota_from_table(config.people)),
        NAKANO: plan_households(
            stage_rng(seed, "plans:nakano"), quota_from_table(config.nakano, NAKANO_FOREIGN_SHARE)
        ),
    }
    note("people")
    people = _People(seed, ids, ref)
    households: list[Household] = []
    for lg in (SHINJUKU, NAKANO):
        households.extend(people.household(plan, lg) for plan in plans[lg])
    del plans  # the plans are as large as the people: free them before the next stages

    note("moves")
    moves = _Moves(seed, people, w0, ref)
    for h in households:
        moves.settle(h)
    if config.family_movers:
        moves.families_from(seed, households, config.family_movers, date(tax_year, 1, 1))
    # Households that left 新宿区 for elsewhere (those who left for 中野区 are 中野区 residents).
    moved_in = sum(1 for h in households if h.lg_code == SHINJUKU for p in h.members if p.moved_in_on)
    to_nakano = sum(1 for h in households if h.lg_code == NAKANO for p in h.members if p.previous_lg_code == SHINJUKU)
    leavers = max(0, round(moved_in * _OUT_TO_IN_RATIO) - to_nakano)
    former: list[Household] = []
    if leavers:
        leaver_plans = plan_households(
            stage_rng(seed, "plans:leavers"), quota_from_table(leavers, weight=_mobility_weight), single_share=0.72
        )
        for plan in leaver_plans:
            h = people.household(plan, SHINJUKU, status=MOVED_OUT)
            moves.leave(h, MOVED_OUT)
            former.append(h)
    _deaths(seed, config, people, moves, households, former)
    households.extend(former)

    note("outsiders")
    outsiders = _outsiders(seed, config, ids, people, moves)

    persons = [p for h in households for p in h.members] + outsiders
    persons.sort(key=lambda p: p.key)
    note("identifiers")
    _identifiers(seed, persons)

    pop = SynthPopulation(seed, ref, w0, tax_year, persons, households, [], (SHINJUKU, NAKANO),
                          serial_offset=config.serial_offset)  # fmt: skip
    note("attributes")
    attributes.decide(pop)
    note("business numbers")
    business.assign_numbers(pop)
    note("change records")
    pop.changes = events.change_records(pop)
    if config.with_noise:
        note("non-residents")
        _non_residents(seed, config, pop)
    return pop


def _deaths(
    seed: int, config: SynthConfig, people: _People, moves: _Moves, households: list[Household], former: list[Household]
) -> None:
    """Residents of 新宿区 who died in the window: widowed spouses' partners, or elderly singles."""
    rng = stage_rng(seed, "deaths")
    n = round(config.people * _DEATHS_PER_YEAR * config.window_years)
    if n == 0:
        return
    quota = quota_from_table(n, weight=_mortality_weight)
    plans = plan_households(stage_rng(seed, "plans:deceased"), quota, single_share=1.0)
    widowed = [
        h for h in households
        if h.lg_code == SHINJUKU and h.kind == hh_plan.HouseholdKind.SINGLE and h.members[0].age_on(config.reference_date) >= 65
        and h.members[0].moved_in_on is None and h.members[0].moved_within_on is None
    ]  # fmt: skip
    rng.shuffle(widowed)
    for plan in plans:
        for m in plan.members:
            m.relationship = HEAD
        if widowed and rng.random() < _WIDOWED_SHARE:
            survivor_household = widowed.pop()
            survivor = survivor_household.members[0]
            _add_deceased_spouse(rng, people, survivor_household, survivor, config.reference_date, moves)
            continue
        h = people.household(plan, SHINJUKU, status=DECEASED)
        moves.leave(h, DECEASED)
        former.append(h)


def _add_deceased_spouse(
    rng: random.Random, people: _People, household: Household, survivor: Person, ref: date, moves: _Moves
) -> None:
    sex = FEMALE if survivor.sex == MALE else MALE
    age = max(60, min(tables.MAX_AGE, survivor.age_on(ref) + rng.randint(-3, 6) * (1 if sex == MALE else -1)))
    birth = _uniform_date(rng, *_age_window(ref, age))
    spouse = Person(people.ids.person_key(), household.lg_code, DECEASED, sex, birth,
                    WIFE if sex == FEMALE else HUSBAND, survivor.nationality)  # fmt: skip
    if survivor.is_foreign:
        nat = people.by_code[survivor.nationality]
        family = people.pools.foreign_family(rng, nat.pool)
        full = people.pools.foreign_full(rng, nat.pool, sex, family, nat.kanji_names)
        spouse.family_name, spouse.given_name = full.family_name, full.given_name
        spouse.family_kana, spouse.given_kana, spouse.alpha_name = full.family_kana, full.given_kana, full.alpha_name
    else:
        spouse.family_name, spouse.family_kana = survivor.family_name, survivor.family_kana
        spouse.given_name, spouse.given_kana = people.pools.japanese_given(rng, sex, birth.year)
    spouse.household_id, spouse.postal_code, spouse.address = household.id, household.postal_code, household.address
    spouse.resident_since = max(survivor.resident_since or survivor.birth_date, add_years(birth, 18))
    spouse.left_on = _uniform_date(rng, max(moves.w0, spouse.resident_since + timedelta(days=1)), moves.last_day)
    household.members.append(spouse)


def _outsiders(seed: int, config: SynthConfig, ids: _Ids, people: _People, moves: _Moves) -> list[Person]:
    """Invented non-residents: people registered elsewhere who appear in 新宿区's systems
    (property-tax payers, former workers, …)."""
    rng = stage_rng(seed, "outsiders")
    n = config.outsiders if config.outsiders is not None else config.people // 100
    out = []
    for _ in range(n):
        foreign = rng.random() < 0.06
        sex = MALE if rng.random() < 0.55 else FEMALE
        age = rng.randint(25, 92)
        birth = _uniform_date(rng, *_age_window(config.reference_date, age))
        nat = people.nat[SHINJUKU].draw(rng) if foreign else None
        p = Person(ids.person_key(), "", OUTSIDER, sex, birth, HEAD, nat.code if nat else "JP")
        if nat is None:
            p.family_name, p.family_kana = people.pools.japanese_family(rng)
            p.given_name, p.given_kana = people.pools.japanese_given(rng, sex, birth.year)
        else:
            family = people.pools.foreign_family(rng, nat.pool)
            full = people.pools.foreign_full(rng, nat.pool, sex, family, nat.kanji_names)
            p.family_name, p.given_name = full.family_name, full.given_name
            p.family_kana, p.given_kana, p.alpha_name = full.family_kana, full.given_kana, full.alpha_name
        lg, a = moves.outside.draw()
        p.lg_code, p.postal_code, p.address = lg, a.postal_code, a.text
        out.append(p)
    return out


def _identifiers(seed: int, persons: Sequence[Person]) -> None:
    """個人番号 and 住民票コード, unique over everyone (J-LIS issues both nationwide)."""
    rng = stage_rng(seed, "ids")
    numbers: set[str] = set()
    codes: set[str] = set()
    for p in persons:
        number = generate_individual_number(rng)
        while number in numbers:
            number = generate_individual_number(rng)
        numbers.add(number)
        code = generate_resident_code(rng)
        while code in codes:
            code = generate_resident_code(rng)
        codes.add(code)
        p.individual_number, p.resident_code = number, code


def _non_residents(seed: int, config: SynthConfig, pop: SynthPopulation) -> None:
    shinjuku = config.non_residents if config.non_residents is not None else config.people // 20
    counts = {SHINJUKU: shinjuku, NAKANO: round(shinjuku * config.nakano / max(1, config.people))}
    nonresidents.make(pop, stage_rng(seed, "non-residents"), counts)
