"""`renkei staff`: staff accounts of any node (hub, jlis, chukan, atena) from its config.

The command acts as an administrator named ``cli:<os user>`` (whoever can read the
node's configuration and keys already holds its database) and every command — refusals
included — is written to the node's audit log. Passwords and TOTP secrets are shown
once, on the terminal, and never logged.

It follows the administrators' rules (renkei.staff.role_requests): a data role (anything
but 管理 and 監査) given by ``create`` or ``set-roles`` is not granted at once but waits
as a role request, which another administrator approves — in the UI, through
``/v1/role-requests``, or here with ``approve`` (run by another OS user: the same
``cli:<os user>`` cannot approve its own request).

    renkei staff create --config var/hub/hub/node.toml --id H0001 --name 山田花子 --roles 管理
    renkei staff list --config …
    renkei staff set-roles --config … --id H0002 --roles "監査"
    renkei staff requests --config … [--all]
    renkei staff approve | reject --config … --request 12
    renkei staff lock | unlock | revoke-sessions | disable | enable | reset-totp --config … --id …
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

import typer
from sqlalchemy.orm import Session

from renkei.core.audit.log import AuditEvent
from renkei.core.config import ConfigError, load_config
from renkei.core.db import transaction, utcnow
from renkei.core.errors import Problem
from renkei.staff import admin as staff_admin
from renkei.staff import role_requests
from renkei.staff.admin import NodeStore
from renkei.staff.role_requests import RolePolicy, RoleRequest
from renkei.staff.routes import Done

__all__ = ["PASSWORD_ENV", "staff_app"]

# Not RENKEI_STAFF_…: that prefix overrides the [staff] section of the node config.
PASSWORD_ENV: Final = "RENKEI_INITIAL_PASSWORD"
_SAFE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_DIGIT_RUN: Final = re.compile(r"\d{12,}")

staff_app = typer.Typer(
    help="職員アカウントの管理（全ノード共通） / staff accounts of any node", no_args_is_help=True
)

ConfigOpt = Annotated[Path, typer.Option("--config", help="ノードの設定ファイル（TOML）")]
IdOpt = Annotated[str, typer.Option("--id", help="職員ID")]
RequestOpt = Annotated[int, typer.Option("--request", min=1, help="権限変更の依頼番号")]
RolesOpt = Annotated[
    str,
    typer.Option("--roles", help="権限（カンマ区切り。例: 管理 / 監査 / JM01000000074000:参照）"),
]

T = TypeVar("T")


def split_roles(text: str) -> list[str]:
    """``"管理, JM…:参照"`` → ``["管理", "JM…:参照"]`` (commas, 読点 or spaces)."""
    return [r for r in re.split(r"[,、，\s]+", text) if r]


def _ref(staff_id: str) -> str | None:
    """A staff ID fit for the audit log (never a digit run that could be a number)."""
    sid = staff_id.strip()
    return sid if _SAFE_ID.fullmatch(sid) and not _DIGIT_RUN.search(sid) else None


def _role_policy(store: NodeStore) -> RolePolicy:
    try:
        return RolePolicy.from_config(store.config.extra)
    except ValueError as exc:
        typer.echo(f"[extra] admin_may_hold_data_roles の値が誤っています: {exc}", err=True)
        raise typer.Exit(2) from None


@contextmanager
def _store(config: Path) -> Iterator[NodeStore]:
    try:
        cfg = load_config(config)
        store = staff_admin.open_node_store(cfg)
    except (ConfigError, ValueError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    try:
        yield store
    finally:
        store.close()


def _run(
    store: NodeStore,
    action: str,
    staff_id: str | None,
    work: Callable[[Session], Done[T]],
    *,
    ref: str | None = None,
) -> T:
    """One audited unit of work as the CLI principal (the `Done` shape of the routes);
    a refusal is audited and exits 1."""
    actor = staff_admin.cli_principal().staff_id
    if ref is None and staff_id is not None:
        ref = _ref(staff_id)
    try:
        with transaction(store.sessions) as s:
            done = work(s)
            store.audit.append(
                s,
                AuditEvent(
                    actor=actor,
                    terminal="cli",
                    action=action,
                    outcome=done.outcome,
                    ref=done.ref or ref,
                    detail=done.detail,
                ),
            )
            return done.value
    except Problem as exc:
        with transaction(store.sessions) as s:
            store.audit.append(
                s, AuditEvent(actor=actor, terminal="cli", action=action, outcome=exc.code, ref=ref)
            )
        message = exc.title + (f"（{exc.detail}）" if exc.detail else "")
        typer.echo(f"エラー [{exc.code}]: {message}", err=True)
        raise typer.Exit(1) from None


def _show_totp(uri: str) -> None:
    import segno  # the enrolment QR only

    buffer = io.StringIO()
    segno.make(uri, error="m").terminal(out=buffer, compact=True)
    typer.echo("ワンタイムパスワード（認証アプリで読み取るか、URIを登録してください）:")
    typer.echo(f"  {uri}")
    typer.echo(buffer.getvalue())


@staff_app.command("create")
def create(
    config: ConfigOpt,
    staff_id: IdOpt,
    name: Annotated[str, typer.Option("--name", help="氏名")],
    roles: RolesOpt = "",
    password_prompt: Annotated[
        bool,
        typer.Option("--password-prompt", help="初期パスワードを入力する（省略時は生成して表示）"),
    ] = False,
) -> None:
    """Create a staff account: initial password (generated, prompted or from $RENKEI_INITIAL_PASSWORD) and TOTP."""
    password: str | None = os.environ.get(PASSWORD_ENV) or None
    if password_prompt:
        password = typer.prompt("初期パスワード", hide_input=True, confirmation_prompt=True)
    wanted = split_roles(roles)
    with _store(config) as store:

        def work(s: Session) -> Done[staff_admin.Enrolment]:
            made = staff_admin.enrol_staff(
                s,
                store.auth,
                store.cipher,
                staff_id=staff_id,
                name=name,
                roles=wanted,
                by=staff_admin.cli_principal(),
                password=password,
                now=utcnow(),
                role_policy=policy,
            )
            detail: dict[str, Any] = {"roles": list(made.roles)}
            if made.pending_request is not None:
                detail["request"] = made.pending_request.audit_detail()
            return Done(made, detail=detail, outcome="ok" if made.pending_request is None else "pending")

        policy = _role_policy(store)
        made = _run(store, "staff.create", staff_id, work)
    typer.echo(
        f"職員を登録しました: {made.staff_id} {made.name} 権限: {'、'.join(made.roles) or 'なし'}"
    )
    if made.pending_request is not None:
        _show_pending(made.pending_request)
    if made.initial_password is not None:
        typer.echo(f"初期パスワード（この画面でのみ表示）: {made.initial_password}")
    _show_totp(made.totp_uri)


@staff_app.command("list")
def list_(config: ConfigOpt) -> None:
    """List the node's staff accounts (roles, state, lock, open sessions)."""
    with _store(config) as store:

        def work(s: Session) -> Done[list[staff_admin.StaffInfo]]:
            found = staff_admin.list_staff(s, store.auth, staff_admin.cli_principal(), now=utcnow())
            return Done(found, detail={"count": len(found)})

        found = _run(store, "staff.list", None, work)
    for info in found:
        state = "利用中" if info.active else "利用停止"
        if info.locked:
            until = info.locked_until
            state += "・ロック中（" + (
                f"{until.isoformat(timespec='minutes')}まで）" if until else "解除するまで）"
            )
        if info.throttled_until is not None:
            when = info.throttled_until.isoformat(timespec="seconds")
            state += f"・ログイン制限中（失敗が続いたため {when} まで）"
        typer.echo(
            f"{info.staff_id}\t{info.name}\t{'、'.join(info.roles) or '-'}\t{state}"
            f"\tセッション{info.open_sessions}"
        )
    typer.echo(f"{len(found)} 人")


