"""An in-process atena with enrolled staff and business systems, and a movable clock.

Staff and OAuth clients are enrolled with `renkei.federation.setup.enrol_atena` (as the
demo does), with a cheap argon2 hasher; the credentials are read back from the 0600
file it writes. The authentication clock is `app.state.clock`: each sign-in moves it
one TOTP step ahead, so that no code is ever reused by accident.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyotp
from argon2 import PasswordHasher
from fastapi import FastAPI
from starlette.testclient import TestClient

from renkei.atena.api import CSRF_HEADER, SESSION_COOKIE
from renkei.atena.app import create_app
from renkei.atena.models import Base
from renkei.core.wire.guard import WorkingHours
from renkei.federation import setup
from renkei.federation.topology import SHINJUKU, Org
from renkei.staff.auth import AuthPolicy
from renkei.staff.oauth import CLIENT_ASSERTION_TYPE, GRANT_TYPE, make_client_assertion
from tests.api.fed import Federation, assert_problem, counts, unchanged

DATABASE_ENV = "RENKEI_NODE_DATABASE_URL"
CHILD_ALLOWANCE_AFFAIR = "JM01000000074000"
LOCAL_TAX_AFFAIR = "JM01000000016000"

CHEAP_POLICY = AuthPolicy(hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))

STAFF = [
    setup.StaffSpec("S0001", "児童手当係 職員（架空）", (f"{CHILD_ALLOWANCE_AFFAIR}:照会",)),
    setup.StaffSpec("S0002", "住民税係 職員（架空）", (f"{LOCAL_TAX_AFFAIR}:照会",)),
    setup.StaffSpec("S0003", "権限なし 職員（架空）", ()),
    setup.StaffSpec(
        "S0004",
        "両方の係 職員（架空）",
        (f"{CHILD_ALLOWANCE_AFFAIR}:照会", f"{LOCAL_TAX_AFFAIR}:照会"),
    ),
    setup.StaffSpec("S0005", "ロック確認用 職員（架空）", (f"{CHILD_ALLOWANCE_AFFAIR}:照会",)),
    setup.StaffSpec("S0006", "失敗確認用 職員（架空）", (f"{CHILD_ALLOWANCE_AFFAIR}:照会",)),
    setup.StaffSpec("S0007", "宛名係 職員（架空）", ("宛名:参照",)),
    setup.StaffSpec("S0008", "宛名係 主任（架空）", ("宛名:参照",)),
]
RESIDENTS = "jumin01:residents:register"
PSEUDONYMS = "jumin01:pseudonyms:acquire"
CHANGES = "jumin01:changes:register"
CLIENTS = [
    setup.ClientSpec("jumin01-batch", "jumin01", "住民記録（架空）", (RESIDENTS, PSEUDONYMS, CHANGES)),
    setup.ClientSpec("jumin01-reader", "jumin01", "符号取得だけ（架空）", (PSEUDONYMS,)),
    setup.ClientSpec("tax-batch", "tax", "税務（架空）", ("tax:fukuhon:register",)),
    setup.ClientSpec(
        "welfare-batch",
        "welfare",
        "福祉（架空）",
        ("welfare:numbering:register", "welfare:non_residents:register", "welfare:individual_numbers:search"),
    ),
    # 児童手当システム: inquiries for its own affair only (one scope per affair)
    setup.ClientSpec(
        "kodomo-batch", "child_allowance", "児童手当（架空）", (f"child_allowance:inquiries.{CHILD_ALLOWANCE_AFFAIR}:inquire",)
    ),
]
# Which credentials each business route takes in the tests: (client, scope).
BUSINESS_ROUTES = {
    "/v1/residents": ("jumin01-batch", RESIDENTS),
    "/v1/register/changes": ("jumin01-batch", CHANGES),
    "/v1/pseudonyms/acquire": ("jumin01-batch", PSEUDONYMS),
    "/v1/pseudonyms/status": ("jumin01-batch", PSEUDONYMS),
    "/v1/fukuhon": ("tax-batch", "tax:fukuhon:register"),
    "/v1/numbering": ("welfare-batch", "welfare:numbering:register"),
    "/v1/non-residents/candidates": ("welfare-batch", "welfare:non_residents:register"),
    "/v1/non-residents": ("welfare-batch", "welfare:non_residents:register"),
    "/v1/non-residents/individual-number": ("welfare-batch", "welfare:individual_numbers:search"),
}


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class AtenaKit:
    app: FastAPI
    client: TestClient
    credentials: dict[str, Any]
    clock: Clock
    tokens: dict[tuple[str, str], tuple[str, datetime]] = field(default_factory=dict)

    # --- observation --------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return counts(self.app.state.rt.engine, Base.metadata)

    def audit(self) -> list[dict[str, Any]]:
        table = Base.metadata.tables["audit_entries"]
        with self.app.state.rt.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(table.select().order_by(table.c.seq))]

    # --- staff --------------------------------------------------------------------------

    def password(self, staff_id: str) -> str:
        return str(self.credentials["staff"][staff_id]["password"])

    def totp(self, staff_id: str, at: datetime | None = None) -> str:
        uri = self.credentials["staff"][staff_id]["totp_uri"]
        return pyotp.TOTP(pyotp.parse_uri(uri).secret).at(at or self.clock())

    def login(self, staff_id: str, password: str | None = None, totp: str | None = None) -> httpx.Response:
        self.client.cookies.clear()
        body = {
            "staff_id": staff_id,
            "password": self.password(staff_id) if password is None else password,
            "totp": self.totp(staff_id) if totp is None else totp,
        }
        resp = self.client.post("/v1/session", json=body)
        self.client.cookies.clear()  # every request below names its credentials itself
        return resp

    def sign_in(self, staff_id: str) -> dict[str, str]:
        """A fresh session: headers with the cookie and the CSRF token."""
        self.clock.advance(seconds=30)  # next TOTP step: never a reused code
        resp = self.login(staff_id)
        assert resp.status_code == 200, resp.text
        cookie = resp.cookies.get(SESSION_COOKIE)
        assert cookie
        return {"Cookie": f"{SESSION_COOKIE}={cookie}", CSRF_HEADER: resp.json()["csrf_token"]}

    def api_token(self, staff_id: str, scopes: Sequence[str], days: int = 30) -> dict[str, str]:
        resp = self.client.post(
            "/v1/api-tokens",
            json={"name": "テスト用", "scopes": list(scopes), "expires_in_days": days},
            headers=self.sign_in(staff_id),
        )
        assert resp.status_code == 200, resp.text
        return {"Authorization": f"Bearer {resp.json()['token']}"}

    # --- business systems ---------------------------------------------------------------

    @property
    def token_url(self) -> str:
        return str(self.credentials["token_endpoint"])

    def secret(self, client_id: str) -> str:
        return str(self.credentials["clients"][client_id]["secret"])

    def token_form(self, assertion: str, scope: str) -> dict[str, str]:
        return {
            "grant_type": GRANT_TYPE,
            "scope": scope,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion,
        }

    def request_token(self, client_id: str, scope: str, **assertion: Any) -> httpx.Response:
        secret = assertion.pop("secret", self.secret(client_id))
        audience = assertion.pop("audience", self.token_url)
        now = assertion.pop("now", self.clock())
        jwt = make_client_assertion(client_id, secret, audience, now, **assertion)
        return self.client.post("/oauth/token", data=self.token_form(jwt, scope))

    def bearer(self, client_id: str, scope: str, *, fresh: bool = False) -> dict[str, str]:
        """An access token (kept for reuse while younger than five minutes of the clock)."""
        cached = self.tokens.get((client_id, scope))
        if fresh or cached is None or self.clock() - cached[1] >= timedelta(minutes=5):
            resp = self.request_token(client_id, scope)
            assert resp.status_code == 200, resp.text
            cached = (str(resp.json()["access_token"]), self.clock())
            self.tokens[(client_id, scope)] = cached
        return {"Authorization": f"Bearer {cached[0]}"}

    def headers_for(self, path: str, staff_id: str = "S0001") -> dict[str, str]:
        if path in BUSINESS_ROUTES:
            return self.bearer(*BUSINESS_ROUTES[path])
        return self.sign_in(staff_id)

    # --- requests -----------------------------------------------------------------------

    def post(self, path: str, body: Any = None, *, staff_id: str = "S0001", **kw: Any) -> httpx.Response:
        """POST with the credentials the route takes (a business system's token or a session)."""
        headers = {**self.headers_for(path, staff_id), **kw.pop("headers", {})}
        if body is not None:
            kw["json"] = body
        return self.client.post(path, headers=headers, **kw)

    def refused(
        self, path: str, body: Any, status: int, code: str, *, staff_id: str = "S0001"
    ) -> dict[str, Any]:
        """A refusal that writes nothing (but the audit entry), credentials being right."""
        headers = self.headers_for(path, staff_id)  # signing in writes: before the count
        before = self.counts()
        resp = self.client.post(path, json=body, headers=headers)
        problem = assert_problem(resp, status, code)
        unchanged(before, self.counts())
        return problem


@contextmanager
def _database(url: str | None) -> Iterator[None]:
    """The node's database while its configuration is read (``RENKEI_NODE_DATABASE_URL``)."""
    if url is None:
        yield
        return
    saved = os.environ.get(DATABASE_ENV)
    os.environ[DATABASE_ENV] = url
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(DATABASE_ENV, None)
        else:
            os.environ[DATABASE_ENV] = saved


@contextmanager
def open_atena(fed: Federation, org: Org = SHINJUKU, *, database_url: str | None = None) -> Iterator[AtenaKit]:
    """The atena of ``org`` (on ``database_url``, a fresh database, instead of its own SQLite file)."""
    with _database(database_url):
        setup.enrol_atena(fed.layout, org, STAFF, CLIENTS, policy=CHEAP_POLICY)
        credentials = setup.load_credentials(fed.layout, org)
        app = create_app(fed.config(org, "atena"), auth_policy=CHEAP_POLICY)
    # The off-hours rule follows the wall clock and would add alerts to the audit log
    # after 20:00 JST; it is tested with a fixed clock in tests/core/test_guard.py.
    rt = app.state.rt
    rt.guard_policy = replace(rt.guard_policy, working_hours=WorkingHours(enabled=False))
    clock = Clock()
    app.state.clock = clock
    with TestClient(app, base_url="https://testserver") as client:
        yield AtenaKit(app, client, credentials, clock)
