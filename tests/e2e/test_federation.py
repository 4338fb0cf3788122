"""End to end: the whole federation as separate processes over mutual TLS.

Runs on SQLite and, when configured, with every node on its own PostgreSQL database.
Checks the three demo scenarios, the trust boundaries of DESIGN.md §1 over every
node's data, and that a peer without a certificate of our CA cannot even connect.
"""

from __future__ import annotations

import json
import random
import re
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from renkei.core.crypto import pki
from renkei.dummy.model import NAKANO as NAKANO_LG
from renkei.dummy.model import SHINJUKU as SHINJUKU_LG
from renkei.dummy.model import SynthPopulation
from renkei.dummy.output import write_population_csv
from renkei.federation import demo
from renkei.federation.process import Federation
from renkei.federation.topology import HUB, JLIS, NAKANO, ORGS, SHINJUKU, TSA, Layout
from tests.conftest import BACKENDS, create_pg_database, drop_pg_database

pytestmark = pytest.mark.e2e


def _free_base_port() -> int:
    for _ in range(50):
        base = random.randrange(20000, 40000, 100)
        ok = True
        for offset in range(0, 60):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", base + offset))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


@dataclass
class Run:
    layout: Layout
    pop: SynthPopulation
    scenarios: list[demo.Scenario]
    database_urls: dict[str, str]
    fed: Federation


@pytest.fixture(scope="module", params=BACKENDS)
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    var = tmp_path_factory.mktemp(f"var-{request.param}")
    layout = Layout(var, _free_base_port())
    urls: dict[str, str] = {}
    if request.param == "postgresql":
        for org in ORGS:
            for node in org.nodes:
                urls[f"{org.slug}/{node}"] = create_pg_database()
    pop = demo.generate_population(seed=7, shinjuku=150, nakano=100)
    fed = Federation()
    try:
        demo.prepare(layout, pop, urls)
        demo.start(layout, fed)
        scenarios = demo.play(layout, pop)
        yield Run(layout, pop, scenarios, urls, fed)
    finally:
        fed.stop()
        for url in urls.values():
            drop_pg_database(url)


def test_scenarios_end_as_expected(run: Run) -> None:
    results = {sc.name: sc.result for sc in run.scenarios}
    assert results["a_move_in_tax"]["outcome"] == "answered", results
    assert results["b_not_allowed"]["outcome"] == "refused", results
    assert results["c_no_copy"]["outcome"] == "no_data", results
    assert results["d_wrong_affair"]["outcome"] == "denied", results
    assert all(r["ok"] for r in results.values()), results
    serials = [r["serial"] for r in results.values() if r["name"] != "d_wrong_affair"]
    assert all(s and len(s) == 20 for s in serials) and len(set(serials)) == 3
    # Refused at atena by the affair role check: never numbered, never sent to the hub.
    assert results["d_wrong_affair"]["serial"] is None
    assert results["d_wrong_affair"]["http_status"] == 403


def _atena_rows(run: Run, sql: str) -> list[tuple[object, ...]]:
    url = run.database_urls.get("shinjuku/atena") or (
        f"sqlite:///{run.layout.node_dir(SHINJUKU, 'atena') / 'atena.db'}"
    )
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def test_atena_knows_who_asked(run: Run) -> None:
    """The actor of inquiries is the signed-in staff member; business systems by client id."""
    logged = _atena_rows(run, "select staff_id, outcome from inquiry_log order by id")
    assert logged == [("S0001", "answered"), ("S0002", "rule_violation"), ("S0001", "no_data")]
    audit = set(_atena_rows(run, "select actor, action, outcome from audit_entries"))
    assert ("S0002", "inquiry", "affair_not_permitted") in audit
    assert ("S0001", "session.login", "ok") in audit and ("S0002", "session.login", "ok") in audit
    assert ("jumin01-batch", "residents.register", "ok") in audit
    assert ("tax-batch", "fukuhon.register", "ok") in audit


