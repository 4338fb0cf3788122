"""`renkei` command line: ids, pki, serve, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

# Registers every node's schema with the kernel (renkei.core.schema), for staff, audit
# and keys commands that open a node's database from its configuration.
from renkei import nodes  # noqa: F401
from renkei.atena.chonai_cli import chonai_app
from renkei.atena.cli import atena_app, batch_app
from renkei.core import ids
from renkei.dummy.cli import dummy_app
from renkei.federation.load import load_command
from renkei.jlis.cli import jlis_app
from renkei.staff.cli import staff_app

app = typer.Typer(help="renkei — マイナンバー情報連携（合成データのみ） / My Number information linkage", no_args_is_help=True)
ids_app = typer.Typer(help="識別番号の検査 / identifier checks", no_args_is_help=True)
pki_app = typer.Typer(help="プライベートCAと機関の鍵 / private CA and organization keys", no_args_is_help=True)
app.add_typer(ids_app, name="ids")
audit_app = typer.Typer(help="監査ログの検証と書き出し / audit log verification and export", no_args_is_help=True)
app.add_typer(pki_app, name="pki")
keys_app = typer.Typer(help="項目暗号化の鍵 / field-encryption keys", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")
app.add_typer(staff_app, name="staff")
app.add_typer(atena_app, name="atena")
app.add_typer(batch_app, name="batch")
app.add_typer(chonai_app, name="chonai")
app.add_typer(jlis_app, name="jlis")
dummy_app.command("load")(load_command)  # loading needs the federation (renkei.federation.load)
app.add_typer(dummy_app, name="dummy")

ID_KINDS = {
    "individual-number": ids.IdKind.INDIVIDUAL_NUMBER,
    "resident-code": ids.IdKind.RESIDENT_CODE,
    "atena-no": ids.IdKind.ATENA_NO,
    "lg-code": ids.IdKind.LG_CODE,
    "org-code": ids.IdKind.ORG_CODE,
}


@ids_app.command("check")
def ids_check(kind: str, value: str) -> None:
    """KIND: individual-number | resident-code | atena-no | lg-code | org-code."""
    if kind not in ID_KINDS:
        typer.echo(f"invalid: 種別「{kind}」は指定できません（{', '.join(ID_KINDS)}）", err=True)
        raise typer.Exit(2)
    problem = ids.check(ID_KINDS[kind], value)
    if problem is None:
        typer.echo("valid")
        raise typer.Exit(0)
    typer.echo(f"invalid: {problem.message}")
    raise typer.Exit(1)


@pki_app.command("init")
def pki_init(var: Path = typer.Option(Path("var"), help="データディレクトリ / data directory")) -> None:
    """Create the private CA and every demo organization's certificate and keys under VAR/pki."""
    from renkei.federation import setup
    from renkei.federation.topology import ORGS, Layout

    layout = Layout(var)
    setup.init_pki(layout)
    typer.echo(f"CA: {layout.ca_cert}")
    for org in ORGS:
        for node in org.nodes:
            typer.echo(f"{org.name} ({org.org_code}) {node}: {layout.creds_dir(org, node)}")


@pki_app.command("terminal")
def pki_terminal(
    data_dir: Path = typer.Option(..., "--data-dir", help="端末CAを置くディレクトリ（ノードのデータディレクトリなど）"),
    org: str = typer.Option(..., "--org", help="機関コード（16桁）"),
    name: str = typer.Option(..., "--name", help="端末名（例: 窓口端末01）"),
    out: Path = typer.Option(..., "--out", help="端末証明書の出力先ディレクトリ（新規）"),
) -> None:
    """Issue a designated-terminal client certificate (creating the organization's terminal CA if needed).

    The CA lives in DATA_DIR/terminal-ca (set ``[staff] terminal_ca`` to its ca.crt; the
    server needs only that file: keep ca.key away from it in production). The terminal
    gets terminal.crt/.key (PEM) and terminal.p12 with its passphrase in
    terminal.p12.pass (both 0600) to import into the browser.
    """
    from renkei.core.crypto import pki

    ca_dir = data_dir / "terminal-ca"
    try:
        ca_cert, _ = pki.create_terminal_ca(ca_dir, org)
        creds = pki.issue_terminal_certificate(ca_dir, out, org, name)
    except pki.PkiError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"端末CA: {ca_cert}（[staff] terminal_ca に指定します）")
    typer.echo(f"端末証明書: {creds.cert}  秘密鍵: {creds.key}")
    typer.echo(f"ブラウザ用: {creds.p12}（パスフレーズ: {creds.p12_password}）")


