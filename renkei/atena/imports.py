"""Residents from a file into atena: `renkei atena import residents`, also callable in-process.

The file holds the person records `POST /v1/residents` takes (the shape of
`renkei.dummy.bulk.person_record`, optionally with 世帯番号 and 続柄), one a line as JSON
Lines, or as CSV with the Japanese columns of `renkei.atena.service.RESIDENT_COLUMNS`. Each batch is one
transaction: the records checked like the API checks them, registered set-based
(`service.register_parsed`), the import ledger advanced and one audit entry written
(actor, counts; never a number). Re-running a file adds nothing; an interrupted import
resumes after its last committed batch (renkei.core.imports).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from renkei.atena import service
from renkei.atena.models import SCHEMA, imports
from renkei.core import imports as ledger
from renkei.core.config import NodeConfig
from renkei.core.db import utcnow
from renkei.core.import_cli import cli_actor
from renkei.staff.admin import node_cipher

__all__ = ["KIND", "ResidentsImported", "import_residents"]

KIND = "residents"
ACTION = "residents.import"


@dataclass(frozen=True)
class ResidentsImported:
    """One run: the ledger's figures, and the persons, 基本4情報 versions, business links
    and household memberships this run added."""

    result: ledger.ImportResult
    persons: int
    versions: int
    links: int
    memberships: int = 0

    def summary(self) -> str:
        from renkei.core.import_cli import describe

        counts = f"新規 {self.persons:,} 人、基本4情報 {self.versions:,} 件、業務宛名番号の紐付け {self.links:,} 件を追加"
        if self.memberships:
            counts += f"（世帯の所属 {self.memberships:,} 件）"
        return describe(self.result, "住民", counts)


def import_residents(
    config: NodeConfig,
    path: Path,
    *,
    batch_size: int = ledger.DEFAULT_BATCH,
    force: bool = False,
    actor: str | None = None,
    progress: ledger.Progress | None = None,
    engine: Engine | None = None,
) -> ResidentsImported:
    """Import the person records of ``path`` into the atena ``config`` names.

    Raises `Problem` for a bad record (file and line named; the batches before it stay
    committed) or a file already imported (``import_finished``, unless ``force``).
    """
    cipher = node_cipher(config)
    source = f"import:{path.name}"
    added = {"persons": 0, "versions": 0, "links": 0, "memberships": 0}

    def apply(session: Session, batch: ledger.Batch) -> int:
        parsed = service.parse_residents([rec for _, rec in batch])
        done = service.register_parsed(session, cipher, parsed, utcnow(), source=source)
        added["persons"] += done.persons
        added["versions"] += done.versions
        added["links"] += done.links
        added["memberships"] += done.memberships
        return done.changed

    result = ledger.import_to_node(
        config,
        SCHEMA,
        imports,
        path,
        kind=KIND,
        action=ACTION,
        apply=apply,
        actor=actor or cli_actor(),
        columns=service.RESIDENT_COLUMNS,
        migration_attributes={"field_cipher": cipher},
        batch_size=batch_size,
        force=force,
        progress=progress,
        engine=engine,
    )
    return ResidentsImported(result, **added)
