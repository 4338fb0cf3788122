"""People and households: 続柄 and ages agree, names and kana agree, addresses are real,
and the age structure follows the table."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta

import pytest

from renkei.dummy import stats, tables
from renkei.dummy.households import COHABITANT, HouseholdKind
from renkei.dummy.model import (
    CHILD,
    FATHER,
    HEAD,
    HUSBAND,
    MOTHER,
    NAKANO,
    RESIDENT,
    SHINJUKU,
    WIFE,
    Person,
    SynthPopulation,
)
from renkei.dummy.names import VARIANTS, name_pools
from tests.dummy.synth_kit import SMALL, small_population

KATAKANA = re.compile(r"^[\u30a1-\u30fa\u30fc]+$")
ALPHA = re.compile(r"^[A-Z][A-Z -]*$")
REST = re.compile(r"^(?:(?P<chome>[一二三四五六七八九]+)丁目)?(?P<ban>\d+)番(?P<go>\d+)号(?: (?P<building>\S+?)(?P<room>\d+))?$")
WARD_NAMES = {SHINJUKU: "東京都新宿区", NAKANO: "東京都中野区"}


@pytest.fixture(scope="module")
def pop() -> SynthPopulation:
    return small_population()


def _residents(pop: SynthPopulation, lg: str = SHINJUKU) -> list[Person]:
    return [p for p in pop.persons if p.status == RESIDENT and p.lg_code == lg]


def test_counts_are_exact(pop: SynthPopulation) -> None:
    assert len(_residents(pop)) == SMALL.people
    assert len(_residents(pop, NAKANO)) == SMALL.nakano


def test_every_household_has_one_head_first_and_shares_an_address(pop: SynthPopulation) -> None:
    for h in pop.households:
        living = [m for m in h.members if m.status == RESIDENT] if h.current else h.members
        heads = [m for m in living if m.relationship == HEAD]
        assert len(heads) == 1, h.id
        assert h.members[0].relationship == HEAD
        assert {m.household_id for m in h.members} == {h.id}
        assert {m.address for m in h.members} == {h.address}
        assert {m.postal_code for m in h.members} == {h.postal_code}
        spouses = [m for m in living if m.relationship in (WIFE, HUSBAND)]
        assert len(spouses) <= 1


def test_ages_agree_with_relationships(pop: SynthPopulation) -> None:
    ref = pop.reference_date
    for h in pop.households:
        head = h.members[0]
        spouse = next((m for m in h.members if m.relationship in (WIFE, HUSBAND)), None)
        parents = [m for m in (head, spouse) if m is not None]
        kids = sorted((m for m in h.members if m.relationship == CHILD), key=lambda m: m.birth_date)
        if spouse is not None:
            assert spouse.age_on(ref) >= 18 and head.age_on(ref) >= 18
            assert spouse.sex != head.sex
        for kid in kids:
            assert any(18 <= (kid.birth_date - p.birth_date).days / 365.25 <= 56 for p in parents), (h.id, kid.key)
        for a, b in zip(kids, kids[1:], strict=False):
            gap = (b.birth_date - a.birth_date).days
            assert gap == 0 or gap >= 300, (h.id, gap)  # twins or siblings apart
        for elder in (m for m in h.members if m.relationship in (MOTHER, FATHER)):
            assert (head.birth_date - elder.birth_date).days / 365.25 >= 18
        if h.kind in (HouseholdKind.SINGLE, HouseholdKind.COUPLE, HouseholdKind.SHARED):
            assert head.age_on(ref) >= 18
        if h.kind == HouseholdKind.FAMILY:
            assert any(k.age_on(ref) < 18 for k in kids)


def test_birth_dates_give_ages_on_the_reference_date(pop: SynthPopulation) -> None:
    ref = pop.reference_date
    for p in pop.persons:
        assert p.birth_date < ref
        age = p.age_on(ref)
        assert 0 <= age <= tables.MAX_AGE + 1
        # age_on agrees with counting birthdays
        assert (ref.year - p.birth_date.year) - age in (0, 1)


def test_japanese_names_agree_with_their_kana(pop: SynthPopulation) -> None:
    pools = name_pools()
    families = {kanji: kana for kanji, kana in pools.family.items}
    givens = {pair for pool in pools.given.values() for pair in pool.items}
    back = {variant: plain for plain, variant, _ in VARIANTS}
    for p in pop.persons:
        if p.is_foreign:
            continue
        plain = "".join(back.get(c, c) for c in p.family_name)
        assert families.get(p.family_name) == p.family_kana or families.get(plain) == p.family_kana, p.key
        assert (p.given_name, p.given_kana) in givens, p.key
        assert KATAKANA.match(p.family_kana) and KATAKANA.match(p.given_kana)


def test_foreign_residents_have_alphabet_names_and_katakana(pop: SynthPopulation) -> None:
    foreign = [p for p in _residents(pop) if p.is_foreign]
    share = len(foreign) / SMALL.people
    assert 0.11 < share < 0.14  # the table's 12.5 %
    by_nat = Counter(p.nationality for p in foreign)
    assert by_nat.most_common(1)[0][0] == "CN"
    assert {"KR", "VN", "NP", "MM"} <= set(by_nat)
    kanji_nations = {n.code for n in tables.nationalities() if n.kanji_names}
    for p in foreign:
        assert p.alpha_name is not None and ALPHA.match(p.alpha_name), p.alpha_name
        assert KATAKANA.match(p.family_kana.replace(" ", "")) and p.given_kana
        if p.nationality in kanji_nations:
            assert not p.family_name.isascii()  # the register keeps the kanji name
        else:
            assert p.family_name.isascii() and p.alpha_name.startswith(p.family_name)


def test_some_surnames_keep_old_or_variant_characters(pop: SynthPopulation) -> None:
    variants = {v for _, v, _ in VARIANTS} | {"齋", "邊"}
    people = [p for p in pop.persons if not p.is_foreign]
    with_variant = [p for p in people if not variants.isdisjoint(p.family_name)]
    assert 0.005 < len(with_variant) / len(people) < 0.05


def test_addresses_are_real_towns_with_agreeing_postal_codes(pop: SynthPopulation) -> None:
    kanji = "〇一二三四五六七八九"
    for p in _residents(pop) + _residents(pop, NAKANO):
        assert p.address.startswith(WARD_NAMES[p.lg_code]), p.address
        rest = p.address[len(WARD_NAMES[p.lg_code]) :]
        # The longest town name that starts the rest (市谷本村町 before 市谷…).
        town = max((t for t in tables.towns() if t.lg_code == p.lg_code and rest.startswith(t.town)),
                   key=lambda t: len(t.town))  # fmt: skip
        m = REST.match(rest[len(town.town) :])
        assert m, p.address
        chome = kanji.index(m["chome"]) if m["chome"] else 0
        assert chome <= town.chome and (chome > 0) == (town.chome > 0), p.address
        assert p.postal_code == town.postal_code_for(chome)


def test_neighbours_share_a_building_but_not_a_room(pop: SynthPopulation) -> None:
    addresses = Counter(h.address for h in pop.households_of(SHINJUKU))
    assert max(addresses.values()) == 1  # one household per room or house
    buildings = Counter(h.address.rsplit(" ", 1)[0] for h in pop.households_of(SHINJUKU) if " " in h.address)
    assert max(buildings.values()) >= 3


def test_household_shape_looks_like_shinjuku(pop: SynthPopulation) -> None:
    s = stats.compute(pop)
    assert 0.62 < s.single_share < 0.70  # about two thirds single-person
    assert 1.4 < s.people / s.households < 1.7
    kinds = Counter(h.kind for h in pop.households_of(SHINJUKU))
    assert kinds[HouseholdKind.FAMILY] > kinds[HouseholdKind.SINGLE_PARENT] > 0
    assert kinds[HouseholdKind.SHARED] > 0
    assert any(m.relationship == COHABITANT for h in pop.households for m in h.members)


def test_age_structure_is_close_to_the_table(pop: SynthPopulation) -> None:
    s = stats.compute(pop)
    assert s.max_band_gap() < 0.3  # percentage points of the total, any band and sex
    for lo, hi in ((0, 10), (15, 60), (65, 95)):
        assert abs(s.group_share(lo, hi) - s.group_share(lo, hi, table=True)) < 0.01
    young = next(b for b in s.bands if b.band == "20-24")
    assert 0.3 < young.foreign / (young.male + young.female) < 0.45  # 新宿区's many foreign students


def test_resident_since_is_not_before_birth_and_movers_have_an_origin(pop: SynthPopulation) -> None:
    for p in pop.persons:
        if p.resident_since is not None:
            assert p.resident_since >= p.birth_date
        if p.moved_in_on is not None:
            assert pop.window_start <= p.moved_in_on < pop.reference_date
            assert p.moved_in_on > p.birth_date
            assert p.previous_address
        if p.left_on is not None:
            assert p.resident_since is not None and p.left_on > p.resident_since - timedelta(days=1)
