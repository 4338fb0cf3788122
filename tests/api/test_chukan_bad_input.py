"""The intermediate server refuses bad messages clearly and writes nothing for them.

Only the organization's own atena may start acquisitions, inquiries and copies; only
the hub may deliver pseudonyms and ask for provisions. Copies that do not fit their
layout are refused as a batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from renkei.chukan.app import create_app
from renkei.chukan.models import Base
from renkei.core import ids
from renkei.federation.topology import HUB, NAKANO, SHINJUKU, Org
from tests.api.fed import (
    JOSE,
    Federation,
    assert_problem,
    b64flip,
    counts,
    unchanged,
)

LOCAL_TAX_INFO = "TM00000000000002"
CHILD_ALLOWANCE_PROCEDURE = "JT01010000074001"
GOOD_ATENA = ids.make_atena_no(1234)


def _wrong_check_digit(value: str) -> str:
    return value[:-1] + str((int(value[-1]) + 1) % 10)


BAD_ATENA = _wrong_check_digit(GOOD_ATENA)


@dataclass
class Chukan:
    fed: Federation
    app: FastAPI
    client: TestClient

    def counts(self) -> dict[str, int]:
        return counts(self.app.state.rt.engine, Base.metadata)

    def send(
        self, path: str, sender: Any, typ: str, body: dict[str, Any], node: str | None = None
    ) -> Any:
        # A member organization speaks to a chukan from its atena unless the test says otherwise.
        if node is None and isinstance(sender, Org) and "atena" in sender.nodes and typ in _ATENA_TYPES:
            node = "atena"
        token = self.fed.seal(sender, SHINJUKU, typ, body, node=node)
        return self.client.post(path, content=token.encode(), headers=JOSE)

    def refused(
        self,
        path: str,
        sender: Any,
        typ: str,
        body: dict[str, Any],
        status: int,
        code: str,
        node: str | None = None,
    ) -> dict[str, Any]:
        before = self.counts()
        problem = assert_problem(self.send(path, sender, typ, body, node), status, code)
        unchanged(before, self.counts())
        return problem


@pytest.fixture(scope="module")
def chukan(fed: Federation) -> Iterator[Chukan]:
    app = create_app(fed.config(SHINJUKU, "chukan"))
    # As if the registry had been fetched from the hub: Nakano's keys and those of
    # Shinjuku's other node (atena) are known.
    app.state.rt.registry.directory.add(fed.public_doc(NAKANO))
    app.state.rt.registry.directory.add(fed.public_doc(SHINJUKU))
    with TestClient(app) as client:
        yield Chukan(fed, app, client)


def _tax_record(**over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "atena_no": GOOD_ATENA,
        "info_kind_code": LOCAL_TAX_INFO,
        "record_key": "2024",
        "valid_from": "2024-06-01",
        "values": {
            "K001": "2024",
            "K002": "1",
            "K003": "3500000",
            "K004": "120000",
            "K005": "5000",
            "K006": "1",
        },
    }
    rec.update(over)
    return rec


def _inquiry(**over: Any) -> dict[str, Any]:
    body = {
        "atena_no": GOOD_ATENA,
        "provider_org": NAKANO.org_code,
        "procedure_code": CHILD_ALLOWANCE_PROCEDURE,
        "info_kind_code": LOCAL_TAX_INFO,
        "as_of": "2024-06-01",
    }
    body.update(over)
    return body


OWN_ATENA_ROUTES: dict[str, tuple[str, dict[str, Any]]] = {
    "/v1/acquisitions": ("pseudonym.acquire", {"atena_nos": [GOOD_ATENA]}),
    "/v1/acquisitions/status": ("pseudonym.status", {"atena_nos": [GOOD_ATENA]}),
    "/v1/fukuhon": ("fukuhon.register", {"records": [_tax_record()]}),
    "/v1/inquiries": ("inquiry.start", _inquiry()),
}
HUB_ROUTES: dict[str, tuple[str, dict[str, Any]]] = {
    "/v1/acquisitions/deliver": ("pseudonym.deliver", {"items": []}),
    "/v1/provisions": (
        "provision.request",
        {
            "serial": "1" * 20,
            "pseudonym": "p" * 40,
            "inquirer_org": NAKANO.org_code,
            "procedure_code": "JT01010000074001",
            "info_kind_code": LOCAL_TAX_INFO,
            "as_of": "2024-06-01",
        },
    ),
}


_ATENA_TYPES = {typ for typ, _body in OWN_ATENA_ROUTES.values()}


# --- who may send what ------------------------------------------------------------------------


@pytest.mark.parametrize("path", list(OWN_ATENA_ROUTES))
def test_the_own_chukan_key_is_not_the_atenas(chukan: Chukan, path: str) -> None:
    """Every node has its own key: the organization's chukan key does not speak for atena."""
    typ, body = OWN_ATENA_ROUTES[path]
    problem = chukan.refused(path, SHINJUKU, typ, body, 403, "sender_not_allowed", node="chukan")
    assert "団体内統合宛名システム" in problem["title"]


