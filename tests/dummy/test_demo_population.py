"""The demo's small population: a configuration of the one generator (`synth.demo_config`).

Deterministic for a seed; 新宿区 and 中野区 of the sizes asked; a few families who moved
from 中野区 to 新宿区 after the 賦課期日, so that 中野区 taxes the parents and holds no copy
for the children; business numbers below those of `renkei dummy load`.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from renkei.dummy import business
from renkei.dummy.model import (
    CHILD,
    NAKANO,
    RESIDENT,
    SERIAL_OFFSET,
    SHINJUKU,
    SYSTEM_CHILD_ALLOWANCE,
    SYSTEM_TAX,
    SYSTEMS,
    SynthPopulation,
    age_on,
    serial_base,
)
from renkei.dummy.output import POPULATION, write_population_csv
from renkei.dummy.synth import DEMO_FAMILY_MOVERS, DEMO_SEED, SynthConfig, demo_config, generate
from tests.dummy.synth_kit import small_population


@pytest.fixture(scope="module")
def pop() -> SynthPopulation:
    return generate(demo_config())


def _csv(pop: SynthPopulation, path: Path) -> bytes:
    write_population_csv(pop, path)
    return path.read_bytes()


def test_the_same_seed_gives_the_same_people_and_another_seed_others(tmp_path: Path) -> None:
    a = _csv(generate(demo_config(7, 150, 100)), tmp_path / "a.csv")
    b = _csv(generate(demo_config(7, 150, 100)), tmp_path / "b.csv")
    c = _csv(generate(demo_config(8, 150, 100)), tmp_path / "c.csv")
    assert a == b
    assert a != c


def test_the_default_is_the_demos_500_residents(pop: SynthPopulation) -> None:
    assert pop.seed == DEMO_SEED
    assert sum(1 for _ in pop.residents(SHINJUKU)) == 300
    assert sum(1 for _ in pop.residents(NAKANO)) == 200
    # Besides the residents only those who left 新宿区 or died in the window: no outsiders,
    # no noisy non-resident records (the demo loads neither).
    others = [p for p in pop.persons if p.status != RESIDENT]
    assert all(p.lg_code == SHINJUKU for p in others)
    assert len(others) < 100
    assert not pop.non_resident_records


def _movers(pop: SynthPopulation) -> list[str]:
    """Households of 新宿区 that moved in from 中野区 after the 賦課期日."""
    base = date(pop.tax_year, 1, 1)
    return sorted({
        p.household_id for p in pop.residents(SHINJUKU)
        if p.previous_lg_code == NAKANO and p.moved_in_on is not None and p.moved_in_on > base
    })  # fmt: skip


# 150 people in 新宿区 hold only about six families with a child under 15: all of them move.
@pytest.mark.parametrize(
    ("seed", "people", "nakano", "at_least"),
    [(DEMO_SEED, 300, 200, DEMO_FAMILY_MOVERS), (7, 150, 100, 4), (11, 150, 100, 4)],
)
def test_families_moved_from_nakano_after_the_tax_base_date(seed: int, people: int, nakano: int, at_least: int) -> None:
    pop = generate(demo_config(seed, people, nakano))
    households = {h.id: h for h in pop.households}
    base, last_day = date(pop.tax_year, 1, 1), pop.reference_date - timedelta(days=1)
    families = 0
    for hid in _movers(pop):
        members = households[hid].members
        on = members[0].moved_in_on
        assert on is not None and base < on <= last_day
        young = [m for m in members if m.relationship == CHILD and age_on(m.birth_date, pop.reference_date) < 15]
        families += any(m.moved_in_on == on for m in young)  # a child under 15 moved with them
        for m in members:
            if m.birth_date < on:  # the whole household moved
                assert (m.previous_lg_code, m.moved_in_on) == (NAKANO, on)
            in_nakano = business.number(pop, m, NAKANO, SYSTEM_TAX)
            # 中野区 taxes who was 16 on its 賦課期日; 新宿区 taxes none of them for the year.
            assert (in_nakano is not None) == (age_on(m.birth_date, base) >= 16 and m.birth_date < on)
            assert business.number(pop, m, SHINJUKU, SYSTEM_TAX) is None
        for m in young:
            assert business.number(pop, m, SHINJUKU, SYSTEM_CHILD_ALLOWANCE) is not None
        # The adults' copies are among 中野区's tax records.
        nakano_taxed = {r.person_key for r in business.records(pop, NAKANO, SYSTEM_TAX)}
        assert any(m.key in nakano_taxed for m in members)
    assert families >= at_least


def test_without_family_movers_the_people_are_the_same_only_their_moves_differ() -> None:
    """The knob changes where a few families came from, not who any resident is (those who
    left the ward in the window are drawn after the moves, and so are others)."""
    config = demo_config(7, 150, 100)
    plain = generate(SynthConfig(**{**_fields(config), "family_movers": 0}))
    demo = generate(config)
    assert not _movers(plain)
    same = 0
    for p in plain.persons:
        if p.status != RESIDENT:
            continue
        q = demo.by_key[p.key]
        same += 1
        assert (q.family_name, q.given_name, q.birth_date, q.individual_number) == (
            p.family_name, p.given_name, p.birth_date, p.individual_number
        )
    assert same == 250


def _fields(config: SynthConfig) -> dict[str, object]:
    return {name: getattr(config, name) for name in SynthConfig.__dataclass_fields__}


def test_demo_numbers_start_at_each_range_and_stay_below_the_loaded_ones(pop: SynthPopulation) -> None:
    loaded = small_population()  # `renkei dummy generate`/`load`'s configuration
    for lg in (SHINJUKU, NAKANO):
        for system in SYSTEMS:
            base = serial_base(lg, system)
            demo_serials = sorted(pop.numbers.get(f"{lg}:{system}", {}).values())
            if demo_serials:
                assert demo_serials[0] == base + 1
                assert demo_serials[-1] <= base + SERIAL_OFFSET
            assert all(s > base + SERIAL_OFFSET for s in loaded.numbers.get(f"{lg}:{system}", {}).values())
    assert pop.numbers[f"{SHINJUKU}:{SYSTEM_TAX}"]


def test_population_csv(pop: SynthPopulation, tmp_path: Path) -> None:
    raw = _csv(pop, tmp_path / "population.csv")
    assert not raw.startswith(b"\xef\xbb\xbf")
    lines = raw.decode("utf-8").split("\r\n")
    assert lines[0] == ",".join(POPULATION) and lines[0].startswith("個人番号,住民票コード")
    assert lines[-1] == "" and len(lines) == len(pop.persons) + 2
    for p in pop.persons:
        assert p.individual_number in raw.decode("utf-8")
    movers = [line for line in lines[1:-1] if f",{SHINJUKU}," in line and f",{NAKANO}," in line]
    assert len(movers) >= DEMO_FAMILY_MOVERS * 2
    assert any(",2024-" in line or ",2025-" in line for line in movers)

