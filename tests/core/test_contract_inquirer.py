"""The inquirer fields of the inquiry messages (照会者部署コード, 照会者ユーザーID): optional,
sent only when given, refused with ``bad_inquirer`` when they are not 1–20 printable ASCII."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from renkei.core.errors import Problem
from renkei.core.wire import contract
from renkei.core.wire.contract import ChukanInquiry, HubInquiry

BASE: dict[str, Any] = {
    "atena_no": "000000000000019",
    "pseudonym": "p" * 20,
    "provider_org": "1311480000000000",
    "procedure_code": "JT01010000074001",
    "info_kind_code": "TM00000000000002",
    "as_of": "2024-06-01",
}


@pytest.mark.parametrize("model", [ChukanInquiry, HubInquiry])
def test_absent_fields_are_not_sent_and_given_ones_are(model: type[ChukanInquiry] | type[HubInquiry]) -> None:
    plain = contract.parse(model, BASE)
    assert plain.inquirer_department is None and "inquirer_department" not in plain.dump()
    assert "inquirer_user" not in plain.dump()
    named = contract.parse(model, {**BASE, "inquirer_department": "KODOMO-KATEI", "inquirer_user": "U1001"})
    assert (named.dump()["inquirer_department"], named.dump()["inquirer_user"]) == ("KODOMO-KATEI", "U1001")
    assert contract.parse(model, named.dump()) == named


@pytest.mark.parametrize("value", ["", "x" * 21, "子ども", " U1", "U1 ", "a\tb", 7, True])
@pytest.mark.parametrize("name", ["inquirer_department", "inquirer_user"])
def test_a_malformed_inquirer_field_is_refused(name: str, value: object) -> None:
    with pytest.raises(Problem) as exc:
        contract.parse(ChukanInquiry, {**BASE, name: value})
    assert (exc.value.status, exc.value.code) == (422, "bad_inquirer")
    assert "20文字以内" in exc.value.title


def test_a_sender_builds_the_body_with_a_date_and_the_fields() -> None:
    body = ChukanInquiry(
        atena_no=BASE["atena_no"], provider_org=BASE["provider_org"], procedure_code=BASE["procedure_code"],
        info_kind_code=BASE["info_kind_code"], as_of=date(2024, 6, 1), inquirer_user="S0001",
    )  # fmt: skip
    assert body.dump() == {**{k: v for k, v in BASE.items() if k != "pseudonym"}, "inquirer_user": "S0001"}
