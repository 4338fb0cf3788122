"""`renkei dummy load`: the synthetic population into a running federation.

Here, not in `renkei.dummy`: loading needs the federation (its layout and configs), and the
federation may use dummy, never the reverse.

The population goes through the same bulk paths an IT department uses (renkei/atena/cli.py,
renkei/jlis/cli.py): it is written as import files into a temporary directory beside the
nodes' (never inside one), then J-LIS imports its number pairs, each ward's atena its
person records, acquires the pseudonyms of everyone through the three-party flow, and
sends each business system's copies to its chukan — each in committed batches, resumable,
idempotent (a second load adds nothing), audited as ``cli:<os user>``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from renkei.dummy.cli import require_synth_extra, synth_config

__all__ = ["load_command"]


def load_command(
    var: Annotated[Path, typer.Option(help="起動中の連携基盤（renkei demo --serve）のデータディレクトリ")] = Path("var"),
    base_port: Annotated[int, typer.Option(help="連携基盤の最初のポート番号")] = 18400,
    seed: Annotated[int, typer.Option(help="乱数の種")] = 20240101,
    people: Annotated[int, typer.Option(help="新宿区の住民数")] = 343_000,
    fukuhon: Annotated[str, typer.Option(help="副本を登録する業務（カンマ区切り、空で登録しない）")] = "tax",
    pseudonyms: Annotated[bool, typer.Option(help="全員の符号を取得する（三者間の符号取得）")] = True,
    progress: Annotated[bool, typer.Option(help="進捗バーを表示する")] = True,
) -> None:
    """Load into a running demo federation (renkei demo --serve).

    J-LIS gets the number/code pairs; each ward's atena its residents and the non-residents
    it holds, their pseudonyms, and provision copies — through the bulk import commands.
    """
    from renkei.atena.cli import run_acquisition
    from renkei.atena.fukuhon_import import import_fukuhon
    from renkei.atena.imports import import_residents
    from renkei.core.config import ConfigError, load_config
    from renkei.core.errors import Problem
    from renkei.core.import_cli import cli_actor, progress_bar
    from renkei.dummy import bulk, business
    from renkei.dummy.synth import SynthConfig, generate
    from renkei.federation.topology import JLIS, NAKANO, SHINJUKU, Layout
    from renkei.jlis.imports import import_pairs

    require_synth_extra()
    systems = [s for s in fukuhon.split(",") if s]
    unknown = [s for s in systems if s not in business.SYSTEMS]
    if unknown:
        typer.echo(f"業務は {', '.join(business.SYSTEMS)} から選んでください（指定: {fukuhon}）。", err=True)
        raise typer.Exit(2)
    layout = Layout(var, base_port)
    if not layout.ca_cert.exists():
        typer.echo(f"{var} に連携基盤がありません。先に renkei demo --serve --var {var} を実行してください。", err=True)
        raise typer.Exit(2)
    try:
        jlis_cfg = load_config(layout.config_path(JLIS, "jlis"))
        atena_cfgs = {org.slug: load_config(layout.config_path(org, "atena")) for org in (SHINJUKU, NAKANO)}
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    config = synth_config(seed, people, None, "2025-04-01", 2, None)
    assert isinstance(config, SynthConfig)
    with Console(stderr=True).status("generating…"):
        pop = generate(config)
    actor = cli_actor()
    start = time.perf_counter()
    # Files beside the nodes' directories: they hold individual numbers in clear (synthetic),
    # which must never sit in a chukan's or the hub's directory. Removed at the end.
    with tempfile.TemporaryDirectory(dir=layout.root, prefix="dummy-load-") as d:
        files = Path(d)
        try:
            pairs = files / "jlis-pairs.jsonl"
            bulk.write_jlis_pairs(pop, pairs)
            with progress_bar("J-LIS", enabled=progress) as update:
                added = import_pairs(jlis_cfg, pairs, force=True, actor=actor, progress=update).applied
            typer.echo(f"J-LIS: {added:,} pairs")
            for org, lg in ((SHINJUKU, "131041"), (NAKANO, "131148")):
                cfg = atena_cfgs[org.slug]
                residents = files / f"residents-{lg}.jsonl"
                bulk.write_residents(pop, lg, residents)
                with progress_bar(f"{org.name} 住民", enabled=progress) as update:
                    read = import_residents(cfg, residents, force=True, actor=actor, progress=update).result.read
                typer.echo(f"{org.name}: {read:,} persons registered")
                if pseudonyms:
                    summary = run_acquisition(layout.config_path(org, "atena"), actor=actor)
                    typer.echo(f"{org.name}: {summary.progress.bound:,} pseudonyms acquired"
                               + ("" if summary.complete else f", {summary.waiting:,} still waiting"))  # fmt: skip
                for system in systems:
                    copies = files / f"fukuhon-{lg}-{system}.jsonl"
                    bulk.write_fukuhon(pop, lg, system, copies)
                    with progress_bar(f"{org.name} 副本 {system}", enabled=progress) as update:
                        done = import_fukuhon(cfg, copies, system, actor=actor, force=True, progress=update)
                    typer.echo(f"{org.name}: {done.result.read:,} {business.system_label(system)} copies registered "
                               f"({done.result.applied:,} new versions)")  # fmt: skip
        except Problem as exc:  # e.g. a number already held with another resident code (another seed)
            typer.echo(f"{exc.title}{'（' + exc.detail + '）' if exc.detail and exc.detail not in exc.title else ''}",
                       err=True)  # fmt: skip
            raise typer.Exit(1) from None
    typer.echo(f"loaded in {time.perf_counter() - start:.1f} s")
