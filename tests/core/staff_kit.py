"""An in-process node (hub, jlis, chukan or atena) with enrolled staff and a movable clock.

Staff are enrolled as the node's set-up does (renkei.staff.admin.setup_staff: all
roles at once, no administrator acting), with a cheap argon2 hasher; the tests then
act through the routes. The database is the
``db_url`` fixture's (SQLite or PostgreSQL). Each sign-in moves the authentication
clock one TOTP step ahead, so that no code is ever reused by accident.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyotp
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.testclient import TestClient

from renkei.core.db import make_engine, transaction
from renkei.core.wire.guard import GuardPolicy, RateLimit, WorkingHours
from renkei.federation.topology import HUB, JLIS, SHINJUKU, Org
from renkei.staff.admin import generate_password, setup_staff
from renkei.staff.auth import AuthPolicy
from renkei.staff.routes import CSRF_HEADER, SESSION_COOKIE
from tests.api.fed import Federation, counts

CHEAP_POLICY = AuthPolicy(hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
ORG_OF: dict[str, Org] = {"hub": HUB, "jlis": JLIS, "chukan": SHINJUKU, "atena": SHINJUKU}
# Generous limits and no working hours: the tests are about roles, not the guard.
QUIET_GUARD = GuardPolicy(
    limits={"staff": RateLimit(100_000), "client": RateLimit(100_000), "peer": RateLimit(100_000)},
    working_hours=WorkingHours(enabled=False),
)


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class NodeKit:
    node: str
    app: FastAPI
    client: TestClient
    clock: Clock
    passwords: dict[str, str] = field(default_factory=dict)
    totp_uris: dict[str, str] = field(default_factory=dict)

    @property
    def engine(self) -> Engine:
        engine: Engine = self.app.state.rt.engine
        return engine

    # --- observation --------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        models = importlib.import_module(f"renkei.{self.node}.models")
        return counts(self.engine, models.Base.metadata)

    def audit(self) -> list[dict[str, Any]]:
        table = self.app.state.rt.audit.tables.entries
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(table.select().order_by(table.c.seq))]

    def last_audit(self) -> tuple[str, str, str]:
        e = self.audit()[-1]
        return (e["actor"], e["action"], e["outcome"])

    # --- staff --------------------------------------------------------------------------

    def enrol(self, staff_id: str, *roles: str, name: str = "職員（架空）") -> None:
        rt = self.app.state.rt
        password = generate_password(staff_id, CHEAP_POLICY)
        with transaction(rt.sessions) as s:
            made = setup_staff(
                s,
                rt_auth(self.app),
                self.app.state.cipher,
                staff_id=staff_id,
                name=name,
                roles=roles,
                password=password,
                policy=CHEAP_POLICY,
                now=self.clock(),
            )
        self.passwords[staff_id] = password
        self.totp_uris[staff_id] = made.totp_uri

    def totp(self, staff_id: str, at: datetime | None = None) -> str:
        secret = pyotp.parse_uri(self.totp_uris[staff_id]).secret
        return pyotp.TOTP(secret).at(at or self.clock())

    def login(
        self, staff_id: str, password: str | None = None, totp: str | None = None
    ) -> httpx.Response:
        body = {
            "staff_id": staff_id,
            "password": self.passwords.get(staff_id, "x") if password is None else password,
            "totp": self.totp(staff_id)
            if totp is None and staff_id in self.totp_uris
            else (totp or ""),
        }
        resp = self.client.post("/v1/session", json=body)
        self.client.cookies.clear()  # every request names its credentials itself
        return resp

    def sign_in(self, staff_id: str) -> dict[str, str]:
        """A fresh session: headers with the cookie and the CSRF token."""
        self.clock.advance(seconds=30)  # next TOTP step: never a reused code
        resp = self.login(staff_id)
        assert resp.status_code == 200, resp.text
        cookie = resp.cookies.get(SESSION_COOKIE)
        assert cookie
        return {"Cookie": f"{SESSION_COOKIE}={cookie}", CSRF_HEADER: resp.json()["csrf_token"]}


def rt_auth(app: FastAPI) -> Any:
    """The node's auth tables (its models module's ``auth``)."""
    kind = app.state.rt.config.kind
    return importlib.import_module(f"renkei.{kind}.models").auth


def _create_app(fed: Federation, node: str, db_url: str) -> FastAPI:
    config = fed.config(ORG_OF[node], node)
    engine = make_engine(db_url)
    factory = importlib.import_module(f"renkei.{node}.app").create_app
    if node == "atena":
        app: FastAPI = factory(config, engine=engine, auth_policy=CHEAP_POLICY)
    else:
        app = factory(config, engine=engine)
        app.state.auth_policy = CHEAP_POLICY
    return app


@contextmanager
def open_node(fed: Federation, node: str, db_url: str) -> Iterator[NodeKit]:
    app = _create_app(fed, node, db_url)
    clock = Clock()
    app.state.clock = clock
    app.state.rt.audit.clock = clock  # audit entries in the same (test) time as exports
    app.state.rt.guard_policy = QUIET_GUARD
    app.state.rt.registry.refresh = None  # never reach for a hub that is not there
    try:
        with TestClient(app, base_url="https://testserver") as client:
            yield NodeKit(node, app, client, clock)
    finally:
        app.state.rt.engine.dispose()
