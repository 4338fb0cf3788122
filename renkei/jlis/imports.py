"""Number pairs from a file into J-LIS: `renkei jlis import pairs`, also callable in-process.

The file holds (個人番号, 住民票コード, 地方公共団体コード) records — JSON Lines with
``individual_number``, ``resident_code``, ``lg_code``, or CSV with the Japanese columns
of `renkei.jlis.service.PAIR_COLUMNS` — optionally with the citizen's 基本4情報
(``family_name``, ``given_name``, ``family_kana``, ``given_kana``, ``birth_date``,
``sex``, ``address``; all or none), which the identity search finds them by. Each batch is one transaction: the rows checked,
loaded set-based (`service.load_pairs`, numbers sealed at rest), the import ledger
advanced and one audit entry written. Re-running a file adds nothing; an interrupted
import resumes after its last committed batch (renkei.core.imports).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from renkei.core import imports as ledger
from renkei.core.config import NodeConfig
from renkei.core.db import utcnow
from renkei.core.import_cli import cli_actor, describe
from renkei.jlis import service
from renkei.jlis.models import SCHEMA, imports
from renkei.staff.admin import node_cipher

__all__ = ["KIND", "import_pairs", "summary"]

KIND = "pairs"
ACTION = "citizens.import"


def import_pairs(
    config: NodeConfig,
    path: Path,
    *,
    batch_size: int = ledger.DEFAULT_BATCH,
    force: bool = False,
    actor: str | None = None,
    progress: ledger.Progress | None = None,
    engine: Engine | None = None,
) -> ledger.ImportResult:
    """Import the pairs of ``path`` into the J-LIS ``config`` names (``applied``: pairs added).

    Raises `Problem` for a bad record (file and line named; the batches before it stay
    committed) or a file already imported (``import_finished``, unless ``force``).
    """
    cipher = node_cipher(config)

    def apply(session: Session, batch: ledger.Batch) -> int:
        records = [rec for _, rec in batch]
        return service.load_pairs(
            session, cipher, service.parse_pairs(records), utcnow(), service.parse_identities(records)
        )

    return ledger.import_to_node(
        config,
        SCHEMA,
        imports,
        path,
        kind=KIND,
        action=ACTION,
        apply=apply,
        actor=actor or cli_actor(),
        columns=service.PAIR_COLUMNS,
        migration_attributes={"field_cipher": cipher},
        batch_size=batch_size,
        force=force,
        progress=progress,
        engine=engine,
    )


def summary(result: ledger.ImportResult) -> str:
    return describe(result, "個人番号と住民票コードの対応", f"{result.applied:,} 組を追加")
