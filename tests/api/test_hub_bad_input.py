"""The hub refuses every bad message clearly (problem+json, stable code, Japanese title)
and writes nothing for it: no received message, no serial, no record, no pseudonym."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from starlette.testclient import TestClient

from renkei.core import ids
from renkei.core.crypto import envelope
from renkei.core.wire.messaging import new_message_id
from renkei.federation.topology import HUB, JLIS, NAKANO, SHINJUKU
from renkei.hub.app import create_app
from renkei.hub.models import Base, ProvisionRecord, Pseudonym
from tests.api.fed import (
    JOSE,
    Federation,
    assert_problem,
    b64flip,
    counts,
    fresh_ed25519,
    unchanged,
)

CHILD_ALLOWANCE_PROCEDURE = "JT01010000074001"
LOCAL_TAX_PROCEDURE = "JT01010000016001"
LOCAL_TAX_INFO = "TM00000000000002"
CHILD_ALLOWANCE_INFO = "TM00000000009001"


@dataclass
class Hub:
    fed: Federation
    app: FastAPI
    client: TestClient

    def counts(self) -> dict[str, int]:
        return counts(self.app.state.rt.engine, Base.metadata)

    def post(self, path: str, token: str | bytes, headers: dict[str, str] | None = None) -> Any:
        data = token.encode() if isinstance(token, str) else token
        return self.client.post(
            path, content=data, headers=headers if headers is not None else JOSE
        )


@pytest.fixture(scope="module")
def hub(fed: Federation) -> Iterator[Hub]:
    app = create_app(fed.config(HUB, "hub"))
    with TestClient(app) as client:
        yield Hub(fed, app, client)


def _inquiry_body(**over: Any) -> dict[str, Any]:
    body = {
        "pseudonym": "x" * 40,
        "provider_org": NAKANO.org_code,
        "procedure_code": CHILD_ALLOWANCE_PROCEDURE,
        "info_kind_code": LOCAL_TAX_INFO,
        "as_of": "2024-06-01",
    }
    body.update(over)
    return body


# Each hub route with the message it expects and who may send it.
ROUTES: dict[str, tuple[str, Any, dict[str, Any]]] = {
    "/v1/registry": ("registry.query", SHINJUKU, {}),
    "/v1/acquisitions": ("acquisition.create", SHINJUKU, {"count": 1}),
    "/v1/acquisitions/resolve": ("acquisition.resolve", JLIS, {"items": []}),
    "/v1/inquiries": ("inquiry.request", SHINJUKU, _inquiry_body()),
}
PATHS = list(ROUTES)


def _refused(
    hub: Hub,
    path: str,
    token: str | bytes,
    status: int,
    code: str,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    before = hub.counts()
    resp = hub.post(path, token, headers)
    body = assert_problem(resp, status, code)
    unchanged(before, hub.counts())
    return body


# --- the envelope: media type, shape, signature, key, freshness, audience, type ------------


@pytest.mark.parametrize("path", PATHS)
def test_plain_json_is_unsupported_media_type(hub: Hub, path: str) -> None:
    typ, sender, body = ROUTES[path]
    _refused(
        hub,
        path,
        orjson.dumps(body),
        415,
        "unsupported_media_type",
        {"content-type": "application/json"},
    )


@pytest.mark.parametrize("path", PATHS)
def test_no_content_type_is_unsupported_media_type(hub: Hub, path: str) -> None:
    _refused(hub, path, b"abc", 415, "unsupported_media_type", {})


@pytest.mark.parametrize(
    "garbage",
    [b"", b"garbage", b"a.b.c", b"\xff\xfe\x00\x01", b"eyJ.e30.", b"...", "日本語".encode()],
    ids=["empty", "word", "three-dots", "binary", "bad-header", "dots", "utf8"],
)
@pytest.mark.parametrize("path", PATHS)
def test_garbage_body_is_malformed(hub: Hub, path: str, garbage: bytes) -> None:
    _refused(hub, path, garbage, 400, "malformed_message")


@pytest.mark.parametrize("path", PATHS)
def test_made_up_kid_is_unknown_sender(hub: Hub, path: str) -> None:
    typ, sender, body = ROUTES[path]
    token = hub.fed.seal(fresh_ed25519("1234567890123456:chukan:sig:1"), HUB, typ, body)
    _refused(hub, path, token, 401, "unknown_sender")


@pytest.mark.parametrize("path", PATHS)
def test_org_of_a_second_ca_is_unknown_sender(hub: Hub, path: str) -> None:
    typ, sender, body = ROUTES[path]
    token = hub.fed.seal(hub.fed.stranger_org(), HUB, typ, body)
    _refused(hub, path, token, 401, "unknown_sender")


@pytest.mark.parametrize("path", PATHS)
def test_registered_kid_with_someone_elses_key_fails_the_signature(hub: Hub, path: str) -> None:
    # A second CA issued keys in Shinjuku's name: same kid, other key.
    typ, sender, body = ROUTES[path]
    token = hub.fed.seal(hub.fed.stranger_same_code(sender), HUB, typ, body)
    _refused(hub, path, token, 401, "bad_signature")


@pytest.mark.parametrize("path", PATHS)
def test_tampered_payload_fails_the_signature(hub: Hub, path: str) -> None:
    typ, sender, body = ROUTES[path]
    token = hub.fed.seal(sender, HUB, typ, body)
    _refused(hub, path, b64flip(token, 1), 401, "bad_signature")


@pytest.mark.parametrize("path", PATHS)
def test_tampered_signature_fails(hub: Hub, path: str) -> None:
    typ, sender, body = ROUTES[path]
    token = hub.fed.seal(sender, HUB, typ, body)
    _refused(hub, path, b64flip(token, 2), 401, "bad_signature")


@pytest.mark.parametrize("path", PATHS)
def test_alg_none_is_refused(hub: Hub, path: str) -> None:
    typ, sender, body = ROUTES[path]
    token = hub.fed.seal(sender, HUB, typ, body)
    header = base64.urlsafe_b64decode(token.split(".")[0] + "==")
    forged = orjson.loads(header) | {"alg": "none"}
    seg = base64.urlsafe_b64encode(orjson.dumps(forged)).rstrip(b"=").decode()
    _, payload, _ = token.split(".")
    _refused(hub, path, f"{seg}.{payload}.", 401, "bad_algorithm")


@pytest.mark.parametrize("path", PATHS)
def test_stale_message_is_refused(hub: Hub, path: str) -> None:
    typ, sender, body = ROUTES[path]
    token = hub.fed.seal(sender, HUB, typ, body, now=datetime.now(UTC) - timedelta(minutes=10))
    _refused(hub, path, token, 401, "stale_message")


@pytest.mark.parametrize("path", PATHS)
def test_message_from_the_future_is_refused(hub: Hub, path: str) -> None:
    typ, sender, body = ROUTES[path]
    token = hub.fed.seal(sender, HUB, typ, body, now=datetime.now(UTC) + timedelta(minutes=10))
    _refused(hub, path, token, 401, "stale_message")


@pytest.mark.parametrize("path", PATHS)
def test_wrong_audience_is_refused(hub: Hub, path: str) -> None:
    typ, sender, body = ROUTES[path]
    token = hub.fed.seal(sender, NAKANO, typ, body)
    _refused(hub, path, token, 403, "wrong_audience")


@pytest.mark.parametrize("path", PATHS)
def test_wrong_message_type_is_refused(hub: Hub, path: str) -> None:
    _, sender, body = ROUTES[path]
    token = hub.fed.seal(sender, HUB, "provision.request", body)
    _refused(hub, path, token, 400, "wrong_message_type")


@pytest.mark.parametrize("path", PATHS)
def test_issuer_other_than_the_signer_is_refused(hub: Hub, path: str) -> None:
    typ, sender, body = ROUTES[path]
    token = hub.fed.seal(
        sender, HUB, typ, body, iss=NAKANO.org_code if sender != NAKANO else SHINJUKU.org_code
    )
    _refused(hub, path, token, 401, "issuer_mismatch")


@pytest.mark.parametrize("message_id", ["short", "x" * 65, "has space in it", "日本語の電文IDです"])
@pytest.mark.parametrize("path", PATHS)
def test_bad_message_id_is_malformed(hub: Hub, path: str, message_id: str) -> None:
    typ, sender, body = ROUTES[path]
    token = hub.fed.seal(sender, HUB, typ, body, message_id=message_id)
    _refused(hub, path, token, 400, "malformed_message")


@pytest.mark.parametrize("path", PATHS)
def test_payload_that_is_not_a_message_is_malformed(hub: Hub, path: str) -> None:
    key = hub.fed.key(SHINJUKU)
    for payload in (
        b"[]",
        b'"text"',
        b"{}",
        b'{"id":"abcdefgh","iss":"1310410000000000"}',
        b"not json",
    ):
        token = envelope.sign(payload, key)
        _refused(hub, path, token, 400, "malformed_message")


# --- replay ---------------------------------------------------------------------------


def test_replayed_acquisition_is_refused_and_not_counted_twice(hub: Hub) -> None:
    token = hub.fed.seal(SHINJUKU, HUB, "acquisition.create", {"count": 2})
    before = hub.counts()
    first = hub.post("/v1/acquisitions", token)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"].startswith("application/jose")
    after_first = hub.counts()
    assert after_first["acquisitions"] == before["acquisitions"] + 2
    assert after_first["received_messages"] == before["received_messages"] + 1
    body = _refused(hub, "/v1/acquisitions", token, 409, "replayed_message")
    assert body.get("detail")  # names the message id, which is not personal data


@pytest.mark.parametrize("path", ["/v1/registry", "/v1/acquisitions/resolve"])
def test_replayed_message_is_refused(hub: Hub, path: str) -> None:
    typ, sender, body = ROUTES[path]
    token = hub.fed.seal(sender, HUB, typ, body)
    first = hub.post(path, token)
    assert first.status_code == 200, first.text
    _refused(hub, path, token, 409, "replayed_message")


def test_refused_message_is_not_remembered_so_it_is_not_a_replay(hub: Hub) -> None:
    # A refusal rolls the whole transaction back: the same id may be sent again, fixed.
    token = hub.fed.seal(
        SHINJUKU, HUB, "acquisition.create", {"count": 0}, message_id="retry-after-fix-0001"
    )
    _refused(hub, "/v1/acquisitions", token, 422, "bad_count")
    _refused(hub, "/v1/acquisitions", token, 422, "bad_count")


# --- acquisitions: count ------------------------------------------------------------------


@pytest.mark.parametrize(
    "count",
    ["1", 1.5, 1.0, None, [], {}, 0, -1, 10_001, "一"],
    ids=[
        "str",
        "float",
        "float-int",
        "null",
        "list",
        "object",
        "zero",
        "negative",
        "over",
        "kanji",
    ],
)
def test_bad_count(hub: Hub, count: Any) -> None:
    token = hub.fed.seal(SHINJUKU, HUB, "acquisition.create", {"count": count})
    _refused(hub, "/v1/acquisitions", token, 422, "bad_count")


@pytest.mark.parametrize("count", [10**30, -(10**30), 2**64])
def test_count_beyond_64_bits(hub: Hub, count: int) -> None:
    # orjson cannot write such a number, the stdlib can: sign the payload by hand.
    payload = {
        "id": new_message_id(),
        "iss": SHINJUKU.org_code,
        "aud": HUB.org_code,
        "typ": "acquisition.create",
        "iat": int(datetime.now(UTC).timestamp()),
        "body": {"count": count},
    }
    token = envelope.sign(json.dumps(payload).encode(), hub.fed.key(SHINJUKU))
    _refused(hub, "/v1/acquisitions", token, 422, "bad_count")


def test_missing_count(hub: Hub) -> None:
    token = hub.fed.seal(SHINJUKU, HUB, "acquisition.create", {})
    _refused(hub, "/v1/acquisitions", token, 422, "bad_count")


@pytest.mark.parametrize("count", [True, False])
def test_boolean_count_is_not_a_count(hub: Hub, count: bool) -> None:
    # JSON true is a Python int: it must not pass as count=1.
    token = hub.fed.seal(SHINJUKU, HUB, "acquisition.create", {"count": count})
    _refused(hub, "/v1/acquisitions", token, 422, "bad_count")


def test_acquisitions_only_from_a_chukan(hub: Hub) -> None:
    token = hub.fed.seal(JLIS, HUB, "acquisition.create", {"count": 1})
    _refused(hub, "/v1/acquisitions", token, 403, "sender_not_allowed")


@pytest.mark.parametrize("path", ["/v1/acquisitions", "/v1/inquiries"])
def test_a_members_atena_cannot_bypass_its_chukan(hub: Hub, path: str) -> None:
    """The probe's finding: with the organization's one key, an inquiry went straight to
    the hub from atena. Every node now has its own key, and the hub takes acquisitions
    and inquiries from a chukan only."""
    typ, sender, body = ROUTES[path]
    token = hub.fed.seal(sender, HUB, typ, body, node="atena")
    problem = _refused(hub, path, token, 403, "sender_not_allowed")
    assert "中間サーバー" in problem["title"] and "団体内統合宛名システム" in problem["title"]


# --- resolve: only J-LIS ------------------------------------------------------------------


@pytest.mark.parametrize("sender", [SHINJUKU, NAKANO, HUB], ids=lambda o: o.slug)
def test_resolve_from_anyone_but_jlis_is_refused(hub: Hub, sender: Any) -> None:
    items = [
        {
            "acquisition_no": "0" * 20,
            "resident_code": ids.make_resident_code("1234567890"),
            "org_code": SHINJUKU.org_code,
        }
    ]
    token = hub.fed.seal(sender, HUB, "acquisition.resolve", {"items": items})
    _refused(hub, "/v1/acquisitions/resolve", token, 403, "sender_not_allowed")


@pytest.mark.parametrize(
    "items", [None, "x", {"a": 1}, [1, 2], [{"acquisition_no": "1"}, "x"]], ids=str
)
def test_resolve_with_bad_items(hub: Hub, items: Any) -> None:
    token = hub.fed.seal(JLIS, HUB, "acquisition.resolve", {"items": items})
    _refused(hub, "/v1/acquisitions/resolve", token, 422, "bad_items")


def test_resolve_over_the_batch_limit(hub: Hub) -> None:
    items = [{"acquisition_no": "1"}] * 10_001
    token = hub.fed.seal(JLIS, HUB, "acquisition.resolve", {"items": items})
    _refused(hub, "/v1/acquisitions/resolve", token, 422, "bad_count")


# --- inquiries ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pseudonyms(hub: Hub) -> dict[str, str]:
    """One person with a pseudonym at Shinjuku and at Nakano (acquired the real way)."""
    resident_code = ids.make_resident_code("2345678901")
    items = []
    for org in (SHINJUKU, NAKANO):
        r = hub.post("/v1/acquisitions", hub.fed.seal(org, HUB, "acquisition.create", {"count": 1}))
        assert r.status_code == 200, r.text
        no = _acquisition_no(hub, org.org_code)
        items.append(
            {"acquisition_no": no, "resident_code": resident_code, "org_code": org.org_code}
        )
    r = hub.post(
        "/v1/acquisitions/resolve", hub.fed.seal(JLIS, HUB, "acquisition.resolve", {"items": items})
    )
    assert r.status_code == 200, r.text
    with hub.app.state.rt.sessions() as s:
        rows = s.execute(select(Pseudonym.org_code, Pseudonym.pseudonym)).all()
    return {org: p for org, p in rows}


def _acquisition_no(hub: Hub, org_code: str) -> str:
    from renkei.hub.models import Acquisition

    with hub.app.state.rt.sessions() as s:
        no = s.scalar(
            select(Acquisition.acquisition_no)
            .where(Acquisition.org_code == org_code, Acquisition.status == "pending")
            .order_by(Acquisition.acquisition_no.desc())
        )
    assert no is not None
    return str(no)


def _inquire(
    hub: Hub, body: dict[str, Any], status: int, code: str, sender: Any = SHINJUKU
) -> dict[str, Any]:
    token = hub.fed.seal(sender, HUB, "inquiry.request", body)
    return _refused(hub, "/v1/inquiries", token, status, code)


@pytest.mark.parametrize(
    "procedure_code",
    [
        "JT0101000007400",
        "JT010100000740011",
        "JM01010000074001",
        "jt01010000074001",
        "JT０１０１0000074001",
        "",
        "74001",
    ],
)
def test_inquiry_with_malformed_procedure_code(
    hub: Hub, pseudonyms: dict[str, str], procedure_code: str
) -> None:
    body = _inquiry_body(pseudonym=pseudonyms[SHINJUKU.org_code], procedure_code=procedure_code)
    _inquire(hub, body, 422, "missing_field" if procedure_code == "" else "invalid_procedure_code")


@pytest.mark.parametrize(
    "info_kind_code",
    ["TM0000000000002", "JT00000000000002", "TM0000000000000X", "ＴＭ00000000000002"],
)
def test_inquiry_with_malformed_info_kind_code(
    hub: Hub, pseudonyms: dict[str, str], info_kind_code: str
) -> None:
    body = _inquiry_body(pseudonym=pseudonyms[SHINJUKU.org_code], info_kind_code=info_kind_code)
    _inquire(hub, body, 422, "invalid_info_kind_code")


@pytest.mark.parametrize(
    "as_of",
    ["2024-02-30", "2024/06/01", "令和6年6月1日", "２０２４-０６-０１", "yesterday", "2024-6-1"],
)
def test_inquiry_with_malformed_as_of(hub: Hub, pseudonyms: dict[str, str], as_of: str) -> None:
    body = _inquiry_body(pseudonym=pseudonyms[SHINJUKU.org_code], as_of=as_of)
    _inquire(hub, body, 422, "bad_date")


@pytest.mark.parametrize(
    "missing", ["pseudonym", "provider_org", "procedure_code", "info_kind_code", "as_of"]
)
def test_inquiry_with_a_missing_field(hub: Hub, pseudonyms: dict[str, str], missing: str) -> None:
    body = _inquiry_body(pseudonym=pseudonyms[SHINJUKU.org_code])
    del body[missing]
    _inquire(hub, body, 422, "missing_field")


@pytest.mark.parametrize("value", [123, None, ["JT01010000074001"], {"a": 1}])
def test_inquiry_with_a_non_string_field(hub: Hub, pseudonyms: dict[str, str], value: Any) -> None:
    body = _inquiry_body(pseudonym=pseudonyms[SHINJUKU.org_code], procedure_code=value)
    _inquire(hub, body, 422, "missing_field")


def test_inquiry_with_unknown_pseudonym(hub: Hub, pseudonyms: dict[str, str]) -> None:
    _inquire(
        hub, _inquiry_body(pseudonym="unknown-pseudonym-" + "0" * 22), 404, "unknown_pseudonym"
    )


def test_inquiry_with_another_organizations_pseudonym(hub: Hub, pseudonyms: dict[str, str]) -> None:
    # Nakano's pseudonym of the same person, sent by Shinjuku: not Shinjuku's to use.
    _inquire(hub, _inquiry_body(pseudonym=pseudonyms[NAKANO.org_code]), 404, "unknown_pseudonym")


def test_inquiry_to_an_unknown_provider(hub: Hub, pseudonyms: dict[str, str]) -> None:
    body = _inquiry_body(pseudonym=pseudonyms[SHINJUKU.org_code], provider_org="3999999999999999")
    _inquire(hub, body, 404, "unknown_organization")


def test_refused_inquiry_is_recorded_once_and_its_replay_refused(
    hub: Hub, pseudonyms: dict[str, str]
) -> None:
    # Local-tax staff asking for child-allowance information: no rule allows it.
    body = _inquiry_body(
        pseudonym=pseudonyms[SHINJUKU.org_code],
        procedure_code=LOCAL_TAX_PROCEDURE,
        info_kind_code=CHILD_ALLOWANCE_INFO,
    )
    token = hub.fed.seal(SHINJUKU, HUB, "inquiry.request", body)
    before = hub.counts()
    first = hub.post("/v1/inquiries", token)
    problem = assert_problem(first, 403, "rule_violation")
    assert problem.get("serial") and problem.get("reason_code")
    after = hub.counts()
    assert after["provision_records"] == before["provision_records"] + 1
    assert after["received_messages"] == before["received_messages"] + 1
    with hub.app.state.rt.sessions() as s:
        rec = s.get(ProvisionRecord, problem["serial"])
        assert rec is not None and rec.outcome == "refused"
    _refused(hub, "/v1/inquiries", token, 409, "replayed_message")
