"""renkei.core.sql.Prepared: the same statement run lean and through Core gives the same
rows, counts and errors on both backends, in the session's transaction, with the
engine's statement events (the event-loop check) still firing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from renkei.core.db import (
    BigId,
    EventLoopIOError,
    UtcDateTime,
    make_engine,
    make_sessionmaker,
    transaction,
)
from renkei.core.sql import Prepared
from renkei.hub.models import Pseudonym

md = MetaData()
things = Table(
    "things",
    md,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("code", String(16), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("day", Date, nullable=True),
    Column("doc", JSON(none_as_null=True), nullable=True),
    Column("flag", Boolean, nullable=False),
    Column("note", Text, nullable=True),
    Column("tries", Integer, nullable=False, default=0),
    UniqueConstraint("code"),
)
KEYS = ("code", "at", "day", "doc", "flag", "note")
COLS = [
    things.c.id,
    things.c.code,
    things.c.at,
    things.c.day,
    things.c.doc,
    things.c.flag,
    things.c.note,
    things.c.tries,
]
_INSERTS: dict[str, Any] = {"sqlite": sqlite_insert, "postgresql": pg_insert}


@pytest.fixture
def db(db_url: str) -> Iterator[tuple[Engine, sessionmaker[Session]]]:
    engine = make_engine(db_url)
    md.create_all(engine)
    try:
        yield engine, make_sessionmaker(engine)
    finally:
        engine.dispose()


def _row(code: str, **over: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "code": code,
        # Not UTC, with microseconds: both paths must store and give back the same instant in UTC.
        "at": datetime(2026, 4, 1, 18, 30, 0, 123456, tzinfo=timezone(timedelta(hours=9))),
        "day": date(2026, 3, 31),
        "doc": {"名前": "山田", "n": [1, 2.5, None], "ok": True},
        "flag": True,
        "note": "備考",
    }
    values.update(over)
    return values


def test_insert_and_select_match_core(db: tuple[Engine, sessionmaker[Session]]) -> None:
    _, sessions = db
    lean_insert = Prepared(insert(things).returning(things.c.id), KEYS)
    lean_select = Prepared(select(*COLS).where(things.c.code == bindparam("code")), ["code"])
    with transaction(sessions) as s:
        lean_id = lean_insert.scalar(s, _row("lean"))
        core_id = s.execute(insert(things).returning(things.c.id), _row("core")).scalar_one()
        lean_nulls = lean_insert.scalar(
            s, _row("lean-null", day=None, doc=None, note=None, flag=False)
        )
        s.execute(insert(things), _row("core-null", day=None, doc=None, note=None, flag=False))
    assert isinstance(lean_id, int) and isinstance(core_id, int) and lean_id != core_id
    assert isinstance(lean_nulls, int) and lean_nulls > lean_id
    with transaction(sessions) as s:
        for lean_code, core_code in (("lean", "core"), ("lean-null", "core-null")):
            lean = lean_select.first(s, {"code": lean_code})
            core = s.execute(select(*COLS).where(things.c.code == core_code)).one()
            assert lean is not None and type(lean) is tuple
            # Same values and types, column by column (id and code differ by design).
            assert lean[2:] == tuple(core)[2:]
            assert [type(v) for v in lean] == [type(v) for v in core]
        # Rows written by Core read the same lean, and the other way round.
        by_lean = lean_select.all(s, {"code": "core"})
        assert by_lean == [tuple(s.execute(select(*COLS).where(things.c.code == "core")).one())]
        full = lean_select.first(s, {"code": "lean"})
    assert full is not None
    at = full[2]
    assert at == datetime(2026, 4, 1, 9, 30, 0, 123456, tzinfo=UTC) and at.tzinfo is UTC
    assert full is not None
    assert full[3] == date(2026, 3, 31) and full[4] == {
        "名前": "山田",
        "n": [1, 2.5, None],
        "ok": True,
    }
    assert full[5] is True and full[7] == 0  # the column's constant default, as Core fills it


def test_first_scalar_scalars_and_rowcount(db: tuple[Engine, sessionmaker[Session]]) -> None:
    _, sessions = db
    add = Prepared(insert(things), KEYS)
    codes = Prepared(
        select(things.c.code).where(things.c.flag == bindparam("flag")).order_by(things.c.code),
        ["flag"],
    )
    count = Prepared(select(func.count()).select_from(things))
    bump = Prepared(
        update(things)
        .where(things.c.flag == bindparam("which"))
        .values(tries=things.c.tries + 1, note="x"),
        ["which"],
    )
    drop = Prepared(delete(things).where(things.c.code == bindparam("code")), ["code"])
    with transaction(sessions) as s:
        for code, flag in (("a", True), ("b", False), ("c", True)):
            assert add.run(s, _row(code, flag=flag)) == 1
        assert codes.scalars(s, {"flag": True}) == ["a", "c"]
        assert codes.all(s, {"flag": False}) == [("b",)]
        assert codes.first(s, {"flag": True}) == ("a",)
        assert codes.scalar(s, {"flag": True}) == "a"
        assert count.scalar(s) == 3
        assert bump.run(s, {"which": True}) == 2
        assert bump.run(s, {"which": True}) == 2
        assert drop.run(s, {"code": "zz"}) == 0
        assert drop.run(s, {"code": "b"}) == 1
        assert codes.first(s, {"flag": False}) is None
        assert codes.scalar(s, {"flag": False}) is None
        assert codes.all(s, {"flag": False}) == []
        rows = s.execute(
            select(things.c.code, things.c.tries, things.c.note).order_by(things.c.code)
        ).all()
    assert [tuple(r) for r in rows] == [("a", 2, "x"), ("c", 2, "x")]


def test_on_conflict_returning_and_integrity_error(
    db: tuple[Engine, sessionmaker[Session]],
) -> None:
    engine, sessions = db
    ins = _INSERTS[engine.dialect.name]
    once = Prepared(
        ins(things).on_conflict_do_nothing(index_elements=[things.c.code]).returning(things.c.code),
        KEYS,
    )
    plain = Prepared(insert(things), KEYS)
    with transaction(sessions) as s:
        assert once.first(s, _row("k")) == ("k",)
        assert once.first(s, _row("k")) is None  # kept already: nothing added, nothing returned
    with pytest.raises(IntegrityError), transaction(sessions) as s:
        plain.run(s, _row("k"))
    with pytest.raises(StatementError, match="naive datetime"), transaction(sessions) as s:
        plain.run(s, _row("naive", at=datetime(2026, 4, 1, 9, 0)))
    with transaction(
        sessions
    ) as s:  # the session is usable after each failure; nothing else stored
        assert s.execute(select(func.count()).select_from(things)).scalar_one() == 1


def test_runs_in_the_sessions_transaction(db: tuple[Engine, sessionmaker[Session]]) -> None:
    _, sessions = db
    add = Prepared(insert(things), KEYS)
    s = sessions()
    try:
        add.run(s, _row("gone"))
        assert s.execute(select(things.c.code)).scalars().all() == ["gone"]  # Core sees it
        s.rollback()
        add.run(s, _row("kept"))
        s.commit()
    finally:
        s.close()
    with transaction(sessions) as s2:
        assert s2.execute(select(things.c.code)).scalars().all() == ["kept"]


def test_statement_events_fire_and_the_event_loop_is_guarded(
    db: tuple[Engine, sessionmaker[Session]],
) -> None:
    engine, sessions = db
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, stmt, *_a: seen.append(stmt))
    codes = Prepared(select(things.c.code))
    with transaction(sessions) as s:
        codes.all(s)
    assert seen == [codes._plans[engine.dialect].sql]

    async def on_the_loop() -> None:
        with transaction(sessions) as s:
            codes.all(s)

    # The tests run with RENKEI_EVENT_LOOP_IO=error (tests/conftest.py).
    with pytest.raises(EventLoopIOError, match="database call on the event loop"):
        asyncio.run(on_the_loop())


def test_wrong_values_and_unsupported_statements_are_refused(
    db: tuple[Engine, sessionmaker[Session]],
) -> None:
    _, sessions = db
    add = Prepared(insert(things), KEYS)
    with transaction(sessions) as s:
        with pytest.raises(ValueError, match="expected the values"):
            add.run(s, {**_row("x"), "extra": 1})
        with pytest.raises(ValueError, match="expected the values"):
            add.run(s, {"code": "x"})
        with pytest.raises(NotImplementedError, match="IN list"):
            Prepared(
                select(things.c.id).where(things.c.code.in_(bindparam("codes", expanding=True))),
                ["codes"],
            ).all(s, {"codes": ["a"]})
        with pytest.raises(ValueError, match="no value for bind parameter 'code'"):
            Prepared(select(things.c.id).where(things.c.code == bindparam("code"))).all(s)
    with pytest.raises(TypeError, match="Core statements"):
        Prepared(select(Pseudonym.pseudonym))


def test_mappings_name_the_columns_as_core_does(db: tuple[Engine, sessionmaker[Session]]) -> None:
    _, sessions = db
    add = Prepared(insert(things), KEYS)
    by_flag = Prepared(
        select(things.c.code, things.c.at, things.c.doc)
        .where(things.c.flag == bindparam("flag"))
        .order_by(things.c.code),
        ["flag"],
    )
    with transaction(sessions) as s:
        add.run(s, _row("m1"))
        add.run(s, _row("m2", doc=None))
        core = [
            dict(r)
            for r in s.execute(
                select(things.c.code, things.c.at, things.c.doc).order_by(things.c.code)
            ).mappings()
        ]
        assert by_flag.mappings(s, {"flag": True}) == core
        assert by_flag.first_mapping(s, {"flag": True}) == core[0]
        assert list(core[0]) == ["code", "at", "doc"]
        assert by_flag.mappings(s, {"flag": False}) == []
        assert by_flag.first_mapping(s, {"flag": False}) is None
