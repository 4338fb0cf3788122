"""`renkei dummy …`: generate the synthetic 新宿区 to files, and report on it."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

__all__ = ["dummy_app", "require_synth_extra", "synth_config"]

dummy_app = typer.Typer(help="合成人口（架空の新宿区・中野区）/ synthetic population", no_args_is_help=True)
_err = Console(stderr=True)

_GENERATION_STAGES = 10  # progress notes from synth.generate (with noise)


def require_synth_extra() -> None:
    """Exit (status 2) with a Japanese message if the generator's packages are missing."""
    from renkei.dummy.extra import missing_message

    message = missing_message()
    if message is not None:
        typer.echo(message, err=True)
        raise typer.Exit(2)


def synth_config(seed: int, people: int, nakano_people: int | None, reference_date: str, window_years: int,
            non_residents: int | None) -> object:  # fmt: skip
    from renkei.dummy.synth import SynthConfig

    try:
        ref = date.fromisoformat(reference_date)
    except ValueError:
        typer.echo(f"基準日の形式が誤っています（YYYY-MM-DD）: {reference_date}", err=True)
        raise typer.Exit(2) from None
    if people < 100 or (nakano_people is not None and nakano_people < 50):
        typer.echo("人数は新宿区100人以上、中野区50人以上で指定してください。", err=True)
        raise typer.Exit(2)
    if not 1 <= window_years <= 10:
        typer.echo("異動の期間は1〜10年で指定してください。", err=True)
        raise typer.Exit(2)
    return SynthConfig(seed=seed, people=people, nakano_people=nakano_people, reference_date=ref,
                       window_years=window_years, non_residents=non_residents)  # fmt: skip


def _formats(value: str) -> list[str]:
    from renkei.dummy.output import FORMATS

    formats = [f.strip() for f in value.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        typer.echo(f"形式は {', '.join(FORMATS)} から選んでください（指定: {value}）。", err=True)
        raise typer.Exit(2)
    return formats


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@dummy_app.command("generate")
def generate_command(
    seed: Annotated[int, typer.Option(help="乱数の種（同じ種なら同じ出力）")] = 20240101,
    people: Annotated[int, typer.Option(help="新宿区の住民数（基準日）")] = 343_000,
    nakano_people: Annotated[int | None, typer.Option(help="中野区の住民数（既定: 新宿区の 20,000/343,000）")] = None,
    out: Annotated[Path, typer.Option(help="出力先ディレクトリ")] = Path("var/dummy"),
    format: Annotated[str, typer.Option("--format", help="csv,cp932,jsonl（カンマ区切り）")] = "csv",
    cp932_substitute: Annotated[bool, typer.Option(help="CP932にない文字を置換する（既定はエラー）")] = False,
    non_residents: Annotated[int | None, typer.Option(help="新宿区の住登外者レコード数（既定: 住民数の5%）")] = None,
    reference_date: Annotated[str, typer.Option(help="基準日")] = "2025-04-01",
    window_years: Annotated[int, typer.Option(help="異動を作る期間（年）")] = 2,
) -> None:
    """Generate the population with its business data and write it under OUT."""
    require_synth_extra()  # before the imports below, which need some of it
    from renkei.core.errors import Problem
    from renkei.dummy.output import write_population
    from renkei.dummy.synth import SynthConfig, generate

    formats = _formats(format)
    config = synth_config(seed, people, nakano_people, reference_date, window_years, non_residents)
    assert isinstance(config, SynthConfig)
    tables = 2 * 10 + 1
    start = time.perf_counter()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=_err) as progress:  # fmt: skip
        task = progress.add_task("generating", total=_GENERATION_STAGES + tables)

        def note(stage: str) -> None:
            progress.update(task, description=stage, advance=1)

        pop = generate(config, progress=note)
        generated = time.perf_counter() - start
        try:
            written = write_population(pop, out, formats, substitute_cp932=cp932_substitute, progress=note)
        except Problem as exc:
            progress.stop()
            typer.echo(f"{exc.title}\n{exc.detail}", err=True)
            raise typer.Exit(1) from None
    total = time.perf_counter() - start
    residents = config.people + config.nakano
    typer.echo(
        f"{len(pop.persons):,} persons ({config.people:,} 新宿区 + {config.nakano:,} 中野区 residents), "
        f"{len(pop.households):,} households, {len(pop.changes):,} change records"
    )
    typer.echo(f"generated in {generated:.1f} s ({residents / generated:,.0f} residents/s); "
               f"with files {total:.1f} s; {_size(out) / 1e6:,.1f} MB under {out}")  # fmt: skip
    if "cp932" in formats:
        typer.echo(f"CP932 substitutions: {len(written.substitutions)} (see {out / 'cp932' / 'cp932_substitutions.csv'})")


@dummy_app.command("stats")
def stats_command(
    seed: Annotated[int, typer.Option(help="乱数の種")] = 20240101,
    people: Annotated[int, typer.Option(help="新宿区の住民数")] = 343_000,
    out: Annotated[Path, typer.Option(help="図と報告の出力先")] = Path("docs"),
    picture: Annotated[str, typer.Option(help="年齢ピラミッドのファイル名")] = "dummy-age-pyramid.png",
    report: Annotated[str, typer.Option(help="報告のファイル名")] = "dummy-stats.md",
) -> None:
    """Generate, then compare with the published figures: a report and an age pyramid (PNG)."""
    require_synth_extra()
    from renkei.dummy import stats
    from renkei.dummy.synth import SynthConfig, generate

    config = synth_config(seed, people, None, "2025-04-01", 2, None)
    assert isinstance(config, SynthConfig)
    with _err.status("generating…"):
        pop = generate(config)
        s = stats.compute(pop)
    out.mkdir(parents=True, exist_ok=True)
    stats.plot_pyramid(s, out / picture)
    text = stats.report_text(s, picture)
    (out / report).write_text(text, encoding="utf-8")
    typer.echo(text)
    typer.echo(f"wrote {out / picture} and {out / report}")
