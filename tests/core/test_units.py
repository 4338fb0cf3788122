"""Units of work: grouped into one transaction on SQLite (each in a savepoint), one
transaction each otherwise — a failing unit leaves no trace, its neighbours commit, the
audit chain stays whole, and a failed COMMIT reaches every caller of the group."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from renkei.core.audit.log import AuditEvent, AuditLog, AuditTables, audit_tables, verify
from renkei.core.db import make_engine, make_sessionmaker
from renkei.core.units import UnitCommittedError, UnitRunner
from tests.core.conftest import Keys


@dataclass
class Env:
    engine: Engine
    sessions: sessionmaker[Session]
    things: Table
    children: Table
    audit: AuditTables
    log: AuditLog
    keys: Keys
    runner: UnitRunner
    executor: ThreadPoolExecutor
    commits: list[int]

    def names(self) -> list[str]:
        with self.sessions() as s:
            return list(s.scalars(select(self.things.c.name).order_by(self.things.c.id)))

    def refs(self) -> list[str]:
        """The audit entries' refs (the things' ids), in chain order."""
        e = self.audit.entries
        with self.sessions() as s:
            return [str(x) for x in s.scalars(select(e.c.ref).order_by(e.c.seq))]

    def seqs(self) -> list[int]:
        e = self.audit.entries
        with self.sessions() as s:
            return [int(x) for x in s.scalars(select(e.c.seq).order_by(e.c.seq))]

    def count(self, table: Table) -> int:
        with self.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(table)) or 0)

    def another_thread_writes(self) -> None:
        """A transaction on another thread goes through: the group left no lock held
        (`serialize_transactions`, re-entrant, would not show it on the same thread)."""

        def write() -> None:
            with self.sessions() as s:
                s.execute(insert(self.things).values(id=1000, name="other thread"))
                s.commit()

        worker = threading.Thread(target=write)
        worker.start()
        worker.join(timeout=20)
        assert not worker.is_alive(), "another thread waits for the database"
        assert self.names()[-1] == "other thread"

    def verify_chain(self) -> None:
        with self.sessions() as s:
            report = verify(s, self.audit, self.keys.public.get)
        assert report.ok, report

    def together(self, *fns: Callable[[Session], Any]) -> list[Any]:
        """Run ``fns`` as units queued at the same moment (the database thread is held
        until all are queued); each caller's value, or the exception it got."""

        async def main() -> list[Any]:
            gate = threading.Event()
            held = self.executor.submit(gate.wait)
            tasks = [asyncio.ensure_future(self.runner.run(fn)) for fn in fns]
            await asyncio.sleep(0)  # every task queues its unit
            gate.set()
            held.result()
            return list(await asyncio.gather(*tasks, return_exceptions=True))

        return run(main())


def run(coro: Coroutine[Any, Any, list[Any]]) -> list[Any]:
    return asyncio.run(coro)


@pytest.fixture(params=["grouped", "alone"])
def env(request: pytest.FixtureRequest, db_url: str, keys: Keys) -> Iterator[Env]:
    """``grouped``: SQLite's way (on PostgreSQL too: savepoints behave alike); ``alone``:
    PostgreSQL's way, one transaction per unit."""
    engine = make_engine(db_url)
    md = MetaData()
    things = Table("things", md, Column("id", Integer, primary_key=True), Column("name", String(40), nullable=False))
    # Checked at COMMIT, not at the statement: a unit can make its group's COMMIT fail.
    children = Table(
        "children",
        md,
        Column("id", Integer, primary_key=True),
        Column("thing", Integer, ForeignKey("things.id", deferrable=True, initially="DEFERRED"), nullable=False),
    )
    tables = audit_tables(md)
    md.create_all(engine)
    commits: list[int] = []
    event.listen(engine, "commit", lambda _conn: commits.append(1))
    executor = ThreadPoolExecutor(1)
    sessions = make_sessionmaker(engine)
    log = AuditLog(tables, keys.signing, checkpoint_every=3)
    runner = UnitRunner(sessions, executor, grouped=request.param == "grouped")
    yield Env(engine, sessions, things, children, tables, log, keys, runner, executor, commits)
    executor.shutdown(wait=True)
    engine.dispose()


def add(env: Env, i: int, name: str | None = None) -> Callable[[Session], int]:
    """A unit: a row and its audit entry (ref ``i``); its value is ``i``. (In a group the
    entry's seq is known only when the group is written: appends are deferred.)"""

    def unit(s: Session) -> int:
        s.execute(insert(env.things).values(id=i, name=name or f"thing-{i}"))
        env.log.append(s, AuditEvent(actor="tester", action="thing.add", outcome="ok", ref=str(i)))
        return i

    return unit


class Boom(Exception):
    pass


def failing(env: Env, i: int) -> Callable[[Session], int]:
    """A unit that writes a row and its audit entry (a checkpoint too, now and then), then fails."""

    def unit(s: Session) -> int:
        add(env, i)(s)
        raise Boom(f"unit {i}")

    return unit


def test_units_queued_together_commit_together(env: Env) -> None:
    env.commits.clear()
    results = env.together(*(add(env, i) for i in range(10)))
    assert results == list(range(10))
    assert env.names() == [f"thing-{i}" for i in range(10)]
    assert env.refs() == [str(i) for i in range(10)] and env.seqs() == list(range(1, 11))
    assert len(env.commits) == (1 if env.runner.grouped else 10)
    env.verify_chain()


def test_units_see_the_writes_of_those_before_them(env: Env) -> None:
    def count(s: Session) -> int:
        return int(s.scalar(select(func.count()).select_from(env.things)) or 0)

    results = env.together(add(env, 1), count, add(env, 2), count)
    assert results == [1, 1, 2, 2]


