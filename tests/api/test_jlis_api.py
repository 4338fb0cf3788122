"""J-LIS over its sealed route: a member's atena submits (individual number, acquisition
number) pairs; each known number's resident code goes to the hub through the outbox, in
the contract's `acquisition.resolve` body, and never the number itself. A body that does
not fit, or a sender that may not submit, is refused in Japanese and writes nothing.

The suite runs with RENKEI_EVENT_LOOP_IO=error: the route's database work must run off
the event loop (a statement on the loop would be a 500 here)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from starlette.testclient import TestClient

from renkei.core import ids
from renkei.core.crypto import envelope
from renkei.core.db import transaction
from renkei.core.wire import contract
from renkei.core.wire.keydir import KeyDirectory
from renkei.federation.topology import HUB, JLIS, NAKANO, SHINJUKU, Org
from renkei.jlis import service
from renkei.jlis.app import create_app
from renkei.jlis.models import Base, RelayedAcquisition, audit, kernel
from tests.api.fed import JOSE, Federation, assert_problem, counts, unchanged

RNG = random.Random(20250402)
PEOPLE = [(ids.generate_individual_number(RNG), ids.generate_resident_code(RNG), "131041") for _ in range(3)]
STRANGER = ids.generate_individual_number(random.Random(7))


def _acq(i: int) -> str:
    return f"2025040200000000{i:04d}"


@dataclass
class Jlis:
    fed: Federation
    app: FastAPI
    client: TestClient

    def counts(self) -> dict[str, int]:
        return counts(self.app.state.rt.engine, Base.metadata)

    def submit(self, body: dict[str, Any], sender: Org = SHINJUKU, node: str = "atena") -> Any:
        token = self.fed.seal(sender, JLIS, contract.ACQUISITION_SUBMIT.typ, body, node=node)
        return self.client.post(contract.ACQUISITION_SUBMIT.path, content=token.encode(), headers=JOSE)

    def outbox(self) -> list[dict[str, Any]]:
        t = kernel.outbox
        with self.app.state.rt.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(t).where(t.c.typ != "tsa.stamp").order_by(t.c.id)).mappings()]


@pytest.fixture(scope="module")
def jlis(fed: Federation) -> Iterator[Jlis]:
    app = create_app(fed.config(JLIS, "jlis"))
    # As if the registry had been fetched from the hub: the members' keys are known.
    for org in (SHINJUKU, NAKANO):
        app.state.rt.registry.directory.add(fed.public_doc(org))
    with TestClient(app) as client:
        with transaction(app.state.rt.sessions) as s:
            service.load_citizens(s, app.state.cipher, PEOPLE, datetime.now(UTC))
        yield Jlis(fed, app, client)


def test_known_numbers_go_to_the_hub_as_resident_codes(jlis: Jlis) -> None:
    items = [
        {"individual_number": PEOPLE[0][0], "acquisition_no": _acq(1)},
        {"individual_number": STRANGER, "acquisition_no": _acq(2)},
        {"individual_number": PEOPLE[1][0][:-1], "acquisition_no": _acq(3)},
        {"individual_number": PEOPLE[1][0], "acquisition_no": "12345"},
        {"individual_number": PEOPLE[2][0], "acquisition_no": _acq(5)},
    ]
    resp = jlis.submit({"items": items})
    assert resp.status_code == 200, resp.text
    keys = KeyDirectory.from_documents([jlis.fed.public_doc(JLIS)])
    kid, payload = envelope.verify(resp.text, keys.public_key)
    answer = orjson.loads(payload)
    assert kid.startswith(f"{JLIS.org_code}:jlis:") and answer["typ"] == contract.ACQUISITION_SUBMIT.reply_typ
    reply = contract.parse_reply(contract.ItemStatuses, answer["body"], "jlis")
    assert [(r.acquisition_no, r.status) for r in reply.results] == [
        (_acq(1), "relayed"),
        (_acq(2), "unknown_individual_number"),
        (_acq(3), "invalid_individual_number"),
        ("12345", "bad_acquisition_no"),
        (_acq(5), "relayed"),
    ]
    # One message for the hub, in the contract's body, with resident codes only.
    [box] = jlis.outbox()
    config = jlis.fed.config(JLIS, "jlis")
    assert box["typ"] == contract.ACQUISITION_RESOLVE.typ and box["audience"] == HUB.org_code
    assert box["destination"] == config.peer("hub").rstrip("/") + contract.ACQUISITION_RESOLVE.path
    sent = contract.parse(contract.AcquisitionResolve, box["body"])
    assert [(i.acquisition_no, i.resident_code, i.org_code) for i in sent.items] == [
        (_acq(1), PEOPLE[0][1], SHINJUKU.org_code),
        (_acq(5), PEOPLE[2][1], SHINJUKU.org_code),
    ]
    assert not any(number in json.dumps(box["body"]) for number, _code, _lg in PEOPLE)
    with jlis.app.state.rt.sessions() as s:
        relayed = s.scalars(select(RelayedAcquisition.acquisition_no).order_by(RelayedAcquisition.acquisition_no))
        assert list(relayed) == [_acq(1), _acq(5)]
    t = audit.entries
    with jlis.app.state.rt.engine.connect() as conn:
        [entry] = conn.execute(select(t).where(t.c.action == "acquisition.relay")).mappings().all()
    assert entry["actor"] == SHINJUKU.org_code and entry["detail"] == {
        "relayed": 2, "unknown_individual_number": 1, "invalid_individual_number": 1, "bad_acquisition_no": 1,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "bad_items"),
        ({"items": None}, "bad_items"),
        ({"items": {"individual_number": PEOPLE[0][0]}}, "bad_items"),
        ({"items": ["not an object"]}, "bad_items"),
        ({"items": [{"individual_number": PEOPLE[0][0], "acquisition_no": _acq(9)}] * 10_001}, "bad_count"),
    ],
    ids=["no-items", "null", "object", "item-not-an-object", "too-many"],
)
def test_a_body_that_does_not_fit_is_refused_and_writes_nothing(jlis: Jlis, body: dict[str, Any], code: str) -> None:
    before = jlis.counts()
    assert_problem(jlis.submit(body), 422, code)
    unchanged(before, jlis.counts())


@pytest.mark.parametrize(
    ("sender", "node"), [(SHINJUKU, "chukan"), (HUB, "hub")], ids=["a-chukan", "the-hub"]
)
def test_only_an_atena_may_submit(jlis: Jlis, sender: Org, node: str) -> None:
    before = jlis.counts()
    items = [{"individual_number": PEOPLE[0][0], "acquisition_no": _acq(8)}]
    problem = assert_problem(jlis.submit({"items": items}, sender, node), 403, "sender_not_allowed")
    assert "団体内統合宛名システム" in problem["title"]
    unchanged(before, jlis.counts())


# --- identity search on 基本4情報 ------------------------------------------------------------

WHO = {"family_name": "中井", "given_name": "栞", "family_kana": "ナカイ", "given_kana": "シオリ",
       "birth_date": "1991-11-11", "sex": "2", "address": "東京都中野区中央一丁目2番3号"}  # fmt: skip


def _search(jlis: Jlis, body: dict[str, Any], sender: Org = SHINJUKU, node: str = "atena") -> Any:
    token = jlis.fed.seal(sender, JLIS, contract.IDENTITY_SEARCH.typ, body, node=node)
    return jlis.client.post(contract.IDENTITY_SEARCH.path, content=token.encode(), headers=JOSE)


def test_identity_search_over_the_sealed_route(jlis: Jlis) -> None:
    number, code = ids.generate_individual_number(RNG), ids.generate_resident_code(RNG)
    with transaction(jlis.app.state.rt.sessions) as s:
        who = service.parse_identities([WHO])[0]
        assert who is not None
        service.load_citizens(s, jlis.app.state.cipher, [(number, code, "131148")], datetime.now(UTC), {code: who})
    body = {"affair_code": "JM01000000074000", **{k: WHO[k] for k in ("family_name", "given_name", "birth_date",
            "sex")}, "address": "中野区中央1-2-3"}  # fmt: skip
    resp = _search(jlis, body)
    assert resp.status_code == 200, resp.text
    keys = KeyDirectory.from_documents([jlis.fed.public_doc(JLIS)])
    _kid, payload = envelope.verify(resp.text, keys.public_key)
    answer = orjson.loads(payload)
    assert answer["typ"] == "identity.found" and answer["aud"] == SHINJUKU.org_code
    found = contract.parse_reply(contract.IdentityFound, answer["body"], "jlis")
    assert (found.status, found.individual_number) == ("found", number)
    nobody = contract.parse_reply(
        contract.IdentityFound, orjson.loads(envelope.verify(_search(jlis, {**body, "sex": "1"}).text,
                                                             keys.public_key)[1])["body"], "jlis",
    )  # fmt: skip
    assert (nobody.status, nobody.individual_number) == ("not_found", None)
    t = audit.entries
    with jlis.app.state.rt.engine.connect() as conn:
        entries = conn.execute(select(t).where(t.c.action == "identity.search").order_by(t.c.seq)).mappings().all()
    assert [(e["actor"], e["outcome"], e["affair"]) for e in entries] == [
        (SHINJUKU.org_code, "found", "JM01000000074000"), (SHINJUKU.org_code, "not_found", "JM01000000074000"),
    ]
    assert number not in str([dict(e) for e in entries]) and "中井" not in str([dict(e) for e in entries])
    # Only an atena may ask; a partial query is refused before any work.
    before = jlis.counts()
    assert_problem(_search(jlis, body, SHINJUKU, "chukan"), 403, "sender_not_allowed")
    assert_problem(_search(jlis, {**body, "address": ""}), 422, "bad_identity_query")
    unchanged(before, jlis.counts())
