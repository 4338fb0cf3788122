"""End to end: `renkei dummy load` into a running demo federation.

The federation runs as separate processes over mutual TLS, as `renkei demo --serve`
leaves it (the demo's own people registered, scenarios played). The command is run as a
user runs it (its Typer app), and every figure is compared with what the generator made,
counted from the population itself, not from what `renkei.dummy.bulk` sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from renkei.cli import app
from renkei.dummy import business
from renkei.dummy.model import RESIDENT, SynthPopulation
from renkei.dummy.synth import SynthConfig, generate
from renkei.federation import demo
from renkei.federation.process import Federation
from renkei.federation.topology import HUB, JLIS, NAKANO, ORGS, SHINJUKU, Layout, Org
from tests.conftest import BACKENDS, create_pg_database, drop_pg_database
from tests.e2e.test_federation import _free_base_port

pytestmark = pytest.mark.e2e

SEED = 11
PEOPLE = 2_000  # 新宿区 residents; with 中野区, movers, former residents: about 2,500 persons
WARDS = ((SHINJUKU, "131041"), (NAKANO, "131148"))
TAX_INFO = business.INFO_KINDS[business.SYSTEM_TAX]


@dataclass(frozen=True)
class Snapshot:
    """What the databases hold at one moment."""

    persons: dict[str, int]  # ward slug → rows
    links: dict[str, dict[str, int]]  # ward slug → system → rows
    copies: dict[str, int]  # ward slug → tax copies (every version)
    latest: dict[str, dict[tuple[str, str], tuple[int, str]]]  # (atena_no, key) → (version, values)
    citizens: int  # J-LIS pairs


@dataclass(frozen=True)
class LoadRun:
    exit_code: int
    output: str
    seconds: float  # "loaded in … s" as the command reports it

    def count(self, pattern: str) -> int:
        found = re.search(pattern, self.output)
        assert found, (pattern, self.output)
        return int(found.group(1).replace(",", ""))


@dataclass(frozen=True)
class Loaded:
    layout: Layout
    urls: dict[str, str]
    pop: SynthPopulation
    before: Snapshot
    first: LoadRun
    after_first: Snapshot
    second: LoadRun
    after_second: Snapshot


def _url(layout: Layout, urls: dict[str, str], org: Org, node: str) -> str:
    default = f"sqlite:///{layout.node_dir(org, node) / f'{node}.db'}"
    return urls.get(f"{org.slug}/{node}") or default


def _rows(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def _count(url: str, sql: str) -> int:
    return int(str(_rows(url, sql)[0][0]))


def _snapshot(layout: Layout, urls: dict[str, str]) -> Snapshot:
    persons, links, copies, latest = {}, {}, {}, {}
    for org, _lg in WARDS:
        atena = _url(layout, urls, org, "atena")
        persons[org.slug] = _count(atena, "select count(*) from persons")
        grouped = _rows(atena, "select system, count(*) from business_links group by system")
        links[org.slug] = {str(s): int(str(n)) for s, n in grouped}
        chukan = _url(layout, urls, org, "chukan")
        rows = _rows(
            chukan,
            'select atena_no, record_key, version, "values" from fukuhon'
            f" where info_kind_code = '{TAX_INFO}' order by version",
        )
        copies[org.slug] = len(rows)
        # Ordered by version: the last one seen per record is its newest.
        latest[org.slug] = {(str(a), str(k)): (int(str(v)), str(vals)) for a, k, v, vals in rows}
    citizens = _count(_url(layout, urls, JLIS, "jlis"), "select count(*) from citizens")
    return Snapshot(persons, links, copies, latest, citizens)


def _load(layout: Layout, *, seed: int = SEED, fukuhon: str = "tax") -> LoadRun:
    args = ["dummy", "load", "--var", str(layout.root), "--base-port", str(layout.base_port),
            "--seed", str(seed), "--people", str(PEOPLE), "--fukuhon", fukuhon, "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    output = result.output
    found = re.search(r"loaded in ([0-9.]+) s", output)
    seconds = float(found.group(1)) if found else float("nan")
    return LoadRun(result.exit_code, output + (repr(result.exception) if result.exception else ""), seconds)


@pytest.fixture(scope="module", params=BACKENDS)
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    var = tmp_path_factory.mktemp(f"load-{request.param}")
    layout = Layout(var, _free_base_port())
    urls: dict[str, str] = {}
    if request.param == "postgresql":
        urls = {f"{o.slug}/{n}": create_pg_database() for o in ORGS for n in o.nodes}
    # The demo's own people first: the command loads into a federation `renkei demo` set up.
    demo_pop = demo.generate_population(seed=7, shinjuku=150, nakano=100)
    fed = Federation()
    try:
        demo.prepare(layout, demo_pop, urls)
        demo.start(layout, fed)
        scenarios = demo.play(layout, demo_pop)
        assert all(sc.result["ok"] for sc in scenarios)
        before = _snapshot(layout, urls)
        first = _load(layout)
        after_first = _snapshot(layout, urls)
        second = _load(layout)
        after_second = _snapshot(layout, urls)
        pop = generate(SynthConfig(seed=SEED, people=PEOPLE))  # what the command generated
        yield Loaded(layout, urls, pop, before, first, after_first, second, after_second)
    finally:
        fed.stop()
        for url in urls.values():
            drop_pg_database(url)


def _known_in(pop: SynthPopulation, lg_code: str) -> int:
    """Who the ward's atena should know: its residents, and whoever its systems number."""
    numbered = {key for system in business.SYSTEMS for key in pop.numbers.get(f"{lg_code}:{system}", {})}
    residents = {p.key for p in pop.persons if p.status == RESIDENT and p.lg_code == lg_code}
    return len(numbered | residents)


