"""The import ledger: begin, advance in the batch's transaction, finish, resume, refuse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, func, insert, select

from renkei.core import bulk, imports
from renkei.core.db import BigId, make_engine, make_sessionmaker, transaction
from renkei.core.errors import Problem

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


def _db(db_url: str) -> tuple[Table, Table, Table, object]:
    md = MetaData()
    ledger = imports.import_tables(md)
    rows = Table("rows", md, Column("n", Integer, primary_key=True, autoincrement=False))
    serials = Table("serials", md, Column("id", BigId, primary_key=True, autoincrement=True), Column("x", Integer))
    engine = make_engine(db_url)
    md.create_all(engine)
    return ledger, rows, serials, engine


def test_begin_advance_finish_resume_and_refuse(db_url: str) -> None:
    ledger, rows, _, engine = _db(db_url)
    sessions = make_sessionmaker(engine)  # type: ignore[arg-type]
    args = {"kind": "residents", "source": "a.jsonl", "digest": "d" * 64, "actor": "cli:test"}
    with transaction(sessions) as s:
        run = imports.begin(s, ledger, now=T0, **args)
    assert (run.rows_read, run.status, run.resumed) == (0, "running", False)
    with transaction(sessions) as s:
        bulk.insert_rows(s, rows, [{"n": 1}, {"n": 2}])
        run = imports.advance(s, ledger, run, read=2, applied=2, now=T0)
    # A batch that fails rolls back with its ledger update.
    with pytest.raises(RuntimeError), transaction(sessions) as s:
        bulk.insert_rows(s, rows, [{"n": 3}])
        imports.advance(s, ledger, run, read=1, applied=1, now=T0)
        raise RuntimeError("killed")
    with transaction(sessions) as s:
        resumed = imports.begin(s, ledger, now=T0 + timedelta(minutes=1), **args)
        assert s.scalar(select(func.count()).select_from(rows)) == 2
    assert resumed.resumed and resumed.id == run.id and resumed.rows_read == 2 and resumed.batches == 1
    # A second process still holding the old count cannot advance it.
    with pytest.raises(Problem) as conflict, transaction(sessions) as s:
        imports.advance(s, ledger, replace_read(run, 0), read=1, applied=1, now=T0)
    assert conflict.value.code == "import_conflict"
    with transaction(sessions) as s:
        imports.finish(s, ledger, resumed, T0 + timedelta(minutes=2))
    with pytest.raises(Problem) as done, transaction(sessions) as s:
        imports.begin(s, ledger, now=T0, **args)
    assert done.value.code == "import_finished" and "取込済み" in done.value.title and "--force" in done.value.title
    with transaction(sessions) as s:
        again = imports.begin(s, ledger, now=T0, force=True, **args)
    assert again.id != run.id and again.rows_read == 0 and not again.resumed
    # Another kind of the same file is another import.
    with transaction(sessions) as s:
        other = imports.begin(s, ledger, now=T0, **{**args, "kind": "pairs"})
    assert other.id not in (run.id, again.id)
    engine.dispose()  # type: ignore[attr-defined]


def replace_read(run: imports.ImportRun, n: int) -> imports.ImportRun:
    from dataclasses import replace

    return replace(run, rows_read=n)


def test_issue_ids_in_order_and_without_gaps(db_url: str) -> None:
    _, _, serials, engine = _db(db_url)
    sessions = make_sessionmaker(engine)  # type: ignore[arg-type]
    with transaction(sessions) as s:
        first = bulk.issue_ids(s, serials, [{"x": i} for i in range(2500)])
    assert first == list(range(1, 2501))
    with transaction(sessions) as s:
        s.execute(insert(serials).values(x=-1))  # a single insert continues the sequence
        second = bulk.issue_ids(s, serials, [{"x": i} for i in range(3)])
        by_id = dict(s.execute(select(serials.c.id, serials.c.x)).all())
    assert second == [2502, 2503, 2504] and [by_id[i] for i in second] == [0, 1, 2]
    assert bulk.issue_ids(sessions(), serials, []) == []
    engine.dispose()  # type: ignore[attr-defined]


def test_insert_rows_binds_values_as_statements_do(db_url: str) -> None:
    """Dates, aware datetimes (stored as UTC), bytes, NULL and JSON come back as written,
    on SQLite's prepared executemany and PostgreSQL's COPY alike; a naive datetime is refused."""
    from datetime import date, timezone

    from sqlalchemy import JSON, Date, LargeBinary, String

    from renkei.core.db import UtcDateTime

    md = MetaData()
    t = Table(
        "typed", md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("d", Date), Column("at", UtcDateTime()), Column("b", LargeBinary, nullable=True),
        Column("s", String(20), nullable=True), Column("j", JSON, nullable=True),
    )  # fmt: skip
    engine = make_engine(db_url)
    md.create_all(engine)
    sessions = make_sessionmaker(engine)
    tokyo = timezone(timedelta(hours=9))
    rows = [
        {"id": i, "d": date(2000, 1, 1 + i % 3), "at": T0.astimezone(tokyo), "b": bytes([i, 0, 255]) if i % 2 else None,
         "s": "氏名\t\\,\"" if i == 1 else None, "j": {"k": [i]}}
        for i in range(7)
    ]  # fmt: skip
    with transaction(sessions) as s:
        assert bulk.insert_rows(s, t, rows) == 7
    with engine.connect() as conn:
        got = [dict(r._mapping) for r in conn.execute(select(t).order_by(t.c.id))]
    assert got == [{**r, "at": T0} for r in rows]
    with pytest.raises(Exception, match="naive"), transaction(sessions) as s:
        bulk.insert_rows(s, t, [{**rows[0], "id": 99, "at": datetime(2026, 1, 1)}])
    engine.dispose()

