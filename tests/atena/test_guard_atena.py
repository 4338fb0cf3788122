"""atena screens staff members and business systems for abnormal traffic (issue 3, item 8).

Rate limits per staff member and per business client, and the "many unrelated persons"
rule on inquiries, with refusals audited and alerts recorded. The node's policy is
replaced per test (`rt.guard_policy`); each test uses its own staff member or client so
that counters of one test do not leak into another.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select

from renkei.atena.models import guard as guard_t
from renkei.core import ids
from renkei.core.wire.guard import DistinctPersons, GuardPolicy, RateLimit, WorkingHours
from tests.api.fed import Federation, assert_problem, unchanged
from tests.atena.kit import PSEUDONYMS, AtenaKit, open_atena
from tests.atena.test_auth_api import inquiry, person


@pytest.fixture(scope="module")
def atena(fed: Federation) -> Iterator[AtenaKit]:
    with open_atena(fed) as a:
        a.app.state.rt.clock = a.clock  # the guard's windows follow the test's clock
        persons = [
            person(200 + n, business_numbers={"child_allowance": ids.make_atena_no(820_000 + n)})
            for n in range(4)
        ]
        r = a.post("/v1/residents", {"persons": persons})
        assert r.status_code == 200, r.text
        yield a


@pytest.fixture
def policy(atena: AtenaKit) -> Iterator[Any]:
    rt = atena.app.state.rt
    saved = rt.guard_policy

    def use(p: GuardPolicy) -> None:
        # Off-hours alerts depend on the wall clock; they are tested in tests/core/test_guard.py.
        rt.guard_policy = replace(p, working_hours=WorkingHours(enabled=False))

    yield use
    rt.guard_policy = saved


def alerts(atena: AtenaKit, subject: str) -> list[dict[str, Any]]:
    with atena.app.state.rt.engine.connect() as conn:
        rows = conn.execute(select(guard_t.alerts).where(guard_t.alerts.c.subject == subject))
        return [dict(r._mapping) for r in rows]


def test_staff_over_the_rate_limit_is_refused_with_retry_after(atena: AtenaKit, policy: Any) -> None:
    policy(GuardPolicy(limits={"staff": RateLimit(3, 60)}))
    headers = atena.sign_in("S0004")
    for _ in range(3):
        assert atena.client.get("/v1/session", headers=headers).status_code == 200
    before = atena.counts()
    problem = assert_problem(atena.client.get("/v1/session", headers=headers), 429, "rate_limited")
    assert 1 <= problem["retry_after"] <= 60
    assert "しばらく待って" in problem["title"]
    # One alert, audited; the refusal itself audited under the route's action.
    found = alerts(atena, "S0004")
    assert [(a["rule"], a["subject_kind"]) for a in found] == [("rate_limit", "staff")]
    entries = [(e["actor"], e["action"], e["outcome"]) for e in atena.audit()[-2:]]
    assert entries == [("S0004", "guard.rate_limit", "blocked"), ("S0004", "session.show", "rate_limited")]
    after = atena.counts()
    for table in ("persons", "business_links", "inquiry_log", "auth_sessions"):
        assert after[table] == before[table]
    # A second refusal in the same window adds no second alert.
    assert_problem(atena.client.get("/v1/session", headers=headers), 429, "rate_limited")
    assert len(alerts(atena, "S0004")) == 1
    # The next window admits the staff member again.
    atena.clock.advance(seconds=60)
    assert atena.client.get("/v1/session", headers=headers).status_code == 200


def test_business_client_over_the_rate_limit_is_refused(atena: AtenaKit, policy: Any) -> None:
    policy(GuardPolicy(limits={"client": RateLimit(2, 60)}))
    headers = atena.bearer("jumin01-reader", PSEUDONYMS, fresh=True)
    body = {"business_atena_nos": []}
    for _ in range(2):
        assert atena.client.post("/v1/pseudonyms/status", json=body, headers=headers).status_code == 200
    before = atena.counts()
    resp = atena.client.post("/v1/pseudonyms/status", json=body, headers=headers)
    assert_problem(resp, 429, "rate_limited")
    found = alerts(atena, "jumin01-reader")
    assert [(a["rule"], a["subject_kind"]) for a in found] == [("rate_limit", "client")]
    assert atena.audit()[-1]["action"] == "pseudonym.status"
    assert atena.audit()[-1]["outcome"] == "rate_limited"
    after = atena.counts()
    assert after["persons"] == before["persons"]
    # Staff members are counted apart: the client's limit does not touch them.
    assert atena.client.get("/v1/session", headers=atena.sign_in("S0002")).status_code == 200


def test_many_unrelated_persons_blocked_by_rule(atena: AtenaKit, policy: Any) -> None:
    policy(GuardPolicy(distinct_persons=DistinctPersons(max=2, seconds=3600, action="block")))
    headers = atena.sign_in("S0001")

    def ask(n: int) -> Any:
        body = inquiry(business_atena_no=ids.make_atena_no(820_000 + n))
        return atena.client.post("/v1/inquiries", json=body, headers=headers)

    # The first two persons pass the guard (the provider is not running here: any answer
    # but the guard's refusal will do); the same person again still counts once.
    for n in (0, 1, 1):
        resp = ask(n)
        assert resp.json().get("code") != "blocked_by_rule", resp.text
    before = atena.counts()
    problem = assert_problem(ask(2), 403, "blocked_by_rule")
    assert "distinct_persons" in str(problem)
    # Refused before anything was sent or logged as an inquiry.
    after = atena.counts()
    assert after["inquiry_log"] == before["inquiry_log"]
    found = alerts(atena, "S0001")
    assert [(a["rule"], a["action"]) for a in found] == [("distinct_persons", "block")]
    assert found[0]["detail"]["distinct"] == 3
    last = atena.audit()[-1]
    assert (last["actor"], last["action"], last["outcome"]) == ("S0001", "inquiry", "blocked_by_rule")
    # No person id in the alert or in the guard's lookups: only keyed digests.
    with atena.app.state.rt.engine.connect() as conn:
        stored = [dict(r._mapping) for r in conn.execute(select(guard_t.lookups))]
    assert stored and all(r["person"] != ids.make_atena_no(820_002) for r in stored)
    unchanged_tables = {k: v for k, v in before.items() if k in ("persons", "business_links")}
    unchanged(unchanged_tables, {k: after[k] for k in unchanged_tables})