@pytest.mark.parametrize("path", list(HUB_ROUTES))
def test_the_own_atena_cannot_speak_as_the_hub(chukan: Chukan, path: str) -> None:
    typ, body = HUB_ROUTES[path]
    chukan.refused(path, SHINJUKU, typ, body, 403, "sender_not_allowed", node="atena")


@pytest.mark.parametrize("sender", [NAKANO, HUB], ids=lambda o: o.slug)
@pytest.mark.parametrize("path", list(OWN_ATENA_ROUTES))
def test_only_the_own_atena_may_call(chukan: Chukan, path: str, sender: Any) -> None:
    typ, body = OWN_ATENA_ROUTES[path]
    chukan.refused(path, sender, typ, body, 403, "sender_not_allowed")


@pytest.mark.parametrize("sender", [NAKANO, SHINJUKU], ids=lambda o: o.slug)
@pytest.mark.parametrize("path", list(HUB_ROUTES))
def test_only_the_hub_may_deliver_and_ask_for_provisions(
    chukan: Chukan, path: str, sender: Any
) -> None:
    typ, body = HUB_ROUTES[path]
    chukan.refused(path, sender, typ, body, 403, "sender_not_allowed")


@pytest.mark.parametrize("path", list(OWN_ATENA_ROUTES) + list(HUB_ROUTES))
def test_envelope_checks_come_first(chukan: Chukan, path: str) -> None:
    typ, body = {**OWN_ATENA_ROUTES, **HUB_ROUTES}[path]
    before = chukan.counts()
    r = chukan.client.post(
        path, content=orjson.dumps(body), headers={"content-type": "application/json"}
    )
    assert_problem(r, 415, "unsupported_media_type")
    r = chukan.client.post(path, content=b"garbage", headers=JOSE)
    assert_problem(r, 400, "malformed_message")
    token = chukan.fed.seal(SHINJUKU, SHINJUKU, typ, body)
    r = chukan.client.post(path, content=b64flip(token).encode(), headers=JOSE)
    assert_problem(r, 401, "bad_signature")
    r = chukan.client.post(
        path, content=chukan.fed.seal(SHINJUKU, NAKANO, typ, body).encode(), headers=JOSE
    )
    assert_problem(r, 403, "wrong_audience")
    r = chukan.client.post(
        path,
        content=chukan.fed.seal(SHINJUKU, SHINJUKU, "registry.query", body).encode(),
        headers=JOSE,
    )
    assert_problem(r, 400, "wrong_message_type")
    unchanged(before, chukan.counts())


# --- 統合宛名番号 ------------------------------------------------------------------------------------


