"""Birth dates as business systems write them, and the mistakes in them.

A business file holds the birth date as text in the system's style (和暦 or 西暦). A
record's date is whatever that text says, read without checking era boundaries
(`read_birth_date`): 平成55年3月2日 is 2043-03-02, 平成元年1月5日 is 1989-01-05. That is
how a system that stores era code + year + month + day turns it into a date, and it keeps
the date and the text of a record in agreement by construction.
"""

from __future__ import annotations

import random
import re
import unicodedata
from datetime import date
from typing import Final

from renkei.core.text.wareki import ERAS, Era, era_of, to_wareki

__all__ = [
    "DATE_STYLES",
    "era_mistake",
    "format_birth_date",
    "read_birth_date",
    "swap_day_month",
]

# wareki: 昭和55年3月2日; wareki_short: S55.3.2; iso: 1980-03-02; slash: 1980/3/2.
DATE_STYLES: Final = ("wareki", "wareki_short", "iso", "slash")
_WAREKI_STYLES: Final = frozenset({"wareki", "wareki_short"})

_BY_KEY: Final = {e.name: e for e in ERAS} | {e.letter: e for e in ERAS}
_WAREKI_TEXT: Final = re.compile(
    r"^(令和|平成|昭和|大正|明治|[RHSTM])\s*(元|\d{1,3})\s*[年.\-/]\s*(\d{1,2})\s*[月.\-/]\s*(\d{1,2})\s*日?$"
)
_GREGORIAN_TEXT: Final = re.compile(
    r"^(\d{4})\s*[年.\-/]\s*(\d{1,2})\s*[月.\-/]\s*(\d{1,2})\s*日?$"
)


def _render_wareki(era: Era, year: int, month: int, day: int, short: bool) -> str:
    if short:
        return f"{era.letter}{year}.{month}.{day}"
    return f"{era.name}{'元' if year == 1 else year}年{month}月{day}日"


def _naive(era: Era, year: int, month: int, day: int) -> date | None:
    try:
        return date(era.start.year + year - 1, month, day)
    except ValueError:
        return None


def format_birth_date(d: date, style: str) -> str:
    """`d` written in one of `DATE_STYLES`."""
    if style == "wareki":
        return to_wareki(d)
    if style == "wareki_short":
        return to_wareki(d, short=True)
    if style == "slash":
        return f"{d.year}/{d.month}/{d.day}"
    return d.isoformat()


def read_birth_date(text: str) -> date | None:
    """The date a business text names, era boundaries not checked; None if it names none."""
    raw = unicodedata.normalize("NFKC", text).strip().upper()
    m = _WAREKI_TEXT.match(raw)
    if m:
        year = 1 if m.group(2) == "元" else int(m.group(2))
        return _naive(_BY_KEY[m.group(1)], year, int(m.group(3)), int(m.group(4)))
    m = _GREGORIAN_TEXT.match(raw)
    if m:
        try:
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            return None
    return None


def _neighbours(era: Era) -> list[Era]:
    i = ERAS.index(era)
    return [ERAS[j] for j in (i - 1, i + 1) if 0 <= j < len(ERAS)]


def _mistakes(d: date) -> list[tuple[Era, int]]:
    """(era, year number) pairs a clerk writes by mistake for `d` (same month and day)."""
    era = era_of(d)
    year = d.year - era.start.year + 1
    out: list[tuple[Era, int]] = [(other, year) for other in _neighbours(era)]  # 平成 for 昭和
    out += [(era, year + 1)] + ([(era, year - 1)] if year > 1 else [])  # off by one
    for other in _neighbours(era):  # the boundary year: 平成元年 for 昭和64年 and back
        if other.start.year == d.year or era.start.year == d.year:
            boundary_year = d.year - other.start.year + 1
            if boundary_year >= 1:
                out.append((other, boundary_year))
    return [(e, y) for e, y in out if _naive(e, y, d.month, d.day) is not None]


def era_mistake(rng: random.Random, d: date, style: str) -> str:
    """`d` with an era mistake, in `style`: 昭和55年 written 平成55年, 昭和64年 as 平成元年,
    a year off by one. In a 西暦 style the mistake is the mis-converted year (2043, 1979).
    """
    options = _mistakes(d)
    if style not in _WAREKI_STYLES:
        # A 西暦 system shows the mistake only where it moves the Gregorian year.
        options = [(e, y) for e, y in options if e.start.year + y - 1 != d.year]
    if not options:
        return format_birth_date(d, style)
    era, year = rng.choice(options)
    if style in _WAREKI_STYLES:
        return _render_wareki(era, year, d.month, d.day, short=style == "wareki_short")
    wrong = _naive(era, year, d.month, d.day)
    assert wrong is not None  # _mistakes keeps real days only
    return format_birth_date(wrong, style)


def swap_day_month(rng: random.Random, d: date, style: str) -> str:
    """Day and month exchanged (3月12日 → 12月3日) where that is a real, different day."""
    del rng
    if d.day > 12 or d.day == d.month:
        return format_birth_date(d, style)
    swapped = date(d.year, d.day, d.month)
    if style in _WAREKI_STYLES:
        # Keep the era and year number of the true date: the clerk swapped only the digits.
        era = era_of(d)
        year = d.year - era.start.year + 1
        return _render_wareki(era, year, swapped.month, swapped.day, short=style == "wareki_short")
    return format_birth_date(swapped, style)
