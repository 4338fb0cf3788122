from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from renkei.core.text.wareki import WarekiError, parse_date, to_wareki


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("令和7年4月1日", date(2025, 4, 1)),
        ("令和元年5月1日", date(2019, 5, 1)),
        ("R7.4.1", date(2025, 4, 1)),
        ("r07.04.01", date(2025, 4, 1)),
        ("Ｒ７．４．１", date(2025, 4, 1)),
        ("H31.4.30", date(2019, 4, 30)),
        ("平成元年1月8日", date(1989, 1, 8)),
        ("昭和64年1月7日", date(1989, 1, 7)),
        ("2025-04-01", date(2025, 4, 1)),
        ("2025/4/1", date(2025, 4, 1)),
        ("2025年4月1日", date(2025, 4, 1)),
        ("20250401", date(2025, 4, 1)),
    ],
)
def test_accepted(text: str, expected: date) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "令和7年2月30日", "平成31年5月1日", "令和元年4月30日", "昭和64年1月8日", "2025-13-01", "あした", "R0.1.1", "X7.4.1"],
)
def test_refused_with_a_japanese_reason(text: str) -> None:
    with pytest.raises(WarekiError) as info:
        parse_date(text)
    assert any("\u3040" <= ch <= "\u9fff" for ch in str(info.value))


def test_display() -> None:
    assert to_wareki(date(2025, 4, 1)) == "令和7年4月1日"
    assert to_wareki(date(2019, 5, 1)) == "令和元年5月1日"
    assert to_wareki(date(2019, 4, 30)) == "平成31年4月30日"
    assert to_wareki(date(2025, 4, 1), short=True) == "R7.4.1"


@given(st.dates(min_value=date(1873, 1, 1), max_value=date(2200, 12, 31)))
def test_round_trip(d: date) -> None:
    assert parse_date(to_wareki(d)) == d
    assert parse_date(to_wareki(d, short=True)) == d
    assert parse_date(d.isoformat()) == d


@given(st.text(max_size=30))
def test_never_crashes(text: str) -> None:
    try:
        parse_date(text)
    except WarekiError:
        pass


def test_era_boundaries() -> None:
    reiwa = date(2019, 5, 1)
    assert to_wareki(reiwa - timedelta(days=1)).startswith("平成31年")