BAD_ATENA_NOS = [
    BAD_ATENA,
    GOOD_ATENA[:-1],
    GOOD_ATENA + "0",
    "０" * 14 + "0",
    GOOD_ATENA[:5] + "-" + GOOD_ATENA[6:],
    "000000000000000",
    "",
    None,
    12345,
]
BAD_IDS = [
    "check-digit",
    "short",
    "long",
    "full-width",
    "hyphen",
    "zero-serial",
    "empty",
    "null",
    "number",
]


@pytest.mark.parametrize("atena_no", BAD_ATENA_NOS, ids=BAD_IDS)
def test_inquiry_with_invalid_atena_no(chukan: Chukan, atena_no: Any) -> None:
    chukan.refused(
        "/v1/inquiries",
        SHINJUKU,
        "inquiry.start",
        _inquiry(atena_no=atena_no),
        422,
        "invalid_atena_no",
    )


@pytest.mark.parametrize("atena_no", BAD_ATENA_NOS, ids=BAD_IDS)
@pytest.mark.parametrize(
    ("path", "typ"),
    [("/v1/acquisitions", "pseudonym.acquire"), ("/v1/acquisitions/status", "pseudonym.status")],
)
def test_acquisition_with_invalid_atena_no(
    chukan: Chukan, path: str, typ: str, atena_no: Any
) -> None:
    # One bad number anywhere refuses the whole list, before the hub is asked for anything.
    body = {"atena_nos": [GOOD_ATENA, ids.make_atena_no(99), atena_no]}
    chukan.refused(path, SHINJUKU, typ, body, 422, "invalid_atena_no")


@pytest.mark.parametrize(
    "atena_nos", [None, "x", {"a": 1}, GOOD_ATENA], ids=["null", "string", "object", "bare-number"]
)
def test_acquisition_without_a_list(chukan: Chukan, atena_nos: Any) -> None:
    chukan.refused(
        "/v1/acquisitions",
        SHINJUKU,
        "pseudonym.acquire",
        {"atena_nos": atena_nos},
        422,
        "bad_items",
    )


def test_acquisition_of_nobody(chukan: Chukan) -> None:
    chukan.refused(
        "/v1/acquisitions", SHINJUKU, "pseudonym.acquire", {"atena_nos": []}, 422, "bad_count"
    )


def test_acquisition_over_the_batch_limit(chukan: Chukan) -> None:
    body = {"atena_nos": [GOOD_ATENA] * 10_001}
    chukan.refused("/v1/acquisitions", SHINJUKU, "pseudonym.acquire", body, 422, "bad_count")


@pytest.mark.parametrize("as_of", ["2024-02-30", "令和6年6月1日", "", None])
def test_inquiry_with_bad_as_of(chukan: Chukan, as_of: Any) -> None:
    chukan.refused(
        "/v1/inquiries", SHINJUKU, "inquiry.start", _inquiry(as_of=as_of), 422, "bad_date"
    )


def test_inquiry_for_a_person_without_pseudonym(chukan: Chukan) -> None:
    problem = chukan.refused(
        "/v1/inquiries", SHINJUKU, "inquiry.start", _inquiry(), 409, "pseudonym_not_acquired"
    )
    assert GOOD_ATENA in problem["title"]  # a 統合宛名番号 is not an individual number


def test_provision_with_bad_as_of(chukan: Chukan) -> None:
    typ, body = HUB_ROUTES["/v1/provisions"]
    chukan.refused("/v1/provisions", HUB, typ, {**body, "as_of": "2024-13-01"}, 422, "bad_date")


# --- provision copies (副本) ----------------------------------------------------------------------


def test_a_valid_copy_is_registered(chukan: Chukan) -> None:
    # The baseline the invalid cases below are variations of.
    before = chukan.counts()
    r = chukan.send(
        "/v1/fukuhon",
        SHINJUKU,
        "fukuhon.register",
        {"records": [_tax_record(record_key="baseline")]},
    )
    assert r.status_code == 200, r.text
    assert chukan.counts()["fukuhon"] == before["fukuhon"] + 1


