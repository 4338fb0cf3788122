"""OAuth 2.0 client credentials with client_secret_jwt (共通機能標準仕様書 §2.2.5).

Every refusal the profile requires is checked at the service level on each backend, then
the token and introspection endpoints are exercised over HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI, Request
from sqlalchemy import Engine, MetaData, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.responses import JSONResponse, Response
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from renkei.core.crypto.field import FieldCipher
from renkei.core.db import make_engine, make_sessionmaker, transaction
from renkei.staff.oauth import (
    CLIENT_ASSERTION_TYPE,
    ClientPrincipal,
    OAuthError,
    OAuthTables,
    Scope,
    TokenResponse,
    authenticate_bearer,
    bearer_problem_response,
    hash_token,
    introspect,
    issue_token,
    make_client_assertion,
    oauth_router,
    oauth_tables,
    parse_scope,
    purge_expired,
    register_client,
    revoke_client,
    rotate_client_secret,
)

NOW = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
TOKEN_URL = "https://atena.example.lg.jp/oauth/token"
TAX = "tax01-batch"
TAX_SCOPES = ["tax01:fukuhon:register", "tax01:inquiry:create"]
KODOMO = "kodomo01-app"


def _has_japanese(s: str) -> bool:
    return any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in s)


@dataclass
class Env:
    engine: Engine
    sessions: sessionmaker[Session]
    tables: OAuthTables
    cipher: FieldCipher
    secrets: dict[str, str]

    def token(self, form: dict[str, str], now: datetime = NOW, lifetime_s: int = 600) -> TokenResponse:
        with transaction(self.sessions) as s:
            return issue_token(s, self.tables, self.cipher, form=form, token_endpoint=TOKEN_URL, now=now, lifetime_s=lifetime_s)

    def refused(self, form: dict[str, str], now: datetime = NOW) -> OAuthError:
        with pytest.raises(OAuthError) as info:
            self.token(form, now)
        return info.value

    def introspect(self, token: str, now: datetime = NOW) -> dict[str, Any]:
        with self.sessions() as s:
            return introspect(s, self.tables, token, now)

    def bearer(self, header: str | None, scope: str, now: datetime = NOW) -> ClientPrincipal:
        with self.sessions() as s:
            return authenticate_bearer(s, self.tables, header, scope, now)


@pytest.fixture
def env(db_url: str) -> Iterator[Env]:
    md = MetaData()
    tables = oauth_tables(md)
    engine = make_engine(db_url)
    md.create_all(engine)
    sessions = make_sessionmaker(engine)
    cipher = FieldCipher.generate()
    with transaction(sessions) as s:
        tax = register_client(
            s, tables, cipher, client_id=TAX, system_id="tax01", name="住民税システム（架空）", allowed_scopes=TAX_SCOPES, now=NOW
        )
        kodomo = register_client(
            s, tables, cipher, client_id=KODOMO, system_id="kodomo01", name="児童手当システム（架空）",
            allowed_scopes=["kodomo01:inquiry:create"], now=NOW,
        )
    yield Env(engine, sessions, tables, cipher, {TAX: tax, KODOMO: kodomo})
    engine.dispose()


def form_for(assertion: str, scope: str | None = "tax01:fukuhon:register", **extra: str) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    if scope is not None:
        form["scope"] = scope
    form.update(extra)
    return form


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def craft(header: dict[str, Any], claims: dict[str, Any], key: bytes | None, digest: str = "sha256") -> str:
    """A JWS built by hand, so that any header, claim or algorithm can be sent."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    sig = b"" if key is None else hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64(sig)}"


def claims_for(client_id: str = TAX, now: datetime = NOW, **over: Any) -> dict[str, Any]:
    iat = int(now.timestamp())
    claims: dict[str, Any] = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "iat": iat, "exp": iat + 60, "jti": f"jti-{random.random()}"}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def signed(env: Env, client_id: str = TAX, *, header: dict[str, Any] | None = None, secret: str | None = None, **over: Any) -> str:
    key = (secret if secret is not None else env.secrets[client_id]).encode()
    return craft(header or {"alg": "HS256", "typ": "JWT"}, claims_for(client_id, **over), key)


# --- happy path -----------------------------------------------------------------------


