"""`renkei jlis …`: J-LIS's offline work from its config.

    renkei jlis import pairs pairs.jsonl --config var/jlis/jlis/node.toml [--batch-size 5000] [--force]

See renkei.jlis.imports for what an import does and renkei.core.import_cli for the exit
codes (0 done, 1 refused data, 2 usage).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from renkei.core import import_cli
from renkei.core.imports import DEFAULT_BATCH, MAX_BATCH

__all__ = ["jlis_app"]

jlis_app = typer.Typer(help="J-LIS（地方公共団体情報システム機構）", no_args_is_help=True)
import_app = typer.Typer(help="ファイルからの一括取込 / bulk imports from files", no_args_is_help=True)
jlis_app.add_typer(import_app, name="import")


@import_app.command("pairs")
def import_pairs(
    file: Annotated[Path, typer.Argument(help="個人番号・住民票コード・地方公共団体コードの組（.jsonl / .ndjson / .csv）")],
    config: Annotated[Path, typer.Option("--config", help="J-LIS の設定ファイル（TOML）")],
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=MAX_BATCH, help="1トランザクションで登録する件数")
    ] = DEFAULT_BATCH,
    force: Annotated[bool, typer.Option("--force", help="取込済みのファイルをもう一度取り込む")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="進捗バーを表示しない")] = False,
) -> None:
    """Load (個人番号, 住民票コード, 地方公共団体コード) pairs from JSON Lines or CSV
    (resumable, idempotent; numbers sealed at rest). CSV columns: 個人番号, 住民票コード,
    地方公共団体コード."""
    from renkei.jlis.imports import import_pairs as run
    from renkei.jlis.imports import summary

    cfg = import_cli.node_config(config, "jlis", file)
    import_cli.run_command(
        lambda progress: summary(run(cfg, file, batch_size=batch_size, force=force, progress=progress)),
        "J-LIS",
        progress=not no_progress,
    )
