"""`renkei atena …`: the integrated-addressee system's offline work from its config.

    renkei atena import fukuhon copies.jsonl --system tax --config var/shinjuku/atena/node.toml

Exit codes: 0 the file was imported to its end; 1 the data or a peer refused it (a bad
line named by file and line — the batches before it stay stored and a rerun resumes
after them — a file already imported, the chukan unreachable); 2 usage (no such file,
an unknown suffix, a wrong configuration, a batch size out of range).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["atena_app"]

atena_app = typer.Typer(help="団体内統合宛名システム / integrated addressee system", no_args_is_help=True)
import_app = typer.Typer(help="ファイルからの一括取込 / bulk imports from files", no_args_is_help=True)
atena_app.add_typer(import_app, name="import")


# --- import fukuhon ------------------------------------------------------------------


@import_app.command("fukuhon")
def import_fukuhon(
    file: Annotated[Path, typer.Argument(help="業務システムの副本（.jsonl / .ndjson / .csv）")],
    system: Annotated[str, typer.Option("--system", help="業務システムID（例: tax, nhi, care）")],
    config: Annotated[Path, typer.Option("--config", help="宛名システムの設定ファイル（TOML）")],
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=10_000, help="1回で中間サーバーに送り、確定する件数")
    ] = 5_000,
    force: Annotated[bool, typer.Option("--force", help="取込済みのファイルをもう一度送る（登録済みの副本は増えない）")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="進捗バーを表示しない")] = False,
) -> None:
    """Send a business system's provision copies (副本) from a file to the chukan.

    The atena runs in this process from its configuration (its database and keys); the
    chukan must be running. Business 宛名番号 are translated to 統合宛名番号 here; each
    batch is checked and stored by the chukan, then committed in the import ledger and
    audited as cli:<os user>. Resumable after a crash, idempotent (a copy the chukan
    already holds unchanged adds nothing).

    JSON Lines: one object a line with business_atena_no, info_kind_code, record_key,
    valid_from (YYYY-MM-DD), values ({item code: value}); optional valid_to, delete,
    no_auto_answer.

    CSV (UTF-8, header row): 業務宛名番号, 特定個人情報名コード, レコードキー, 公開開始日,
    公開終了日 (optional), 削除 and 自動応答不可 (optional, 1/0), and one column per layout
    item named by its item code (K001, K002 …); an empty cell is an item not set.
    """
    import getpass

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from renkei.atena.fukuhon_import import import_fukuhon as run
    from renkei.core.config import ConfigError, load_config
    from renkei.core.errors import Problem

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if cfg.kind != "atena":
        typer.echo(f"設定ファイルのノード種別は {cfg.kind} です（atena ではありません）。", err=True)
        raise typer.Exit(2)
    if not file.is_file():
        typer.echo(f"ファイル {file} がありません。", err=True)
        raise typer.Exit(2)
    actor = "cli:" + "".join(ch for ch in getpass.getuser() if ch.isalnum() or ch in "._-")[:60]
    with Progress(
        TextColumn("[bold]副本"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("残り"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=no_progress,
    ) as bar:
        task = bar.add_task("副本", total=None, rate="")

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=max(total or 0, done) or None)
            speed = bar.tasks[0].speed
            bar.update(task, rate="" if speed is None else f"{speed:,.0f} 件/秒")

        try:
            result = run(cfg, file, system, actor=actor, batch_size=batch_size, force=force, progress=progress)
        except Problem as exc:
            detail = f"（{exc.detail}）" if exc.detail and exc.detail not in exc.title else ""
            bar.stop()
            typer.echo(exc.title + detail, err=True)
            raise typer.Exit(2 if exc.code in ("unsupported_format", "bad_count") else 1) from None
    typer.echo(result.summary())
