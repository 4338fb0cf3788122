"""Provision copies (副本) into chukan: copies per second, beside a raw insert of the same rows.

Goal (issue 9): about 1,000,000 copies for 新宿区 (343,000 people, every business system,
two publication years) in a few minutes, within 5× a raw bulk insert of the same rows
into the same engine measured in the same run; peak RSS per process ≤ 500 MB.

Two modes, each on SQLite or PostgreSQL (``--backend``):

- ``service``: chukan's registration (`renkei.chukan.service.register_fukuhon`) in this
  process on a fresh database, batches of 10,000 in one transaction each — what the
  chukan's route does per message, without the network. The business number stands in
  for the 統合宛名番号 (same format). Then the same files again (every copy already held:
  nothing added), then the raw baseline.
- ``e2e``: a federation as processes (`renkei demo`'s set-up without its scenarios), the
  residents file imported into 新宿区's atena (`renkei atena import residents`), then each
  system's file with `renkei atena import fukuhon` (atena in the CLI's process, the
  chukan as a server over mutual TLS), then the raw baseline. Peak RSS of each CLI run
  (wait4) and of the chukan server (VmHWM).

The raw baseline: the same rows, their sensitive items already sealed (not timed), inserted
into chukan's ``fukuhon`` table of a second fresh database on the same engine with one
executemany per 10,000 rows and a commit — no look-up, no check, no sealing.

    .venv/bin/python bench/bench_fukuhon.py --people 343000 --years 2 --backend sqlite --mode service
    .venv/bin/python bench/bench_fukuhon.py --people 343000 --years 2 --backend postgresql --mode e2e

The input files are written once by bench/fukuhon_files.py under --files (and
bench/import_files.py for e2e's residents under --residents-files).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
BATCH = 10_000
PG_ADMIN = os.environ.get("RENKEI_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _records(files: dict[str, Path], limit: int | None) -> Iterator[dict[str, Any]]:
    n = 0
    for path in files.values():
        with path.open("rb") as fh:
            for line in fh:
                if limit is not None and n >= limit:
                    return
                rec = orjson.loads(line)
                rec["atena_no"] = rec.pop("business_atena_no")
                n += 1
                yield rec


def _batches(records: Iterator[dict[str, Any]], size: int = BATCH) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for rec in records:
        batch.append(rec)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class Databases:
    """Fresh chukan databases on one engine, dropped at the end."""

    def __init__(self, backend: str, tmp: Path) -> None:
        self.backend, self.tmp, self.made = backend, tmp, []  # type: list[str]

    def new(self, name: str) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.tmp / (name + '.db')}"
        import uuid

        import psycopg
        from sqlalchemy.engine import make_url

        db = f"renkei_bench_{name}_{uuid.uuid4().hex[:8]}"
        admin = make_url(PG_ADMIN)
        with psycopg.connect(admin.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{db}"')
        self.made.append(db)
        return admin.set(database=db).render_as_string(hide_password=False)

    def drop(self) -> None:
        if not self.made:
            return
        import psycopg
        from sqlalchemy.engine import make_url

        admin = make_url(PG_ADMIN).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as c:
            for db in self.made:
                c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _chukan(url: str) -> Any:
    from renkei import nodes
    from renkei.core.db import make_engine, make_sessionmaker, migrate

    schema = nodes.schema("chukan")
    engine = make_engine(url)
    migrate(engine, schema.migrations, schema.metadata)
    return engine, make_sessionmaker(engine)


def register_all(url: str, files: dict[str, Path], limit: int | None, passes: int = 2) -> list[dict[str, Any]]:
    """Service mode: every copy registered (pass 1), then the same again (pass 2)."""
    from renkei.catalogue import load_catalogue
    from renkei.chukan import service
    from renkei.core.crypto.field import FieldCipher
    from renkei.core.db import transaction

    engine, sessions = _chukan(url)
    catalogue, cipher = load_catalogue(), FieldCipher.generate()
    out = []
    for number in range(1, passes + 1):
        wall, cpu, n, added, rates = time.perf_counter(), time.process_time(), 0, 0, []
        for batch in _batches(_records(files, limit)):
            t = time.perf_counter()
            with transaction(sessions) as s:
                done = service.register_fukuhon(s, catalogue, batch, datetime.now(UTC), cipher)
            rates.append(len(batch) / (time.perf_counter() - t))
            n += len(batch)
            added += sum(d.added for d in done)
        seconds = time.perf_counter() - wall
        tenth = max(1, len(rates) // 10)
        out.append({"pass": number, "copies": n, "added": added, "seconds": seconds,
                    "cpu_seconds": time.process_time() - cpu, "per_s": n / seconds,
                    "first_tenth_per_s": sum(rates[:tenth]) / tenth, "last_tenth_per_s": sum(rates[-tenth:]) / tenth})  # fmt: skip
    engine.dispose()
    return out


def raw_baseline(url: str, files: dict[str, Path], limit: int | None, copy: bool = False) -> dict[str, Any]:
    """The same rows as tuples of driver values, sealed beforehand (untimed), inserted by
    the driver's executemany (one per 10,000) and a commit: the database's own cost."""
    from renkei.catalogue import load_catalogue
    from renkei.chukan import service
    from renkei.core.crypto.field import FieldCipher
    from renkei.core.db import transaction

    engine, sessions = _chukan(url)
    catalogue, cipher = load_catalogue(), FieldCipher.generate()
    now = datetime.now(UTC)
    columns = ", ".join(f'"{c}"' for c in service._INSERT_COLUMNS)
    pg = engine.dialect.name == "postgresql"
    marks = ", ".join(("CAST(%s AS JSON)" if c == "values" else "%s") if pg else "?" for c in service._INSERT_COLUMNS)
    sql = f"INSERT INTO fukuhon ({columns}) VALUES ({marks})"
    timed, n, next_id = 0.0, 0, 1
    with sessions() as probe:
        date_of, flag_of = service._bound(probe, "valid_from"), service._bound(probe, "deleted")
        at = service._bound(probe, "registered_at")(now)
    for batch in _batches(_records(files, limit)):
        rows = []
        for rec in batch:
            kind = catalogue.info_kinds[rec["info_kind_code"]]
            edition = kind.edition_on(date.fromisoformat(rec["valid_from"]))
            assert edition is not None
            sensitive = {it.code for it in edition.items if it.sensitive}
            values = rec["values"]
            sealed = {k: v for k, v in values.items() if k in sensitive}
            rows.append((
                next_id, rec["atena_no"], rec["info_kind_code"], edition.dataset, edition.edition, rec["record_key"], 1,
                orjson.dumps({k: v for k, v in values.items() if k not in sensitive}).decode(),
                cipher.encrypt(orjson.dumps(sealed, option=orjson.OPT_SORT_KEYS).decode(), service.sealed_aad(next_id))
                if sealed else None,
                date_of(date.fromisoformat(rec["valid_from"])), None, flag_of(False), flag_of(False), at,
            ))  # fmt: skip
            next_id += 1
        t = time.perf_counter()
        with transaction(sessions) as s:
            if copy:  # PostgreSQL's COPY, as the registration itself writes there
                raw = s.connection().connection.driver_connection
                with raw.cursor() as cur, cur.copy(f"COPY fukuhon ({columns}) FROM STDIN") as out:
                    for row in rows:
                        out.write_row(row)
            else:
                s.connection().exec_driver_sql(sql, rows)
        timed += time.perf_counter() - t
        n += len(rows)
    engine.dispose()
    how = "COPY" if copy else "driver executemany"
    return {"copies": n, "seconds": timed, "per_s": n / timed, "note": f"{how} per 10,000 + commit"}


def _free_base_port() -> int:
    """A base port whose range (base … base+59) nobody listens on."""
    import random
    import socket

    for _ in range(50):
        base = random.randrange(20000, 40000, 100)
        try:
            for offset in range(60):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time a running process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cli(*args: str) -> tuple[float, float, str, float]:
    """Run `renkei …` as its own process: (wall seconds, its peak RSS in MB, its output's
    last line, its CPU seconds)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "renkei.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(HERE.parent)})  # fmt: skip
    assert proc.stdout is not None
    output = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"renkei {' '.join(args)}: exit {proc.returncode}\n{output}")
    cpu = usage.ru_utime + usage.ru_stime
    return time.perf_counter() - start, usage.ru_maxrss / 1024, output.strip().splitlines()[-1], cpu


