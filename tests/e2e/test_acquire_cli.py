"""End to end: `renkei atena acquire-pseudonyms` against a running federation.

The federation runs as separate processes over mutual TLS (the demo's, scenarios played);
新宿区's atena gets a few hundred more residents. A first run is interrupted after two
chunks (other chunks cancelled wherever they were: numbers handed out by the chukan,
relayed by J-LIS, not yet noted at atena); the command is then run as a user runs it and
carries on. Checked in every node's database: everybody bound once, one pseudonym per
person at the hub, each person asked for under one acquisition number at the chukan.
Runs on SQLite and, when configured, with every node on its own PostgreSQL database.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from renkei.atena.cli import run_acquisition
from renkei.atena.flows import AcquireProgress
from renkei.cli import app
from renkei.dummy import bulk
from renkei.dummy.synth import SynthConfig, generate
from renkei.federation import demo, setup
from renkei.federation.process import Federation
from renkei.federation.topology import HUB, JLIS, ORGS, SHINJUKU, Layout, Org
from tests.conftest import BACKENDS, create_pg_database, drop_pg_database
from tests.e2e.test_federation import _free_base_port

pytestmark = pytest.mark.e2e

EXTRA = 400  # more 新宿区 residents, beside the demo's


class Interrupted(Exception):
    """Stands in for Ctrl+C or a crash in the middle of a run."""


@dataclass(frozen=True)
class Fed:
    layout: Layout
    urls: dict[str, str]

    def rows(self, org: Org, node: str, sql: str) -> list[tuple[object, ...]]:
        url = self.urls.get(f"{org.slug}/{node}") or f"sqlite:///{self.layout.node_dir(org, node) / f'{node}.db'}"
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(sql))]
        finally:
            engine.dispose()

    def statuses(self) -> dict[str, int]:
        rows = self.rows(
            SHINJUKU, "atena",
            "select pseudonym_status, count(*) from persons where individual_number_index is not null"
            " group by pseudonym_status",
        )  # fmt: skip
        return {str(s): int(str(n)) for s, n in rows}


@pytest.fixture(scope="module", params=BACKENDS)
def fed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    var = tmp_path_factory.mktemp(f"acquire-{request.param}")
    layout = Layout(var, _free_base_port())
    urls: dict[str, str] = {}
    if request.param == "postgresql":
        for org in ORGS:
            for node in org.nodes:
                urls[f"{org.slug}/{node}"] = create_pg_database()
    process = Federation()
    try:
        pop = demo.generate_population(seed=7, shinjuku=150, nakano=100)
        demo.prepare(layout, pop, urls)
        demo.start(layout, process)
        demo.play(layout, pop)
        # Business numbers above the demo's (the default serial offset), as `renkei dummy load`.
        more = generate(SynthConfig(seed=6, people=EXTRA, nakano_people=50, outsiders=0, non_residents=0))
        setup.load_jlis(layout, list(bulk.jlis_rows(more)))
        client = demo.AtenaClient.open(layout, SHINJUKU)
        try:
            # Numbered without starting acquisition: the command below does it.
            client.residents(list(bulk.resident_records(more, "131041")), start_acquisition=False)
        finally:
            client.close()
        yield Fed(layout, urls)
    finally:
        process.stop()
        for url in urls.values():
            drop_pg_database(url)


def test_an_interrupted_run_carries_on_and_gives_nobody_a_second_pseudonym(fed: Fed) -> None:
    config = fed.layout.config_path(SHINJUKU, "atena")
    before = fed.statuses()
    assert before.get("none", 0) >= EXTRA

    seen: list[int] = []

    def stop_after_two_chunks(progress: AcquireProgress) -> None:
        seen.append(progress.requested)
        if progress.requested >= 2 * 50:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_acquisition(config, chunk=50, in_flight=3, on_progress=stop_after_two_chunks, actor="cli:tester")
    middle = fed.statuses()
    assert 0 < middle.get("requested", 0) + middle.get("bound", 0) - before.get("bound", 0) < before["none"]
    assert middle.get("none", 0) > 0

    result = CliRunner().invoke(
        app, ["atena", "acquire-pseudonyms", "--config", str(config), "--chunk", "60", "--timeout", "120"]
    )
    assert result.exit_code == 0, result.output
    assert "個人番号のある全員の符号を取得しました。" in result.output
    after = fed.statuses()
    assert after == {"bound": sum(before.values())}

    # The chukan: one binding per person, each person asked for under one number only.
    [(bindings,)] = fed.rows(SHINJUKU, "chukan", "select count(*) from pseudonym_bindings")
    assert bindings == after["bound"]
    [(most,)] = fed.rows(
        SHINJUKU, "chukan", "select max(n) from (select count(*) as n from pending_acquisitions group by atena_no) t"
    )
    assert most == 1
    [(open_,)] = fed.rows(SHINJUKU, "chukan", "select count(*) from pending_acquisitions where completed_at is null")
    assert open_ == 0
    # The hub: one pseudonym per person for 新宿区; J-LIS: each acquisition number relayed once.
    [(pseudonyms,)] = fed.rows(HUB, "hub", f"select count(*) from pseudonyms where org_code = '{SHINJUKU.org_code}'")
    assert pseudonyms == bindings
    [(repeats,)] = fed.rows(
        JLIS, "jlis", "select count(*) from (select acquisition_no from relayed_acquisitions"
        " group by acquisition_no having count(*) > 1) t",
    )  # fmt: skip
    assert repeats == 0
    # Audited at atena as the command line's user, each committed chunk and each run.
    runs = fed.rows(SHINJUKU, "atena", "select actor, outcome from audit_entries where action = 'pseudonym.acquire_all'")
    assert runs[-1][1] == "complete" and str(runs[-1][0]).startswith("cli:")
    chunks = fed.rows(SHINJUKU, "atena", "select actor from audit_entries where action = 'pseudonym.acquire'")
    assert ("cli:tester",) in chunks

    # Run again: nothing left to do, nothing changes.
    again = CliRunner().invoke(app, ["atena", "acquire-pseudonyms", "--config", str(config)])
    assert again.exit_code == 0, again.output
    assert "対象 0 人" in again.output
    assert fed.rows(SHINJUKU, "chukan", "select count(*) from pseudonym_bindings") == [(bindings,)]


def test_a_configuration_of_another_node_is_refused(fed: Fed) -> None:
    config = fed.layout.config_path(SHINJUKU, "chukan")
    result = CliRunner().invoke(app, ["atena", "acquire-pseudonyms", "--config", str(config)])
    assert result.exit_code == 2
    assert "atena ではありません" in result.output


def test_a_feed_file_of_move_ins_with_acquire_binds_the_newcomers(fed: Fed, tmp_path_factory: pytest.TempPathFactory) -> None:
    """`renkei atena import feed FILE --acquire`: 転入 of people atena does not know yet
    (J-LIS holds their pairs) are numbered from the file and bound through the three-party
    flow by the same command; the same file again changes nothing."""
    config = fed.layout.config_path(SHINJUKU, "atena")
    newcomers = generate(SynthConfig(seed=8, people=100, nakano_people=50, outsiders=0, non_residents=0))
    setup.load_jlis(fed.layout, list(bulk.jlis_rows(newcomers)))
    people = list(bulk.resident_records(newcomers, "131041"))[:5]
    columns = ["event_id", "kind", "effective_on", "individual_number", "family_name", "given_name", "family_kana",
               "given_kana", "birth_date", "sex", "postal_code", "address", "lg_code"]  # fmt: skip
    lines = [",".join(columns)]
    for i, p in enumerate(people):
        lines.append(",".join(
            [f"E2E-{i:04d}", "転入", "2026-11-01", p["individual_number"], p["family_name"], p["given_name"],
             p["family_kana"], p["given_kana"], p["birth_date"], p["sex"], p["postal_code"], p["address"], "131041"]
        ))  # fmt: skip
    feed_file = tmp_path_factory.mktemp("feed") / "jumin-ido-20261101.csv"
    feed_file.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    before = fed.statuses()
    [(bindings_before,)] = fed.rows(SHINJUKU, "chukan", "select count(*) from pseudonym_bindings")

    result = CliRunner().invoke(
        app, ["atena", "import", "feed", str(feed_file), "--config", str(config), "--acquire", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    after = fed.statuses()
    assert after == {"bound": sum(before.values()) + len(people)}
    # Everyone unbound before (none, when the test above ran first) and the newcomers.
    unbound = sum(n for status, n in before.items() if status != "bound")
    expected = bindings_before + unbound + len(people)
    assert fed.rows(SHINJUKU, "chukan", "select count(*) from pseudonym_bindings") == [(expected,)]

    again = CliRunner().invoke(
        app, ["atena", "import", "feed", str(feed_file), "--config", str(config), "--acquire", "--no-progress"]
    )
    assert again.exit_code == 0, again.output
    assert fed.statuses() == after
