"""atena's flows that call other nodes (renkei.atena.flows), with the chukan and J-LIS
played in-process: what each party is sent (typed messages of the wire contract, each
party only its part), what atena keeps, and how a peer's unfit reply is refused.

The suite runs with RENKEI_EVENT_LOOP_IO=error: a database call on the event loop in
any of these routes fails the request (500), so every passing test here also shows the
flow's database work ran in worker threads.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select

from renkei.atena import flows
from renkei.atena.models import InquiryLog, Person
from renkei.atena.service import translate_all
from renkei.core import ids
from renkei.core.db import EVENT_LOOP_IO_ENV
from renkei.core.errors import Problem
from renkei.core.wire import contract
from renkei.core.wire.messaging import Message
from tests.api.fed import Federation, assert_problem, unchanged
from tests.atena.kit import AtenaKit, open_atena
from tests.atena.test_auth_api import inquiry, person
from tests.conftest import BACKENDS, create_pg_database, drop_pg_database

CHILD = "child_allowance"
TAX_INFO = "TM00000000000002"
PEOPLE = 8


@dataclass
class Peers:
    """The chukan and J-LIS as atena sees them: each call recorded, its body parsed with
    the contract's request model, answered by type."""

    own_org: str
    answers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = field(default_factory=dict)
    sent: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)

    async def __call__(self, url: str, aud: str, typ: str, body: dict[str, Any], **_: Any) -> Message:
        self.sent.append((url, aud, typ, body))
        mt = contract.message_type(typ)
        assert mt is not None, typ
        # Received as the real node receives it: the body must be the contract's model.
        assert contract.parse(mt.request, body).dump() == body
        reply = self.answers[typ](body)
        return Message("m" * 22, aud, self.own_org, mt.reply_typ, 0, reply, node=mt.receiver)

    def typs(self) -> list[str]:
        return [typ for _url, _aud, typ, _body in self.sent]


@dataclass
class World:
    atena: AtenaKit
    atena_nos: list[str]  # of person(300 + i)
    numbers: dict[str, str]  # 統合宛名番号 → individual number

    def child_no(self, i: int) -> str:
        return ids.make_atena_no(830_000 + i)

    def jumin(self, atena_nos: list[str]) -> list[str]:
        """The resident register's 宛名番号 of these persons: what a business system sends."""
        return [ids.make_atena_no(630_000 + self.atena_nos.index(a)) for a in atena_nos]

    def status_of(self, atena_no: str) -> str:
        with self.atena.app.state.rt.sessions() as s:
            return str(s.scalar(select(Person.pseudonym_status).where(Person.atena_no == atena_no)))

    def url(self, node: str, path: str) -> str:
        return str(self.atena.app.state.rt.config.peer(node)).rstrip("/") + path


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, fed: Federation) -> Iterator[World]:
    assert_loop_io_is_an_error()
    url = create_pg_database() if request.param == "postgresql" else None  # else its own SQLite file
    try:
        with open_atena(fed, database_url=url) as a:
            assert a.app.state.rt.engine.dialect.name == request.param
            yield _registered(a)
    finally:
        if url is not None:
            drop_pg_database(url)


def _registered(a: AtenaKit) -> World:
    """The atena with `PEOPLE` residents, each linked to the child-allowance and tax systems."""
    persons = [
        person(
            300 + i,
            business_numbers={
                CHILD: ids.make_atena_no(830_000 + i),
                "tax": ids.make_atena_no(730_000 + i),
                "jumin01": ids.make_atena_no(630_000 + i),
            },
        )
        for i in range(PEOPLE)
    ]
    r = a.post("/v1/residents", {"persons": persons})
    assert r.status_code == 200, r.text
    assert [x["outcome"] for x in r.json()["results"]] == ["numbered"] * PEOPLE
    # No chukan here: the numbering stands, its pseudonym acquisition waits.
    assert r.json()["acquisition"]["deferred"].startswith("peer_unavailable")
    with a.app.state.rt.sessions() as s:
        atena_nos = translate_all(s, CHILD, [p["business_numbers"][CHILD] for p in persons])
    return World(a, atena_nos, {n: p["individual_number"] for n, p in zip(atena_nos, persons, strict=True)})


def assert_loop_io_is_an_error() -> None:
    assert os.environ.get(EVENT_LOOP_IO_ENV) == "error"


@pytest.fixture
def peers(world: World, monkeypatch: pytest.MonkeyPatch) -> Peers:
    rt = world.atena.app.state.rt
    fake = Peers(rt.org_code)
    monkeypatch.setattr(rt.peer, "call", fake)
    return fake


