"""Audit log figures, each against a baseline measured in the same run.

1. Entries appended per second with `AuditLog.append_many` in batches of 10,000 (one
   transaction each) vs a plain executemany of the same rows into a table without
   hashing, through SQLAlchemy Core and straight to the driver. Goal: at least
   20,000/s on SQLite.
2. Seconds to verify N entries (default 1,000,000) with `verify`. Goal: at most 30 s.

Usage: .venv/bin/python bench/bench_audit.py [--entries N] [--postgres URL]
(``--postgres`` also runs both on a scratch database created next to URL's.)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Column, Index, MetaData, String, Table, insert
from sqlalchemy.engine import make_url

from renkei.core import ids
from renkei.core.audit.log import AuditEvent, AuditLog, audit_tables, verify
from renkei.core.crypto import envelope, pki
from renkei.core.db import BigId, UtcDateTime, make_engine, make_sessionmaker

ORG = "1310410000000000"
BATCH = 10_000


def events(start: int, count: int) -> list[AuditEvent]:
    """Plausible staff events: a view or an inquiry about one person under one affair."""
    out = []
    for i in range(start, start + count):
        out.append(
            AuditEvent(
                actor=f"staff{i % 250:04d}",
                terminal=f"pc-{i % 40:03d}",
                action="atena.view" if i % 3 else "inquiry.send",
                outcome="ok" if i % 17 else "denied",
                subject=ids.make_atena_no(1 + i % 343_000),
                affair="JM00000000000101",
                ref=f"2026040100000{i:07d}",
                detail={"screen": "基本4情報", "count": i % 7},
            )
        )
    return out


def plain_row(e: AuditEvent, now: datetime) -> dict[str, Any]:
    return {
        "at": now,
        "actor": e.actor,
        "terminal": e.terminal,
        "action": e.action,
        "subject": e.subject,
        "affair": e.affair,
        "outcome": e.outcome,
        "ref": e.ref,
        "detail": e.detail,
    }


def plain_table(metadata: MetaData, name: str) -> Table:
    """The same columns as audit_entries, less the two hashes."""
    t = Table(
        name,
        metadata,
        Column("seq", BigId, primary_key=True, autoincrement=True),
        Column("at", UtcDateTime(), nullable=False),
        Column("actor", String(128), nullable=False),
        Column("terminal", String(128), nullable=False),
        Column("action", String(128), nullable=False),
        Column("subject", String(64)),
        Column("affair", String(64)),
        Column("outcome", String(64), nullable=False),
        Column("ref", String(128)),
        Column("detail", JSON(none_as_null=True)),
    )
    Index(f"ix_{name}_at", t.c.at, t.c.seq)
    return t


def batches(total: int) -> Iterator[list[AuditEvent]]:
    for start in range(0, total, BATCH):
        yield events(start, min(BATCH, total - start))


def run(url: str, keys_dir: Path, entries: int) -> dict[str, float]:
    """Both appends and the verification on one empty database; the figures."""
    ca, org = keys_dir / "ca", keys_dir / "org"
    if not (ca / "ca.crt").exists():
        pki.create_ca(ca)
    creds = pki.issue_node_credentials(ca, org, ORG, "新宿区", "atena")
    key = envelope.load_signing_key(creds.sig_key)
    public = envelope.public_keys_from_document(
        json.loads(creds.public.read_text(encoding="utf-8"))
    )

    engine = make_engine(url)
    try:
        md = MetaData()
        tables = audit_tables(md)
        plain = plain_table(md, "plain_entries")
        plain_raw = plain_table(md, "plain_raw")
        md.create_all(engine)
        sessions = make_sessionmaker(engine)
        log = AuditLog(tables, key, checkpoint_every=1000)

        now = datetime(2026, 4, 1, tzinfo=UTC)
        core_seconds = driver_seconds = 0.0
        for evs in batches(entries):
            rows = [plain_row(e, now) for e in evs]
            t0 = time.perf_counter()
            with sessions() as s:
                s.execute(insert(plain), rows)
                s.commit()
            core_seconds += time.perf_counter() - t0
        with engine.connect() as conn:
            dialect = conn.dialect
            at_process = plain.c.at.type.dialect_impl(dialect).bind_processor(dialect)
            at_value = at_process(now) if at_process else now
            names = [c.name for c in plain_raw.columns if c.name != "seq"]
            mark = "?" if dialect.paramstyle == "qmark" else "%s"
            sql = f"INSERT INTO plain_raw ({', '.join(names)}) VALUES ({', '.join([mark] * len(names))})"
        for evs in batches(entries):
            tuples = [
                (
                    at_value,
                    e.actor,
                    e.terminal,
                    e.action,
                    e.subject,
                    e.affair,
                    e.outcome,
                    e.ref,
                    json.dumps(e.detail),
                )
                for e in evs
            ]
            t0 = time.perf_counter()
            with engine.begin() as conn:
                conn.exec_driver_sql(sql, tuples)
            driver_seconds += time.perf_counter() - t0

        audit_seconds = 0.0
        for evs in batches(entries):
            t0 = time.perf_counter()
            with sessions() as s:
                log.append_many(s, evs)
                s.commit()
            audit_seconds += time.perf_counter() - t0

        t0 = time.perf_counter()
        with sessions() as s:
            report = verify(s, tables, public.get)
        verify_seconds = time.perf_counter() - t0
        if not report.ok or report.entries != entries:
            raise SystemExit(f"verification failed: {report}")
        return {
            "core_per_s": entries / core_seconds,
            "driver_per_s": entries / driver_seconds,
            "append_per_s": entries / audit_seconds,
            "verify_s": verify_seconds,
            "checkpoints": float(report.checkpoints),
        }
    finally:
        engine.dispose()


def report(label: str, entries: int, f: dict[str, float]) -> None:
    print(
        f"audit log ({label}): baselines without hashing: SQLAlchemy Core executemany {f['core_per_s']:,.0f} rows/s, "
        f"driver executemany {f['driver_per_s']:,.0f} rows/s"
    )
    print(
        f"audit log ({label}): append_many {f['append_per_s']:,.0f} entries/s in batches of {BATCH:,} "
        f"(goal ≥ 20,000/s); ratio {f['append_per_s'] / f['core_per_s']:.2f} to Core, "
        f"{f['append_per_s'] / f['driver_per_s']:.2f} to driver"
    )
    per_million = f["verify_s"] * 1_000_000 / entries
    print(
        f"audit log ({label}): verify {entries:,} entries and {f['checkpoints']:,.0f} checkpoints "
        f"in {f['verify_s']:.1f} s ({per_million:.1f} s per 1,000,000; goal ≤ 30 s)"
    )


def _pg_scratch(url: str) -> tuple[str, str]:
    base = make_url(url)
    name = f"renkei_bench_{uuid.uuid4().hex[:12]}"
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    return admin, base.set(database=name).render_as_string(hide_password=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument(
        "--postgres", default="", help="also measure on PostgreSQL (a scratch database)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        started = time.perf_counter()
        report("SQLite", args.entries, run(f"sqlite:///{tmp / 'audit.db'}", tmp, args.entries))
        if args.postgres:
            import psycopg

            admin, url = _pg_scratch(args.postgres)
            name = make_url(url).database
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            try:
                report("PostgreSQL", args.entries, run(url, tmp, args.entries))
            finally:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"audit log: bench took {timedelta(seconds=round(time.perf_counter() - started))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
