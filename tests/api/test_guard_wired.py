"""Abnormal-traffic rules are enforced on every sealed route: a peer over its rate limit is refused."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select, text
from starlette.testclient import TestClient

from renkei.core import units
from renkei.core.audit.log import AuditEvent, verify
from renkei.core.errors import Problem
from renkei.core.units import run_group
from renkei.core.wire.endpoint import Flow, Unit
from renkei.core.wire.messaging import Message, new_message_id
from renkei.core.wire.runtime import NodeRuntime
from renkei.federation.topology import HUB, SHINJUKU
from renkei.hub.app import create_app
from renkei.hub.models import Base, audit, guard, kernel
from tests.api.fed import Federation, assert_problem, build_federation, counts, unchanged


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return build_federation(tmp_path_factory, "guard")


def test_peer_rate_limit_reached_then_refused_and_alerted(fed: Federation) -> None:
    cfg = fed.config(HUB, "hub")
    cfg = dataclasses.replace(cfg, guard={"limits": {"peer": 3}})
    app = create_app(cfg)
    with TestClient(app) as client:
        statuses = []
        for _ in range(4):
            token = fed.seal(SHINJUKU, HUB, "registry.query", {})
            resp = client.post("/v1/registry", content=token, headers={"content-type": "application/jose"})
            statuses.append(resp.status_code)
        assert statuses[:3] == [200, 200, 200]
        problem = assert_problem(resp, 429, "rate_limited")
        assert problem.get("retry_after")
    engine = create_engine(cfg.database_url)
    with engine.connect() as conn:
        alerts = conn.execute(select(func.count()).select_from(guard.alerts)).scalar_one()
        audited = conn.execute(text("select count(*) from audit_entries where action = 'guard.rate_limit'")).scalar_one()
    engine.dispose()
    assert alerts == 1 and audited == 1


def test_refusals_and_failures_in_one_group_of_units(fed: Federation, monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages handled at the same moment share one transaction on SQLite (each unit in
    a savepoint): the allowed ones commit, a failing one leaves no trace, a refused one
    commits its counts and alert and is raised after the commit; the chain verifies."""
    cfg = dataclasses.replace(fed.config(HUB, "hub"), guard={"limits": {"peer": 3}})
    app = create_app(cfg)
    sender = fed.config(SHINJUKU, "chukan")

    sent: list[str] = []

    def message() -> Message:
        sent.append(new_message_id())
        return Message(sent[-1], sender.org_code, cfg.org_code, "registry.query", 0, {}, "chukan")

    def tally(engine: Engine) -> tuple[set[str], int, int]:
        """The messages kept of those sent here, the alerts, the alerts' audit entries."""
        with engine.connect() as conn:
            kept = set(conn.scalars(select(kernel.received_messages.c.message_id))) & set(sent)
            alerts = conn.execute(select(func.count()).select_from(guard.alerts)).scalar_one()
            alerted = conn.execute(select(func.count()).select_from(audit.entries).where(
                audit.entries.c.action == "guard.rate_limit")).scalar_one()
        return kept, alerts, alerted

    def entry(outcome: str) -> Callable[[Unit], str]:
        def work(unit: Unit) -> str:
            unit.record(AuditEvent(actor=unit.msg.iss, action="test.unit", outcome=outcome, ref=unit.msg.id))
            if outcome == "fails":
                raise Problem(409, "test_conflict", "テスト用の失敗です。")
            return unit.msg.id

        return work

    async def together(rt: NodeRuntime, works: list[Callable[[Unit], str]]) -> list[Any]:
        gate = threading.Event()
        held = rt._executor().submit(gate.wait)  # the database thread busy while all queue
        tasks = [asyncio.ensure_future(Flow(rt, message(), app.state).unit(w)) for w in works]
        await asyncio.sleep(0)
        gate.set()
        held.result()
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    with TestClient(app) as client:
        rt: NodeRuntime = app.state.rt
        engine = rt.engine
        _, alerts_before, alerted_before = tally(engine)
        groups: list[int] = []  # the size of each group of units run in one transaction

        def recording(sessions: Any, fns: list[Any]) -> Any:
            groups.append(len(fns))
            return run_group(sessions, fns)

        monkeypatch.setattr(units, "run_group", recording)
        results = client.portal.call(together, rt, [entry("ok"), entry("fails"), entry("ok"), entry("ok")])
        assert groups == ([4] if engine.dialect.name == "sqlite" else [])  # PostgreSQL: one transaction each
        # Three screened within the limit (the failed one counted too), the fourth refused.
        assert isinstance(results[0], str) and isinstance(results[2], str)
        assert isinstance(results[1], Problem) and results[1].code == "test_conflict"
        assert isinstance(results[3], Problem) and results[3].code == "rate_limited"
        kept, alerts, alerted = tally(engine)
        with engine.connect() as conn:
            entries = list(conn.execute(select(audit.entries.c.outcome, audit.entries.c.ref).where(
                audit.entries.c.action == "test.unit")))
        assert kept == {results[0], results[2]} == {sent[0], sent[2]}
        assert sorted(entries) == sorted(("ok", r) for r in (results[0], results[2]))
        assert (alerts, alerted) == (alerts_before + 1, alerted_before + 1)
        # A group of refusals writes nothing but its counts and alerts.
        before = counts(engine, Base.metadata)
        again = client.portal.call(together, rt, [entry("ok"), entry("ok")])
        assert [getattr(r, "code", r) for r in again] == ["rate_limited", "rate_limited"]
        unchanged(before, counts(engine, Base.metadata))
        with rt.sessions() as s:
            report = verify(s, audit, {rt.signing_key.kid: rt.signing_key.key}.get)
        assert report.ok, report
