"""CP932 (Windows-31J) for the files business systems read and write: a strict check and an opt-in
substitution policy.

Strict (the default): a value CP932 cannot carry *faithfully* stops the write with
`Cp932Error`, naming the file, line, record, column and the character (U+XXXX and its
Unicode name). "Faithfully" matters: Python's cp932 codec silently turns 〜 (U+301C)
into ～ (U+FF5E), − (U+2212) into － (U+FF0D), ‖ ¢ £ ¬ likewise, so a value is checked by
encoding *and decoding back*.

Substitution (``--cp932-substitute``), character by character, first rule that gives a
CP932 character:

1. the project table `SUBSTITUTIONS` (𠮷→吉, 〜→～, −→－, —→―, ‖→∥, ¢→￠, £→￡, ¬→￢, …);
2. joyokanji's 異体字 → 新字体 mapping (`convert(ch, variants=True)`);
3. Latin letters with diacritics lose the diacritics (NFD, combining marks dropped:
   NGUYỄN → NGUYEN; Đ → D and a few others by the table);
4. otherwise 〓 (U+3013 GETA MARK, the customary placeholder for a 外字).

Characters CP932 has are never touched (髙, 﨑, 邉, 德 stay: CP932's NEC/IBM extensions
hold them). Every substitution is recorded (`Substitution`), and the writers put them in
a side file, so nothing changes silently.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Final

import joyokanji

from renkei.core.errors import Problem

__all__ = [
    "GETA",
    "SUBSTITUTIONS",
    "Cp932Error",
    "Substitution",
    "describe",
    "first_unfaithful",
    "is_faithful",
    "substitute_char",
    "substitute_text",
]

GETA: Final = "〓"

SUBSTITUTIONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "𠮷": "吉",  # つちよし (U+20BB7)
        "𡈽": "土",
        "𣘺": "橋",
        "〜": "～",  # WAVE DASH → FULLWIDTH TILDE (what CP932 has)
        "−": "－",  # MINUS SIGN → FULLWIDTH HYPHEN-MINUS
        "—": "―",  # EM DASH → HORIZONTAL BAR
        "–": "－",  # EN DASH
        "‖": "∥",
        "¢": "￠",
        "£": "￡",
        "¬": "￢",
        "\u00a0": " ",  # NO-BREAK SPACE
        "ゔ": "ヴ",  # CP932 has the katakana only
        "ゕ": "ヵ",
        "ゖ": "ヶ",
        "Đ": "D",  # letters NFD does not decompose
        "đ": "d",
        "Ø": "O",
        "ø": "o",
        "Ł": "L",
        "ł": "l",
        "ß": "ss",
        "Æ": "AE",
        "æ": "ae",
        "Œ": "OE",
        "œ": "oe",
    }
)


def is_faithful(text: str) -> bool:
    """Whether `text` survives CP932 encoding and decoding unchanged."""
    try:
        return text.encode("cp932").decode("cp932") == text
    except UnicodeEncodeError:
        return False


def first_unfaithful(text: str) -> int:
    """Index of the first character CP932 cannot carry faithfully, or -1."""
    if is_faithful(text):
        return -1
    for i, ch in enumerate(text):
        if not _char_ok(ch):
            return i
    return -1  # pragma: no cover - a whole string fails only through one of its characters


@lru_cache(maxsize=4096)
def _char_ok(ch: str) -> bool:
    return is_faithful(ch)


def describe(ch: str) -> str:
    """"U+20BB7 CJK UNIFIED IDEOGRAPH-20BB7" — how errors and the side file name a character."""
    return f"U+{ord(ch):04X} {unicodedata.name(ch, 'UNNAMED')}"


@lru_cache(maxsize=4096)
def substitute_char(ch: str) -> str:
    """The CP932 replacement for one character (itself when CP932 has it)."""
    if _char_ok(ch):
        return ch
    table = SUBSTITUTIONS.get(ch)
    if table is not None and is_faithful(table):
        return table
    converted = str(joyokanji.convert(ch, variants=True))
    if converted != ch and is_faithful(converted):
        return converted
    if unicodedata.name(ch, "").startswith("LATIN"):
        stripped = "".join(c for c in unicodedata.normalize("NFD", ch) if not unicodedata.combining(c))
        if stripped and stripped != ch and is_faithful(stripped):
            return stripped
    return GETA


@dataclass(frozen=True, slots=True)
class Substitution:
    """One character replaced in one field of one record (for the side file)."""

    file: str
    line: int
    record: str
    column: str
    original: str
    replacement: str


def substitute_text(text: str) -> tuple[str, list[tuple[str, str]]]:
    """(`text` with every unfaithful character replaced, [(original, replacement)])."""
    if is_faithful(text):
        return text, []
    out = []
    changes = []
    for ch in text:
        rep = substitute_char(ch)
        if rep != ch:
            changes.append((ch, rep))
        out.append(rep)
    return "".join(out), changes


class Cp932Error(Problem):
    """A value CP932 cannot carry, in strict mode; names where and which character."""

    def __init__(self, file: str, line: int, record: str, column: str, char: str) -> None:
        super().__init__(
            422,
            "cp932_unencodable",
            "CP932で表せない文字があるため、ファイルを書き出せません。",
            f"{file} {line}行目（レコード {record}、項目「{column}」）の文字「{char}」"
            f"（{describe(char)}）はCP932で表せません。置換して書き出すには --cp932-substitute を指定してください。",
            file=file,
            line=line,
            record=record,
            column=column,
            character=f"U+{ord(char):04X}",
        )
