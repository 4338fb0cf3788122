"""Search and matching keys: the one set of folds every search (and later 名寄せ) builds on.

Names and addresses are stored exactly as entered; only the keys derived here are
normalized (NFKC rewrites CJK compatibility ideographs, so it never touches stored text).
Every key is idempotent: ``k(k(s)) == k(s)``.

- `kana_key` — a kana name (氏名カナ): NFKC (half-width kana and ｶﾞ → ガ, full-width
  letters → ASCII), hiragana → katakana, the spacing and half-width voicing marks (゛゜ﾞﾟ)
  joined to their kana, ゝヽゞヾ written out, spaces, ・ and ＝ removed; ヴァ→バ, ヴィ→ビ,
  ヴェ→ベ, ヴォ→ボ, ヴュ→ビュ, ヴ→ブ (and ヷヸヹヺ); small kana full size (ァ→ア, ッ→ツ,
  ャ→ヤ, ヮ→ワ, ヵ→カ, ヶ→ケ); ヂ→ジ, ヅ→ズ, ヲ→オ, ヰ→イ, ヱ→エ; 長音: ー and what is
  typed for it after a kana (ｰ, －, -, ‐, ―, −, ～ …) become the vowel it lengthens (ア, イ,
  ウ, イ after an e-row kana, ウ after an o-row kana), and オ after an o-row kana becomes ウ,
  so that サトウ, サトー and オオノ, オーノ, オウノ give one key; Latin letters upper case.
  Voiced and unvoiced kana stay apart (ガ ≠ カ): that difference names different people.
- `name_key` — a name in kanji (氏名): IVS/variation selectors removed, NFKC, 旧字・異体字
  to one character (joyokanji ``convert(s, variants=True)``: 髙→高, 齋→斎, 邊→辺, 𠮷→吉,
  﨑→崎, 國→国 …, then the project's table ``data/itaiji_overrides.csv`` for what
  joyokanji keeps: 邉→辺, 嶋→島, 冨→富 …), hiragana → katakana, spaces and ・ removed,
  Latin letters upper case. 斎 and 斉 stay apart (different surnames).
- `address_key` / `address_parts` — an address: IVS removed, NFKC, 異体字 folded as in
  `name_key`, a leading prefecture dropped, 大字・小字 (and 字 between place names)
  dropped, kanji numerals before 丁目/番地/番/号 to digits (二丁目 → 2丁目; town names such as
  四谷 or 三番町 stay), then the block written one way: 西新宿二丁目8番1号, 西新宿2丁目8-1,
  西新宿２－８－１ → 西新宿2-8-1 (丁目, 番地, 番, 号, の and every hyphen or dash between
  numbers → "-"). `address_parts` keeps the building and room apart from town+block.
- `digits` — a number typed by staff (全角 accepted, spaces and hyphens ignored).

Dates are read by `renkei.core.text.wareki.parse_date` (和暦 or 西暦, 全角 accepted).
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

import joyokanji
import kanjize

__all__ = [
    "AddressParts",
    "address_key",
    "address_parts",
    "digits",
    "kana_key",
    "name_key",
    "strip_variation_selectors",
    "town_key",
]

OVERRIDES_FILE: Final = Path(__file__).parent / "data" / "itaiji_overrides.csv"

# Ideographic variation selectors (U+E0100–E01EF) and the standard ones (U+FE00–FE0F):
# an IVS picks a glyph, never another character.
_VARIATION_SELECTORS: Final = re.compile("[\U000e0100-\U000e01ef\ufe00-\ufe0f]")
_SPACES_AND_DOTS: Final = re.compile(r"[\s\u3000・=＝]+")
# The spacing voicing marks become combining ones before NFKC, which then joins them to
# their kana (NFKC alone turns ゛ into a space and a combining mark).
_SPACING_MARKS: Final = str.maketrans({"\u309b": "\u3099", "\u309c": "\u309a"})


def strip_variation_selectors(text: str) -> str:
    return _VARIATION_SELECTORS.sub("", text)


def _nfkc(text: str) -> str:
    """NFKC without variation selectors, the spacing voicing marks joined to their kana."""
    return unicodedata.normalize("NFKC", strip_variation_selectors(text).translate(_SPACING_MARKS))


# --- kana -------------------------------------------------------------------------------

_HIRAGANA_TO_KATAKANA: Final = {c: c + 0x60 for c in range(0x3041, 0x3097)} | {0x309D: 0x30FD, 0x309E: 0x30FE}
_VU: Final = (("ヴァ", "バ"), ("ヴィ", "ビ"), ("ヴェ", "ベ"), ("ヴォ", "ボ"), ("ヴュ", "ビュ"), ("ヴ", "ブ"))
_KANA_FOLD: Final = str.maketrans(
    dict(
        zip(
            "ァィゥェォッャュョヮヵヶヂヅヲヰヱヷヸヹヺ",
            ["ア", "イ", "ウ", "エ", "オ", "ツ", "ヤ", "ユ", "ヨ", "ワ", "カ", "ケ", "ジ", "ズ", "オ", "イ", "エ",
             "バ", "ビ", "ベ", "ボ"],
            strict=True,
        )
    )
)  # fmt: skip
# What is typed for 長音 after a kana: ー itself and the dashes, hyphens and waves.
_DASHES: Final = frozenset("ー-‐‑‒–—―−─━~～〜")


def _vowels() -> dict[str, str]:
    rows = {
        "ア": "アカガサザタダナハバパマヤラワ",
        "イ": "イキギシジチニヒビピミリ",
        "ウ": "ウクグスズツヌフブプムユル",
        "エ": "エケゲセゼテデネヘベペメレ",
        "オ": "オコゴソゾトドノホボポモヨロ",
    }
    return {kana: vowel for vowel, chars in rows.items() for kana in chars}


_VOWEL: Final = _vowels()
# The kana ー stands for after each vowel: e-row and o-row long vowels are written イ and ウ.
_LENGTHENER: Final = {"ア": "ア", "イ": "イ", "ウ": "ウ", "エ": "イ", "オ": "ウ"}
_VOICED: Final = {c: unicodedata.normalize("NFC", c + "\u3099") for c in "カキクケコサシスセソタチツテトハヒフヘホウ"}


def _is_kana(char: str) -> bool:
    return "\u30a1" <= char <= "\u30fa"


def _iteration_marks(text: str) -> str:
    """ヽ repeats the kana before it, ヾ repeats it voiced (サヽキ → ササキ)."""
    if "ヽ" not in text and "ヾ" not in text:
        return text
    out: list[str] = []
    for char in text:
        if char in "ヽヾ" and out and _is_kana(out[-1]):
            base = out[-1]
            out.append(_VOICED.get(base, base) if char == "ヾ" else base)
        elif char not in "ヽヾ":
            out.append(char)
    return "".join(out)


def _long_vowels(text: str) -> str:
    out: list[str] = []
    for char in text:
        prev = out[-1] if out else ""
        vowel = _VOWEL.get(prev)
        if char in _DASHES:
            if vowel is not None:
                out.append(_LENGTHENER[vowel])
            # a dash after anything else (or at the start) is dropped
        elif char == "オ" and vowel == "オ":
            out.append("ウ")  # オオノ and オウノ, トオル and トウル: one key
        else:
            out.append(char)
    return "".join(out)


def _kana_form(text: str) -> str:
    """Width, script and voicing marks settled: NFKC katakana, no spaces."""
    text = _nfkc(text).translate(_HIRAGANA_TO_KATAKANA)
    # A voicing mark left over (on a kana that takes none) carries no meaning here.
    text = text.replace("\u3099", "").replace("\u309a", "")
    return _SPACES_AND_DOTS.sub("", text)


def kana_key(text: str) -> str:
    """The search key of a kana name (see the module docstring for every fold)."""
    text = _iteration_marks(_kana_form(text))
    for vu, b in _VU:
        text = text.replace(vu, b)
    return _long_vowels(text.translate(_KANA_FOLD)).upper()


# --- kanji ------------------------------------------------------------------------------


@cache
def _overrides() -> dict[int, str]:
    table: dict[int, str] = {}
    with OVERRIDES_FILE.open(encoding="utf-8") as f:
        rows = csv.reader(line for line in f if line.strip() and not line.startswith("#"))
        header = next(rows)
        if header != ["variant", "key"]:
            raise ValueError(f"{OVERRIDES_FILE.name}: 見出し行は variant,key です。")
        for line, row in enumerate(rows, start=2):
            if len(row) != 2 or len(row[0]) != 1 or len(row[1]) != 1:
                raise ValueError(f"{OVERRIDES_FILE.name} {line}行目: 1文字,1文字 で書いてください。")
            table[ord(row[0])] = row[1]
    return table


def _fold_kanji(text: str) -> str:
    return str(joyokanji.convert(text, variants=True)).translate(_overrides())


def name_key(text: str) -> str:
    """The search key of a name in kanji (see the module docstring)."""
    text = _fold_kanji(_nfkc(text)).translate(_HIRAGANA_TO_KATAKANA)
    # NFKC again: a mark that followed a space now follows its kana
    return unicodedata.normalize("NFKC", _SPACES_AND_DOTS.sub("", text).upper())


# --- addresses --------------------------------------------------------------------------

_PREFECTURE: Final = re.compile(r"^(?:東京都|北海道|(?:京都|大阪)府|[^\s\d都道府県]{2,3}県)")
_CITY: Final = re.compile(r"^(?:[^\s\d]+?郡)?[^\s\d]+?[市区町村]")
_KANJI_NUMERAL: Final = "〇一二三四五六七八九十百千"
# Numerals before 丁目/番地/地割 (or in N番M号) are the block; before 番 or 号 only after
# 丁目 or another number of the block (麻布十番, 三番町 are town names).
_KANJI_NUMBER: Final = re.compile(f"[{_KANJI_NUMERAL}]+(?=丁目|番地|地割|番[{_KANJI_NUMERAL}\\d]+号)")
_KANJI_NUMBER_AFTER: Final = re.compile(
    f"(?:(?<=丁目)|(?<=[\\d番号の\\-]))[{_KANJI_NUMERAL}]+(?=番(?![町丁])|号(?![室棟館])|$|\\s)"
)
_AZA: Final = re.compile(r"大字|小字|(?<=[\u4e00-\u9fff々])(?<![十文赤])字(?=[\u4e00-\u9fff々])|^字")
_DASH_CLASS: Final = "\\-‐‑‒–—―−─━ーｰ"
# Between two numbers: 丁目, 番地(の), 番, 号, の and every dash are one separator.
_BETWEEN: Final = re.compile(f"(?<=\\d)\\s*(?:丁目|丁|番地の?|番の?|号の?|の|[{_DASH_CLASS}])\\s*(?=\\d)")
# After the block's last number: the unit word is dropped (2-8-1号 → 2-8-1).
_TRAILING_UNIT: Final = re.compile(r"(?<=\d)(?:丁目|番地|番(?![町丁])|号(?![室棟館]))")
_BLOCK: Final = re.compile(r"\d+(?:-\d+)*")


def _kanji_number(match: re.Match[str]) -> str:
    return str(kanjize.kanji2number(match.group(0)))  # 二十三 and 二三 alike


def _address_form(text: str) -> str:
    """NFKC, 異体字 folded, prefecture and 大字/字 dropped, numbers in digits, the block
    joined by hyphens; spaces kept (they may separate the building)."""
    text = _fold_kanji(_nfkc(text).strip())
    text = _PREFECTURE.sub("", text, count=1).lstrip()
    text = _AZA.sub("", text)
    text = _KANJI_NUMBER.sub(_kanji_number, text)
    text = _KANJI_NUMBER_AFTER.sub(_kanji_number, text)
    prev = None
    while prev != text:  # 2丁目8番1号: each separator sits between two numbers
        prev, text = text, _BETWEEN.sub("-", text)
    return _TRAILING_UNIT.sub("", text)


@dataclass(frozen=True)
class AddressParts:
    """An address as keys: ``place`` is town + block (市区町村 included, prefecture not),
    ``town`` the same without the 市区町村, ``building`` the building and room."""

    place: str
    town: str
    building: str


def _nospace(text: str) -> str:
    return unicodedata.normalize("NFKC", _SPACES_AND_DOTS.sub("", text).upper())


def address_parts(text: str) -> AddressParts:
    """The keys of an address, town+block apart from building+room.

    The block is the first run of numbers joined by hyphens; what follows it is the
    building (新宿パークタワー 501号室). An address without a block number is all place.
    """
    form = _address_form(text)
    match = _BLOCK.search(form)
    if match is None:
        place, building = form, ""
    else:
        place, building = form[: match.end()], form[match.end() :]
        building = building.lstrip(" -/")
    place = _nospace(place)
    town = _CITY.sub("", place, count=1)
    return AddressParts(place=place, town=town or place, building=_nospace(building))


def address_key(text: str) -> str:
    """The key of a whole address (town, block, then building and room)."""
    parts = address_parts(text)
    # "/" keeps a building that starts with a number apart from the block (idempotence).
    return f"{parts.place}/{parts.building}" if parts.building else parts.place


def town_key(text: str) -> str:
    """The key of the town and block without the 市区町村 (西新宿2-8-1)."""
    return address_parts(text).town


# --- numbers ----------------------------------------------------------------------------

_NUMBER_SEPARATORS: Final = re.compile(f"[\\s{_DASH_CLASS}]+")


def digits(text: str) -> str:
    """A number as typed (全角 accepted, spaces and hyphens ignored) in ASCII digits.

    ValueError when anything else is left: the caller names the field to staff.
    """
    out = _NUMBER_SEPARATORS.sub("", unicodedata.normalize("NFKC", text))
    if not (out.isascii() and out.isdigit()):
        raise ValueError("数字以外の文字が含まれています。")
    return out