INVALID_RECORDS: dict[str, Any] = {
    "code-not-in-list": _tax_record(values={**_tax_record()["values"], "K002": "7"}),
    "required-missing": _tax_record(
        values={k: v for k, v in _tax_record()["values"].items() if k != "K001"}
    ),
    "not-an-integer": _tax_record(values={**_tax_record()["values"], "K003": "三百万"}),
    "full-width-integer": _tax_record(values={**_tax_record()["values"], "K003": "３５００００"}),
    "negative": _tax_record(values={**_tax_record()["values"], "K004": "-1"}),
    "out-of-range": _tax_record(values={**_tax_record()["values"], "K006": "100"}),
    "bad-year": _tax_record(values={**_tax_record()["values"], "K001": "24"}),
    "unknown-item": _tax_record(values={**_tax_record()["values"], "K999": "1"}),
    "unknown-info-kind": _tax_record(info_kind_code="TM99999999999999"),
    "bad-valid-from": _tax_record(valid_from="2024-02-30"),
    "no-valid-from": {k: v for k, v in _tax_record().items() if k != "valid_from"},
    "period-reversed": _tax_record(valid_to="2024-05-31"),
    "before-any-edition": _tax_record(valid_from="2000-01-01"),
    "bad-atena-no": _tax_record(atena_no=BAD_ATENA),
    "not-an-object": "record",
}


@pytest.mark.parametrize("bad", list(INVALID_RECORDS))
def test_invalid_copy_refuses_the_whole_batch(chukan: Chukan, bad: str) -> None:
    records = [_tax_record(record_key="a"), _tax_record(record_key="b"), INVALID_RECORDS[bad]]
    problem = chukan.refused(
        "/v1/fukuhon", SHINJUKU, "fukuhon.register", {"records": records}, 422, "invalid_fukuhon"
    )
    errors = problem.get("errors")
    assert isinstance(errors, list) and errors, problem
    assert {e["index"] for e in errors} == {2}, errors
    assert all(isinstance(e.get("message"), str) and e["message"] for e in errors)


def test_every_invalid_copy_is_named(chukan: Chukan) -> None:
    records = [INVALID_RECORDS["code-not-in-list"], _tax_record(), INVALID_RECORDS["bad-atena-no"]]
    problem = chukan.refused(
        "/v1/fukuhon", SHINJUKU, "fukuhon.register", {"records": records}, 422, "invalid_fukuhon"
    )
    assert {e["index"] for e in problem["errors"]} == {0, 2}


@pytest.mark.parametrize(
    "records", [[], None, "x", {"a": 1}], ids=["empty", "null", "string", "object"]
)
def test_copies_without_records(chukan: Chukan, records: Any) -> None:
    code = "bad_count" if records == [] else "bad_items"
    chukan.refused("/v1/fukuhon", SHINJUKU, "fukuhon.register", {"records": records}, 422, code)


@pytest.mark.parametrize(
    "values", [None, "x", 5, ["K001"]], ids=["null", "string", "number", "list"]
)
def test_copy_whose_values_is_not_an_object(chukan: Chukan, values: Any) -> None:
    records = [_tax_record(record_key="ok"), _tax_record(values=values)]
    problem = chukan.refused(
        "/v1/fukuhon", SHINJUKU, "fukuhon.register", {"records": records}, 422, "invalid_fukuhon"
    )
    assert {e["index"] for e in problem["errors"]} == {1}


# --- provisions ---------------------------------------------------------------------------------


def test_provision_request_repeating_a_serial_is_a_clear_refusal(chukan: Chukan) -> None:
    typ, body = HUB_ROUTES["/v1/provisions"]
    body = {**body, "serial": "20240601000000009999"}
    first = chukan.send("/v1/provisions", HUB, typ, body)
    assert first.status_code == 200, first.text
    before = chukan.counts()
    again = chukan.send("/v1/provisions", HUB, typ, body)
    assert 400 <= again.status_code < 500, (again.status_code, again.text)
    assert again.headers["content-type"].startswith("application/problem+json")
    unchanged(before, chukan.counts())
