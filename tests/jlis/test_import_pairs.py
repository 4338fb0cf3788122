"""`renkei jlis import pairs`: (個人番号, 住民票コード, 地方公共団体コード) from a file into
J-LIS, sealed at rest — round trip, idempotent, a changed code refused naming its line,
CSV, resumable ledger. Both backends."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from renkei.core.config import NodeConfig, load_config
from renkei.core.db import make_engine
from renkei.core.errors import Problem
from renkei.jlis import service
from renkei.jlis.imports import import_pairs
from renkei.jlis.models import Base, Citizen, audit, imports
from renkei.staff.admin import node_cipher
from tests.import_kit import cli, configs, counts, pair, write_jsonl


@pytest.fixture
def node(tmp_path: Path, db_url: str, request: pytest.FixtureRequest) -> Iterator[tuple[Path, NodeConfig, Engine]]:
    _, jlis_cfg = configs(tmp_path, request.config._tmp_path_factory.getbasetemp(), db_url)  # type: ignore[attr-defined]
    engine = make_engine(db_url)
    yield jlis_cfg, load_config(jlis_cfg), engine
    engine.dispose()


def _held(engine: Engine, cfg: NodeConfig) -> dict[str, tuple[str, str]]:
    cipher = node_cipher(cfg)
    with engine.connect() as conn:
        rows = conn.execute(select(Citizen.__table__)).all()
    return {
        cipher.decrypt(r.individual_number_enc, service.number_aad(r.resident_code)): (r.resident_code, r.lg_code)
        for r in rows
    }


def test_round_trip_idempotent_and_sealed(node: tuple[Path, NodeConfig, Engine], tmp_path: Path) -> None:
    config, cfg, engine = node
    pairs = [pair(n) for n in range(30)]
    path = write_jsonl(tmp_path / "pairs.jsonl", [*pairs, pairs[2]])  # a row repeated: added once
    result = cli("jlis", "import", "pairs", str(path), "--config", str(config), "--batch-size", "8", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "31 件読込" in result.stdout and "30 組を追加" in result.stdout
    assert _held(engine, cfg) == {p["individual_number"]: (p["resident_code"], p["lg_code"]) for p in pairs}
    # Sealed at rest: no number in clear in the table, nor in the audit log.
    with engine.connect() as conn:
        stored = str(conn.execute(select(Citizen.__table__)).all())
        entries = conn.execute(select(audit.entries.c.action, audit.entries.c.detail)).all()
    assert not any(p["individual_number"] in stored for p in pairs)
    assert [a for a, _ in entries] == ["citizens.import"] * 4 and sum(d["applied"] for _, d in entries) == 30
    before = counts(engine, Base.metadata)
    again = import_pairs(cfg, path, force=True)
    assert (again.read, again.applied) == (31, 0)
    after = counts(engine, Base.metadata)
    assert after["citizens"] == before["citizens"] and after["imports"] == before["imports"] + 1


def test_changed_code_refused_naming_the_line(node: tuple[Path, NodeConfig, Engine], tmp_path: Path) -> None:
    _, cfg, engine = node
    pairs = [pair(n) for n in range(6)]
    import_pairs(cfg, write_jsonl(tmp_path / "first.jsonl", pairs[:2]))
    other = {**pairs[0], "resident_code": pair(99)["resident_code"]}
    path = write_jsonl(tmp_path / "second.jsonl", [*pairs[2:4], pairs[4], other, pairs[5]])
    with pytest.raises(Problem) as exc:
        import_pairs(cfg, path, batch_size=2)
    assert exc.value.code == "resident_code_changed" and "second.jsonl の 4 行目" in exc.value.title
    # The first batch (lines 1–2) committed; nothing of the refused one (lines 3–4).
    assert set(_held(engine, cfg)) == {p["individual_number"] for p in pairs[:4]}
    with engine.connect() as conn:
        assert conn.execute(select(imports.c.rows_read, imports.c.status).order_by(imports.c.id)).all() == [
            (2, "done"),
            (2, "running"),
        ]


def test_csv_and_bad_values(node: tuple[Path, NodeConfig, Engine], tmp_path: Path) -> None:
    config, cfg, engine = node
    pairs = [pair(n) for n in range(4)]
    path = tmp_path / "pairs.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["個人番号", "住民票コード", "地方公共団体コード"])
        w.writerows([p["individual_number"], p["resident_code"], p["lg_code"]] for p in pairs)
    assert import_pairs(cfg, path).applied == 4
    bad = tmp_path / "bad.csv"
    bad.write_text(f"個人番号,住民票コード,地方公共団体コード\n{pair(5)['individual_number']},12345,131041\n", encoding="utf-8")
    result = cli("jlis", "import", "pairs", str(bad), "--config", str(config), "--no-progress")
    assert result.returncode == 1 and "bad.csv の 2 行目" in result.stderr and "住民票コード" in result.stderr
    assert len(_held(engine, cfg)) == 4
