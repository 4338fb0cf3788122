"""Several messages in one signed envelope (renkei.core.wire.contract, "batches").

Each message of a batch is handled as if it had come alone: authorized by the contract,
checked, kept against replay by its own id, refused on its own (its neighbours unharmed);
a batch that is not one is refused whole and writes nothing. The sender's side
(`PeerClient`) sends alone while the line is free and batches what waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from renkei.core.errors import Problem
from renkei.core.wire import contract
from renkei.core.wire.client import PeerClient
from renkei.core.wire.contract import AcquisitionCreate, Empty
from renkei.core.wire.keydir import KeyDirectory
from renkei.core.wire.messaging import new_message_id
from renkei.federation.topology import HUB, JLIS, NAKANO, SHINJUKU
from renkei.hub.app import create_app
from renkei.hub.models import Base
from tests.api.fed import Federation, assert_problem, b64flip, counts, unchanged

BATCH = contract.BATCH_PATH


class Hub:
    def __init__(self, fed: Federation, app: FastAPI, client: TestClient) -> None:
        self.fed, self.app, self.client = fed, app, client

    def counts(self) -> dict[str, int]:
        return counts(self.app.state.rt.engine, Base.metadata)

    def post(self, path: str, token: str) -> Any:
        return self.client.post(path, content=token.encode(), headers={"content-type": "application/jose"})

    def batch(self, items: list[dict[str, Any]], sender: Any = SHINJUKU, **seal: Any) -> str:
        return self.fed.seal(sender, HUB, contract.BATCH_TYP, {"messages": items}, **seal)

    def replies(self, token: str, sender: Any = SHINJUKU) -> list[dict[str, Any]]:
        """POST a batch; the verified reply's items (signed by the hub, for the sender)."""
        resp = self.post(BATCH, token)
        assert resp.status_code == 200, resp.text
        msg = asyncio.run(_opener(self).open(resp.text, expected_aud=sender.org_code, expected_iss=HUB.org_code))
        assert msg.typ == contract.BATCH_REPLY_TYP
        replies: list[dict[str, Any]] = msg.body["replies"]
        return replies


def _opener(hub: Hub) -> PeerClient:
    """Shinjuku's chukan's view: it verifies the hub's signature with the hub's public keys."""
    directory = KeyDirectory.from_documents([hub.fed.public_doc(HUB)])

    async def lookup(kid: str) -> Any:
        return directory.public_key(kid)

    return PeerClient(hub.app.state.rt.peer._ssl, hub.fed.key(SHINJUKU), SHINJUKU.org_code, lookup)


@pytest.fixture(scope="module")
def hub(fed: Federation) -> Iterator[Hub]:
    app = create_app(fed.config(HUB, "hub"))
    with TestClient(app) as client:
        yield Hub(fed, app, client)


def item(typ: str, body: dict[str, Any], message_id: str | None = None) -> dict[str, Any]:
    return {"id": message_id or new_message_id(), "typ": typ, "body": body}


# --- the receiver ------------------------------------------------------------------------


def test_each_message_is_answered_in_order_and_refused_alone(hub: Hub) -> None:
    before = hub.counts()
    items = [
        item("acquisition.create", {"count": 2}),
        item("acquisition.create", {"count": "two"}),  # its body does not fit: 422 alone
        item("pseudonym.deliver", {}),  # a type the hub does not take
        item("acquisition.resolve", {"items": []}),  # only J-LIS may send it
        item("registry.query", {}),
    ]
    replies = hub.replies(hub.batch(items))
    assert [r["id"] for r in replies] == [i["id"] for i in items]
    assert [r["status"] for r in replies] == [200, 422, 400, 403, 200]
    assert replies[0]["typ"] == "acquisition.created" and len(replies[0]["body"]["acquisition_nos"]) == 2
    assert [r["problem"]["code"] for r in replies[1:4]] == ["bad_count", "wrong_message_type", "sender_not_allowed"]
    assert all(r["problem"]["title"] for r in replies[1:4])
    assert replies[4]["typ"] == "registry.list" and replies[4]["body"]["organizations"]
    after = hub.counts()
    # Only the two accepted messages are kept (each by its own id), only one acquired.
    assert after["received_messages"] == before["received_messages"] + 2
    assert after["acquisitions"] == before["acquisitions"] + 2


def test_a_message_is_kept_by_its_own_id_so_a_replay_is_refused_in_any_envelope(hub: Hub) -> None:
    kept = item("acquisition.create", {"count": 1})
    assert hub.replies(hub.batch([kept, item("registry.query", {})]))[0]["status"] == 200
    before = hub.counts()
    # Again in a new batch, beside a fresh one; and alone, sealed as a plain message.
    replies = hub.replies(hub.batch([kept, item("registry.query", {})]))
    assert [r["status"] for r in replies] == [409, 200]
    assert replies[0]["problem"]["code"] == "replayed_message"
    alone = hub.fed.seal(SHINJUKU, HUB, "acquisition.create", {"count": 1}, message_id=kept["id"])
    assert_problem(hub.post("/v1/acquisitions", alone), 409, "replayed_message")
    # The same id twice in one batch: the second is the replay.
    twice = item("acquisition.create", {"count": 1})
    replies = hub.replies(hub.batch([twice, dict(twice)]))
    assert sorted(r["status"] for r in replies) == [200, 409]
    after = hub.counts()
    assert after["acquisitions"] == before["acquisitions"] + 1


