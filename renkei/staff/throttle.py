"""Sign-in throttling: increasing delays per account, per source address and per both.

The OWASP approach instead of a lockout that anyone can trigger: a failed sign-in
counts against three keys —

- ``pair``: this account from this source address (a guesser at one terminal),
- ``source``: this source address, whatever account (password spraying),
- ``account``: this account, from anywhere (guessing from many addresses);

— and once a key has ``after`` failures in its window, each further failure refuses
the key's next attempts for 2, 4, 8 … seconds, at most ``max_delay_seconds``. An
attempt made while a key is refused is not counted (so hammering does not lengthen the
delay) and the caller answers exactly as for a wrong password. The ``pair`` key trips
first, so a stranger at one address slows down themselves long before the account as a
whole; only sustained failures from several addresses reach the ``account`` threshold,
and only for as long as they go on. A success clears the ``pair`` and ``account`` keys
(not the ``source``: anyone may sign in to their own account from there); an
administrator's unlock clears every key of the account.

Keys name the account by the staff ID as presented, whether or not it exists, so
unknown and existing IDs are throttled alike (no enumeration). A presented ID that
cannot be a staff ID (wrong characters, or a digit run that may be an individual
number) is never stored: it counts against the source only.

All state is one row per key in the node's database (``auth_throttle``), so every
process of a node sees the same counts; a counter is bumped with one
``INSERT … ON CONFLICT DO UPDATE … RETURNING`` statement, exact under concurrency on
PostgreSQL and SQLite. Counting windows are fixed, starting at a key's first failure;
rows whose window and delay are over are pruned as failures are recorded.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    case,
    delete,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from renkei.core.db import UtcDateTime

__all__ = [
    "ThrottleKey",
    "ThrottlePolicy",
    "blocked_until",
    "clear",
    "forget_account",
    "keys_for",
    "prune",
    "record_failure",
    "throttle_table",
]

_STAFF_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_DIGIT_RUN: Final = re.compile(r"[0-9]{12,}")
_MAX_SOURCE: Final = 100


def throttle_table(metadata: MetaData) -> Table:
    """The counters, one row per key (``account:<id>``, ``source:<addr>``, ``pair:<id>|<addr>``)."""
    return Table(
        "auth_throttle",
        metadata,
        Column("key", String(200), primary_key=True),
        Column("failures", Integer, nullable=False),
        Column("window_start", UtcDateTime(), nullable=False, index=True),
        Column("blocked_until", UtcDateTime(), nullable=True),
    )


@dataclass(frozen=True)
class ThrottlePolicy:
    """Failures allowed per key and window before the delays start, and the longest delay."""

    pair_after: int = 5
    source_after: int = 20
    account_after: int = 50
    window_minutes: int = 60
    max_delay_seconds: int = 900

    def __post_init__(self) -> None:
        if min(self.pair_after, self.source_after, self.account_after) < 1:
            raise ValueError("throttle thresholds must be at least 1")
        if self.window_minutes < 1 or self.max_delay_seconds < 1:
            raise ValueError("throttle window and delay must be at least 1")

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.window_minutes)

    def delay(self, failures: int, after: int) -> timedelta | None:
        """How long a key with ``failures`` refuses attempts (None: not yet)."""
        if failures < after:
            return None
        exponent = min(failures - after + 1, 30)  # 2**30 s is far beyond any cap
        return timedelta(seconds=min(self.max_delay_seconds, 2**exponent))


@dataclass(frozen=True)
class ThrottleKey:
    key: str
    after: int


def _account(staff_id: str | None) -> str | None:
    if not staff_id or not _STAFF_ID.fullmatch(staff_id) or _DIGIT_RUN.search(staff_id):
        return None
    return staff_id


def _source(source: str | None) -> str | None:
    if not source:
        return None
    if len(source) > _MAX_SOURCE or not source.isprintable():
        return "sha256:" + hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
    return source


def keys_for(
    staff_id: str | None, source: str | None, policy: ThrottlePolicy
) -> list[ThrottleKey]:
    """The keys a sign-in by ``staff_id`` (normalized, as presented) from ``source`` counts on."""
    account, src = _account(staff_id), _source(source)
    keys: list[ThrottleKey] = []
    if account is not None:
        keys.append(ThrottleKey(f"account:{account}", policy.account_after))
    if src is not None:
        keys.append(ThrottleKey(f"source:{src}", policy.source_after))
    if account is not None and src is not None:
        keys.append(ThrottleKey(f"pair:{account}|{src}", policy.pair_after))
    return keys


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def blocked_until(
    session: Session, table: Table, keys: list[ThrottleKey], now: datetime
) -> datetime | None:
    """The latest time until which one of ``keys`` refuses attempts, None if none does."""
    now = _aware(now)
    if not keys:
        return None
    until = session.execute(
        select(table.c.blocked_until).where(
            table.c.key.in_([k.key for k in keys]), table.c.blocked_until > now
        )
    ).scalars()
    found = [u for u in until if u is not None]
    return max(found) if found else None


def _insert(session: Session) -> Any:
    name = session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    raise NotImplementedError(f"throttle: no atomic counter for {name}")


def record_failure(
    session: Session, table: Table, keys: list[ThrottleKey], policy: ThrottlePolicy, now: datetime
) -> datetime | None:
    """Count one failed attempt on every key; returns the longest delay it started, if any.

    Never commits: the caller commits even though the sign-in is refused.
    """
    now = _aware(now)
    t = table
    window_over = t.c.window_start <= now - policy.window
    started = literal(now, UtcDateTime())  # bound as the column is (UTC on both engines)
    longest: datetime | None = None
    for k in keys:
        stmt = (
            _insert(session)(t)
            .values(key=k.key, failures=1, window_start=now, blocked_until=None)
            .on_conflict_do_update(
                index_elements=[t.c.key],
                set_={
                    # A new window starts at the first failure after the last one ended.
                    "failures": case((window_over, 1), else_=t.c.failures + 1),
                    "window_start": case((window_over, started), else_=t.c.window_start),
                },
            )
            .returning(t.c.failures)
        )
        failures = int(session.execute(stmt).scalar_one())
        delay = policy.delay(failures, k.after)
        if delay is not None:
            until = now + delay
            session.execute(update(t).where(t.c.key == k.key).values(blocked_until=until))
            longest = until if longest is None or until > longest else longest
    prune(session, table, policy, now)
    session.flush()
    return longest


def clear(session: Session, table: Table, keys: list[ThrottleKey]) -> None:
    """Forget ``keys`` (a successful sign-in clears its account's own keys)."""
    wanted = [k.key for k in keys if not k.key.startswith("source:")]
    if wanted:
        session.execute(delete(table).where(table.c.key.in_(wanted)))


def forget_account(session: Session, table: Table, staff_id: str) -> None:
    """Clear every key of one account, from every source (an administrator's unlock)."""
    session.execute(
        delete(table).where(
            or_(
                table.c.key == f"account:{staff_id}",
                table.c.key.startswith(f"pair:{staff_id}|", autoescape=True),
            )
        )
    )


def prune(session: Session, table: Table, policy: ThrottlePolicy, now: datetime) -> int:
    """Delete rows whose window and delay are both over; returns how many."""
    now = _aware(now)
    t = table
    result = session.execute(
        delete(t).where(
            t.c.window_start <= now - policy.window,
            or_(t.c.blocked_until.is_(None), t.c.blocked_until <= now),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
