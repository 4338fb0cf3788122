"""Bootstrap of the ward (issue 9): synthetic Shinjuku → atena → pseudonyms for everyone
through the three-party flow → about 1,000,000 副本 in chukan, on SQLite and PostgreSQL.

Each stage runs the documented command line in a process of its own, against a demo
federation started for the run (every node its own process and database):

    renkei jlis import pairs FILE --config …           J-LIS: everyone's number pairs
    renkei atena import residents FILE --config …      新宿区's atena: its person records
    renkei atena acquire-pseudonyms --config …         符号取得 for every person, until bound
    renkei atena import fukuhon FILE --system S …      each system's copies, two publication years

Figures: wall time per stage and end to end (the files are written once beforehand and
not counted: they stand for what the business systems hand over), peak RSS of every node
process (VmHWM) and of each command; baseline: a raw bulk insert of the same rows
(individual numbers, person rows, pseudonym rows, copies, with values already sealed) into
the same engine with plain executemany, measured in the same run (bench/bench_raw.py).

Goals: ≤ 10 minutes end to end; ≤ 5× the raw-insert baseline; every node ≤ 500 MB.

Usage: .venv/bin/python bench/bench_bootstrap.py [--people 343000] [--backends sqlite,postgresql]
       [--files DIR]   (files are kept there between runs; default bench/.files)
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

GOAL_WALL_S = 600.0
GOAL_RATIO = 5.0
GOAL_RSS_MB = 500.0
SHINJUKU_LG = "131041"
SEED = 20240101
PG_ADMIN = os.environ.get("RENKEI_BENCH_POSTGRES_URL") or os.environ.get(
    "RENKEI_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
HERE = Path(__file__).resolve().parent


@dataclass
class Files:
    pairs: Path
    residents: Path
    fukuhon: dict[str, Path]  # system → its copies for two publication years
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def copies(self) -> int:
        return sum(n for k, n in self.counts.items() if k.startswith("fukuhon:"))


def write_files(out: Path, people: int, seed: int) -> Files:
    """Generate the population once and write every input file (kept for later runs)."""
    from renkei.dummy import bulk, business

    out.mkdir(parents=True, exist_ok=True)
    stem = f"{people}-{seed}"
    systems = list(business.SYSTEMS)
    files = Files(
        pairs=out / f"jlis-pairs-{stem}.jsonl",
        residents=out / f"residents-{SHINJUKU_LG}-{stem}.jsonl",
        fukuhon={s: out / f"fukuhon-{SHINJUKU_LG}-{s}-{stem}.jsonl" for s in systems},
    )
    manifest = out / f"counts-{stem}.txt"
    if manifest.exists():
        files.counts = {k: int(v) for k, v in (line.split("\t") for line in manifest.read_text().splitlines())}
        return files
    from renkei.dummy.synth import SynthConfig, generate

    start = time.perf_counter()
    pop = generate(SynthConfig(seed=seed, people=people, reference_date=date(2025, 4, 1), window_years=2))
    print(f"  generated {len(pop.persons):,} persons in {time.perf_counter() - start:.0f} s", flush=True)
    files.counts["pairs"] = bulk.write_jlis_pairs(pop, files.pairs)
    files.counts["residents"] = bulk.write_residents(pop, SHINJUKU_LG, files.residents)
    for system, path in files.fukuhon.items():
        files.counts[f"fukuhon:{system}"] = bulk.write_fukuhon(pop, SHINJUKU_LG, system, path, years=2)
    manifest.write_text("".join(f"{k}\t{v}\n" for k, v in files.counts.items()))
    print(f"  files in {time.perf_counter() - start:.0f} s: " + ", ".join(f"{k} {v:,}" for k, v in files.counts.items()))
    return files


# --- the federation ------------------------------------------------------------------------


def pg_database() -> str:
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(PG_ADMIN)
    name = f"renkei_b_{uuid.uuid4().hex[:12]}"
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin.set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    target = make_url(url)
    conninfo = make_url(PG_ADMIN).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set size of a live process (Linux /proc), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Stage:
    name: str
    wall_s: float
    rss_mb: float
    rows: int


def run_stage(name: str, args: list[str], rows: int) -> Stage:
    """One command in a process of its own: its wall time and peak RSS. The peak is the
    process's own VmHWM, read while it runs (wait4's ru_maxrss would count this parent's
    memory, which a forked child inherits as its high-water mark)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-m", "renkei.cli", *args], stdout=log, stderr=subprocess.STDOUT)
        peak = 0.0
        while proc.poll() is None:
            try:
                peak = max(peak, vm_hwm_mb(proc.pid))
            except (FileNotFoundError, ProcessLookupError):
                pass
            time.sleep(0.1)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            log.seek(0)
            raise SystemExit(f"{name}: exit {proc.returncode}\n{log.read().decode(errors='replace')[-3000:]}")
    stage = Stage(name, wall, peak, rows)
    rate = f"{rows / wall:,.0f}/s" if rows else ""
    print(f"  {name:34s} {wall:7.1f} s  {rate:>10s}  command peak RSS {stage.rss_mb:,.0f} MB", flush=True)
    return stage


