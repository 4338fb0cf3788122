"""`renkei dummy load`: the synthetic population into a running federation.

Here, not in `renkei.dummy`: loading needs the federation (its layout, credentials and
clients), and the federation may use dummy, never the reverse.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

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
    config = synth_config(seed, people, None, "2025-04-01", 2, None)
    assert isinstance(config, SynthConfig)
    with Console(stderr=True).status("generating…"):
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
            client.close()
    typer.echo(f"loaded in {time.perf_counter() - start:.1f} s")
