from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from renkei.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("kind", "value", "code", "starts"),
    [
        ("individual-number", "123456789018", 0, "valid"),
        ("individual-number", "123456789012", 1, "invalid: 個人番号"),
        ("individual-number", "１２３４５６７８９０１８", 1, "invalid: "),
        ("resident-code", "12345678901", None, None),
        ("atena-no", "000000000000019", 0, "valid"),
        ("atena-no", "000000000000018", 1, "invalid: "),
        ("lg-code", "131041", 0, "valid"),
        ("lg-code", "131042", 1, "invalid: "),
    ],
)
def test_ids_check(kind: str, value: str, code: int | None, starts: str | None) -> None:
    result = runner.invoke(app, ["ids", "check", kind, value])
    if code is None:
        assert result.exit_code in (0, 1)
        assert result.output.startswith(("valid", "invalid: "))
        return
    assert result.exit_code == code, result.output
    assert result.output.startswith(starts or "")


def test_ids_check_unknown_kind() -> None:
    result = runner.invoke(app, ["ids", "check", "passport", "X"])
    assert result.exit_code == 2


def test_pki_init_writes_keys_0600(tmp_path: Path) -> None:
    result = runner.invoke(app, ["pki", "init", "--var", str(tmp_path)])
    assert result.exit_code == 0, result.output
    keys = list((tmp_path / "pki").rglob("*.key")) + list((tmp_path / "pki").rglob("*.jwk"))
    assert len(keys) >= 11
    assert all(k.stat().st_mode & 0o077 == 0 for k in keys)


def test_serve_refuses_a_wrong_config(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", "hub", "--config", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2
