"""The wire contract's bodies as a sender builds them: from the values it parsed.

A node that received a body with a date (the hub's inquiry, atena's staff request) builds
the next body from the parsed `date`; the contract's model must take it and send it as
YYYY-MM-DD, while a body from the wire still takes only the ISO string.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from renkei.core import ids
from renkei.core.errors import Problem
from renkei.core.wire import contract
from renkei.core.wire.contract import ChukanInquiry, HubInquiry, ProvisionRequest

WIRE: dict[str, Any] = {
    "atena_no": ids.make_atena_no(1),
    "provider_org": "1311480000000000",
    "procedure_code": "JT01010000074001",
    "info_kind_code": "TM00000000000002",
    "as_of": "2024-06-01",
}


def test_a_body_built_from_a_parsed_date_is_sent_as_iso() -> None:
    received = contract.parse(ChukanInquiry, WIRE)
    assert received.as_of == date(2024, 6, 1)
    # The next hop's body, built from what was parsed (as the hub and atena do).
    onward = HubInquiry(
        pseudonym="p" * 20,
        provider_org=received.provider_org,
        procedure_code=received.procedure_code,
        info_kind_code=received.info_kind_code,
        as_of=received.as_of,
    )
    assert onward.dump()["as_of"] == "2024-06-01"
    ask = ProvisionRequest(
        serial="2" * 20,
        pseudonym="p",
        inquirer_org="1310410000000000",
        procedure_code=received.procedure_code,
        info_kind_code=received.info_kind_code,
        as_of=received.as_of,
    )
    assert contract.parse(ProvisionRequest, ask.dump()) == ask


@pytest.mark.parametrize("as_of", [20240601, None, ["2024-06-01"], "2024/06/01", "令和6年6月1日"])
def test_the_wire_still_takes_only_an_iso_string(as_of: Any) -> None:
    with pytest.raises(Problem) as refused:
        contract.parse(ChukanInquiry, {**WIRE, "as_of": as_of})
    assert refused.value.code == "bad_date"


def test_a_datetime_is_not_a_date() -> None:
    with pytest.raises(Problem) as refused:
        HubInquiry(
            pseudonym="p",
            provider_org="1311480000000000",
            procedure_code="JT01010000074001",
            info_kind_code="TM00000000000002",
            as_of=datetime(2024, 6, 1, tzinfo=UTC),
        )
    assert refused.value.code == "bad_date"