def end_to_end(backend: str, dbs: Databases, tmp: Path, files: dict[str, Path], residents: Path) -> dict[str, Any]:
    from renkei.federation import demo
    from renkei.federation.process import Federation
    from renkei.federation.topology import ORGS, SHINJUKU, Layout
    layout = Layout(tmp / "fed", _free_base_port())
    urls = {f"{o.slug}/{n}": dbs.new(f"{o.slug}_{n}") for o in ORGS for n in o.nodes} if backend == "postgresql" else {}
    fed = Federation()
    try:
        demo.prepare(layout, demo.generate_population(seed=7, shinjuku=150, nakano=100), urls)
        demo.start(layout, fed)
        config = str(layout.config_path(SHINJUKU, "atena"))
        seconds, rss, line, _ = _cli("atena", "import", "residents", str(residents), "--config", config, "--no-progress")
        print(f"  residents: {seconds:.1f} s, {rss:.0f} MB — {line}", file=sys.stderr)
        chukan = next(p for p in fed.processes if p.name == f"{SHINJUKU.name}/chukan")
        assert chukan.popen is not None
        chukan_cpu = _cpu_seconds(chukan.popen.pid)
        runs = []
        for system, path in files.items():
            seconds, rss, line, cpu = _cli("atena", "import", "fukuhon", str(path), "--system", system, "--config", config,
                                      "--batch-size", str(BATCH), "--no-progress")  # fmt: skip
            copies = sum(1 for _ in path.open("rb"))
            runs.append({"system": system, "copies": copies, "seconds": seconds, "cli_rss_mb": rss, "cli_cpu_seconds": cpu})
            print(f"  {system}: {copies:,} in {seconds:.1f} s ({copies / seconds:,.0f}/s), CLI {rss:.0f} MB — {line}",
                  file=sys.stderr)  # fmt: skip
        chukan_cpu = _cpu_seconds(chukan.popen.pid) - chukan_cpu
        chukan_rss = _vm_hwm_mb(chukan.popen.pid)
    finally:
        fed.stop()
    copies = sum(r["copies"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    return {"copies": copies, "seconds": seconds, "per_s": copies / seconds, "runs": runs,
            "cli_rss_mb": max(r["cli_rss_mb"] for r in runs), "chukan_rss_mb": chukan_rss,
            "cli_cpu_seconds": sum(r["cli_cpu_seconds"] for r in runs), "chukan_cpu_seconds": chukan_cpu}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=343_000)
    parser.add_argument("--seed", type=int, default=20240101)
    parser.add_argument("--years", type=int, default=2)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--mode", choices=("service", "e2e"), default="service")
    parser.add_argument("--limit", type=int, default=None, help="service mode: only the first N copies")
    parser.add_argument("--files", type=Path, default=Path("/work/notes/fukuhon-bench"))
    parser.add_argument("--residents-files", type=Path, default=Path("/work/notes/residents-bench"),
                        help="e2e: where bench/import_files.py keeps the residents file")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from fukuhon_files import ensure_files

    files = ensure_files(args.files, args.people, args.seed, args.years)
    result: dict[str, Any] = {"people": args.people, "years": args.years, "backend": args.backend, "mode": args.mode}
    with tempfile.TemporaryDirectory(prefix="bench-fukuhon-") as tmp_name:
        tmp = Path(tmp_name)
        dbs = Databases(args.backend, tmp)
        try:
            if args.mode == "service":
                first, again = register_all(dbs.new("chukan"), files, args.limit)
                result |= {"register": first, "rerun": again}
                copies, seconds = first["copies"], first["seconds"]
                result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            else:
                from import_files import ensure_files as ensure_residents

                residents, _pairs = ensure_residents(args.residents_files, args.people, args.seed)
                e2e = end_to_end(args.backend, dbs, tmp, files, residents)
                result["e2e"] = e2e
                copies, seconds = e2e["copies"], e2e["seconds"]
            raw = raw_baseline(dbs.new("raw"), files, args.limit)
            result["raw"] = raw
            result["ratio_to_raw"] = seconds / raw["seconds"]
            if args.backend == "postgresql":
                result["raw_copy"] = raw_copy = raw_baseline(dbs.new("rawcopy"), files, args.limit, copy=True)
                result["ratio_to_raw_copy"] = seconds / raw_copy["seconds"]
            result["million_in_s"] = 1_000_000 * seconds / copies
            result["raw_million_in_s"] = 1_000_000 * raw["seconds"] / raw["copies"]
        finally:
            dbs.drop()
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return
    print(f"副本 {copies:,} 件（{args.people:,} 人、{args.years} 年分）on {args.backend}, {args.mode}:")
    if args.mode == "service":
        r, a = result["register"], result["rerun"]
        print(f"  register: {r['seconds']:.1f} s = {r['per_s']:,.0f}/s (CPU {r['cpu_seconds']:.1f} s; first tenth "
              f"{r['first_tenth_per_s']:,.0f}/s, last tenth {r['last_tenth_per_s']:,.0f}/s), {r['added']:,} added")
        print(f"  re-run:   {a['seconds']:.1f} s = {a['per_s']:,.0f}/s (CPU {a['cpu_seconds']:.1f} s), {a['added']:,} added")
        print(f"  peak RSS of this process: {result['peak_rss_mb']:.0f} MB")
    else:
        e = result["e2e"]
        print(f"  CLI → chukan: {e['seconds']:.1f} s = {e['per_s']:,.0f}/s; CPU: CLI {e['cli_cpu_seconds']:.1f} s, "
              f"chukan {e['chukan_cpu_seconds']:.1f} s; peak RSS CLI {e['cli_rss_mb']:.0f} MB, chukan {e['chukan_rss_mb']:.0f} MB")
    print(f"  raw executemany baseline: {raw['seconds']:.1f} s = {raw['per_s']:,.0f}/s")
    print(f"  ratio to raw: {result['ratio_to_raw']:.2f}×; 1,000,000 copies ≈ {result['million_in_s']:.0f} s "
          f"(raw ≈ {result['raw_million_in_s']:.0f} s)")
    if "raw_copy" in result:
        rc = result["raw_copy"]
        print(f"  raw COPY baseline: {rc['seconds']:.1f} s = {rc['per_s']:,.0f}/s; ratio {result['ratio_to_raw_copy']:.2f}×")


if __name__ == "__main__":
    main()