def last_audit(world: World) -> dict[str, Any]:
    return world.atena.audit()[-1]


# --- pseudonym acquisition -------------------------------------------------------------------


def test_acquisition_gives_chukan_and_jlis_each_only_their_part(world: World, peers: Peers) -> None:
    asked, stranger = world.atena_nos[0:2], world.atena_nos[2]
    # The chukan also names a person atena did not ask about: no number leaves for them.
    peers.answers["pseudonym.acquire"] = lambda body: {
        "items": [
            {"atena_no": a, "acquisition_no": f"{i + 1:020d}"} for i, a in enumerate([*body["atena_nos"], stranger])
        ]
    }
    peers.answers["acquisition.submit"] = lambda body: {
        "results": [
            {"acquisition_no": item["acquisition_no"], "status": "relayed" if i == 0 else "unknown_acquisition"}
            for i, item in enumerate(body["items"])
        ]
    }
    resp = world.atena.post("/v1/pseudonyms/acquire", {"business_atena_nos": world.jumin(asked)})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"requested": 2, "relayed": 1, "problems": {"unknown_acquisition": 1}}
    rt = world.atena.app.state.rt
    (to_chukan, to_jlis) = peers.sent
    assert to_chukan == (
        world.url("chukan", "/v1/acquisitions"), rt.org_code, "pseudonym.acquire", {"atena_nos": asked}
    )
    url, aud, typ, body = to_jlis
    assert (url, aud, typ) == (
        world.url("jlis", "/v1/acquisitions"), rt.config.extra["jlis_org_code"], "acquisition.submit"
    )
    assert body == {
        "items": [
            {"individual_number": world.numbers[asked[0]], "acquisition_no": f"{1:020d}"},
            {"individual_number": world.numbers[asked[1]], "acquisition_no": f"{2:020d}"},
        ]
    }
    # J-LIS never learns a 統合宛名番号; the stranger's number never left.
    assert not any(a in str(body) for a in world.atena_nos)
    assert world.numbers[stranger] not in str(peers.sent)
    # Only the person J-LIS relayed is under way; the other stays to be asked for again.
    assert [world.status_of(a) for a in (*asked, stranger)] == ["requested", "none", "none"]
    entry = last_audit(world)
    assert (entry["actor"], entry["action"], entry["outcome"], entry["detail"]) == (
        "jumin01-batch", "pseudonym.acquire", "ok", {"count": 2, "relayed": 1, "unknown_acquisition": 1},
    )


def test_all_pending_asks_for_every_person_without_a_bound_pseudonym(world: World, peers: Peers) -> None:
    with world.atena.app.state.rt.sessions() as s:
        pending = sorted(s.scalars(select(Person.atena_no).where(Person.pseudonym_status != "bound")))
    peers.answers["pseudonym.acquire"] = lambda body: {"items": []}
    resp = world.atena.post("/v1/pseudonyms/acquire", {"all_pending": True})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"requested": len(pending), "relayed": 0, "problems": {}}
    # Nothing to send J-LIS when the chukan obtained no numbers.
    assert peers.typs() == ["pseudonym.acquire"] and peers.sent[0][3] == {"atena_nos": pending}


def test_an_unfit_reply_of_the_chukan_is_refused_and_nothing_reaches_jlis(world: World, peers: Peers) -> None:
    asked = world.atena_nos[3]
    peers.answers["pseudonym.acquire"] = lambda body: {"items": "not a list"}
    before = world.atena.counts()
    resp = world.atena.post("/v1/pseudonyms/acquire", {"business_atena_nos": world.jumin([asked])})
    assert assert_problem(resp, 502, "bad_peer_response")["reason_code"] == "bad_reply_body"
    assert peers.typs() == ["pseudonym.acquire"]
    unchanged(before, world.atena.counts())
    assert world.status_of(asked) == "none"
    entry = last_audit(world)
    assert (entry["actor"], entry["action"], entry["outcome"]) == (
        "jumin01-batch", "pseudonym.acquire", "bad_peer_response",
    )


def test_a_malformed_atena_no_is_refused_audited_and_nothing_is_sent(world: World, peers: Peers) -> None:
    good = world.jumin([world.atena_nos[4]])[0]
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    resp = world.atena.post("/v1/pseudonyms/acquire", {"business_atena_nos": [good, bad]})
    assert_problem(resp, 422, "invalid_business_atena_no")
    assert peers.sent == []
    assert last_audit(world)["outcome"] == "invalid_business_atena_no"


