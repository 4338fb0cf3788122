"""Abnormal-traffic guard: rate limits and rules that flag or block unusual patterns.

The seed's 不正通信の検知・分析・遮断 for every node. `check` is called once per request
with who is calling — a staff member (``staff``, by staff id), a business system
(``client``, by OAuth2 client id) or a peer organization (``peer``, by org code) — and,
for an inquiry about a person, that person's id. It returns a `Decision`:

- **Rate limits** per kind (default staff 60, client 600, peer 3000 per 60 s). Fixed
  windows aligned to the epoch: the counter for ``[12:00:00, 12:01:00)`` starts at zero
  at 12:00:00. Request ``limit + 1`` inside a window is refused with a 429
  ``rate_limited`` problem and ``retry_after`` (seconds to the window's end); the first
  refusal in a window also records a ``rate_limit`` alert.
- **Rules**, each with an action ``flag`` (alert, request allowed) or ``block`` (alert,
  request refused with a 403 ``blocked_by_rule`` problem naming the rule):

  ``distinct_persons``
      more than ``max`` unrelated persons looked up by one subject within the last
      ``seconds`` (a sliding window over the lookups table; default > 50 per hour,
      staff only). Persons sharing a grouping key (household, case …) given as
      ``group`` to `check`, or by ``GuardPolicy.group_of``, count once. A pairwise
      ``related(a, b)`` predicate is not offered: it would need earlier lookups' person
      ids in clear, which this module never stores.
  ``off_hours``
      a request outside working hours in Asia/Tokyo (default weekdays 08:00–20:00,
      holidays given as dates; staff only).
  ``peer_burst``
      more than ``max`` requests from one peer within a fixed window of ``seconds``
      (default 300 per 10 s).

  A rule that keeps firing records one alert per subject per window (per hour for
  ``off_hours``), so a flood cannot bury the alerts list; a ``block`` rule refuses every
  request while it fires.

All state is in the node's database, so every process of a node sees the same counts.
Counters are single rows bumped with ``INSERT … ON CONFLICT DO UPDATE … RETURNING``,
exact under concurrency on PostgreSQL and SQLite. Counters and lookups count attempts,
refused ones included (apart from the lookups of rate-limited requests), so retrying
does not get round a limit.

Transactions: `check` runs in the caller's session and never commits. A refusal must
be committed too, or its counts and alerts vanish: do not raise inside the unit of work
that called `check`; commit, then answer with ``decision.problem``. On PostgreSQL the
counter rows stay locked until the transaction ends, serializing one subject's
requests, so call `check` in its own short transaction before the real work::

    with transaction(sessions) as s:
        decision = guard.check(s, tables, policy, kind="staff", subject=staff_id,
                               person=atena_no, now=utcnow(),
                               audit=lambda a: log.append(s, guard.alert_event(a)))
    decision.raise_for_refusal()

Personal data: the lookups table keeps HMAC-SHA256 digests of person ids and grouping
keys under a random key held in this node's database (``guard_secret``), never the ids
themselves; rows older than the rule's window are pruned as the subject makes new
requests, and `prune` clears what idle subjects left behind. Alert details hold counts,
limits and times only.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final, Literal, cast, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from renkei.core import ids
from renkei.core.audit.log import AuditEvent
from renkei.core.config import ConfigError
from renkei.core.db import BigId, UtcDateTime
from renkei.core.errors import Problem
from renkei.core.sql import Prepared

__all__ = [
    "RULE_LABELS",
    "Action",
    "Alert",
    "Decision",
    "DistinctPersons",
    "GuardPolicy",
    "GuardTables",
    "Kind",
    "PeerBurst",
    "RateLimit",
    "WorkingHours",
    "acknowledge",
    "alert_event",
    "check",
    "guard_tables",
    "list_alerts",
    "prune",
    "record_alert",
]

Kind = Literal["staff", "client", "peer"]
Action = Literal["flag", "block"]
KINDS: Final[tuple[str, ...]] = get_args(Kind)
ACTIONS: Final[tuple[str, ...]] = get_args(Action)

RULE_LABELS: Final[dict[str, str]] = {
    "rate_limit": "要求回数の上限",
    "distinct_persons": "短時間に多数の無関係な個人を照会",
    "off_hours": "業務時間外の照会",
    "peer_burst": "連携先からの集中的な要求",
    # Raised by the time-stamp authority node on a head that moves back or forks.
    "head_regression": "監査ログの後退（末尾の削除・消去の疑い）",
    "head_conflict": "監査ログの分岐（記録の書き換えの疑い）",
}

RATE_LIMITED_TITLE: Final = "短時間に要求が集中しています。しばらく待ってから再度実行してください。"

_SUBJECT_MAX: Final = 128
_OFF_HOURS_ALERT_SECONDS: Final = 3600


# --- tables ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GuardTables:
    counters: Table
    alerts: Table
    lookups: Table
    secret: Table


def guard_tables(metadata: MetaData) -> GuardTables:
    """The guard's tables, added to a node's own metadata (like `kernel_tables`)."""
    counters = Table(
        "guard_counters",
        metadata,
        # "rate:staff:<id>", "burst:peer:<org>", "alert:<rule>:<kind>:<id>"
        Column("key", String(200), primary_key=True),
        Column("window_start", UtcDateTime(), primary_key=True),
        Column("count", Integer, nullable=False),
    )
    alerts = Table(
        "guard_alerts",
        metadata,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("at", UtcDateTime(), nullable=False),
        Column("rule", String(32), nullable=False),
        Column("subject_kind", String(16), nullable=False),
        Column("subject", String(_SUBJECT_MAX), nullable=False),
        Column("detail", JSON, nullable=False),
        Column("action", String(8), nullable=False),
        Column("acknowledged_at", UtcDateTime(), nullable=True),
        Column("acknowledged_by", String(128), nullable=True),
    )
    Index("ix_guard_alerts_open", alerts.c.acknowledged_at, alerts.c.id)
    lookups = Table(
        "guard_lookups",
        metadata,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("at", UtcDateTime(), nullable=False),
        Column("actor", String(160), nullable=False),  # "<kind>:<subject>"
        Column("person", String(64), nullable=False),  # HMAC of the person id
        Column("cluster", String(64), nullable=False),  # HMAC of the group, else of the person
    )
    Index("ix_guard_lookups_actor_at", lookups.c.actor, lookups.c.at)
    Index("ix_guard_lookups_at", lookups.c.at)
    secret = Table(
        "guard_secret",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("key", String(64), nullable=False),
        CheckConstraint("id = 1", name="guard_secret_single_row"),
    )
    return GuardTables(counters=counters, alerts=alerts, lookups=lookups, secret=secret)


# --- policy ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    """At most ``max`` requests per fixed window of ``seconds``; ``max = 0`` means no limit."""

    max: int
    seconds: int = 60


@dataclass(frozen=True)
class WorkingHours:
    """Requests from ``kinds`` outside ``start``–``end`` on ``weekdays`` (ISO, 1 = Monday)."""

    enabled: bool = True
    timezone: str = "Asia/Tokyo"
    start: time = time(8, 0)
    end: time = time(20, 0)
    weekdays: frozenset[int] = frozenset({1, 2, 3, 4, 5})
    holidays: frozenset[date] = frozenset()
    kinds: frozenset[str] = frozenset({"staff"})
    action: Action = "flag"


@dataclass(frozen=True)
class DistinctPersons:
    """More than ``max`` unrelated persons looked up by one subject within ``seconds``."""

    enabled: bool = True
    max: int = 50
    seconds: int = 3600
    kinds: frozenset[str] = frozenset({"staff"})
    action: Action = "flag"


@dataclass(frozen=True)
class PeerBurst:
    """More than ``max`` requests from one peer within a fixed window of ``seconds``."""

    enabled: bool = True
    max: int = 300
    seconds: int = 10
    action: Action = "flag"


def _default_limits() -> dict[str, RateLimit]:
    return {"staff": RateLimit(60), "client": RateLimit(600), "peer": RateLimit(3000)}


@dataclass(frozen=True)
class GuardPolicy:
    """What counts as abnormal traffic; `from_dict` reads the ``[guard]`` config section.

    ``group_of`` (code only, not config) maps a person id to a grouping key such as a
    household or case id; persons with the same key are related and count once.
    """

    limits: Mapping[str, RateLimit] = field(default_factory=_default_limits)
    rate_limit_alerts: bool = True
    working_hours: WorkingHours = field(default_factory=WorkingHours)
    distinct_persons: DistinctPersons = field(default_factory=DistinctPersons)
    peer_burst: PeerBurst = field(default_factory=PeerBurst)
    group_of: Callable[[str], str | None] | None = None

    def __post_init__(self) -> None:
        for kind, limit in self.limits.items():
            if kind not in KINDS:
                raise ValueError(f"guard: unknown kind {kind!r} in limits")
            if limit.max < 0 or limit.seconds < 1:
                raise ValueError(f"guard: limits.{kind} must have max >= 0 and seconds >= 1")
        wh = self.working_hours
        if wh.action not in ACTIONS or self.distinct_persons.action not in ACTIONS:
            raise ValueError("guard: action must be 'flag' or 'block'")
        if self.peer_burst.action not in ACTIONS:
            raise ValueError("guard: action must be 'flag' or 'block'")
        if not wh.weekdays <= set(range(1, 8)):
            raise ValueError("guard: working_hours.weekdays are ISO weekdays 1 (Mon) to 7 (Sun)")
        for kinds in (wh.kinds, self.distinct_persons.kinds):
            if not kinds <= set(KINDS):
                raise ValueError(f"guard: kinds must be among {', '.join(KINDS)}")
        try:
            ZoneInfo(wh.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"guard: unknown time zone {wh.timezone!r}") from None
        for name, n, s in (
            ("distinct_persons", self.distinct_persons.max, self.distinct_persons.seconds),
            ("peer_burst", self.peer_burst.max, self.peer_burst.seconds),
        ):
            if n < 0 or s < 1:
                raise ValueError(f"guard: {name} must have max >= 0 and seconds >= 1")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> GuardPolicy:
        """A policy from a ``[guard]`` TOML section; missing keys keep their defaults.

        Example::

            [guard]
            rate_limit_alerts = true
            [guard.limits]
            staff = 60                      # or { max = 60, seconds = 60 }; 0 = no limit
            client = 600
            peer = 3000
            [guard.working_hours]
            start = "08:00"
            end = "20:00"
            weekdays = [1, 2, 3, 4, 5]      # ISO: 1 = Monday
            holidays = [2026-01-01, "2026-01-12"]
            kinds = ["staff"]
            action = "flag"                 # or "block"
            [guard.distinct_persons]
            max = 50
            seconds = 3600
            action = "flag"
            [guard.peer_burst]
            max = 300
            seconds = 10
            action = "block"

        Unknown keys and wrong values raise `ConfigError`, naming the key.
        """
        try:
            return _policy_from_dict(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"[guard] の設定が誤っています: {exc}") from None


def _section(raw: Mapping[str, Any], name: str, allowed: Iterable[str]) -> Mapping[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a table")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ValueError(f"unknown key {name}.{unknown[0]}")
    return value


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where} must be an integer")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{where} must be true or false")
    return value


def _action(value: Any, where: str) -> Action:
    if value not in ACTIONS:
        raise ValueError(f"{where} must be 'flag' or 'block'")
    return cast(Action, value)


def _time(value: Any, where: str) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        try:
            return time.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f'{where} must be a time such as "08:00"')


def _date(value: Any, where: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{where} must hold dates such as 2026-01-01")


def _kinds(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list | tuple | set | frozenset):
        raise TypeError(f"{where} must be a list")
    out = frozenset(str(v) for v in value)
    if not out <= set(KINDS):
        raise ValueError(f"{where} must be among {', '.join(KINDS)}")
    return out


def _policy_from_dict(raw: Mapping[str, Any]) -> GuardPolicy:
    top = {"limits", "rate_limit_alerts", "working_hours", "distinct_persons", "peer_burst"}
    unknown = sorted(set(raw) - top)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]}")
    limits = _default_limits()
    for kind, value in _section(raw, "limits", KINDS).items():
        where = f"limits.{kind}"
        if isinstance(value, Mapping):
            extra = sorted(set(value) - {"max", "seconds"})
            if extra:
                raise ValueError(f"unknown key {where}.{extra[0]}")
            limits[kind] = RateLimit(
                _int(value.get("max", limits[kind].max), f"{where}.max"),
                _int(value.get("seconds", 60), f"{where}.seconds"),
            )
        else:
            limits[kind] = RateLimit(_int(value, where))

    wh_raw = _section(
        raw,
        "working_hours",
        ("enabled", "timezone", "start", "end", "weekdays", "holidays", "kinds", "action"),
    )
    d = WorkingHours()
    weekdays = wh_raw.get("weekdays", sorted(d.weekdays))
    holidays = wh_raw.get("holidays", [])
    if not isinstance(weekdays, list | tuple) or not isinstance(holidays, list | tuple):
        raise TypeError("working_hours.weekdays and working_hours.holidays must be lists")
    wh = WorkingHours(
        enabled=_bool(wh_raw.get("enabled", d.enabled), "working_hours.enabled"),
        timezone=str(wh_raw.get("timezone", d.timezone)),
        start=_time(wh_raw.get("start", d.start), "working_hours.start"),
        end=_time(wh_raw.get("end", d.end), "working_hours.end"),
        weekdays=frozenset(_int(v, "working_hours.weekdays") for v in weekdays),
        holidays=frozenset(_date(v, "working_hours.holidays") for v in holidays),
        kinds=_kinds(wh_raw.get("kinds", sorted(d.kinds)), "working_hours.kinds"),
        action=_action(wh_raw.get("action", d.action), "working_hours.action"),
    )

    dp_raw = _section(raw, "distinct_persons", ("enabled", "max", "seconds", "kinds", "action"))
    dd = DistinctPersons()
    dp = DistinctPersons(
        enabled=_bool(dp_raw.get("enabled", dd.enabled), "distinct_persons.enabled"),
        max=_int(dp_raw.get("max", dd.max), "distinct_persons.max"),
        seconds=_int(dp_raw.get("seconds", dd.seconds), "distinct_persons.seconds"),
        kinds=_kinds(dp_raw.get("kinds", sorted(dd.kinds)), "distinct_persons.kinds"),
        action=_action(dp_raw.get("action", dd.action), "distinct_persons.action"),
    )

    pb_raw = _section(raw, "peer_burst", ("enabled", "max", "seconds", "action"))
    pd = PeerBurst()
    pb = PeerBurst(
        enabled=_bool(pb_raw.get("enabled", pd.enabled), "peer_burst.enabled"),
        max=_int(pb_raw.get("max", pd.max), "peer_burst.max"),
        seconds=_int(pb_raw.get("seconds", pd.seconds), "peer_burst.seconds"),
        action=_action(pb_raw.get("action", pd.action), "peer_burst.action"),
    )
    return GuardPolicy(
        limits=limits,
        rate_limit_alerts=_bool(raw.get("rate_limit_alerts", True), "rate_limit_alerts"),
        working_hours=wh,
        distinct_persons=dp,
        peer_burst=pb,
    )


# --- results --------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """One recorded alert: which rule fired, for whom, what was done, who acknowledged it."""

    id: int
    at: datetime
    rule: str
    subject_kind: str
    subject: str
    detail: dict[str, Any]
    action: Action
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None


@dataclass(frozen=True)
class Decision:
    """Whether to serve the request; ``problem`` says why not; ``alerts`` recorded just now."""

    allowed: bool
    problem: Problem | None = None
    alerts: list[Alert] = field(default_factory=list)

    def raise_for_refusal(self) -> None:
        """Raise ``problem`` if the request is refused (after the transaction committed)."""
        if self.problem is not None:
            raise self.problem


def alert_event(alert: Alert) -> AuditEvent:
    """The audit-log entry for an alert: the subject as actor, the rule as action."""
    return AuditEvent(
        actor=alert.subject,
        action=f"guard.{alert.rule}",
        outcome="blocked" if alert.action == "block" else "flagged",
        ref=f"guard-alert:{alert.id}",
        detail={"subject_kind": alert.subject_kind, **alert.detail},
    )


# --- storage helpers ------------------------------------------------------------------


def _dialect_insert(session: Session) -> Any:
    name = session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    raise NotImplementedError(f"guard: no atomic counter for {name}")


def _window_start(now: datetime, seconds: int) -> datetime:
    ts = math.floor(now.timestamp())
    return datetime.fromtimestamp(ts - ts % seconds, UTC)


def _bump(
    session: Session, tables: GuardTables, key: str, now: datetime, seconds: int
) -> tuple[int, datetime]:
    """Add one to ``key``'s counter for the window holding ``now``; return (new count, window start).

    One statement, atomic on both engines. The first bump of a window deletes the
    key's rows from before the previous window.
    """
    c = tables.counters
    start = _window_start(now, seconds)
    stmt = (
        _dialect_insert(session)(c)
        .values(key=key, window_start=start, count=1)
        .on_conflict_do_update(
            index_elements=[c.c.key, c.c.window_start], set_={"count": c.c.count + 1}
        )
        .returning(c.c.count)
    )
    count = int(session.execute(stmt).scalar_one())
    if count == 1:
        session.execute(
            delete(c).where(c.c.key == key, c.c.window_start < start - timedelta(seconds=seconds))
        )
    return count, start


class MemoryCounters:
    """The same windowed counters as the database's, kept in this process's memory.

    For the traffic between nodes (``peer``): a database write per message would be a
    large share of a quick request's cost. The limits then apply per node process (a
    node served by several processes admits up to the limit in each); alerts are still
    written to the database and the audit log.
    """

    MAX_KEYS = 100_000  # a bound on memory: the oldest windows go first

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, datetime], int] = {}

    def bump(self, key: str, now: datetime, seconds: int) -> tuple[int, datetime]:
        start = _window_start(now, seconds)
        with self._lock:
            count = self._counts.get((key, start), 0) + 1
            self._counts[(key, start)] = count
            if count == 1:
                stale = start - timedelta(seconds=seconds)
                for k in [k for k in self._counts if k[0] == key and k[1] < stale]:
                    del self._counts[k]
                if len(self._counts) > self.MAX_KEYS:
                    for k in sorted(self._counts, key=lambda k: k[1])[: len(self._counts) // 2]:
                        del self._counts[k]
        return count, start


_HASH_KEYS: dict[tuple[int, str], bytes] = {}  # by table and database: never changes once made


@dataclass(frozen=True)
class _LookupStatements:
    """The many-unrelated-persons rule's statements on one lookups table, built once
    (not rebuilt and re-keyed for the statement cache on every screened request) and
    run lean (`Prepared`: no Core execution machinery per statement)."""

    forget: Prepared
    seen: Prepared
    add: Prepared
    refresh: Prepared
    distinct: Prepared


_LOOKUP_STATEMENTS: dict[Table, _LookupStatements] = {}


def _lookup_statements(lk: Table) -> _LookupStatements:
    found = _LOOKUP_STATEMENTS.get(lk)
    if found is None:
        actor, since = bindparam("actor", type_=lk.c.actor.type), bindparam("since", type_=lk.c.at.type)
        window = ("actor", "since")
        found = _LOOKUP_STATEMENTS[lk] = _LookupStatements(
            forget=Prepared(delete(lk).where(lk.c.actor == actor, lk.c.at <= since), window),
            seen=Prepared(
                select(lk.c.id)
                .where(lk.c.actor == actor, lk.c.at > since, lk.c.cluster == bindparam("cluster"))
                .limit(1),
                (*window, "cluster"),
            ),
            add=Prepared(insert(lk), ("at", "actor", "person", "cluster")),
            refresh=Prepared(
                update(lk)
                .where(lk.c.id == bindparam("row_id"))
                .values(
                    at=bindparam("new_at", type_=lk.c.at.type),
                    person=bindparam("new_person", type_=lk.c.person.type),
                ),
                ("row_id", "new_at", "new_person"),
            ),
            distinct=Prepared(
                select(func.count(lk.c.cluster.distinct())).where(lk.c.actor == actor, lk.c.at > since),
                window,
            ),
        )
    return found


def _hash_key(session: Session, tables: GuardTables) -> bytes:
    """This node's HMAC key for person ids, created on first use (then kept in memory)."""
    bind = session.get_bind()
    where = (id(tables.secret), str(bind.engine.url))
    known = _HASH_KEYS.get(where)
    if known is not None:
        return known
    s = tables.secret
    key = session.execute(select(s.c.key).where(s.c.id == 1)).scalar()
    if key is None:
        session.execute(
            _dialect_insert(session)(s)
            .values(id=1, key=secrets.token_hex(32))
            .on_conflict_do_nothing()
        )
        key = session.execute(select(s.c.key).where(s.c.id == 1)).scalar_one()
        return bytes.fromhex(str(key))  # not kept until committed: another may have won
    _HASH_KEYS[where] = value = bytes.fromhex(str(key))
    return value


