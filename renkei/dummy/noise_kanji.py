"""Kanji noise: 旧字 ↔ 新字 and typing mistakes in a name field.

Each function takes the rng and one field and returns the noisy copy, or the input
unchanged when the noise does not apply. The variant tables are project-owned: joyokanji
maps most old forms to new ones, the table below adds what it misses (邉, 嶋, 冨 …) and
the reverse direction, which no library gives.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Final

import joyokanji

__all__ = [
    "double_char",
    "drop_char",
    "swap_kanji_variant",
    "typo_similar",
]

# 新字 → the 旧字/異体字 that registers and old systems hold for it. Characters outside
# CP932 (𠮷) are here on purpose: a business file in UTF-8 may carry them.
NEW_TO_OLD: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "高": ("髙",),
        "崎": ("﨑", "嵜", "碕"),
        "辺": ("邊", "邉"),
        "斎": ("齋",),
        "斉": ("齊",),
        "沢": ("澤",),
        "浜": ("濱",),
        "徳": ("德",),
        "桜": ("櫻",),
        "国": ("國",),
        "広": ("廣",),
        "島": ("嶋", "嶌"),
        "吉": ("𠮷",),
        "真": ("眞",),
        "実": ("實",),
        "恵": ("惠",),
        "栄": ("榮",),
        "蔵": ("藏",),
        "竜": ("龍",),
        "寿": ("壽",),
        "曽": ("曾",),
        "富": ("冨",),
        "桧": ("檜",),
        "関": ("關",),
        "滝": ("瀧",),
        "礼": ("禮",),
        "条": ("條",),
        "静": ("靜",),
        "清": ("淸",),
        "黒": ("黑",),
        "瀬": ("瀨",),
        "会": ("會",),
        "弥": ("彌",),
        "万": ("萬",),
        "亀": ("龜",),
        "豊": ("豐",),
        "円": ("圓",),
        "宝": ("寶",),
        "野": ("埜",),
    }
)

# 旧字 → 新字: the reverse of the table above, which also covers what joyokanji keeps as
# it is (邉, 嶋, 冨, 檜, 龜 …); joyokanji answers for every other character.
OLD_TO_NEW: Final[Mapping[str, str]] = MappingProxyType(
    {old: new for new, olds in NEW_TO_OLD.items() for old in olds}
)

# Characters a typist or an OCR pass confuses: look-alikes (太/大, 子/了, kanji 一 and
# katakana ー, 口/ロ) and same-reading kanji (祐/裕/佑, 弘/宏/広).
_SIMILAR_GROUPS: Final = (
    "太大犬",
    "祐裕佑",
    "子了",
    "郎朗",
    "治冶",
    "己巳已",
    "未末",
    "土士",
    "鳥烏",
    "島鳥",
    "陽洋",
    "崎埼",
    "彦産",
    "輔補助",
    "賢堅",
    "浩活",
    "智知",
    "俊後",
    "健建",
    "徹撤",
    "隆降",
    "誠成",
    "弘宏広",
    "斎斉",  # 斎藤 and 斉藤 are told apart by ear only
    "千干",
    "田由",
    "木本",
    "玉王",
    "美実",
    "奈菜那",
    "香佳加",
    "純順",
    "貴喜",
    "義儀",
    "清晴靖",
    "幸辛",
    "佐左",
    "伊依",
    "村材",
    "一ー",
    "口ロ",
    "力カ",
    "工エ",
    "二ニ",
    "八ハ",
    "夕タ",
    "ソン",
    "シツ",
    "スヌ",
    "ウワ",
    "チテ",
    "クケ",
    "ハバパ",
    "ヒビピ",
    "フブプ",
    "ヘベペ",
    "ホボポ",
    "カガ",
    "キギ",
    "サザ",
    "シジ",
    "タダ",
    "トド",
    "コゴ",
    "セゼ",
    "ルレ",
    "ノメ",
)


def _similar_table() -> dict[str, tuple[str, ...]]:
    table: dict[str, list[str]] = {}
    for group in _SIMILAR_GROUPS:
        for char in group:
            alternatives = table.setdefault(char, [])
            alternatives.extend(c for c in group if c != char and c not in alternatives)
    return {char: tuple(alts) for char, alts in table.items()}


SIMILAR: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(_similar_table())


@lru_cache(maxsize=4096)
def new_form(char: str) -> str:
    """The 新字 of one character (itself when it has none)."""
    override = OLD_TO_NEW.get(char)
    if override is not None:
        return override
    return str(joyokanji.convert(char, variants=True))


def swap_kanji_variant(rng: random.Random, text: str) -> str:
    """One character to its other form: 髙 → 高, 渡辺 → 渡邊 (either direction)."""
    spots: list[tuple[int, str]] = []
    for i, char in enumerate(text):
        new = new_form(char)
        if new != char:
            spots.append((i, new))
        elif char in NEW_TO_OLD:
            spots.append((i, rng.choice(NEW_TO_OLD[char])))
    if not spots:
        return text
    at, new = rng.choice(spots)
    return text[:at] + new + text[at + 1 :]


def typo_similar(rng: random.Random, text: str) -> str:
    """One character replaced by a look-alike or same-sounding one (太 → 大, 祐 → 裕)."""
    spots = [i for i, char in enumerate(text) if char in SIMILAR]
    if not spots:
        return text
    at = rng.choice(spots)
    return text[:at] + rng.choice(SIMILAR[text[at]]) + text[at + 1 :]


def drop_char(rng: random.Random, text: str) -> str:
    """One character left out (ヤマモト → ヤモト); a one-character field is left alone."""
    spots = [i for i, char in enumerate(text) if not char.isspace()]
    if len(spots) < 2:
        return text
    at = rng.choice(spots)
    return text[:at] + text[at + 1 :]


def double_char(rng: random.Random, text: str) -> str:
    """One character typed twice (佐藤 → 佐藤藤)."""
    spots = [i for i, char in enumerate(text) if not char.isspace()]
    if not spots:
        return text
    at = rng.choice(spots)
    return text[: at + 1] + text[at:]