def test_a_whole_batch_replayed_does_nothing_twice(hub: Hub) -> None:
    token = hub.batch([item("acquisition.create", {"count": 1}), item("acquisition.create", {"count": 1})])
    assert [r["status"] for r in hub.replies(token)] == [200, 200]
    before = hub.counts()
    replies = hub.replies(token)
    assert [r["problem"]["code"] for r in replies] == ["replayed_message", "replayed_message"]
    unchanged(before, hub.counts())


def test_each_message_is_authorized_by_the_sending_node(hub: Hub) -> None:
    # J-LIS may resolve; a member's chukan may not, in the same kind of envelope.
    resolve = [item("acquisition.resolve", {"items": []})]
    token = hub.fed.seal(JLIS, HUB, contract.BATCH_TYP, {"messages": resolve})
    assert hub.replies(token, sender=JLIS)[0]["status"] == 200
    refused = hub.replies(hub.batch([item("acquisition.resolve", {"items": []})]))[0]
    assert (refused["status"], refused["problem"]["code"]) == (403, "sender_not_allowed")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "malformed_message"),
        ({"messages": []}, 400, "malformed_message"),
        ({"messages": "x"}, 400, "malformed_message"),
        ({"messages": [{"id": "abcdefgh1", "typ": "registry.query"}]}, 400, "malformed_message"),
        ({"messages": [{"id": 7, "typ": "registry.query", "body": {}}]}, 400, "malformed_message"),
        ({"messages": [item("registry.query", {})] * (contract.MAX_BATCH_MESSAGES + 1)}, 422, "bad_count"),
    ],
    ids=["no-messages", "empty", "not-a-list", "no-body", "id-not-text", "too-many"],
)
def test_a_batch_that_is_not_one_is_refused_whole(hub: Hub, body: dict[str, Any], status: int, code: str) -> None:
    before = hub.counts()
    assert_problem(hub.post(BATCH, hub.fed.seal(SHINJUKU, HUB, contract.BATCH_TYP, body)), status, code)
    unchanged(before, hub.counts())


def test_a_bad_message_id_inside_is_refused_alone(hub: Hub) -> None:
    replies = hub.replies(hub.batch([item("registry.query", {}, "short"), item("registry.query", {}, "1" * 12 + "abcd")]))
    assert [r["problem"]["code"] for r in replies] == ["malformed_message", "malformed_message"]


def test_the_envelope_is_verified_like_any_message(hub: Hub) -> None:
    token = hub.batch([item("acquisition.create", {"count": 1})])
    before = hub.counts()
    assert_problem(hub.post(BATCH, b64flip(token, 1)), 401, "bad_signature")
    assert_problem(hub.post(BATCH, hub.fed.seal(SHINJUKU, NAKANO, contract.BATCH_TYP, {"messages": []})), 403,
                   "wrong_audience")
    unchanged(before, hub.counts())


def test_types_and_paths_do_not_mix(hub: Hub) -> None:
    before = hub.counts()
    # A batch posted to a route, and a plain message posted to the batch path.
    assert_problem(hub.post("/v1/acquisitions", hub.batch([item("acquisition.create", {"count": 1})])), 400,
                   "wrong_message_type")
    assert_problem(hub.post(BATCH, hub.fed.seal(SHINJUKU, HUB, "acquisition.create", {"count": 1})), 400,
                   "wrong_message_type")
    # A batch inside a batch is not a message type any route takes.
    inner = item(contract.BATCH_TYP, {"messages": [item("acquisition.create", {"count": 1})]})
    assert hub.replies(hub.batch([inner]))[0]["problem"]["code"] == "wrong_message_type"
    unchanged(before, hub.counts())


# --- the sender -------------------------------------------------------------------------


def test_the_client_sends_a_batch_and_reads_each_reply(hub: Hub) -> None:
    """`PeerClient._send_batch` against the hub's batch route: replies as models, refusals
    as the Problem a message sent alone would have raised."""
    client = _opener(hub)

    async def call(url: str, aud: str, typ: str, body: dict[str, Any], **_: Any) -> Any:
        assert url.endswith(BATCH) and typ == contract.BATCH_TYP
        token = hub.fed.seal(SHINJUKU, aud, typ, body)
        resp = hub.post(BATCH, token)
        assert resp.status_code == 200, resp.text
        return await client.open(resp.text, expected_aud=SHINJUKU.org_code, expected_iss=aud)

    client.call = call  # type: ignore[method-assign]
    results = asyncio.run(
        client._send_batch(
            "https://hub.invalid",
            HUB.org_code,
            [
                (contract.ACQUISITION_CREATE, AcquisitionCreate(count=1)),
                (contract.REGISTRY_QUERY, Empty()),
                (contract.ACQUISITION_RESOLVE, contract.AcquisitionResolve(items=[])),
            ],
        )
    )
    assert isinstance(results[0], contract.AcquisitionCreated) and len(results[0].acquisition_nos) == 1
    assert isinstance(results[1], contract.RegistryList)
    assert isinstance(results[2], Problem) and (results[2].status, results[2].code) == (403, "sender_not_allowed")


