"""Streaming imports at 新宿区 scale, beside a raw bulk insert of the same rows.

    python bench/bench_import.py                        # 343,000 people, SQLite and PostgreSQL
    python bench/bench_import.py --people 20000 --backends sqlite

For each backend: `renkei atena import residents` of 新宿区's person records and
`renkei jlis import pairs` of everyone's number pairs, each run as its own process under
/usr/bin/time -v (wall time, peak RSS), on a fresh database. Then the baseline: the rows
those imports wrote (sealed numbers and all) copied into a second fresh database of the
same engine with plain executemany, 5,000 rows a transaction — only the inserts and
commits timed. Printed: wall time, records/s, peak RSS and the ratio to the baseline.

The files are written once by bench/import_files.py (kept under --files) and reused.
PostgreSQL: --pg-url or $RENKEI_TEST_POSTGRES_URL (a server where databases can be created).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, MetaData, Table, func, insert, select
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
from import_files import ensure_files  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CHUNK = 5_000


@dataclass
class Run:
    what: str
    records: int
    wall: float
    rss_mb: float
    cpu: float
    summary: str


def _time_v(args: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """(wall seconds, peak RSS MB, CPU seconds, stdout) of a command under /usr/bin/time -v."""
    proc = subprocess.run(["/usr/bin/time", "-v", *args], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    wall_text = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", proc.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    assert wall_text and rss, proc.stderr
    parts = [float(p) for p in wall_text.group(1).split(":")]
    wall = sum(p * 60 ** (len(parts) - 1 - i) for i, p in enumerate(parts))
    cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([0-9.]+)", proc.stderr))
    return wall, int(rss.group(1)) / 1024, cpu, proc.stdout.strip()


def _pg_database(base: str, label: str) -> str:
    import psycopg

    name = f"renkei_bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = make_url(base).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(base).set(database=name).render_as_string(hide_password=False)


def _drop_pg(url: str) -> None:
    import psycopg

    name = make_url(url).database
    admin = make_url(url).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _copy(source: Engine, target: Engine, tables: list[Table], *, copy: bool = False) -> tuple[int, float]:
    """Copy every row of ``tables`` (in key order) with plain executemany (or, ``copy``,
    PostgreSQL's COPY as renkei.core.bulk does it), CHUNK rows a transaction; (rows,
    seconds spent inserting and committing)."""
    from sqlalchemy.orm import Session

    from renkei.core import bulk

    spent = 0.0
    rows = 0
    with source.connect() as src:
        for table in tables:
            key = next(iter(table.primary_key.columns))
            result = src.execution_options(yield_per=CHUNK).execute(select(table).order_by(key))
            for part in result.partitions(CHUNK):
                batch = [dict(r._mapping) for r in part]
                start = time.perf_counter()
                if copy:
                    with Session(target) as session, session.begin():
                        bulk.insert_rows(session, table, batch)
                else:
                    with target.begin() as conn:
                        conn.execute(insert(table), batch)
                spent += time.perf_counter() - start
                rows += len(batch)
    return rows, spent


def bench_backend(backend: str, residents: Path, pairs: Path, work: Path, pg_url: str, batch: int) -> None:
    from renkei import nodes
    from renkei.core.config import load_config
    from renkei.core.db import make_engine, migrate
    from renkei.federation import setup
    from renkei.federation.topology import JLIS, SHINJUKU, Layout, write_config
    from renkei.staff.admin import node_cipher

    layout = Layout(work / backend)
    if not layout.ca_cert.exists():
        setup.init_pki(layout)
    urls: dict[str, str] = {}
    raws = ["atena_raw", "jlis_raw"] + (["atena_copy", "jlis_copy"] if backend == "postgresql" else [])
    for node in ("atena", "jlis", *raws):
        if backend == "postgresql":
            urls[node] = _pg_database(pg_url, node)
        else:
            path = work / backend / "db" / f"{node}.db"
            path.parent.mkdir(parents=True, exist_ok=True)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            urls[node] = f"sqlite:///{path}"
    try:
        configs = {
            "atena": write_config(layout, SHINJUKU, "atena", urls["atena"]),
            "jlis": write_config(layout, JLIS, "jlis", urls["jlis"]),
        }
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        runs = []
        for node, sub, path in (("atena", "residents", residents), ("jlis", "pairs", pairs)):
            args = [sys.executable, "-m", "renkei.cli", node, "import", sub, str(path), "--config", str(configs[node]),
                    "--batch-size", str(batch), "--no-progress"]  # fmt: skip
            wall, rss, cpu, out = _time_v(args, env)
            records = sum(1 for line in path.open("rb") if line.strip())
            runs.append(Run(f"{node} import {sub}", records, wall, rss, cpu, out))
        # The baseline: the same rows, raw, into a fresh database of the same engine.
        baselines: dict[str, tuple[int, float]] = {}
        for node, tables in (
            ("atena", ["atena_serials", "persons", "basic_four", "business_links"]),
            ("jlis", ["citizens"]),
        ):
            schema = nodes.schema(node)
            for raw in (f"{node}_raw", f"{node}_copy"):
                if raw not in urls:
                    continue
                src, dst = make_engine(urls[node]), make_engine(urls[raw])
                migrate(dst, schema.migrations, schema.metadata, {"field_cipher": node_cipher(load_config(configs[node]))})
                md: MetaData = schema.metadata
                n, spent = _copy(src, dst, [md.tables[t] for t in tables], copy=raw.endswith("_copy"))
                with dst.connect() as conn:
                    check = sum(int(conn.execute(select(func.count()).select_from(md.tables[t])).scalar_one()) for t in tables)
                assert check == n
                baselines[raw] = (n, spent)
                src.dispose()
                dst.dispose()
        print(f"\n== {backend} ==")
        for run, node in zip(runs, ("atena", "jlis"), strict=True):
            print(f"{run.what}: {run.records:,} records in {run.wall:.1f} s wall ({run.records / run.wall:,.0f}/s), "
                  f"CPU {run.cpu:.1f} s, peak RSS {run.rss_mb:.0f} MB")  # fmt: skip
            print(f"  {run.summary}")
            own = re.search(r"所要 ([0-9.]+) 秒", run.summary)
            for raw, how in ((f"{node}_raw", "raw executemany"), (f"{node}_copy", "raw COPY")):
                if raw not in baselines:
                    continue
                rows, spent = baselines[raw]
                alone = f", import alone {float(own.group(1).replace(',', '')) / spent:.2f}x" if own else ""
                print(f"  baseline: {rows:,} rows {how} in {spent:.1f} s ({rows / spent:,.0f} rows/s); "
                      f"ratio {run.wall / spent:.2f}x (process wall){alone}")  # fmt: skip
    finally:
        if backend == "postgresql":
            for url in urls.values():
                _drop_pg(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=343_000)
    parser.add_argument("--seed", type=int, default=20240101)
    parser.add_argument("--files", type=Path, default=Path("/work/notes/residents-bench"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/renkei-bench-import"))
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--pg-url", default=os.environ.get("RENKEI_TEST_POSTGRES_URL") or PG_DEFAULT)
    args = parser.parse_args()
    residents, pairs = ensure_files(args.files, args.people, args.seed)
    for backend in args.backends.split(","):
        bench_backend(backend.strip(), residents, pairs, args.work, args.pg_url, args.batch_size)


if __name__ == "__main__":
    main()
