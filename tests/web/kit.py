"""An in-process atena staff UI on a fresh database (SQLite, and PostgreSQL when configured).

The staff app shares the atena app's runtime, as in `renkei serve atena`. Staff are
created with the kernel's `create_staff` and a cheap argon2 hasher; their TOTP codes
come from the provisioning URIs and the movable clock (each sign-in moves it one TOTP
step ahead, so that no code is reused by accident). Residents are registered with
`service.register_residents`: all data is synthetic.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pyotp
from fastapi import FastAPI
from sqlalchemy import select
from starlette.testclient import TestClient

from renkei.atena import service
from renkei.atena.app import MIGRATIONS, create_app
from renkei.atena.models import Base, Person
from renkei.atena.models import auth as auth_t
from renkei.core import ids
from renkei.core.audit.timestamping import STAMP_TYP
from renkei.core.db import make_engine, migrate, transaction
from renkei.federation.topology import SHINJUKU
from renkei.staff.auth import create_staff
from renkei.web.atena import create_staff_app
from renkei.web.pages import TERMINAL_WARNING
from renkei.web.site import LOGIN_COOKIE, SESSION_COOKIE, PasswordRules
from tests.api.fed import Federation, counts
from tests.atena.kit import CHEAP_POLICY, CHILD_ALLOWANCE_AFFAIR, LOCAL_TAX_AFFAIR, Clock

PASSWORD = "Kari-Pass-2026!x"  # synthetic; meets the policy
VIEW = "宛名:参照"
REVEAL = "個人番号:表示"
STAFF: dict[str, tuple[str, tuple[str, ...]]] = {
    "clerk": ("児童手当係（架空）", (VIEW, f"{CHILD_ALLOWANCE_AFFAIR}:照会", REVEAL)),
    "tax": ("住民税係（架空）", (VIEW, f"{LOCAL_TAX_AFFAIR}:照会")),
    "taxnum": ("住民税係・番号（架空）", (VIEW, f"{LOCAL_TAX_AFFAIR}:照会", REVEAL)),
    "viewer": ("宛名照会のみ（架空）", (VIEW,)),
    "registrar": ("宛名係 住登外者登録（架空）", (VIEW, "宛名:更新", f"{CHILD_ALLOWANCE_AFFAIR}:照会", REVEAL)),
    "nobody": ("権限なし（架空）", ()),
    "admin": ("システム管理者（架空）", ("管理",)),
    "auditor": ("監査担当（架空）", ("監査",)),
}
CHILD_SYSTEM_NO = ids.make_atena_no(810_001)
TAX_SYSTEM_NO = ids.make_atena_no(710_001)
BIRTH = date(1985, 4, 1)
KANA_CROWD = 25  # persons named シンジュク… born on BIRTH: two pages of results
# Audit, guard counters and session touches may change on a refused request; nothing else.
AUDIT_TABLES = {
    "audit_entries", "audit_head", "audit_checkpoints", "audit_receipts", "outbox:" + STAMP_TYP,
    "guard_counters", "guard_lookups", "guard_secret", "guard_alerts", "auth_throttle",
}
_CSRF_INPUT = re.compile(r'name="(?:csrf_token|login_csrf)" value="([^"]+)"')


def resident(n: int, **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "individual_number": ids.make_individual_number(f"{61_000_000_000 + n:011d}"),
        "family_name": "新宿",
        "given_name": f"花子{n}",
        "family_kana": "シンジュク",
        "given_kana": f"ハナコ{'ア' * (n % 3)}",
        "birth_date": BIRTH.isoformat(),
        "sex": "2",
        "postal_code": "1600022",
        "address": f"東京都新宿区新宿一丁目{n + 1}番1号",
        "lg_code": "131041",
        "business_numbers": {},
    }
    rec.update(over)
    return rec


def number_of(n: int) -> str:
    return str(resident(n)["individual_number"])


def csrf_in(html: str) -> str:
    match = _CSRF_INPUT.search(html)
    assert match, "no CSRF field in the page"
    return match.group(1)


@dataclass
class Web:
    atena: FastAPI
    app: FastAPI
    client: TestClient
    clock: Clock
    uris: dict[str, str]
    people: list[str] = field(default_factory=list)  # 統合宛名番号 of resident(0), resident(1), …

    # --- observation --------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return counts(self.atena.state.rt.engine, Base.metadata)

    def unchanged_since(self, before: dict[str, int]) -> None:
        after = self.counts()
        changed = {k: (v, after[k]) for k, v in before.items() if k not in AUDIT_TABLES and after[k] != v}
        assert not changed, f"rows written: {changed}"

    def audit(self) -> list[dict[str, Any]]:
        table = Base.metadata.tables["audit_entries"]
        with self.atena.state.rt.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(table.select().order_by(table.c.seq))]

    def last_audit(self, action: str | None = None) -> dict[str, Any]:
        entries = [e for e in self.audit() if action is None or e["action"] == action]
        assert entries, f"no audit entry {action}"
        return entries[-1]

    def staff_row(self, staff_id: str) -> Any:
        with self.atena.state.rt.engine.connect() as conn:
            return conn.execute(select(auth_t.staff).where(auth_t.staff.c.staff_id == staff_id)).one()

    # --- staff --------------------------------------------------------------------------

    def totp(self, staff_id: str, at: datetime | None = None) -> str:
        return pyotp.TOTP(pyotp.parse_uri(self.uris[staff_id]).secret).at(at or self.clock())

    def login_token(self) -> str:
        resp = self.client.get("/login")
        assert resp.status_code == 200
        return csrf_in(resp.text)

    def post_login(self, staff_id: str, password: str = PASSWORD, totp: str | None = None, **kw: Any) -> httpx.Response:
        form = {
            "login_csrf": self.login_token(),
            "staff_id": staff_id,
            "password": password,
            "totp": self.totp(staff_id) if totp is None else totp,
            **kw,
        }
        resp: httpx.Response = self.client.post("/login", data=form, follow_redirects=False)
        return resp

    def sign_in(self, staff_id: str) -> str:
        """Sign in (fresh TOTP step); returns the session's CSRF token."""
        self.client.cookies.clear()
        self.clock.advance(seconds=30)
        resp = self.post_login(staff_id)
        assert resp.status_code == 303, resp.text
        assert resp.cookies.get(SESSION_COOKIE)
        home = self.client.get("/")
        assert home.status_code == 200, home.text
        return csrf_in(home.text)

    def htmx(self) -> dict[str, str]:
        return {"HX-Request": "true"}


