"""`renkei staff` on any node's config: accounts made, changed and audited from the
command line — SQLite and PostgreSQL (the config's database overridden by environment)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyotp
import pytest
from argon2 import PasswordHasher
from click.testing import Result
from sqlalchemy import text
from typer.testing import CliRunner

from renkei import cli
from renkei.core.config import load_config
from renkei.staff import auth
from renkei.staff.admin import NodeStore, cli_principal, open_node_store
from renkei.staff.auth import AuthPolicy
from renkei.staff.cli import PASSWORD_ENV, split_roles
from tests.api.fed import Federation, build_federation
from tests.core.staff_kit import ORG_OF

ACTOR = cli_principal().staff_id
URI = re.compile(r"otpauth://totp/\S+")
PASSWORD = re.compile(r"初期パスワード（この画面でのみ表示）: (\S+)")
# The CLI hashes with the production argon2 cost; the checks here verify with it too.
VERIFY_POLICY = AuthPolicy(hasher=PasswordHasher())


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return build_federation(tmp_path_factory, "staff-cli")


@dataclass
class Cli:
    fed: Federation
    node: str
    db_url: str
    runner: CliRunner

    @property
    def config(self) -> str:
        return str(self.fed.layout.config_path(ORG_OF[self.node], self.node))

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, input: str | None = None
    ) -> Result:
        environ = {"RENKEI_NODE_DATABASE_URL": self.db_url, **(env or {})}
        return self.runner.invoke(
            cli.app,
            ["staff", args[0], "--config", self.config, *args[1:]],
            env=environ,
            input=input,
        )

    def ok(self, *args: str, **kw: Any) -> str:
        result = self(*args, **kw)
        assert result.exit_code == 0, (result.output, result.exception)
        return result.output

    def store(self) -> NodeStore:
        cfg = load_config(
            self.fed.layout.config_path(ORG_OF[self.node], self.node),
            {"RENKEI_NODE_DATABASE_URL": self.db_url},
        )
        return open_node_store(cfg)

    def audit(self) -> list[tuple[str, str, str, str | None]]:
        store = self.store()
        try:
            with store.engine.connect() as conn:
                rows = conn.execute(
                    text("select actor, action, outcome, ref from audit_entries order by seq")
                ).all()
            return [tuple(r) for r in rows]  # type: ignore[misc]
        finally:
            store.close()

    def login(self, staff_id: str, password: str, uri: str, at: datetime) -> None:
        store = self.store()
        try:
            code = pyotp.TOTP(pyotp.parse_uri(uri).secret).at(at)
            with auth.auth_transaction(store.sessions) as s:
                auth.login(
                    s,
                    store.auth,
                    store.cipher,
                    staff_id,
                    password,
                    code,
                    terminal="PC-01",  # the throttle counts per terminal too
                    policy=VERIFY_POLICY,
                    now=at,
                )
        finally:
            store.close()


@pytest.fixture
def hub_cli(fed: Federation, db_url: str) -> Iterator[Cli]:
    yield Cli(fed, "hub", db_url, CliRunner())


def created(output: str) -> tuple[str, str]:
    password = PASSWORD.search(output)
    uri = URI.search(output)
    assert password and uri, output
    return password.group(1), uri.group(0)


def test_split_roles() -> None:
    assert split_roles("管理, 監査、JM01000000074000:参照  x") == [
        "管理",
        "監査",
        "JM01000000074000:参照",
        "x",
    ]
    assert split_roles("") == []


@pytest.mark.parametrize("node", ["hub", "jlis", "chukan", "atena"])
def test_create_prints_the_password_and_totp_once_and_is_audited(
    fed: Federation, db_url: str, node: str
) -> None:
    run = Cli(fed, node, db_url, CliRunner())
    out = run.ok("create", "--id", "S0001", "--name", "山田花子", "--roles", "管理")
    password, uri = created(out)
    assert "S0001" in out and "管理" in out
    assert "█" in out or "▀" in out or "▄" in out  # the QR code, drawn on the terminal
    run.login("S0001", password, uri, datetime.now(UTC))
    assert (ACTOR, "staff.create", "ok", "S0001") in run.audit()
    assert password not in repr(run.audit())
    listed = run.ok("list")
    assert re.search(r"S0001\t山田花子\t管理\t利用中", listed), listed


def test_password_from_the_environment_or_a_prompt(hub_cli: Cli) -> None:
    chosen = "Chosen-Passw0rd-2026"
    out = hub_cli.ok(
        "create",
        "--id",
        "S0002",
        "--name",
        "環境 変数",
        "--roles",
        "監査",
        env={PASSWORD_ENV: chosen},
    )
    assert "初期パスワード" not in out
    uri = URI.search(out)
    assert uri
    hub_cli.login("S0002", chosen, uri.group(0), datetime.now(UTC))
    typed = "Typed-Passw0rd-2026"
    out = hub_cli.ok(
        "create",
        "--id",
        "S0003",
        "--name",
        "入力 する",
        "--password-prompt",
        input=f"{typed}\n{typed}\n",
    )
    assert typed not in out
    uri = URI.search(out)
    assert uri
    hub_cli.login("S0003", typed, uri.group(0), datetime.now(UTC))
    # A weak password is refused, audited, and creates nothing.
    result = hub_cli("create", "--id", "S0004", "--name", "弱い", env={PASSWORD_ENV: "short"})
    assert result.exit_code == 1 and "password_policy" in result.output
    assert hub_cli.audit()[-1][:3] == (ACTOR, "staff.create", "password_policy")
    assert "S0004" not in hub_cli.ok("list")


def test_roles_lock_sessions_and_suspension(hub_cli: Cli) -> None:
    password, uri = created(
        hub_cli.ok("create", "--id", "S0010", "--name", "職員 甲", "--roles", "監査")
    )
    # Separation of duties holds on the command line too.
    result = hub_cli("set-roles", "--id", "S0010", "--roles", "監査,管理")
    assert (
        result.exit_code == 1 and "職務分掌" in result.output and "role_conflict" in result.output
    )
    assert hub_cli.audit()[-1] == (ACTOR, "staff.roles.request", "role_conflict", "S0010")
    result = hub_cli("set-roles", "--id", "S0010", "--roles", "管理,宛名:参照")
    assert result.exit_code == 1 and "管理の権限" in result.output and "role_conflict" in result.output
    assert re.search(r"S0010\t職員 甲\t監査\t", hub_cli.ok("list"))  # nothing changed
    assert hub_cli("set-roles", "--id", "NOBODY", "--roles", "監査").exit_code == 1
    assert hub_cli.audit()[-1][2] == "staff_not_found"
    # Sign-ins that keep failing are throttled; the list shows it, unlock lifts it. (A
    # minute ahead: `list` reads the wall clock, the two-second delay must not pass.)
    now = datetime.fromtimestamp(datetime.now(UTC).timestamp() + 60, UTC)
    for _ in range(5):
        with pytest.raises(auth.AuthError):
            hub_cli.login("S0010", "Wrong-password-123", uri, now)
    with pytest.raises(auth.AuthError) as info:
        hub_cli.login("S0010", password, uri, now)
    assert info.value.code == "bad_credentials" and info.value.reason == "throttled"
    assert "ログイン制限中" in hub_cli.ok("list")
    hub_cli.ok("unlock", "--id", "S0010")
    assert "ログイン制限中" not in hub_cli.ok("list")
    hub_cli.login("S0010", password, uri, now)
    assert "セッションを 1 件終了しました" in hub_cli.ok("revoke-sessions", "--id", "S0010")
    # An administrator's lock: refused like a wrong password until unlocked.
    hub_cli.login("S0010", password, uri, datetime.fromtimestamp(now.timestamp() + 30, UTC))
    assert "セッション 1 件を終了" in hub_cli.ok("lock", "--id", "S0010")
    assert "ロック中（解除するまで）" in hub_cli.ok("list")
    with pytest.raises(auth.AuthError) as info:
        hub_cli.login("S0010", password, uri, datetime.fromtimestamp(now.timestamp() + 60, UTC))
    assert info.value.code == "bad_credentials" and info.value.reason == "locked"
    hub_cli.ok("unlock", "--id", "S0010")
    # Suspended: the right credentials are refused; reinstated: accepted.
    hub_cli.ok("disable", "--id", "S0010")
    later = datetime.fromtimestamp(now.timestamp() + 90, UTC)
    with pytest.raises(auth.AuthError) as info:
        hub_cli.login("S0010", password, uri, later)
    assert info.value.code == "inactive"
    hub_cli.ok("enable", "--id", "S0010")
    # A new second factor: the old one stops working.
    new_uri = URI.search(hub_cli.ok("reset-totp", "--id", "S0010"))
    assert new_uri and new_uri.group(0) != uri
    even_later = datetime.fromtimestamp(now.timestamp() + 120, UTC)
    with pytest.raises(auth.AuthError) as info:
        hub_cli.login("S0010", password, uri, even_later)
    assert info.value.code == "totp_invalid"
    hub_cli.ok("unlock", "--id", "S0010")
    hub_cli.login(
        "S0010", password, new_uri.group(0), datetime.fromtimestamp(now.timestamp() + 180, UTC)
    )
    actions = [a[1] for a in hub_cli.audit() if a[0] == ACTOR and a[2] == "ok"]
    for action in (
        "staff.unlock",
        "staff.lock",
        "staff.revoke_sessions",
        "staff.disable",
        "staff.enable",
        "staff.reset_totp",
    ):
        assert action in actions


def test_data_roles_from_the_command_line_wait_for_another_administrator(hub_cli: Cli) -> None:
    password, uri = created(
        hub_cli.ok("create", "--id", "S0020", "--name", "職員 乙", "--roles", "監査,宛名:参照")
    )
    # Created with 監査 at once; 宛名:参照 waits in a request.
    out = hub_cli.ok("list")
    assert re.search(r"S0020\t職員 乙\t監査\t", out), out
    create = [a for a in hub_cli.audit() if a[1] == "staff.create"][-1]
    assert create == (ACTOR, "staff.create", "pending", "S0020")
    out = hub_cli.ok("set-roles", "--id", "S0020", "--roles", "監査,ＪＭ01000000074000：参照")
    assert "承認待ち（依頼番号" in out and "S0020 の権限: 監査" in out
    assert hub_cli.audit()[-1] == (ACTOR, "staff.roles.request", "pending", "S0020")
    request_id = re.search(r"依頼番号 (\d+)", out)
    assert request_id
    listed = hub_cli.ok("requests")
    assert "JM01000000074000:参照" in listed and "1 件" in listed  # the newer one only
    assert "後の変更により無効" in hub_cli.ok("requests", "--all")
    # The same OS user cannot approve its own request …
    result = hub_cli("approve", "--request", request_id.group(1))
    assert result.exit_code == 1 and "self_approval" in result.output
    assert hub_cli.audit()[-1] == (
        ACTOR, "staff.roles.approve", "self_approval", f"role-request:{request_id.group(1)}"
    )  # fmt: skip
    assert re.search(r"S0020\t職員 乙\t監査\t", hub_cli.ok("list"))
    # … another administrator at the host does.
    other = {"LOGNAME": "second-admin", "USER": "second-admin"}
    out = hub_cli.ok("approve", "--request", request_id.group(1), env=other)
    assert "JM01000000074000:参照、監査" in out
    assert ("cli:second-admin", "staff.roles.approve", "applied") == hub_cli.audit()[-1][:3]
    # Removing a role needs no approval.
    assert "S0020 の権限: 監査" in hub_cli.ok("set-roles", "--id", "S0020", "--roles", "監査")
    assert hub_cli.audit()[-1] == (ACTOR, "staff.roles.request", "applied", "S0020")
    result = hub_cli("reject", "--request", "9999")
    assert result.exit_code == 1 and "role_request_not_found" in result.output
    hub_cli.login("S0020", password, uri, datetime.now(UTC))


def test_bad_config_and_bad_id(hub_cli: Cli, tmp_path: Any) -> None:
    result = hub_cli.runner.invoke(
        cli.app, ["staff", "list", "--config", str(tmp_path / "none.toml")]
    )
    assert result.exit_code == 2 and "設定ファイル" in result.output
    number_like = "123456789012"
    result = hub_cli("create", "--id", number_like + "!", "--name", "x")
    assert result.exit_code == 1 and "invalid_staff" in result.output
    assert hub_cli.audit()[-1] == (ACTOR, "staff.create", "invalid_staff", None)
