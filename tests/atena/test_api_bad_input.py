"""atena's JSON API refuses bad input clearly, never echoes an individual number, and
writes nothing for a refused request (a batch is all or nothing)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from renkei.core import ids
from tests.api.fed import Federation, assert_problem, unchanged
from tests.atena.kit import AtenaKit as Atena
from tests.atena.kit import open_atena

CHILD_ALLOWANCE_PROCEDURE = "JT01010000074001"
LOCAL_TAX_INFO = "TM00000000000002"
NAKANO_ORG = "1311480000000000"

NUMBER = ids.make_individual_number("12345678901")
TAX_NO = ids.make_atena_no(700_001)
CHILD_NO = ids.make_atena_no(800_001)


def wrong_check_digit(value: str) -> str:
    return value[:-1] + str((int(value[-1]) + 1) % 10)


def person(n: int, **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "individual_number": ids.make_individual_number(f"{50_000_000_000 + n:011d}"),
        "family_name": "新宿",
        "given_name": f"太郎{n}",
        "family_kana": "シンジュク",
        "given_kana": "タロウ",
        "birth_date": "1980-04-01",
        "sex": "1",
        "postal_code": "1600022",
        "address": "東京都新宿区新宿一丁目1番1号",
        "lg_code": "131041",
        "business_numbers": {},
    }
    rec.update(over)
    return rec


@pytest.fixture(scope="module")
def atena(fed: Federation) -> Iterator[Atena]:
    with open_atena(fed) as a:
        # One known resident, linked to the tax and child-allowance systems.
        r = a.post(
            "/v1/residents",
            {
                "persons": [
                    person(
                        0,
                        individual_number=NUMBER,
                        business_numbers={"tax": TAX_NO, "child_allowance": CHILD_NO},
                    )
                ]
            },
        )
        assert r.status_code == 200, r.text
        yield a


# --- residents: the individual number --------------------------------------------------------


def test_wrong_check_digit_is_refused_without_echoing_the_number(atena: Atena) -> None:
    bad = wrong_check_digit(ids.make_individual_number("98765432109"))
    before = atena.counts()
    resp = atena.post("/v1/residents", {"persons": [person(1, individual_number=bad)]})
    problem = assert_problem(resp, 422, "invalid_individual_number")
    assert bad not in resp.text and bad[:11] not in resp.text
    assert problem.get("reason") == "bad_check_digit"
    assert problem.get("index") == 0
    unchanged(before, atena.counts())


@pytest.mark.parametrize(
    "number",
    [
        "".join(chr(ord("０") + int(d)) for d in ids.make_individual_number("11122233344")),
        ids.make_individual_number("11122233344")[:4]
        + "-"
        + ids.make_individual_number("11122233344")[4:8]
        + "-"
        + ids.make_individual_number("11122233344")[8:],
        " " + ids.make_individual_number("11122233344"),
        ids.make_individual_number("11122233344")[:11],
        ids.make_individual_number("11122233344") + "0",
        "",
    ],
    ids=["full-width", "hyphens", "leading-space", "11-digits", "13-digits", "empty"],
)
def test_malformed_individual_number_is_refused_without_echoing_it(
    atena: Atena, number: str
) -> None:
    resp_before = atena.counts()
    resp = atena.post("/v1/residents", {"persons": [person(2, individual_number=number)]})
    assert_problem(resp, 422, "invalid_individual_number")
    digits = ids.make_individual_number("11122233344")
    full = "".join(chr(ord("０") + int(d)) for d in digits)
    for shown in (digits, digits[:11], full, full[:11]):
        assert shown not in resp.text
    unchanged(resp_before, atena.counts())


def test_full_width_number_says_full_width(atena: Atena) -> None:
    full = "".join(chr(ord("０") + int(d)) for d in ids.make_individual_number("22233344455"))
    problem = atena.refused(
        "/v1/residents",
        {"persons": [person(3, individual_number=full)]},
        422,
        "invalid_individual_number",
    )
    assert "全角" in problem["title"]


@pytest.mark.parametrize(
    "number", [123456789012, None, ["1"], {"n": 1}], ids=["int", "null", "list", "object"]
)
def test_individual_number_of_the_wrong_json_type(atena: Atena, number: Any) -> None:
    atena.refused(
        "/v1/residents",
        {"persons": [person(4, individual_number=number)]},
        422,
        "invalid_individual_number",
    )


def test_invalid_json_with_a_number_is_not_echoed(atena: Atena) -> None:
    number = ids.make_individual_number("33344455566")
    headers = atena.headers_for("/v1/residents")
    before = atena.counts()
    resp = atena.client.post(
        "/v1/residents",
        content=('{"persons": [{"individual_number": "' + number + '",').encode(),
        headers={**headers, "content-type": "application/json"},
    )
    assert_problem(resp, 422, "invalid_request")
    assert number not in resp.text
    unchanged(before, atena.counts())


# --- residents: other fields -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [{}, {"people": []}, {"persons": "x"}, {"persons": [1, 2]}, [], "persons"], ids=str
)
def test_request_without_persons(atena: Atena, body: Any) -> None:
    atena.refused("/v1/residents", body, 422, "invalid_request")


def test_no_persons(atena: Atena) -> None:
    atena.refused("/v1/residents", {"persons": []}, 422, "bad_count")


@pytest.mark.parametrize(
    "field", ["family_name", "given_name", "family_kana", "given_kana", "address"]
)
def test_missing_name_or_address(atena: Atena, field: str) -> None:
    rec = person(5)
    del rec[field]
    problem = atena.refused("/v1/residents", {"persons": [rec]}, 422, "missing_field")
    assert problem.get("detail") == field


@pytest.mark.parametrize("value", ["", "   ", 5, None])
def test_blank_name(atena: Atena, value: Any) -> None:
    atena.refused(
        "/v1/residents", {"persons": [person(6, family_name=value)]}, 422, "missing_field"
    )


def test_too_long_name(atena: Atena) -> None:
    atena.refused(
        "/v1/residents", {"persons": [person(7, family_name="長" * 101)]}, 422, "too_long"
    )


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("birth_date", "1980-02-30", "bad_date"),
        ("birth_date", "昭和55年4月1日", "bad_date"),
        ("birth_date", None, "bad_date"),
        ("effective_on", "2024/04/01", "bad_date"),
        ("sex", "男", "invalid_sex"),
        ("sex", "0", "invalid_sex"),
        ("postal_code", "160-0022", "invalid_postal_code"),
        ("postal_code", "１６０００２２", "invalid_postal_code"),
        ("lg_code", "131040", "invalid_lg_code"),
        ("lg_code", "13104", "invalid_lg_code"),
        ("lg_code", "１３１０４１", "invalid_lg_code"),
        ("lg_code", None, "invalid_lg_code"),
        ("business_numbers", ["tax"], "bad_business_numbers"),
        (
            "business_numbers",
            {"tax": wrong_check_digit(ids.make_atena_no(5))},
            "invalid_business_atena_no",
        ),
        ("business_numbers", {"tax": "000000000000000"}, "invalid_business_atena_no"),
    ],
)
def test_bad_field(atena: Atena, field: str, value: Any, code: str) -> None:
    atena.refused("/v1/residents", {"persons": [person(8, **{field: value})]}, 422, code)


# --- residents: a batch is all or nothing ---------------------------------------------------


def test_third_record_bad_writes_nothing(atena: Atena) -> None:
    persons = [
        person(10, business_numbers={"nhi": ids.make_atena_no(900_010)}),
        person(11),
        person(12, individual_number=wrong_check_digit(person(12)["individual_number"])),
        person(13),
    ]
    problem = atena.refused("/v1/residents", {"persons": persons}, 422, "invalid_individual_number")
    assert problem.get("index") == 2


def test_third_record_bad_lg_code_writes_nothing(atena: Atena) -> None:
    persons = [person(20), person(21), person(22, lg_code="999999"), person(23)]
    problem = atena.refused("/v1/residents", {"persons": persons}, 422, "invalid_lg_code")
    assert problem.get("index") == 2


def test_third_record_taking_someone_elses_business_number_writes_nothing(atena: Atena) -> None:
    # Refused only after the first two were numbered and flushed: the rollback must undo them.
    persons = [person(30), person(31), person(32, business_numbers={"tax": TAX_NO})]
    atena.refused("/v1/residents", {"persons": persons}, 409, "business_number_taken")


def test_good_batch_is_written(atena: Atena) -> None:
    # The baseline: the same shape of records does get written when all are valid.
    headers = atena.headers_for("/v1/residents")
    before = atena.counts()
    resp = atena.client.post(
        "/v1/residents",
        json={"persons": [person(40), person(41), person(42)]},
        headers=headers,
    )
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert [r["outcome"] for r in out["results"]] == ["numbered"] * 3
    assert "atena_nos" not in out  # a business system never sees a 統合宛名番号
    assert atena.counts()["persons"] == before["persons"] + 3


# --- inquiries ------------------------------------------------------------------------------------


def inquiry(**over: Any) -> dict[str, Any]:
    body = {
        "system": "child_allowance",
        "business_atena_no": CHILD_NO,
        "procedure_code": CHILD_ALLOWANCE_PROCEDURE,
        "info_kind_code": LOCAL_TAX_INFO,
        "provider_org": NAKANO_ORG,
        "as_of": "2024-06-01",
    }
    body.update(over)
    return body


@pytest.mark.parametrize("field", list(inquiry()))
def test_inquiry_with_a_missing_field(atena: Atena, field: str) -> None:
    body = inquiry()
    del body[field]
    problem = atena.refused("/v1/inquiries", body, 422, "invalid_request")
    assert any(field in e["loc"] for e in problem["errors"])


@pytest.mark.parametrize("field", list(inquiry()))
def test_inquiry_with_an_empty_field(atena: Atena, field: str) -> None:
    atena.refused("/v1/inquiries", inquiry(**{field: ""}), 422, "invalid_request")


def test_staff_id_in_the_body_is_not_accepted_any_more(atena: Atena) -> None:
    # The actor is the signed-in staff member; a staff_id field is simply ignored.
    problem = atena.refused(
        "/v1/inquiries", inquiry(staff_id="S0001"), 403, "affair_not_permitted", staff_id="S0002"
    )
    assert problem["code"] == "affair_not_permitted"


def test_tax_clerk_may_not_inquire_for_child_allowance(atena: Atena) -> None:
    problem = atena.refused(
        "/v1/inquiries", inquiry(), 403, "affair_not_permitted", staff_id="S0002"
    )
    assert "児童手当" in problem["title"]
    entry = atena.audit()[-1]
    assert (entry["actor"], entry["action"], entry["outcome"]) == (
        "S0002",
        "inquiry",
        "affair_not_permitted",
    )
    assert entry["affair"] == "JM01000000074000"


def test_staff_without_any_role(atena: Atena) -> None:
    atena.refused("/v1/inquiries", inquiry(), 403, "affair_not_permitted", staff_id="S0003")


def test_unknown_business_atena_no(atena: Atena) -> None:
    atena.refused(
        "/v1/inquiries",
        inquiry(business_atena_no=ids.make_atena_no(424_242)),
        404,
        "unknown_business_atena_no",
    )


def test_business_atena_no_of_another_system(atena: Atena) -> None:
    # The tax system's number is not a child-allowance number.
    atena.refused(
        "/v1/inquiries", inquiry(business_atena_no=TAX_NO), 404, "unknown_business_atena_no"
    )


@pytest.mark.parametrize(
    "number",
    [wrong_check_digit(CHILD_NO), CHILD_NO[:-1], "０" * 15],
    ids=["check-digit", "short", "full-width"],
)
def test_malformed_business_atena_no(atena: Atena, number: str) -> None:
    atena.refused(
        "/v1/inquiries", inquiry(business_atena_no=number), 422, "invalid_business_atena_no"
    )


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("procedure_code", "JT0101000007400", "invalid_procedure_code"),
        ("procedure_code", "JM01000000074000", "invalid_procedure_code"),
        ("procedure_code", "JT99999999999999", "unknown_procedure"),
        ("info_kind_code", "TM0000000000000２", "invalid_info_kind_code"),
        ("provider_org", "131148", "invalid_org_code"),
    ],
)
def test_malformed_codes(atena: Atena, field: str, value: str, code: str) -> None:
    atena.refused("/v1/inquiries", inquiry(**{field: value}), 422, code)


@pytest.mark.parametrize("as_of", ["2024-02-30", "yesterday", "2024/13/01", "令和6年2月30日"])
def test_malformed_as_of(atena: Atena, as_of: str) -> None:
    # Refused at atena, before the chukan is asked and before anything is logged.
    atena.refused("/v1/inquiries", inquiry(as_of=as_of), 422, "bad_date")


# --- provision copies and pseudonyms ----------------------------------------------------------


def test_copy_for_an_unknown_business_atena_no(atena: Atena) -> None:
    records = [
        {
            "business_atena_no": TAX_NO,
            "info_kind_code": LOCAL_TAX_INFO,
            "valid_from": "2024-06-01",
            "values": {},
        },
        {
            "business_atena_no": ids.make_atena_no(123_456),
            "info_kind_code": LOCAL_TAX_INFO,
            "valid_from": "2024-06-01",
            "values": {},
        },
    ]
    problem = atena.refused(
        "/v1/fukuhon", {"system": "tax", "records": records}, 404, "unknown_business_atena_no"
    )
    assert problem.get("index") == 1


def test_copy_with_a_malformed_business_atena_no(atena: Atena) -> None:
    records = [{"business_atena_no": wrong_check_digit(TAX_NO), "info_kind_code": LOCAL_TAX_INFO}]
    atena.refused(
        "/v1/fukuhon", {"system": "tax", "records": records}, 422, "invalid_business_atena_no"
    )


@pytest.mark.parametrize(
    "body",
    [
        {"records": []},
        {"system": "", "records": []},
        {"system": "tax"},
        {"system": "tax", "records": "x"},
    ],
    ids=str,
)
def test_copy_request_shape(atena: Atena, body: Any) -> None:
    atena.refused("/v1/fukuhon", body, 422, "invalid_request")


def test_no_copies(atena: Atena) -> None:
    atena.refused("/v1/fukuhon", {"system": "tax", "records": []}, 422, "bad_count")


@pytest.mark.parametrize("path", ["/v1/pseudonyms/acquire", "/v1/pseudonyms/status"])
def test_pseudonyms_for_a_malformed_atena_no(atena: Atena, path: str) -> None:
    good = ids.make_atena_no(1)
    problem = atena.refused(
        path, {"business_atena_nos": [good, wrong_check_digit(good)]}, 422, "invalid_business_atena_no"
    )
    assert problem["index"] == 1


@pytest.mark.parametrize("path", ["/v1/pseudonyms/acquire", "/v1/pseudonyms/status"])
def test_pseudonyms_refuse_atena_nos_from_business_systems(atena: Atena, path: str) -> None:
    atena.refused(path, {"atena_nos": [ids.make_atena_no(1)]}, 422, "atena_no_not_accepted")


@pytest.mark.parametrize("path", ["/v1/pseudonyms/acquire", "/v1/pseudonyms/status"])
def test_pseudonyms_request_shape(atena: Atena, path: str) -> None:
    atena.refused(path, {"business_atena_nos": "x"}, 422, "invalid_request")
