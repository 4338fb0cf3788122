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
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

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
from sqlalchemy.orm import Session

from renkei.core.db import BigId, UtcDateTime
from renkei.core.errors import Problem

__all__ = ["DONE", "RUNNING", "ImportRun", "advance", "begin", "finish", "import_tables", "latest"]

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