def test_credentials_stay_in_their_private_file(run: Run) -> None:
    import os
    import stat

    from renkei.federation import setup

    for org in (SHINJUKU, NAKANO):
        path = setup.credentials_path(run.layout, org)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        creds = setup.load_credentials(run.layout, org)
        assert {"S0001", "S0002"} <= set(creds["staff"])
        # Nothing else under the atena's data directory holds a password or a client secret.
        others = b"\n".join(
            p.read_bytes()
            for p in run.layout.node_dir(org, "atena").rglob("*")
            if p.is_file() and p != path
        )
        for member in creds["staff"].values():
            assert member["password"].encode() not in others
        for client in creds["clients"].values():
            assert client["secret"].encode() not in others


def _hub_rows(run: Run, sql: str) -> list[tuple[object, ...]]:
    url = run.database_urls.get("hub/hub") or f"sqlite:///{run.layout.node_dir(HUB, 'hub') / 'hub.db'}"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def test_refusal_is_recorded_at_the_hub_naming_the_missing_rule(run: Run) -> None:
    serial = next(sc.result["serial"] for sc in run.scenarios if sc.name == "b_not_allowed")
    rows = _hub_rows(run, f"select outcome, reason_code, reason from provision_records where serial = '{serial}'")
    assert rows and rows[0][0] == "refused" and rows[0][1] == "rule_not_found"
    assert "TM00000000009001" in str(rows[0][2]) and "JT01010000016001" in str(rows[0][2])


def _node_text(run: Run, slug: str, node: str) -> bytes:
    """Everything a node holds: every file in its data directory, and its database's rows."""
    org = next(o for o in ORGS if o.slug == slug)
    parts: list[bytes] = []
    for path in sorted(run.layout.node_dir(org, node).rglob("*")):
        if path.is_file():
            parts.append(path.read_bytes())
    url = run.database_urls.get(f"{slug}/{node}")
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


def _answer_markers(run: Run) -> list[bytes]:
    """Answer values as they would appear in plaintext JSON, for every registered tax copy."""
    markers = []
    for copy in demo.tax_copies(run.pop, SHINJUKU_LG) + demo.tax_copies(run.pop, NAKANO_LG):
        values = copy["values"]
        if values.get("K003", "0") not in {"", "0"}:
            markers.append(f'"K003": "{values["K003"]}"'.encode())
            markers.append(f'"K003":"{values["K003"]}"'.encode())
            markers.append(f"'K003': '{values['K003']}'".encode())  # rows read back from PostgreSQL
    return markers


def _plain_item_markers(run: Run) -> list[bytes]:
    """An item the catalogue does not mark sensitive (K001, the tax year), as plaintext JSON."""
    year = str(run.pop.tax_year)
    return [f'"K001": "{year}"'.encode(), f'"K001":"{year}"'.encode(), f"'K001': '{year}'".encode()]