def test_status_marks_only_the_persons_asked_about(world: World, peers: Peers) -> None:
    asked, stranger = world.atena_nos[5:7], world.atena_nos[7]
    peers.answers["pseudonym.status"] = lambda body: {"bound": [body["atena_nos"][0], stranger]}
    resp = world.atena.post("/v1/pseudonyms/status", {"business_atena_nos": world.jumin(asked)})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"total": 2, "bound": 1, "bound_business_atena_nos": world.jumin(asked[:1])}
    assert peers.sent == [
        (world.url("chukan", "/v1/acquisitions/status"), world.atena.app.state.rt.org_code,
         "pseudonym.status", {"atena_nos": asked}),
    ]  # fmt: skip
    assert [world.status_of(a) for a in (*asked, stranger)] == ["bound", "none", "none"]


def test_acquire_all_asks_in_chunks_and_waits_until_bound(world: World, peers: Peers) -> None:
    """The whole-population run: persons not yet requested, in chunks; J-LIS's refusal
    leaves its person to be asked for again; the chukan's status marks them bound; the run
    and each chunk audited under the actor given."""
    rt, cipher = world.atena.app.state.rt, world.atena.app.state.cipher
    with rt.sessions() as s:
        todo = sorted(s.scalars(select(Person.atena_no).where(Person.pseudonym_status == "none")))
        waiting = sorted(s.scalars(select(Person.atena_no).where(Person.pseudonym_status == "requested")))
    assert len(todo) >= 4
    refused = todo[1]
    numbers: dict[str, str] = {}

    def acquiring(body: dict[str, Any]) -> dict[str, Any]:
        for a in body["atena_nos"]:
            numbers.setdefault(a, f"{len(numbers) + 1:020d}")
        return {"items": [{"atena_no": a, "acquisition_no": numbers[a]} for a in body["atena_nos"]]}

    def relay(body: dict[str, Any]) -> dict[str, Any]:
        return {
            "results": [
                {"acquisition_no": i["acquisition_no"],
                 "status": "unknown_individual_number" if i["acquisition_no"] == numbers[refused] else "relayed"}
                for i in body["items"]
            ]
        }  # fmt: skip

    peers.answers["pseudonym.acquire"] = acquiring
    peers.answers["acquisition.submit"] = relay
    peers.answers["pseudonym.status"] = lambda body: {"bound": body["atena_nos"]}
    seen: list[tuple[int, int, int]] = []
    work = flows.Work(rt, "cli:tester", "cli")
    summary = asyncio.run(
        flows.acquire_all(
            work, cipher, chunk=3, in_flight=2, poll_seconds=0.01,
            on_progress=lambda p: seen.append((p.requested, p.relayed, p.bound)),
        )
    )  # fmt: skip
    p = summary.progress
    assert (p.targets, p.requested, p.relayed) == (len(todo), len(todo), len(todo) - 1)
    assert p.problems == {"unknown_individual_number": 1}
    assert p.bound == len(todo) - 1 + len(waiting)  # those requested before are waited for too
    assert seen[-1] == (p.requested, p.relayed, p.bound)
    chunks = [body["atena_nos"] for _u, _a, typ, body in peers.sent if typ == "pseudonym.acquire"]
    assert sorted(a for c in chunks for a in c) == todo and all(len(c) <= 3 for c in chunks)
    for _u, _a, typ, body in peers.sent:
        if typ == "acquisition.submit":  # J-LIS never learns a 統合宛名番号
            assert not any(a in str(body) for a in world.atena_nos)
    assert world.status_of(refused) == "none" and not summary.complete
    assert all(world.status_of(a) == "bound" for a in todo if a != refused)
    audit = world.atena.audit()
    assert audit[-1]["action"] == "pseudonym.acquire_all" and audit[-1]["outcome"] == "incomplete"
    assert audit[-1]["actor"] == "cli:tester" and audit[-1]["detail"]["unknown_individual_number"] == 1
    assert sum(e["action"] == "pseudonym.acquire" and e["actor"] == "cli:tester" for e in audit) == len(chunks)

    # Run again: only the person J-LIS refused is asked for, under the number asked before.
    peers.sent.clear()
    again = asyncio.run(flows.acquire_all(work, cipher, chunk=3, poll_seconds=0.01))
    assert again.progress.targets == 1
    assert [body for _u, _a, typ, body in peers.sent if typ == "pseudonym.acquire"] == [{"atena_nos": [refused]}]
    with pytest.raises(Problem) as exc:
        asyncio.run(flows.acquire_all(work, cipher, chunk=contract.MAX_BATCH + 1))
    assert exc.value.code == "bad_count"


# --- provision copies ------------------------------------------------------------------------


