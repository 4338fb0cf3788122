"""jlis_0003: the individual numbers a J-LIS database already holds are sealed in place."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from renkei.core.crypto.field import FieldCipher
from renkei.core.db import make_engine, make_sessionmaker, migrate
from renkei.jlis import service
from renkei.jlis.app import MIGRATIONS
from renkei.jlis.models import Base, Citizen

NOW = datetime(2026, 4, 1, tzinfo=UTC)
ROWS = [("12345678901", "123456789018"), ("23456789012", "234567890123")]
_citizens = sa.table(
    "citizens",
    sa.column("resident_code", sa.String),
    sa.column("individual_number", sa.String),
    sa.column("lg_code", sa.String),
    sa.column("registered_at", sa.DateTime),
)


def _at_0002_with_rows(db_url: str) -> sa.Engine:
    engine = make_engine(db_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(MIGRATIONS)))
    cfg.attributes["engine"] = engine
    cfg.attributes["metadata"] = Base.metadata
    command.upgrade(cfg, "jlis_0002")
    with engine.begin() as conn:
        for code, number in ROWS:
            conn.execute(
                _citizens.insert().values(
                    resident_code=code, individual_number=number, lg_code="131041", registered_at=NOW
                )
            )
    return engine


def _dump(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return repr(conn.execute(sa.text("select * from citizens")).all())


def test_upgrade_seals_existing_numbers(db_url: str) -> None:
    engine = _at_0002_with_rows(db_url)
    try:
        assert ROWS[0][1] in _dump(engine)  # the scan below can fail
        cipher = FieldCipher.generate()
        migrate(engine, MIGRATIONS, Base.metadata, {"field_cipher": cipher})
        dump = _dump(engine)
        assert not any(number in dump for _code, number in ROWS)
        assert "individual_number" not in [c["name"] for c in sa.inspect(engine).get_columns("citizens")]
        with make_sessionmaker(engine)() as s:
            for code, number in ROWS:
                citizen = s.get(Citizen, code)
                assert citizen is not None and service.individual_number(cipher, citizen) == number
                assert citizen.individual_number_index == cipher.blind_index(number)
    finally:
        engine.dispose()


def test_upgrade_without_the_key_changes_nothing(db_url: str) -> None:
    engine = _at_0002_with_rows(db_url)
    try:
        before = _dump(engine)
        with pytest.raises(RuntimeError, match="暗号鍵が必要です"):
            migrate(engine, MIGRATIONS, Base.metadata)
        assert _dump(engine) == before
        with engine.connect() as conn:
            assert conn.execute(sa.text("select version_num from alembic_version")).scalar_one() == "jlis_0002"
    finally:
        engine.dispose()
