"""Pseudonym acquisition at the intermediate server's sealed routes, with the hub
standing in (the peer client's call answers): the own atena starts an acquisition (one
acquisition number from the hub per 統合宛名番号, kept until delivery), the hub delivers
pseudonyms (bound item by item), atena asks which are bound (never the pseudonym).

The suite runs with RENKEI_EVENT_LOOP_IO=error: every database statement of these
routes must run off the event loop. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from starlette.testclient import TestClient

from renkei.chukan.app import create_app
from renkei.chukan.models import Base, PendingAcquisition, PseudonymBinding
from renkei.core import ids
from renkei.core.crypto import envelope
from renkei.core.db import make_engine
from renkei.core.wire import contract
from renkei.core.wire.client import PeerUnavailable
from renkei.core.wire.keydir import KeyDirectory
from renkei.core.wire.messaging import Message, new_message_id
from renkei.federation.topology import HUB, SHINJUKU, Org
from tests.api.fed import JOSE, Federation, assert_problem, build_federation, counts, unchanged
from tests.conftest import BACKENDS, create_pg_database, drop_pg_database

A1, A2, A3, A4, A5, A6 = (ids.make_atena_no(n) for n in (501, 502, 503, 504, 505, 506))


@dataclass
class StandInHub:
    """Answers acquisition.create with ``numbers`` (or as many as asked)."""

    numbers: list[str] | None = None
    asked: list[dict[str, Any]] = field(default_factory=list)
    issued: int = 0

    async def call(self, url: str, aud: str, typ: str, body: dict[str, Any], **_: Any) -> Message:
        if typ != contract.ACQUISITION_CREATE.typ:
            raise PeerUnavailable(url, "no hub in this test")  # e.g. a registry refresh
        self.asked.append(body)
        if self.numbers is not None:
            numbers = self.numbers
        else:
            numbers = [f"2025040100{self.issued + i:010d}" for i in range(body["count"])]
            self.issued += body["count"]
        return Message(new_message_id(), HUB.org_code, SHINJUKU.org_code, contract.ACQUISITION_CREATE.reply_typ, 0,
                       {"acquisition_nos": numbers}, node="hub")  # fmt: skip


@dataclass
class Chukan:
    fed: Federation
    app: FastAPI
    client: TestClient
    hub: StandInHub

    def counts(self) -> dict[str, int]:
        return counts(self.app.state.rt.engine, Base.metadata)

    def send(self, mt: contract.MessageType[Any, Any], body: dict[str, Any], sender: Org, node: str) -> Any:
        token = self.fed.seal(sender, SHINJUKU, mt.typ, body, node=node)
        return self.client.post(mt.path, content=token.encode(), headers=JOSE)

    def reply(self, resp: Any, mt: contract.MessageType[Any, Any]) -> Any:
        assert resp.status_code == 200, resp.text
        keys = KeyDirectory.from_documents([self.fed.public_doc(SHINJUKU)])
        kid, payload = envelope.verify(resp.text, keys.public_key)
        message = orjson.loads(payload)
        assert kid.startswith(f"{SHINJUKU.org_code}:chukan:") and message["typ"] == mt.reply_typ
        return contract.parse_reply(mt.reply, message["body"], "chukan")


@pytest.fixture(scope="module", params=BACKENDS)
def chukan(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chukan]:
    fed = build_federation(tmp_path_factory, "acquisition")
    url = (
        create_pg_database()
        if request.param == "postgresql"
        else f"sqlite:///{tmp_path_factory.mktemp('chukan') / 'chukan.db'}"
    )
    engine = make_engine(url)
    try:
        app = create_app(fed.config(SHINJUKU, "chukan"), engine=engine)
        app.state.rt.registry.directory.add(fed.public_doc(SHINJUKU))  # its atena's key
        hub = StandInHub()
        app.state.rt.peer.call = hub.call
        with TestClient(app) as client:
            yield Chukan(fed, app, client, hub)
    finally:
        engine.dispose()
        if request.param == "postgresql":
            drop_pg_database(url)


def test_acquire_deliver_and_status(chukan: Chukan) -> None:
    started = chukan.reply(
        chukan.send(contract.PSEUDONYM_ACQUIRE, {"atena_nos": [A1, A2]}, SHINJUKU, "atena"), contract.PSEUDONYM_ACQUIRE
    )
    assert chukan.hub.asked[-1] == {"count": 2}
    pairs = {(i.atena_no, i.acquisition_no) for i in started.items}
    assert {a for a, _ in pairs} == {A1, A2}
    with chukan.app.state.rt.sessions() as s:
        pending = {(p.atena_no, p.acquisition_no) for p in s.scalars(select(PendingAcquisition))}
    assert pairs <= pending
    number = dict(pairs)
    items = [
        {"acquisition_no": number[A1], "pseudonym": "p" * 40},
        {"acquisition_no": "20250401999999999999", "pseudonym": "q" * 40},
    ]
    delivered = chukan.reply(chukan.send(contract.PSEUDONYM_DELIVER, {"items": items}, HUB, "hub"),
                             contract.PSEUDONYM_DELIVER)  # fmt: skip
    assert (delivered.bound, delivered.unknown_acquisition, delivered.conflict) == (1, 1, 0)
    with chukan.app.state.rt.sessions() as s:
        binding = s.get(PseudonymBinding, A1)
        assert binding is not None and binding.pseudonym == "p" * 40
    asked = chukan.send(contract.PSEUDONYM_STATUS, {"atena_nos": [A1, A2, A3]}, SHINJUKU, "atena")
    status = chukan.reply(asked, contract.PSEUDONYM_STATUS)
    assert status.bound == [A1]  # whether bound, never the pseudonym
    assert "p" * 40 not in status.model_dump_json()


def test_asked_again_a_person_keeps_the_number_awaiting_its_pseudonym(chukan: Chukan) -> None:
    """A retry (atena after a crash): a person whose number still awaits its pseudonym
    gets the same number back; only the others get new numbers from the hub; a person
    named twice in one request gets one number; a person already bound keeps theirs."""
    first = chukan.reply(
        chukan.send(contract.PSEUDONYM_ACQUIRE, {"atena_nos": [A6]}, SHINJUKU, "atena"), contract.PSEUDONYM_ACQUIRE
    )
    [(_, number)] = [(i.atena_no, i.acquisition_no) for i in first.items]
    asked = len(chukan.hub.asked)
    again = chukan.reply(
        chukan.send(contract.PSEUDONYM_ACQUIRE, {"atena_nos": [A6, A6]}, SHINJUKU, "atena"), contract.PSEUDONYM_ACQUIRE
    )
    assert [(i.atena_no, i.acquisition_no) for i in again.items] == [(A6, number), (A6, number)]
    assert len(chukan.hub.asked) == asked  # the hub was not asked
    with chukan.app.state.rt.sessions() as s:
        assert list(s.scalars(select(PendingAcquisition.acquisition_no).where(PendingAcquisition.atena_no == A6))) == [
            number
        ]
    # Once bound, asked again (a list that still names the person): the number they were
    # bound under, and the hub is not asked for a second one.
    chukan.reply(
        chukan.send(contract.PSEUDONYM_DELIVER, {"items": [{"acquisition_no": number, "pseudonym": "r" * 40}]}, HUB, "hub"),
        contract.PSEUDONYM_DELIVER,
    )
    later = chukan.reply(
        chukan.send(contract.PSEUDONYM_ACQUIRE, {"atena_nos": [A6]}, SHINJUKU, "atena"), contract.PSEUDONYM_ACQUIRE
    )
    assert later.items[0].acquisition_no == number and len(chukan.hub.asked) == asked


def test_a_hub_that_hands_out_the_wrong_count_keeps_nothing(chukan: Chukan) -> None:
    chukan.hub.numbers = ["20250401000000000900"]
    try:
        before = chukan.counts()
        resp = chukan.send(contract.PSEUDONYM_ACQUIRE, {"atena_nos": [A4, A5]}, SHINJUKU, "atena")
        assert_problem(resp, 502, "peer_error")
        after = chukan.counts()
        # The request's id was kept before the hub was asked (a replay must not reach it); nothing else.
        assert after["received_messages"] == before["received_messages"] + 1
        unchanged({k: v for k, v in before.items() if k != "received_messages"}, after)
    finally:
        chukan.hub.numbers = None


def test_an_empty_acquisition_asks_the_hub_nothing(chukan: Chukan) -> None:
    asked = len(chukan.hub.asked)
    before = chukan.counts()
    assert_problem(chukan.send(contract.PSEUDONYM_ACQUIRE, {"atena_nos": []}, SHINJUKU, "atena"), 422, "bad_count")
    unchanged(before, chukan.counts())
    assert len(chukan.hub.asked) == asked
