"""Abnormal-traffic rules are enforced on every sealed route: a peer over its rate limit is refused."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import create_engine, func, select, text
from starlette.testclient import TestClient

from renkei.federation.topology import HUB, SHINJUKU
from renkei.hub.app import create_app
from renkei.hub.models import guard
from tests.api.fed import Federation, assert_problem, build_federation


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