def add_staff(web_atena: FastAPI, clock: Clock, staff_id: str, name: str, roles: tuple[str, ...]) -> str:
    rt = web_atena.state.rt
    with transaction(rt.sessions) as s:
        return create_staff(
            s, auth_t, web_atena.state.cipher, staff_id, name, PASSWORD, roles,
            policy=CHEAP_POLICY, now=clock() - timedelta(days=1),
        )


@contextmanager
def open_web(
    fed: Federation,
    db_url: str,
    *,
    terminal_check: bool = False,
    passwords: PasswordRules | None = None,
    client: tuple[str, int] = ("testclient", 50000),
    residents: bool = True,
) -> Iterator[Web]:
    engine = make_engine(db_url)
    try:
        atena = create_app(fed.config(SHINJUKU, "atena"), engine=engine, auth_policy=CHEAP_POLICY)
        clock = Clock()
        atena.state.clock = clock
        migrate(engine, MIGRATIONS, Base.metadata)
        uris = {sid: add_staff(atena, clock, sid, name, roles) for sid, (name, roles) in STAFF.items()}
        people: list[str] = []
        if residents:
            with transaction(atena.state.rt.sessions) as s:
                first = resident(
                    0, business_numbers={"child_allowance": CHILD_SYSTEM_NO, "tax": TAX_SYSTEM_NO}
                )
                crowd = [resident(n) for n in range(1, KANA_CROWD)]
                people = service.register_residents(s, atena.state.cipher, [first, *crowd], clock())
                # A move within the ward: a second version of resident 0's 基本4情報.
                moved = resident(0, address="東京都新宿区西新宿二丁目8番1号", effective_on="2024-10-01")
                service.register_residents(s, atena.state.cipher, [moved], clock() + timedelta(seconds=1))
                assert s.scalar(select(Person.atena_no).where(Person.atena_no == people[0]))
        # change_initial=False: the accounts above keep their password; tests of the
        # expiry rules open the app with their own PasswordRules.
        app = create_staff_app(
            atena,
            terminal_check=terminal_check,
            passwords=passwords or PasswordRules(change_initial=False),
        )
        with TestClient(app, base_url="https://testserver", client=client) as tc:
            yield Web(atena, app, tc, clock, uris, people)
    finally:
        engine.dispose()


__all__ = [
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "TERMINAL_WARNING",
    "Web",
    "open_web",
]
