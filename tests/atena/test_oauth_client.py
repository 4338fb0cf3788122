"""A standard OAuth client works as documented: authlib's ``client_secret_jwt`` client gets
a token at atena's real token endpoint and calls a business API with it.

authlib signs its assertions for 3600 s by default; the server documents (OpenAPI,
README, renkei.staff.oauth) that ``exp`` is at most 300 s after ``iat``. The client here
sets that lifetime, as a business system must; the default is refused with a Japanese
description that names the limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client, OAuthError
from authlib.oauth2.rfc7523 import ClientSecretJWT, client_secret_jwt_sign
from joserfc.jwk import OctKey

from renkei.staff.oauth import CLOCK_SKEW_S, MAX_ASSERTION_LIFETIME_S
from tests.api.fed import Federation
from tests.atena.kit import PSEUDONYMS, RESIDENTS, AtenaKit, open_atena
from tests.atena.test_auth_api import person

CLIENT = "jumin01-batch"


@pytest.fixture(scope="module")
def atena(fed: Federation) -> Iterator[AtenaKit]:
    with open_atena(fed) as a:
        yield a


class DocumentedLifetimeJWT(ClientSecretJWT):
    """authlib's ``client_secret_jwt`` with the assertion lifetime the server documents."""

    def sign(self, auth: Any, token_endpoint: str) -> str:
        signed: str = client_secret_jwt_sign(
            OctKey.import_key(auth.client_secret),
            client_id=auth.client_id,
            token_endpoint=token_endpoint,
            alg=self.alg,
            expires_in=MAX_ASSERTION_LIFETIME_S,
        )
        return signed


def business_system(atena: AtenaKit, auth_method: ClientSecretJWT, scope: str) -> OAuth2Client:
    """authlib's client over the in-process atena (its transport: no network needed)."""
    transport: httpx.BaseTransport = atena.client._transport  # the TestClient's ASGI transport
    client = OAuth2Client(
        client_id=CLIENT,
        client_secret=atena.secret(CLIENT),
        token_endpoint_auth_method="client_secret_jwt",
        scope=scope,
        transport=transport,
    )
    client.register_client_auth_method(auth_method)
    return client


def test_the_documented_lifetime_is_what_the_openapi_document_says(atena: AtenaKit) -> None:
    op = atena.client.get("/openapi.json").json()["paths"]["/oauth/token"]["post"]
    assert f"exp は iat から{MAX_ASSERTION_LIFETIME_S}秒" in op["description"]
    assert f"時刻のずれは{CLOCK_SKEW_S}秒まで許容" in op["description"]


def test_authlib_client_secret_jwt_gets_a_token_and_calls_the_api(atena: AtenaKit) -> None:
    atena.clock.now = datetime.now(UTC)  # authlib stamps iat and exp from the wall clock
    with business_system(atena, DocumentedLifetimeJWT(atena.token_url), RESIDENTS) as client:
        token = client.fetch_token(atena.token_url, grant_type="client_credentials")
        assert token["token_type"] == "Bearer" and token["scope"] == RESIDENTS
        assert "refresh_token" not in token
        base = atena.token_url.removesuffix("/oauth/token")
        resp = client.post(f"{base}/v1/residents", json={"persons": [person(900)]})
    assert resp.status_code == 200, resp.text
    entry = atena.audit()[-2]  # then its pseudonym acquisition (deferred: no chukan here)
    assert (entry["actor"], entry["action"], entry["outcome"]) == (CLIENT, "residents.register", "ok")
    # A second token (a new assertion, a new jti) for another scope: no replay refusal.
    with business_system(atena, DocumentedLifetimeJWT(atena.token_url), PSEUDONYMS) as client:
        again = client.fetch_token(atena.token_url, grant_type="client_credentials")
        assert again["scope"] == PSEUDONYMS and again["access_token"] != token["access_token"]
        status = client.post(f"{base}/v1/pseudonyms/status", json={"business_atena_nos": []})
    assert status.status_code == 200, status.text


def test_authlib_default_lifetime_is_refused_naming_the_limit(atena: AtenaKit) -> None:
    atena.clock.now = datetime.now(UTC)
    with business_system(atena, ClientSecretJWT(atena.token_url), RESIDENTS) as client:
        with pytest.raises(OAuthError) as info:
            client.fetch_token(atena.token_url, grant_type="client_credentials")
    assert info.value.error == "invalid_client"
    assert f"{MAX_ASSERTION_LIFETIME_S // 60}分以内" in str(info.value.description)
