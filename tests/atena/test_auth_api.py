"""atena authenticates every caller: staff by session (password + TOTP) or personal API
token, business systems by OAuth 2.0 client credentials (client_secret_jwt).

Every refusal is problem+json with a stable code and a Japanese title, and is audited.
"""

from __future__ import annotations

import itertools
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event

from renkei.atena.api import CSRF_HEADER, SESSION_COOKIE
from renkei.core import ids
from renkei.federation import setup
from renkei.federation.topology import SHINJUKU
from tests.api.fed import Federation, assert_problem, unchanged
from tests.atena.kit import PSEUDONYMS, RESIDENTS, AtenaKit, open_atena

CHILD_NO = ids.make_atena_no(810_001)
TAX_NO = ids.make_atena_no(710_001)
UNKNOWN_CHILD_NO = ids.make_atena_no(810_999)


def person(n: int, **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "individual_number": ids.make_individual_number(f"{60_000_000_000 + n:011d}"),
        "family_name": "新宿",
        "given_name": f"花子{n}",
        "family_kana": "シンジュク",
        "given_kana": "ハナコ",
        "birth_date": "1985-04-01",
        "sex": "2",
        "postal_code": "1600022",
        "address": "東京都新宿区新宿一丁目1番1号",
        "lg_code": "131041",
        "business_numbers": {},
    }
    rec.update(over)
    return rec


def inquiry(procedure: str = "JT01010000074001", **over: Any) -> dict[str, Any]:
    body = {
        "system": "child_allowance",
        "business_atena_no": UNKNOWN_CHILD_NO,
        "procedure_code": procedure,
        "info_kind_code": "TM00000000000002",
        "provider_org": "1311480000000000",
        "as_of": "2024-06-01",
    }
    body.update(over)
    return body


TAX_PROCEDURE = "JT01010000016001"


@pytest.fixture(scope="module")
def atena(fed: Federation) -> Iterator[AtenaKit]:
    with open_atena(fed) as a:
        r = a.post(
            "/v1/residents",
            {"persons": [person(0, business_numbers={"child_allowance": CHILD_NO, "tax": TAX_NO})]},
        )
        assert r.status_code == 200, r.text
        yield a


def last_audit(atena: AtenaKit) -> tuple[str, str, str]:
    e = atena.audit()[-1]
    return (e["actor"], e["action"], e["outcome"])


# --- set-up -----------------------------------------------------------------------------------


def test_credentials_file_is_private_and_complete(atena: AtenaKit, fed: Federation) -> None:
    path = setup.credentials_path(fed.layout, SHINJUKU)
    assert path.parent.name == "secrets"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    creds = atena.credentials
    assert set(creds["staff"]) >= {"S0001", "S0002"}
    assert creds["staff"]["S0001"]["totp_uri"].startswith("otpauth://totp/")
    assert creds["clients"]["jumin01-batch"]["secret"]


def test_secrets_are_not_stored_in_clear(atena: AtenaKit) -> None:
    engine = atena.app.state.rt.engine
    with engine.connect() as conn:
        dump = repr([tuple(r) for t in ("auth_staff", "oauth_clients") for r in conn.exec_driver_sql(f"select * from {t}")])
    assert atena.password("S0001") not in dump
    assert atena.secret("jumin01-batch") not in dump
    assert "otpauth" not in dump


# --- no credentials ---------------------------------------------------------------------------

PROTECTED = [
    ("post", "/v1/residents", {"persons": [person(1)]}),
    ("post", "/v1/pseudonyms/acquire", {"business_atena_nos": [ids.make_atena_no(1)]}),
    ("post", "/v1/pseudonyms/status", {"business_atena_nos": [ids.make_atena_no(1)]}),
    ("post", "/v1/fukuhon", {"system": "tax", "records": []}),
    ("post", "/v1/inquiries", inquiry()),
    ("post", "/v1/api-tokens", {"name": "x", "scopes": ["管理"]}),
    ("get", "/v1/session", None),
    ("delete", "/v1/session", None),
]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED, ids=[f"{m} {p}" for m, p, _ in PROTECTED])
def test_no_credentials_is_401(atena: AtenaKit, method: str, path: str, body: Any) -> None:
    before = atena.counts()
    kw = {"json": body} if body is not None else {}
    resp = atena.client.request(method.upper(), path, **kw)
    assert_problem(resp, 401, "authentication_required")
    assert resp.headers["www-authenticate"].startswith("Bearer")
    unchanged(before, atena.counts())
    assert last_audit(atena)[0] == "anonymous"
    assert last_audit(atena)[2] == "authentication_required"


