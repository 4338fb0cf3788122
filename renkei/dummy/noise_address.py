"""Address noise: partial, differently written, shortened, mistyped addresses.

Addresses of the form ``[都道府県]市区町村 町名 [N丁目] 8番1号 [建物]`` (as the generators
write them; ``8番地1`` and ``8番地の1`` are read too) are parsed into parts; each function
returns the input unchanged when the address does not have the part it needs. The
outdated address of a mover is not a text transformation and lives in `renkei.dummy.noise`.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass
from typing import Final

import jaconv
import kanjize

__all__ = [
    "AddressParts",
    "drop_building",
    "drop_prefecture",
    "format_address",
    "parse_address",
    "partial_address",
    "rewrite_notation",
    "typo_banchi",
]

_ADDRESS: Final = re.compile(
    r"^(?P<pref>東京都|北海道|(?:京都|大阪)府|[^\s都道府県]{2,3}県)?"
    r"(?P<city>[^\s]+?[市区町村])"
    r"(?P<town>[^\s0-9０-９]*?)"
    r"(?:(?P<chome>[一二三四五六七八九十]+)丁目)?"
    r"(?P<ban>[0-9０-９]+)(?:番地?の?(?P<go>[0-9０-９]+)号?|番地)"
    r"(?:[ 　](?P<building>.+))?$"
)
_PREFECTURE: Final = re.compile(r"^(?:東京都|北海道|(?:京都|大阪)府|[^\s都道府県]{2,3}県)")

# How the 丁目・番・号 block is written; "canonical" is the generators' own form.
NOTATIONS: Final = ("canonical", "hyphen", "fullwidth", "arabic_chome", "banchi", "kanji")


@dataclass(frozen=True, slots=True)
class AddressParts:
    prefecture: str
    city: str
    town: str
    chome: int | None
    ban: str
    go: str  # "" for an address that ends at the 番地
    building: str


def parse_address(text: str) -> AddressParts | None:
    """The parts of an address in the generators' form, or None."""
    m = _ADDRESS.match(text)
    if m is None:
        return None
    chome = m.group("chome")
    return AddressParts(
        prefecture=m.group("pref") or "",
        city=m.group("city"),
        town=m.group("town"),
        chome=int(kanjize.kanji2number(chome)) if chome else None,
        ban=m.group("ban"),
        go=m.group("go") or "",
        building=m.group("building") or "",
    )


def _kanji(n: int) -> str:
    return str(kanjize.number2kanji(n))


def _block(parts: AddressParts, notation: str) -> str:
    """The 丁目・番・号 block of `parts` in one notation."""
    chome, ban, go = parts.chome, parts.ban, parts.go
    numbers = [str(n) for n in (chome, ban, go) if n]
    if notation == "hyphen":
        return "-".join(numbers)
    if notation == "fullwidth":
        # U+FF0D, the hyphen CP932 round-trips (U+2212 would come back as U+FF0D).
        head = f"{numbers.pop(0)}丁目" if chome else ""
        return str(jaconv.h2z(head + "－".join(numbers), kana=False, ascii=False, digit=True))
    if chome is None:
        head = ""
    else:
        head = f"{chome}丁目" if notation == "arabic_chome" else f"{_kanji(chome)}丁目"
    if notation == "kanji":
        ban, go = _kanji(int(ban)), _kanji(int(go)) if go else ""
    if not go:
        return f"{head}{ban}番地"
    if notation == "banchi":
        return f"{head}{ban}番地{'' if chome else 'の'}{go}"
    return f"{head}{ban}番{go}号"


def format_address(parts: AddressParts, notation: str = "canonical") -> str:
    """`parts` written back, the block in `notation`, the building after a space."""
    text = parts.prefecture + parts.city + parts.town + _block(parts, notation)
    return f"{text} {parts.building}" if parts.building else text


def rewrite_notation(rng: random.Random, text: str) -> str:
    """The same address written another way: 二丁目8番1号 → 2-8-1, ２丁目８－１ …"""
    parts = parse_address(text)
    if parts is None:
        return text
    options = [n for n in NOTATIONS if format_address(parts, n) != text]
    return format_address(parts, rng.choice(options)) if options else text


def partial_address(rng: random.Random, text: str) -> str:
    """The address cut short: down to the 丁目 (or the 番), without 号 and building."""
    m = _ADDRESS.match(text)
    if m is None:
        return text
    cuts = [m.end("chome") + 2] if m.group("chome") else []  # after 丁目
    if m.group("go"):
        cuts.append(m.end("ban") + 1)  # after 番
    return text[: rng.choice(cuts)] if cuts else text


def drop_building(rng: random.Random, text: str) -> str:
    """The building name and room number left out."""
    del rng
    m = _ADDRESS.match(text)
    if m is None or m.group("building") is None:
        return text
    return text[: m.start("building") - 1]


def drop_prefecture(rng: random.Random, text: str) -> str:
    """東京都 (or any prefecture) left off the front."""
    del rng
    return _PREFECTURE.sub("", text, count=1)


# Digits a typist hits instead: keypad neighbours and look-alikes.
_DIGIT_SLIPS: Final = {
    "0": "89",
    "1": "274",
    "2": "135",
    "3": "268",
    "4": "157",
    "5": "2468",
    "6": "3598",
    "7": "148",
    "8": "5796",
    "9": "86",
}


def typo_banchi(rng: random.Random, text: str) -> str:
    """One digit of the 番 or 号 mistyped (8番1号 → 9番1号), never to a zero number."""
    m = _ADDRESS.match(text)
    if m is None:
        return text
    field = rng.choice(("ban", "go") if m.group("go") else ("ban",))
    start, end = m.span(field)
    number = text[start:end]
    at = rng.randrange(len(number))
    digit = unicodedata.normalize("NFKC", number[at])
    slips = [d for d in _DIGIT_SLIPS[digit] if int(number[:at] + d + number[at + 1 :]) > 0]
    if not slips:
        return text
    return text[: start + at] + rng.choice(slips) + text[start + at + 1 :]
