"""No input makes any node answer 5xx, and every node documents its routes.

Random bytes, random JSON and — past the envelope — random bodies in properly signed
messages are posted to every POST route of hub, jlis, chukan, atena and tsa. Every answer is
below 500, and every refusal is problem+json with a stable code and a Japanese title.

The nodes' registry views are not allowed to call the hub here (there is no hub
listening): a test must not depend on, or reach, a network peer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from renkei.atena import api as atena_api
from renkei.atena.app import create_app as atena_app
from renkei.chukan import api as chukan_api
from renkei.chukan.app import create_app as chukan_app
from renkei.core import ids
from renkei.core.wire import contract
from renkei.core.wire.messaging import JOSE_MEDIA_TYPE
from renkei.federation import setup
from renkei.federation.topology import HUB, JLIS, NAKANO, SHINJUKU, TSA
from renkei.hub import api as hub_api
from renkei.hub.app import create_app as hub_app
from renkei.jlis import api as jlis_api
from renkei.jlis.app import create_app as jlis_app
from renkei.tsa import api as tsa_api
from renkei.tsa.app import create_app as tsa_app
from tests.api.fed import (
    Federation,
    build_federation,
    has_japanese,
    iter_post_routes,
)
from tests.atena import kit as atena_kit


@dataclass
class Node:
    name: str
    org: Any
    app: FastAPI
    client: TestClient


# atena's routes are fuzzed with valid credentials, so that the bodies reach the checks
# behind authentication: a staff member not among the sample values (random sign-in
# bodies must not lock the account used here) and business systems for every scope.
FUZZ_STAFF = setup.StaffSpec("F0001", "職員（架空）", ("JM01000000074000:照会",))


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    f = build_federation(tmp_path_factory, "fuzz-federation")
    setup.enrol_atena(f.layout, SHINJUKU, [FUZZ_STAFF], atena_kit.CLIENTS, policy=atena_kit.CHEAP_POLICY)
    return f


@pytest.fixture(scope="module")
def nodes(fed: Federation) -> Iterator[dict[str, Node]]:
    apps = {
        "hub": (HUB, hub_app(fed.config(HUB, "hub"))),
        "jlis": (JLIS, jlis_app(fed.config(JLIS, "jlis"))),
        "tsa": (TSA, tsa_app(fed.config(TSA, "tsa"))),
        "chukan": (SHINJUKU, chukan_app(fed.config(SHINJUKU, "chukan"))),
        "atena": (
            SHINJUKU,
            atena_app(fed.config(SHINJUKU, "atena"), auth_policy=atena_kit.CHEAP_POLICY),
        ),
    }
    for name, (_, app) in apps.items():
        if name != "hub":
            view = app.state.rt.registry
            for org in (SHINJUKU, NAKANO, JLIS):
                view.directory.add(fed.public_doc(org))
            view.refresh = None  # never reach for a hub that is not there
    clients = {name: TestClient(app) for name, (_, app) in apps.items()}
    # atena's session cookie is Secure: its client speaks "https".
    clients["atena"] = TestClient(apps["atena"][1], base_url="https://testserver")
    for c in clients.values():
        c.__enter__()
    try:
        yield {name: Node(name, apps[name][0], apps[name][1], clients[name]) for name in apps}
    finally:
        for c in clients.values():
            c.__exit__(None, None, None)


EXPECTED_POST_ROUTES = {
    "hub": {"/v1/registry", "/v1/acquisitions", "/v1/acquisitions/resolve", "/v1/inquiries"},
    "jlis": {"/v1/acquisitions", "/v1/identities/search"},
    "tsa": {"/v1/stamps", "/v1/heads", "/v1/stamps/list"},
    "chukan": {
        "/v1/acquisitions",
        "/v1/acquisitions/deliver",
        "/v1/acquisitions/status",
        "/v1/fukuhon",
        "/v1/inquiries",
        "/v1/provisions",
    },
    "atena": {
        "/v1/residents",
        "/v1/numbering",
        "/v1/non-residents/candidates",
        "/v1/non-residents",
        "/v1/non-residents/individual-number",
        "/v1/register/changes",
        "/v1/pseudonyms/acquire",
        "/v1/pseudonyms/status",
        "/v1/fukuhon",
        "/v1/inquiries",
        "/v1/inquiries/batch",
        "/oauth/token",
        "/oauth/introspect",
    },
}
# The staff routes every node mounts (renkei.staff.routes; JSON, not sealed).
STAFF_ADMIN_POSTS = {
    "/v1/staff",
    "/v1/staff/{staff_id}/disable",
    "/v1/staff/{staff_id}/enable",
    "/v1/staff/{staff_id}/lock",
    "/v1/staff/{staff_id}/unlock",
    "/v1/staff/{staff_id}/revoke-sessions",
    "/v1/role-requests/{request_id}/approve",
    "/v1/role-requests/{request_id}/reject",
    "/v1/staff/{staff_id}/reset-totp",
    "/v1/alerts/{alert_id}/acknowledge",
    "/v1/exports",
    "/v1/exports/{request_id}/approve",
    "/v1/exports/{request_id}/reject",
}
STAFF_SESSION_POSTS = {"/v1/session", "/v1/session/password", "/v1/api-tokens"}
STAFF_POSTS = {
    node: STAFF_ADMIN_POSTS | STAFF_SESSION_POSTS for node in ("hub", "jlis", "chukan", "atena", "tsa")
}
for _node, _paths in STAFF_POSTS.items():
    EXPECTED_POST_ROUTES[_node] |= _paths
# 庁内連携 (renkei.atena.chonai_api): a router of its own on atena, fuzzed with business
# systems' tokens in tests/atena/test_chonai.py; the CSV route takes text/csv.
CHONAI_POSTS = {"/v1/chonai/publications", "/v1/chonai/reads", "/v1/chonai/reads.csv"}
# Mounted on the atena app itself (renkei.staff.oauth), not on atena's router; they take
# forms and answer RFC 6749 errors (application/json), not problem+json.
OAUTH_POSTS = {"/oauth/token", "/oauth/introspect"}
ROUTERS = {
    "hub": hub_api.router,
    "jlis": jlis_api.router,
    "tsa": tsa_api.router,
    "chukan": chukan_api.router,
    "atena": atena_api.router,
}
ROUTES = [(node, path) for node, paths in EXPECTED_POST_ROUTES.items() for path in sorted(paths)]
SEALED = {"hub", "jlis", "chukan", "tsa"}

# Field names the routes read, so random bodies get past "missing field" now and then.
KEYS = [
    "count",
    "items",
    "acquisition_no",
    "resident_code",
    "org_code",
    "individual_number",
    "pseudonym",
    "provider_org",
    "procedure_code",
    "info_kind_code",
    "as_of",
    "serial",
    "inquirer_org",
    "atena_no",
    "atena_nos",
    "records",
    "values",
    "valid_from",
    "valid_to",
    "record_key",
    "delete",
    "no_auto_answer",
    "persons",
    "family_name",
    "given_name",
    "family_kana",
    "given_kana",
    "birth_date",
    "sex",
    "postal_code",
    "address",
    "lg_code",
    "business_numbers",
    "effective_on",
    "all_pending",
    "system",
    "staff_id",
    "password",
    "totp",
    "scopes",
    "name",
    "expires_in_days",
    "business_atena_no",
    "node",
    "kind",
    "seq",
    "hash",
    "at",
    "token",
    "after",
    "limit",
    "K001",
    "K002",
]
# Valid values among the random ones, so that bodies get past the first checks.
SAMPLES = [
    "",
    "0",
    "1",
    "2024",
    "2024-06-01",
    "2024-02-30",
    "131041",
    "1310410000000000",
    "1311480000000000",
    "TM00000000000002",
    "JT01010000074001",
    "JM01000000074000",
    "S0001",
    "tax",
    "１２３",
    ids.make_atena_no(1234),
    ids.make_individual_number("12345678901"),
    ids.make_resident_code("1234567890"),
    "2024060100000000000" + "1",
]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(SAMPLES)
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5
    )


JSON = st.recursive(SCALARS, _containers, max_leaves=12)
OBJECTS = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), JSON, max_size=6)
CTYPES = st.sampled_from(
    [JOSE_MEDIA_TYPE, "application/json", "text/plain", "application/x-www-form-urlencoded", ""]
)

FUZZ = settings(
    max_examples=int(os.environ.get("RENKEI_FUZZ_EXAMPLES", "25")),
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _check(resp: Any, what: str, *, oauth: bool = False) -> None:
    if resp.status_code == 503 and resp.json().get("code") == "peer_unavailable":
        return  # the input passed every check and the node called its peer: none runs here
    assert resp.status_code < 500, (what, resp.status_code, resp.text[:500])
    if resp.status_code >= 400 and oauth:
        body = resp.json()
        assert isinstance(body.get("error"), str) and body["error"], (what, body)
        assert has_japanese(str(body.get("error_description", ""))), (what, body)
    elif resp.status_code >= 400:
        assert resp.headers.get("content-type", "").startswith("application/problem+json"), (
            what,
            resp.headers,
        )
        body = resp.json()
        assert isinstance(body.get("code"), str) and body["code"], (what, body)
        assert has_japanese(str(body.get("title", ""))), (what, body)


@pytest.fixture(scope="module")
def atena_auth(nodes: dict[str, Node], fed: Federation) -> atena_kit.AtenaKit:
    """Credentials for atena's routes, with a clock the tests move (no TOTP reuse)."""
    node = nodes["atena"]
    kit = atena_kit.AtenaKit(
        node.app, node.client, setup.load_credentials(fed.layout, SHINJUKU), atena_kit.Clock()
    )
    node.app.state.clock = kit.clock
    return kit