def test_garbage_bearer_is_401(atena: AtenaKit) -> None:
    resp = atena.client.post(
        "/v1/residents", json={"persons": [person(1)]}, headers={"Authorization": "Bearer nonsense"}
    )
    assert_problem(resp, 401, "invalid_token")
    resp = atena.client.post("/v1/inquiries", json=inquiry(), headers={"Authorization": "Bearer nonsense"})
    assert_problem(resp, 401, "token_invalid")


def test_unknown_session_cookie_is_401(atena: AtenaKit) -> None:
    resp = atena.client.get("/v1/session", headers={"Cookie": f"{SESSION_COOKIE}=made-up"})
    assert_problem(resp, 401, "session_unknown")


# --- sign-in ----------------------------------------------------------------------------------


def test_sign_in_sets_a_strict_cookie_and_returns_the_csrf_token(atena: AtenaKit) -> None:
    atena.clock.advance(seconds=30)
    resp = atena.login("S0001")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["staff_id"] == "S0001" and body["roles"] == ["JM01000000074000:照会"]
    assert body["csrf_token"]
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "secure", "path", "samesite"} <= attrs
    assert "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    assert "domain" not in attrs
    assert resp.headers.get("cache-control") == "no-store"
    token = resp.cookies[SESSION_COOKIE]
    me = atena.client.get("/v1/session", headers={"Cookie": f"{SESSION_COOKIE}={token}"})
    assert me.status_code == 200 and me.json()["via"] == "session"
    # Out of office hours the guard also records its off-hours alert (guard.*) after it.
    own = [
        (e["actor"], e["action"], e["outcome"])
        for e in atena.audit()
        if not str(e["action"]).startswith("guard.")
    ]
    assert own[-1] == ("S0001", "session.show", "ok") or own[-1][:2] == ("S0001", "session.login")


def test_wrong_password(atena: AtenaKit) -> None:
    atena.clock.advance(seconds=30)
    before = atena.counts()
    problem = assert_problem(atena.login("S0006", password="Wrong-password-123"), 401, "bad_credentials")
    assert "パスワード" in problem["title"]
    assert last_audit(atena) == ("S0006", "session.login", "bad_credentials")
    # An unknown staff ID gets the very same answer.
    unknown = assert_problem(atena.login("S0001", password="x"), 401, "bad_credentials")
    assert unknown["title"] == problem["title"]
    unchanged(before, atena.counts())
    atena.sign_in("S0006")  # a good sign-in clears the failure count


def test_unknown_staff_id_is_bad_credentials(atena: AtenaKit) -> None:
    resp = atena.client.post("/v1/session", json={"staff_id": "S9999", "password": "x", "totp": "123456"})
    assert_problem(resp, 401, "bad_credentials")
    # A staff ID that looks like an individual number never reaches the audit log.
    number = ids.make_individual_number("12345678901")
    resp = atena.client.post("/v1/session", json={"staff_id": number, "password": "x", "totp": "1"})
    assert_problem(resp, 401, "bad_credentials")
    assert last_audit(atena)[0] == "anonymous"


def test_wrong_missing_and_reused_totp(atena: AtenaKit) -> None:
    atena.clock.advance(seconds=30)
    good = atena.totp("S0006")
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    assert_problem(atena.login("S0006", totp=wrong), 401, "totp_invalid")
    resp = atena.client.post(
        "/v1/session", json={"staff_id": "S0006", "password": atena.password("S0006")}
    )
    assert_problem(resp, 401, "totp_required")
    assert atena.login("S0006", totp=good).status_code == 200
    assert_problem(atena.login("S0006", totp=good), 401, "totp_reused")
    assert last_audit(atena) == ("S0006", "session.login", "totp_reused")
    atena.sign_in("S0006")


