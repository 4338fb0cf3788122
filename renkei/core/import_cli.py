"""What every `renkei <node> import …` command shares: the node's configuration, a rich
progress bar on stderr, the Japanese summary and the exit codes.

Exit codes: 0 the file was imported (to its end); 1 the data was refused — a bad line
(named by file and line; nothing of its batch was written, the batches before it stay
committed and a rerun of the same file resumes after them) or a file already imported
(``--force`` imports it again, adding nothing that is already there); 2 usage — no such
file, an unknown suffix, a wrong or missing configuration, a batch size out of range.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from renkei.core.config import ConfigError, NodeConfig, load_config
from renkei.core.errors import Problem
from renkei.core.imports import ImportResult
from renkei.core.imports import Progress as ProgressFn

__all__ = ["USAGE_CODES", "cli_actor", "describe", "node_config", "progress_bar", "refuse"]

# Problems that are the caller's usage, not the file's data: exit status 2.
USAGE_CODES: Final = frozenset({"unsupported_format", "bad_count"})
_err = Console(stderr=True)


def cli_actor(user: str | None = None) -> str:
    """``cli:<os user>``: who the audit log names for an import from the command line."""
    name = user or getpass.getuser()
    return "cli:" + "".join(ch for ch in name if ch.isalnum() or ch in "._-")[:60]


def node_config_of(path: Path, kind: str) -> NodeConfig:
    """The node's configuration, checked to be of ``kind``; exits with status 2 and a
    Japanese message otherwise (every command that works on one node's config)."""
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if cfg.kind != kind:
        typer.echo(f"設定ファイルのノード種別は {cfg.kind} です（{kind} ではありません）。", err=True)
        raise typer.Exit(2)
    return cfg


def node_config(path: Path, kind: str, data: Path) -> NodeConfig:
    """`node_config_of`, and the data file checked to exist (else exit 2)."""
    cfg = node_config_of(path, kind)
    if not data.is_file():
        typer.echo(f"ファイル {data} がありません。", err=True)
        raise typer.Exit(2)
    return cfg


class _RateColumn(ProgressColumn):
    """Records a second over the whole run (rich's own speed column is for bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} 件/秒", style="progress.data.speed")


@contextmanager
def progress_bar(label: str, *, enabled: bool = True) -> Iterator[ProgressFn]:
    """A progress callback drawing a bar with rows/s and ETA on stderr, shown from the
    first count on (an import refused before its first batch draws none)."""
    if not enabled:
        yield lambda _done, _total: None
        return
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("残り"),
        TimeRemainingColumn(),
        console=_err,
    )
    task = bar.add_task(label, total=None, start=False)

    def update(done: int, total: int | None) -> None:
        if not bar.live.is_started:
            bar.start()
            bar.start_task(task)
        bar.update(task, completed=done, total=max(total or 0, done) or None)

    try:
        yield update
    finally:
        if bar.live.is_started:
            bar.stop()


def describe(result: ImportResult, what: str, counts: str = "") -> str:
    """The Japanese summary line of a finished import."""
    run = result.run
    rate = result.read / result.seconds if result.seconds > 0 else 0.0
    resumed = f"（{result.resumed_from:,} 件目の後から再開）" if result.resumed_from else ""
    extra = f"、{counts}" if counts else ""
    return (
        f"{what}の取込が完了しました{resumed}: {run.source} を {result.read:,} 件読込、"
        f"{result.applied:,} 件反映{extra}。所要 {result.seconds:.1f} 秒（{rate:,.0f} 件/秒）。"
        f"取込番号 {run.id}（累計 {run.rows_read:,} 件、{run.batches:,} バッチ）"
    )


def refuse(exc: Problem) -> typer.Exit:
    """Print a refused import's Japanese message; the exit status to raise."""
    typer.echo(exc.title + (f"（{exc.detail}）" if exc.detail and exc.detail not in exc.title else ""), err=True)
    return typer.Exit(2 if exc.code in USAGE_CODES else 1)


def run_command(work: Callable[[ProgressFn], str], label: str, *, progress: bool = True) -> None:
    """Run an import with a progress bar; print its summary or its refusal and exit."""
    try:
        with progress_bar(label, enabled=progress) as update:
            summary = work(update)
    except Problem as exc:
        raise refuse(exc) from None
    typer.echo(summary)
