"""The resident register feed online (`POST /v1/register/changes`, scope
``jumin01:changes:register``): applied all or nothing, idempotent per event id, 転入 and
出生 start pseudonym acquisition through the chukan and J-LIS (played in-process), the
answer names event ids only. Both backends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from renkei.atena.models import Person
from renkei.core import ids
from renkei.core.errors import Problem
from tests.api.fed import Federation, assert_problem, unchanged
from tests.atena.kit import AtenaKit, open_atena
from tests.atena.test_feed import event
from tests.atena.test_flows import Peers, assert_loop_io_is_an_error
from tests.conftest import BACKENDS, create_pg_database, drop_pg_database
from tests.import_kit import person

PATH = "/v1/register/changes"


@pytest.fixture(scope="module", params=BACKENDS)
def atena(request: pytest.FixtureRequest, fed: Federation) -> Iterator[AtenaKit]:
    assert_loop_io_is_an_error()
    url = create_pg_database() if request.param == "postgresql" else None
    try:
        with open_atena(fed, database_url=url) as a:
            yield a
    finally:
        if url is not None:
            drop_pg_database(url)


@pytest.fixture
def peers(atena: AtenaKit, monkeypatch: pytest.MonkeyPatch) -> Peers:
    rt = atena.app.state.rt
    fake = Peers(rt.org_code)
    fake.answers["pseudonym.acquire"] = lambda body: {
        "items": [{"atena_no": a, "acquisition_no": f"{i + 1:020d}"} for i, a in enumerate(body["atena_nos"])]
    }
    fake.answers["acquisition.submit"] = lambda body: {
        "results": [{"acquisition_no": item["acquisition_no"], "status": "relayed"} for item in body["items"]]
    }
    monkeypatch.setattr(rt.peer, "call", fake)
    return fake


def _statuses(atena: AtenaKit) -> dict[str, str]:
    with atena.app.state.rt.sessions() as s:
        return dict(s.execute(select(Person.atena_no, Person.pseudonym_status)).tuples().all())


def test_changes_online_start_acquisition_and_apply_once(atena: AtenaKit, peers: Peers) -> None:
    a, b, baby = person(501), person(502), {**person(503), "birth_date": "2025-06-01"}
    events = [
        event("W1", "転入", "2025-04-01", a, household_no=ids.make_atena_no(600_001), relationship="世帯主"),
        event("W2", "転入", "2025-04-01", b, resident_atena_no=ids.make_atena_no(610_002)),
        event("W3", "出生", "2025-06-01", baby, household_no=ids.make_atena_no(600_001), relationship="子"),
        event("W4", "転居", "2025-07-01", {**a, "address": "東京都新宿区高田馬場一丁目1番"},
              household_no=ids.make_atena_no(600_001), relationship="世帯主"),
    ]  # fmt: skip
    resp = atena.post(PATH, {"events": events})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["received"], body["applied"], body["duplicates"]) == (4, 4, 0)
    assert body["events"] == {"W1": "applied", "W2": "applied", "W3": "applied", "W4": "applied"}
    assert body["acquisition"] == {"requested": 3, "relayed": 3, "problems": {}}
    assert body["acquisition_error"] is None
    # J-LIS got the three arrivals' individual numbers; the business system never sees a 統合宛名番号.
    submitted = next(b_ for _u, _a, typ, b_ in peers.sent if typ == "acquisition.submit")
    assert {i["individual_number"] for i in submitted["items"]} == {p["individual_number"] for p in (a, b, baby)}
    statuses = _statuses(atena)
    assert sorted(statuses.values()).count("requested") >= 3
    assert not any(no in resp.text for no in statuses)
    entry = [e for e in atena.audit() if e["action"] == "register.changes"][-1]
    assert (entry["actor"], entry["outcome"], entry["detail"]["applied"]) == ("jumin01-batch", "ok", 4)
    # Again: nothing new, no acquisition asked for.
    sent = len(peers.sent)
    before = atena.counts()
    again = atena.post(PATH, {"events": events})
    assert again.status_code == 200, again.text
    assert (again.json()["applied"], again.json()["duplicates"], again.json()["acquisition"]) == (0, 4, None)
    assert len(peers.sent) == sent
    unchanged(before, atena.counts())


def test_malformed_events_refuse_all_with_every_error(atena: AtenaKit, peers: Peers) -> None:
    good = event("X1", "転入", "2025-04-01", person(511))
    bad = {**event("X2", "転入", "2025-04-01", person(512)), "sex": "3", "birth_date": "昭和99年1月1日"}
    problem = atena.refused(PATH, {"events": [good, bad, {}]}, 422, "bad_feed")
    errors = {(e["line"], e["field"]) for e in problem["errors"]}
    assert {(2, "性別"), (2, "生年月日"), (3, "異動ID")} <= errors
    assert "2 件目（項目「" in problem["title"]
    assert peers.sent == []
    assert atena.audit()[-1]["outcome"] == "bad_feed"


def test_the_events_stay_applied_when_acquisition_cannot_start(atena: AtenaKit, peers: Peers) -> None:
    def down(_body: dict[str, Any]) -> dict[str, Any]:
        raise Problem(502, "peer_unreachable", "中間サーバーに接続できません。")

    peers.answers["pseudonym.acquire"] = down
    resp = atena.post(PATH, {"events": [event("Y1", "出生", "2025-05-05", {**person(521), "birth_date": "2025-05-05"})]})
    assert resp.status_code == 200, resp.text
    assert (resp.json()["applied"], resp.json()["acquisition"], resp.json()["acquisition_error"]) == (
        1, None, "peer_unreachable"
    )


def test_the_route_needs_its_scope(atena: AtenaKit) -> None:
    headers = atena.bearer("jumin01-reader", "jumin01:pseudonyms:acquire")
    resp = atena.client.post(PATH, json={"events": [event("Z1", "転入", "2025-04-01", person(531))]}, headers=headers)
    assert_problem(resp, 403, "insufficient_scope")