@app.command("serve")
def serve(node: str, config: Path = typer.Option(..., "--config", help="ノードの設定ファイル（TOML）")) -> None:
    """Run one node (hub, jlis, chukan, atena, tsa) over HTTPS with mutual TLS.

    An atena with a ``[staff]`` section also serves the staff UI on its own port, where
    terminal certificates are required unless ``require_terminal_cert = false``.
    """
    from renkei.core.import_cli import node_config_of

    cfg = node_config_of(config, node)
    try:
        asgi = nodes.create_app(cfg)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    from renkei.core.wire.serving import peer_listener, serve_together

    listeners = [peer_listener(asgi, cfg)]
    if cfg.staff is not None and node == "atena":
        listeners.append(_staff_listener(asgi, cfg))
    # SIGTERM (a service manager's stop) and SIGINT end both listeners; the exit status is 0.
    serve_together(*listeners)


def _staff_listener(asgi: Any, cfg: Any) -> Any:
    """atena with ``[staff]``: the staff UI's listener, beside the mTLS listener."""
    from renkei.core.config import ConfigError
    from renkei.web.atena import create_staff_app
    from renkei.web.listener import staff_listener
    from renkei.web.site import PasswordRules

    staff = cfg.staff
    ui = create_staff_app(
        asgi,
        terminal_check=staff.require_terminal_cert,
        passwords=PasswordRules(staff.password_max_age_days, staff.change_initial_password),
    )
    try:
        listener = staff_listener(ui, cfg, staff)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if not staff.require_terminal_cert:
        typer.echo("警告: 指定端末の確認（端末証明書）が無効です。本番環境では有効にしてください。", err=True)
    return listener


