"""The demo's pieces that need no running federation: the scenarios it picks from the
synthetic population, and its atena client's failures."""

from __future__ import annotations

import socket
import ssl

import pytest

from renkei.dummy import business
from renkei.dummy.model import CHILD, HEAD, NAKANO, SHINJUKU, SynthPopulation
from renkei.federation import demo


def _holder(pop: SynthPopulation, lg: str, system: str, number: str) -> str:
    return next(p.key for p in pop.persons if business.number(pop, p, lg, system) == number)


@pytest.mark.parametrize(("seed", "people", "nakano"), [(demo.DEMO_SEED, 300, 200), (7, 150, 100), (11, 150, 100)])
def test_the_scenarios_ask_about_the_right_people(seed: int, people: int, nakano: int) -> None:
    pop = demo.generate_population(seed, people, nakano)
    a, b, c, d = demo.build_scenarios(pop)
    assert [s.name for s in (a, b, c, d)] == ["a_move_in_tax", "b_not_allowed", "c_no_copy", "d_wrong_affair"]
    movers = {p.key for p in demo.movers(pop)}
    head = pop.by_key[_holder(pop, SHINJUKU, business.SYSTEM_CHILD_ALLOWANCE, a.request["business_atena_no"])]
    assert head.key in movers and head.relationship == HEAD
    values = demo.tax_copy_values(pop, head, NAKANO)
    assert values and values["K001"] == str(pop.tax_year)
    # The copy 中野区 registers for the head is the one scenario a expects back.
    copies = [r for r in demo.tax_copies(pop, NAKANO) if r["values"] == values]
    assert [r["business_atena_no"] for r in copies] == [business.number(pop, head, NAKANO, business.SYSTEM_TAX)]
    assert a.check(200, {"status": "answered", "values": values}) is None
    assert a.check(200, {"status": "answered", "values": {**values, "K003": "1"}}) is not None
    child = pop.by_key[_holder(pop, SHINJUKU, business.SYSTEM_CHILD_ALLOWANCE, c.request["business_atena_no"])]
    assert child.key in movers and child.relationship == CHILD
    assert demo.tax_copy_values(pop, child, NAKANO) is None
    taxpayer = pop.by_key[_holder(pop, SHINJUKU, business.SYSTEM_TAX, b.request["business_atena_no"])]
    assert taxpayer.lg_code == SHINJUKU and taxpayer.moved_in_on is None
    assert d.request == {**a.request} and d.staff_id == "S0002" and a.staff_id == "S0001"


def test_a_population_without_mover_families_is_a_clear_failure() -> None:
    # Below about 150 people in 新宿区 the age table leaves no children: no scenario household.
    pop = demo.generate_population(7, 120, 80)
    with pytest.raises(demo.DemoFailure, match="合成人口に必要な世帯がありません"):
        demo.build_scenarios(pop)


def test_an_unreachable_atena_is_a_demo_failure_not_a_traceback() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = demo.AtenaClient(f"https://127.0.0.1:{port}", demo._Http(ssl.create_default_context(), 5.0), {})
    try:
        with pytest.raises(demo.DemoFailure, match="宛名システムに接続できません"):
            client.post("/v1/inquiries", {}, {})
    finally:
        client.close()
    with pytest.raises(demo.DemoFailure, match="閉じられています"):
        client.post("/v1/inquiries", {}, {})
    client.close()  # closing twice is harmless


def test_nakano_knows_who_moved_to_shinjuku_children_included() -> None:
    """Scenario c asks 中野区 about a child it holds no copy for: its atena must know the
    child (else the hub finds no 中野区 pseudonym and the answer is not 該当なし)."""
    pop = demo.generate_population(7, 150, 100)
    nakano = {r["individual_number"]: r for r in demo.ward_records(pop, NAKANO)}
    shinjuku = {r["individual_number"] for r in demo.ward_records(pop, SHINJUKU)}
    moved = demo.movers(pop)
    assert any(p.relationship == CHILD for p in moved)
    for p in moved:
        assert p.individual_number in nakano and p.individual_number in shinjuku
        record = nakano[p.individual_number]
        assert record["lg_code"] == SHINJUKU  # known at the address they moved to
        assert set(record["business_numbers"]) <= {business.SYSTEM_TAX}
    # Nobody else: 中野区's residents, and those who moved from it to 新宿区.
    residents = {p.individual_number for p in pop.residents(NAKANO)}
    moved_away = {p.individual_number for p in pop.residents(SHINJUKU) if p.previous_lg_code == NAKANO}
    assert set(nakano) == residents | moved_away