def lift_limits(layout: Any) -> None:
    """The bulk paths send many messages a minute from one peer: raise the peer and staff
    rate ceilings of this run's configs (the guard still counts every message)."""
    from renkei.core.config import dump_config
    from renkei.federation.topology import ORGS

    for org in ORGS:
        for node in org.nodes:
            path = layout.config_path(org, node)
            cfg = tomllib.loads(path.read_text(encoding="utf-8"))
            cfg.setdefault("guard", {}).setdefault("limits", {}).update(staff=10_000_000, peer=10_000_000)
            path.write_text(dump_config(cfg), encoding="utf-8")


def bootstrap(backend: str, files: Files, tmp: Path) -> dict[str, Any]:
    from renkei.federation import demo
    from renkei.federation.process import Federation
    from renkei.federation.topology import JLIS, ORGS, SHINJUKU, Layout

    layout = Layout(tmp / f"var-{backend}", 19400 + random.randrange(0, 40) * 10)
    urls: dict[str, str] = {}
    if backend == "postgresql":
        urls = {f"{org.slug}/{node}": pg_database() for org in ORGS for node in org.nodes}
    fed = Federation()
    stages: list[Stage] = []
    try:
        demo.prepare(layout, demo.generate_population(seed=3, shinjuku=150, nakano=100), urls)
        lift_limits(layout)
        demo.start(layout, fed)
        atena = str(layout.config_path(SHINJUKU, "atena"))
        jlis = str(layout.config_path(JLIS, "jlis"))
        quiet = ["--no-progress"]
        start = time.perf_counter()
        stages.append(run_stage("J-LIS: number pairs", ["jlis", "import", "pairs", str(files.pairs), "--config", jlis, *quiet], files.counts["pairs"]))
        stages.append(run_stage("atena: residents", ["atena", "import", "residents", str(files.residents), "--config", atena, *quiet], files.counts["residents"]))
        stages.append(run_stage("pseudonyms (three-party)", ["atena", "acquire-pseudonyms", "--config", atena, *quiet], files.counts["residents"]))
        for system, path in files.fukuhon.items():
            n = files.counts[f"fukuhon:{system}"]
            stages.append(run_stage(f"副本 {system} (two years)", ["atena", "import", "fukuhon", str(path), "--system", system, "--config", atena, *quiet], n))
        total = time.perf_counter() - start
        rss = {p.name: vm_hwm_mb(p.popen.pid) for p in fed.processes if p.popen is not None}
    finally:
        fed.stop()
    try:
        baseline = raw_baseline(backend, layout, urls, tmp)
    finally:
        for url in urls.values():
            drop_pg_database(url)
    return {"backend": backend, "stages": stages, "total_s": total, "node_rss_mb": rss, "baseline_s": baseline}


