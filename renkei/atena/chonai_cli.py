"""`renkei chonai …`: 庁内連携 by file, at atena, from its configuration.

    renkei chonai export --config var/shinjuku/atena/node.toml --system kodomo \
        --affair JM13104100000001 --provider tax --info-kind TM00000000000002 \
        request.csv --out result.csv [--as-of 令和7年4月1日]
    renkei chonai publish --config … --system tax --info-kind TM00000000000002 tax.csv

``export`` answers department A's request file (header ``宛名番号``, one of A's numbers a
line) with the result file of renkei.atena.chonai.result_csv, under the ordinance's table,
audited as the routes audit (actor ``cli:<os user>``). ``publish`` stores department B's
file (renkei.atena.chonai.parse_publication_csv), all or nothing. Exit codes: 0 done,
1 refused (the reason in Japanese on stderr, nothing written but the refusal's audit
entry), 2 usage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from renkei.core import import_cli

__all__ = ["chonai_app", "run_export", "run_publish"]

chonai_app = typer.Typer(help="庁内連携（条例に基づく庁内の特定個人情報の利用） / in-house sharing", no_args_is_help=True)

ConfigOpt = Annotated[Path, typer.Option("--config", help="団体内統合宛名システムの設定ファイル（TOML）")]


@dataclass(frozen=True)
class Exported:
    entry_id: str
    counts: dict[str, int]
    request_id: str

    def summary(self) -> str:
        c = self.counts
        return (
            f"庁内連携（条例 別表「{self.entry_id}」）: 該当あり {c['found']:,} 人、該当なし {c['no_data']:,} 人、"
            f"未登録 {c['unknown']:,} 件、形式誤り {c['invalid']:,} 件（記録番号 {self.request_id}）"
        )


def run_export(
    config_path: Path,
    *,
    system: str,
    affair: str,
    provider: str,
    info_kind: str,
    request_file: Path,
    out: Path,
    as_of: str | None = None,
    staff_id: str | None = None,
) -> Exported:
    """Answer a request file; raises `Problem` for a refusal (audited) or a bad file.

    ``staff_id``: the staff member the read is for, who must hold ``<affair>:参照``
    (audited under their ID); without it the read is the operator's, ``cli:<os user>``."""
    from renkei.atena import chonai
    from renkei.catalogue import load_catalogue
    from renkei.core.audit.log import AuditEvent
    from renkei.core.db import transaction, utcnow
    from renkei.core.errors import Problem
    from renkei.staff.admin import open_node_store

    cfg = import_cli.node_config(config_path, "atena", request_file)
    # A staff member named is the actor; the operator who ran the command, the terminal.
    who = chonai.loggable(staff_id) if staff_id is not None else import_cli.cli_actor()
    terminal = import_cli.cli_actor() if staff_id is not None else "cli"
    catalogue = load_catalogue()
    ordinance = chonai.ordinance_for(cfg, catalogue)
    store = open_node_store(cfg)
    try:
        asked = chonai.ReadRequest(system, affair, provider, info_kind, [], utcnow().date())
        try:
            numbers, encoding = chonai.parse_request_csv(request_file.read_bytes(), request_file.name)
            req = chonai.ReadRequest(system, affair, provider, info_kind, numbers, chonai.parse_as_of(as_of, utcnow()))
            asked = req
            request_id = chonai.new_request_id()
            with transaction(store.sessions) as s:
                if staff_id is not None:
                    chonai.authorize_staff(s, store.auth.staff, staff_id, affair, utcnow())
                result = chonai.read(s, store.cipher, ordinance, req)
                data = chonai.result_csv(catalogue, result, encoding)
                store.audit.append_many(s, chonai.read_events(who, terminal, req, result, request_id))
            out.write_bytes(data)  # after the commit: no file leaves atena for a read not logged
        except Problem as exc:
            with transaction(store.sessions) as s:
                detail = chonai.refusal_detail(asked)
                if "line" in exc.extra:
                    detail["line"] = exc.extra["line"]
                store.audit.append(
                    s,
                    AuditEvent(
                        actor=who, terminal=terminal, action=chonai.READ, outcome=exc.code,
                        affair=chonai.loggable(affair), detail=detail,
                    ),
                )
            raise
        return Exported(result.entry.id, result.counts(), request_id)
    finally:
        store.close()


