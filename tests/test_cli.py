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


def test_keys_rotate_and_status_on_an_atena_database(tmp_path: Path) -> None:
    import random
    from datetime import UTC, datetime

    from renkei.atena.models import Person
    from renkei.core.config import load_config
    from renkei.core.crypto.field import FileKms, load_or_create_keyring
    from renkei.core.db import make_engine, make_sessionmaker
    from renkei.core.ids import generate_individual_number
    from renkei.federation.topology import SHINJUKU, Layout, write_config
    from tests.conftest import migrated

    layout = Layout(tmp_path / "var", 20000)
    cfg = load_config(write_config(layout, SHINJUKU, "atena"), environ={})
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    assert cfg.master_key is not None
    cipher = load_or_create_keyring(cfg.data_dir / "keyring.json", FileKms.create(cfg.master_key))
    engine, sessions = migrated(cfg.database_url, "atena")
    rng = random.Random(3)
    numbers = {}
    with sessions() as s:
        for i in range(1, 21):
            atena_no = f"{i:015d}"
            number = generate_individual_number(rng)
            numbers[atena_no] = number
            s.add(Person(atena_no=atena_no, individual_number_enc=cipher.encrypt(number, ("persons", "individual_number", atena_no)),
                         individual_number_index=cipher.blind_index(number), residence="resident", created_at=datetime.now(UTC)))
        s.commit()
    config = str(layout.config_path(SHINJUKU, "atena"))
    result = runner.invoke(app, ["keys", "rotate", "--config", config, "--keep-old"])
    assert result.exit_code == 0, result.output
    assert "20 件を再暗号化しました" in result.output
    status = runner.invoke(app, ["keys", "status", "--config", config])
    assert "persons.individual_number_enc: {2: 20}" in status.output, status.output
    fresh = load_or_create_keyring(cfg.data_dir / "keyring.json", FileKms(cfg.master_key))
    with make_sessionmaker(make_engine(cfg.database_url))() as s:
        for p in s.query(Person):
            assert fresh.decrypt(p.individual_number_enc, ("persons", "individual_number", p.atena_no)) == numbers[p.atena_no]
    engine.dispose()
