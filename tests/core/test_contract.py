"""The wire contract read from both ends: a body the sender builds from its own typed
values is the body the receiver parses, and the fields the receiver judges in its own
terms are read without refusal."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from renkei.core import ids
from renkei.core.errors import Problem
from renkei.core.wire import contract

SERIAL = "20240601000000000001"
GOOD_ATENA = ids.make_atena_no(1234)


def _round_trip(body: contract.Body) -> contract.Body:
    return contract.parse(type(body), body.dump())


def test_a_body_built_from_a_date_is_sent_as_the_date() -> None:
    # The hub builds ProvisionRequest, the chukan HubInquiry, from a parsed date.
    ask = contract.ProvisionRequest(
        serial=SERIAL, pseudonym="p" * 40, inquirer_org="1310410000000000",
        procedure_code="JT01010000074001", info_kind_code="TM00000000000002", as_of=date(2024, 6, 1),
    )  # fmt: skip
    assert ask.dump()["as_of"] == "2024-06-01" and _round_trip(ask) == ask
    inquiry = contract.HubInquiry(
        pseudonym="p" * 40, provider_org="1311480000000000", procedure_code="JT01010000074001",
        info_kind_code="TM00000000000002", as_of=date(2024, 6, 1),
    )  # fmt: skip
    assert _round_trip(inquiry) == inquiry


@pytest.mark.parametrize("value", [None, 12345, True, int(GOOD_ATENA)], ids=["null", "number", "bool", "valid-number"])
def test_an_item_of_a_list_of_atena_nos_that_is_no_string_is_a_wrong_atena_no(value: Any) -> None:
    with pytest.raises(Problem) as exc:
        contract.parse(contract.AtenaNos, {"atena_nos": [GOOD_ATENA, value]})
    assert (exc.value.status, exc.value.code) == (422, "invalid_atena_no")
    assert contract.parse(contract.AtenaNos, {"atena_nos": [GOOD_ATENA]}).atena_nos == [GOOD_ATENA]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"serial": SERIAL, "status": "answered", "answer": "x.y.z"}, (SERIAL, "answered", "x.y.z")),
        ({"serial": int(SERIAL), "status": ["answered"], "answer": 5}, (None, None, None)),
        ({"serial": "12345", "status": "answered"}, (None, "answered", None)),
        ({}, (None, None, None)),
    ],
    ids=["well-formed", "no-strings", "short-serial", "empty"],
)
def test_a_relayed_answer_is_read_for_its_receiver_to_judge(body: dict[str, Any], expected: tuple[Any, ...]) -> None:
    relayed = contract.parse_reply(contract.RelayedAnswer, body, "hub")
    assert (relayed.serial, relayed.status, relayed.answer) == expected


def test_an_answer_without_content_carries_no_content_fields() -> None:
    asked = {"serial": SERIAL, "info_kind_code": "TM00000000000002", "as_of": "2024-06-01"}
    assert contract.ProvisionAnswer(status="no_data", **asked).dump() == {"status": "no_data", **asked}
    assert contract.InquiryResult(serial=SERIAL, status="pending").dump() == {"serial": SERIAL, "status": "pending"}
    answered = contract.InquiryResult(
        serial=SERIAL, status="answered", edition="0001", record_key="2024", values={"K001": "2024"},
        valid_from="2024-06-01", valid_to=None,
    ).dump()  # fmt: skip
    assert answered["valid_to"] is None and answered["values"] == {"K001": "2024"}
