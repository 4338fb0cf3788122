"""validate_record: the happy path and every issue code."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from renkei.catalogue import Catalogue, ValidationIssue

TAX = "TM00000000000002"
RESIDENT = "TM00000000000001"
CHILD = "TM00000000009001"
ON = date(2025, 4, 1)

GOOD_TAX = {
    "K001": "2024",
    "K002": "1",
    "K003": "3500000",
    "K004": "120000",
    "K005": "5000",
    "K006": "2",
}


def codes(issues: list[ValidationIssue]) -> list[tuple[str | None, str]]:
    return [(i.item_code, i.code) for i in issues]


def test_happy_path(catalogue: Catalogue) -> None:
    assert catalogue.validate_record(TAX, GOOD_TAX, ON) == []
    assert catalogue.validate_record(TAX, GOOD_TAX, ON, edition="0001") == []


def test_empty_optional_items_are_allowed(catalogue: Catalogue) -> None:
    minimal = {"K001": "2024", "K002": "2", "K003": "", "K004": ""}
    assert catalogue.validate_record(TAX, minimal, ON) == []


def test_other_layouts_happy(catalogue: Catalogue) -> None:
    resident = {"J001": "2", "J002": "新宿 太郎", "J003": "子", "J004": "3", "J005": "2019-04-01"}
    assert catalogue.validate_record(RESIDENT, resident, ON) == []
    assert catalogue.validate_record(RESIDENT, {"J001": "1", "J005": "20190401"}, ON) == []


@pytest.mark.parametrize(
    ("item", "value", "issue"),
    [
        ("K001", "", "required"),
        ("K002", "", "required"),
        ("K001", "二〇二四", "not_integer"),
        ("K001", "２０２４", "not_integer"),  # full-width digits are not accepted
        ("K001", "24", "bad_year"),
        ("K001", "02024", "bad_year"),
        ("K002", "4", "not_in_code_list"),
        ("K002", "課税", "not_in_code_list"),
        ("K003", "12a", "not_integer"),
        ("K003", " 12", "not_integer"),
        ("K003", "1_000", "not_integer"),
        ("K003", "-1", "out_of_range"),
        ("K003", "1000000000000", "out_of_range"),
        ("K004", "-5", "out_of_range"),
        ("K006", "100", "out_of_range"),
    ],
)
def test_tax_issue_codes(catalogue: Catalogue, item: str, value: str, issue: str) -> None:
    values = dict(GOOD_TAX, **{item: value})
    issues = catalogue.validate_record(TAX, values, ON)
    assert codes(issues) == [(item, issue)]
    assert item in issues[0].message


@pytest.mark.parametrize(
    ("item", "value"), [("K003", "987654321987654"), ("K003", "98765x"), ("K002", "98765")]
)
def test_values_are_never_echoed(catalogue: Catalogue, item: str, value: str) -> None:
    (issue,) = catalogue.validate_record(TAX, dict(GOOD_TAX, **{item: value}), ON)
    assert value not in issue.message


def test_missing_required_key(catalogue: Catalogue) -> None:
    values = {k: v for k, v in GOOD_TAX.items() if k != "K001"}
    assert codes(catalogue.validate_record(TAX, values, ON)) == [("K001", "required")]


def test_unknown_item(catalogue: Catalogue) -> None:
    issues = catalogue.validate_record(TAX, dict(GOOD_TAX, K999="1"), ON)
    assert codes(issues) == [("K999", "unknown_item")]
    assert "K999" in issues[0].message and TAX in issues[0].message


def test_too_long(catalogue: Catalogue) -> None:
    issues = catalogue.validate_record(RESIDENT, {"J001": "1", "J003": "あ" * 21}, ON)
    assert codes(issues) == [("J003", "too_long")]
    assert "20文字以内" in issues[0].message


@pytest.mark.parametrize("value", ["2019-02-30", "2019/04/01", "R1.4.1", "201904011", "2019-4-1"])
def test_bad_date(catalogue: Catalogue, value: str) -> None:
    issues = catalogue.validate_record(RESIDENT, {"J001": "1", "J005": value}, ON)
    assert codes(issues) == [("J005", "bad_date")]


def test_several_issues_reported_together(catalogue: Catalogue) -> None:
    issues = catalogue.validate_record(TAX, {"K002": "9", "K006": "x", "X": "1"}, ON)
    assert sorted(codes(issues), key=str) == sorted(
        [
            ("X", "unknown_item"),
            ("K001", "required"),
            ("K002", "not_in_code_list"),
            ("K006", "not_integer"),
        ],
        key=str,
    )


def test_no_edition(catalogue: Catalogue) -> None:
    issues = catalogue.validate_record(TAX, GOOD_TAX, date(2017, 7, 17))
    assert codes(issues) == [(None, "no_edition")]
    assert "2017-07-17" in issues[0].message


def test_unknown_info_kind(catalogue: Catalogue) -> None:
    issues = catalogue.validate_record("TM99999999999999", GOOD_TAX, ON)
    assert codes(issues) == [(None, "unknown_info_kind")]


def test_named_edition(catalogue: Catalogue) -> None:
    old = {"C001": "1", "C002": "2", "C003": "1"}
    # edition 0001 (to 2024-09-30) has C002; edition 0002 does not
    assert catalogue.validate_record(CHILD, old, date(2024, 9, 30)) == []
    assert codes(catalogue.validate_record(CHILD, old, date(2024, 10, 1))) == [
        ("C002", "unknown_item")
    ]
    assert catalogue.validate_record(CHILD, old, date(2020, 1, 1), edition="0001") == []
    issues = catalogue.validate_record(CHILD, old, ON, edition="0001")
    assert codes(issues) == [(None, "edition_not_in_force")]
    assert "2017-07-18〜2024-09-30" in issues[0].message
    assert codes(catalogue.validate_record(CHILD, old, ON, edition="0009")) == [
        (None, "unknown_edition")
    ]


@given(st.integers(min_value=-(10**13), max_value=10**13))
def test_integer_range_property(catalogue: Catalogue, n: int) -> None:
    issues = catalogue.validate_record(TAX, dict(GOOD_TAX, K003=str(n)), ON)
    if 0 <= n <= 999_999_999_999:
        assert issues == []
    else:
        assert codes(issues) == [("K003", "out_of_range")]


@given(st.text(max_size=6))
def test_code_item_property(catalogue: Catalogue, value: str) -> None:
    issues = catalogue.validate_record(TAX, dict(GOOD_TAX, K002=value), ON)
    if value in ("1", "2", "3"):
        assert issues == []
    else:
        assert len(issues) == 1 and issues[0].item_code == "K002"
        assert issues[0].code == ("required" if value == "" else "not_in_code_list")
