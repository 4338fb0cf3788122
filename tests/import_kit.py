"""Node configurations for the import tests: 新宿区's atena and J-LIS on the test's
database, with the demo organizations' keys (made once per run), and files of the
synthetic kind written by hand (small, valid individual numbers and resident codes)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, MetaData, func, select

from renkei.core import ids
from renkei.federation.topology import JLIS, SHINJUKU, Layout, write_config
from tests.api.fed import _pki_template

ROOT = Path(__file__).resolve().parent.parent


def configs(tmp: Path, basetemp: Path, db_url: str) -> tuple[Path, Path]:
    """(atena config, jlis config), both on ``db_url`` (a test uses one of them)."""
    layout = Layout(tmp / "fed")
    shutil.copytree(_pki_template(basetemp), layout.root / "pki")
    return write_config(layout, SHINJUKU, "atena", db_url), write_config(layout, JLIS, "jlis", db_url)


def person(n: int, *, seed: int = 1, address: str | None = None) -> dict[str, Any]:
    rng = random.Random(seed * 1_000_003 + n)
    return {
        "individual_number": ids.generate_individual_number(rng),
        "family_name": "試験",
        "given_name": f"太郎{n}",
        "family_kana": "シケン",
        "given_kana": "タロウ",
        "birth_date": f"19{50 + n % 50:02d}-0{1 + n % 9}-1{n % 10}",
        "sex": "1" if n % 2 else "2",
        "postal_code": "1600022",
        "address": address or f"東京都新宿区新宿一丁目{n}番",
        "lg_code": "131041",
        "effective_on": "2020-04-01",
        "business_numbers": {"tax": ids.make_atena_no(10_000 + n)},
    }


def pair(n: int, *, seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed * 1_000_003 + n)
    return {
        "individual_number": ids.generate_individual_number(rng),
        "resident_code": ids.generate_resident_code(rng),
        "lg_code": "131041",
    }


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def counts(engine: Engine, metadata: MetaData) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one()) for t in metadata.sorted_tables}


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "renkei.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=600,
        check=False,
    )
