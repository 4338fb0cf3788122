"""Loaders for the small tables in `renkei/dummy/data` (each file names its source).

Lines starting with ``#`` are the files' own documentation and are skipped. Every
loader is cached: the tables are read once per process.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

__all__ = [
    "AGE_BANDS",
    "DATA_DIR",
    "MAX_AGE",
    "AgeBand",
    "ForeignName",
    "GivenName",
    "Nationality",
    "TownRow",
    "age_structure",
    "foreign_names",
    "given_names",
    "nationalities",
    "towns",
]

DATA_DIR: Final = Path(__file__).parent / "data"
MAX_AGE: Final = 104  # the open band 95+ is spread over 95–104

AGE_BANDS: Final = tuple(f"{a}-{a + 4}" for a in range(0, 95, 5)) + ("95+",)


def _rows(name: str) -> Iterator[dict[str, str]]:
    with (DATA_DIR / name).open(encoding="utf-8", newline="") as f:
        yield from csv.DictReader(line for line in f if not line.startswith("#"))


@dataclass(frozen=True, slots=True)
class AgeBand:
    """One 5-year band of the published age structure (persons)."""

    band: str
    low: int  # first age of the band
    high: int  # last age (inclusive; 104 for 95+)
    japanese_male: int
    japanese_female: int
    foreign_male: int
    foreign_female: int

    @property
    def total(self) -> int:
        return self.japanese_male + self.japanese_female + self.foreign_male + self.foreign_female


@cache
def age_structure() -> tuple[AgeBand, ...]:
    """新宿区's age structure by 5-year band, sex and Japanese/foreign (see the file's header)."""
    bands = []
    for row in _rows("shinjuku_age_structure.csv"):
        name = row["band"]
        low = int(name.split("-")[0].rstrip("+"))
        high = MAX_AGE if name.endswith("+") else int(name.split("-")[1])
        bands.append(
            AgeBand(
                name,
                low,
                high,
                int(row["japanese_male"]),
                int(row["japanese_female"]),
                int(row["foreign_male"]),
                int(row["foreign_female"]),
            )
        )
    if tuple(b.band for b in bands) != AGE_BANDS:
        raise ValueError("shinjuku_age_structure.csv: bands must be 0-4 … 90-94, 95+ in order")
    return tuple(bands)


@dataclass(frozen=True, slots=True)
class TownRow:
    """A real 町 of a ward: its 丁目 count (0: none) and postal code(s)."""

    lg_code: str
    town: str
    kana: str
    chome: int
    postal_code: str
    postal_code_by_chome: tuple[tuple[int, str], ...]
    weight: float
    foreign_weight: float

    def postal_code_for(self, chome: int) -> str:
        for number, code in self.postal_code_by_chome:
            if number == chome:
                return code
        return self.postal_code


@cache
def towns() -> tuple[TownRow, ...]:
    out = []
    for row in _rows("towns.csv"):
        by_chome = tuple(
            (int(k), v)
            for k, v in (part.split(":") for part in row["postal_code_by_chome"].split(";") if part)
        )
        out.append(
            TownRow(
                row["lg_code"],
                row["town"],
                row["kana"],
                int(row["chome"]),
                row["postal_code"],
                by_chome,
                float(row["weight"]),
                float(row["foreign_weight"]),
            )
        )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Nationality:
    code: str
    name: str
    share: dict[str, float]  # by lg_code
    kanji_names: bool
    pool: str  # which name pool of foreign_names.csv


_WARD_COLUMNS: Final = {"131041": "shinjuku", "131148": "nakano"}


@cache
def nationalities() -> tuple[Nationality, ...]:
    return tuple(
        Nationality(
            row["code"],
            row["name"],
            {lg: float(row[col]) for lg, col in _WARD_COLUMNS.items()},
            row["kanji_names"] == "1",
            row["pool"],
        )
        for row in _rows("nationalities.csv")
    )


@dataclass(frozen=True, slots=True)
class ForeignName:
    pool: str
    part: str  # family | male | female
    alpha: str
    kanji: str  # "" when the register keeps the roman letters only
    kana: str
    weight: float


@cache
def foreign_names() -> tuple[ForeignName, ...]:
    return tuple(
        ForeignName(r["pool"], r["part"], r["alpha"], r["kanji"], r["kana"], float(r["weight"]))
        for r in _rows("foreign_names.csv")
    )


@dataclass(frozen=True, slots=True)
class GivenName:
    first_year: int
    last_year: int
    sex: str
    kanji: str
    kana: str


@cache
def given_names() -> tuple[GivenName, ...]:
    out = []
    for r in _rows("given_names.csv"):
        first, last = (int(x) for x in r["period"].split("-"))
        out.append(GivenName(first, last, r["sex"], r["kanji"], r["kana"]))
    return tuple(out)
