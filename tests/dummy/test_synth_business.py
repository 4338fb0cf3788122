"""Business data consistent with age and household: tax, child allowance, NHI, care,
public assistance, disability."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date

import pytest

from renkei.dummy import business
from renkei.dummy.business import (
    KINTOWARI_TOTAL,
    NHI_INSURER,
    NOT_TAXED,
    SYSTEM_CARE,
    SYSTEM_CHILD_ALLOWANCE,
    SYSTEM_DISABILITY,
    SYSTEM_NHI,
    SYSTEM_TAX,
    SYSTEM_WELFARE,
    TAXED,
    UNDECLARED,
    BusinessRecord,
    assess_tax,
)
from renkei.dummy.model import (
    CHILD,
    HEAD,
    HUSBAND,
    RESIDENT,
    SHINJUKU,
    WIFE,
    Household,
    SynthPopulation,
    child_allowance_cutoff,
    fiscal_year,
)
from tests.dummy.synth_kit import small_population


@pytest.fixture(scope="module")
def pop() -> SynthPopulation:
    return small_population()


def _records(pop: SynthPopulation, system: str, lg: str = SHINJUKU) -> list[BusinessRecord]:
    return list(business.records(pop, lg, system))


def _households(pop: SynthPopulation) -> dict[str, Household]:
    return {h.id: h for h in pop.households}


# --- tax arithmetic (worked by hand) ----------------------------------------------------


def test_tax_of_a_single_earner_worked_by_hand() -> None:
    t = assess_tax(4_160_000)
    # 4,160,000 − 基礎控除 430,000 − 社会保険料 (15 %) 624,000 = 3,106,000
    assert t.kubun == TAXED and t.taxable == 3_106_000
    # 調整控除: 人的控除差 50,000; taxable > 2M → max(50,000 − 1,106,000, 50,000) × 5 % = 2,500
    # 区民税 3,106,000 × 6 % − 2,500 × 3/5 = 184,860 → 184,800; 都民税 124,240 − 1,000 → 123,200
    assert (t.shotokuwari_ward, t.shotokuwari_metro) == (184_800, 123_200)
    assert (t.kintowari_ward, t.kintowari_metro, t.forest_tax) == (3_000, 1_000, 1_000)
    assert t.total == 184_800 + 123_200 + 5_000


def test_non_taxable_limits_of_the_23_wards() -> None:
    assert assess_tax(450_000).kubun == NOT_TAXED
    just_over = assess_tax(451_000)
    assert just_over.kubun == TAXED and just_over.shotokuwari_ward == 0 and just_over.kintowari_ward == 3_000
    # One dependant: 均等割 limit 350,000 × 2 + 310,000 = 1,010,000.
    assert assess_tax(1_010_000, dependant_ages=[(5, False)]).kubun == NOT_TAXED
    assert assess_tax(1_011_000, dependant_ages=[(5, False)]).kubun == TAXED
    assert assess_tax(1_300_000, special=True).kubun == NOT_TAXED  # ひとり親・障害者・未成年者
    assert assess_tax(9_000_000, welfare=True).kubun == NOT_TAXED
    assert assess_tax(0, undeclared=True).kubun == UNDECLARED


def test_dependants_lower_the_tax() -> None:
    alone = assess_tax(6_000_000)
    family = assess_tax(6_000_000, dependant_ages=[(20, False), (10, False)], spouse_age=40)
    assert family.taxable == alone.taxable - 450_000 - 330_000  # 特定扶養 + 配偶者控除; 年少 none
    assert family.dependants == 2 and family.young_dependants == 1 and family.spouse_deduction
    assert family.total < alone.total


# --- tax data -----------------------------------------------------------------------------


def test_everyone_16_plus_on_the_base_date_has_one_tax_record_in_that_ward(pop: SynthPopulation) -> None:
    base = date(pop.tax_year, 1, 1)
    for lg in pop.lg_codes:
        taxed = Counter(r.person_key for r in _records(pop, SYSTEM_TAX, lg))
        expected = {p.key for p in pop.persons if p.age_on(base) >= 16 and p.lived_in(lg, base)}
        assert set(taxed) == expected
        assert max(taxed.values()) == 1


def test_tax_records_are_internally_consistent(pop: SynthPopulation) -> None:
    households = _households(pop)
    kubun = Counter()
    for r in _records(pop, SYSTEM_TAX):
        v = r.as_dict()
        kubun[v["K002"]] += 1
        income, ward, metro = int(v["K003"]), int(v["K004"]), int(v["metro_shotoku"])
        assert v["K001"] == str(pop.tax_year)
        if v["K002"] == TAXED:
            assert int(v["K005"]) + int(v["metro_kinto"]) + int(v["forest"]) == KINTOWARI_TOTAL
            assert ward + metro <= income * 10 // 100
        else:
            assert ward == metro == int(v["K005"]) == int(v["total"]) == 0
        p = pop.by_key[r.person_key]
        h = households[p.household_id]
        if h.welfare and h.welfare_since is not None and h.welfare_since <= date(pop.tax_year, 1, 1):
            assert v["K002"] != TAXED
        assert int(v["young"]) <= int(v["K006"])
    assert kubun[TAXED] > kubun[NOT_TAXED] > 0 and kubun[UNDECLARED] > 0


def test_dependants_are_claimed_once_per_household(pop: SynthPopulation) -> None:
    households = _households(pop)
    claims: dict[str, list[int]] = defaultdict(list)
    for r in _records(pop, SYSTEM_TAX):
        p = pop.by_key[r.person_key]
        claims[p.household_id].append(int(r.as_dict()["K006"]))
    checked = 0
    for hid, values in claims.items():
        assert sum(1 for v in values if v > 0) <= 1, hid
        h = households[hid]
        kids = [m for m in h.members if m.relationship == CHILD and m.income <= 480_000
                and m.lived_in(SHINJUKU, date(pop.tax_year, 1, 1))]  # fmt: skip
        if kids and h.members[0].status == RESIDENT:
            assert max(values) >= len(kids), hid
            checked += 1
    assert checked > 50


# --- child allowance ----------------------------------------------------------------------


def test_child_allowance_only_with_children_of_eligible_age(pop: SynthPopulation) -> None:
    ref = pop.reference_date
    cutoff = child_allowance_cutoff(ref)
    households = _households(pop)
    records = _records(pop, SYSTEM_CHILD_ALLOWANCE)
    paid = {pop.by_key[r.person_key].household_id: r for r in records}
    assert len(paid) == len(records)  # one recipient per household
    for h in pop.households_of(SHINJUKU):
        eligible = [m for m in h.members if m.status == RESIDENT and m.relationship == CHILD and m.birth_date >= cutoff]
        assert (h.id in paid) == bool(eligible), h.id
        if not eligible:
            continue
        v = paid[h.id].as_dict()
        recipient = pop.by_key[paid[h.id].person_key]
        assert recipient.relationship in (HEAD, WIFE, HUSBAND)
        assert int(v["C003"]) == len(eligible)
        assert int(v["under3"]) == sum(1 for m in eligible if m.age_on(ref) < 3)
        amount, n = int(v["C005"]), len(eligible)
        assert 10_000 * n <= amount <= 30_000 * n
        # Children up to 22 count for the rank; the third on gets ¥30,000.
        counted = sorted((m for m in h.members if m.status == RESIDENT and m.relationship == CHILD
                          and m.birth_date >= date(fiscal_year(ref) - 22, 4, 2)), key=lambda m: m.birth_date)  # fmt: skip
        expected = sum(30_000 if rank >= 2 else 15_000 if m.age_on(ref) < 3 else 10_000
                       for rank, m in enumerate(counted) if m in eligible)  # fmt: skip
        assert amount == expected, h.id
        assert date.fromisoformat(v["C004"]) < ref
        assert len(v["children"].split()) == n
    assert households and len(records) > 50


def test_third_child_rule_and_amounts() -> None:
    assert business.allowance_amounts([1], [True]) == [15_000]
    assert business.allowance_amounts([20, 16, 2], [False, True, True]) == [0, 10_000, 30_000]
    assert business.allowance_amounts([10, 7, 4, 1], [True] * 4) == [10_000, 10_000, 30_000, 30_000]


# --- NHI, care, welfare, disability ------------------------------------------------------


def test_nhi_not_for_75_plus_nor_public_assistance(pop: SynthPopulation) -> None:
    households = _households(pop)
    ref = pop.reference_date
    records = _records(pop, SYSTEM_NHI)
    for r in records:
        p = pop.by_key[r.person_key]
        assert p.age_on(ref) < 75
        assert not households[p.household_id].welfare
        v = r.as_dict()
        assert v["H002"] == NHI_INSURER[SHINJUKU] == "131045"
        assert v["H005"] in "アイウエオ"
        assert p.birth_date <= date.fromisoformat(v["H003"]) < ref
    share = len(records) / sum(1 for _ in pop.residents(SHINJUKU))
    assert 0.18 < share < 0.36


def test_care_for_the_elderly_with_certification_rising_with_age(pop: SynthPopulation) -> None:
    ref = pop.reference_date
    records = {r.person_key: r.as_dict() for r in _records(pop, SYSTEM_CARE)}
    elderly = [p for p in pop.residents(SHINJUKU) if p.age_on(ref) >= 65]
    assert {p.key for p in elderly} <= set(records)
    by_age: dict[bool, list[bool]] = {False: [], True: []}
    for key, v in records.items():
        age = pop.by_key[key].age_on(ref)
        if v["L001"] == "1":
            assert age >= 65 and v["L005"]
            by_age[age >= 85].append(bool(v["L002"]))
        else:
            assert 40 <= age < 65 and v["L002"]  # 第2号: certified only
        if v["L002"]:
            assert v["L003"] < v["L004"] and v["L004"] >= ref.isoformat()
    younger = sum(by_age[False]) / len(by_age[False])
    older = sum(by_age[True]) / len(by_age[True])
    assert older > 3 * younger


def test_public_assistance_and_disability_are_small_shares(pop: SynthPopulation) -> None:
    residents = sum(1 for _ in pop.residents(SHINJUKU))
    welfare = _records(pop, SYSTEM_WELFARE)
    disability = _records(pop, SYSTEM_DISABILITY)
    assert 0.015 < len(welfare) / residents < 0.05
    assert 0.02 < len(disability) / residents < 0.08
    households = _households(pop)
    for r in welfare:
        p = pop.by_key[r.person_key]
        assert households[p.household_id].welfare
        assert r.as_dict()["S001"] == "1" and "生活扶助" in r.as_dict()["S004"]
    for r in disability:
        v = r.as_dict()
        assert v["D001"] or v["D002"] or v["D003"]
        assert pop.by_key[r.person_key].birth_date < date.fromisoformat(v["D004"]) < pop.reference_date


def test_every_record_is_a_valid_provision_copy_of_the_catalogue_layout(pop: SynthPopulation) -> None:
    from renkei.catalogue.loader import load_catalogue

    catalogue = load_catalogue()
    for lg in pop.lg_codes:
        for system in business.SYSTEMS:
            n = 0
            for record in business.records(pop, lg, system):
                items = business.fukuhon_items(record)
                issues = catalogue.validate_record(business.INFO_KINDS[system], items, pop.reference_date)
                assert issues == [], (system, record.person_key, issues)
                n += 1
            assert n > 0, (lg, system)