def test_trust_boundaries(run: Run, tmp_path: Path) -> None:
    numbers = [p.individual_number.encode() for p in run.pop.persons]
    resident_codes = [p.resident_code.encode() for p in run.pop.persons]
    pseudonyms = [str(r[0]).encode() for r in _hub_rows(run, "select pseudonym from pseudonyms")]
    assert len(pseudonyms) > 100
    answers = _answer_markers(run)
    assert answers

    hub = _node_text(run, "hub", "hub")
    jlis = _node_text(run, "jlis", "jlis")
    tsa = _node_text(run, "tsa", "tsa")
    chukans = {o.slug: _node_text(run, o.slug, "chukan") for o in ORGS if "chukan" in o.nodes}
    atenas = {o.slug: _node_text(run, o.slug, "atena") for o in ORGS if "atena" in o.nodes}

    def hits(blob: bytes, needles: list[bytes]) -> int:
        return sum(1 for n in needles if n in blob)

    # The scan must be able to fail: the places that do hold these values are found
    # (the population file the demo writes holds every number as generated; J-LIS the
    # resident codes in clear, the key to its sealed numbers).
    write_population_csv(run.pop, tmp_path / "population.csv")
    assert hits((tmp_path / "population.csv").read_bytes(), numbers) == len(numbers)
    assert hits(jlis, resident_codes) > 0
    plain = _plain_item_markers(run)
    assert hits(chukans["nakano"], plain) > 0
    assert hits(chukans["shinjuku"], pseudonyms) > 0

    assert hits(hub, numbers) == 0, "individual number at the hub"
    assert hits(hub, resident_codes) == 0, "resident code stored in clear at the hub"
    assert hits(hub, answers) == 0 and hits(hub, plain) == 0, "answer content readable at the hub"
    for slug, blob in chukans.items():
        # 総所得金額等 is marked sensitive: sealed at rest even where the copy is held.
        assert hits(blob, answers) == 0, f"sensitive item in clear in {slug} chukan"
        assert hits(blob, numbers) == 0, f"individual number in {slug} chukan"
        assert hits(blob, resident_codes) == 0, f"resident code in {slug} chukan"
    for slug, blob in atenas.items():
        assert hits(blob, numbers) == 0, f"individual number in clear in {slug} atena"
        assert hits(blob, resident_codes) == 0, f"resident code in {slug} atena"
        assert hits(blob, pseudonyms) == 0, f"pseudonym in {slug} atena"
    # J-LIS seals the individual numbers at rest, as atena does.
    assert hits(jlis, numbers) == 0, "individual number in clear at J-LIS"
    assert hits(jlis, pseudonyms) == 0 and hits(jlis, answers) == 0 and hits(jlis, plain) == 0
    # The time-stamp authority holds nothing about a person (DESIGN.md §1).
    assert b"T0001" in tsa, "the authority's database was not scanned (its operator is not found)"
    assert hits(tsa, numbers) == 0, "individual number at the time-stamp authority"
    assert hits(tsa, resident_codes) == 0, "resident code at the time-stamp authority"
    assert hits(tsa, pseudonyms) == 0, "pseudonym at the time-stamp authority"
    assert hits(tsa, answers) == 0 and hits(tsa, plain) == 0, "answer content at the time-stamp authority"


def test_each_organization_gets_a_different_pseudonym(run: Run) -> None:
    rows = _hub_rows(run, "select link_id, count(distinct pseudonym), count(distinct org_code) from pseudonyms group by link_id")
    assert rows and all(int(r[1]) == int(r[2]) for r in rows)
    assert any(int(r[2]) >= 2 for r in rows)


