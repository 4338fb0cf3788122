"""Name pools: Japanese family and given names (kanji and kana that agree) and foreign names.

- Family names: the 1,999 surnames of japanese-personal-name-dataset, weighted by their
  counts (the dataset's own frequency estimates), with the dataset's reading as kana.
  A share of them is registered with an old or variant character (`VARIANTS`: 髙, 﨑, 邉,
  邊, 齊, 澤, 濱, 德, … and, rarely, 𠮷, which CP932 cannot hold); names are stored
  exactly as registered.
- Given names: by birth period (`data/given_names.csv`: names that top 明治安田生命's
  yearly survey), Faker ``ja_JP``'s (kanji, kana) pairs, and a long tail of readings from
  japanese-personal-name-dataset whose kanji are all common name kanji (so that the tail
  reads like real names rather than rare combinations).
- Foreign names: `data/foreign_names.csv` by nationality pool; 中国・台湾・韓国 keep a kanji
  name beside the roman letters; older Korean residents often use a Japanese 通称.

Pools are built once (`name_pools()`); drawing is a bisect on cumulative weights.
"""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import accumulate
from types import MappingProxyType
from typing import Final

import jaconv

from renkei.dummy import tables

__all__ = [
    "ALIASES",
    "VARIANTS",
    "ForeignFullName",
    "NamePools",
    "Pool",
    "name_pools",
]

# (plain character, variant, probability that a surname containing it is registered with
# the variant). Two variants of one character are tried in order (邉 then 邊).
VARIANTS: Final[tuple[tuple[str, str, float], ...]] = (
    ("高", "髙", 0.10),
    ("崎", "﨑", 0.10),
    ("辺", "邉", 0.06),
    ("辺", "邊", 0.03),
    ("斉", "齊", 0.05),
    ("沢", "澤", 0.06),
    ("浜", "濱", 0.05),
    ("徳", "德", 0.05),
    ("桜", "櫻", 0.05),
    ("国", "國", 0.04),
    ("広", "廣", 0.04),
    ("島", "嶋", 0.03),
    ("富", "冨", 0.04),
    ("曽", "曾", 0.04),
    ("竜", "龍", 0.05),
    ("吉", "𠮷", 0.004),  # U+20BB7: outside CP932 on purpose (the classic 外字)
)

# 通称 (registered alias family names) used by Korean residents, by family name.
ALIASES: Final[Mapping[str, tuple[tuple[str, str], ...]]] = MappingProxyType(
    {
        "金": (("金本", "カネモト"), ("金田", "カネダ"), ("金山", "カナヤマ")),
        "李": (("岩本", "イワモト"), ("宮本", "ミヤモト")),
        "朴": (("新井", "アライ"), ("木下", "キノシタ")),
        "崔": (("大山", "オオヤマ"), ("山本", "ヤマモト")),
        "鄭": (("松田", "マツダ"), ("東", "アズマ")),
        "姜": (("大山", "オオヤマ"),),
        "張": (("張本", "ハリモト"),),
        "林": (("林", "ハヤシ"),),
        "安": (("安田", "ヤスダ"), ("安本", "ヤスモト")),
        "高": (("高山", "タカヤマ"),),
        "趙": (("松山", "マツヤマ"),),
        "柳": (("柳川", "ヤナガワ"),),
    }
)

# Given-name tail share by birth period: newer names are far more varied.
_TAIL_SHARE_MODERN: Final = 0.35
_TAIL_SHARE_OLDER: Final = 0.12
_MODERN_FROM: Final = 1986
_FAKER_PERIOD: Final = (1946, 1985)  # Faker's pairs read like names of these years


@dataclass(frozen=True, slots=True)
class Pool:
    """Items with cumulative weights, drawn by bisect."""

    items: tuple[tuple[str, str], ...]
    cum: tuple[float, ...]

    @classmethod
    def of(cls, weighted: Sequence[tuple[tuple[str, str], float]]) -> Pool:
        if not weighted:
            raise ValueError("empty name pool")
        return cls(tuple(i for i, _ in weighted), tuple(accumulate(w for _, w in weighted)))

    def draw(self, rng: random.Random) -> tuple[str, str]:
        return self.items[bisect(self.cum, rng.random() * self.cum[-1])]


@dataclass(frozen=True, slots=True)
class ForeignFullName:
    family_name: str
    given_name: str
    family_kana: str
    given_kana: str
    alpha_name: str


def _kata(hiragana: str) -> str:
    return str(jaconv.hira2kata(hiragana))