def _auth(kit: atena_kit.AtenaKit, node: str, path: str) -> dict[str, str]:
    """The credentials a route takes; none for the sign-in and the OAuth endpoints."""
    if node != "atena" or path in OAUTH_POSTS or path == "/v1/session":
        return {}
    return kit.headers_for(path, staff_id=FUZZ_STAFF.staff_id)


@pytest.mark.parametrize(("node", "path"), ROUTES)
def test_random_bytes_never_5xx(
    nodes: dict[str, Node], atena_auth: atena_kit.AtenaKit, node: str, path: str
) -> None:
    client = nodes[node].client
    auth = _auth(atena_auth, node, path)

    @FUZZ
    @given(data=st.binary(max_size=300), ctype=CTYPES)
    def run(data: bytes, ctype: str) -> None:
        headers = {**auth, "content-type": ctype} if ctype else dict(auth)
        _check(
            client.post(path, content=data, headers=headers),
            f"{node}{path} {ctype} {data!r}",
            oauth=path in OAUTH_POSTS,
        )

    run()


@pytest.mark.parametrize(("node", "path"), ROUTES)
def test_random_json_never_5xx(
    nodes: dict[str, Node], atena_auth: atena_kit.AtenaKit, node: str, path: str
) -> None:
    client = nodes[node].client
    auth = _auth(atena_auth, node, path)

    @FUZZ
    @given(body=JSON | OBJECTS, ctype=CTYPES)
    def run(body: Any, ctype: str) -> None:
        data = orjson.dumps(body)
        headers = {**auth, "content-type": ctype} if ctype else dict(auth)
        _check(
            client.post(path, content=data, headers=headers),
            f"{node}{path} {ctype} {body!r}",
            oauth=path in OAUTH_POSTS,
        )

    run()


