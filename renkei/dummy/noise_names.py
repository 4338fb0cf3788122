"""Name-part noise: the family and given name in the wrong fields, merged, split at the
wrong place, or padded with spaces."""

from __future__ import annotations

import random
from typing import Final

__all__ = ["MERGE_SEPARATORS", "insert_space", "merge_parts", "split_wrongly", "swap_parts"]

# What sits between the two parts when a clerk types the whole name into one field.
MERGE_SEPARATORS: Final = ("", " ", "　")


def swap_parts(family: str, given: str) -> tuple[str, str]:
    """Family name in the given-name field and the reverse."""
    return given, family


def merge_parts(family: str, given: str, separator: str) -> tuple[str, str]:
    """The whole name in the family-name field, the given-name field empty."""
    if not given:
        return family, given
    return family + separator + given, ""


def split_wrongly(rng: random.Random, family: str, given: str) -> tuple[str, str]:
    """The full name cut at another place: 佐々木 | 花子 → 佐々 | 木花子."""
    full = family + given
    cuts = [k for k in range(1, len(full)) if k != len(family)]
    if not cuts:
        return family, given
    k = rng.choice(cuts)
    return full[:k], full[k:]


def insert_space(rng: random.Random, text: str) -> str:
    """A half- or full-width space at the end, the start or inside the field."""
    if not text:
        return text
    space = rng.choice((" ", "　"))
    where = rng.random()
    if where < 0.45 or len(text) < 2:
        return text + space
    if where < 0.55:
        return space + text
    at = rng.randrange(1, len(text))
    return text[:at] + space + text[at:]