def _digest(key: bytes, label: str, value: str) -> str:
    return hmac.new(key, f"{label}\x00{value}".encode(), hashlib.sha256).hexdigest()


def _record_alert(
    session: Session,
    tables: GuardTables,
    *,
    rule: str,
    kind: str,
    subject: str,
    detail: dict[str, Any],
    action: Action,
    now: datetime,
    audit: Callable[[Alert], None] | None,
) -> Alert:
    a = tables.alerts
    alert_id = session.execute(
        insert(a)
        .values(
            at=now,
            rule=rule,
            subject_kind=kind,
            subject=subject,
            detail=detail,
            action=action,
        )
        .returning(a.c.id)
    ).scalar_one()
    alert = Alert(int(alert_id), now, rule, kind, subject, detail, action)
    if audit is not None:
        audit(alert)
    return alert


def record_alert(
    session: Session,
    tables: GuardTables,
    *,
    rule: str,
    kind: Kind,
    subject: str,
    detail: dict[str, Any],
    action: Action,
    now: datetime,
    audit: Callable[[Alert], None] | None = None,
) -> Alert:
    """Record an alert a node's own logic raised (not a guard rule), in the caller's session.

    It shows at ``/v1/alerts`` with the guard's; ``audit`` is called with it as in `check`.
    """
    if not rule or len(rule) > 32 or not subject or len(subject) > _SUBJECT_MAX:
        raise ValueError("guard: rule (≤ 32) and subject (≤ 128 characters) are required")
    return _record_alert(
        session, tables, rule=rule, kind=kind, subject=subject, detail=detail, action=action,
        now=now.astimezone(UTC), audit=audit,
    )