# Who may send to each sealed route, and the message type it takes.
SIGNED = {
    ("hub", "/v1/registry"): (SHINJUKU, "registry.query"),
    ("hub", "/v1/acquisitions"): (SHINJUKU, "acquisition.create"),
    ("hub", "/v1/acquisitions/resolve"): (JLIS, "acquisition.resolve"),
    ("hub", "/v1/inquiries"): (SHINJUKU, "inquiry.request"),
    ("jlis", "/v1/acquisitions"): (SHINJUKU, "acquisition.submit"),
    ("jlis", "/v1/identities/search"): (SHINJUKU, "identity.search"),
    ("chukan", "/v1/acquisitions"): (SHINJUKU, "pseudonym.acquire"),
    ("chukan", "/v1/acquisitions/deliver"): (HUB, "pseudonym.deliver"),
    ("chukan", "/v1/acquisitions/status"): (SHINJUKU, "pseudonym.status"),
    ("chukan", "/v1/fukuhon"): (SHINJUKU, "fukuhon.register"),
    ("chukan", "/v1/inquiries"): (SHINJUKU, "inquiry.start"),
    ("chukan", "/v1/provisions"): (HUB, "provision.request"),
    ("tsa", "/v1/stamps"): (SHINJUKU, "tsa.stamp"),
    ("tsa", "/v1/heads"): (SHINJUKU, "tsa.head"),
    ("tsa", "/v1/stamps/list"): (SHINJUKU, "tsa.stamps"),
}


@pytest.mark.parametrize(("node", "path"), list(SIGNED))
def test_random_bodies_in_signed_messages_never_5xx(
    nodes: dict[str, Node], fed: Federation, node: str, path: str
) -> None:
    target = nodes[node]
    sender, typ = SIGNED[(node, path)]

    @FUZZ
    @given(body=OBJECTS)
    def run(body: dict[str, Any]) -> None:
        try:
            token = fed.seal(sender, target.org, typ, body)
        except TypeError:  # a value orjson cannot write
            return
        resp = target.client.post(
            path, content=token.encode(), headers={"content-type": JOSE_MEDIA_TYPE}
        )
        _check(resp, f"{node}{path} {body!r}")

    run()


