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


# --- import fukuhon ------------------------------------------------------------------


@import_app.command("fukuhon")
def import_fukuhon(
    file: Annotated[Path, typer.Argument(help="業務システムの副本（.jsonl / .ndjson / .csv）")],
    system: Annotated[str, typer.Option("--system", help="業務システムID（例: tax, nhi, care）")],
    config: ConfigOpt,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=10_000, help="1回で中間サーバーに送り、確定する件数")
    ] = 5_000,
    force: Annotated[bool, typer.Option("--force", help="取込済みのファイルをもう一度送る（登録済みの副本は増えない）")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="進捗バーを表示しない")] = False,
) -> None:
    """Send a business system's provision copies (副本) from a file to the chukan.

    The atena runs in this process from its configuration (database, keys); the chukan
    must be running. Business 宛名番号 are translated to 統合宛名番号 here; each batch is
    checked and stored by the chukan, then committed in the import ledger and audited as
    cli:<os user>. Resumable after a crash; idempotent (a copy the chukan already holds
    unchanged adds nothing).

    JSON Lines: one object a line — business_atena_no, info_kind_code, record_key,
    valid_from (YYYY-MM-DD), values ({item code: value}); optional valid_to, delete,
    no_auto_answer.

    CSV (UTF-8, header row): 業務宛名番号, 特定個人情報名コード, レコードキー, 公開開始日;
    optional 公開終了日, 削除 and 自動応答不可 (1/0); one column per layout item, named by
    its item code (K001, K002 …); an empty cell is an item not set.
    """
    from renkei.atena.fukuhon_import import import_fukuhon as run

    cfg = import_cli.node_config(config, "atena", file)
    actor = import_cli.cli_actor()
    import_cli.run_command(
        lambda progress: run(
            cfg, file, system, actor=actor, batch_size=batch_size, force=force, progress=progress
        ).summary(),
        f"副本（{system}）",
        progress=not no_progress,
    )