class NamePools:
    """All name pools, built once from the tables and the installed name data."""

    def __init__(self) -> None:
        from faker.providers.person.ja_JP import Provider as FakerJa
        from japanese_personal_name_dataset import load_dataset

        men, women, last = load_dataset("opti", include_last_names=True)
        self.family = Pool.of(
            [((kanji, _kata(e["reading"])), float(e["count"])) for kanji, e in last.items()]
        )
        curated = tables.given_names()
        faker_pairs = {
            "1": [(k, kana) for k, kana, _ in FakerJa.first_name_male_pairs],
            "2": [(k, kana) for k, kana, _ in FakerJa.first_name_female_pairs],
        }
        # Characters of the curated and Faker names: the "common name kanji" of the tail.
        common = {c for g in curated for c in g.kanji} | {
            c for pairs in faker_pairs.values() for k, _ in pairs for c in k
        }
        tails = {
            "1": self._tail(men, common),
            "2": self._tail(women, common),
        }
        periods = sorted({(g.first_year, g.last_year) for g in curated})
        self._period_starts = [first for first, _ in periods]
        self.given: dict[tuple[int, str], Pool] = {}
        for first, last_year in periods:
            for sex in ("1", "2"):
                names = [g for g in curated if g.first_year == first and g.sex == sex]
                # Rank weights: the list is ordered by frequency.
                weighted = [((g.kanji, g.kana), 1.0 / (rank + 4)) for rank, g in enumerate(names)]
                head_mass = sum(w for _, w in weighted)
                if _FAKER_PERIOD[0] <= first and last_year <= _FAKER_PERIOD[1]:
                    pairs = faker_pairs[sex]
                    weighted += [(pair, 0.15 * head_mass / len(pairs)) for pair in pairs]
                    head_mass *= 1.15
                share = _TAIL_SHARE_MODERN if first >= _MODERN_FROM else _TAIL_SHARE_OLDER
                tail = tails[sex]
                tail_weight = head_mass * share / (1 - share) / len(tail)
                weighted += [(pair, tail_weight) for pair in tail]
                self.given[(first, sex)] = Pool.of(weighted)
        self._foreign: dict[tuple[str, str], tuple[tuple[tables.ForeignName, ...], tuple[float, ...]]] = {}
        by_key: dict[tuple[str, str], list[tables.ForeignName]] = {}
        for name in tables.foreign_names():
            by_key.setdefault((name.pool, name.part), []).append(name)
        for key, names_ in by_key.items():
            self._foreign[key] = (tuple(names_), tuple(accumulate(n.weight for n in names_)))
        self._variant_chars = {plain for plain, _, _ in VARIANTS}

    @staticmethod
    def _tail(entries: Mapping[str, object], common: set[str]) -> list[tuple[str, str]]:
        out = []
        for reading, entry in sorted(entries.items()):
            kanji_list = entry["kanji"] if isinstance(entry, dict) else []
            for kanji in kanji_list:
                if len(kanji) <= 3 and all(c in common for c in kanji):
                    out.append((kanji, _kata(reading)))
        return out

    # --- Japanese ---------------------------------------------------------------------

    def japanese_family(self, rng: random.Random) -> tuple[str, str]:
        kanji, kana = self.family.draw(rng)
        if self._variant_chars.isdisjoint(kanji):
            return kanji, kana
        r = rng.random()
        acc = 0.0
        last_plain = ""
        for plain, variant, p in VARIANTS:
            if plain not in kanji:
                continue
            if plain != last_plain:
                acc, last_plain = 0.0, plain
                r = rng.random()
            acc += p
            if r < acc:
                return kanji.replace(plain, variant, 1), kana
        return kanji, kana

    def japanese_given(self, rng: random.Random, sex: str, birth_year: int) -> tuple[str, str]:
        i = bisect(self._period_starts, birth_year) - 1
        return self.given[(self._period_starts[max(i, 0)], sex)].draw(rng)

    # --- foreign ----------------------------------------------------------------------

    def _foreign_draw(self, rng: random.Random, pool: str, part: str) -> tables.ForeignName:
        names, cum = self._foreign[(pool, part)]
        return names[bisect(cum, rng.random() * cum[-1])]

    def foreign_family(self, rng: random.Random, pool: str) -> tables.ForeignName:
        return self._foreign_draw(rng, pool, "family")

    def foreign_full(
        self, rng: random.Random, pool: str, sex: str, family: tables.ForeignName, kanji: bool
    ) -> ForeignFullName:
        given = self._foreign_draw(rng, pool, "male" if sex == "1" else "female")
        alpha = f"{family.alpha} {given.alpha}"
        if kanji and family.kanji and given.kanji:
            return ForeignFullName(family.kanji, given.kanji, family.kana, given.kana, alpha)
        return ForeignFullName(family.alpha, given.alpha, family.kana, given.kana, alpha)


@cache
def name_pools() -> NamePools:
    return NamePools()