# One field of an otherwise valid message replaced by random JSON: reaches the deep checks.
GOOD_ATENA = ids.make_atena_no(1234)
VALID: dict[tuple[str, str], dict[str, Any]] = {
    ("hub", "/v1/acquisitions"): {"count": 1},
    ("hub", "/v1/acquisitions/resolve"): {
        "items": [
            {
                "acquisition_no": "1" * 20,
                "resident_code": ids.make_resident_code("1234567890"),
                "org_code": SHINJUKU.org_code,
            }
        ]
    },
    ("hub", "/v1/inquiries"): {
        "pseudonym": "x" * 40,
        "provider_org": NAKANO.org_code,
        "procedure_code": "JT01010000074001",
        "info_kind_code": "TM00000000000002",
        "as_of": "2024-06-01",
    },
    ("jlis", "/v1/acquisitions"): {
        "items": [
            {
                "individual_number": ids.make_individual_number("12345678901"),
                "acquisition_no": "1" * 20,
            }
        ]
    },
    ("jlis", "/v1/identities/search"): {
        "affair_code": "JM01000000074000", "family_name": "新宿", "given_name": "花子", "birth_date": "1985-04-01",
        "sex": "2", "address": "東京都新宿区新宿一丁目1番1号",
    },
    ("chukan", "/v1/acquisitions/deliver"): {
        "items": [{"acquisition_no": "1" * 20, "pseudonym": "p" * 40}]
    },
    ("tsa", "/v1/heads"): {"node": f"{SHINJUKU.org_code}/atena", "kind": "audit_checkpoint"},
    ("tsa", "/v1/stamps/list"): {
        "node": f"{SHINJUKU.org_code}/atena", "kind": "audit_checkpoint", "after": 0, "limit": 10
    },
    ("chukan", "/v1/inquiries"): {
        "atena_no": GOOD_ATENA,
        "provider_org": NAKANO.org_code,
        "procedure_code": "JT01010000074001",
        "info_kind_code": "TM00000000000002",
        "as_of": "2024-06-01",
    },
    ("chukan", "/v1/provisions"): {
        "serial": "SERIAL",
        "pseudonym": "p" * 40,
        "inquirer_org": NAKANO.org_code,
        "procedure_code": "JT01010000074001",
        "info_kind_code": "TM00000000000002",
        "as_of": "2024-06-01",
    },
    ("chukan", "/v1/fukuhon"): {
        "records": [
            {
                "atena_no": GOOD_ATENA,
                "info_kind_code": "TM00000000000002",
                "record_key": "2024",
                "valid_from": "2024-06-01",
                "values": {"K001": "2024", "K002": "1"},
            }
        ]
    },
}
SKIP_FIELDS: dict[tuple[str, str], set[str]] = {}