def test_a_failing_unit_leaves_no_trace_and_its_neighbours_commit(env: Env) -> None:
    env.together(add(env, 0))  # one entry before
    results = env.together(add(env, 1), add(env, 2), failing(env, 3), add(env, 4), failing(env, 5), add(env, 6))
    assert isinstance(results[2], Boom) and str(results[2]) == "unit 3"
    assert isinstance(results[4], Boom) and str(results[4]) == "unit 5"
    assert [results[i] for i in (0, 1, 3, 5)] == [1, 2, 4, 6]
    assert env.names() == ["thing-0", "thing-1", "thing-2", "thing-4", "thing-6"]
    # The failed units' entries are gone without a gap: the next unit took their seq.
    assert env.refs() == ["0", "1", "2", "4", "6"] and env.seqs() == [1, 2, 3, 4, 5]
    # checkpoint_every=3: unit 3's entry would have been seq 4 (no checkpoint), unit 5's
    # seq 5 … the one checkpoint kept is seq 3's.
    with env.sessions() as s:
        cps = [int(x) for x in s.scalars(select(env.audit.checkpoints.c.seq))]
    assert cps == [3]
    env.verify_chain()
    # And the chain goes on from there.
    assert env.together(add(env, 7)) == [7] and env.seqs()[-1] == 6
    env.verify_chain()


def test_a_failed_unit_that_had_signed_a_checkpoint_leaves_none(env: Env) -> None:
    env.together(add(env, 1), add(env, 2))
    results = env.together(failing(env, 3), add(env, 4))  # the failing one takes seq 3: a checkpoint
    assert isinstance(results[0], Boom) and results[1] == 4 and env.refs() == ["1", "2", "4"]
    with env.sessions() as s:
        cps = [int(x) for x in s.scalars(select(env.audit.checkpoints.c.seq))]
    assert cps == [3]  # signed again by unit 4, over its own entry
    assert env.names() == ["thing-1", "thing-2", "thing-4"]
    env.verify_chain()


def test_a_unit_failing_on_the_database_rolls_back_to_its_savepoint(env: Env) -> None:
    results = env.together(add(env, 1), add(env, 1, "again"), add(env, 2))
    assert isinstance(results[1], IntegrityError)  # the same primary key
    assert results[0] == 1 and results[2] == 2
    assert env.names() == ["thing-1", "thing-2"]
    env.verify_chain()
    env.another_thread_writes()


def test_a_failed_commit_reaches_every_unit_of_the_group(env: Env) -> None:
    env.together(add(env, 0))

    def dangling(s: Session) -> int:
        s.execute(insert(env.children).values(id=1, thing=999))  # refused only at COMMIT
        return -1

    results = env.together(add(env, 1), add(env, 2), dangling, add(env, 3))
    if env.runner.grouped:
        assert all(isinstance(r, IntegrityError) for r in results), results
        assert env.names() == ["thing-0"]
        assert env.seqs() == [1]
    else:
        assert isinstance(results[2], IntegrityError)
        assert [results[i] for i in (0, 1, 3)] == [1, 2, 3]
        assert env.names() == ["thing-0", "thing-1", "thing-2", "thing-3"]
    assert env.count(env.children) == 0
    env.verify_chain()
    # Nothing held over: the next units run and commit, and so does another thread.
    assert env.together(add(env, 10), add(env, 11)) == [10, 11] and env.refs()[-2:] == ["10", "11"]
    env.verify_chain()
    env.another_thread_writes()


@pytest.mark.parametrize("env", ["grouped"], indirect=True)  # alone, its transaction is its own
def test_a_unit_may_not_commit_its_group(env: Env) -> None:
    def commits(s: Session) -> int:
        add(env, 2)(s)
        s.commit()
        return 0

    results = env.together(add(env, 1), commits, add(env, 3))
    assert all(isinstance(r, Exception) for r in results), results
    assert any(isinstance(r, UnitCommittedError) for r in results)
    assert env.names() == []
    assert env.seqs() == []
    assert env.together(add(env, 4)) == [4] and env.seqs() == [1]  # the connection's flag did not stay set
    env.another_thread_writes()


def test_more_units_than_a_group_takes(env: Env) -> None:
    env.runner.max_group = 4
    env.commits.clear()
    results = env.together(*(add(env, i) for i in range(10)))
    assert results == list(range(10)) and env.seqs() == list(range(1, 11))
    assert len(env.commits) == (3 if env.runner.grouped else 10)  # 4 + 4 + 2
    env.verify_chain()


def test_a_group_of_one_failing_unit(env: Env) -> None:
    results = env.together(failing(env, 1))
    assert isinstance(results[0], Boom)
    assert env.names() == [] and env.seqs() == []
    assert env.together(add(env, 2)) == [2] and env.seqs() == [1]
    env.verify_chain()


def test_units_from_many_tasks_under_load(env: Env) -> None:
    """Units queued while a group runs go in a later group; every caller gets its own outcome."""

    async def main() -> list[Any]:
        async def one(i: int) -> Any:
            await asyncio.sleep((i % 7) * 0.001)
            unit = failing(env, i) if i % 5 == 0 else add(env, i)
            try:
                return await env.runner.run(unit)
            except Boom as exc:
                return exc

        return list(await asyncio.gather(*(one(i) for i in range(60))))

    results = run(main())
    kept = [i for i in range(60) if i % 5 != 0]
    assert all(isinstance(results[i], Boom) for i in range(0, 60, 5))
    assert [results[i] for i in kept] == kept
    assert sorted(env.refs(), key=int) == [str(i) for i in kept] and env.seqs() == list(range(1, len(kept) + 1))
    assert env.names() == [f"thing-{i}" for i in kept]
    env.verify_chain()