def test_throttled_after_five_failures_and_answered_like_a_wrong_password(atena: AtenaKit) -> None:
    atena.clock.advance(seconds=30)
    for _ in range(5):
        wrong = assert_problem(atena.login("S0005", password="Wrong-password-123"), 401, "bad_credentials")
    # Even the right password and code are refused while throttled, with the very same
    # answer as a wrong password or an ID that does not exist.
    assert assert_problem(atena.login("S0005"), 401, "bad_credentials") == wrong
    assert last_audit(atena) == ("S0005", "session.login", "throttled")
    unknown = atena.client.post(
        "/v1/session", json={"staff_id": "S9999", "password": "Wrong-password-123", "totp": "123456"}
    )
    assert assert_problem(unknown, 401, "bad_credentials") == wrong
    # The delay ends by itself (two seconds after the fifth failure).
    atena.clock.advance(seconds=2)
    assert atena.login("S0005").status_code == 200


def test_idle_session_expires(atena: AtenaKit) -> None:
    headers = atena.sign_in("S0001")
    assert atena.client.get("/v1/session", headers=headers).status_code == 200
    atena.clock.advance(minutes=29)
    assert atena.client.get("/v1/session", headers=headers).status_code == 200
    atena.clock.advance(minutes=31)
    problem = assert_problem(atena.client.get("/v1/session", headers=headers), 401, "session_expired")
    assert "ログイン" in problem["title"]
    assert last_audit(atena) == ("anonymous", "session.show", "session_expired")


def test_absolute_session_end(atena: AtenaKit) -> None:
    headers = atena.sign_in("S0001")
    for _ in range(17):  # active every 29 minutes, for more than eight hours
        atena.clock.advance(minutes=29)
        resp = atena.client.get("/v1/session", headers=headers)
        if resp.status_code != 200:
            break
    assert_problem(resp, 401, "session_expired")


def test_logout_ends_the_session(atena: AtenaKit) -> None:
    headers = atena.sign_in("S0001")
    assert_problem(atena.client.delete("/v1/session", headers={"Cookie": headers["Cookie"]}), 403, "csrf_failed")
    resp = atena.client.delete("/v1/session", headers=headers)
    assert resp.status_code == 204
    assert SESSION_COOKIE in resp.headers["set-cookie"] and "max-age=0" in resp.headers["set-cookie"].lower()
    assert_problem(atena.client.get("/v1/session", headers=headers), 401, "session_revoked")
    assert_problem(atena.client.post("/v1/inquiries", json=inquiry(), headers=headers), 401, "session_revoked")


# --- CSRF -------------------------------------------------------------------------------------


def test_cookie_request_without_csrf_token_is_refused(atena: AtenaKit) -> None:
    headers = atena.sign_in("S0001")
    before = atena.counts()
    resp = atena.client.post("/v1/inquiries", json=inquiry(), headers={"Cookie": headers["Cookie"]})
    problem = assert_problem(resp, 403, "csrf_failed")
    assert "不正な要求" in problem["title"]
    assert last_audit(atena) == ("S0001", "inquiry", "csrf_failed")
    resp = atena.client.post(
        "/v1/inquiries", json=inquiry(), headers={"Cookie": headers["Cookie"], CSRF_HEADER: "x" * 43}
    )
    assert_problem(resp, 403, "csrf_failed")
    # Another session's token does not do either.
    other = atena.sign_in("S0001")
    unchanged(before, {**atena.counts(), "auth_sessions": before["auth_sessions"]})
    resp = atena.client.post(
        "/v1/inquiries", json=inquiry(), headers={"Cookie": headers["Cookie"], CSRF_HEADER: other[CSRF_HEADER]}
    )
    assert_problem(resp, 403, "csrf_failed")
    # With the right token the request gets past authentication (to the unknown number).
    resp = atena.client.post("/v1/inquiries", json=inquiry(), headers=headers)
    assert_problem(resp, 404, "unknown_business_atena_no")


# --- the inquiry's first transaction -----------------------------------------------------------