def test_token_issued_introspected_and_accepted(env: Env) -> None:
    assertion = make_client_assertion(TAX, env.secrets[TAX], TOKEN_URL, NOW)
    resp = env.token(form_for(assertion, "tax01:fukuhon:register tax01:inquiry:create tax01:fukuhon:register"))
    assert resp.token_type == "Bearer" and resp.expires_in == 600
    assert resp.scope == "tax01:fukuhon:register tax01:inquiry:create"
    assert set(resp.to_dict()) == {"access_token", "token_type", "expires_in", "scope"}  # no refresh_token
    assert len(resp.access_token) >= 43 and resp.access_token not in repr(resp)

    info = env.introspect(resp.access_token)
    assert info == {
        "active": True,
        "client_id": TAX,
        "scope": "tax01:fukuhon:register tax01:inquiry:create",
        "exp": int(NOW.timestamp()) + 600,
        "iat": int(NOW.timestamp()),
        "sub": TAX,
    }
    principal = env.bearer(f"Bearer {resp.access_token}", "tax01:inquiry:create", NOW + timedelta(seconds=599))
    assert principal == ClientPrincipal(TAX, "tax01", ("tax01:fukuhon:register", "tax01:inquiry:create"))
    assert env.bearer(f"bearer {resp.access_token}", "tax01:fukuhon:register").client_id == TAX

    # Only the hash of the token is stored.
    with env.sessions() as s:
        rows = s.execute(select(env.tables.tokens)).mappings().all()
    assert [r["id"] for r in rows] == [hashlib.sha256(resp.access_token.encode()).hexdigest()]
    assert resp.access_token not in repr(rows)


def test_token_lifetime_and_other_client(env: Env) -> None:
    resp = env.token(form_for(make_client_assertion(KODOMO, env.secrets[KODOMO], TOKEN_URL, NOW), "kodomo01:inquiry:create"), lifetime_s=120)
    assert resp.expires_in == 120
    assert env.introspect(resp.access_token, NOW + timedelta(seconds=119))["active"] is True
    assert env.introspect(resp.access_token, NOW + timedelta(seconds=120)) == {"active": False}


def test_secret_is_random_and_stored_encrypted(env: Env) -> None:
    secret = env.secrets[TAX]
    assert len(base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))) * 8 >= 256
    assert env.secrets[TAX] != env.secrets[KODOMO]
    with env.sessions() as s:
        row = s.execute(select(env.tables.clients).where(env.tables.clients.c.client_id == TAX)).mappings().one()
    assert secret.encode() not in bytes(row["secret"])
    assert env.cipher.decrypt(bytes(row["secret"]), ("oauth_clients", "secret", TAX)) == secret
    assert row["allowed_scopes"] == TAX_SCOPES and row["active"] is True and row["system_id"] == "tax01"


# --- scopes and registration ----------------------------------------------------------


def test_parse_scope() -> None:
    assert parse_scope("tax01:fukuhon:register") == Scope("tax01", "fukuhon", "register")
    assert str(parse_scope("kodomo01:inquiry:create")) == "kodomo01:inquiry:create"


