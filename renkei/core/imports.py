"""The import ledger: bulk imports from files, resumable after a crash.

Each import of a file is a row of the node's ``imports`` table (added to its metadata by
`import_tables`, like the audit tables): the kind (``residents``, ``pairs`` …), the
file's name and SHA-256 digest, how many records were read and applied and how many
batches committed, running or done, who ran it and when.

An importer commits its file in batches, each one transaction, and calls `advance`
inside that same transaction: the ledger's count moves exactly with the rows it counts.
After a crash (even SIGKILL) the batch in flight rolled back together with its ledger
update, so `begin` for the same kind and digest finds the import still running and
resumes it: the records before ``rows_read`` are skipped (`renkei.core.records.read_records`
with ``skip``), the rest imported. A finished import of the same file is refused
(Problem 409 ``import_finished``) unless forced, which starts a new ledger row (an
idempotent importer then adds nothing).

`advance` moves the count only from the value this process last saw: a second process
resuming the same import at the same time fails its batch with ``import_conflict``
instead of importing the same rows twice.

`run_import` is the loop every importer shares (a node passes its batch function):
hash the file, begin or resume, read the records in batches (`renkei.core.records`),
apply each batch and advance the ledger in one transaction, finish. A record the batch
function refuses (a `Problem` carrying the record's ``index`` in the batch) or one the
reader cannot read stops the import with that Problem, its title naming the file and
line: nothing of that batch is written, the batches before it stay committed, and the
ledger row stays running at their count. Run again on the same file, the import
resumes there and stops at the same line; run on the corrected file (another digest),
it is a new import from the first record, which an idempotent batch function makes
safe — the records already applied add nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from renkei.core.config import NodeConfig
from renkei.core.db import BigId, UtcDateTime, transaction, utcnow
from renkei.core.errors import Problem
from renkei.core.records import Columns, detect_format, read_records
from renkei.core.schema import NodeSchema

__all__ = [
    "DONE",
    "RUNNING",
    "Batch",
    "ImportResult",
    "ImportRun",
    "advance",
    "begin",
    "finish",
    "import_tables",
    "latest",
    "run_import",
    "scan_file",
]

RUNNING: Final = "running"
DONE: Final = "done"
MAX_SOURCE: Final = 255
MAX_ACTOR: Final = 64


def import_tables(metadata: MetaData) -> Table:
    """The ``imports`` ledger, added to a node's own metadata."""
    table = Table(
        "imports",
        metadata,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("kind", String(40), nullable=False),
        Column("source", String(MAX_SOURCE), nullable=False),
        Column("digest", String(64), nullable=False),
        Column("rows_read", BigInteger, nullable=False),
        Column("rows_applied", BigInteger, nullable=False),
        Column("batches", Integer, nullable=False),
        Column("status", String(10), nullable=False),
        Column("actor", String(MAX_ACTOR), nullable=False),
        Column("started_at", UtcDateTime(), nullable=False),
        Column("updated_at", UtcDateTime(), nullable=False),
    )
    Index("ix_imports_kind_digest", table.c.kind, table.c.digest)
    return table


@dataclass(frozen=True)
class ImportRun:
    """One import as the ledger holds it; ``resumed`` when `begin` found it unfinished."""

    id: int
    kind: str
    source: str
    digest: str
    rows_read: int
    rows_applied: int
    batches: int
    status: str
    actor: str
    started_at: datetime
    updated_at: datetime
    resumed: bool = False


def _run(row: object, resumed: bool = False) -> ImportRun:
    m = row._mapping  # type: ignore[attr-defined]
    return ImportRun(
        id=int(m["id"]),
        kind=m["kind"],
        source=m["source"],
        digest=m["digest"],
        rows_read=int(m["rows_read"]),
        rows_applied=int(m["rows_applied"]),
        batches=int(m["batches"]),
        status=m["status"],
        actor=m["actor"],
        started_at=m["started_at"],
        updated_at=m["updated_at"],
        resumed=resumed,
    )


def latest(session: Session, table: Table, kind: str, digest: str) -> ImportRun | None:
    """The newest ledger row for this kind and file, if any."""
    row = session.execute(
        select(table).where(table.c.kind == kind, table.c.digest == digest).order_by(table.c.id.desc()).limit(1)
    ).first()
    return None if row is None else _run(row)


