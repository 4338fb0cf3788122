"""`renkei atena …`: the integrated-addressee system's offline work from its config.

    renkei atena import residents people.jsonl --config var/shinjuku/atena/node.toml
    renkei atena import residents people.csv --config … --batch-size 5000 [--force]
    renkei atena import fukuhon tax.jsonl --system tax --config …
    renkei atena import feed changes-20260401.csv --config … [--acquire]
    renkei atena acquire-pseudonyms --config … [--chunk 5000] [--in-flight 2]
    renkei batch inquire REQUEST.DAT --config … --actor S0001 --out RESULT.csv [--system SYSTEM]

See renkei.atena.imports for what an import does and renkei.core.import_cli for the exit
codes (0 done, 1 refused data, 2 usage).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from renkei.core import import_cli
from renkei.core.imports import DEFAULT_BATCH, MAX_BATCH

__all__ = ["BatchRun", "atena_app", "batch_app", "run_acquisition", "run_batch_inquiry"]

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


# --- import feed ----------------------------------------------------------------------


@import_app.command("feed")
def import_feed(
    file: Annotated[Path, typer.Argument(help="住民記録システムの異動ファイル（CSV・固定長、UTF-8・CP932）")],
    config: ConfigOpt,
    system: Annotated[
        str | None, typer.Option("--system", help="住民記録システムの業務システムID（既定: 設定の resident_system、jumin01）")
    ] = None,
    acquire: Annotated[
        bool, typer.Option("--acquire", help="取込の後、符号のない人（転入・出生を含む）の符号取得を続けて行う")
    ] = False,
    no_progress: QuietOpt = False,
) -> None:
    """住民異動（転入・転出・転居・出生・死亡・氏名変更・職権修正）のファイルを取り込みます。

    All or nothing: a file with a malformed record applies nothing and every error is
    listed (file, line, field, reason). The same file again applies nothing new (each
    異動ID is applied once). Events are placed by their 異動日: an older one arriving late
    becomes history. Layout: docs/register-feed.md. Exit codes: 0 done, 1 refused data,
    2 usage; with --acquire, 1 also when the acquisition is not complete.
    """
    from renkei.atena.feed_file import import_feed as run
    from renkei.core.errors import Problem

    cfg = import_cli.node_config(config, "atena", file)
    register = system or str(cfg.extra.get("resident_system") or "jumin01")
    try:
        with import_cli.progress_bar("住民異動", enabled=not no_progress) as update:
            done = run(cfg, file, system=register, actor=import_cli.cli_actor(), progress=update)
    except Problem as exc:
        if exc.code == "bad_feed":
            typer.echo(f"{file.name}: 誤りのある記録が {exc.extra.get('error_count', 0):,} 件あるため、何も反映していません。", err=True)
            from renkei.atena.feed import FeedError

            for e in exc.extra.get("errors", []):
                typer.echo("  " + FeedError(e["line"], e["field"], e["reason"], e.get("file", "")).message(), err=True)
            raise typer.Exit(1) from None
        raise import_cli.refuse(exc) from None
    typer.echo(done.summary())
    if acquire:
        acquire_pseudonyms(config, no_progress=no_progress)


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


def _progress_bar(*, disable: bool = False) -> Any:
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
        disable=disable,
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
    no_progress: QuietOpt = False,
) -> None:
    """符号取得: 符号のない全員について、中間サーバー・J-LIS経由で符号を取得します（中断後の再実行は続きから）。"""
    from renkei.core.config import ConfigError
    from renkei.core.errors import Problem

    bar = _progress_bar(disable=no_progress)
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


# --- 一括照会 ------------------------------------------------------------------------------

batch_app = typer.Typer(help="一括照会ファイル / batch inquiry files", no_args_is_help=True)


@dataclass(frozen=True)
class BatchRun:
    """What `run_batch_inquiry` did: records read, rows written, counts by outcome."""

    source: str
    out: Path
    records: int
    counts: dict[str, int]
    seconds: float

    def summary_lines(self) -> list[str]:
        ok = self.counts.get("answered", 0)
        no_data = self.counts.get("no_data", 0)
        pending = self.counts.get("pending", 0)
        errors = self.records - ok - no_data - pending
        lines = [
            f"一括照会: {self.source} の {self.records:,} 件を照会し、結果を {self.out} に書き出しました"
            f"（{self.seconds:,.1f} 秒）。",
            f"  回答あり {ok:,} 件、該当なし {no_data:,} 件、回答待ち {pending:,} 件、エラー {errors:,} 件",
        ]
        for code, n in sorted(self.counts.items()):
            if code not in ("answered", "no_data", "pending"):
                lines.append(f"  エラー {code}: {n:,} 件")
        return lines


def run_batch_inquiry(
    config: Path,
    request: Path,
    out: Path,
    *,
    actor: str,
    system: str | None = None,
    show_atena_no: bool = True,
    concurrency: int = 8,
    result_encoding: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> BatchRun:
    """Answer a 一括照会 request file with a result file, as the staff member ``actor``
    (their roles, read now, authorize each record; they must be active and not locked).

    The atena runs in this process from its configuration (database, keys) like
    `run_acquisition`; its chukan and the network must be running. ``system``: the
    business system whose 宛名番号 the file carries (番号体系 01). ``result_encoding``
    (utf-8 | cp932): the result's, instead of the request's (an ASCII request reads as
    UTF-8, and its client may want CP932 for the Japanese messages). The result is written to a
    temporary file beside ``out`` and renamed when complete: there is never half a result.
    Raises ConfigError for a configuration that is not an atena's, Problem for a refusal
    of the whole file (an unknown actor, more than 10,000 records, the screening).
    """
    from renkei.atena import batch, flows, service
    from renkei.atena.app import field_cipher
    from renkei.atena.models import SCHEMA, Base, audit, guard, kernel
    from renkei.atena.models import auth as auth_t
    from renkei.catalogue import load_catalogue
    from renkei.core.config import ConfigError, load_config
    from renkei.core.db import migrate
    from renkei.core.wire.runtime import build_runtime, follow_hub_registry, hub_registry_view
    from renkei.staff.auth import staff_principal

    cfg = load_config(config)
    if cfg.kind != "atena":
        raise ConfigError(f"設定ファイルのノード種別は {cfg.kind} です（atena ではありません）")
    if system is not None:
        system = service.check_system(system)
    rt = build_runtime(cfg, Base.metadata, kernel, hub_registry_view(cfg), audit, guard=guard)
    try:
        migrate(rt.engine, SCHEMA.migrations, SCHEMA.metadata, {"field_cipher": field_cipher(cfg)})
        follow_hub_registry(rt)
        catalogue = load_catalogue()
        with rt.sessions() as s:
            principal = staff_principal(s, auth_t, actor, now=rt.clock())
        source = request.name
        ctx = batch.Context(own_org=rt.org_code, today=batch.today_in_japan(rt.clock()), system=system)
        shape, records = batch.read_request(request, ctx, catalogue, source)
        work = flows.Work(rt, principal.staff_id, "cli")

        async def run() -> flows.BatchSummary:
            await rt.peer.start()
            try:
                return await flows.inquire_batch(
                    work, catalogue, records, principal.roles, who=service.STAFF, source=source,
                    show_atena_no=show_atena_no, concurrency=concurrency, default_user=principal.staff_id,
                    on_progress=on_progress,
                )  # fmt: skip
            finally:
                await rt.peer.close()

        summary = asyncio.run(run())
        partial = out.with_name(out.name + ".part")
        with partial.open("wb") as fh:
            batch.write_result(fh, batch.with_encoding(shape, result_encoding), summary.rows, source=out.name)
        partial.replace(out)
        return BatchRun(source, out, len(records), summary.counts, summary.seconds)
    finally:
        if rt.db_executor is not None:
            rt.db_executor.shutdown(wait=True)
        rt.engine.dispose()


@batch_app.command("inquire")
def batch_inquire(
    request: Annotated[Path, typer.Argument(help="一括照会依頼ファイル（P640R110_<日時>_<連番>.DAT など）")],
    config: Annotated[Path, typer.Option("--config", help="団体内統合宛名システムの設定ファイル（TOML）")],
    actor: Annotated[str, typer.Option("--actor", help="照会を行う職員ID（事務ごとの照会権限をレコードごとに確認します）")],
    out: Annotated[Path, typer.Option("--out", help="結果ファイルの出力先")],
    system: Annotated[
        str | None, typer.Option("--system", help="宛名番号（番号体系 01）の業務システムID（例: child_allowance）")
    ] = None,
    hide_atena_no: Annotated[
        bool, typer.Option("--hide-atena-no", help="結果に統合宛名番号を書かない（業務システムに渡すファイル）")
    ] = False,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="同時に照会する件数")] = 8,
    result_encoding: Annotated[
        str | None,
        typer.Option("--result-encoding", help="結果ファイルの文字コード（utf-8 / cp932。既定は依頼ファイルと同じ。ASCIIのみの依頼は utf-8）"),
    ] = None,
    no_progress: QuietOpt = False,
) -> None:
    """一括照会: 依頼ファイルの各レコードを照会し、結果ファイルを書き出します（形式は docs/batch-inquiry.md）。

    Exit status: 0 every record answered (回答あり・該当なし・回答待ち); 1 some records
    refused or failed (each with its message in the result file), or the whole file
    refused; 2 usage (no such file, a wrong configuration).
    """
    from renkei.core.config import ConfigError
    from renkei.core.errors import Problem

    if not request.is_file():
        typer.echo(f"ファイル {request} がありません。", err=True)
        raise typer.Exit(2)
    import_cli.node_config_of(config, "atena")
    try:
        with import_cli.progress_bar("一括照会", enabled=not no_progress) as update:
            result = run_batch_inquiry(
                config, request, out, actor=actor, system=system, show_atena_no=not hide_atena_no,
                concurrency=concurrency, result_encoding=result_encoding, on_progress=update,
            )  # fmt: skip
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    except Problem as exc:
        raise import_cli.refuse(exc) from None
    for line in result.summary_lines():
        typer.echo(line)
    failed = result.records - sum(result.counts.get(k, 0) for k in ("answered", "no_data", "pending"))
    raise typer.Exit(1 if failed else 0)