def test_copies_reach_the_chukan_by_atena_no_only(world: World, peers: Peers) -> None:
    peers.answers["fukuhon.register"] = lambda body: {"registered": len(body["records"]), "versions": [1]}
    record = {"business_atena_no": ids.make_atena_no(730_001), "info_kind_code": TAX_INFO, "values": {"x": "1"}}
    resp = world.atena.post("/v1/fukuhon", {"system": "tax", "records": [record]})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"registered": 1}
    (url, aud, typ, body) = peers.sent[0]
    assert (url, typ) == (world.url("chukan", "/v1/fukuhon"), "fukuhon.register")
    assert body == {"records": [{"info_kind_code": TAX_INFO, "values": {"x": "1"}, "atena_no": world.atena_nos[1]}]}
    entry = last_audit(world)
    assert (entry["actor"], entry["action"], entry["outcome"], entry["detail"]) == (
        "tax-batch", "fukuhon.register", "ok", {"system": "tax", "count": 1},
    )


def test_a_copy_for_an_unknown_person_is_refused_audited_and_not_sent(world: World, peers: Peers) -> None:
    records = [
        {"business_atena_no": ids.make_atena_no(730_002), "info_kind_code": TAX_INFO, "values": {}},
        {"business_atena_no": ids.make_atena_no(739_999), "info_kind_code": TAX_INFO, "values": {}},
    ]
    before = world.atena.counts()
    resp = world.atena.post("/v1/fukuhon", {"system": "tax", "records": records})
    assert assert_problem(resp, 404, "unknown_business_atena_no")["index"] == 1
    assert peers.sent == []
    unchanged(before, world.atena.counts())
    entry = last_audit(world)
    assert (entry["actor"], entry["action"], entry["outcome"]) == (
        "tax-batch", "fukuhon.register", "unknown_business_atena_no",
    )


# --- inquiries -------------------------------------------------------------------------------


def _log(world: World) -> InquiryLog:
    with world.atena.app.state.rt.sessions() as s:
        row = s.scalars(select(InquiryLog).order_by(InquiryLog.id.desc())).first()
    assert row is not None
    return row


def test_an_answered_inquiry_sends_the_atena_no_and_an_iso_date(world: World, peers: Peers) -> None:
    serial = "20240601000000000077"
    peers.answers["inquiry.start"] = lambda body: {
        "serial": serial, "status": "answered", "values": {"income": "3000000"}, "edition": "0001", "record_key": "k1",
    }  # fmt: skip
    body = inquiry(business_atena_no=world.child_no(0), as_of="令和6年6月1日")
    resp = world.atena.post("/v1/inquiries", body, staff_id="S0001")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "serial": serial, "status": "answered", "status_label": "回答あり", "values": {"income": "3000000"},
        "edition": "0001", "record_key": "k1", "as_of": "2024-06-01", "as_of_wareki": "令和6年6月1日",
    }  # fmt: skip
    assert peers.sent == [
        (world.url("chukan", "/v1/inquiries"), world.atena.app.state.rt.org_code, "inquiry.start", {
            "atena_no": world.atena_nos[0], "provider_org": body["provider_org"],
            "procedure_code": body["procedure_code"], "info_kind_code": body["info_kind_code"], "as_of": "2024-06-01",
            "inquirer_user": "S0001",  # a staff member's own inquiry names them as the user
        }),
    ]  # fmt: skip
    row = _log(world)
    assert (row.staff_id, row.atena_no, row.serial, row.outcome) == ("S0001", world.atena_nos[0], serial, "answered")
    assert (row.department, row.user_id) == (None, "S0001")
    entry = last_audit(world)
    assert (entry["actor"], entry["action"], entry["outcome"], entry["subject"], entry["ref"]) == (
        "S0001", "inquiry", "answered", world.atena_nos[0], serial,
    )


def test_an_unfit_inquiry_answer_is_logged_and_refused(world: World, peers: Peers) -> None:
    peers.answers["inquiry.start"] = lambda body: {"status": "answered"}  # no serial
    resp = world.atena.post("/v1/inquiries", inquiry(business_atena_no=world.child_no(1)), staff_id="S0001")
    assert_problem(resp, 502, "bad_peer_response")
    row = _log(world)
    assert (row.atena_no, row.serial, row.outcome) == (world.atena_nos[1], None, "bad_peer_response")
    entry = last_audit(world)
    assert (entry["action"], entry["outcome"], entry["subject"]) == ("inquiry", "bad_peer_response", world.atena_nos[1])


