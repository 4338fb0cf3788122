"""`renkei dummy …`: generate the synthetic 新宿区 to files, and report on it."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

__all__ = ["dummy_app"]

dummy_app = typer.Typer(help="合成人口（架空の新宿区・中野区）/ synthetic population", no_args_is_help=True)
_err = Console(stderr=True)

_GENERATION_STAGES = 10  # progress notes from synth.generate (with noise)


def _config(seed: int, people: int, nakano_people: int | None, reference_date: str, window_years: int,
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
    from renkei.core.errors import Problem
    from renkei.dummy.output import write_population
    from renkei.dummy.synth import SynthConfig, generate

    formats = _formats(format)
    config = _config(seed, people, nakano_people, reference_date, window_years, non_residents)
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
    from renkei.dummy import stats
    from renkei.dummy.synth import SynthConfig, generate

    config = _config(seed, people, None, "2025-04-01", 2, None)
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


@dummy_app.command("load")
def load_command(
    var: Annotated[Path, typer.Option(help="起動中の連携基盤（renkei demo --serve）のデータディレクトリ")] = Path("var"),
    base_port: Annotated[int, typer.Option(help="連携基盤の最初のポート番号")] = 18400,
    seed: Annotated[int, typer.Option(help="乱数の種")] = 20240101,
    people: Annotated[int, typer.Option(help="新宿区の住民数")] = 343_000,
    fukuhon: Annotated[str, typer.Option(help="副本を登録する業務（カンマ区切り、空で登録しない）")] = "tax",
) -> None:
    """Load into a running demo federation (renkei demo --serve).

    J-LIS gets the number/code pairs; each ward's atena its residents and the non-residents
    it holds (POST /v1/residents), and provision copies (POST /v1/fukuhon).
    """
    from renkei.core.errors import Problem
    from renkei.dummy import bulk, business
    from renkei.dummy.synth import SynthConfig, generate
    from renkei.federation import demo, setup
    from renkei.federation.topology import NAKANO as NAKANO_ORG
    from renkei.federation.topology import SHINJUKU as SHINJUKU_ORG
    from renkei.federation.topology import Layout

    systems = [s for s in fukuhon.split(",") if s]
    unknown = [s for s in systems if s not in business.SYSTEMS]
    if unknown:
        typer.echo(f"業務は {', '.join(business.SYSTEMS)} から選んでください（指定: {fukuhon}）。", err=True)
        raise typer.Exit(2)
    layout = Layout(var, base_port)
    if not layout.ca_cert.exists():
        typer.echo(f"{var} に連携基盤がありません。先に renkei demo --serve --var {var} を実行してください。", err=True)
        raise typer.Exit(2)
    # Each system's copies need a client allowed `<system>:fukuhon:register` (the demo
    # enrols one for tax only): refuse before anything is loaded, not halfway.
    copy_clients: dict[tuple[str, str], str] = {}
    for org in (SHINJUKU_ORG, NAKANO_ORG):
        granted: dict[str, dict[str, Any]] = setup.load_credentials(layout, org)["clients"]
        for system in systems:
            scope = f"{system}:fukuhon:register"
            client_id = next((cid for cid, c in granted.items() if scope in c["scopes"]), None)
            if client_id is None:
                typer.echo(f"{org.name}の宛名システムには、スコープ「{scope}」を持つ業務システム（OAuthクライアント）が"
                           f"登録されていません。{business.system_label(system)}の副本は登録できません。", err=True)  # fmt: skip
                raise typer.Exit(2)
            copy_clients[(org.slug, system)] = client_id
    config = _config(seed, people, None, "2025-04-01", 2, None)
    assert isinstance(config, SynthConfig)
    with _err.status("generating…"):
        pop = generate(config)
    start = time.perf_counter()
    try:
        n = setup.load_jlis(layout, list(bulk.jlis_rows(pop)))
    except Problem as exc:  # e.g. a number already held with another resident code (another seed)
        typer.echo(f"J-LIS: {exc.title}{'（' + exc.detail + '）' if exc.detail else ''}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"J-LIS: {n:,} pairs")
    for org, lg in ((SHINJUKU_ORG, "131041"), (NAKANO_ORG, "131148")):
        client = demo.AtenaClient.open(layout, org)
        try:
            registered = sum(len(client.residents(b)["atena_nos"]) for b in bulk.batches(bulk.resident_records(pop, lg)))
            typer.echo(f"{org.name}: {registered:,} persons registered")
            for system in systems:
                scope, client_id = f"{system}:fukuhon:register", copy_clients[(org.slug, system)]
                copies = sum(
                    client.ok("/v1/fukuhon", {"system": system, "records": b}, client_id=client_id, scope=scope)["registered"]
                    for b in bulk.batches(bulk.fukuhon_records(pop, lg, system))
                )
                typer.echo(f"{org.name}: {copies:,} {business.system_label(system)} copies registered")
        except demo.DemoFailure as exc:
            typer.echo(f"{org.name}: {exc}", err=True)
            raise typer.Exit(1) from None
        finally:
            client.client.close()
    typer.echo(f"loaded in {time.perf_counter() - start:.1f} s")
