"""Units of work on a node's database threads, committed in groups on SQLite.

A unit of work is ``fn(session) -> value``: its reads and writes in one transaction,
never ending that transaction itself (no ``commit``/``rollback``). `UnitRunner.run`
runs it off the event loop and returns its value once its writes are committed, or
raises what it raised (nothing of it committed) or what the commit raised.

PostgreSQL: each unit is a transaction of its own, on one of the node's database threads
(each holding a pooled connection).

SQLite has one writer and the node ONE database thread. Under load, units wait there one
behind the other, and each paid its own BEGIN, COMMIT, audit head claim and thread
hand-off. So the thread takes every unit queued at that moment (at most ``max_group``)
and runs them in ONE transaction (``BEGIN IMMEDIATE``: the write lock first, so no
read snapshot goes stale before the first write), each inside its own SAVEPOINT:

- a unit that raises is rolled back to its savepoint — its writes (an audit entry and
  the head row's claim included) vanish, its neighbours' stay — and its caller gets the
  exception after the group is settled;
- the group commits once; then every caller gets its value;
- if the COMMIT (or anything outside the units) fails, every caller of the group gets
  that error: nothing is reported done that was not committed.

Units of a group see each other's writes (they are one transaction), in queue order, as
if each had committed before the next began. A group of one unit takes no savepoint.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from renkei.core.db import transaction

__all__ = ["MAX_GROUP", "UnitCommittedError", "UnitRunner", "run_group"]

T = TypeVar("T")
MAX_GROUP = 64  # units per transaction: bounds what one failed COMMIT takes with it
_RUNNING = "renkei_unit_running"


class UnitCommittedError(RuntimeError):
    """A unit of a group tried to commit its session (it would commit its neighbours' too)."""


@dataclass
class _Outcome:
    ok: bool
    value: Any  # the unit's value, or the exception for its caller


def _refuse_commit_inside_unit(conn: Any) -> None:
    """Engine ``commit`` event (the real COMMIT, not a savepoint's release)."""
    if conn.info.get(_RUNNING):
        raise UnitCommittedError("a unit of work must not commit its session (it is one of a group)")


def run_group(sessions: sessionmaker[Session], fns: list[Callable[[Session], Any]]) -> list[_Outcome]:
    """``fns`` in this thread in ONE transaction, each in its own savepoint (see the
    module docstring); one outcome per unit, in order. Raises what fails outside the
    units (the BEGIN, a savepoint's release, the COMMIT): then nothing was committed."""
    session = sessions()
    info: dict[Any, Any] = {}
    try:
        conn = session.connection()
        info = conn.info  # the pooled connection's: kept past a rollback that ends ``conn``
        raw = conn.connection.driver_connection if conn.dialect.name == "sqlite" else None
        if raw is not None and not raw.in_transaction:
            # pysqlite begins only before its first INSERT/UPDATE/DELETE: a SAVEPOINT before
            # that would open (and its RELEASE commit) a transaction of its own. Sent to the
            # driver as is, like the savepoints (`renkei.core.db._plain_savepoints`).
            raw.execute("BEGIN IMMEDIATE")
        alone = len(fns) == 1  # no neighbours: no savepoint
        outcomes: list[_Outcome] = []
        for fn in fns:
            savepoint = None if alone else session.begin_nested()
            info[_RUNNING] = True
            try:
                value = fn(session)
            except Exception as exc:
                info[_RUNNING] = False
                if savepoint is None:
                    session.rollback()
                    return [_Outcome(False, exc)]
                try:
                    savepoint.rollback()
                except Exception:
                    # The unit broke the group's transaction (e.g. tried to commit it):
                    # nothing of the group stands, and every caller learns why.
                    raise exc from None
                outcomes.append(_Outcome(False, exc))
            else:
                info[_RUNNING] = False
                if savepoint is not None:
                    savepoint.commit()
                outcomes.append(_Outcome(True, value))
            if not alone:
                # The next unit starts with an empty identity map, as in a session of its own.
                session.expunge_all()
        if raw is not None and not raw.in_transaction:
            # SQLite rolls the whole transaction back on some errors (disk full, I/O): a
            # unit that caught one must not make the group look committed.
            raise RuntimeError("the group's transaction ended before its commit")
        session.commit()
        return outcomes
    except BaseException:
        session.rollback()
        raise
    finally:
        info.pop(_RUNNING, None)
        session.close()


def _run_one(sessions: sessionmaker[Session], fn: Callable[[Session], T]) -> T:
    with transaction(sessions) as s:
        return fn(s)


@dataclass
class _Queued:
    fn: Callable[[Session], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


def _settle(pairs: list[tuple[asyncio.Future[Any], _Outcome]]) -> None:
    """On the waiting loop: hand each caller its value or exception (unless it gave up)."""
    for future, outcome in pairs:
        if future.done():
            continue
        if outcome.ok:
            future.set_result(outcome.value)
        else:
            future.set_exception(outcome.value)


class UnitRunner:
    """Runs units of work on ``executor`` (the node's database threads): when ``grouped``
    (SQLite), one group at a time, one transaction per group; else one transaction per
    unit, as many at once as the executor has threads."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        executor: Executor,
        *,
        grouped: bool,
        max_group: int = MAX_GROUP,
    ) -> None:
        if max_group < 1:
            raise ValueError("max_group must be at least 1")
        self.sessions = sessions
        self.executor = executor
        self.grouped = grouped
        self.max_group = max_group
        self._queue: deque[_Queued] = deque()
        self._lock = threading.Lock()
        self._draining = False
        engine = sessions.kw.get("bind")
        if grouped and engine is not None and not event.contains(engine, "commit", _refuse_commit_inside_unit):
            event.listen(engine, "commit", _refuse_commit_inside_unit)

    async def run(self, fn: Callable[[Session], T]) -> T:
        """``fn(session)`` as a unit of work; its value once committed."""
        loop = asyncio.get_running_loop()
        if not self.grouped:
            return await loop.run_in_executor(self.executor, _run_one, self.sessions, fn)
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            self._queue.append(_Queued(fn, future, loop))
            start, self._draining = not self._draining, True
        if start:
            self._submit()
        return await future

    def _submit(self) -> None:
        try:
            self.executor.submit(self._drain)
        except BaseException as exc:  # the executor is shut down: nobody will run the queue
            with self._lock:
                queued = list(self._queue)
                self._queue.clear()
                self._draining = False
            self._deliver(queued, [_Outcome(False, exc)] * len(queued))
            if not isinstance(exc, Exception):
                raise

    def _drain(self) -> None:
        """On the database thread: one group of what is queued now. More queued meanwhile
        goes behind whatever else waits for the thread (e.g. `NodeRuntime.run_db`)."""
        with self._lock:
            group = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_group))]
        fatal: BaseException | None = None
        try:
            outcomes = run_group(self.sessions, [q.fn for q in group])
        except BaseException as exc:
            outcomes = [_Outcome(False, exc)] * len(group)
            fatal = None if isinstance(exc, Exception) else exc
        self._deliver(group, outcomes)
        with self._lock:
            more = bool(self._queue)
            self._draining = more
        if more:
            self._submit()
        if fatal is not None:
            raise fatal

    @staticmethod
    def _deliver(group: list[_Queued], outcomes: list[_Outcome]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], _Outcome]]] = {}
        for queued, outcome in zip(group, outcomes, strict=True):
            by_loop.setdefault(queued.loop, []).append((queued.future, outcome))
        for loop, pairs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, pairs)
            except RuntimeError:  # that loop is closed: its callers are gone
                pass