def _show_pending(req: RoleRequest) -> None:
    typer.echo(
        f"承認待ち（依頼番号 {req.id}）: {'、'.join(req.added)} は別の管理者の承認後に付与されます"
        f"（renkei staff approve --request {req.id}）。"
    )


@staff_app.command("set-roles")
def set_roles(config: ConfigOpt, staff_id: IdOpt, roles: RolesOpt) -> None:
    """Set a staff member's roles: removals at once, data roles after another administrator approves."""
    with _store(config) as store:
        policy = _role_policy(store)

        def work(s: Session) -> Done[role_requests.RoleChange]:
            change = staff_admin.set_staff_roles(
                s,
                store.auth,
                staff_id,
                split_roles(roles),
                staff_admin.cli_principal(),
                role_policy=policy,
                now=utcnow(),
            )
            return Done(change, detail=change.audit_detail(), outcome=change.status)

        change = _run(store, "staff.roles.request", staff_id, work)
    typer.echo(f"{change.staff_id} の権限: {'、'.join(change.roles) or 'なし'}")
    if change.pending is not None:
        _show_pending(change.pending)


@staff_app.command("requests")
def requests(
    config: ConfigOpt,
    everything: Annotated[
        bool, typer.Option("--all", help="承認待ち以外（適用済み・却下）も表示")
    ] = False,
) -> None:
    """List role requests (those awaiting approval, or all)."""
    with _store(config) as store:

        def work(s: Session) -> Done[list[RoleRequest]]:
            found = role_requests.list_requests(
                s, store.auth, staff_admin.cli_principal(), status=None if everything else "pending"
            )
            return Done(found, detail={"count": len(found)})

        found = _run(store, "staff.roles.list", None, work)
    for req in found:
        typer.echo(
            f"{req.id}\t{req.status_label}\t{req.staff_id}\t追加: {'、'.join(req.added) or '-'}"
            f"\t削除: {'、'.join(req.removed) or '-'}\t依頼: {req.requested_by}"
            f" {req.requested_at.isoformat(timespec='minutes')}"
        )
    typer.echo(f"{len(found)} 件")


