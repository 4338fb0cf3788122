"""The peer client: a peer's refusal is relayed with our status for its code, and an
answer we cannot verify is one 502 ``bad_peer_response`` (never a 4xx that would blame
our own request, never a 500)."""

from __future__ import annotations

import asyncio
import json
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from renkei.core.crypto import envelope, pki
from renkei.core.errors import Problem
from renkei.core.wire.client import PeerClient
from renkei.core.wire.keydir import KeyDirectory
from renkei.core.wire.messaging import seal

ORG = "1310410000000000"
PEER = "1311480000000000"
OTHER = "2000000000000001"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp: Path = tmp_path_factory.mktemp("pki")
    pki.create_ca(tmp / "ca")
    out: dict[str, Any] = {}
    docs = []
    for code, name in ((ORG, "新宿区"), (PEER, "中野区"), (OTHER, "日本年金機構")):
        creds = pki.issue_node_credentials(tmp / "ca", tmp / code, code, name, "chukan")
        out[code] = envelope.load_signing_key(creds.sig_key)
        docs.append(json.loads(creds.public.read_text(encoding="utf-8")))
    out["directory"] = KeyDirectory.from_documents(docs)
    return out


def _client(keys: dict[str, Any]) -> PeerClient:
    directory: KeyDirectory = keys["directory"]

    async def lookup(kid: str) -> Any:
        return directory.public_key(kid)

    return PeerClient(ssl.create_default_context(), keys[ORG], ORG, lookup)


def _refusal(keys: dict[str, Any], token: str, expected_iss: str | None = PEER) -> Problem:
    with pytest.raises(Problem) as info:
        asyncio.run(_client(keys).open(token, expected_aud=ORG, expected_iss=expected_iss))
    return info.value


def test_a_good_answer_opens(keys: dict[str, Any]) -> None:
    token = seal(keys[PEER], PEER, ORG, "t.answer", {"a": "回答"})
    msg = asyncio.run(_client(keys).open(token, expected_aud=ORG, expected_iss=PEER))
    assert (msg.iss, msg.body) == (PEER, {"a": "回答"})


def _flip(token: str, part: int) -> str:
    segments = token.split(".")
    seg = segments[part]
    i = len(seg) // 2
    segments[part] = seg[:i] + ("B" if seg[i] != "B" else "C") + seg[i + 1 :]
    return ".".join(segments)


BAD_ANSWERS = {
    "not-a-jws": (lambda k: "<html>502 Bad Gateway</html>", "malformed_message"),
    "empty": (lambda k: "", "malformed_message"),
    "tampered": (lambda k: _flip(seal(k[PEER], PEER, ORG, "t", {}), 1), "bad_signature"),
    "unknown-key": (
        lambda k: seal(envelope.SigningKey(k[PEER].key, f"{PEER}:chukan:sig:99"), PEER, ORG, "t", {}),
        "unknown_sender",
    ),
    "for-someone-else": (lambda k: seal(k[PEER], PEER, OTHER, "t", {}), "wrong_audience"),
    "stale": (
        lambda k: seal(k[PEER], PEER, ORG, "t", {}, now=datetime.now(UTC) - timedelta(hours=1)),
        "stale_message",
    ),
    # Registered and well signed, but not by the organization we called.
    "another-organization": (lambda k: seal(k[OTHER], OTHER, ORG, "t", {}), "issuer_mismatch"),
}


@pytest.mark.parametrize("name", list(BAD_ANSWERS))
def test_an_answer_we_cannot_verify_is_bad_peer_response(keys: dict[str, Any], name: str) -> None:
    make, reason = BAD_ANSWERS[name]
    problem = _refusal(keys, make(keys))
    assert (problem.status, problem.code) == (502, "bad_peer_response")
    assert problem.extra["reason_code"] == reason
    assert "連携先" in problem.title


PEER_BODIES: dict[str, tuple[int, Any, int, str]] = {
    # (HTTP status, body) → (our status, our code)
    "registered": (403, {"code": "rule_violation", "title": "照会できません。", "serial": "1" * 20}, 403, "rule_violation"),
    "registered-wrong-status": (401, {"code": "malformed_message", "title": "形式誤り", "status": 401}, 400, "malformed_message"),
    "status-200-in-body": (400, {"code": "bad_count", "title": "件数", "status": 200}, 422, "bad_count"),
    "peer-internal-error": (500, {"code": "internal_error", "title": "内部エラー", "status": 500}, 502, "peer_error"),
    "unknown-code": (418, {"code": "teapot", "title": "急須"}, 502, "peer_error"),
    "not-an-object": (400, ["code", "x"], 502, "peer_error"),
    "no-title": (409, {"code": "duplicate_serial"}, 502, "peer_error"),
    "code-not-a-string": (422, {"code": 7, "title": "x"}, 502, "peer_error"),
    "constructor-names": (404, {"code": "unknown_serial", "title": "なし", "self": 1, "extra": 2, "a b": 3}, 404, "unknown_serial"),
    "nothing": (503, None, 502, "peer_error"),
}


@pytest.mark.parametrize("name", list(PEER_BODIES))
def test_a_peer_refusal_is_relayed_with_our_status(name: str) -> None:
    http_status, body, status, code = PEER_BODIES[name]
    problem = Problem.from_dict(http_status, body, "https://peer")
    assert (problem.status, problem.code) == (status, code)
    assert problem.to_dict()["status"] == status
    if code == "rule_violation":
        assert problem.extra == {"serial": "1" * 20}
    if name == "constructor-names":
        assert problem.extra == {}