def _fields(body: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(list name or None, field) pairs that a mutation may replace."""
    out: list[tuple[str | None, str]] = [(None, k) for k in body]
    for k, v in body.items():
        if isinstance(v, list) and v and isinstance(v[0], dict):
            out += [(k, f) for f in v[0]]
    return out


_serials = iter(range(10**19, 10**20))


@pytest.mark.parametrize(("node", "path"), list(VALID))
def test_one_bad_field_in_a_valid_message_never_5xx(
    nodes: dict[str, Node], fed: Federation, node: str, path: str
) -> None:
    target = nodes[node]
    sender, typ = SIGNED[(node, path)]
    base = VALID[(node, path)]
    fields = [f for f in _fields(base) if f[1] not in SKIP_FIELDS.get((node, path), set())]

    @FUZZ
    @given(where=st.sampled_from(fields), value=JSON)
    def run(where: tuple[str | None, str], value: Any) -> None:
        body = orjson.loads(orjson.dumps(base))
        if body.get("serial") == "SERIAL":
            body["serial"] = str(next(_serials))  # the hub never repeats a serial
        outer, field = where
        if outer is None:
            body[field] = value
        else:
            body[outer][0][field] = value
        try:
            token = fed.seal(sender, target.org, typ, body)
        except TypeError:
            return
        resp = target.client.post(
            path, content=token.encode(), headers={"content-type": JOSE_MEDIA_TYPE}
        )
        _check(resp, f"{node}{path} {where}={value!r}")

    run()


ATENA_VALID: dict[str, dict[str, Any]] = {
    "/v1/residents": {
        "persons": [
            {
                "individual_number": ids.make_individual_number("12345678901"),
                "family_name": "新宿",
                "given_name": "花子",
                "family_kana": "シンジュク",
                "given_kana": "ハナコ",
                "birth_date": "1990-01-01",
                "sex": "2",
                "postal_code": "1600022",
                "address": "東京都新宿区新宿一丁目1番1号",
                "lg_code": "131041",
                "business_numbers": {"tax": GOOD_ATENA},
            }
        ]
    },
    "/v1/inquiries": {
        "system": "tax",
        "business_atena_no": GOOD_ATENA,
        "procedure_code": "JT01010000074001",
        "info_kind_code": "TM00000000000002",
        "provider_org": NAKANO.org_code,
        "as_of": "2024-06-01",
    },
    "/v1/fukuhon": {
        "system": "tax",
        "records": [
            {
                "business_atena_no": GOOD_ATENA,
                "info_kind_code": "TM00000000000002",
                "valid_from": "2024-06-01",
                "values": {},
            }
        ],
    },
    "/v1/session": {"staff_id": "S0001", "password": "Wrong-password-123", "totp": "123456"},
    "/v1/api-tokens": {"name": "照会バッチ", "scopes": ["JM01000000074000:照会"], "expires_in_days": 7},
}


@pytest.mark.parametrize("path", list(ATENA_VALID))
def test_one_bad_field_in_a_valid_atena_request_never_5xx(
    nodes: dict[str, Node], atena_auth: atena_kit.AtenaKit, path: str
) -> None:
    client = nodes["atena"].client
    base = ATENA_VALID[path]
    auth = _auth(atena_auth, "atena", path)

    @FUZZ
    @given(where=st.sampled_from(_fields(base)), value=JSON)
    def run(where: tuple[str | None, str], value: Any) -> None:
        body = orjson.loads(orjson.dumps(base))
        outer, field = where
        if outer is None:
            body[field] = value
        else:
            body[outer][0][field] = value
        try:
            data = orjson.dumps(body)
        except TypeError:
            return
        headers = {**auth, "content-type": "application/json"}
        resp = client.post(path, content=data, headers=headers)
        _check(resp, f"atena{path} {where}={value!r}")

    run()


# --- OpenAPI ------------------------------------------------------------------------------------


@pytest.mark.parametrize("node", list(EXPECTED_POST_ROUTES))
def test_openapi_document_lists_the_routes(nodes: dict[str, Node], node: str) -> None:
    resp = nodes[node].client.get("/openapi.json")
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["openapi"].startswith("3.")
    assert has_japanese(doc["info"]["title"] + doc["info"].get("description", ""))
    posts = {p for p, ops in doc["paths"].items() if "post" in ops}
    chonai = CHONAI_POSTS if node == "atena" else set()
    # Every node that serves sealed routes takes batches of them too (contract, "batches").
    batch = {contract.BATCH_PATH} if node in SEALED else set()
    assert posts == EXPECTED_POST_ROUTES[node] | chonai | batch
    mounted = (OAUTH_POSTS | CHONAI_POSTS if node == "atena" else set()) | STAFF_POSTS[node] | batch
    assert posts == set(iter_post_routes(ROUTERS[node])) | mounted
    assert "/healthz" in doc["paths"]
    for p in posts:
        op = doc["paths"][p]["post"]
        assert op.get("summary") and has_japanese(op["summary"]), (p, op)
        assert op.get("tags"), (p, op)
        content = op.get("requestBody", {}).get("content", {})
        if p in STAFF_POSTS[node]:
            assert not content or "application/json" in content, (p, content)
        elif node in SEALED:
            assert JOSE_MEDIA_TYPE in content, (p, content)
        elif p in OAUTH_POSTS:
            assert "application/x-www-form-urlencoded" in content, (p, content)
        elif p.endswith(".csv"):
            assert "text/csv" in content, (p, content)
        elif p.endswith("/batch"):  # a 一括照会 file as it is
            assert "application/octet-stream" in content, (p, content)
        else:
            assert "application/json" in content, (p, content)


@pytest.mark.parametrize("node", list(EXPECTED_POST_ROUTES))
def test_unknown_route_and_wrong_method_are_problems(nodes: dict[str, Node], node: str) -> None:
    client = nodes[node].client
    r = client.post("/v1/no-such-route", content=b"x")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "not_found" and has_japanese(r.json()["title"])
    path = sorted(EXPECTED_POST_ROUTES[node])[0]
    r = client.get(path)
    assert r.status_code == 405 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "method_not_allowed" and has_japanese(r.json()["title"])