def _node_db(config: Path) -> tuple[Any, Any, Any]:
    """(config, sessionmaker, audit tables) of the node a config file names."""
    from renkei.core.config import ConfigError, load_config
    from renkei.core.db import make_engine, make_sessionmaker
    from renkei.core.schema import SchemaError

    try:
        cfg = load_config(config)
        schema = nodes.schema(cfg.kind)
    except (ConfigError, SchemaError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    return cfg, make_sessionmaker(make_engine(cfg.database_url)), schema.audit


def _key_resolver(cfg: Any) -> Any:
    import json

    from renkei.core.crypto import envelope

    doc = json.loads(cfg.keys.public.read_text(encoding="utf-8"))
    keys = envelope.public_keys_from_document(doc)
    # Keys retired from public.json stay on disk as sig.<n>.jwk; their public halves verify old checkpoints.
    for old in cfg.keys.sig.parent.glob("sig.*.jwk"):
        from joserfc.jwk import OKPKey

        key = envelope.load_signing_key(old)
        keys.setdefault(key.kid, OKPKey.import_key(key.key.as_dict(private=False)))
    return keys.get


# `renkei audit verify` exit codes: 0 intact, 1 broken (or shortened), 2 configuration,
# 3 the length could not be confirmed (the time-stamp authority did not answer).
VERIFY_UNCONFIRMED = 3


@audit_app.command("verify")
def audit_verify(
    config: Path = typer.Option(..., "--config", help="ノードの設定ファイル"),
    offline: bool = typer.Option(
        False, "--offline", help="タイムスタンプ局に照会せず、ローカルの連鎖だけを検証する（末尾の削除・消去は検出できない）"
    ),
) -> None:
    """Walk the node's audit chain and checkpoints, then compare its length with the
    time-stamp authority's newest head of it.

    Exit 0: intact; 1: a broken link, a truncated tail or a wipe; 3: the authority
    could not be asked, so the length is unconfirmed (``--offline`` checks the local
    chain alone and says so).
    """
    import asyncio

    from renkei.core.audit import timestamping
    from renkei.core.audit.log import check_against_authority, verify
    from renkei.core.config import ConfigError
    from renkei.core.errors import Problem

    cfg, sessions, tables = _node_db(config)
    with sessions() as s:
        report = verify(s, tables, _key_resolver(cfg))
        unconfirmed = ""
        if report.ok and cfg.kind == "tsa":
            report = _labelled(report, "（タイムスタンプ局自身の監査ログです。長さは外部で確認していません）")
        elif report.ok and offline:
            report = _labelled(report, "（--offline: タイムスタンプ局に照会していないため、末尾の削除・消去は確認していません）")
        elif report.ok:
            try:
                head = asyncio.run(timestamping.query_head(cfg))
            except (ConfigError, Problem, timestamping.ReceiptError, OSError) as exc:
                reason = exc.title if isinstance(exc, Problem) else str(exc)
                unconfirmed = (
                    "タイムスタンプ局に照会できないため、監査ログの長さ（末尾の削除・消去がないこと）を確認できませんでした"
                    f"（{reason}）。ローカルの連鎖のみの検証は --offline で実行できます。"
                )
            else:
                report = check_against_authority(s, tables, report, head.seq, head.hash, head.stamps)
    typer.echo(report.message)
    typer.echo(f"entries={report.entries} checkpoints={report.checkpoints} problem={report.problem or '-'} first_broken={report.first_broken_seq or '-'}")
    if unconfirmed:
        typer.echo(unconfirmed, err=True)
        raise typer.Exit(VERIFY_UNCONFIRMED)
    raise typer.Exit(0 if report.ok else 1)


def _labelled(report: Any, label: str) -> Any:
    import dataclasses

    return dataclasses.replace(report, message=report.message + label)


@audit_app.command("export")
def audit_export(
    config: Path = typer.Option(..., "--config", help="ノードの設定ファイル"),
    start: str = typer.Option("", "--from", help="開始日（2026-04-01、令和8年4月1日）または日時（ISO 8601）"),
    end: str = typer.Option("", "--to", help="終了日（その日を含む）または日時"),
    out: Path = typer.Option(..., "--out", help="書き出し先（JSON Lines）"),
    actor: str = typer.Option(..., "--actor", help="書き出す職員ID（監査の権限が必要。ファイルと監査ログに記録）"),
    request: int = typer.Option(0, "--request", help="承認済みの書き出し依頼の番号（件数が上限を超える場合）"),
) -> None:
    """Write audit entries as JSON Lines for auditors, through the export approval flow.

    The actor must be an active staff member of this node holding 監査. Without
    ``--request`` a request is made; if it is small enough it runs at once, else it waits
    for a second auditor's approval (``POST /v1/exports/{id}/approve``) and is then run
    with ``--request``. The first line names the exporter, request and approver.
    """
    import sqlalchemy as sa

    from renkei.core.audit.log import AuditEvent
    from renkei.core.config import ConfigError, load_config
    from renkei.core.db import transaction
    from renkei.core.errors import Problem
    from renkei.core.wire.runtime import utc_now
    from renkei.staff import admin as staff_admin
    from renkei.staff import exports
    from renkei.staff.export_kinds import audit_export_kind

    try:
        cfg = load_config(config)
        store = staff_admin.open_node_store(cfg)
    except (ConfigError, ValueError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    tables = nodes.schema(cfg.kind).exports
    registry = exports.ExportRegistry([audit_export_kind(store.audit.tables)])
    policy = exports.ExportPolicy.from_config(cfg.extra)
    now = utc_now()
    try:
        with store.sessions() as s:
            row = s.execute(
                sa.select(store.auth.staff.c.roles, store.auth.staff.c.active).where(
                    store.auth.staff.c.staff_id == actor
                )
            ).first()
        if row is None or not row.active:
            raise Problem(403, "unknown_staff", f"職員ID「{actor}」は有効な職員ではありません。")
        roles = list(row.roles or ())
        if not request:
            params = {k: v for k, v in (("from", start), ("to", end)) if v}
            with transaction(store.sessions) as s:
                req = exports.ask_export(
                    s, tables, registry, staff_id=actor, roles=roles, kind="audit",
                    params=params, policy=policy, now=now,
                )
                store.audit.append(s, AuditEvent(actor=actor, action="export.request", outcome=req.status,
                                                 ref=f"export:{req.id}", detail={"kind": "audit", **req.params}))
            if req.status != "approved":
                typer.echo(f"書き出し依頼 {req.id} を作成しました（{req.estimated_rows} 件）。件数が上限を超えるため、"
                           f"別の監査担当者の承認後に --request {req.id} で実行してください。")
                raise typer.Exit(3)
            request = req.id
        with transaction(store.sessions) as s, out.open("w", encoding="utf-8") as fh:
            result = exports.run_export(
                s, tables, registry, request, staff_id=actor, roles=roles, policy=policy, now=now, out=fh,
            )
            store.audit.append(s, AuditEvent(actor=actor, action="export.download", outcome="ok",
                                             ref=f"export:{request}",
                                             detail={"kind": "audit", "rows": result.rows, "file": out.name}))
    except Problem as exc:
        out.unlink(missing_ok=True)
        typer.echo(f"{exc.title}{'（' + exc.detail + '）' if exc.detail else ''}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
    typer.echo(f"{result.rows} 件を書き出しました: {out}（依頼 {request}）")


@keys_app.command("rotate")
def keys_rotate(
    config: Path = typer.Option(..., "--config", help="ノード（atena）の設定ファイル"),
    master: bool = typer.Option(False, "--master", help="先にマスター鍵も更新する / rotate the master key first"),
    batch: int = typer.Option(1000, help="1回に再暗号化する行数"),
    retire: bool = typer.Option(True, "--retire/--keep-old", help="完了後に旧世代の鍵を廃棄する"),
) -> None:
    """Re-encrypt every encrypted column under a new data key, online and resumable."""
    from rich.progress import Progress

    from renkei.core.crypto.field import FileKms, KmsError
    from renkei.core.crypto.rotation import (
        ENCRYPTED_COLUMNS,
        RotationError,
        rotate_keys,
        rotate_master_key,
    )
    from renkei.core.db import make_engine

    cfg, _, _ = _node_db(config)
    keyring = cfg.data_dir / "keyring.json"
    master_path = cfg.master_key or cfg.data_dir / "master.key"
    engine = make_engine(cfg.database_url)
    try:
        if master:
            rotate_master_key(keyring, master_path)
            typer.echo("マスター鍵を更新し、データ鍵を再ラップしました。")
        with Progress() as bar:
            tasks: dict[str, Any] = {}

            def progress(col: Any, done: int, total: int) -> None:
                if col.label not in tasks:
                    tasks[col.label] = bar.add_task(col.label, total=max(total, 1))
                bar.update(tasks[col.label], completed=done, total=max(total, 1))

            report = rotate_keys(engine, keyring, FileKms(master_path), ENCRYPTED_COLUMNS, batch=batch, progress=progress, retire=retire)
    except (RotationError, KmsError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    done = sum(c.reencrypted for c in report.columns)
    typer.echo(f"鍵世代 {report.generation}: {done} 件を再暗号化しました。廃棄した世代: {list(report.retired) or 'なし'}")
    if not report.completed:
        typer.echo("未完了です。同じコマンドを再実行すると続きから再開します。")
        raise typer.Exit(1)


@keys_app.command("status")
def keys_status(config: Path = typer.Option(..., "--config", help="ノード（atena）の設定ファイル")) -> None:
    """Key generations in the keyring and how many values each encrypts."""
    from renkei.core.crypto.rotation import ENCRYPTED_COLUMNS, generation_counts, keyring_status
    from renkei.core.db import make_engine

    cfg, _, _ = _node_db(config)
    status = keyring_status(cfg.data_dir / "keyring.json")
    typer.echo(f"現在の鍵世代: {status.current}（保持: {list(status.generations)}、廃棄済み: {list(status.retired)}）")
    engine = make_engine(cfg.database_url)
    try:
        for col in ENCRYPTED_COLUMNS:
            try:
                counts = generation_counts(engine, table=col.table, ciphertext_column=col.ciphertext_column)
            except Exception:  # table absent in this node's schema
                continue
            typer.echo(f"{col.label}: {counts}")
    finally:
        engine.dispose()


@app.command("demo")
def demo(
    serve: bool = typer.Option(False, "--serve", help="シナリオ後も連携基盤を起動したままにする / keep the federation up"),
    var: Path = typer.Option(Path("var"), help="データディレクトリ / data directory"),
    base_port: int = typer.Option(18400, help="最初のポート番号 / first port"),
    seed: int = typer.Option(20151201, help="合成人口の乱数種 / population seed"),
) -> None:
    """Run the whole federation on loopback with synthetic people and play the scenarios."""
    import logging

    import structlog

    from renkei.dummy.cli import require_synth_extra
    from renkei.federation.demo import run_demo

    require_synth_extra()
    # The demo speaks in its own bilingual steps; set-up's info logs would only interleave.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    raise typer.Exit(run_demo(var, serve=serve, base_port=base_port, seed=seed))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