def test_load_registers_each_wards_people_and_business_links(
    loaded: Loaded, capsys: pytest.CaptureFixture[str]
) -> None:
    assert loaded.first.exit_code == 0, loaded.first.output
    total = 0
    for org, lg in WARDS:
        expected = _known_in(loaded.pop, lg)
        assert expected > 100
        added = loaded.after_first.persons[org.slug] - loaded.before.persons[org.slug]
        assert added == expected, org.name
        assert loaded.first.count(rf"{org.name}: ([\d,]+) persons registered") == expected
        for system in business.SYSTEMS:
            numbers = len(loaded.pop.numbers.get(f"{lg}:{system}", {}))
            before = loaded.before.links[org.slug].get(system, 0)
            after = loaded.after_first.links[org.slug].get(system, 0)
            assert after - before == numbers, (org.name, system)
        total += expected
    assert loaded.first.count(r"J-LIS: ([\d,]+) pairs") == len(loaded.pop.persons)
    assert loaded.after_first.citizens - loaded.before.citizens == len(loaded.pop.persons)
    rate = total / loaded.first.seconds
    with capsys.disabled():
        print(f"\n`renkei dummy load`: {total:,} persons ({len(loaded.pop.persons):,} J-LIS pairs, "
              f"{sum(loaded.after_first.copies.values()) - sum(loaded.before.copies.values()):,} tax copies) "
              f"in {loaded.first.seconds:.1f} s = {rate:,.0f} persons/s; "
              f"second load {loaded.second.seconds:.1f} s")  # fmt: skip


def test_tax_copies_arrive_in_each_chukan(loaded: Loaded) -> None:
    for org, lg in WARDS:
        expected = sum(1 for _ in business.records(loaded.pop, lg, business.SYSTEM_TAX))
        assert expected > 50
        added = loaded.after_first.copies[org.slug] - loaded.before.copies[org.slug]
        assert added == expected, org.name
        # One copy per taxpayer and tax year, each under a person the atena numbered.
        new = set(loaded.after_first.latest[org.slug]) - set(loaded.before.latest[org.slug])
        assert len(new) == expected
        assert {key for _, key in new} == {str(loaded.pop.tax_year)}
        label = business.system_label(business.SYSTEM_TAX)
        assert loaded.first.count(rf"{org.name}: ([\d,]+) {label} copies registered") == expected


def test_second_load_changes_nobody(loaded: Loaded) -> None:
    """Loading again is safe: J-LIS keeps its pairs, atena reuses every 統合宛名番号 and
    business link; the chukan adds no version for a copy it already holds as it is."""
    second, first = loaded.after_second, loaded.after_first
    assert loaded.second.exit_code == 0, loaded.second.output
    assert loaded.second.count(r"J-LIS: ([\d,]+) pairs") == 0
    assert second.citizens == first.citizens
    assert second.persons == first.persons
    assert second.links == first.links
    for org, _lg in WARDS:
        assert loaded.second.count(rf"{org.name}: ([\d,]+) persons registered") == (
            loaded.first.count(rf"{org.name}: ([\d,]+) persons registered")
        )
        assert second.latest[org.slug] == first.latest[org.slug], org.name
        assert second.copies[org.slug] == first.copies[org.slug], org.name


