"""Shared fixtures: every storage test runs on SQLite and, when configured, on PostgreSQL.

CI sets RENKEI_TEST_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1/test);
under CI a missing URL fails the run instead of silently skipping PostgreSQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from renkei import nodes
from renkei.core.db import make_engine, make_sessionmaker, migrate

PG_URL = os.environ.get("RENKEI_TEST_POSTGRES_URL", "")
# A database call on an event loop fails the test (and the node processes e2e tests start).
os.environ.setdefault("RENKEI_EVENT_LOOP_IO", "error")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") and not PG_URL:
        raise pytest.UsageError("CI requires RENKEI_TEST_POSTGRES_URL: storage tests must also run on PostgreSQL")


def _admin_conninfo() -> str:
    url = make_url(PG_URL)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def create_pg_database() -> str:
    import psycopg

    name = f"renkei_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    import psycopg

    name = make_url(url).database
    with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


def migrated(db_url: str, node: str) -> tuple[Engine, sessionmaker[Session]]:
    """An engine and sessions on a database migrated to the node's newest schema."""
    schema = nodes.schema(node)
    engine = make_engine(db_url)
    migrate(engine, schema.migrations, schema.metadata)
    return engine, make_sessionmaker(engine)


@pytest.fixture
def node_db(db_url: str) -> Iterator[object]:
    """`node_db("hub")` → sessionmaker on a migrated database of that node."""
    engines: list[Engine] = []

    def factory(node: str) -> sessionmaker[Session]:
        engine, sessions = migrated(db_url, node)
        engines.append(engine)
        return sessions

    yield factory
    for engine in engines:
        engine.dispose()
