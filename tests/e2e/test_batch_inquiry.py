"""End to end: `renkei batch inquire` answers a 一括照会 request file against the demo federation.

The federation runs as separate processes over mutual TLS (the demo's, scenarios played);
the command runs 新宿区's atena in its own process from the configuration, as staff run it.
A comma-joined CRLF request of three records, written as a real municipal client writes it
(ASCII, zero-width empty fields, no header): the demo's answered scenario, its no-copy
scenario, and a record for an affair the actor holds no role for. The result file has three
rows in the request's order and shape; the department and user of each record reach the
provision records of 新宿区's chukan and of the hub. Runs on SQLite and, when configured,
with every node on its own PostgreSQL database.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from renkei.atena import batch
from renkei.catalogue import load_catalogue
from renkei.cli import app
from renkei.core import ids
from renkei.dummy.model import NAKANO as NAKANO_LG
from renkei.dummy.synth import SynthPopulation
from renkei.federation import demo
from renkei.federation.process import Federation
from renkei.federation.topology import HUB, NAKANO, ORGS, SHINJUKU, Layout, Org
from tests.conftest import BACKENDS, create_pg_database, drop_pg_database
from tests.e2e.test_federation import _free_base_port

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Fed:
    layout: Layout
    urls: dict[str, str]
    pop: SynthPopulation

    def rows(self, org: Org, node: str, sql: str) -> list[tuple[object, ...]]:
        url = self.urls.get(f"{org.slug}/{node}") or f"sqlite:///{self.layout.node_dir(org, node) / f'{node}.db'}"
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(sql))]
        finally:
            engine.dispose()


@pytest.fixture(scope="module", params=BACKENDS)
def fed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    var = tmp_path_factory.mktemp(f"batch-{request.param}")
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
        yield Fed(layout, urls, pop)
    finally:
        process.stop()
        for url in urls.values():
            drop_pg_database(url)


def _record(req: dict[str, str], **over: str) -> dict[str, str]:
    """A request record as the public client fills it: 統合宛名番号, user and 委任元 left empty."""
    rec = {
        "number_system": batch.BY_BUSINESS_NO,
        "business_atena_no": req["business_atena_no"],
        "requested_at": "20261206093000123",
        "department": "KODOMO-KATEI",
        "inquirer_org": SHINJUKU.org_code,
        "withheld": "0",
        "affair_code": demo.CHILD_ALLOWANCE_AFFAIR,
        "procedure_code": req["procedure_code"],
        "provider_org": req["provider_org"],
        "info_kind_code": req["info_kind_code"],
        "condition": "1",
    }
    rec.update(over)
    return rec


def test_a_comma_joined_crlf_file_of_three_records_gets_three_result_rows(fed: Fed, tmp_path: Path) -> None:
    a, _b, c, _d = demo.build_scenarios(fed.pop)
    records = [
        _record(a.request, user_id="U1001"),
        _record(c.request),  # user left empty: the actor (S0001) is named instead
        # the actor holds no local-tax role: refused for this record alone
        _record(a.request, affair_code=demo.LOCAL_TAX_AFFAIR, procedure_code=demo.LOCAL_TAX_PROCEDURE),
    ]
    request = tmp_path / "P640R110_20261206093000_0001.DAT"
    request.write_bytes("".join(line + "\r\n" for line in batch.request_lines(records)).encode("ascii"))
    assert b",," in request.read_bytes() and request.read_bytes().count(b"\r\n") == 3
    out = tmp_path / "result.csv"
    config = fed.layout.config_path(SHINJUKU, "atena")

    result = CliRunner().invoke(
        app,
        ["batch", "inquire", str(request), "--config", str(config), "--actor", "S0001", "--out", str(out),
         "--system", "child_allowance", "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # one record refused
    assert "回答あり 1 件、該当なし 1 件、回答待ち 0 件、エラー 1 件" in result.output

    raw = out.read_bytes()
    assert raw.endswith(b"\r\n") and raw.count(b"\r\n") == 3  # the request's line ends
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    assert len(rows) == 3
    answered, no_data, refused = rows
    # the request's 18 fields echoed, the 統合宛名番号 filled in (staff of atena run this)
    for row, rec in zip(rows, records, strict=True):
        assert row[0] == "01" and row[1] == rec["business_atena_no"] and row[6] == SHINJUKU.org_code
        assert row[4] == "KODOMO-KATEI".ljust(20)  # a code field, space-filled as sent
        assert ids.check(ids.IdKind.ATENA_NO, row[2]) is None
        assert row[10] == row[11] == ""  # zero-width empty fields stay zero-width
    head = next(p for p in fed.pop.persons if demo.business.number(fed.pop, p, "131041", "child_allowance") == a.request["business_atena_no"])
    expected = demo.tax_copy_values(fed.pop, head, NAKANO_LG)
    assert expected is not None
    assert answered[18:21] == ["09", "01", answered[20]] and len(answered[20]) == 20
    assert answered[21:23] == ["", "正常終了"]
    edition = answered[23]
    info = load_catalogue().info_kinds[demo.LOCAL_TAX_INFO]
    codes = [it.code for it in next(e for e in info.editions if e.edition == edition).items]
    assert answered[24:] == [expected.get(code, "") for code in codes]
    assert no_data[18:20] == ["09", "02"] and no_data[22] == "該当なし" and no_data[24:] == []
    assert refused[18:20] == ["99", "99"] and refused[20] == "" and refused[21] == "affair_not_permitted"
    assert "照会権限" in refused[22]
    assert refused[2] == answered[2]  # the same person, named by the same number

    # Who asked reaches the provision records: our chukan's and the hub's.
    serial = answered[20]
    assert fed.rows(SHINJUKU, "chukan", f"select inquirer_department, inquirer_user from provision_records where serial = '{serial}'") == [("KODOMO-KATEI", "U1001")]
    assert fed.rows(HUB, "hub", f"select inquirer_department, inquirer_user from provision_records where serial = '{serial}'") == [("KODOMO-KATEI", "U1001")]
    assert fed.rows(HUB, "hub", f"select inquirer_user from provision_records where serial = '{no_data[20]}'") == [("S0001",)]
    # The provider learns nothing of them.
    assert fed.rows(NAKANO, "chukan", f"select inquirer_department, inquirer_user from provision_records where serial = '{serial}'") == [(None, None)]
    # Every record audited at atena: two inquiries relayed, one refused, and the file.
    audited = fed.rows(SHINJUKU, "atena", "select action, outcome from audit_entries where actor = 'S0001' and action like 'inquiry%' order by seq")
    assert audited[-4:-1].count(("inquiry", "affair_not_permitted")) == 1
    assert sorted(o for a_, o in audited[-4:] if a_ == "inquiry") == ["affair_not_permitted", "answered", "no_data"]
    assert audited[-1] == ("inquiry.batch", "ok")
    logged = fed.rows(SHINJUKU, "atena", f"select department, user_id, staff_id from inquiry_log where serial = '{serial}'")
    assert logged == [("KODOMO-KATEI", "U1001", "S0001")]


def test_a_fixed_width_cp932_lf_file_is_answered_in_its_own_shape(fed: Fed, tmp_path: Path) -> None:
    a, *_ = demo.build_scenarios(fed.pop)
    request = tmp_path / "P640R110_20261206100000_0001.DAT"
    line = batch.request_lines([_record(a.request)], "fixed")[0]
    assert len(line) == batch.REQUEST_LAYOUT.width == 220
    request.write_bytes((line + "\n").encode("cp932"))
    out = tmp_path / "result.csv"
    config = fed.layout.config_path(SHINJUKU, "atena")
    result = CliRunner().invoke(
        app,
        ["batch", "inquire", str(request), "--config", str(config), "--actor", "S0003", "--out", str(out),
         "--system", "child_allowance", "--hide-atena-no", "--result-encoding", "cp932", "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    raw = out.read_bytes()
    assert raw.count(b"\n") == 1 and b"\r" not in raw
    (row,) = list(csv.reader(io.StringIO(raw.decode("cp932"), newline="")))  # as asked: CP932
    assert row[18:20] == ["09", "01"] and row[2] == ""  # --hide-atena-no: for a business system
    assert row[22] == "正常終了" and "正常終了".encode("cp932") in raw


def test_an_unknown_actor_refuses_the_whole_file_and_writes_nothing(fed: Fed, tmp_path: Path) -> None:
    a, *_ = demo.build_scenarios(fed.pop)
    request = tmp_path / "req.DAT"
    request.write_bytes((batch.request_lines([_record(a.request)])[0] + "\r\n").encode())
    out = tmp_path / "result.csv"
    config = fed.layout.config_path(SHINJUKU, "atena")
    args = ["batch", "inquire", str(request), "--config", str(config), "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(app, [*args, "--actor", "S9999"])
    assert result.exit_code == 1 and "職員ID「S9999」は登録されていません" in result.output
    assert not out.exists()
    chukan = fed.layout.config_path(SHINJUKU, "chukan")
    result = CliRunner().invoke(app, [*args[:3], "--config", str(chukan), *args[5:], "--actor", "S0001"])
    assert result.exit_code == 2 and "atena ではありません" in result.output
    result = CliRunner().invoke(app, ["batch", "inquire", str(tmp_path / "none.DAT"), *args[3:], "--actor", "S0001"])
    assert result.exit_code == 2 and "がありません" in result.output