class _Recorder(PeerClient):
    """A peer client whose network is a list: what was sent alone, what together."""

    def __init__(self, in_flight: int, fail_batches: bool = False) -> None:
        super().__init__(None, None, SHINJUKU.org_code, None, batch_in_flight=in_flight, batch_max=3)  # type: ignore[arg-type]
        self.sent: list[list[int]] = []
        self.gate = asyncio.Event()
        self.fail_batches = fail_batches

    async def _send_one(self, mt: Any, base_url: str, aud: str, body: Any) -> Any:
        self.sent.append([body.count])
        await self.gate.wait()
        return contract.AcquisitionCreated(acquisition_nos=[str(body.count)])

    async def _send_batch(self, base_url: str, aud: str, items: list[Any]) -> list[Any]:
        self.sent.append([body.count for _mt, body in items])
        await self.gate.wait()
        if self.fail_batches:
            raise Problem(503, "peer_unavailable", "連携先に接続できません。")
        return [
            Problem(422, "bad_count", "件数") if body.count == 0 else contract.AcquisitionCreated(acquisition_nos=[str(body.count)])
            for _mt, body in items
        ]


def _batchable() -> Any:
    # Acquisition requests are bulk messages (never batched); the recorder treats them as a
    # small batchable type, to see the batching itself.
    from dataclasses import replace

    return replace(contract.ACQUISITION_CREATE, batchable=True)


def _run(client: _Recorder, counts_: list[int]) -> list[Any]:
    mt = _batchable()

    async def main() -> list[Any]:
        tasks = [asyncio.create_task(client.send(mt, "https://peer", HUB.org_code, AcquisitionCreate.model_construct(count=n))) for n in counts_]
        for _ in range(5):
            await asyncio.sleep(0)
        client.gate.set()
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    return asyncio.run(main())


def test_a_free_line_sends_at_once_and_what_waits_goes_together() -> None:
    client = _Recorder(in_flight=1)
    results = _run(client, [1, 2, 3, 4, 0, 6])
    # The first went alone; the rest waited for it and went in envelopes of at most 3.
    assert client.sent == [[1], [2, 3, 4], [0, 6]]
    assert [r.acquisition_nos for r in results if not isinstance(r, Problem)] == [["1"], ["2"], ["3"], ["4"], ["6"]]
    refused = results[4]
    assert isinstance(refused, Problem) and refused.code == "bad_count"


def test_more_lines_send_more_alone() -> None:
    client = _Recorder(in_flight=2)
    _run(client, [1, 2, 3])
    assert client.sent == [[1], [2], [3]]  # the third waited, alone (a batch of one is a plain message)


def test_a_failed_envelope_fails_each_of_its_messages() -> None:
    client = _Recorder(in_flight=1, fail_batches=True)
    results = _run(client, [1, 2, 3])
    assert not isinstance(results[0], Problem)
    assert [r.code for r in results[1:]] == ["peer_unavailable", "peer_unavailable"]


def test_no_batching_when_switched_off_or_for_bulk_types() -> None:
    client = _Recorder(in_flight=0)
    _run(client, [1, 2, 3])
    assert client.sent == [[1], [2], [3]]
    bulk = _Recorder(in_flight=1)

    async def main() -> None:
        tasks = [asyncio.create_task(bulk.send(contract.ACQUISITION_CREATE, "https://peer", HUB.org_code, AcquisitionCreate(count=n))) for n in (1, 2, 3)]
        await asyncio.sleep(0)
        bulk.gate.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert bulk.sent == [[1], [2], [3]]


def test_inquiries_to_different_providers_never_share_an_envelope() -> None:
    """A slow provider must hold back no inquiry to another (contract: ``batch_by``)."""
    from dataclasses import replace

    assert contract.HUB_INQUIRY.batch_by == contract.CHUKAN_INQUIRY.batch_by == "provider_org"
    client = _Recorder(in_flight=1)
    mt = replace(_batchable(), batch_by="count")  # the recorder's stand-in for provider_org

    async def main() -> None:
        tasks = [
            asyncio.create_task(client.send(mt, "https://hub", HUB.org_code, AcquisitionCreate.model_construct(count=n)))
            for n in (1, 2, 1, 2, 1, 2)
        ]
        for _ in range(5):
            await asyncio.sleep(0)
        client.gate.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    # Per provider: the first alone, the rest together — never 1s and 2s in one envelope.
    assert sorted(client.sent) == [[1], [1, 1], [2], [2, 2]]