def run_publish(
    config_path: Path, *, system: str, info_kind: str, file: Path, actor: str | None = None
) -> str:
    """Publish a provider's file; returns the summary. Raises `Problem` naming the line."""
    from renkei.atena import chonai
    from renkei.catalogue import load_catalogue
    from renkei.core.audit.log import AuditEvent
    from renkei.core.db import transaction, utcnow
    from renkei.core.errors import Problem
    from renkei.core.records import bad_record
    from renkei.staff.admin import open_node_store

    cfg = import_cli.node_config(config_path, "atena", file)
    who = actor or import_cli.cli_actor()
    catalogue = load_catalogue()
    ordinance = chonai.ordinance_for(cfg, catalogue)
    store = open_node_store(cfg)
    try:
        records, lines = chonai.parse_publication_csv(file.read_bytes(), file.name)
        try:
            with transaction(store.sessions) as s:
                done = chonai.publish(s, store.cipher, catalogue, ordinance, system, info_kind, records, utcnow(), who)
                store.audit.append(
                    s,
                    AuditEvent(
                        actor=who, terminal="cli", action=chonai.PUBLISH, outcome="ok",
                        detail={"system": chonai.loggable(system), "info_kind": chonai.loggable(info_kind), **done.summary()},
                    ),
                )  # fmt: skip
        except Problem as exc:
            index = exc.extra.get("index")
            with transaction(store.sessions) as s:
                store.audit.append(
                    s,
                    AuditEvent(
                        actor=who, terminal="cli", action=chonai.PUBLISH, outcome=exc.code,
                        detail={"system": chonai.loggable(system), "info_kind": chonai.loggable(info_kind)},
                    ),
                )  # fmt: skip
            if isinstance(index, int) and 0 <= index < len(lines):
                raise bad_record(file.name, lines[index], exc.title.split(": ", 1)[-1], cause=exc.code) from None
            raise
        s_ = done.summary()
        return (
            f"庁内連携データを公開しました（{system}・{info_kind}）: 追加 {s_['added']:,} 件、更新 {s_['replaced']:,} 件、"
            f"削除 {s_['withdrawn']:,} 件、変更なし {s_['unchanged']:,} 件"
        )
    finally:
        store.close()


@chonai_app.command("export")
def export(
    request_file: Annotated[Path, typer.Argument(help="依頼CSV（見出し「宛名番号」、UTF-8 または CP932）")],
    config: ConfigOpt,
    system: Annotated[str, typer.Option("--system", help="利用する業務システムID（例: kodomo）")],
    affair: Annotated[str, typer.Option("--affair", help="利用事務の事務コード（JM＋14桁）")],
    provider: Annotated[str, typer.Option("--provider", help="提供元の業務システムID（例: tax）")],
    info_kind: Annotated[str, typer.Option("--info-kind", help="特定個人情報名コード（TM＋14桁）")],
    out: Annotated[Path, typer.Option("--out", help="結果CSVの出力先")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="基準日（和暦または西暦、省略時は本日）")] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="利用する職員の職員ID（事務の「参照」権限が必要。省略時は操作者）")
    ] = None,
) -> None:
    """依頼CSVの宛名番号について、条例の別表が認める項目だけを結果CSVに出力します（記録あり）。"""
    from renkei.core.errors import Problem

    try:
        done = run_export(
            config, system=system, affair=affair, provider=provider, info_kind=info_kind,
            request_file=request_file, out=out, as_of=as_of, staff_id=actor,
        )  # fmt: skip
    except Problem as exc:
        raise import_cli.refuse(exc) from None
    typer.echo(done.summary())


@chonai_app.command("publish")
def publish(
    file: Annotated[Path, typer.Argument(help="公開するCSV（宛名番号, レコードキー, 項目コードの列…, 削除）")],
    config: ConfigOpt,
    system: Annotated[str, typer.Option("--system", help="提供元の業務システムID（例: tax）")],
    info_kind: Annotated[str, typer.Option("--info-kind", help="特定個人情報名コード（TM＋14桁）")],
) -> None:
    """提供元の業務システムのCSVを庁内連携用に公開します（ファイル単位で全件か0件）。"""
    from renkei.core.errors import Problem

    try:
        summary = run_publish(config, system=system, info_kind=info_kind, file=file)
    except Problem as exc:
        raise import_cli.refuse(exc) from None
    typer.echo(summary)