def test_an_unknown_business_system_is_refused_before_loading(loaded: Loaded) -> None:
    """Copies of a system the generator does not know are refused up front, naming the
    systems it knows, and nothing of the population is loaded."""
    refused = _load(loaded.layout, seed=SEED + 1, fukuhon="tax,pension")
    assert refused.exit_code == 2, refused.output
    assert "pension" in refused.output and "child_allowance" in refused.output
    assert "J-LIS" not in refused.output
    assert _snapshot(loaded.layout, loaded.urls) == loaded.after_second


def test_everyone_gets_a_pseudonym_through_the_three_party_flow(loaded: Loaded) -> None:
    """The load acquires every loaded person's pseudonym (atena → chukan → hub, J-LIS):
    each ward's chukan binds one per person its atena numbered, and the hub holds one per
    person and organization."""
    for org, _lg in WARDS:
        atena = _url(loaded.layout, loaded.urls, org, "atena")
        persons = _count(atena, "select count(*) from persons")
        bound = _count(_url(loaded.layout, loaded.urls, org, "chukan"), "select count(*) from pseudonym_bindings")
        assert bound == persons, org.name
        assert loaded.first.count(rf"{org.name}: ([\d,]+) pseudonyms acquired") > 100
    org_codes = ", ".join(f"'{org.org_code}'" for org, _lg in WARDS)
    hub = _url(loaded.layout, loaded.urls, HUB, "hub")
    assert _count(hub, f"select count(*) from pseudonyms where org_code in ({org_codes})") == sum(
        loaded.after_second.persons.values()
    )


def test_a_jlis_conflict_is_a_clear_error_and_loads_nothing(
    loaded: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A number J-LIS already holds under another resident code: J-LIS refuses the whole
    batch (409 resident_code_changed); the command says so in Japanese, without a
    traceback, before any atena is touched."""
    import random

    from renkei.core.ids import generate_resident_code
    from renkei.dummy import bulk

    # A pair J-LIS holds (its numbers are sealed at rest: taken from what was loaded).
    number, _code, lg = next(iter(bulk.jlis_rows(loaded.pop)))
    other_code = generate_resident_code(random.Random(99))
    monkeypatch.setattr(bulk, "jlis_rows", lambda _pop: iter([(str(number), other_code, str(lg))]))
    refused = _load(loaded.layout, seed=SEED)
    assert refused.exit_code == 1, refused.output
    assert "住民票コードの変更は一括登録では扱えません" in refused.output
    assert "Traceback" not in refused.output and "persons registered" not in refused.output
    assert _snapshot(loaded.layout, loaded.urls) == loaded.after_second


def _node_blob(layout: Layout, urls: dict[str, str], org: Org, node: str) -> bytes:
    """Every file in the node's data directory (SQLite included) and, on PostgreSQL, its rows."""
    parts = [p.read_bytes() for p in sorted(layout.node_dir(org, node).rglob("*")) if p.is_file()]
    url = urls.get(f"{org.slug}/{node}")
    if url:
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                for table in inspect(conn).get_table_names():
                    for row in conn.execute(text(f'select * from "{table}"')):
                        parts.append(repr(tuple(row)).encode("utf-8"))
        finally:
            engine.dispose()
    return b"\n".join(parts)


def _twelve_digit_runs(blob: bytes) -> set[bytes]:
    """Every 12 consecutive digits in `blob` (one pass, instead of one search per number)."""
    out: set[bytes] = set()
    for run in re.findall(rb"[0-9]{12,}", blob):
        out.update(run[i : i + 12] for i in range(len(run) - 11))
    return out


def test_no_individual_number_reaches_chukan_or_hub(loaded: Loaded) -> None:
    numbers = {p.individual_number.encode() for p in loaded.pop.persons}

    def hits(org: Org, node: str) -> int:
        return len(numbers & _twelve_digit_runs(_node_blob(loaded.layout, loaded.urls, org, node)))

    from renkei.dummy import bulk

    # The scan finds numbers where they are in clear: the J-LIS rows as the loader sends them.
    sent = b"\n".join(",".join(row).encode() for row in bulk.jlis_rows(loaded.pop))
    assert len(numbers & _twelve_digit_runs(sent)) == len(numbers)
    # J-LIS seals them at rest, as atena does.
    assert hits(JLIS, "jlis") == 0, "individual number in clear at J-LIS"
    assert hits(HUB, "hub") == 0
    for org, _lg in WARDS:
        assert hits(org, "chukan") == 0, org.name
        assert hits(org, "atena") == 0, f"individual number in clear in {org.name} atena"


def test_load_refuses_a_directory_without_a_federation(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["dummy", "load", "--var", str(tmp_path), "--people", "100"])
    assert result.exit_code == 2
    assert "renkei demo --serve" in result.output
