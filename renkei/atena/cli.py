"""`renkei atena …`: the integrated-addressee system's offline work from its config.

    renkei atena import residents people.jsonl --config var/shinjuku/atena/node.toml
    renkei atena import residents people.csv --config … --batch-size 5000 [--force]

See renkei.atena.imports for what an import does and renkei.core.import_cli for the exit
codes (0 done, 1 refused data, 2 usage).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from renkei.core import import_cli
from renkei.core.imports import DEFAULT_BATCH, MAX_BATCH

__all__ = ["atena_app"]

atena_app = typer.Typer(help="団体内統合宛名システム / integrated addressee system", no_args_is_help=True)
import_app = typer.Typer(help="ファイルからの一括取込 / bulk imports from files", no_args_is_help=True)
atena_app.add_typer(import_app, name="import")

ConfigOpt = Annotated[Path, typer.Option("--config", help="宛名システムの設定ファイル（TOML）")]
BatchOpt = Annotated[
    int, typer.Option("--batch-size", min=1, max=MAX_BATCH, help="1トランザクションで登録する件数")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="取込済みのファイルをもう一度取り込む")]
QuietOpt = Annotated[bool, typer.Option("--no-progress", help="進捗バーを表示しない")]


@import_app.command("residents")
def import_residents(
    file: Annotated[Path, typer.Argument(help="住民の記録（.jsonl / .ndjson / .csv）")],
    config: ConfigOpt,
    batch_size: BatchOpt = DEFAULT_BATCH,
    force: ForceOpt = False,
    no_progress: QuietOpt = False,
) -> None:
    """Register residents from a JSON Lines or CSV file (resumable, idempotent).

    CSV columns: 個人番号, 氏, 名, 氏（カナ）, 名（カナ）, 生年月日, 性別, 郵便番号,
    住所, 地方公共団体コード, 異動日 (optional), 業務宛名番号:<業務> (one per system).
    """
    from renkei.atena.imports import import_residents as run

    cfg = import_cli.node_config(config, "atena", file)
    import_cli.run_command(
        lambda progress: run(cfg, file, batch_size=batch_size, force=force, progress=progress).summary(),
        "住民",
        progress=not no_progress,
    )
