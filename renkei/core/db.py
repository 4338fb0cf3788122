"""Engines, sessions and migrations: SQLite (WAL) by default, PostgreSQL by URL.

Each node has its own database and its own Alembic migrations folder; the
kernel tables (received messages, outbox) are added to every node's metadata by
`kernel_tables`.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both engines (SQLite drops tzinfo otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# BIGINT autoincrement on PostgreSQL, INTEGER PRIMARY KEY (rowid) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


@dataclass(frozen=True)
class KernelTables:
    received_messages: Table
    outbox: Table


def kernel_tables(metadata: MetaData) -> KernelTables:
    """Tables every node has: replay protection and the transactional outbox."""
    received = Table(
        "received_messages",
        metadata,
        Column("message_id", String(64), primary_key=True),
        Column("sender", String(16), nullable=False),
        Column("typ", String(64), nullable=False),
        Column("received_at", UtcDateTime(), nullable=False),
    )
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("message_id", String(64), nullable=False, unique=True),
        Column("destination", String(255), nullable=False),
        Column("audience", String(16), nullable=False),
        Column("typ", String(64), nullable=False),
        Column("body", JSON, nullable=False),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("attempts", Integer, nullable=False, default=0),
        Column("next_attempt_at", UtcDateTime(), nullable=False),
        Column("delivered_at", UtcDateTime(), nullable=True),
        Column("last_error", Text, nullable=True),
    )
    Index("ix_outbox_due", outbox.c.delivered_at, outbox.c.next_attempt_at)
    return KernelTables(received_messages=received, outbox=outbox)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


# What a database call on an event loop does (`forbid_event_loop_io`): "error" (the
# tests), "warn" (the default: logged once per statement) or "off".
EVENT_LOOP_IO_ENV = "RENKEI_EVENT_LOOP_IO"


class EventLoopIOError(RuntimeError):
    """A database call ran on an event loop (it would stall every request of the node)."""


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def forbid_event_loop_io(engine: Engine, mode: str | None = None) -> None:
    """Watch ``engine`` for statements run on an event loop (inside a coroutine of the
    thread): one would stall every request of the node while the database works.
    ``mode`` (default: ``$RENKEI_EVENT_LOOP_IO`` or "warn") says what happens then."""
    mode = (mode or os.environ.get(EVENT_LOOP_IO_ENV) or "warn").lower()
    if mode == "off":
        return
    seen: set[str] = set()

    def check(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not _on_event_loop():
            return
        head = " ".join(statement.split())[:80]  # the statement's text, never its values
        if mode == "error":
            raise EventLoopIOError(f"database call on the event loop: {head}")
        if head not in seen:
            seen.add(head)
            structlog.get_logger("renkei.db").warning("database_call_on_event_loop", statement=head)

    event.listen(engine, "before_cursor_execute", check)


def serialize_transactions(engine: Engine) -> None:
    """One transaction at a time on this engine, across the process's threads (SQLite).

    SQLite has one writer per database; threads that collide wait in its busy handler,
    which sleeps 1, 2, 5 … 100 ms between tries — under load most of a request's time.
    A lock taken when SQLAlchemy begins a transaction and released when it ends hands the
    database from one thread to the next at once instead. Re-entrant, so a thread that
    opens a second session inside a transaction does not wait on itself. Savepoints fire
    no begin/commit/rollback event: a group of units of work (`renkei.core.units`, one
    transaction with a savepoint per unit) holds the lock once, from its first statement
    to its COMMIT or ROLLBACK; the counter keeps a failed COMMIT (commit event, then
    rollback event) from releasing it twice.
    """
    lock = threading.RLock()

    def begin(conn: Any) -> None:
        lock.acquire()
        conn.info["renkei_tx_lock"] = conn.info.get("renkei_tx_lock", 0) + 1

    def end(conn: Any) -> None:
        held = conn.info.get("renkei_tx_lock", 0)
        if held:
            conn.info["renkei_tx_lock"] = held - 1
            lock.release()

    event.listen(engine, "begin", begin)
    event.listen(engine, "commit", end)
    event.listen(engine, "rollback", end)


def _plain_savepoints(engine: Engine) -> None:
    """SAVEPOINT, RELEASE and ROLLBACK TO go straight to the driver (SQLite).

    SQLAlchemy compiles each as a new statement, because its name changes every time
    (``sa_savepoint_<n>``, its own counter): that cost as much CPU as a unit's INSERT,
    and group commit (`renkei.core.units`) takes two per unit of work. SQLAlchemy keeps
    its own account of the savepoints as before; only the statement's text is sent as is.
    """

    def send(connection: Any, sql: str) -> None:
        connection.connection.driver_connection.execute(sql)

    dialect: Any = engine.dialect
    dialect.do_savepoint = lambda connection, name: send(connection, f"SAVEPOINT {name}")
    dialect.do_release_savepoint = lambda connection, name: send(connection, f"RELEASE SAVEPOINT {name}")
    dialect.do_rollback_to_savepoint = lambda connection, name: send(connection, f"ROLLBACK TO SAVEPOINT {name}")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the settings this project relies on for each backend, watched for
    database calls on an event loop (`forbid_event_loop_io`)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        serialize_transactions(engine)
        _plain_savepoints(engine)
    else:
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("pool_size", 10)
        # psycopg prepares a statement on the server after five runs, and PostgreSQL may then
        # keep a generic plan chosen while a table was nearly empty: a bulk import's look-up
        # by (system, number) stayed a sequential scan as the table grew to 250,000 rows
        # (quadratic). Plan each run with its own values; these statements are cheap to plan.
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("options", "-c plan_cache_mode=force_custom_plan")
        engine = create_engine(url, connect_args=connect_args, **kwargs)
    forbid_event_loop_io(engine)
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def migrate(
    engine: Engine,
    migrations_dir: Path,
    metadata: MetaData,
    attributes: Mapping[str, Any] | None = None,
) -> None:
    """Bring the database to the newest revision of the node's Alembic migrations.

    ``attributes`` reach the revisions as ``context.config.attributes`` — e.g. the
    node's ``field_cipher`` for a revision that encrypts a column holding data.
    """
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.attributes.update(attributes or {})
    cfg.attributes["engine"] = engine
    cfg.attributes["metadata"] = metadata
    command.upgrade(cfg, "head")


def run_migrations_env() -> None:
    """Body of every node's migrations/env.py: online migrations on the engine given."""
    from alembic import context

    cfg = context.config
    engine: Engine | None = cfg.attributes.get("engine")
    metadata: MetaData = cfg.attributes["metadata"]
    if engine is None:
        url = cfg.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("no engine or sqlalchemy.url for migrations")
        engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
