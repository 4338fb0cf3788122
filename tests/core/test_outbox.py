"""The outbox loses nothing: failed deliveries are retried with backoff, repeats count as delivered."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import MetaData, select

from renkei.core.db import kernel_tables, make_engine, make_sessionmaker, transaction
from renkei.core.errors import Problem
from renkei.core.wire.client import PeerUnavailable
from renkei.core.wire.outbox import backoff, deliver_due, enqueue, pending


class FlakyPeer:
    """Fails with the given problems first, then accepts; records what it received."""

    def __init__(self, failures: list[Problem]) -> None:
        self.failures = failures
        self.received: list[tuple[str, str, dict[str, Any], str | None]] = []

    async def call(self, url: str, aud: str, typ: str, body: dict[str, Any], *, message_id: str | None = None) -> Any:
        if self.failures:
            raise self.failures.pop(0)
        self.received.append((url, typ, body, message_id))
        return SimpleNamespace(typ=f"{typ}.answer", body={"echo": body})


def _runtime(db_url: str, peer: FlakyPeer, clock: list[datetime]) -> SimpleNamespace:
    md = MetaData()
    kernel = kernel_tables(md)
    engine = make_engine(db_url)
    md.create_all(engine)
    async def run_db(fn: Any, *args: Any) -> Any:  # the node's database thread, as NodeRuntime does
        return await asyncio.to_thread(fn, *args)

    return SimpleNamespace(
        kernel=kernel,
        sessions=make_sessionmaker(engine),
        peer=peer,
        clock=lambda: clock[0],
        answer_handlers={},
        run_db=run_db,
    )


def test_retry_until_delivered_then_not_again(db_url: str) -> None:
    clock = [datetime(2026, 4, 1, tzinfo=UTC)]
    peer = FlakyPeer([PeerUnavailable("https://x", "ConnectionRefusedError"), PeerUnavailable("https://x", "timeout")])
    rt = _runtime(db_url, peer, clock)
    with transaction(rt.sessions) as s:
        mid = enqueue(s, rt.kernel, destination="https://x/v1/a", audience="1", typ="t", body={"k": "v"}, now=clock[0])
    assert asyncio.run(deliver_due(rt)) == 0  # type: ignore[arg-type]
    # Not due again before the backoff has passed.
    assert asyncio.run(deliver_due(rt)) == 0  # type: ignore[arg-type]
    assert peer.failures, "second attempt must wait for the backoff"
    clock[0] += backoff(1) + timedelta(seconds=1)
    assert asyncio.run(deliver_due(rt)) == 0  # type: ignore[arg-type]
    clock[0] += backoff(2) + timedelta(seconds=1)
    assert asyncio.run(deliver_due(rt)) == 1  # type: ignore[arg-type]
    assert peer.received == [("https://x/v1/a", "t", {"k": "v"}, mid)]
    clock[0] += timedelta(days=1)
    assert asyncio.run(deliver_due(rt)) == 0  # type: ignore[arg-type]
    with rt.sessions() as s:
        assert pending(s, rt.kernel) == 0
        row = s.execute(select(rt.kernel.outbox)).mappings().one()
        assert row["attempts"] == 2 and row["delivered_at"] is not None


def test_replayed_answer_counts_as_delivered(db_url: str) -> None:
    clock = [datetime(2026, 4, 1, tzinfo=UTC)]
    peer = FlakyPeer([Problem(409, "replayed_message", "同じ電文が既に受信されています")])
    rt = _runtime(db_url, peer, clock)
    with transaction(rt.sessions) as s:
        enqueue(s, rt.kernel, destination="https://x", audience="1", typ="t", body={}, now=clock[0])
    assert asyncio.run(deliver_due(rt)) == 1  # type: ignore[arg-type]


def test_refused_content_is_parked_not_hammered(db_url: str) -> None:
    clock = [datetime(2026, 4, 1, tzinfo=UTC)]
    peer = FlakyPeer([Problem(422, "bad_items", "形式誤り")])
    rt = _runtime(db_url, peer, clock)
    with transaction(rt.sessions) as s:
        enqueue(s, rt.kernel, destination="https://x", audience="1", typ="t", body={}, now=clock[0])
    asyncio.run(deliver_due(rt))  # type: ignore[arg-type]
    clock[0] += timedelta(days=30)
    assert asyncio.run(deliver_due(rt)) == 0  # type: ignore[arg-type]
    with rt.sessions() as s:
        row = s.execute(select(rt.kernel.outbox)).mappings().one()
        assert row["delivered_at"] is None and "bad_items" in row["last_error"]


def test_enqueue_rolls_back_with_the_change(db_url: str) -> None:
    clock = [datetime(2026, 4, 1, tzinfo=UTC)]
    rt = _runtime(db_url, FlakyPeer([]), clock)
    try:
        with transaction(rt.sessions) as s:
            enqueue(s, rt.kernel, destination="https://x", audience="1", typ="t", body={}, now=clock[0])
            raise RuntimeError("the state change failed")
    except RuntimeError:
        pass
    with rt.sessions() as s:
        assert pending(s, rt.kernel) == 0


def test_the_answer_goes_to_its_handler_and_a_failing_handler_loses_nothing(db_url: str) -> None:
    """An answer handler (e.g. keeping the time-stamp authority's receipt) sees the peer's
    answer; if it fails, the message still counts as delivered (the peer has it)."""
    clock = [datetime(2026, 4, 1, tzinfo=UTC)]
    rt = _runtime(db_url, FlakyPeer([]), clock)
    seen: list[Any] = []

    async def keep(answer: Any) -> None:
        seen.append(answer.body)
        if len(seen) == 2:
            raise ValueError("bad receipt")

    rt.answer_handlers["t"] = keep
    with transaction(rt.sessions) as s:
        enqueue(s, rt.kernel, destination="https://x", audience="1", typ="t", body={"n": 1}, now=clock[0])
        enqueue(s, rt.kernel, destination="https://x", audience="1", typ="t", body={"n": 2}, now=clock[0])
        enqueue(s, rt.kernel, destination="https://x", audience="1", typ="other", body={"n": 3}, now=clock[0])
    assert asyncio.run(deliver_due(rt)) == 3  # type: ignore[arg-type]
    assert seen == [{"echo": {"n": 1}}, {"echo": {"n": 2}}]
    with rt.sessions() as s:
        assert pending(s, rt.kernel) == 0
