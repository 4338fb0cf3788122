"""Change records replay to the final register; 中野区 ↔ 新宿区 movers agree in both wards."""

from __future__ import annotations

from collections import Counter
from datetime import date
from functools import cache

import pytest

from renkei.dummy import business
from renkei.dummy.model import (
    BIRTH,
    DEATH,
    DECEASED,
    MOVE_IN,
    MOVE_OUT,
    MOVE_WITHIN,
    NAKANO,
    RESIDENT,
    SHINJUKU,
    SynthPopulation,
)
from renkei.dummy.synth import demo_config, generate
from tests.dummy.synth_kit import small_population


@pytest.fixture(scope="module")
def pop() -> SynthPopulation:
    return small_population()


@cache
def _demo_population() -> SynthPopulation:
    return generate(demo_config())


@pytest.mark.parametrize("lg", [SHINJUKU, NAKANO])
@pytest.mark.parametrize("config", ["small", "demo"])
def test_replaying_the_changes_gives_the_final_register(config: str, lg: str) -> None:
    # The demo's configuration too: its families made movers from 中野区 must leave a
    # consistent history in both wards.
    pop = small_population() if config == "small" else _demo_population()
    changes = [c for c in pop.changes if c.lg_code == lg]
    final = {p.key: p.address for p in pop.persons if p.status == RESIDENT and p.lg_code == lg}
    arrivals = {c.person_key for c in changes if c.kind in (MOVE_IN, BIRTH)}
    departures = {c.person_key: c.address for c in changes if c.kind in (MOVE_OUT, DEATH)}
    # The register at the window's start: the final one, without arrivals, with departures,
    # everyone at the address they had then (before a 転居).
    moved_within = {c.person_key: c.other_address for c in changes if c.kind == MOVE_WITHIN}
    register = {k: moved_within.get(k, a) for k, a in final.items() if k not in arrivals}
    for key, address in departures.items():
        if key not in arrivals:
            register[key] = moved_within.get(key, address)
    assert [c.seq for c in changes] == list(range(1, len(changes) + 1))
    assert changes == sorted(changes, key=lambda c: c.effective_on)
    for c in changes:
        assert pop.window_start <= c.effective_on < pop.reference_date
        if c.kind in (MOVE_IN, BIRTH):
            assert c.person_key not in register, c
            register[c.person_key] = c.address
        elif c.kind == MOVE_WITHIN:
            assert register.get(c.person_key) == c.other_address, c
            register[c.person_key] = c.address
        else:
            assert register.get(c.person_key) == c.address, c
            del register[c.person_key]
    assert register == final


def test_every_kind_of_change_happens_in_shinjuku(pop: SynthPopulation) -> None:
    kinds = Counter(c.kind for c in pop.changes if c.lg_code == SHINJUKU)
    assert all(kinds[k] > 0 for k in (MOVE_IN, MOVE_OUT, MOVE_WITHIN, BIRTH, DEATH))
    # Shinjuku's churn: move-ins of two years are a good share of its people.
    assert 0.15 < kinds[MOVE_IN] / 3000 < 0.35


def test_notification_dates_are_plausible(pop: SynthPopulation) -> None:
    for c in pop.changes:
        delta = (c.notified_on - c.effective_on).days
        if c.kind == MOVE_OUT:
            assert -14 <= delta <= 0
        else:
            assert 0 <= delta <= 14 and c.notified_on < pop.reference_date


def test_movers_between_the_two_wards_appear_in_both(pop: SynthPopulation) -> None:
    into_shinjuku = [p for p in pop.residents(SHINJUKU) if p.previous_lg_code == NAKANO]
    into_nakano = [p for p in pop.residents(NAKANO) if p.previous_lg_code == SHINJUKU]
    assert into_shinjuku and into_nakano
    outs = {(c.lg_code, c.person_key): c for c in pop.changes if c.kind == MOVE_OUT}
    ins = {(c.lg_code, c.person_key): c for c in pop.changes if c.kind == MOVE_IN}
    for p, here, there in [(p, SHINJUKU, NAKANO) for p in into_shinjuku] + [(p, NAKANO, SHINJUKU) for p in into_nakano]:
        moved_in, moved_out = ins[(here, p.key)], outs[(there, p.key)]
        assert moved_in.effective_on == moved_out.effective_on == p.moved_in_on
        assert moved_in.other_lg_code == there and moved_out.other_lg_code == here
        assert moved_out.address == p.previous_address and moved_in.other_address == p.previous_address


def test_the_ward_of_1_january_taxes_the_movers(pop: SynthPopulation) -> None:
    base = date(pop.tax_year, 1, 1)
    late = [p for p in pop.residents(SHINJUKU)
            if p.previous_lg_code == NAKANO and p.moved_in_on and p.moved_in_on > base and p.age_on(base) >= 16]  # fmt: skip
    assert late
    for p in late:
        assert business.number(pop, p, NAKANO, business.SYSTEM_TAX) is not None
        assert business.number(pop, p, SHINJUKU, business.SYSTEM_TAX) is None
    gone = [p for p in pop.persons if p.lg_code == SHINJUKU and p.status != RESIDENT
            and p.left_on and p.left_on > base and p.age_on(base) >= 16]  # fmt: skip
    assert gone and all(business.number(pop, p, SHINJUKU, business.SYSTEM_TAX) for p in gone)


def test_the_dead_were_registered_and_are_mostly_old(pop: SynthPopulation) -> None:
    dead = [p for p in pop.persons if p.status == DECEASED]
    assert dead
    assert sum(1 for p in dead if p.age_on(pop.reference_date) >= 65) / len(dead) > 0.8
    for p in dead:
        assert p.left_on is not None and p.resident_since is not None and p.resident_since < p.left_on
