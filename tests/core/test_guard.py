"""The abnormal-traffic guard: rate limits, rules that flag or block, alerts for administrators."""

from __future__ import annotations

import random
import re
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from joserfc.jwk import OKPKey
from sqlalchemy import Engine, MetaData, select
from sqlalchemy.orm import Session, sessionmaker

from renkei.core import ids
from renkei.core.audit.log import AuditLog, audit_tables
from renkei.core.config import ConfigError
from renkei.core.crypto import envelope
from renkei.core.db import make_engine, make_sessionmaker, transaction
from renkei.core.errors import Problem
from renkei.core.wire.guard import (
    Alert,
    Decision,
    DistinctPersons,
    GuardPolicy,
    GuardTables,
    Kind,
    PeerBurst,
    RateLimit,
    WorkingHours,
    acknowledge,
    alert_event,
    check,
    guard_tables,
    list_alerts,
    prune,
)

JST = ZoneInfo("Asia/Tokyo")
WED_10 = datetime(2026, 4, 1, 10, 0, tzinfo=JST)  # a Wednesday, inside working hours
SHOWA_DAY = date(2026, 4, 29)  # 昭和の日, a Wednesday


@dataclass
class Env:
    engine: Engine
    sessions: sessionmaker[Session]
    tables: GuardTables

    def check(
        self,
        policy: GuardPolicy,
        *,
        kind: Kind = "staff",
        subject: str = "staff-001",
        person: str | None = None,
        now: datetime = WED_10,
        group: str | None = None,
        audited: list[Alert] | None = None,
    ) -> Decision:
        with transaction(self.sessions) as s:
            return check(
                s,
                self.tables,
                policy,
                kind=kind,
                subject=subject,
                person=person,
                now=now,
                group=group,
                audit=audited.append if audited is not None else None,
            )

    def alerts(self, *, unacknowledged_only: bool = True) -> list[Alert]:
        with self.sessions() as s:
            return list_alerts(s, self.tables, unacknowledged_only=unacknowledged_only)

    def counter(self, key: str) -> int:
        c = self.tables.counters
        with self.sessions() as s:
            return int(s.execute(select(c.c.count).where(c.c.key == key)).scalar_one())


@pytest.fixture
def env(db_url: str) -> Iterator[Env]:
    md = MetaData()
    tables = guard_tables(md)
    engine = make_engine(db_url)
    md.create_all(engine)
    yield Env(engine, make_sessionmaker(engine), tables)
    engine.dispose()


def quiet(**changes: Any) -> GuardPolicy:
    """A policy with every rule off, then ``changes``."""
    base = GuardPolicy(
        working_hours=WorkingHours(enabled=False),
        distinct_persons=DistinctPersons(enabled=False),
        peer_burst=PeerBurst(enabled=False),
    )
    return replace(base, **changes)


