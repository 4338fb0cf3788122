"""Kana noise: how a katakana reading drifts when staff type it into a business system.

Every function takes the rng and one full-width katakana field and returns the noisy
copy; it returns the input unchanged when the noise does not apply (no ヴ to replace, no
long vowel, ...), so that the caller can tell applied noise from a no-op.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import jaconv

__all__ = [
    "enlarge_small_kana",
    "swap_ji_zu",
    "swap_vu",
    "swap_wo",
    "to_halfwidth",
    "to_hiragana",
    "vary_long_vowel",
]

# ヴ-series ↔ バ-series; the two-character forms come first so that ヴァ is not read as ヴ+ァ.
_VU_TO_B: Final[Mapping[str, str]] = MappingProxyType(
    {"ヴァ": "バ", "ヴィ": "ビ", "ヴェ": "ベ", "ヴォ": "ボ", "ヴュ": "ビュ", "ヴ": "ブ"}
)
_B_TO_VU: Final[Mapping[str, str]] = MappingProxyType(
    {"バ": "ヴァ", "ビ": "ヴィ", "ブ": "ヴ", "ベ": "ヴェ", "ボ": "ヴォ"}
)

_SMALL_TO_LARGE: Final[Mapping[str, str]] = MappingProxyType(
    dict(zip("ァィゥェォャュョッヮヵヶ", "アイウエオヤユヨツワカケ", strict=True))
)

_JI_ZU: Final[Mapping[str, str]] = MappingProxyType(
    {"ヂ": "ジ", "ジ": "ヂ", "ヅ": "ズ", "ズ": "ヅ"}
)
_WO: Final[Mapping[str, str]] = MappingProxyType({"ヲ": "オ", "オ": "ヲ"})


def _vowel_table() -> dict[str, str]:
    rows = {
        "a": "アカガサザタダナハバパマヤラワャァ",
        "i": "イキギシジチヂニヒビピミリィ",
        "u": "ウクグスズツヅヌフブプムユルュゥヴ",
        "e": "エケゲセゼテデネヘベペメレェ",
        "o": "オコゴソゾトドノホボポモヨロヲョォ",
    }
    return {kana: vowel for vowel, chars in rows.items() for kana in chars}


_VOWEL: Final[Mapping[str, str]] = MappingProxyType(_vowel_table())
# The kana that lengthen a vowel in a name's reading (サトウ, ユウコ, ケイコ, オオノ); also
# what a typist writes instead of ー after that vowel (オーノ → オウノ or オオノ).
_LENGTHENERS: Final[Mapping[str, str]] = MappingProxyType(
    {"a": "ア", "i": "イ", "u": "ウ", "e": "イエ", "o": "ウオ"}
)


def swap_vu(rng: random.Random, text: str) -> str:
    """ヴァ→バ, ヴ→ブ … or the reverse (ベトナム→ヴェトナム) at one place."""
    spots: list[tuple[int, int, str]] = []
    i = 0
    while i < len(text):
        pair = text[i : i + 2]
        if pair in _VU_TO_B:
            spots.append((i, 2, _VU_TO_B[pair]))
            i += 2
            continue
        char = text[i]
        if char in _VU_TO_B:
            spots.append((i, 1, _VU_TO_B[char]))
        elif char in _B_TO_VU:
            spots.append((i, 1, _B_TO_VU[char]))
        i += 1
    if not spots:
        return text
    at, length, new = rng.choice(spots)
    return text[:at] + new + text[at + length :]


def vary_long_vowel(rng: random.Random, text: str) -> str:
    """One long vowel written another way: オオノ / オーノ / オノ, サトウ / サトー / サト."""
    spots: list[tuple[int, str]] = []
    for i in range(1, len(text)):
        vowel = _VOWEL.get(text[i - 1])
        if vowel is None:
            continue
        char = text[i]
        if char == "ー":
            spots.append((i, rng.choice(("", *_LENGTHENERS[vowel]))))
        elif char in _LENGTHENERS[vowel]:
            spots.append((i, rng.choice(("ー", ""))))
    if not spots:
        return text
    at, new = rng.choice(spots)
    return text[:at] + new + text[at + 1 :]


def enlarge_small_kana(rng: random.Random, text: str) -> str:
    """One small kana typed full size: キャ → キヤ, ッ → ツ."""
    spots = [i for i, char in enumerate(text) if char in _SMALL_TO_LARGE]
    if not spots:
        return text
    at = rng.choice(spots)
    return text[:at] + _SMALL_TO_LARGE[text[at]] + text[at + 1 :]


def swap_ji_zu(rng: random.Random, text: str) -> str:
    """ヂ↔ジ or ヅ↔ズ at one place (チヅル / チズル)."""
    spots = [i for i, char in enumerate(text) if char in _JI_ZU]
    if not spots:
        return text
    at = rng.choice(spots)
    return text[:at] + _JI_ZU[text[at]] + text[at + 1 :]


def swap_wo(rng: random.Random, text: str) -> str:
    """ヲ↔オ at one place (カヲル / カオル)."""
    spots = [i for i, char in enumerate(text) if char in _WO]
    if not spots:
        return text
    at = rng.choice(spots)
    return text[:at] + _WO[text[at]] + text[at + 1 :]


def to_halfwidth(rng: random.Random, text: str) -> str:
    """The whole field in half-width katakana (ﾔﾏﾀﾞ), as older systems store it."""
    del rng  # the same for every draw; kept for the common signature
    return str(jaconv.z2h(text, kana=True, ascii=False, digit=False))


def to_hiragana(rng: random.Random, text: str) -> str:
    """The whole field in hiragana (やまだ) where the system expected katakana."""
    del rng
    return str(jaconv.kata2hira(text))
