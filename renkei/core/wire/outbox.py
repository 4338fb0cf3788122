"""Transactional outbox: a message is queued in the same transaction as the change
that caused it, and a worker delivers it with retries and backoff.

Receivers deduplicate by message id; a `replayed_message` answer therefore means
the message arrived earlier and counts as delivered.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Integer, bindparam, insert, select, update
from sqlalchemy.orm import Session

from renkei.core.db import KernelTables
from renkei.core.errors import Problem
from renkei.core.sql import Prepared
from renkei.core.wire.messaging import new_message_id
from renkei.core.wire.runtime import NodeRuntime

log = structlog.get_logger("renkei.outbox")

MAX_BACKOFF_SECONDS = 300
# Errors after which retrying cannot help: the peer refused the content itself.
_FINAL_STATUSES = {400, 403, 404, 413, 415, 422}


def enqueue(
    session: Session,
    kernel: KernelTables,
    *,
    destination: str,
    audience: str,
    typ: str,
    body: dict[str, Any],
    now: datetime,
) -> str:
    message_id = new_message_id()
    session.execute(
        insert(kernel.outbox).values(
            message_id=message_id,
            destination=destination,
            audience=audience,
            typ=typ,
            body=body,
            created_at=now,
            attempts=0,
            next_attempt_at=now,
        )
    )
    return message_id


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(MAX_BACKOFF_SECONDS, 0.5 * (2 ** min(attempts, 10))))


def _due(rt: NodeRuntime, limit: int) -> list[Any]:
    t = rt.kernel.outbox
    now = rt.clock()
    due = _DUE.get(t)
    if due is None:  # every node process polls several times a second: prepared once, run lean
        q = (
            select(t)
            .where(t.c.delivered_at.is_(None), t.c.next_attempt_at <= bindparam("now", type_=t.c.next_attempt_at.type))
            .order_by(t.c.id)
            .limit(bindparam("limit", type_=Integer()))
        )
        # PostgreSQL: several processes of a node poll at once; each takes other rows.
        due = _DUE[t] = Prepared({"sqlite": q, "postgresql": q.with_for_update(skip_locked=True)}, ("now", "limit"))
    with rt.sessions() as session:
        rows = due.mappings(session, {"now": now, "limit": limit})
        session.commit()
    return rows


_DUE: dict[Any, Prepared] = {}  # by outbox table


def _settle(rt: NodeRuntime, row: Any, error: str | None, final: bool) -> None:
    """Mark a row delivered, or schedule its next attempt."""
    t = rt.kernel.outbox
    with rt.sessions() as session:
        if error is None:
            session.execute(update(t).where(t.c.id == row["id"]).values(delivered_at=rt.clock()))
        else:
            attempts = int(row["attempts"]) + 1
            next_at = rt.clock() + (timedelta(days=3650) if final else backoff(attempts))
            log.warning("outbox_retry", typ=row["typ"], attempts=attempts, error=error, final=final)
            session.execute(
                update(t)
                .where(t.c.id == row["id"])
                .values(attempts=attempts, next_attempt_at=next_at, last_error=error)
            )
        session.commit()


async def deliver_due(rt: NodeRuntime, limit: int = 50) -> int:
    """Deliver what is due; return how many were delivered. The database work runs in
    worker threads, the calls on the event loop."""
    rows = await rt.run_db(_due, rt, limit)
    delivered = 0
    for row in rows:
        error: str | None = None
        final = False
        try:
            answer = await rt.peer.call(
                row["destination"], row["audience"], row["typ"], dict(row["body"]), message_id=row["message_id"]
            )
            handler = rt.answer_handlers.get(row["typ"])
            if handler is not None:
                try:
                    await handler(answer)
                except Exception as exc:  # delivered all the same: the peer has the message
                    log.error("outbox_answer_failed", typ=row["typ"], error_type=type(exc).__name__,
                              error=str(exc)[:300])
        except Problem as exc:
            if exc.code == "replayed_message":
                error = None
            else:
                error = f"{exc.code}: {exc.detail}"[:1000]
                final = exc.status in _FINAL_STATUSES
        await rt.run_db(_settle, rt, row, error, final)
        if error is None:
            delivered += 1
    return delivered


async def run_worker(rt: NodeRuntime, stop: asyncio.Event, interval_seconds: float = 0.2) -> None:
    while not stop.is_set():
        try:
            n = await deliver_due(rt)
        except Exception as exc:  # keep the worker alive; the row stays due
            log.error("outbox_worker_error", error_type=type(exc).__name__)
            n = 0
        if n == 0:
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_seconds)
            except TimeoutError:
                pass


def pending(session: Session, kernel: KernelTables) -> int:
    t = kernel.outbox
    return len(session.execute(select(t.c.id).where(t.c.delivered_at.is_(None))).all())