def persons(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [ids.generate_individual_number(rng) for _ in range(n)]


# --- rate limits ----------------------------------------------------------------------


def test_rate_limit_reached_at_exactly_limit_plus_one(env: Env) -> None:
    policy = quiet()  # staff 60 per minute by default
    now = WED_10 + timedelta(seconds=20)
    for i in range(60):
        d = env.check(policy, now=now)
        assert d.allowed and d.problem is None and d.alerts == [], i
    audited: list[Alert] = []
    d = env.check(policy, now=now, audited=audited)
    assert not d.allowed and d.problem is not None
    assert d.problem.status == 429 and d.problem.code == "rate_limited"
    assert (
        d.problem.title == "短時間に要求が集中しています。しばらく待ってから再度実行してください。"
    )
    assert d.problem.extra["retry_after"] == 40  # to the end of the minute
    assert [a.rule for a in d.alerts] == ["rate_limit"] and audited == d.alerts
    assert d.alerts[0].action == "block" and d.alerts[0].detail == {
        "limit": 60,
        "window_seconds": 60,
    }
    with pytest.raises(Problem) as raised:
        d.raise_for_refusal()
    assert raised.value.code == "rate_limited"
    # Still refused, but one alert per window is enough.
    d = env.check(policy, now=now + timedelta(seconds=39))
    assert not d.allowed and d.alerts == [] and d.problem is not None
    assert d.problem.extra["retry_after"] == 1
    assert [a.rule for a in env.alerts()] == ["rate_limit"]


def test_rate_limit_resets_in_the_next_window(env: Env) -> None:
    policy = quiet(limits={"staff": RateLimit(3, seconds=60)})
    results = [env.check(policy, now=WED_10 + timedelta(seconds=s)).allowed for s in (0, 1, 2, 59)]
    assert results == [True, True, True, False]
    nxt = WED_10 + timedelta(seconds=60)
    assert [env.check(policy, now=nxt).allowed for _ in range(4)] == [True, True, True, False]
    # Old windows are pruned as new ones start.
    c = env.tables.counters
    with env.sessions() as s:
        assert (
            s.execute(select(c.c.window_start).where(c.c.key == "rate:staff:staff-001"))
            .scalars()
            .all()
            != []
        )
    later = WED_10 + timedelta(minutes=10)
    assert env.check(policy, now=later).allowed
    with env.sessions() as s:
        starts = (
            s.execute(select(c.c.window_start).where(c.c.key == "rate:staff:staff-001"))
            .scalars()
            .all()
        )
    assert starts == [later]


def test_separate_subjects_and_kinds_are_independent(env: Env) -> None:
    policy = quiet(limits={"staff": RateLimit(2), "client": RateLimit(2), "peer": RateLimit(2)})
    for _ in range(2):
        assert env.check(policy, subject="A").allowed
    assert not env.check(policy, subject="A").allowed
    assert env.check(policy, subject="B").allowed
    # The same name under another kind is another subject.
    assert env.check(policy, kind="client", subject="A").allowed
    assert env.check(policy, kind="peer", subject="A").allowed
    assert env.counter("rate:staff:A") == 3 and env.counter("rate:client:A") == 1


def test_default_limits_per_kind(env: Env) -> None:
    policy = quiet(limits={**GuardPolicy().limits, "client": RateLimit(600)})
    assert {k: v.max for k, v in GuardPolicy().limits.items()} == {
        "staff": 60,
        "client": 600,
        "peer": 3000,
    }
    for _ in range(100):  # far above the staff limit, well below the client one
        assert env.check(policy, kind="client", subject="batch-1").allowed


def test_a_zero_limit_means_no_limit(env: Env) -> None:
    policy = quiet(limits={"staff": RateLimit(0)})
    assert all(env.check(policy).allowed for _ in range(80))


def test_counts_live_in_the_callers_transaction(env: Env) -> None:
    policy = quiet(limits={"staff": RateLimit(1)})
    with env.sessions() as s:
        assert check(
            s, env.tables, policy, kind="staff", subject="x", person=None, now=WED_10
        ).allowed
        s.rollback()
    assert env.check(policy, subject="x").allowed  # the rolled-back request did not count
    assert not env.check(policy, subject="x").allowed


def test_concurrent_checks_count_exactly(env: Env) -> None:
    """4 threads × 50 checks on one subject: every increment lands, the limit holds exactly."""
    policy = quiet(limits={"staff": RateLimit(150)})
    barrier = threading.Barrier(4)
    outcomes: list[bool] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            barrier.wait()
            mine = [env.check(policy, subject="busy").allowed for _ in range(50)]
            with lock:
                outcomes.extend(mine)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert env.counter("rate:staff:busy") == 200
    assert outcomes.count(True) == 150 and outcomes.count(False) == 50
    assert [a.rule for a in env.alerts()] == ["rate_limit"]  # exactly one, however raced


# --- many unrelated persons -----------------------------------------------------------


def test_many_distinct_persons_flagged_but_allowed(env: Env) -> None:
    policy = quiet(distinct_persons=DistinctPersons(max=50, action="flag"))
    people = persons(53)
    audited: list[Alert] = []
    for p in people[:50]:
        assert env.check(policy, person=p, audited=audited).alerts == []
    # Looking the same people up again is not new.
    assert env.check(policy, person=people[0], audited=audited).alerts == []
    d = env.check(policy, person=people[50], audited=audited)
    assert d.allowed and [a.rule for a in d.alerts] == ["distinct_persons"]
    assert d.alerts[0].action == "flag" and d.alerts[0].subject == "staff-001"
    assert d.alerts[0].subject_kind == "staff"
    assert d.alerts[0].detail == {"distinct": 51, "max": 50, "window_seconds": 3600}
    assert audited == d.alerts
    # Still above the threshold: allowed, and no second alert within the hour.
    for p in people[51:]:
        d = env.check(policy, person=p, audited=audited)
        assert d.allowed and d.alerts == []
    assert [a.rule for a in env.alerts()] == ["distinct_persons"]


def test_many_distinct_persons_blocked_in_block_mode(env: Env) -> None:
    policy = quiet(distinct_persons=DistinctPersons(max=3, action="block"))
    people = persons(5)
    for p in people[:3]:
        assert env.check(policy, person=p).allowed
    d = env.check(policy, person=people[3])
    assert not d.allowed and d.problem is not None
    assert d.problem.status == 403 and d.problem.code == "blocked_by_rule"
    assert "短時間に多数の無関係な個人を照会" in d.problem.title
    assert d.problem.extra["rule"] == "distinct_persons"
    assert [a.action for a in d.alerts] == ["block"]
    # Blocked while over the threshold, even for someone looked up before.
    d = env.check(policy, person=people[0])
    assert not d.allowed and d.alerts == []
    # Requests about no one in particular are not affected.
    assert env.check(policy, person=None).allowed


def test_related_persons_count_once(env: Env) -> None:
    policy = quiet(
        limits={"staff": RateLimit(0)}, distinct_persons=DistinctPersons(max=50, action="block")
    )
    people = persons(100)
    for i, p in enumerate(people):  # 100 persons in 10 households
        d = env.check(policy, person=p, group=f"household-{i % 10}")
        assert d.allowed and d.alerts == [], i
    # The same through the policy's grouping function.
    by_case = {p: f"case-{i // 20}" for i, p in enumerate(people)}
    grouped = replace(policy, group_of=by_case.get)
    for p in people:
        assert env.check(grouped, subject="staff-002", person=p).allowed
    # Without grouping every person is unrelated.
    d = Decision(True)
    for p in people[:51]:
        d = env.check(policy, subject="staff-003", person=p)
    assert not d.allowed and d.problem is not None and d.problem.extra["rule"] == "distinct_persons"


def test_distinct_persons_is_a_sliding_window_per_subject(env: Env) -> None:
    policy = quiet(distinct_persons=DistinctPersons(max=50, seconds=3600))
    people = persons(90)
    for i, p in enumerate(people[:45]):
        assert env.check(policy, person=p, now=WED_10 + timedelta(seconds=i)).alerts == []
    for p in people[45:90]:  # another staff member; counts apart
        assert env.check(policy, subject="staff-002", person=p).alerts == []
    # An hour after the first lookups they no longer count, and their rows are pruned.
    later = WED_10 + timedelta(seconds=3600 + 45)
    for p in people[45:90]:
        assert env.check(policy, person=p, now=later).alerts == []
    lk = env.tables.lookups
    with env.sessions() as s:
        mine = s.execute(select(lk.c.at).where(lk.c.actor == "staff:staff-001")).scalars().all()
    assert len(mine) == 45 and min(mine) == later
    # Within the window the 51st distinct person is flagged.
    d = env.check(policy, person=people[0], now=later + timedelta(seconds=1))
    assert d.alerts == []
    for p in people[1:6]:
        d = env.check(policy, person=p, now=later + timedelta(seconds=2))
    assert [a.rule for a in d.alerts] == ["distinct_persons"]


def test_rules_apply_only_to_their_kinds(env: Env) -> None:
    policy = quiet(distinct_persons=DistinctPersons(max=2, action="block"))
    for p in persons(10):
        assert env.check(policy, kind="client", subject="batch", person=p).allowed


# --- working hours --------------------------------------------------------------------


OUTSIDE = [
    pytest.param(datetime(2026, 4, 4, 10, 0, tzinfo=JST), "non_working_day", id="saturday"),
    pytest.param(datetime(2026, 4, 5, 12, 0, tzinfo=JST), "non_working_day", id="sunday"),
    pytest.param(datetime(2026, 4, 1, 22, 0, tzinfo=JST), "outside_hours", id="22:00"),
    pytest.param(datetime(2026, 4, 1, 13, 0, tzinfo=UTC), "outside_hours", id="22:00-given-in-utc"),
    pytest.param(datetime(2026, 4, 1, 7, 59, tzinfo=JST), "outside_hours", id="07:59"),
    pytest.param(datetime(2026, 4, 1, 20, 0, tzinfo=JST), "outside_hours", id="20:00"),
    pytest.param(datetime(2026, 4, 29, 10, 0, tzinfo=JST), "holiday", id="holiday"),
]
INSIDE = [
    pytest.param(datetime(2026, 4, 1, 8, 0, tzinfo=JST), id="08:00"),
    pytest.param(datetime(2026, 4, 1, 19, 59, tzinfo=JST), id="19:59"),
    pytest.param(datetime(2026, 4, 1, 3, 0, tzinfo=UTC), id="12:00-given-in-utc"),
    pytest.param(datetime(2026, 4, 30, 10, 0, tzinfo=JST), id="day-after-holiday"),
]


def hours(action: str = "flag") -> GuardPolicy:
    return GuardPolicy.from_dict(
        {
            "distinct_persons": {"enabled": False},
            "peer_burst": {"enabled": False},
            "working_hours": {"holidays": [SHOWA_DAY, "2026-05-06"], "action": action},
        }
    )


@pytest.mark.parametrize(("now", "reason"), OUTSIDE)
def test_outside_working_hours_flagged(env: Env, now: datetime, reason: str) -> None:
    d = env.check(hours("flag"), now=now)
    assert d.allowed and [a.rule for a in d.alerts] == ["off_hours"]
    assert d.alerts[0].detail["reason"] == reason
    assert d.alerts[0].detail["local_time"].endswith("+09:00")


@pytest.mark.parametrize("now", INSIDE)
def test_inside_working_hours_not_flagged(env: Env, now: datetime) -> None:
    for action in ("flag", "block"):
        d = env.check(hours(action), now=now)
        assert d.allowed and d.alerts == []
    assert env.alerts() == []


def test_outside_working_hours_blocked_in_block_mode(env: Env) -> None:
    night = datetime(2026, 4, 1, 22, 0, tzinfo=JST)
    d = env.check(hours("block"), now=night)
    assert not d.allowed and d.problem is not None
    assert d.problem.status == 403 and d.problem.code == "blocked_by_rule"
    assert "業務時間外の照会" in d.problem.title
    # Every request is refused, one alert per hour is recorded.
    d = env.check(hours("block"), now=night + timedelta(minutes=5))
    assert not d.allowed and d.alerts == []
    d = env.check(hours("block"), now=night + timedelta(hours=1))
    assert not d.allowed and [a.rule for a in d.alerts] == ["off_hours"]
    # Business systems run batches at night: not a staff rule for them by default.
    assert env.check(hours("block"), kind="client", subject="batch", now=night).allowed


# --- peer bursts ----------------------------------------------------------------------


def test_peer_burst_flagged_then_window_resets(env: Env) -> None:
    policy = quiet(peer_burst=PeerBurst(max=5, seconds=10, action="flag"))
    for _ in range(5):
        assert env.check(policy, kind="peer", subject="131041").alerts == []
    d = env.check(policy, kind="peer", subject="131041")
    assert d.allowed and [a.rule for a in d.alerts] == ["peer_burst"]
    assert d.alerts[0].subject_kind == "peer" and d.alerts[0].subject == "131041"
    assert d.alerts[0].detail == {"max": 5, "window_seconds": 10}
    assert env.check(policy, kind="peer", subject="131041").alerts == []
    # Another peer, and the next window, start from zero.
    assert env.check(policy, kind="peer", subject="272000").alerts == []
    nxt = WED_10 + timedelta(seconds=10)
    assert all(
        env.check(policy, kind="peer", subject="131041", now=nxt).alerts == [] for _ in range(5)
    )
    # Staff are not peers.
    assert all(env.check(policy).alerts == [] for _ in range(8))


def test_peer_burst_blocked_in_block_mode(env: Env) -> None:
    policy = quiet(peer_burst=PeerBurst(max=5, seconds=10, action="block"))
    results = [env.check(policy, kind="peer", subject="131041") for _ in range(7)]
    assert [d.allowed for d in results] == [True] * 5 + [False, False]
    problem = results[5].problem
    assert problem is not None and problem.status == 403 and problem.extra["rule"] == "peer_burst"
    assert "連携先からの集中的な要求" in problem.title
    assert env.check(
        policy, kind="peer", subject="131041", now=WED_10 + timedelta(seconds=10)
    ).allowed


# --- alerts ---------------------------------------------------------------------------


def test_alerts_listed_and_acknowledged(env: Env) -> None:
    policy = replace(hours("flag"), limits={"staff": RateLimit(1)})
    night = datetime(2026, 4, 1, 22, 0, tzinfo=JST)
    env.check(policy, subject="s1", now=night)  # off_hours
    env.check(policy, subject="s1", now=night)  # rate_limit
    listed = env.alerts()
    assert [(a.rule, a.subject) for a in listed] == [("rate_limit", "s1"), ("off_hours", "s1")]
    assert all(a.acknowledged_at is None and a.acknowledged_by is None for a in listed)
    assert listed[1].at == night.astimezone(UTC)

    seen = night + timedelta(hours=12)
    with transaction(env.sessions) as s:
        done = acknowledge(s, env.tables, listed[1].id, "admin-1", seen)
    assert done.acknowledged_by == "admin-1" and done.acknowledged_at == seen
    assert [a.rule for a in env.alerts()] == ["rate_limit"]
    assert [a.rule for a in env.alerts(unacknowledged_only=False)] == ["rate_limit", "off_hours"]
    # The first acknowledgement stands.
    with transaction(env.sessions) as s:
        again = acknowledge(s, env.tables, listed[1].id, "admin-2", seen + timedelta(hours=1))
    assert again.acknowledged_by == "admin-1" and again.acknowledged_at == seen
    with pytest.raises(Problem) as raised, transaction(env.sessions) as s:
        acknowledge(s, env.tables, 999_999, "admin-1", seen)
    assert raised.value.status == 404 and raised.value.code == "alert_not_found"


def test_alerts_go_to_the_audit_log(env: Env) -> None:
    md = MetaData()
    at = audit_tables(md)
    md.create_all(env.engine)
    log = AuditLog(at, envelope.SigningKey(OKPKey.generate_key("Ed25519"), "guard-test"))
    policy = quiet(distinct_persons=DistinctPersons(max=2, action="block"))
    for p in persons(3):
        with transaction(env.sessions) as s:

            def record(alert: Alert, s: Session = s) -> None:
                log.append(s, alert_event(alert))  # in the same transaction as the check

            d = check(
                s,
                env.tables,
                policy,
                kind="staff",
                subject="staff-001",
                person=p,
                now=WED_10,
                audit=record,
            )
    assert not d.allowed
    with env.sessions() as s:
        rows = s.execute(select(at.entries)).mappings().all()
    assert len(rows) == 1
    entry = rows[0]
    assert entry["actor"] == "staff-001" and entry["action"] == "guard.distinct_persons"
    assert entry["outcome"] == "blocked" and entry["ref"] == f"guard-alert:{d.alerts[0].id}"
    assert entry["detail"] == {
        "subject_kind": "staff",
        "distinct": 3,
        "max": 2,
        "window_seconds": 3600,
    }


def test_no_individual_number_or_person_id_is_stored(env: Env) -> None:
    policy = quiet(
        limits={"staff": RateLimit(30)},
        distinct_persons=DistinctPersons(max=5, action="flag"),
        working_hours=WorkingHours(action="flag"),
    )
    people = persons(40, seed=11)
    night = datetime(2026, 4, 4, 23, 0, tzinfo=JST)
    for i, p in enumerate(people):
        env.check(policy, person=p, group=p if i % 2 else None, now=night)
    assert {a.rule for a in env.alerts()} == {"rate_limit", "distinct_persons", "off_hours"}
    dumped: list[str] = []
    with env.sessions() as s:
        for table in (
            env.tables.alerts,
            env.tables.lookups,
            env.tables.counters,
            env.tables.secret,
        ):
            for row in s.execute(select(table)).all():
                dumped.extend(str(v) for v in row)
    text = "\n".join(dumped)
    assert not any(p in text for p in people)
    assert not re.search(r"(?<![0-9a-f])[0-9]{12}(?![0-9a-f])", text)
    for alert in env.alerts(unacknowledged_only=False):
        assert set(alert.detail) <= {
            "limit",
            "window_seconds",
            "distinct",
            "max",
            "reason",
            "local_time",
        }
    with pytest.raises(ValueError):
        env.check(policy, subject=people[0])  # an individual number is no subject id


# --- policy and housekeeping ----------------------------------------------------------


def test_policy_from_toml_section() -> None:
    raw = tomllib.loads(
        """
        [guard]
        rate_limit_alerts = false
        [guard.limits]
        staff = 30
        client = { max = 100, seconds = 10 }
        [guard.working_hours]
        start = "08:30"
        end = 17:15:00
        weekdays = [1, 2, 3, 4, 5, 6]
        holidays = [2026-04-29, "2026-05-06"]
        action = "block"
        [guard.distinct_persons]
        max = 20
        kinds = ["staff", "client"]
        [guard.peer_burst]
        max = 100
        seconds = 5
        action = "block"
        """
    )["guard"]
    p = GuardPolicy.from_dict(raw)
    assert p.limits == {
        "staff": RateLimit(30),
        "client": RateLimit(100, 10),
        "peer": RateLimit(3000),
    }
    assert not p.rate_limit_alerts
    wh = p.working_hours
    assert (wh.start, wh.end, wh.action) == (time(8, 30), time(17, 15), "block")
    assert wh.holidays == {SHOWA_DAY, date(2026, 5, 6)} and 6 in wh.weekdays
    assert wh.timezone == "Asia/Tokyo" and wh.kinds == {"staff"}
    assert p.distinct_persons == DistinctPersons(max=20, kinds=frozenset({"staff", "client"}))
    assert p.peer_burst == PeerBurst(max=100, seconds=5, action="block")
    assert GuardPolicy.from_dict({}) == GuardPolicy()


@pytest.mark.parametrize(
    "raw",
    [
        {"limit": {}},
        {"limits": {"robot": 5}},
        {"limits": {"staff": "60"}},
        {"limits": {"staff": -1}},
        {"working_hours": {"action": "warn"}},
        {"working_hours": {"start": "8 o'clock"}},
        {"working_hours": {"holidays": ["29/04/2026"]}},
        {"working_hours": {"weekdays": [0]}},
        {"working_hours": {"timezone": "Mars/Olympus"}},
        {"distinct_persons": {"kinds": ["visitor"]}},
        {"distinct_persons": {"treshold": 50}},
        {"peer_burst": {"seconds": 0}},
    ],
)
def test_bad_policy_is_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        GuardPolicy.from_dict(raw)


def test_prune_clears_idle_rows(env: Env) -> None:
    policy = quiet(distinct_persons=DistinctPersons(), peer_burst=PeerBurst())
    for p in persons(5):
        env.check(policy, person=p)
        env.check(policy, kind="peer", subject="131041")
    with transaction(env.sessions) as s:
        assert prune(s, env.tables, policy, WED_10 + timedelta(minutes=30)) == 0
    with transaction(env.sessions) as s:
        assert prune(s, env.tables, policy, WED_10 + timedelta(hours=3)) == 3 + 5
    with env.sessions() as s:
        assert s.execute(select(env.tables.lookups)).all() == []
        assert s.execute(select(env.tables.counters)).all() == []
