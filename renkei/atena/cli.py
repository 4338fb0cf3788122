"""`renkei atena …`: atena's bulk work from the command line, in-process with atena's own
configuration, keys and database (the other nodes running as servers)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["atena_app", "run_acquisition"]

atena_app = typer.Typer(help="団体内統合宛名システムの一括処理 / atena bulk work", no_args_is_help=True)


# --- 符号取得 ------------------------------------------------------------------------------

# J-LIS's answers other than "relayed", for the summary.
_PROBLEM_LABELS = {
    "unknown_individual_number": "J-LISに登録のない個人番号",
    "invalid_individual_number": "個人番号の形式誤り",
    "bad_acquisition_no": "取得番号の形式誤り",
    "acquisition_no_conflict": "取得番号の重複（別の人・機関で中継済み）",
}


def run_acquisition(
    config: Path,
    *,
    chunk: int | None = None,
    in_flight: int = 2,
    retry_requested: bool = False,
    wait_seconds: float = 600.0,
    on_progress: Callable[[Any], None] | None = None,
    actor: str | None = None,
) -> Any:
    """Pseudonym acquisition for every person of this atena without one (`flows.acquire_all`),
    run here with atena's runtime and credentials; returns its `AcquireSummary`.

    Audited in atena's log as ``actor`` (default ``cli:<os user>``). Raises ConfigError for
    a configuration that is not an atena's, Problem for a refusal or an unreachable peer
    (what was committed stays; a re-run carries on).
    """
    from renkei.atena import flows
    from renkei.atena.app import field_cipher
    from renkei.atena.models import Base, audit, guard, kernel
    from renkei.core.config import ConfigError, load_config
    from renkei.core.wire.runtime import build_runtime, follow_hub_registry, hub_registry_view
    from renkei.staff.admin import cli_principal

    cfg = load_config(config)
    if cfg.kind != "atena":
        raise ConfigError(f"設定ファイルのノード種別は {cfg.kind} です（atena ではありません）")
    rt = build_runtime(cfg, Base.metadata, kernel, hub_registry_view(cfg), audit, guard=guard)
    follow_hub_registry(rt)
    cipher = field_cipher(cfg)
    work = flows.Work(rt, actor or cli_principal().staff_id, "cli")

    async def run() -> Any:
        await rt.peer.start()
        try:
            return await flows.acquire_all(
                work,
                cipher,
                chunk=chunk or flows.CHUNK,
                in_flight=in_flight,
                retry_requested=retry_requested,
                wait_seconds=wait_seconds,
                on_progress=on_progress,
            )
        finally:
            await rt.peer.close()

    try:
        return asyncio.run(run())
    finally:
        if rt.db_executor is not None:
            rt.db_executor.shutdown(wait=True)
        rt.engine.dispose()


def summary_lines(summary: Any) -> list[str]:
    """The Japanese summary of an `AcquireSummary`."""
    p, before = summary.progress, summary.before
    rate = p.bound / summary.seconds if summary.seconds > 0 else 0.0
    lines = [
        f"符号取得: 対象 {p.targets:,} 人（開始時 取得済み {before['bound']:,} 人、"
        f"依頼済み・未完了 {before['requested']:,} 人）",
        f"  依頼 {p.requested:,} 人、J-LIS中継 {p.relayed:,} 件、符号取得 {p.bound:,} 人"
        f"（{summary.seconds:,.1f} 秒、{rate:,.0f} 人/秒）",
    ]
    for status, n in sorted(p.problems.items()):
        lines.append(f"  中継できなかったもの: {_PROBLEM_LABELS.get(status, status)} {n:,} 件")
    if before.get("no_number"):
        lines.append(f"  個人番号のない人 {before['no_number']:,} 人は符号取得の対象外です")
    if summary.complete:
        lines.append("個人番号のある全員の符号を取得しました。")
    else:
        lines.append(
            f"未完了: 符号の通知待ち {summary.waiting:,} 人。再実行すると続きから処理します"
            "（通知待ちの人を再依頼するには --retry-requested）。"
        )
    return lines


def _progress_bar() -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:,.0f} 人/秒", style="progress.data.speed")

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )


@atena_app.command("acquire-pseudonyms")
def acquire_pseudonyms(
    config: Annotated[Path, typer.Option("--config", help="団体内統合宛名システムの設定ファイル（TOML）")],
    chunk: Annotated[int, typer.Option(help="1回の依頼の人数（中間サーバー・J-LISへの1電文）")] = 5000,
    in_flight: Annotated[int, typer.Option(help="同時に処理する依頼の数")] = 2,
    retry_requested: Annotated[
        bool, typer.Option("--retry-requested", help="依頼済みで符号の通知がない人も再依頼する")
    ] = False,
    timeout: Annotated[float, typer.Option(help="最後の依頼の後、符号の通知を待つ秒数")] = 600.0,
) -> None:
    """符号取得: 符号のない全員について、中間サーバー・J-LIS経由で符号を取得します（中断後の再実行は続きから）。"""
    from renkei.core.config import ConfigError
    from renkei.core.errors import Problem

    bar = _progress_bar()
    tasks: dict[str, Any] = {}

    def on_progress(p: Any) -> None:
        if not tasks:
            tasks["requested"] = bar.add_task("依頼", total=p.targets)
            tasks["relayed"] = bar.add_task("J-LIS中継", total=p.targets)
            tasks["bound"] = bar.add_task("符号取得", total=p.goal)
        bar.update(tasks["requested"], completed=p.requested)
        bar.update(tasks["relayed"], completed=p.relayed)
        bar.update(tasks["bound"], completed=p.bound)

    try:
        with bar:
            summary = run_acquisition(
                config,
                chunk=chunk,
                in_flight=in_flight,
                retry_requested=retry_requested,
                wait_seconds=timeout,
                on_progress=on_progress,
            )
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("符号取得を中断しました。処理済みの分は保存されています。再実行すると続きから処理します。", err=True)
        raise typer.Exit(130) from None
    except Problem as exc:
        detail = f"（{exc.detail}）" if exc.detail else ""
        typer.echo(f"符号取得を中断しました: {exc.title}{detail}", err=True)
        typer.echo("処理済みの分は保存されています。再実行すると続きから処理します。", err=True)
        raise typer.Exit(1) from None
    for line in summary_lines(summary):
        typer.echo(line)
    raise typer.Exit(0 if summary.complete else 1)