# The tables the bootstrap fills with the ward's data, per node. The kernel's (audit log,
# received messages, outbox, import ledger) are left out of the baseline: that only makes
# the ratio stricter.
DATA_TABLES = {
    "jlis": ("citizens", "relayed_acquisitions"),
    "atena": ("persons", "atena_serials", "basic_four", "business_links"),
    "hub": ("organizations", "org_keys", "serials", "links", "pseudonyms", "acquisitions"),
    "chukan": ("pending_acquisitions", "pseudonym_bindings", "fukuhon"),
}


def raw_baseline(backend: str, layout: Any, urls: dict[str, str], tmp: Path) -> float:
    """Seconds to insert, with plain executemany, exactly the rows the bootstrap left in the
    nodes' data tables into fresh databases of the same engine and schema (values already
    sealed, ids already issued: nothing but the inserts is timed)."""
    from sqlalchemy import create_engine, insert, select

    import renkei.nodes
    from renkei.federation.topology import HUB, JLIS, SHINJUKU

    timed = 0.0
    for org, node in ((JLIS, "jlis"), (SHINJUKU, "atena"), (HUB, "hub"), (SHINJUKU, "chukan")):
        source_url = urls.get(f"{org.slug}/{node}") or f"sqlite:///{layout.node_dir(org, node) / f'{node}.db'}"
        target_url = f"sqlite:///{tmp / f'raw-{node}.db'}" if backend == "sqlite" else pg_database()
        metadata = renkei.nodes.schema(node).metadata
        source, target = create_engine(source_url), create_engine(target_url)
        try:
            metadata.create_all(target)
            rows_copied = 0
            for table in metadata.sorted_tables:
                if table.name not in DATA_TABLES[node]:
                    continue
                with source.connect() as read, target.begin() as write:
                    rows = read.execution_options(yield_per=20_000).execute(select(table)).mappings()
                    for chunk in rows.partitions():
                        batch = [dict(r) for r in chunk]
                        t = time.perf_counter()
                        write.execute(insert(table), batch)
                        timed += time.perf_counter() - t
                        rows_copied += len(batch)
            print(f"  raw baseline: {node} {rows_copied:,} rows", flush=True)
        finally:
            source.dispose()
            target.dispose()
            if backend == "postgresql":
                drop_pg_database(target_url)
    return timed


def report(result: dict[str, Any], files: Files) -> None:
    backend, total, baseline = result["backend"], result["total_s"], result["baseline_s"]
    print(f"bootstrap on {backend}: {files.counts['residents']:,} persons, {files.copies:,} copies")
    print(f"  end to end {total:,.1f} s; raw-insert baseline {baseline:,.1f} s; ratio {total / baseline:.2f}")
    worst = max(result["node_rss_mb"].items(), key=lambda kv: kv[1])
    for name, mb in sorted(result["node_rss_mb"].items(), key=lambda kv: -kv[1])[:5]:
        print(f"  peak RSS {name:28s} {mb:6.0f} MB")
    commands = max(s.rss_mb for s in result["stages"])
    print(f"  goals: ≤ {GOAL_WALL_S / 60:.0f} min end to end: {'MET' if total <= GOAL_WALL_S else 'NOT MET'} ({total / 60:.1f} min); "
          f"≤ {GOAL_RATIO:.0f}× raw: {'MET' if total <= GOAL_RATIO * baseline else 'NOT MET'} ({total / baseline:.2f}×); "
          f"every node ≤ {GOAL_RSS_MB:.0f} MB: {'MET' if worst[1] <= GOAL_RSS_MB else 'NOT MET'} ({worst[0]} {worst[1]:.0f} MB; "
          f"commands at most {commands:.0f} MB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=343_000)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--files", type=Path, default=HERE / ".files")
    args = parser.parse_args(argv)
    print(f"bootstrap: writing or reusing the input files for {args.people:,} people in {args.files}", flush=True)
    files = write_files(args.files, args.people, args.seed)
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        with tempfile.TemporaryDirectory() as d:
            print(f"bootstrap on {backend} (load average {os.getloadavg()[0]:.2f}):", flush=True)
            report(bootstrap(backend, files, Path(d)), files)
    print(f"  rerun: .venv/bin/python bench/bench_bootstrap.py --people {args.people} --backends {args.backends}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