@pytest.mark.parametrize(
    "bad", ["", "tax01", "tax01:fukuhon", "tax01:fukuhon:register:x", "tax01::register", ":a:b", "税務:a:b", "tax01:fukuhon:register ", "a b:c:d", "-x:a:b"]
)
def test_parse_scope_refuses_malformed(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_scope(bad)
    assert _has_japanese(str(info.value))


def test_register_client_checks(env: Env) -> None:
    cases: list[dict[str, Any]] = [
        {"client_id": "x1", "system_id": "tax01", "allowed_scopes": ["kodomo01:inquiry:create"]},  # other system's scope
        {"client_id": "x2", "system_id": "tax01", "allowed_scopes": ["tax01:fukuhon"]},  # malformed
        {"client_id": "x3", "system_id": "tax01", "allowed_scopes": []},
        {"client_id": "x4", "system_id": "tax01", "allowed_scopes": "tax01:fukuhon:register"},  # not a list
        {"client_id": TAX, "system_id": "tax01", "allowed_scopes": TAX_SCOPES},  # duplicate
        {"client_id": "bad id", "system_id": "tax01", "allowed_scopes": TAX_SCOPES},
    ]
    for case in cases:
        with pytest.raises(ValueError) as info, transaction(env.sessions) as s:
            register_client(s, env.tables, env.cipher, name="x", now=NOW, **case)
        assert _has_japanese(str(info.value)), case


# --- refusals at the token endpoint ---------------------------------------------------


def test_refuses_expired_assertion(env: Env) -> None:
    old = make_client_assertion(TAX, env.secrets[TAX], TOKEN_URL, NOW - timedelta(minutes=5))
    err = env.refused(form_for(old))
    assert (err.status, err.error, err.reason) == (401, "invalid_client", "assertion_expired")
    assert _has_japanese(err.message_ja)


def test_refuses_assertion_exp_too_far_ahead(env: Env) -> None:
    far = make_client_assertion(TAX, env.secrets[TAX], TOKEN_URL, NOW, lifetime_s=301)
    assert env.refused(form_for(far)).reason == "assertion_lifetime_too_long"
    # iat backdated to make exp - iat look short does not help either.
    assert env.refused(form_for(signed(env, exp=int(NOW.timestamp()) + 600, iat=int(NOW.timestamp()) + 400))).error == "invalid_client"
    # Five minutes exactly is allowed.
    env.token(form_for(make_client_assertion(TAX, env.secrets[TAX], TOKEN_URL, NOW, lifetime_s=300)))


def test_five_minutes_from_a_client_whose_clock_runs_ahead(env: Env) -> None:
    """The documented lifetime (exp - iat ≤ 300 s) holds within the tolerated clock skew."""
    ahead = NOW + timedelta(seconds=10)
    env.token(form_for(make_client_assertion(TAX, env.secrets[TAX], TOKEN_URL, ahead, lifetime_s=300)))
    far = make_client_assertion(TAX, env.secrets[TAX], TOKEN_URL, NOW + timedelta(seconds=31), lifetime_s=300)
    assert env.refused(form_for(far)).error == "invalid_client"


BAD_CLAIMS: list[tuple[dict[str, Any], str]] = [
    ({"aud": "https://other.example.lg.jp/oauth/token"}, "wrong_audience"),
    ({"aud": [TOKEN_URL, "https://other.example.lg.jp/oauth/token"]}, "wrong_audience"),
    ({"aud": None}, "missing_claim"),
    ({"iss": KODOMO}, "iss_sub_mismatch"),
    ({"jti": None}, "missing_claim"),
    ({"iat": None}, "missing_claim"),
    ({"exp": None}, "missing_claim"),
    ({"jti": ""}, "invalid_claim"),
    ({"jti": "x" * 256}, "invalid_claim"),
    ({"iat": int(NOW.timestamp()) + 120, "exp": int(NOW.timestamp()) + 180}, "invalid_claim"),  # issued in the future
    ({"exp": "soon"}, "invalid_claim"),
    ({"nbf": int(NOW.timestamp()) + 120}, "invalid_claim"),
]


def test_refuses_bad_claims(env: Env) -> None:
    # One database for all cases (each refusal rolls back): keeps PostgreSQL runs fast.
    for over, reason in BAD_CLAIMS:
        err = env.refused(form_for(signed(env, **over)))
        assert (err.status, err.error, err.reason) == (401, "invalid_client", reason), over
        assert _has_japanese(err.message_ja)


def test_refuses_unknown_inactive_client_and_wrong_secret(env: Env) -> None:
    unknown = env.refused(form_for(signed(env, "nobody01", secret="x" * 43)))
    wrong = env.refused(form_for(signed(env, secret=env.secrets[KODOMO])))
    assert (unknown.reason, wrong.reason) == ("unknown_client", "bad_signature")
    # The caller cannot tell an unknown client from a wrong secret.
    assert unknown.to_dict() == wrong.to_dict() and unknown.status == wrong.status == 401

    # A payload altered after signing (another client's id) fails the signature too.
    good = signed(env)
    header, _, sig = good.split(".")
    forged = f"{header}.{b64(json.dumps(claims_for(KODOMO)).encode())}.{sig}"
    assert env.refused(form_for(forged, "kodomo01:inquiry:create")).reason == "bad_signature"

    with transaction(env.sessions) as s:
        revoke_client(s, env.tables, client_id=TAX, now=NOW)
    inactive = env.refused(form_for(signed(env)))
    assert (inactive.reason, inactive.to_dict()) == ("inactive_client", wrong.to_dict())


OTHER_ALGS: list[dict[str, Any]] = [
    {"alg": "none", "typ": "JWT"},
    {"alg": "None"},
    {"alg": "HS512"},
    {"alg": "HS384"},
    {"alg": "RS256"},
    {"alg": "ES256"},
    {"typ": "JWT"},
    {"alg": ["HS256"]},
]


def test_refuses_other_algorithms(env: Env) -> None:
    for header in OTHER_ALGS:
        alg = header.get("alg")
        key = None if alg in ("none", "None") else env.secrets[TAX].encode()
        digest = {"HS512": "sha512", "HS384": "sha384"}.get(str(alg), "sha256")
        err = env.refused(form_for(craft(header, claims_for(), key, digest)))
        assert (err.error, err.reason) == ("invalid_client", "bad_algorithm"), header


def test_refuses_extra_headers_and_garbage(env: Env) -> None:
    key = env.secrets[TAX].encode()
    for header in ({"alg": "HS256", "crit": ["exp"]}, {"alg": "HS256", "b64": False, "crit": ["b64"]}, {"alg": "HS256", "jku": "https://evil.example/jwks"}):
        assert env.refused(form_for(craft(header, claims_for(), key))).reason == "bad_header"
    for garbage in ("abc", "a.b.c", "a.b", "..", "é.é.é", "x" * 5000, signed(env) + ".x"):
        err = env.refused(form_for(garbage))
        assert (err.error, err.reason) == ("invalid_client", "assertion_malformed"), garbage[:20]


def test_refuses_replayed_jti_until_its_exp(env: Env) -> None:
    assertion = make_client_assertion(TAX, env.secrets[TAX], TOKEN_URL, NOW)
    env.token(form_for(assertion))
    err = env.refused(form_for(assertion), NOW + timedelta(seconds=10))
    assert (err.status, err.error, err.reason) == (401, "invalid_client", "replayed_jti")
    # A new assertion reusing the jti is refused while the first one could still be valid...
    jti = json.loads(base64.urlsafe_b64decode(assertion.split(".")[1] + "==="))["jti"]
    later = NOW + timedelta(seconds=30)
    assert env.refused(form_for(signed(env, now=later, jti=jti)), later).reason == "replayed_jti"
    # ...and accepted once the first has expired (exp + clock skew).
    much_later = NOW + timedelta(seconds=120)
    env.token(form_for(signed(env, now=much_later, jti=jti)), much_later)
    # The jti belongs to its client only.
    env.token(form_for(signed(env, KODOMO, jti=jti), "kodomo01:inquiry:create"))


def test_concurrent_use_of_one_assertion_yields_one_token(env: Env) -> None:
    assertion = make_client_assertion(TAX, env.secrets[TAX], TOKEN_URL, NOW)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def attempt() -> None:
        barrier.wait()
        try:
            env.token(form_for(assertion))
            outcomes.append("ok")
        except OAuthError as exc:
            outcomes.append(exc.reason)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert sorted(outcomes) == ["ok", "replayed_jti"]


def test_refusal_after_authentication_does_not_spend_the_jti(env: Env) -> None:
    assertion = make_client_assertion(TAX, env.secrets[TAX], TOKEN_URL, NOW)
    assert env.refused(form_for(assertion, "kodomo01:inquiry:create")).error == "invalid_scope"
    env.token(form_for(assertion))


BAD_SCOPES: list[tuple[str | None, str]] = [
    ("kodomo01:inquiry:create", "scope_not_allowed"),
    ("tax01:fukuhon:register kodomo01:inquiry:create", "scope_not_allowed"),
    ("tax01:fukuhon:delete", "scope_not_allowed"),
    ("tax01:fukuhon", "malformed_scope"),
    ("tax01:*:*", "malformed_scope"),
    (None, "missing_scope"),
    ("   ", "missing_scope"),
]


def test_refuses_scopes(env: Env) -> None:
    for scope, reason in BAD_SCOPES:
        err = env.refused(form_for(signed(env), scope))
        assert (err.status, err.error, err.reason) == (400, "invalid_scope", reason), scope
        assert _has_japanese(err.message_ja)


BAD_REQUESTS: list[tuple[dict[str, str], int, str, str]] = [
    ({"grant_type": "refresh_token", "refresh_token": "x"}, 400, "unsupported_grant_type", "unsupported_grant_type"),
    ({"grant_type": "password"}, 400, "unsupported_grant_type", "unsupported_grant_type"),
    ({"grant_type": "authorization_code"}, 400, "unsupported_grant_type", "unsupported_grant_type"),
    ({"grant_type": ""}, 400, "invalid_request", "missing_grant_type"),
    ({"client_assertion": ""}, 400, "invalid_request", "missing_assertion"),
    ({"client_assertion_type": ""}, 400, "invalid_request", "missing_assertion_type"),
    ({"client_assertion": "", "client_assertion_type": ""}, 401, "invalid_client", "missing_client_auth"),
    ({"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"}, 401, "invalid_client", "unsupported_assertion_type"),
    ({"client_secret": "x"}, 401, "invalid_client", "unsupported_auth_method"),
    ({"client_id": KODOMO}, 401, "invalid_client", "client_id_mismatch"),
]


def test_refuses_bad_requests(env: Env) -> None:
    for change, status, error, reason in BAD_REQUESTS:
        form = form_for(signed(env))
        form.update(change)
        err = env.refused(form)
        assert (err.status, err.error, err.reason) == (status, error, reason), change
        assert _has_japanese(err.message_ja)


def test_client_id_parameter_matching_is_accepted(env: Env) -> None:
    env.token(form_for(signed(env), client_id=TAX))


# --- bearer use, introspection, lifecycle ---------------------------------------------


def test_bearer_refusals(env: Env) -> None:
    token = env.token(form_for(signed(env))).access_token  # tax01:fukuhon:register only

    def refused(header: str | None, scope: str = "tax01:fukuhon:register", now: datetime = NOW) -> OAuthError:
        with pytest.raises(OAuthError) as info:
            env.bearer(header, scope, now)
        assert _has_japanese(info.value.message_ja)
        return info.value

    missing = refused(None)
    assert (missing.status, missing.error, missing.www_authenticate) == (401, "invalid_token", 'Bearer realm="renkei"')
    assert refused("Basic dGF4MDE6eA==").www_authenticate == 'Bearer realm="renkei"'
    for malformed in ("Bearer", "Bearer  ", "Bearer a b", "Bearer トークン"):
        assert (refused(malformed).status, refused(malformed).error) == (400, "invalid_request")
    unknown = refused("Bearer " + "A" * 43)
    assert (unknown.status, unknown.error) == (401, "invalid_token")
    assert unknown.www_authenticate == 'Bearer realm="renkei", error="invalid_token"'
    assert unknown.response_headers()["Cache-Control"] == "no-store"
    expired = refused(f"Bearer {token}", now=NOW + timedelta(seconds=600))
    assert (expired.status, expired.error) == (401, "invalid_token")
    scope = refused(f"Bearer {token}", "tax01:inquiry:create")
    assert (scope.status, scope.error) == (403, "insufficient_scope")
    assert scope.www_authenticate == 'Bearer realm="renkei", error="insufficient_scope", scope="tax01:inquiry:create"'
    with pytest.raises(ValueError):
        env.bearer(f"Bearer {token}", "not a scope")


def test_revoke_and_rotate(env: Env) -> None:
    first = env.token(form_for(signed(env))).access_token
    with transaction(env.sessions) as s:
        new_secret = rotate_client_secret(s, env.tables, env.cipher, client_id=TAX, now=NOW)
    assert new_secret != env.secrets[TAX]
    assert env.introspect(first) == {"active": False}  # revoked with the old secret
    assert env.refused(form_for(signed(env))).reason == "bad_signature"  # old secret
    second = env.token(form_for(signed(env, secret=new_secret))).access_token
    assert env.bearer(f"Bearer {second}", "tax01:fukuhon:register").client_id == TAX

    with transaction(env.sessions) as s:
        assert revoke_client(s, env.tables, client_id=TAX, now=NOW) == 1
    assert env.introspect(second) == {"active": False}
    with pytest.raises(OAuthError) as info:
        env.bearer(f"Bearer {second}", "tax01:fukuhon:register")
    assert info.value.error == "invalid_token"
    with pytest.raises(ValueError), transaction(env.sessions) as s:
        rotate_client_secret(s, env.tables, env.cipher, client_id=TAX, now=NOW)
    with pytest.raises(LookupError), transaction(env.sessions) as s:
        revoke_client(s, env.tables, client_id="nobody", now=NOW)
    # The other client is untouched.
    env.token(form_for(signed(env, KODOMO), "kodomo01:inquiry:create"))


def test_introspect_inactive_is_only_active_false(env: Env) -> None:
    token = env.token(form_for(signed(env))).access_token
    for value, when in ((token + "x", NOW), ("", NOW), ("x" * 1000, NOW), (token, NOW + timedelta(hours=1))):
        assert env.introspect(value, when) == {"active": False}


def test_purge_expired(env: Env) -> None:
    env.token(form_for(signed(env)))
    with transaction(env.sessions) as s:
        assert purge_expired(s, env.tables, NOW) == (0, 0)
    with transaction(env.sessions) as s:
        assert purge_expired(s, env.tables, NOW + timedelta(days=2)) == (1, 1)


def test_logs_hold_no_secret_token_or_assertion(env: Env) -> None:
    with capture_logs() as logs:
        assertion = make_client_assertion(TAX, env.secrets[TAX], TOKEN_URL, NOW)
        token = env.token(form_for(assertion)).access_token
        env.refused(form_for(assertion))
        env.refused(form_for(signed(env, secret=env.secrets[KODOMO])))
        with pytest.raises(OAuthError):
            env.bearer(f"Bearer {token}", "tax01:inquiry:create")
        with transaction(env.sessions) as s:
            secret = rotate_client_secret(s, env.tables, env.cipher, client_id=TAX, now=NOW)
    text = repr(logs)
    assert {e["event"] for e in logs} >= {"oauth_token_issued", "oauth_refused", "oauth_client_secret_rotated"}
    for value in (env.secrets[TAX], env.secrets[KODOMO], secret, token, hash_token(token), assertion):
        assert value not in text


# --- over HTTP ------------------------------------------------------------------------


@pytest.fixture
def http(env: Env) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(
        oauth_router(
            lambda: transaction(env.sessions),
            env.tables,
            lambda: env.cipher,
            lambda request: str(request.base_url).rstrip("/") + "/oauth/token",
            clock=lambda: NOW,
        )
    )

    @app.get("/v1/protected")
    def protected(request: Request) -> Response:
        try:
            with env.sessions() as s:
                who = authenticate_bearer(s, env.tables, request.headers.get("authorization"), "tax01:fukuhon:register", NOW)
        except OAuthError as exc:
            return bearer_problem_response(exc)
        return JSONResponse({"client_id": who.client_id})

    with TestClient(app) as client:
        yield client


HTTP_TOKEN_URL = "http://testserver/oauth/token"


def http_form(env: Env, client_id: str = TAX, **extra: str) -> dict[str, str]:
    form = {
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": make_client_assertion(client_id, env.secrets[client_id], HTTP_TOKEN_URL, NOW),
    }
    form.update(extra)
    return form


def assert_oauth_error(resp: Any, status: int, error: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.headers["cache-control"] == "no-store" and resp.headers["pragma"] == "no-cache"
    body = resp.json()
    assert set(body) == {"error", "error_description"} and body["error"] == error
    assert _has_japanese(body["error_description"])


def test_http_token_introspect_and_use(env: Env, http: TestClient) -> None:
    resp = http.post("/oauth/token", data=http_form(env, grant_type="client_credentials", scope="tax01:fukuhon:register"))
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store" and resp.headers["pragma"] == "no-cache"
    body = resp.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 600, "tax01:fukuhon:register")
    token = body["access_token"]

    # A resource server (here: the kodomo client) introspects with its own assertion.
    active = http.post("/oauth/introspect", data=http_form(env, KODOMO, token=token, token_type_hint="access_token"))
    assert active.status_code == 200 and active.headers["cache-control"] == "no-store"
    assert active.json() == {
        "active": True, "client_id": TAX, "scope": "tax01:fukuhon:register",
        "exp": int(NOW.timestamp()) + 600, "iat": int(NOW.timestamp()), "sub": TAX,
    }
    inactive = http.post("/oauth/introspect", data=http_form(env, KODOMO, token="A" * 43))
    assert inactive.status_code == 200 and inactive.json() == {"active": False}

    ok = http.get("/v1/protected", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and ok.json() == {"client_id": TAX}
    denied = http.get("/v1/protected")
    assert denied.status_code == 401 and denied.headers["www-authenticate"] == 'Bearer realm="renkei"'
    assert denied.headers["content-type"].startswith("application/problem+json")
    assert denied.json()["code"] == "invalid_token" and _has_japanese(denied.json()["title"])


def test_http_errors(env: Env, http: TestClient) -> None:
    assert_oauth_error(http.post("/oauth/token", data=http_form(env, grant_type="refresh_token", refresh_token="x")), 400, "unsupported_grant_type")
    assert_oauth_error(http.post("/oauth/token", data=http_form(env, grant_type="client_credentials", scope="kodomo01:inquiry:create")), 400, "invalid_scope")
    assert_oauth_error(http.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "tax01:fukuhon:register"}), 401, "invalid_client")
    # The assertion's aud must be this server's token endpoint.
    wrong_aud = {"client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": make_client_assertion(TAX, env.secrets[TAX], TOKEN_URL, NOW)}
    assert_oauth_error(http.post("/oauth/token", data={**wrong_aud, "grant_type": "client_credentials", "scope": "tax01:fukuhon:register"}), 401, "invalid_client")
    # Replay over HTTP, across endpoints.
    form = http_form(env, grant_type="client_credentials", scope="tax01:fukuhon:register")
    assert http.post("/oauth/token", data=form).status_code == 200
    assert_oauth_error(http.post("/oauth/token", data=form), 401, "invalid_client")
    assert_oauth_error(http.post("/oauth/introspect", data={**form, "token": "x"}), 401, "invalid_client")
    # Introspection needs client authentication and a token.
    assert_oauth_error(http.post("/oauth/introspect", data={"token": "x"}), 401, "invalid_client")
    assert_oauth_error(http.post("/oauth/introspect", data=http_form(env, KODOMO)), 400, "invalid_request")
    # Transport: form encoding only, each parameter once, no Authorization header.
    good = http_form(env, grant_type="client_credentials", scope="tax01:fukuhon:register")
    assert_oauth_error(http.post("/oauth/token", json=good), 400, "invalid_request")
    dup = "&".join(f"{k}={v}" for k, v in good.items()) + "&scope=tax01:inquiry:create"
    assert_oauth_error(http.post("/oauth/token", content=dup, headers={"content-type": "application/x-www-form-urlencoded"}), 400, "invalid_request")
    assert_oauth_error(http.post("/oauth/token", data=good, headers={"authorization": "Basic dGF4MDE6eA=="}), 400, "invalid_request")
    assert_oauth_error(http.post("/oauth/token", content=b"a=" + b"x" * 20000, headers={"content-type": "application/x-www-form-urlencoded"}), 400, "invalid_request")
    assert_oauth_error(http.post("/oauth/token", content=b"grant_type=%ff", headers={"content-type": "application/x-www-form-urlencoded"}), 400, "invalid_request")
    # The untouched assertion in `good` still works: refusals spent nothing.
    assert http.post("/oauth/token", data=good).status_code == 200


def test_http_random_input_never_5xx(http: TestClient) -> None:
    rnd = random.Random(7)
    for i in range(40):
        data = rnd.randbytes(rnd.randrange(0, 200))
        if i % 2:
            data = b"grant_type=client_credentials&client_assertion_type=" + CLIENT_ASSERTION_TYPE.encode() + b"&client_assertion=" + data
        ctype = rnd.choice(["application/x-www-form-urlencoded", "application/json", "text/plain", ""])
        for path in ("/oauth/token", "/oauth/introspect"):
            resp = http.post(path, content=data, headers={"content-type": ctype} if ctype else {})
            assert resp.status_code in (400, 401), (path, data, resp.text)
            assert set(resp.json()) == {"error", "error_description"}


def test_http_openapi_documents_form_bodies(http: TestClient) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    for path in ("/oauth/token", "/oauth/introspect"):
        body = paths[path]["post"]["requestBody"]["content"]
        assert "application/x-www-form-urlencoded" in body