def _handshake(url: str, context: ssl.SSLContext) -> None:
    host, port = url.removeprefix("https://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = tls.recv(4096)
            if not data:
                raise ConnectionError("closed")


@pytest.mark.parametrize("target", ["hub", "chukan", "atena"])
def test_peer_without_our_certificate_is_refused(run: Run, target: str, tmp_path: Path) -> None:
    org = {"hub": HUB, "chukan": NAKANO, "atena": SHINJUKU}[target]
    url = run.layout.url(org, target)
    # A good client certificate works.
    creds = run.layout.creds_dir(SHINJUKU, "atena")
    _handshake(url, pki.client_ssl_context(creds / "tls.crt", creds / "tls.key", run.layout.ca_cert))
    # No client certificate.
    bare = ssl.create_default_context(cafile=str(run.layout.ca_cert))
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _handshake(url, bare)
    # A certificate from a foreign CA naming a known organization.
    pki.create_ca(tmp_path / "ca")
    foreign = pki.issue_node_credentials(tmp_path / "ca", tmp_path / "org", SHINJUKU.org_code, "偽の新宿区", "chukan")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _handshake(url, pki.client_ssl_context(foreign.tls_cert, foreign.tls_key, run.layout.ca_cert))


def test_atena_key_cannot_inquire_at_the_hub(run: Run) -> None:
    """The probe's bypass: an inquiry signed with the organization's atena key (and sent
    over atena's TLS certificate) straight to the hub. Each node now has its own key and
    the hub takes inquiries from a chukan only: refused before the rule check, nothing
    recorded."""
    import httpx

    from renkei.core.crypto import envelope
    from renkei.core.wire.messaging import JOSE_MEDIA_TYPE, seal

    creds = run.layout.creds_dir(SHINJUKU, "atena")
    key = envelope.load_signing_key(creds / "sig.jwk")
    assert key.kid.startswith(f"{SHINJUKU.org_code}:atena:sig:")
    body = {
        "pseudonym": "p" * 43,
        "provider_org": NAKANO.org_code,
        "procedure_code": "JT01010000074001",
        "info_kind_code": "TM00000000000002",
        "as_of": "2024-06-01",
    }
    before = _hub_rows(run, "select count(*) from provision_records")
    ctx = pki.client_ssl_context(creds / "tls.crt", creds / "tls.key", run.layout.ca_cert)
    with httpx.Client(verify=ctx, timeout=10) as client:
        r = client.post(
            run.layout.url(HUB, "hub") + "/v1/inquiries",
            content=seal(key, SHINJUKU.org_code, HUB.org_code, "inquiry.request", body).encode(),
            headers={"content-type": JOSE_MEDIA_TYPE},
        )
    assert r.status_code == 403 and r.json()["code"] == "sender_not_allowed", r.text
    assert _hub_rows(run, "select count(*) from provision_records") == before


def test_demo_command_writes_report_and_population(tmp_path: Path) -> None:
    """`renkei demo` as a user runs it, in its own directory and ports."""
    var = tmp_path / "var"
    proc = subprocess.run(
        [sys.executable, "-m", "renkei.cli", "demo", "--var", str(var), "--base-port", str(_free_base_port())],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((var / "demo" / "report.json").read_text(encoding="utf-8"))
    assert [s["outcome"] for s in report["scenarios"]] == ["answered", "refused", "no_data", "denied"]
    assert [s["expected"] for s in report["scenarios"]] == ["answered", "refused", "no_data", "denied"]
    assert all(isinstance(s["round_trip_ms"], float) for s in report["scenarios"])
    header = (var / "demo" / "population.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("個人番号")
    assert "該当なし" in proc.stdout and "回答あり" in proc.stdout
    assert "d_wrong_affair" in proc.stdout
    # The generated credentials are never printed.
    from renkei.federation import setup

    creds = setup.load_credentials(Layout(var), SHINJUKU)
    for member in creds["staff"].values():
        assert member["password"] not in proc.stdout + proc.stderr
    for client in creds["clients"].values():
        assert client["secret"] not in proc.stdout + proc.stderr




def _approve_at_hub(run: Run, request_id: int, approver: str) -> None:
    """What a second auditor's POST /v1/exports/{id}/approve does, on the hub's database."""
    from renkei.core.config import load_config
    from renkei.core.db import make_engine, make_sessionmaker, transaction, utcnow
    from renkei.hub import models
    from renkei.staff import exports

    cfg = load_config(run.layout.config_path(HUB, "hub"))
    engine = make_engine(cfg.database_url)
    try:
        with transaction(make_sessionmaker(engine)) as s:
            exports.approve(s, models.exports, request_id, staff_id=approver, roles=["監査"], now=utcnow())
    finally:
        engine.dispose()


def test_every_node_keeps_a_verifiable_audit_chain(run: Run, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from renkei.cli import app

    runner = CliRunner()
    for org in ORGS:
        for node in org.nodes:
            config = str(run.layout.config_path(org, node))
            result = runner.invoke(app, ["audit", "verify", "--config", config])
            assert result.exit_code == 0, (org.slug, node, result.output)
            assert "改ざんは見つかりませんでした" in result.output
    out = tmp_path / "hub-audit.jsonl"
    config = str(run.layout.config_path(HUB, "hub"))
    export = ["audit", "export", "--config", config, "--out", str(out)]
    # An administrator may not read the audit log; an unknown ID is nobody.
    for actor in ("H0001", "A0001"):
        refused = runner.invoke(app, [*export, "--actor", actor])
        assert refused.exit_code == 1 and not out.exists(), refused.output
    result = runner.invoke(app, [*export, "--actor", "H0101"])
    if result.exit_code == 3:  # above the size limit: a second auditor approves first
        request_id = int(re.search(r"--request (\d+)", result.output).group(1))  # type: ignore[union-attr]
        _approve_at_hub(run, request_id, "H0102")
        assert runner.invoke(app, [*export, "--actor", "H0101", "--request", str(request_id)]).exit_code == 0
    else:
        assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines.pop(0))["renkei_export"]
    assert header["exporter"] == "H0101" and header["kind"] == "audit"
    actions = [json.loads(line)["action"] for line in lines]
    assert "inquiry.check" in actions and "acquisition.resolve" in actions
    refused = [json.loads(line) for line in lines if json.loads(line).get("outcome") == "refused"]
    assert refused and refused[0]["detail"]["reason_code"] == "rule_not_found"
    # No individual number in any node's audit export.
    numbers = {p.individual_number for p in run.pop.persons}
    assert not any(n in line for line in lines for n in numbers)


def _rows(run: Run, org_slug: str, node: str, sql: str) -> list[tuple[object, ...]]:
    org = next(o for o in ORGS if o.slug == org_slug)
    url = run.database_urls.get(f"{org_slug}/{node}") or f"sqlite:///{run.layout.node_dir(org, node) / f'{node}.db'}"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def test_a_stopped_node_is_countersigned_and_its_cut_tail_found(run: Run) -> None:
    """Last in this module: it stops J-LIS. Its shutdown checkpoint reaches the running
    time-stamp authority; `renkei audit verify` passes, then fails once the tail is cut."""
    from typer.testing import CliRunner

    from renkei.cli import app

    proc = next(p for p in run.fed.processes if p.name == f"{JLIS.name}/jlis")
    assert proc.popen is not None
    proc.popen.terminate()  # uvicorn shuts down gracefully, then re-raises SIGTERM on itself
    assert proc.popen.wait(timeout=30) in (0, -15)
    last = int(_rows(run, "jlis", "jlis", "select max(seq) from audit_entries")[0][0])
    receipts = _rows(run, "jlis", "jlis", "select seq, tsa from audit_receipts order by seq")
    assert receipts and receipts[-1] == (last, TSA.org_code), (last, receipts)
    heads = _rows(run, "tsa", "tsa", f"select seq from tsa_heads where node = '{JLIS.org_code}/jlis'")
    assert heads == [(last,)]
    config = str(run.layout.config_path(JLIS, "jlis"))
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--config", config])
    assert ok.exit_code == 0 and f"タイムスタンプ局の記録（{last:,} 番まで）と一致" in ok.output, ok.output
    url = run.database_urls.get("jlis/jlis") or f"sqlite:///{run.layout.node_dir(JLIS, 'jlis') / 'jlis.db'}"
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"delete from audit_entries where seq = {last}"))
            conn.execute(text(f"delete from audit_checkpoints where seq = {last}"))
            prev = conn.execute(text(f"select hash from audit_entries where seq = {last - 1}")).scalar_one()
            cp = conn.execute(text("select coalesce(max(seq), 0) from audit_checkpoints")).scalar_one()
            conn.execute(
                text("update audit_head set seq = :s, hash = :h, last_checkpoint_seq = :c"),
                {"s": last - 1, "h": prev, "c": cp},
            )
    finally:
        engine.dispose()
    cut = runner.invoke(app, ["audit", "verify", "--config", config])
    assert cut.exit_code == 1, cut.output
    assert "監査ログの末尾 1 件が失われています" in cut.output, cut.output
