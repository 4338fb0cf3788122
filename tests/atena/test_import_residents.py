"""`renkei atena import residents`: a file of person records into atena, in committed
batches — round trip, idempotent re-run, a bad line refused with nothing of its batch
written, resumption after SIGKILL, a finished file refused unless forced. Both backends."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DBAPIError

from renkei.atena import service
from renkei.atena.imports import import_residents
from renkei.atena.models import Base, BasicFour, BusinessLink, Person, audit, imports
from renkei.core.config import NodeConfig, load_config
from renkei.core.db import make_engine
from renkei.core.errors import Problem
from renkei.dummy.bulk import RESIDENT_CSV_COLUMNS
from renkei.staff.admin import node_cipher
from tests.import_kit import ROOT, cli, configs, counts, person, write_jsonl

LEDGER_AND_AUDIT = {"imports", "audit_entries", "audit_head", "audit_checkpoints"}


@pytest.fixture
def node(tmp_path: Path, db_url: str, request: pytest.FixtureRequest) -> Iterator[tuple[Path, NodeConfig, Engine]]:
    atena_cfg, _ = configs(tmp_path, request.config._tmp_path_factory.getbasetemp(), db_url)  # type: ignore[attr-defined]
    engine = make_engine(db_url)
    yield atena_cfg, load_config(atena_cfg), engine
    engine.dispose()


def _persons(engine: Engine, cfg: NodeConfig) -> dict[str, str]:
    """individual number → 統合宛名番号 of every person."""
    cipher = node_cipher(cfg)
    with engine.connect() as conn:
        rows = conn.execute(select(Person.atena_no, Person.individual_number_enc)).all()
    return {cipher.decrypt(enc, service._aad(no)): no for no, enc in rows}


def test_round_trip_then_rerun_adds_nothing(node: tuple[Path, NodeConfig, Engine], tmp_path: Path) -> None:
    _, cfg, engine = node
    cipher = node_cipher(cfg)
    people = [person(n) for n in range(25)]
    path = write_jsonl(tmp_path / "people.jsonl", people)
    seen: list[tuple[int, int | None]] = []
    done = import_residents(cfg, path, batch_size=10, actor="cli:tester", progress=lambda d, t: seen.append((d, t)))
    assert (done.result.read, done.result.applied, done.persons, done.versions, done.links) == (25, 25, 25, 25, 25)
    assert done.result.run.batches == 3 and done.result.run.status == "done"
    assert seen[0] == (0, 25) and seen[-1] == (25, 25)
    with engine.connect() as conn:
        rows = conn.execute(select(Person.atena_no, Person.individual_number_enc, Person.residence)).all()
        numbers = {cipher.decrypt(enc, service._aad(no)): no for no, enc, _ in rows}
        assert {r for *_, r in rows} == {"resident"}
        links = dict(conn.execute(select(BusinessLink.business_atena_no, BusinessLink.atena_no)).all())
        kinds = conn.execute(select(BasicFour.change_kind, func.count()).group_by(BasicFour.change_kind)).all()
        entries = conn.execute(select(audit.entries.c.actor, audit.entries.c.action, audit.entries.c.detail)).all()
    assert set(numbers) == {p["individual_number"] for p in people}
    assert {links[p["business_numbers"]["tax"]] for p in people} == set(numbers.values())
    assert kinds == [("新規", 25)]
    # One audit entry per batch, naming the actor and counts, never a number.
    assert [(a, act) for a, act, _ in entries] == [("cli:tester", "residents.import")] * 3
    assert [d["count"] for *_, d in entries] == [10, 10, 5]
    assert not any(p["individual_number"] in str(entries) for p in people)
    before = counts(engine, Base.metadata)
    again = import_residents(cfg, path, force=True)
    assert (again.result.read, again.result.applied, again.persons, again.versions, again.links) == (25, 0, 0, 0, 0)
    after = counts(engine, Base.metadata)
    assert {k: v for k, v in after.items() if k not in LEDGER_AND_AUDIT} == {
        k: v for k, v in before.items() if k not in LEDGER_AND_AUDIT
    }
    # Changed facts add one version (a new address only: 転居), same 統合宛名番号; a new link is added.
    moved = {**people[3], "address": "東京都新宿区西新宿二丁目8番", "business_numbers": {"tax": people[3]["business_numbers"]["tax"], "kokuho": "000000000000019"}}
    changed = import_residents(cfg, write_jsonl(tmp_path / "moved.jsonl", [moved, people[4]]))
    assert (changed.persons, changed.versions, changed.links, changed.result.applied) == (0, 1, 1, 1)
    with engine.connect() as conn:
        history = conn.execute(
            select(BasicFour.change_kind, BasicFour.address).where(BasicFour.atena_no == numbers[moved["individual_number"]]).order_by(BasicFour.id)
        ).all()
    assert [k for k, _ in history] == ["新規", "転居"] and history[-1][1] == moved["address"]


def test_csv_with_japanese_columns(node: tuple[Path, NodeConfig, Engine], tmp_path: Path) -> None:
    _, cfg, engine = node
    people = [person(n) for n in range(7)]
    path = tmp_path / "people.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([name for name, _ in RESIDENT_CSV_COLUMNS] + ["業務宛名番号:tax", "業務宛名番号:kokuho"])
        for p in people:
            w.writerow([p[f] for _, f in RESIDENT_CSV_COLUMNS] + [p["business_numbers"]["tax"], ""])
    done = import_residents(cfg, path)
    assert (done.persons, done.versions, done.links) == (7, 7, 7)
    with engine.connect() as conn:
        got = conn.execute(select(BasicFour.family_kana, BasicFour.birth_date, BasicFour.postal_code)).all()
    assert len(got) == 7 and {str(b) for _, b, _ in got} == {p["birth_date"] for p in people}


def test_bad_line_refused_nothing_of_its_batch_written(node: tuple[Path, NodeConfig, Engine], tmp_path: Path) -> None:
    config, cfg, engine = node
    people = [person(n) for n in range(6)]
    bad = {**people[4], "individual_number": people[4]["individual_number"][:-1] + str((int(people[4]["individual_number"][-1]) + 1) % 10)}
    path = write_jsonl(tmp_path / "people.jsonl", [*people[:4], bad, people[5]])
    # Two batches of 2 commit; the third (lines 5 and 6) is refused as a whole.
    result = cli("atena", "import", "residents", str(path), "--config", str(config), "--batch-size", "2", "--no-progress")
    assert result.returncode == 1, result.stderr
    assert "people.jsonl の 5 行目" in result.stderr and "個人番号" in result.stderr
    assert bad["individual_number"] not in result.stderr + result.stdout
    with pytest.raises(Problem) as exc:
        import_residents(cfg, path, batch_size=2)
    assert exc.value.code == "invalid_individual_number" and exc.value.extra["line"] == 5
    held = _persons(engine, cfg)
    assert set(held) == {p["individual_number"] for p in people[:4]}
    before = counts(engine, Base.metadata)
    with engine.connect() as conn:
        run = conn.execute(select(imports.c.rows_read, imports.c.status, imports.c.batches)).all()
    assert run == [(4, "running", 2)]
    # The corrected file is a new import; the four already registered add nothing.
    fixed = write_jsonl(tmp_path / "people.jsonl", people)
    done = import_residents(cfg, fixed, batch_size=2)
    assert (done.result.read, done.persons) == (6, 2)
    assert set(_persons(engine, cfg)) == {p["individual_number"] for p in people}
    assert counts(engine, Base.metadata)["persons"] == before["persons"] + 2


def test_finished_file_refused_unless_forced(node: tuple[Path, NodeConfig, Engine], tmp_path: Path) -> None:
    config, _, engine = node
    path = write_jsonl(tmp_path / "people.jsonl", [person(n) for n in range(3)])
    first = cli("atena", "import", "residents", str(path), "--config", str(config), "--no-progress")
    assert first.returncode == 0, first.stderr
    assert "住民の取込が完了しました" in first.stdout and "新規 3 人" in first.stdout
    before = counts(engine, Base.metadata)
    again = cli("atena", "import", "residents", str(path), "--config", str(config), "--no-progress")
    assert again.returncode == 1 and "取込済み" in again.stderr and "--force" in again.stderr
    assert counts(engine, Base.metadata) == before
    forced = cli("atena", "import", "residents", str(path), "--config", str(config), "--force", "--no-progress")
    assert forced.returncode == 0 and "新規 0 人" in forced.stdout
    usage = cli("atena", "import", "residents", str(tmp_path / "people.txt"), "--config", str(config))
    assert usage.returncode == 2 and "ありません" in usage.stderr


def test_resumes_after_sigkill(node: tuple[Path, NodeConfig, Engine], tmp_path: Path) -> None:
    config, cfg, engine = node
    total = 12_000
    people = [person(n, seed=7) for n in range(total)]
    path = write_jsonl(tmp_path / "people.jsonl", people)
    proc = subprocess.Popen(
        [sys.executable, "-m", "renkei.cli", "atena", "import", "residents", str(path), "--config", str(config),
         "--batch-size", "500", "--no-progress"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    committed = 0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with engine.connect() as conn:
                    committed = int(conn.execute(select(func.coalesce(func.max(imports.c.rows_read), 0))).scalar_one())
            except DBAPIError:  # not migrated yet
                committed = 0
            if committed >= 500:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the import finished before it could be killed: use a bigger file"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    with engine.connect() as conn:
        killed_at = conn.execute(select(imports.c.rows_read, imports.c.status)).one()
        persons_then = int(conn.execute(select(func.count()).select_from(Person)).scalar_one())
    # The ledger counts exactly the committed rows: the batch in flight rolled back with it.
    assert killed_at[1] == "running" and 500 <= killed_at[0] < total and killed_at[0] % 500 == 0
    assert persons_then == killed_at[0]
    rerun = cli("atena", "import", "residents", str(path), "--config", str(config), "--batch-size", "500", "--no-progress")
    assert rerun.returncode == 0, rerun.stderr
    assert f"{killed_at[0]:,} 件目の後から再開" in rerun.stdout
    held = _persons(engine, cfg)
    with engine.connect() as conn:
        n_persons = int(conn.execute(select(func.count()).select_from(Person)).scalar_one())
        n_versions = int(conn.execute(select(func.count()).select_from(BasicFour)).scalar_one())
        n_links = int(conn.execute(select(func.count()).select_from(BusinessLink)).scalar_one())
        ledger = conn.execute(select(imports.c.rows_read, imports.c.status)).all()
    assert n_persons == n_versions == n_links == total == len(held)
    assert set(held) == {p["individual_number"] for p in people}
    assert ledger == [(total, "done")]