def _blocked(rule: str) -> Problem:
    return Problem(
        403,
        "blocked_by_rule",
        f"「{RULE_LABELS[rule]}」の規則により、この要求は停止されました。管理者に連絡してください。",
        rule=rule,
    )


def _off_hours_reason(wh: WorkingHours, now: datetime) -> str | None:
    local = now.astimezone(ZoneInfo(wh.timezone))
    if local.date() in wh.holidays:
        return "holiday"
    if local.isoweekday() not in wh.weekdays:
        return "non_working_day"
    t = local.time().replace(tzinfo=None)
    if wh.start <= wh.end:
        inside = wh.start <= t < wh.end
    else:  # overnight shift, e.g. 22:00–06:00
        inside = t >= wh.start or t < wh.end
    return None if inside else "outside_hours"


# --- the check ------------------------------------------------------------------------


def check(
    session: Session,
    tables: GuardTables,
    policy: GuardPolicy,
    *,
    kind: Kind,
    subject: str,
    person: str | None,
    now: datetime,
    audit: Callable[[Alert], None] | None = None,
    group: str | None = None,
    counters: MemoryCounters | None = None,
) -> Decision:
    """Count one request by ``subject`` and apply the limits and rules; never commits.

    ``person`` is the person the request is about (any id the node uses; only a keyed
    hash is stored), ``group`` that person's household or case key (else
    ``policy.group_of(person)``, else the person alone). ``audit`` is called with each
    alert recorded, in this session, so the caller can append it to the audit log.
    ``counters`` keeps the windowed counts in memory instead of the database.
    """
    if kind not in KINDS:
        raise ValueError(f"guard: kind must be one of {', '.join(KINDS)}")
    if not subject or len(subject) > _SUBJECT_MAX:
        raise ValueError(f"guard: subject must be 1 to {_SUBJECT_MAX} characters")
    if ids.check(ids.IdKind.INDIVIDUAL_NUMBER, subject) is None:
        raise ValueError("guard: subject must not be an individual number")
    if now.tzinfo is None:
        raise ValueError("guard: naive datetime")
    now = now.astimezone(UTC)
    actor = f"{kind}:{subject}"
    alerts: list[Alert] = []

    def alert(rule: str, action: Action, detail: dict[str, Any]) -> None:
        alerts.append(
            _record_alert(
                session,
                tables,
                rule=rule,
                kind=kind,
                subject=subject,
                detail=detail,
                action=action,
                now=now,
                audit=audit,
            )
        )

    def bump(key: str, seconds: int) -> tuple[int, datetime]:
        if counters is not None:
            return counters.bump(key, now, seconds)
        return _bump(session, tables, key, now, seconds)

    def once(rule: str, seconds: int) -> bool:
        """True for the first firing of ``rule`` for this subject in its window."""
        return bump(f"alert:{rule}:{actor}", seconds)[0] == 1

    # 1. The rate limit: refused at once, nothing else recorded.
    limit = policy.limits.get(kind)
    if limit is not None and limit.max > 0:
        count, start = bump(f"rate:{actor}", limit.seconds)
        if count > limit.max:
            if count == limit.max + 1 and policy.rate_limit_alerts:
                alert(
                    "rate_limit",
                    "block",
                    {"limit": limit.max, "window_seconds": limit.seconds},
                )
            end = start + timedelta(seconds=limit.seconds)
            retry_after = max(1, math.ceil((end - now).total_seconds()))
            return Decision(
                False,
                Problem(429, "rate_limited", RATE_LIMITED_TITLE, retry_after=retry_after),
                alerts,
            )

    blocking: list[str] = []

    # 2. A burst from one peer.
    pb = policy.peer_burst
    if kind == "peer" and pb.enabled and pb.max > 0:
        count, _ = bump(f"burst:{actor}", pb.seconds)
        if count > pb.max:
            if count == pb.max + 1:
                alert("peer_burst", pb.action, {"max": pb.max, "window_seconds": pb.seconds})
            if pb.action == "block":
                blocking.append("peer_burst")

    # 3. Outside working hours.
    wh = policy.working_hours
    if wh.enabled and kind in wh.kinds:
        reason = _off_hours_reason(wh, now)
        if reason is not None:
            if once("off_hours", _OFF_HOURS_ALERT_SECONDS):
                local = now.astimezone(ZoneInfo(wh.timezone))
                alert(
                    "off_hours",
                    wh.action,
                    {"reason": reason, "local_time": local.isoformat(timespec="minutes")},
                )
            if wh.action == "block":
                blocking.append("off_hours")

    # 4. Many unrelated persons (a sliding window over this subject's lookups).
    dp = policy.distinct_persons
    if person is not None and dp.enabled and dp.max > 0 and kind in dp.kinds:
        if group is None and policy.group_of is not None:
            group = policy.group_of(person)
        key = _hash_key(session, tables)
        person_h = _digest(key, "person", person)
        cluster = _digest(key, "group", group) if group is not None else person_h
        st = _lookup_statements(tables.lookups)
        since = now - timedelta(seconds=dp.seconds)
        window = {"actor": actor, "since": since}
        st.forget.run(session, window)
        # One row per cluster in the window (refreshed, not repeated): the count below then
        # reads at most as many rows as there are distinct clusters, however many lookups.
        seen = st.seen.scalar(session, {**window, "cluster": cluster})
        if seen is None:
            st.add.run(session, {"at": now, "actor": actor, "person": person_h, "cluster": cluster})
        else:
            st.refresh.run(session, {"row_id": seen, "new_at": now, "new_person": person_h})
        distinct = int(st.distinct.scalar(session, window))
        if distinct > dp.max:
            if once("distinct_persons", dp.seconds):
                alert(
                    "distinct_persons",
                    dp.action,
                    {"distinct": distinct, "max": dp.max, "window_seconds": dp.seconds},
                )
            if dp.action == "block":
                blocking.append("distinct_persons")

    if blocking:
        return Decision(False, _blocked(blocking[0]), alerts)
    return Decision(True, None, alerts)


