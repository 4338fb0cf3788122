"""The time-stamp authority over its sealed routes: a node's own checkpoint gets a receipt;
a head that moves back is refused in Japanese and kept as an alert; a stranger's head,
another organization's node or a malformed body is refused and writes nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from renkei.core.audit import timestamping
from renkei.core.crypto import envelope
from renkei.core.wire import contract
from renkei.core.wire.keydir import KeyDirectory
from renkei.federation.topology import NAKANO, SHINJUKU, TSA
from renkei.tsa.app import create_app
from renkei.tsa.models import Base
from tests.api.fed import JOSE, Federation, assert_problem, counts, unchanged

NODE = f"{SHINJUKU.org_code}/atena"


@dataclass
class Authority:
    fed: Federation
    app: FastAPI
    client: TestClient
    keys: KeyDirectory

    def counts(self) -> dict[str, int]:
        return counts(self.app.state.rt.engine, Base.metadata)

    def send(self, path: str, sender: Any, typ: str, body: dict[str, Any], node: str = "atena") -> Any:
        """A message from ``sender``'s node ``node`` (every node signs with its own key)."""
        token = self.fed.seal(sender, TSA, typ, body, node=node)
        return self.client.post(path, content=token.encode(), headers=JOSE)

    def answer(self, resp: Any) -> dict[str, Any]:
        assert resp.status_code == 200, resp.text
        kid, payload = envelope.verify(resp.text, self.keys.public_key)
        assert kid.startswith(TSA.org_code + ":")
        body: dict[str, Any] = orjson.loads(payload)["body"]
        return body

    def stamp(
        self, seq: int, sender: Any = SHINJUKU, *, node: str = NODE, fork: str = "", by: str | None = None
    ) -> Any:
        """``sender``'s node ``by`` (by default the node named) submits a head of ``node``."""
        by = by or node.split("/", 1)[1]
        hash_ = hashlib.sha256(f"{seq}{fork}".encode()).hexdigest()
        at = timestamping.iso(datetime.now(UTC))
        token = envelope.sign(timestamping.signed_payload(seq, hash_, at), self.fed.key(sender, by))
        req = contract.TsaStamp(node=node, kind=timestamping.AUDIT_CHECKPOINT, seq=seq, hash=hash_, at=at, token=token)
        return self.send(timestamping.STAMP_PATH, sender, timestamping.STAMP_TYP, req.dump(), node=by)


@pytest.fixture(scope="module")
def tsa(fed: Federation) -> Iterator[Authority]:
    app = create_app(fed.config(TSA, "tsa"))
    # As if the registry had been fetched from the hub: the submitters' keys are known.
    for org in (SHINJUKU, NAKANO):
        app.state.rt.registry.directory.add(fed.public_doc(org))
    with TestClient(app) as client:
        yield Authority(fed, app, client, KeyDirectory.from_documents([fed.public_doc(TSA)]))


def test_a_checkpoint_is_countersigned_and_the_head_answered(tsa: Authority) -> None:
    body = tsa.answer(tsa.stamp(12))
    receipt = timestamping.open_receipt(body["receipt"], tsa.keys.public_key, tsa=TSA.org_code)
    assert (receipt.node, receipt.seq) == (NODE, 12)
    head = tsa.answer(
        tsa.send(timestamping.HEAD_PATH, SHINJUKU, timestamping.HEAD_TYP,
                 {"node": NODE, "kind": timestamping.AUDIT_CHECKPOINT})
    )
    parsed = timestamping.parse_head(
        contract.parse_reply(contract.TsaHead, head, "tsa"), tsa.keys.public_key, tsa=TSA.org_code, node=NODE, kind=timestamping.AUDIT_CHECKPOINT
    )
    assert parsed.seq == 12 and parsed.receipt is not None and parsed.receipt.token == body["receipt"]


def test_a_head_that_moves_back_is_refused_and_kept_as_an_alert(tsa: Authority) -> None:
    tsa.answer(tsa.stamp(40))
    before = tsa.counts()
    problem = assert_problem(tsa.stamp(39), 422, "head_regression")
    assert "40" in problem["detail"] and "39" in problem["detail"]
    after = tsa.counts()
    assert after["guard_alerts"] == before["guard_alerts"] + 1
    assert after["tsa_receipts"] == before["tsa_receipts"]
    assert_problem(tsa.stamp(40, fork="x"), 422, "head_conflict")
    with tsa.app.state.rt.sessions() as s:
        from renkei.tsa import service

        assert service.current_head(s, NODE, timestamping.AUDIT_CHECKPOINT, tsa=TSA.org_code).seq == 40


def test_every_stamped_head_is_listed_page_by_page(tsa: Authority) -> None:
    node = f"{SHINJUKU.org_code}/chukan"
    for seq in (3, 8, 15):
        tsa.answer(tsa.stamp(seq, node=node))
    ask = {"node": node, "kind": timestamping.AUDIT_CHECKPOINT}
    first = tsa.answer(tsa.send(timestamping.STAMPS_PATH, SHINJUKU, timestamping.STAMPS_TYP,
                                {**ask, "after": 0, "limit": 2}, node="chukan"))
    first_page = contract.parse_reply(contract.TsaStampsList, first, "tsa")
    pairs, more = timestamping.parse_stamps(first_page, after=0, node=node, kind=timestamping.AUDIT_CHECKPOINT)
    assert [p[0] for p in pairs] == [3, 8] and more
    rest = tsa.answer(tsa.send(timestamping.STAMPS_PATH, SHINJUKU, timestamping.STAMPS_TYP,
                               {**ask, "after": 8, "limit": 2}, node="chukan"))
    rest_page = contract.parse_reply(contract.TsaStampsList, rest, "tsa")
    pairs, more = timestamping.parse_stamps(rest_page, after=8, node=node, kind=timestamping.AUDIT_CHECKPOINT)
    assert [p[0] for p in pairs] == [15] and not more
    assert pairs[0][1] == hashlib.sha256(b"15").hexdigest()
    bad = tsa.send(
        timestamping.STAMPS_PATH, SHINJUKU, timestamping.STAMPS_TYP, {**ask, "after": 0, "limit": 10**6}, node="chukan"
    )
    assert_problem(bad, 422, "bad_page")


@pytest.mark.parametrize(
    "case", ["other_org_node", "own_org_other_node", "other_org_head", "malformed", "wrong_type"]
)
def test_refusals_write_nothing(tsa: Authority, case: str) -> None:
    before = tsa.counts()
    if case == "other_org_node":  # Nakano cannot stamp Shinjuku's node, even with its own valid token
        assert_problem(tsa.stamp(99, NAKANO), 403, "node_not_yours")
    elif case == "own_org_other_node":  # nor Shinjuku's chukan its atena's (every node its own key)
        assert_problem(tsa.stamp(99, SHINJUKU, by="chukan"), 403, "node_not_yours")
    elif case == "other_org_head":
        resp = tsa.send(timestamping.HEAD_PATH, NAKANO, timestamping.HEAD_TYP,
                        {"node": NODE, "kind": timestamping.AUDIT_CHECKPOINT})
        assert_problem(resp, 403, "node_not_yours")
    elif case == "malformed":
        resp = tsa.send(timestamping.STAMP_PATH, SHINJUKU, timestamping.STAMP_TYP, {"node": NODE, "seq": -1})
        assert_problem(resp, 422, "bad_stamp_request")
    else:
        resp = tsa.send(timestamping.STAMP_PATH, SHINJUKU, timestamping.HEAD_TYP, {})
        assert_problem(resp, 400, "wrong_message_type")
    unchanged(before, tsa.counts())