def begin(
    session: Session,
    table: Table,
    *,
    kind: str,
    source: str,
    digest: str,
    actor: str,
    now: datetime,
    force: bool = False,
) -> ImportRun:
    """Start an import of a file, or resume the unfinished one of the same kind and digest.

    A finished import of the same file is refused (Problem 409 ``import_finished``)
    unless ``force``. Commit the session before the first batch, so a crash in it
    leaves the ledger row to resume from.
    """
    known = latest(session, table, kind, digest)
    if known is not None and known.status == RUNNING:
        return replace(known, resumed=True)
    if known is not None and not force:
        raise Problem(
            409,
            "import_finished",
            f"このファイル（{known.source}）は {known.updated_at:%Y-%m-%d %H:%M} UTC に取込済みです"
            f"（{known.rows_read:,} 件読込、{known.rows_applied:,} 件反映）。もう一度取り込むには --force を指定してください。",
            import_id=known.id,
        )
    values = {
        "kind": kind,
        "source": source[-MAX_SOURCE:],
        "digest": digest,
        "rows_read": 0,
        "rows_applied": 0,
        "batches": 0,
        "status": RUNNING,
        "actor": actor[:MAX_ACTOR],
        "started_at": now,
        "updated_at": now,
    }
    new_id = session.execute(insert(table).values(**values).returning(table.c.id)).scalar_one()
    return ImportRun(id=int(new_id), **values)  # type: ignore[arg-type]


def advance(session: Session, table: Table, run: ImportRun, *, read: int, applied: int, now: datetime) -> ImportRun:
    """Count one committed batch, in the batch's own transaction: ``read`` records taken
    from the file, ``applied`` of them changed something. Problem 409
    ``import_conflict`` if another process moved the count meanwhile."""
    done = session.execute(
        update(table)
        .where(table.c.id == run.id, table.c.rows_read == run.rows_read, table.c.status == RUNNING)
        .values(
            rows_read=table.c.rows_read + read,
            rows_applied=table.c.rows_applied + applied,
            batches=table.c.batches + 1,
            updated_at=now,
        )
    ).rowcount  # type: ignore[attr-defined]
    if done != 1:
        raise Problem(
            409,
            "import_conflict",
            f"取込（番号 {run.id}）は別の処理が進めています。その処理が終わってから、もう一度実行してください。",
        )
    return replace(
        run,
        rows_read=run.rows_read + read,
        rows_applied=run.rows_applied + applied,
        batches=run.batches + 1,
        updated_at=now,
    )


def finish(session: Session, table: Table, run: ImportRun, now: datetime) -> ImportRun:
    """Mark the import done (the file was read to its end)."""
    session.execute(
        update(table).where(table.c.id == run.id).values(status=DONE, updated_at=now)
    )
    return replace(run, status=DONE, updated_at=now)


# --- the shared import loop -------------------------------------------------------------

DEFAULT_BATCH: Final = 5_000
MAX_BATCH: Final = 50_000
_CHUNK: Final = 1 << 20

Batch = list[tuple[int, dict[str, Any]]]
"""(line number, record) pairs of one batch, in file order."""

# A node's batch function: applies one batch in the session given (the import's
# transaction) and returns how many records changed something (0 for a batch already
# applied). It refuses a bad record with a Problem whose extra ``index`` is the record's
# position in the batch.
ApplyBatch = Callable[[Session, Batch], int]
# Writes the batch's audit entry in the same transaction: (session, run after the batch,
# records read, records applied).
AuditBatch = Callable[[Session, "ImportRun", int, int], None]
# (records read so far, an estimate of all records in the file or None).
Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class ImportResult:
    """What one run did: the ledger row at its end, the records this run read and
    applied, where it resumed from (0 for a fresh import) and how long it took."""

    run: ImportRun
    read: int
    applied: int
    resumed_from: int
    seconds: float


def scan_file(path: Path) -> tuple[str, int]:
    """SHA-256 of the file and its number of lines, in one pass of 1 MiB chunks."""
    import hashlib

    h = hashlib.sha256()
    lines = 0
    last = b""
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            lines += chunk.count(b"\n")
            last = chunk
    if last and not last.endswith(b"\n"):
        lines += 1
    return h.hexdigest(), lines