def test_a_refused_inquiry_reaches_no_peer(world: World, peers: Peers) -> None:
    body = inquiry(business_atena_no=world.child_no(2))
    world.atena.refused("/v1/inquiries", body, 403, "affair_not_permitted", staff_id="S0002")
    assert peers.sent == []


def test_a_relayed_refusal_keeps_its_code_and_serial(world: World, peers: Peers) -> None:
    def refuse(_body: dict[str, Any]) -> dict[str, Any]:
        raise Problem(404, "provider_pseudonym_missing", "符号エラー（機関別符号未発行）", serial="20240601000000000078")

    peers.answers["inquiry.start"] = refuse
    resp = world.atena.post("/v1/inquiries", inquiry(business_atena_no=world.child_no(3)), staff_id="S0001")
    assert assert_problem(resp, 404, "provider_pseudonym_missing")["serial"] == "20240601000000000078"
    row = _log(world)
    assert (row.serial, row.outcome) == ("20240601000000000078", "provider_pseudonym_missing")


# --- business systems never see the 統合宛名番号 (共通機能標準仕様書 §2.4.2) ------------------


def _all_atena_nos(world: World) -> set[str]:
    with world.atena.app.state.rt.sessions() as s:
        return set(s.scalars(select(Person.atena_no)))


def test_no_business_facing_response_names_an_atena_no(world: World, peers: Peers) -> None:
    """Every business-facing route, answered or refused — the peers' refusals naming a
    統合宛名番号 included — answers in the caller's own numbers: the bodies are scanned for
    every person's 統合宛名番号."""
    acq = iter(range(900_000, 999_999))
    peers.answers["pseudonym.acquire"] = lambda body: {
        "items": [{"atena_no": a, "acquisition_no": f"{next(acq):020d}"} for a in body["atena_nos"]]
    }
    peers.answers["acquisition.submit"] = lambda body: {
        "results": [{"acquisition_no": i["acquisition_no"], "status": "relayed"} for i in body["items"]]
    }
    peers.answers["pseudonym.status"] = lambda body: {"bound": body["atena_nos"]}

    def not_acquired(body: dict[str, Any]) -> dict[str, Any]:
        atena_no = body["records"][0]["atena_no"] if "records" in body else body["atena_no"]
        raise Problem(409, "pseudonym_not_acquired", f"指定された団体内統合宛名番号「{atena_no}」は符号が未取得です。")

    peers.answers["fukuhon.register"] = not_acquired
    peers.answers["inquiry.start"] = not_acquired
    newcomer = person(399, business_numbers={"jumin01": ids.make_atena_no(639_999)})
    jumin = world.jumin(world.atena_nos[:3])
    tax_no = ids.make_atena_no(730_002)
    calls = [
        ("/v1/residents", {"persons": [newcomer]}, 200),
        ("/v1/residents", {"persons": [newcomer]}, 200),
        ("/v1/pseudonyms/acquire", {"business_atena_nos": jumin}, 200),
        ("/v1/pseudonyms/status", {"business_atena_nos": jumin}, 200),
        ("/v1/pseudonyms/status", {"all_persons": True}, 200),
        ("/v1/pseudonyms/status", {"business_atena_nos": [ids.make_atena_no(639_998)]}, 404),
        ("/v1/fukuhon", {"system": "tax", "records": [{"business_atena_no": tax_no, "info_kind_code": TAX_INFO}]}, 409),
        ("/v1/inquiries", inquiry(business_atena_no=world.child_no(2)), 409),
    ]
    bodies = []
    for path, body, expected in calls:
        resp = world.atena.post(path, body, staff_id="S0001")
        assert resp.status_code == expected, (path, resp.text)
        bodies.append(resp.text)
    first, again = (r for r in bodies[:2])
    assert '"outcome":"numbered"' in first and '"outcome":"unchanged"' in again
    assert f'"bound_business_atena_nos":{jumin}'.replace("'", '"').replace(" ", "") in bodies[3]
    # The peers' refusals come back in the caller's numbers.
    assert f"「{tax_no}」は符号が未取得です" in bodies[6]
    assert f"「{world.child_no(2)}」は符号が未取得です" in bodies[7]
    # …while the chukan was sent the 統合宛名番号 (translation the other way).
    sent = [body for _u, _a, typ, body in peers.sent if typ == "fukuhon.register"]
    assert sent[0]["records"][0]["atena_no"] == world.atena_nos[2]
    every = _all_atena_nos(world)
    assert len(every) == PEOPLE + 1
    leaks = {(path, a) for (path, _b, _e), text in zip(calls, bodies, strict=True) for a in every if a in text}
    assert leaks == set()
