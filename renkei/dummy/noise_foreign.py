"""Foreign names: transliteration variants, order, middle names, case, 通称.

A foreign resident's name reaches a business system from a residence card (roman
letters, ``NGUYEN VAN AN``), from a form in katakana, or as a 通称 (a Japanese-style name
in everyday use). Each clerk writes it a little differently. String functions return the
input unchanged when they do not apply.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

__all__ = [
    "ALIASES",
    "change_case",
    "drop_middle_name",
    "drop_token",
    "is_alphabetic",
    "kana_variant",
    "name_tokens",
    "reorder_western",
    "transliterate",
]

# Spelling variants of name tokens (upper case). Vietnamese with and without diacritics
# (NGUYỄN is not in CP932), Chinese pinyin ↔ Wade-Giles, Korean romanizations, and the
# spellings that come from writing a name down by ear (GUEN).
ALPHA_VARIANTS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "NGUYEN": ("NGUYỄN", "NGUEN", "GUEN", "NGUYEM"),
        "TRAN": ("TRẦN", "TRANG"),
        "LE": ("LÊ", "LEE"),
        "PHAM": ("PHẠM", "FAM"),
        "HOANG": ("HOÀNG", "HUANG"),
        "VU": ("VŨ", "VOO"),
        "DANG": ("ĐẶNG", "DAN"),
        "BUI": ("BÙI", "BUY"),
        "DO": ("ĐỖ", "DOH"),
        "VAN": ("VĂN",),
        "THI": ("THỊ", "TI"),
        "DUC": ("ĐỨC", "DUK"),
        "ZHANG": ("CHANG", "JANG"),
        "ZHOU": ("CHOU", "JOU"),
        "XU": ("HSU", "SHU"),
        "LIU": ("LIEU", "RYU"),
        "CHEN": ("CHAN", "CHIN"),
        "WANG": ("WONG", "OUYANG"),
        "LI": ("LEE", "LY"),
        "LEE": ("LI", "YI", "RHEE"),
        "PARK": ("PAK", "BAK"),
        "CHOI": ("CHOE", "CHOY"),
        "KIM": ("GIM", "KIMM"),
        "JUNG": ("JEONG", "CHUNG"),
        "SHRESTHA": ("SRESTHA", "SHRESTA"),
        "GURUNG": ("GRUNG",),
        "SANTOS": ("SANTO",),
        "REYES": ("REYS",),
    }
)

# Generic spelling slips for tokens not in the table.
_ALPHA_RULES: Final = (
    ("PH", "F"),
    ("TH", "T"),
    ("KH", "K"),
    ("SH", "S"),
    ("EE", "I"),
    ("OO", "U"),
    ("Y", "I"),
    ("W", "V"),
    ("LL", "L"),
    ("NN", "N"),
    ("SS", "S"),
    ("TT", "T"),
)

# Katakana spellings of the same foreign name.
KANA_VARIANTS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "グエン": ("グェン", "ニュエン", "グウェン"),
        "チャン": ("トラン", "チャーン"),
        "レ": ("レー",),
        "ファム": ("ファン", "ハム"),
        "ホアン": ("ホワン", "フアン"),
        "ヴー": ("ブー", "ヴ"),
        "ヴァン": ("バン", "ワン"),
        "ティ": ("チ", "ティー"),
        "ワン": ("ウァン", "ウォン"),
        "ジャン": ("チャン", "ザン"),
        "キム": ("ギム",),
        "パク": ("バク", "パック"),
        "イ": ("リ", "リー"),
        "リ": ("リー", "イ"),
        "チェ": ("チョイ", "チェー"),
        "シュレスタ": ("シュレスター", "スレスタ"),
        "サントス": ("サントッス",),
    }
)

_KANA_RULES: Final = (
    ("グエ", "グェ"),
    ("グェ", "グエ"),
    ("ウィ", "ウイ"),
    ("ウイ", "ウィ"),
    ("ウェ", "ウエ"),
    ("ウエ", "ウェ"),
    ("ティ", "チ"),
    ("ディ", "ジ"),
    ("ファ", "ハ"),
    ("フィ", "ヒ"),
    ("フェ", "ヘ"),
    ("フォ", "ホ"),
    ("シェ", "セ"),
    ("ジェ", "ゼ"),
    ("ー", ""),
)

# 通称 (everyday Japanese-style family names) that some foreign residents register with
# the ward, by the family name on the residence card: (kanji, katakana).
ALIASES: Final[Mapping[str, tuple[tuple[str, str], ...]]] = MappingProxyType(
    {
        "金": (("金田", "カネダ"), ("金本", "カネモト"), ("金山", "カナヤマ")),
        "李": (("岩本", "イワモト"), ("国本", "クニモト")),
        "朴": (("新井", "アライ"), ("木村", "キムラ")),
        "崔": (("山本", "ヤマモト"), ("大山", "オオヤマ")),
        "鄭": (("松本", "マツモト"), ("東", "ヒガシ")),
        "姜": (("大山", "オオヤマ"),),
        "張": (("張本", "ハリモト"), ("長野", "ナガノ")),
        "趙": (("松山", "マツヤマ"),),
        "尹": (("伊東", "イトウ"),),
        "王": (("王", "オウ"),),
        "陳": (("陳", "チン"),),
        "林": (("林", "ハヤシ"),),
    }
)

_TOKEN_SEPARATORS: Final = re.compile(r"[ 　・＝]")
_ALPHA: Final = re.compile(r"^[A-Za-z\u00c0-\u024f\u1e00-\u1eff .'\-]+$")


def is_alphabetic(text: str) -> bool:
    """Whether `text` is a roman-letter name (diacritics allowed)."""
    return bool(text) and _ALPHA.match(text) is not None


def _like(model: str, text: str) -> str:
    """`text` in the case of `model` (NGUYEN / Nguyen)."""
    return text.title() if model[:1].isupper() and model[1:2].islower() else text


def _strip_marks(token: str) -> str:
    decomposed = unicodedata.normalize("NFD", token.replace("Đ", "D").replace("đ", "d"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _token_variants(token: str) -> list[str]:
    bare = _strip_marks(token)
    upper = bare.upper()
    if bare != token:  # NGUYỄN → NGUYEN: diacritics lost
        return [bare]
    variants = [v for v in ALPHA_VARIANTS.get(upper, ()) if v != upper]
    if not variants:
        variants = [upper.replace(old, new, 1) for old, new in _ALPHA_RULES if old in upper]
    return [_like(token, v) for v in variants if v]


def transliterate(rng: random.Random, text: str) -> str:
    """One token of a roman-letter name spelled another way (NGUYEN → NGUYỄN, GUEN)."""
    if not is_alphabetic(text):
        return text
    tokens = text.split(" ")
    spots = [(i, v) for i, t in enumerate(tokens) if t for v in _token_variants(t)]
    if not spots:
        return text
    at, new = rng.choice(spots)
    return " ".join(tokens[:at] + [new] + tokens[at + 1 :])


def kana_variant(rng: random.Random, text: str) -> str:
    """A katakana name spelled another way (グエン → グェン, ニュエン)."""
    tokens = _TOKEN_SEPARATORS.split(text)
    seps = _TOKEN_SEPARATORS.findall(text)
    spots: list[tuple[int, str]] = []
    for i, token in enumerate(tokens):
        spots += [(i, v) for v in KANA_VARIANTS.get(token, ())]
        spots += [(i, token.replace(old, new, 1)) for old, new in _KANA_RULES if old in token]
    spots = [(i, v) for i, v in spots if v and v != tokens[i]]
    if not spots:
        return text
    at, new = rng.choice(spots)
    tokens[at] = new
    return tokens[0] + "".join(sep + token for sep, token in zip(seps, tokens[1:], strict=True))


def change_case(rng: random.Random, text: str) -> str:
    """NGUYEN VAN AN ↔ Nguyen Van An."""
    del rng
    if not is_alphabetic(text):
        return text
    return text.title() if text.isupper() else text.upper()


def drop_middle_name(rng: random.Random, text: str) -> str:
    """One of several given-name tokens left out (VAN AN → AN, MARIA CLARA → MARIA)."""
    count = len(name_tokens(text))
    return drop_token(text, rng.randrange(count)) if count >= 2 else text


def name_tokens(text: str) -> list[str]:
    """The tokens of a name, split on spaces (half and full width), ・ and ＝."""
    return [t for t in _TOKEN_SEPARATORS.split(text) if t]


def drop_token(text: str, index: int) -> str:
    """`text` without its token number `index`, the rest joined by one space."""
    tokens = name_tokens(text)
    del tokens[index]
    return " ".join(tokens)


def reorder_western(family: str, given: str) -> tuple[str, str]:
    """The full name read in Western order: NGUYEN | VAN AN → AN | NGUYEN VAN.

    The last token becomes the family name; with one token each, the two are exchanged.
    """
    tokens = name_tokens(f"{family} {given}")
    if len(tokens) < 2:
        return family, given
    return tokens[-1], " ".join(tokens[:-1])
