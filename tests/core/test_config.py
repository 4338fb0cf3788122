from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from renkei.core.config import ConfigError, load_config
from renkei.federation.topology import HUB, SHINJUKU, Layout, write_config


def test_generated_config_loads_with_paths_resolved(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "var", 20000)
    cfg = load_config(write_config(layout, SHINJUKU, "atena"), environ={})
    assert cfg.kind == "atena" and cfg.org_code == SHINJUKU.org_code and cfg.port == 20020
    assert cfg.database_url.startswith("sqlite:///") and cfg.database_url.endswith("atena.db")
    assert cfg.peer("chukan") == layout.url(SHINJUKU, "chukan")
    assert cfg.hub_org_code == HUB.org_code and cfg.master_key is not None


def test_environment_overrides(tmp_path: Path) -> None:
    path = write_config(Layout(tmp_path / "var", 20000), SHINJUKU, "chukan")
    cfg = load_config(path, environ={"RENKEI_NODE_PORT": "9999", "RENKEI_NODE_DATABASE_URL": "postgresql+psycopg://x/y"})
    assert cfg.port == 9999 and cfg.database_url == "postgresql+psycopg://x/y"


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="設定ファイルがありません"):
        load_config(tmp_path / "missing.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[node]\nkind = 'hub'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="必須項目"):
        load_config(bad, environ={})
    bad.write_text("[node\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="書式"):
        load_config(bad, environ={})
    bad.write_text("[node]\nkind = 'mail'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="kind"):
        load_config(bad, environ={})
    with pytest.raises(ConfigError):
        load_config(write_config(Layout(tmp_path / "v", 20000), HUB, "hub"), environ={}).peer("chukan")


def test_dump_config_writes_sub_tables_that_load_back(tmp_path: Path) -> None:
    from renkei.core.config import dump_config
    from renkei.core.wire.guard import GuardPolicy

    cfg = {
        "node": {"kind": "atena", "port": 9443, "flag": True, "name": 'a "quoted" \\ name'},
        "guard": {"rate_limit_alerts": False, "limits": {"staff": 6000}, "distinct_persons": {"max": 5000}},
    }
    text = dump_config(cfg)
    assert tomllib.loads(text) == cfg
    policy = GuardPolicy.from_dict(tomllib.loads(text)["guard"])
    assert policy.limits["staff"].max == 6000 and policy.distinct_persons.max == 5000
    assert policy.limits["client"].max == 600  # untouched defaults stay


def test_server_limits_default_and_come_from_the_file_or_the_environment(tmp_path: Path) -> None:
    from renkei.core.config import ServerLimits

    path = write_config(Layout(tmp_path / "var", 20000), HUB, "hub")
    assert load_config(path, environ={}).server == ServerLimits()
    path.write_text(path.read_text(encoding="utf-8") + "\n[server]\nmax_header_bytes = 8192\nheader_timeout = 2.5\n", encoding="utf-8")
    cfg = load_config(path, environ={"RENKEI_SERVER_MAX_CONNECTIONS": "64", "RENKEI_SERVER_BODY_TIMEOUT": "30"})
    assert cfg.server == ServerLimits(max_header_bytes=8192, header_timeout=2.5, max_connections=64, body_timeout=30.0)
    # The environment wins over the file, as for every section.
    assert load_config(path, environ={"RENKEI_SERVER_MAX_HEADER_BYTES": "4096"}).server.max_header_bytes == 4096


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("max_header_bytes = 0", "正の整数"),
        ("max_header_fields = -3", "正の整数"),
        ("max_connections = 1.5", "正の整数"),
        ("max_connections = true", "正の整数"),
        ("header_timeout = 'soon'", "正の数（秒）"),
        ("body_timeout = 0", "正の数（秒）"),
        ("header_timeuot = 3", "設定できません"),
    ],
)
def test_server_limits_refuse_what_is_not_a_positive_number(tmp_path: Path, line: str, message: str) -> None:
    path = write_config(Layout(tmp_path / "var", 20000), HUB, "hub")
    path.write_text(path.read_text(encoding="utf-8") + f"\n[server]\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})


def test_a_wrong_server_limit_in_the_environment_is_refused(tmp_path: Path) -> None:
    path = write_config(Layout(tmp_path / "var", 20000), HUB, "hub")
    with pytest.raises(ConfigError, match=r"\[server\] max_header_bytes"):
        load_config(path, environ={"RENKEI_SERVER_MAX_HEADER_BYTES": "32k"})


def test_wire_settings_default_and_come_from_the_file_or_the_environment(tmp_path: Path) -> None:
    from renkei.core.config import WireConfig

    path = write_config(Layout(tmp_path / "var", 20000), SHINJUKU, "chukan")
    assert load_config(path, environ={}).wire == WireConfig(batch_in_flight=2, batch_max=32)
    path.write_text(path.read_text(encoding="utf-8") + "\n[wire]\nbatch_in_flight = 0\nbatch_max = 64\n", encoding="utf-8")
    assert load_config(path, environ={}).wire == WireConfig(batch_in_flight=0, batch_max=64)
    assert load_config(path, environ={"RENKEI_WIRE_BATCH_IN_FLIGHT": "4"}).wire.batch_in_flight == 4


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("batch_in_flight = -1", r"\[wire\] batch_in_flight は0以上"),
        ("batch_in_flight = 1.5", r"\[wire\] batch_in_flight"),
        ("batch_in_flight = true", r"\[wire\] batch_in_flight"),
        ("batch_max = 0", r"\[wire\] batch_max は1以上64以下"),
        ("batch_max = 65", r"\[wire\] batch_max は1以上64以下"),
        ("batch_size = 3", "設定できません"),
    ],
)
def test_wire_settings_refuse_what_does_not_fit(tmp_path: Path, line: str, message: str) -> None:
    path = write_config(Layout(tmp_path / "var", 20000), SHINJUKU, "chukan")
    path.write_text(path.read_text(encoding="utf-8") + f"\n[wire]\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})