def _batches(records: Iterator[tuple[int, dict[str, Any]]], size: int) -> Iterator[Batch]:
    batch: Batch = []
    for item in records:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def at_line(exc: Problem, source: str, line: int) -> Problem:
    """A batch function's refusal of one record, naming the file and line in its title."""
    extra = {k: v for k, v in exc.extra.items() if k != "index"}
    return Problem(
        exc.status, exc.code, f"{source} の {line} 行目: {exc.title}", exc.detail, **extra, source=source, line=line
    )


def run_import(
    sessions: sessionmaker[Session],
    ledger: Table,
    path: Path,
    *,
    kind: str,
    apply: ApplyBatch,
    actor: str,
    columns: Columns | None = None,
    audit: AuditBatch | None = None,
    batch_size: int = DEFAULT_BATCH,
    force: bool = False,
    progress: Progress | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> ImportResult:
    """Import ``path`` in batches of ``batch_size`` records, each one transaction with its
    ledger update (and audit entry); resumes an unfinished import of the same file.

    Raises the Problem of the first bad record (its title naming file and line), or
    ``import_finished`` for a file already imported (unless ``force``).
    """
    if not 1 <= batch_size <= MAX_BATCH:
        raise Problem(422, "bad_count", f"一度に取り込む件数は1〜{MAX_BATCH:,}件で指定してください。")
    started = time.perf_counter()
    fmt = detect_format(path)
    source = path.name
    digest, lines = scan_file(path)
    estimate = max(0, lines - 1) if fmt == "csv" else lines
    with transaction(sessions) as s:
        run = begin(s, ledger, kind=kind, source=source, digest=digest, actor=actor, now=clock(), force=force)
    resumed_from = run.rows_read
    read = applied = 0
    if progress is not None:
        progress(run.rows_read, estimate)
    records = read_records(path, columns, skip=run.rows_read, source=source)
    for batch in _batches(records, batch_size):
        with transaction(sessions) as s:
            try:
                changed = apply(s, batch)
            except Problem as exc:
                index = exc.extra.get("index")
                if isinstance(index, int) and 0 <= index < len(batch):
                    raise at_line(exc, source, batch[index][0]) from None
                raise
            run = advance(s, ledger, run, read=len(batch), applied=changed, now=clock())
            if audit is not None:
                audit(s, run, len(batch), changed)
        read += len(batch)
        applied += changed
        if progress is not None:
            progress(run.rows_read, estimate)
    with transaction(sessions) as s:
        run = finish(s, ledger, run, clock())
    return ImportResult(run=run, read=read, applied=applied, resumed_from=resumed_from, seconds=time.perf_counter() - started)




def import_to_node(
    config: NodeConfig,
    schema: NodeSchema,
    ledger_table: Table,
    path: Path,
    *,
    kind: str,
    action: str,
    apply: ApplyBatch,
    actor: str,
    columns: Columns | None = None,
    migration_attributes: dict[str, Any] | None = None,
    batch_size: int = DEFAULT_BATCH,
    force: bool = False,
    progress: Progress | None = None,
    engine: Engine | None = None,
) -> ImportResult:
    """`run_import` on the database of the node ``config`` (a NodeConfig) names, migrated
    to ``schema`` (its `renkei.core.schema.NodeSchema`) first, with one audit entry per
    batch signed by the node's key: ``action``, outcome ok, the import's id, the batch's
    number and counts — never a value of the file."""
    from renkei.core.audit.log import AuditEvent, AuditLog
    from renkei.core.crypto import envelope
    from renkei.core.db import make_engine, make_sessionmaker, migrate

    eng = engine or make_engine(config.database_url)
    try:
        migrate(eng, schema.migrations, schema.metadata, migration_attributes)
        log = AuditLog(schema.audit, envelope.load_signing_key(config.keys.sig))

        def audit_batch(session: Session, run: ImportRun, read: int, applied: int) -> None:
            log.append(
                session,
                AuditEvent(
                    actor=actor,
                    action=action,
                    outcome="ok",
                    ref=f"import:{run.id}",
                    detail={"import": run.id, "batch": run.batches, "count": read, "applied": applied},
                ),
            )

        return run_import(
            make_sessionmaker(eng),
            ledger_table,
            path,
            kind=kind,
            apply=apply,
            actor=actor,
            columns=columns,
            audit=audit_batch,
            batch_size=batch_size,
            force=force,
            progress=progress,
        )
    finally:
        if engine is None:
            eng.dispose()
