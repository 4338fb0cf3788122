"""和暦: dates shown to staff in the Japanese era, accepted in 和暦 or Gregorian.

Accepted: 令和7年4月1日, 令和元年5月1日, R7.4.1, R07.04.01, R7/4/1, Ｒ７．４．１ (full width),
2025-04-01, 2025/4/1, 2025年4月1日, 20250401. Era start days are checked: 平成31年5月1日 is refused
(令和元年5月1日), as is 令和1年4月30日.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Era:
    name: str
    letter: str
    start: date


# Newest first. Meiji dates before 1873 (the lunar calendar) are not supported.
ERAS: tuple[Era, ...] = (
    Era("令和", "R", date(2019, 5, 1)),
    Era("平成", "H", date(1989, 1, 8)),
    Era("昭和", "S", date(1926, 12, 25)),
    Era("大正", "T", date(1912, 7, 30)),
    Era("明治", "M", date(1873, 1, 1)),
)
_BY_KEY = {e.name: e for e in ERAS} | {e.letter: e for e in ERAS}
_NEXT_START = {ERAS[i].name: ERAS[i - 1].start for i in range(1, len(ERAS))}


class WarekiError(ValueError):
    """The text is not a date; the message (Japanese) says why."""


def era_of(d: date) -> Era:
    for era in ERAS:
        if d >= era.start:
            return era
    raise WarekiError(f"{d.isoformat()} は和暦で表せる範囲（明治6年以降）より前です。")


def to_wareki(d: date, *, short: bool = False) -> str:
    """令和7年4月1日 (or R7.4.1 with short=True)."""
    era = era_of(d)
    year = d.year - era.start.year + 1
    if short:
        return f"{era.letter}{year}.{d.month}.{d.day}"
    return f"{era.name}{'元' if year == 1 else year}年{d.month}月{d.day}日"


_WAREKI = re.compile(r"^(令和|平成|昭和|大正|明治|[RHSTM])\s*(元|\d{1,3})\s*[年.\-/]\s*(\d{1,2})\s*[月.\-/]\s*(\d{1,2})\s*日?$")
_GREGORIAN = re.compile(r"^(\d{4})\s*[年.\-/]\s*(\d{1,2})\s*[月.\-/]\s*(\d{1,2})\s*日?$")
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")


def _make(y: int, m: int, d: int, text: str) -> date:
    try:
        return date(y, m, d)
    except ValueError:
        raise WarekiError(f"「{text}」は存在しない日付です。") from None


def parse_date(text: str) -> date:
    """A date typed by staff, in 和暦 or Gregorian; WarekiError with a Japanese reason."""
    raw = unicodedata.normalize("NFKC", str(text)).strip().upper()
    if not raw:
        raise WarekiError("日付が入力されていません。")
    m = _WAREKI.match(raw)
    if m:
        era = _BY_KEY[m.group(1)]
        year = 1 if m.group(2) == "元" else int(m.group(2))
        if year < 1:
            raise WarekiError(f"「{text}」の年が誤っています。")
        d = _make(era.start.year + year - 1, int(m.group(3)), int(m.group(4)), text)
        if d < era.start:
            raise WarekiError(f"{era.name}は{to_wareki(era.start)}からです（「{text}」）。")
        nxt = _NEXT_START.get(era.name)
        if nxt is not None and d >= nxt:
            raise WarekiError(f"{to_wareki(d)}です。{era.name}は{to_wareki(nxt)}の前日までです（「{text}」）。")
        return d
    m = _GREGORIAN.match(raw) or _COMPACT.match(raw)
    if m:
        return _make(int(m.group(1)), int(m.group(2)), int(m.group(3)), text)
    raise WarekiError(f"「{text}」は日付として読み取れません（例: 令和7年4月1日、R7.4.1、2025-04-01）。")