def _decide(config: Path, request_id: int, reject: bool) -> RoleRequest:
    with _store(config) as store:
        policy = _role_policy(store)

        def work(s: Session) -> Done[RoleRequest]:
            req = role_requests.decide(
                s,
                store.auth,
                request_id,
                staff_admin.cli_principal(),
                reject=reject,
                policy=policy,
                now=utcnow(),
            )
            return Done(req, detail=req.audit_detail(), outcome=req.status)

        action = "staff.roles.reject" if reject else "staff.roles.approve"
        return _run(store, action, None, work, ref=f"role-request:{request_id}")


@staff_app.command("approve")
def approve(config: ConfigOpt, request_id: RequestOpt) -> None:
    """Approve another administrator's role request (the roles are applied)."""
    req = _decide(config, request_id, False)
    typer.echo(f"依頼番号 {req.id} を承認しました。{req.staff_id} の権限: {'、'.join(req.roles) or 'なし'}")


@staff_app.command("reject")
def reject(config: ConfigOpt, request_id: RequestOpt) -> None:
    """Reject a role request (or withdraw one's own)."""
    req = _decide(config, request_id, True)
    typer.echo(f"依頼番号 {req.id} を却下しました（{req.staff_id} の権限は変わりません）。")


@staff_app.command("lock")
def lock(config: ConfigOpt, staff_id: IdOpt) -> None:
    """Lock an account until it is unlocked (its sessions end)."""
    with _store(config) as store:

        def work(s: Session) -> Done[int]:
            n = staff_admin.lock_staff(
                s, store.auth, staff_id, staff_admin.cli_principal(), now=utcnow()
            )
            return Done(n, detail={"sessions": n})

        n = _run(store, "staff.lock", staff_id, work)
    typer.echo(f"{staff_id} をロックしました（セッション {n} 件を終了）。解除は renkei staff unlock。")


@staff_app.command("unlock")
def unlock(config: ConfigOpt, staff_id: IdOpt) -> None:
    """Lift a lock and the sign-in throttling of an account."""
    with _store(config) as store:

        def work(s: Session) -> Done[None]:
            staff_admin.unlock_staff(s, store.auth, staff_id, staff_admin.cli_principal())
            return Done(None)

        _run(store, "staff.unlock", staff_id, work)
    typer.echo(f"{staff_id} のロックとログイン制限を解除しました。")


@staff_app.command("revoke-sessions")
def revoke_sessions(config: ConfigOpt, staff_id: IdOpt) -> None:
    """End every open session of a staff member."""
    with _store(config) as store:

        def work(s: Session) -> Done[int]:
            n = staff_admin.revoke_staff_sessions(
                s, store.auth, staff_id, staff_admin.cli_principal(), now=utcnow()
            )
            return Done(n, detail={"revoked": n})

        n = _run(store, "staff.revoke_sessions", staff_id, work)
    typer.echo(f"{staff_id} のセッションを {n} 件終了しました。")


def _set_active(config: Path, staff_id: str, active: bool) -> None:
    with _store(config) as store:

        def work(s: Session) -> Done[None]:
            staff_admin.set_staff_active(
                s, store.auth, staff_id, active, staff_admin.cli_principal(), now=utcnow()
            )
            return Done(None)

        _run(store, "staff.enable" if active else "staff.disable", staff_id, work)


@staff_app.command("disable")
def disable(config: ConfigOpt, staff_id: IdOpt) -> None:
    """Suspend a staff account (its sessions end)."""
    _set_active(config, staff_id, False)
    typer.echo(f"{staff_id} を利用停止にしました。")


@staff_app.command("enable")
def enable(config: ConfigOpt, staff_id: IdOpt) -> None:
    """Reinstate a suspended staff account."""
    _set_active(config, staff_id, True)
    typer.echo(f"{staff_id} の利用を再開しました。")


@staff_app.command("reset-totp")
def reset_totp(config: ConfigOpt, staff_id: IdOpt) -> None:
    """Issue a new TOTP secret (the old authenticator stops working; sessions end)."""
    with _store(config) as store:

        def work(s: Session) -> Done[str]:
            uri = staff_admin.reset_staff_totp(
                s, store.auth, store.cipher, staff_id, staff_admin.cli_principal(), now=utcnow()
            )
            return Done(uri)

        uri = _run(store, "staff.reset_totp", staff_id, work)
    typer.echo(f"{staff_id} のワンタイムパスワードを再発行しました。")
    _show_totp(uri)
