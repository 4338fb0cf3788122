"""The demo population: deterministic, valid identifiers, coherent households and taxes."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from renkei.core.ids import IdKind, check
from renkei.dummy.population import (
    BUSINESS_SYSTEMS,
    CHILD,
    CSV_HEADER,
    FATHER,
    HEAD,
    HUSBAND,
    MOTHER,
    NAKANO,
    NOT_TAXED,
    SHINJUKU,
    SYSTEM_CHILD_ALLOWANCE,
    SYSTEM_NHI,
    SYSTEM_TAX,
    TAX_ITEMS,
    TAXED,
    UNDECLARED,
    WARDS,
    WIFE,
    Person,
    Population,
    generate_population,
    serial_base,
    write_population_csv,
)

REF = date(2025, 4, 1)
TAX_BASE = date(2024, 1, 1)
KATAKANA = re.compile(r"[\u30a1-\u30fa\u30fc]+")
RANGE = 10**10


@pytest.fixture(scope="module")
def pop() -> Population:
    return generate_population()


def _age(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def _serial(atena_no: str) -> int:
    return int(atena_no[:-1])


def _in_range(atena_no: str, lg_code: str, system: str) -> bool:
    base = serial_base(lg_code, system)
    return base < _serial(atena_no) <= base + RANGE


def _csv_bytes(p: Population, path: Path) -> bytes:
    write_population_csv(p, path)
    return path.read_bytes()


# --- determinism ------------------------------------------------------------------------


def test_same_seed_gives_identical_csv(tmp_path: Path) -> None:
    a = _csv_bytes(generate_population(7), tmp_path / "a.csv")
    b = _csv_bytes(generate_population(7), tmp_path / "b.csv")
    assert a == b


def test_same_seed_gives_identical_population() -> None:
    assert generate_population(11) == generate_population(11)


def test_persons_are_hashable(pop: Population) -> None:
    assert len(set(pop.persons)) == len(pop.persons)


def test_later_reference_date_moves_the_tax_year() -> None:
    later = generate_population(5, shinjuku=80, nakano=40, reference_date=date(2025, 7, 1))
    assert later.tax_year == 2025
    assert {r["K001"] for r in later.tax_records.values()} == {"2025"}
    for p in later.movers():
        assert p.moved_in_on is not None
        assert date(2025, 6, 1) <= p.moved_in_on <= date(2025, 6, 30)
        assert later.tax_lg_code(p) == NAKANO


def test_different_seed_gives_different_csv(tmp_path: Path) -> None:
    a = _csv_bytes(generate_population(7), tmp_path / "a.csv")
    b = _csv_bytes(generate_population(8), tmp_path / "b.csv")
    assert a != b


def test_csv_shape(pop: Population, tmp_path: Path) -> None:
    raw = _csv_bytes(pop, tmp_path / "p.csv")
    assert not raw.startswith(b"\xef\xbb\xbf")
    lines = raw.decode("utf-8").split("\r\n")
    assert lines[0] == ",".join(CSV_HEADER)
    assert lines[-1] == ""
    assert len(lines) == len(pop.persons) + 2
    first = lines[1].split(",")
    p = pop.persons[0]
    assert first[0] == p.individual_number
    assert first[7] == p.birth_date.isoformat()
    assert first[13:] == [
        p.previous_lg_code or "",
        p.moved_in_on.isoformat() if p.moved_in_on else "",
    ]


# --- sizes and identifiers --------------------------------------------------------------


def test_ward_sizes(pop: Population) -> None:
    assert Counter(p.lg_code for p in pop.persons) == {SHINJUKU: 300, NAKANO: 200}
    small = generate_population(3, shinjuku=60, nakano=15)
    assert Counter(p.lg_code for p in small.persons) == {SHINJUKU: 60, NAKANO: 15}


def test_too_small_for_the_movers_is_refused() -> None:
    with pytest.raises(ValueError):
        generate_population(shinjuku=5)


def test_keys_and_lookup(pop: Population) -> None:
    keys = [p.key for p in pop.persons]
    assert len(set(keys)) == len(keys)
    assert all(re.fullmatch(r"P\d{6}", k) for k in keys)
    for p in pop.persons[::37]:
        assert pop.by_key(p.key) is p
    with pytest.raises(KeyError):
        pop.by_key("P999999")


def test_identifiers_are_unique(pop: Population) -> None:
    numbers = [p.individual_number for p in pop.persons]
    codes = [p.resident_code for p in pop.persons]
    business = [n for p in pop.persons for n in p.business_numbers.values()]
    households = [h.id for h in pop.households]
    assert len(set(numbers)) == len(numbers)
    assert len(set(codes)) == len(codes)
    assert len(set(business)) == len(business)
    assert len(set(households)) == len(households)
    assert not set(business) & set(households)


def test_identifiers_are_valid(pop: Population) -> None:
    for p in pop.persons:
        assert check(IdKind.INDIVIDUAL_NUMBER, p.individual_number) is None
        assert check(IdKind.RESIDENT_CODE, p.resident_code) is None
        assert check(IdKind.LG_CODE, p.lg_code) is None
        assert check(IdKind.ATENA_NO, p.household_id) is None
        if p.previous_lg_code is not None:
            assert check(IdKind.LG_CODE, p.previous_lg_code) is None
        assert set(p.business_numbers) <= set(BUSINESS_SYSTEMS)
        for number in p.business_numbers.values():
            assert check(IdKind.ATENA_NO, number) is None


def test_child_allowance_and_nhi_numbers_belong_to_the_current_ward(pop: Population) -> None:
    for p in pop.persons:
        for system in (SYSTEM_CHILD_ALLOWANCE, SYSTEM_NHI):
            if system in p.business_numbers:
                assert _in_range(p.business_numbers[system], p.lg_code, system)
        if SYSTEM_NHI in p.business_numbers:
            assert _age(p.birth_date, REF) < 75


def test_children_of_allowance_age_have_a_child_allowance_number(pop: Population) -> None:
    cutoff = date(2007, 4, 2)
    for p in pop.persons:
        if p.relationship == CHILD and p.birth_date >= cutoff:
            assert SYSTEM_CHILD_ALLOWANCE in p.business_numbers
            head = pop.by_key(pop.household(p.household_id).member_keys[0])
            assert SYSTEM_CHILD_ALLOWANCE in head.business_numbers


# --- names and addresses ----------------------------------------------------------------


def test_names(pop: Population) -> None:
    for p in pop.persons:
        assert KATAKANA.fullmatch(p.family_kana), p.family_kana
        assert KATAKANA.fullmatch(p.given_kana), p.given_kana
        assert p.family_name and p.given_name
        assert not KATAKANA.search(p.family_name + p.given_name)
        assert p.sex in ("1", "2")


def test_addresses(pop: Population) -> None:
    for p in pop.persons:
        ward = WARDS[p.lg_code]
        assert p.address.startswith(f"東京都{ward.name}")
        town = next(t for t in ward.towns if p.address.startswith(f"東京都{ward.name}{t.name}"))
        assert p.postal_code == town.postal_code
        assert re.fullmatch(r"\d{7}", p.postal_code)
        assert re.search(r"[一二三四五六七八]丁目\d+番\d+号", p.address)


# --- households -------------------------------------------------------------------------


def test_households_partition_the_population(pop: Population) -> None:
    member_keys = [k for h in pop.households for k in h.member_keys]
    assert sorted(member_keys) == sorted(p.key for p in pop.persons)
    for h in pop.households:
        members = pop.members(h)
        assert {m.household_id for m in members} == {h.id}
        assert {m.lg_code for m in members} == {h.lg_code}
        assert len({(m.address, m.postal_code) for m in members}) == 1
        assert len({(m.previous_lg_code, m.moved_in_on) for m in members}) == 1


def test_household_relationships(pop: Population) -> None:
    for h in pop.households:
        members = pop.members(h)
        heads = [m for m in members if m.relationship == HEAD]
        assert len(heads) == 1
        head = heads[0]
        assert members[0] is head
        assert _age(head.birth_date, REF) >= 18
        spouses = [m for m in members if m.relationship in (WIFE, HUSBAND)]
        assert len(spouses) <= 1
        for s in spouses:
            assert _age(s.birth_date, REF) >= 18
            assert s.sex == ("2" if s.relationship == WIFE else "1")
            assert s.sex != head.sex
            assert s.family_name == head.family_name
        for m in members:
            if m.relationship == CHILD:
                assert m.family_name == head.family_name
                for parent in [head, *spouses]:
                    assert 20 <= _age(parent.birth_date, m.birth_date) <= 45
                assert _age(head.birth_date, m.birth_date) >= 16
            if m.relationship in (MOTHER, FATHER):
                assert _age(m.birth_date, head.birth_date) >= 16


def test_household_mix(pop: Population) -> None:
    sizes = Counter(len(h.member_keys) for h in pop.households if h.lg_code == SHINJUKU)
    assert sizes[1] > sum(sizes.values()) / 2  # Shinjuku: mostly one-person households
    young_singles = [
        p
        for p in pop.persons
        if p.lg_code == SHINJUKU
        and len(pop.household(p.household_id).member_keys) == 1
        and _age(p.birth_date, REF) < 35
    ]
    assert len(young_singles) >= 40
    assert any(len(pop.members(h)) == 2 for h in pop.households)
    assert sum(1 for p in pop.persons if _age(p.birth_date, REF) >= 65) >= 30
    families = [
        h
        for h in pop.households
        if any(m.relationship in (WIFE, HUSBAND) for m in pop.members(h))
        and any(m.relationship == CHILD and _age(m.birth_date, REF) < 15 for m in pop.members(h))
    ]
    assert len(families) >= 10


# --- movers -----------------------------------------------------------------------------


def test_movers(pop: Population) -> None:
    movers = pop.movers()
    assert movers
    for p in movers:
        assert (p.previous_lg_code, p.lg_code) == (NAKANO, SHINJUKU)
        assert p.moved_in_on is not None
        assert date(2024, 6, 1) <= p.moved_in_on <= date(2025, 3, 31)
        assert p.birth_date < p.moved_in_on
    everyone_else = [p for p in pop.persons if p not in movers]
    assert all(p.previous_lg_code is None and p.moved_in_on is None for p in everyone_else)
    moved_households = {p.household_id for p in movers}
    for hid in moved_households:  # whole households move
        assert all(m in movers for m in pop.members(pop.household(hid)))


def test_at_least_six_mover_families_with_young_children(pop: Population) -> None:
    families = []
    for hid in {p.household_id for p in pop.movers()}:
        members = pop.members(pop.household(hid))
        kids = [m for m in members if m.relationship == CHILD and _age(m.birth_date, REF) < 15]
        spouses = [m for m in members if m.relationship in (WIFE, HUSBAND)]
        if kids and spouses and any(m.relationship == HEAD for m in members):
            families.append(hid)
            for kid in kids:
                assert _in_range(
                    kid.business_numbers[SYSTEM_CHILD_ALLOWANCE], SHINJUKU, SYSTEM_CHILD_ALLOWANCE
                )
    assert len(families) >= 6


# --- local tax --------------------------------------------------------------------------


def _taxing_ward(p: Person) -> str:
    if p.moved_in_on is not None and TAX_BASE < p.moved_in_on:
        assert p.previous_lg_code is not None
        return p.previous_lg_code
    return p.lg_code


def test_tax_records_cover_adults_in_the_taxing_ward(pop: Population) -> None:
    assert pop.tax_year == 2024
    expected = {(p.key, _taxing_ward(p)) for p in pop.persons if _age(p.birth_date, TAX_BASE) >= 16}
    assert set(pop.tax_records) == expected
    movers = {p.key for p in pop.movers()}
    for key, lg_code in pop.tax_records:
        if key in movers:
            assert lg_code == NAKANO
        else:
            assert lg_code == pop.by_key(key).lg_code
    assert {lg for _, lg in pop.tax_records} == {SHINJUKU, NAKANO}


def test_tax_business_number_in_the_taxing_ward(pop: Population) -> None:
    taxed = {key: lg for key, lg in pop.tax_records}
    for p in pop.persons:
        if p.key in taxed:
            assert _in_range(p.business_numbers[SYSTEM_TAX], taxed[p.key], SYSTEM_TAX)
            assert pop.tax_lg_code(p) == taxed[p.key]
        else:
            assert SYSTEM_TAX not in p.business_numbers


def test_tax_record_values(pop: Population) -> None:
    kubun = Counter[str]()
    for record in pop.tax_records.values():
        assert set(record) == set(TAX_ITEMS)
        assert all(v.isascii() and v.isdigit() for v in record.values())
        assert record["K001"] == "2024"
        kubun[record["K002"]] += 1
        income, shotokuwari = int(record["K003"]), int(record["K004"])
        if record["K002"] in (NOT_TAXED, UNDECLARED):
            assert record["K004"] == "0"
            assert record["K005"] == "0"
        else:
            assert record["K002"] == TAXED
            assert record["K005"] == "3500"
            assert income > 0
            assert shotokuwari <= income * 6 // 100
        if record["K002"] == UNDECLARED:
            assert income == 0
    assert kubun[TAXED] > kubun[NOT_TAXED] > 0
    earners = sorted(int(r["K003"]) for r in pop.tax_records.values() if r["K002"] == TAXED)
    median = earners[len(earners) // 2]
    assert 2_000_000 <= median <= 6_000_000


def test_dependants_match_the_household(pop: Population) -> None:
    """K006 (扶養親族数) sits with the claimant and counts non-earning children and spouse."""
    for h in pop.households:
        members = pop.members(h)
        head = members[0]
        ward = _taxing_ward(head)

        def income(p: Person, ward: str = ward) -> int:
            record = pop.tax_records.get((p.key, ward))
            return 0 if record is None else int(record["K003"])

        spouse = next((m for m in members if m.relationship in (WIFE, HUSBAND)), None)
        claimant, partner = head, spouse
        if spouse is not None and income(spouse) > income(head):
            claimant, partner = spouse, head
        expected = sum(
            1
            for m in members
            if m.relationship == CHILD and m.birth_date < TAX_BASE and income(m) == 0
        )
        if partner is not None and income(partner) == 0:
            expected += 1
        for m in members:
            record = pop.tax_records.get((m.key, ward))
            if record is None:
                continue
            assert record["K006"] == str(expected if m is claimant else 0), (h.id, m.key)