# --- administration -------------------------------------------------------------------


def _alert_from_row(row: Any) -> Alert:
    return Alert(
        id=int(row.id),
        at=row.at,
        rule=str(row.rule),
        subject_kind=str(row.subject_kind),
        subject=str(row.subject),
        detail=dict(row.detail),
        action=cast(Action, row.action),
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
    )


def list_alerts(
    session: Session,
    tables: GuardTables,
    *,
    unacknowledged_only: bool = True,
    limit: int | None = 500,
) -> list[Alert]:
    """Alerts for administrators, newest first; by default only those nobody acknowledged."""
    a = tables.alerts
    q = select(a).order_by(a.c.id.desc())
    if unacknowledged_only:
        q = q.where(a.c.acknowledged_at.is_(None))
    if limit is not None:
        q = q.limit(limit)
    return [_alert_from_row(r) for r in session.execute(q)]


def acknowledge(
    session: Session, tables: GuardTables, alert_id: int, by: str, now: datetime
) -> Alert:
    """Mark an alert as seen by administrator ``by``; the first acknowledgement stands.

    Raises a 404 `Problem` for an unknown alert.
    """
    if not by or len(by) > 128:
        raise ValueError("guard: acknowledged_by must be 1 to 128 characters")
    if now.tzinfo is None:
        raise ValueError("guard: naive datetime")
    a = tables.alerts
    session.execute(
        update(a)
        .where(a.c.id == alert_id, a.c.acknowledged_at.is_(None))
        .values(acknowledged_at=now.astimezone(UTC), acknowledged_by=by)
    )
    row = session.execute(select(a).where(a.c.id == alert_id)).first()
    if row is None:
        raise Problem(404, "alert_not_found", "指定された警告は存在しません。")
    return _alert_from_row(row)


def prune(session: Session, tables: GuardTables, policy: GuardPolicy, now: datetime) -> int:
    """Delete counters and lookups no window can need any more; return how many rows.

    `check` prunes a subject's own rows as it goes; this clears what idle subjects left.
    """
    if now.tzinfo is None:
        raise ValueError("guard: naive datetime")
    windows = [limit.seconds for limit in policy.limits.values()]
    windows += [
        policy.distinct_persons.seconds,
        policy.peer_burst.seconds,
        _OFF_HOURS_ALERT_SECONDS,
    ]
    horizon = now.astimezone(UTC) - timedelta(seconds=2 * max(windows))
    since = now.astimezone(UTC) - timedelta(seconds=policy.distinct_persons.seconds)
    c, lk = tables.counters, tables.lookups
    gone = 0
    for stmt in (delete(c).where(c.c.window_start < horizon), delete(lk).where(lk.c.at <= since)):
        result = cast(CursorResult[Any], session.execute(stmt))
        gone += int(result.rowcount)
    return gone