@contextmanager
def transactions_of(atena: AtenaKit) -> Iterator[list[tuple[int, str]]]:
    """The statements run meanwhile, each with the number of the transaction it ran in."""
    engine = atena.app.state.rt.engine
    seen: list[tuple[int, str]] = []
    numbers = itertools.count(1)

    def begun(conn: Any) -> None:
        conn.info["test_tx"] = next(numbers)

    def executed(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append((conn.info.get("test_tx", 0), " ".join(statement.split()).lower()))

    event.listen(engine, "begin", begun)
    event.listen(engine, "before_cursor_execute", executed)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", executed)
        event.remove(engine, "begin", begun)


def _tx_of(seen: list[tuple[int, str]], start: str, table: str) -> set[int]:
    return {tx for tx, sql in seen if sql.startswith(start) and f" {table}" in sql}


@pytest.mark.parametrize("caller", ["session", "api_token", "business_system"])
def test_inquiry_checks_its_caller_in_its_first_transaction(atena: AtenaKit, caller: str) -> None:
    """The caller's credentials, the person's look-up and the refusal's audit entry are one
    transaction: no transaction of its own for the sign-in check."""
    if caller == "session":
        headers = atena.sign_in("S0001")
    elif caller == "api_token":
        headers = atena.api_token("S0001", ["JM01000000074000:照会"])
    else:
        headers = atena.bearer("kodomo-batch", "child_allowance:inquiries.JM01000000074000:inquire")
    with transactions_of(atena) as seen:
        resp = atena.client.post("/v1/inquiries", json=inquiry(), headers=headers)
    assert_problem(resp, 404, "unknown_business_atena_no")
    actor = "kodomo-batch" if caller == "business_system" else "S0001"
    assert last_audit(atena) == (actor, "inquiry", "unknown_business_atena_no")
    credentials = {"session": "auth_sessions", "api_token": "auth_api_tokens", "business_system": "oauth_tokens"}
    checked = _tx_of(seen, "select", credentials[caller])
    looked_up = _tx_of(seen, "select", "business_links")
    audited = _tx_of(seen, "insert", "audit_entries")
    assert len(checked) == 1 and checked == looked_up == audited, seen
    if caller == "session":
        # The session is read once: its CSRF token's hash comes with it.
        assert sum(1 for _, sql in seen if sql.startswith("select") and " auth_sessions" in sql) == 1


def test_a_refused_caller_comes_before_a_refused_body(atena: AtenaKit) -> None:
    """A body FastAPI refuses (422, not audited) is refused only after the caller passed:
    a caller refused is refused first (and audited), as on every other route."""
    bad = inquiry(as_of=20240601)  # not a string
    assert_problem(atena.client.post("/v1/inquiries", json=bad), 401, "authentication_required")
    assert last_audit(atena) == ("anonymous", "inquiry", "authentication_required")
    unknown = {"Cookie": f"{SESSION_COOKIE}=made-up", CSRF_HEADER: "x" * 43}
    assert_problem(atena.client.post("/v1/inquiries", json=bad, headers=unknown), 401, "session_unknown")
    assert last_audit(atena) == ("anonymous", "inquiry", "session_unknown")
    headers = atena.sign_in("S0001")
    no_csrf = {"Cookie": headers["Cookie"]}
    assert_problem(atena.client.post("/v1/inquiries", json=bad, headers=no_csrf), 403, "csrf_failed")
    assert last_audit(atena) == ("S0001", "inquiry", "csrf_failed")
    garbage = {"Authorization": "Bearer nonsense"}
    not_json = {**garbage, "content-type": "text/plain"}
    resp = atena.client.post("/v1/inquiries", content=json.dumps(inquiry()), headers=not_json)
    assert_problem(resp, 401, "token_invalid")
    # The caller passes: then the body's 422, and nothing audited.
    entries = len(atena.audit())
    assert_problem(atena.client.post("/v1/inquiries", json=bad, headers=headers), 422, "invalid_request")
    resp = atena.client.post(
        "/v1/inquiries", content=json.dumps(inquiry()), headers={**headers, "content-type": "text/plain"}
    )
    assert_problem(resp, 422, "invalid_request")
    assert len(atena.audit()) == entries
    # A good body with a bad caller is refused in the inquiry's own first unit, the same way.
    assert_problem(atena.client.post("/v1/inquiries", json=inquiry(), headers=unknown), 401, "session_unknown")
    assert last_audit(atena) == ("anonymous", "inquiry", "session_unknown")
    assert_problem(atena.client.post("/v1/inquiries", json=inquiry(), headers=no_csrf), 403, "csrf_failed")
    assert last_audit(atena) == ("S0001", "inquiry", "csrf_failed")


# --- affair roles -----------------------------------------------------------------------------


def test_staff_without_the_affair_role_is_refused(atena: AtenaKit) -> None:
    resp = atena.client.post("/v1/inquiries", json=inquiry(), headers=atena.sign_in("S0002"))
    assert_problem(resp, 403, "affair_not_permitted")
    entry = atena.audit()[-1]
    assert (entry["actor"], entry["outcome"], entry["affair"]) == (
        "S0002",
        "affair_not_permitted",
        "JM01000000074000",
    )
    # The same clerk may inquire in their own affair (gets past the role check).
    resp = atena.client.post(
        "/v1/inquiries",
        json=inquiry(TAX_PROCEDURE, system="tax", business_atena_no=ids.make_atena_no(710_999)),
        headers=atena.sign_in("S0002"),
    )
    assert_problem(resp, 404, "unknown_business_atena_no")


# --- personal API tokens ----------------------------------------------------------------------


def test_api_token_is_limited_to_its_scopes(atena: AtenaKit) -> None:
    token = atena.api_token("S0004", ["JM01000000074000:照会"])
    # No CSRF token needed with a bearer token.
    resp = atena.client.post("/v1/inquiries", json=inquiry(), headers=token)
    assert_problem(resp, 404, "unknown_business_atena_no")
    resp = atena.client.post(
        "/v1/inquiries",
        json=inquiry(TAX_PROCEDURE, system="tax", business_atena_no=ids.make_atena_no(710_999)),
        headers=token,
    )
    assert_problem(resp, 403, "affair_not_permitted")
    me = atena.client.get("/v1/session", headers=token).json()
    assert me == {
        "staff_id": "S0004",
        "name": "両方の係 職員(架空)",  # names are kept NFKC-normalized
        "roles": ["JM01000000074000:照会"],
        "via": "api_token",
    }
    # The same staff member's session holds both roles.
    resp = atena.client.post(
        "/v1/inquiries",
        json=inquiry(TAX_PROCEDURE, system="tax", business_atena_no=ids.make_atena_no(710_999)),
        headers=atena.sign_in("S0004"),
    )
    assert_problem(resp, 404, "unknown_business_atena_no")


def test_api_token_rules(atena: AtenaKit) -> None:
    session = atena.sign_in("S0001")
    resp = atena.client.post(
        "/v1/api-tokens", json={"name": "x", "scopes": ["JM01000000016000:照会"]}, headers=session
    )
    assert_problem(resp, 403, "scope_denied")
    assert last_audit(atena) == ("S0001", "api_token.issue", "scope_denied")
    token = atena.api_token("S0001", ["JM01000000074000:照会"])
    # A token cannot make another token, nor log out.
    resp = atena.client.post(
        "/v1/api-tokens", json={"name": "x", "scopes": ["JM01000000074000:照会"]}, headers=token
    )
    assert_problem(resp, 403, "session_required")
    assert_problem(atena.client.delete("/v1/session", headers=token), 403, "session_required")
    # Nor does it work for business-system routes (it is not an OAuth access token).
    resp = atena.client.post("/v1/residents", json={"persons": [person(5)]}, headers=token)
    assert_problem(resp, 401, "invalid_token")


def test_api_token_expires(atena: AtenaKit) -> None:
    token = atena.api_token("S0001", ["JM01000000074000:照会"], days=1)
    atena.clock.advance(days=1, seconds=1)
    assert_problem(atena.client.get("/v1/session", headers=token), 401, "token_expired")


# --- business systems (OAuth) -----------------------------------------------------------------


def test_business_system_with_the_right_scope(atena: AtenaKit) -> None:
    resp = atena.client.post(
        "/v1/residents", json={"persons": [person(10)]}, headers=atena.bearer("jumin01-batch", RESIDENTS)
    )
    assert resp.status_code == 200, resp.text
    # The numbering, then its pseudonym acquisition (deferred: no chukan in this test).
    entries = [(e["actor"], e["action"], e["outcome"]) for e in atena.audit()[-2:]]
    assert entries == [
        ("jumin01-batch", "residents.register", "ok"),
        ("jumin01-batch", "pseudonym.acquire", "peer_unavailable"),
    ]


def test_token_with_the_wrong_scope_is_403(atena: AtenaKit) -> None:
    before = atena.counts()
    headers = atena.bearer("jumin01-reader", PSEUDONYMS)
    before = atena.counts()
    resp = atena.client.post("/v1/residents", json={"persons": [person(11)]}, headers=headers)
    problem = assert_problem(resp, 403, "insufficient_scope")
    assert "jumin01:residents:register" in problem["title"]
    challenge = resp.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="jumin01:residents:register"' in challenge
    assert last_audit(atena) == ("jumin01-reader", "residents.register", "insufficient_scope")
    unchanged(before, atena.counts())


def test_fukuhon_scope_follows_the_system_in_the_body(atena: AtenaKit) -> None:
    headers = atena.bearer("tax-batch", "tax:fukuhon:register")
    records = [{"business_atena_no": TAX_NO, "info_kind_code": "TM00000000000002", "values": {}}]
    resp = atena.client.post("/v1/fukuhon", json={"system": "child_allowance", "records": records}, headers=headers)
    assert_problem(resp, 403, "insufficient_scope")
    resp = atena.client.post("/v1/fukuhon", json={"system": "税務", "records": records}, headers=headers)
    assert_problem(resp, 403, "insufficient_scope")
    # An unknown token stays a 401, whatever the body says.
    bad = {"Authorization": "Bearer made-up"}
    resp = atena.client.post("/v1/fukuhon", json={"system": "税務", "records": records}, headers=bad)
    assert_problem(resp, 401, "invalid_token")
    # Its own system gets past authorization (to the chukan, which no one runs here).
    resp = atena.client.post("/v1/fukuhon", json={"system": "tax", "records": records}, headers=headers)
    assert_problem(resp, 503, "peer_unavailable")


def test_staff_session_is_not_a_business_system(atena: AtenaKit) -> None:
    resp = atena.client.post("/v1/residents", json={"persons": [person(12)]}, headers=atena.sign_in("S0001"))
    assert_problem(resp, 401, "authentication_required")
    # An OAuth access token is a business system's, never a staff credential: on the
    # inquiry route it holds no staff role, only the system's inquiry scopes (none here).
    resp = atena.client.post("/v1/inquiries", json=inquiry(), headers=atena.bearer("jumin01-batch", RESIDENTS))
    assert assert_problem(resp, 403, "affair_not_permitted")["title"].startswith("この業務システムは")


def test_access_token_expires(atena: AtenaKit) -> None:
    headers = atena.bearer("jumin01-batch", PSEUDONYMS, fresh=True)
    atena.clock.advance(minutes=11)
    resp = atena.client.post("/v1/pseudonyms/status", json={"business_atena_nos": []}, headers=headers)
    assert_problem(resp, 401, "invalid_token")


def _oauth_error(resp: Any, status: int, error: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert body["error"] == error, body
    assert resp.headers.get("cache-control") == "no-store"
    return body


def test_expired_client_assertion_is_invalid_client(atena: AtenaKit) -> None:
    old = atena.clock() - timedelta(minutes=5)
    _oauth_error(atena.request_token("jumin01-batch", RESIDENTS, now=old), 401, "invalid_client")


def test_forged_client_assertion_is_invalid_client(atena: AtenaKit) -> None:
    forged = atena.request_token("jumin01-batch", RESIDENTS, secret="not-the-secret-" + "x" * 30)
    body = _oauth_error(forged, 401, "invalid_client")
    assert "クライアント認証" in body["error_description"]
    # An assertion made for another server (audience) is refused too.
    other = atena.request_token("jumin01-batch", RESIDENTS, audience="https://evil.example/oauth/token")
    _oauth_error(other, 401, "invalid_client")
    # So is one replayed.
    from renkei.staff.oauth import make_client_assertion

    jwt = make_client_assertion("jumin01-batch", atena.secret("jumin01-batch"), atena.token_url, atena.clock())
    assert atena.client.post("/oauth/token", data=atena.token_form(jwt, RESIDENTS)).status_code == 200
    _oauth_error(atena.client.post("/oauth/token", data=atena.token_form(jwt, RESIDENTS)), 401, "invalid_client")


def test_scope_beyond_the_client_is_not_granted(atena: AtenaKit) -> None:
    _oauth_error(atena.request_token("jumin01-reader", RESIDENTS), 400, "invalid_scope")


def test_openapi_documents_the_sign_in_and_token_endpoints(atena: AtenaKit) -> None:
    paths = atena.client.get("/openapi.json").json()["paths"]
    assert {"/v1/session", "/v1/api-tokens", "/oauth/token", "/oauth/introspect"} <= set(paths)
    assert set(paths["/v1/session"]) == {"get", "post", "delete"}
    inquiry_schema = atena.client.get("/openapi.json").json()["components"]["schemas"]["InquiryIn"]
    assert "staff_id" not in inquiry_schema["properties"]
