"""Non-resident noise: each noise function, the generator's guarantees, the files."""

from __future__ import annotations

import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import joyokanji
import pytest

from renkei.core.errors import Problem
from renkei.core.text.wareki import WarekiError, parse_date
from renkei.dummy import noise_address as addr
from renkei.dummy import noise_date as dates
from renkei.dummy import noise_foreign as foreign
from renkei.dummy import noise_kana as kana
from renkei.dummy import noise_kanji as kanji
from renkei.dummy import noise_names as names
from renkei.dummy.noise import (
    CLEAN_SHARE,
    KIND_WEIGHTS,
    RECORD_CSV_HEADER,
    NoiseFileError,
    NonResidentRecord,
    TruthRow,
    UnencodableCharacterError,
    make_non_residents,
    noise_shares,
    read_records_csv,
    read_records_jsonl,
    read_truth_csv,
    write_records_csv,
    write_records_jsonl,
    write_truth_csv,
)
from renkei.dummy.noise_kinds import APPLIERS, APPLIES_TO, GROUPS

SEEDS = range(300)
FOREIGN_KINDS = {k for k in KIND_WEIGHTS if k.startswith("foreign_")}
ADDRESS = "東京都新宿区西新宿二丁目8番1号 メゾン西新宿201"


def outcomes(noise: Callable[[random.Random, str], str], text: str) -> set[str]:
    """Every result `noise` gives for `text` over many seeds."""
    return {noise(random.Random(seed), text) for seed in SEEDS}


# --- a tiny synthetic population ------------------------------------------------------------


@dataclass(frozen=True)
class Src:
    key: str
    family_name: str
    given_name: str
    family_kana: str
    given_kana: str
    sex: str
    birth_date: date
    postal_code: str
    address: str
    is_foreign: bool = False
    alpha_name: str | None = None
    previous_address: str | None = None
    previous_postal_code: str | None = None


_FAMILIES = (
    ("髙橋", "タカハシ"),
    ("渡辺", "ワタナベ"),
    ("鈴木", "スズキ"),
    ("服部", "ハットリ"),
    ("大野", "オオノ"),
    ("藤田", "フジタ"),
    ("山﨑", "ヤマサキ"),
    ("斎藤", "サイトウ"),
)
_GIVENS = (
    ("太郎", "タロウ", "1"),
    ("恭子", "キョウコ", "2"),
    ("千鶴", "チヅル", "2"),
    ("薫", "カヲル", "1"),
    ("祐介", "ユウスケ", "1"),
)
_TOWNS = (("西新宿", "1600023"), ("百人町", "1690073"), ("神楽坂", "1620825"))


def _japanese(n: int) -> list[Src]:
    rng = random.Random(n)
    people = []
    for i in range(n):
        family, family_kana = _FAMILIES[i % len(_FAMILIES)]
        given, given_kana, sex = _GIVENS[(i // len(_FAMILIES)) % len(_GIVENS)]
        town, postal = _TOWNS[i % len(_TOWNS)]
        building = f" コーポ{town}{rng.randint(1, 9)}0{rng.randint(1, 9)}" if i % 2 else ""
        address = f"東京都新宿区{town}{'一二三'[i % 3]}丁目{rng.randint(1, 30)}番{rng.randint(1, 20)}号{building}"
        mover = i % 7 == 0
        people.append(
            Src(
                key=f"J{i:05d}",
                family_name=family,
                given_name=given,
                family_kana=family_kana,
                given_kana=given_kana,
                sex=sex,
                birth_date=date(1940, 1, 1) + (date(2020, 1, 1) - date(1940, 1, 1)) * rng.random(),
                postal_code=postal,
                address=address,
                previous_address=f"東京都中野区本町三丁目{i % 30 + 1}番2号" if mover else None,
                previous_postal_code="1640012" if mover else None,
            )
        )
    return people


FOREIGNERS = (
    Src(
        "F001",
        "NGUYEN",
        "VAN AN",
        "グエン",
        "ヴァン アン",
        "1",
        date(1996, 4, 2),
        "1690073",
        "東京都新宿区百人町二丁目3番4号 コーポ百人町101",
        True,
        "NGUYEN VAN AN",
    ),
    Src(
        "F002",
        "金",
        "民洙",
        "キム",
        "ミンス",
        "1",
        date(1989, 1, 5),
        "1690072",
        "東京都新宿区大久保一丁目12番3号",
        True,
        "KIM MINSU",
    ),
    Src(
        "F003",
        "SANTOS",
        "MARIA CLARA",
        "サントス",
        "マリア クララ",
        "2",
        date(1985, 9, 30),
        "1600022",
        "東京都新宿区新宿六丁目7番1号 ヴィラ新宿502",
        True,
        "SANTOS MARIA CLARA",
    ),
    Src(
        "F004",
        "王",
        "偉",
        "ワン",
        "ウェイ",
        "1",
        date(2019, 3, 10),
        "1690075",
        "東京都新宿区高田馬場三丁目4番5号",
        True,
        "WANG WEI",
    ),
)


@pytest.fixture(scope="module")
def sources() -> list[Src]:
    return _japanese(300) + list(FOREIGNERS)


@pytest.fixture(scope="module")
def generated(sources: list[Src]) -> tuple[list[NonResidentRecord], list[TruthRow]]:
    return make_non_residents(random.Random(42), sources, 300, ["tax", "nhi", "kotei"])


@pytest.fixture(scope="module")
def rich() -> tuple[list[Src], list[NonResidentRecord], list[TruthRow]]:
    """Many records of few people, a quarter of them foreigners: every kind shows up."""
    people = _japanese(60) + [replace(f, key=f"{f.key}-{i}") for i in range(5) for f in FOREIGNERS]
    records, truth = make_non_residents(random.Random(7), people, 4000, ["tax", "nhi"])
    return people, records, truth


# --- kana -------------------------------------------------------------------------------


def test_swap_vu_both_directions() -> None:
    assert outcomes(kana.swap_vu, "ヴァン") == {"バン"}
    assert outcomes(kana.swap_vu, "ヴィクトル") == {"ビクトル"}
    assert outcomes(kana.swap_vu, "ベトナム") == {"ヴェトナム"}
    assert outcomes(kana.swap_vu, "ヤマダ") == {"ヤマダ"}


def test_long_vowel_written_three_ways() -> None:
    assert outcomes(kana.vary_long_vowel, "オオノ") == {"オーノ", "オノ"}
    assert outcomes(kana.vary_long_vowel, "オーノ") == {"オウノ", "オオノ", "オノ"}
    assert outcomes(kana.vary_long_vowel, "サトウ") == {"サトー", "サト"}
    assert outcomes(kana.vary_long_vowel, "ケイコ") == {"ケーコ", "ケコ"}
    assert outcomes(kana.vary_long_vowel, "ヤマダ") == {"ヤマダ"}


def test_small_kana_enlarged() -> None:
    assert outcomes(kana.enlarge_small_kana, "キャッツ") == {"キヤッツ", "キャツツ"}
    assert outcomes(kana.enlarge_small_kana, "ハナコ") == {"ハナコ"}


def test_width_and_script() -> None:
    rng = random.Random(0)
    assert kana.to_halfwidth(rng, "ヤマダ　タロウ") == "ﾔﾏﾀﾞ　ﾀﾛｳ"
    assert kana.to_hiragana(rng, "ヤマダ") == "やまだ"


def test_ji_zu_and_wo() -> None:
    assert outcomes(kana.swap_ji_zu, "チヅル") == {"チズル"}
    assert outcomes(kana.swap_ji_zu, "フジタ") == {"フヂタ"}
    assert outcomes(kana.swap_wo, "カヲル") == {"カオル"}
    assert outcomes(kana.swap_wo, "カオル") == {"カヲル"}
    assert outcomes(kana.swap_wo, "ヤマダ") == {"ヤマダ"}


# --- kanji and typos --------------------------------------------------------------------


def test_kanji_variant_both_directions() -> None:
    assert outcomes(kanji.swap_kanji_variant, "髙橋") == {"高橋"}
    assert outcomes(kanji.swap_kanji_variant, "高橋") == {"髙橋"}
    assert outcomes(kanji.swap_kanji_variant, "渡辺") == {"渡邊", "渡邉"}
    assert outcomes(kanji.swap_kanji_variant, "渡邉") == {"渡辺"}  # joyokanji misses 邉
    assert outcomes(kanji.swap_kanji_variant, "山﨑") == {"山崎"}
    assert outcomes(kanji.swap_kanji_variant, "齋藤") == {"斎藤"}
    assert outcomes(kanji.swap_kanji_variant, "浜田") == {"濱田"}
    assert outcomes(kanji.swap_kanji_variant, "山田") == {"山田"}


def test_variant_table_agrees_with_joyokanji() -> None:
    for new, olds in kanji.NEW_TO_OLD.items():
        assert kanji.new_form(new) == new
        for old in olds:
            assert kanji.new_form(old) == new
            assert joyokanji.convert(old, variants=True) in {old, new}, old  # no contradiction


def test_typo_similar() -> None:
    assert outcomes(kanji.typo_similar, "太郎") == {"大郎", "犬郎", "太朗"}
    assert outcomes(kanji.typo_similar, "一") == {"ー"}
    for char, alternatives in kanji.SIMILAR.items():
        assert char not in alternatives
        assert all(char in kanji.SIMILAR[alt] for alt in alternatives)


def test_drop_and_double() -> None:
    assert outcomes(kanji.drop_char, "ヤマダ") == {"マダ", "ヤダ", "ヤマ"}
    assert outcomes(kanji.drop_char, "林") == {"林"}
    assert outcomes(kanji.double_char, "佐藤") == {"佐佐藤", "佐藤藤"}


# --- name parts -------------------------------------------------------------------------


def test_name_parts() -> None:
    assert names.swap_parts("佐藤", "花子") == ("花子", "佐藤")
    assert names.merge_parts("佐藤", "花子", "　") == ("佐藤　花子", "")
    assert names.merge_parts("佐藤花子", "", " ") == ("佐藤花子", "")
    splits = {names.split_wrongly(random.Random(s), "佐々木", "花子") for s in SEEDS}
    assert splits == {("佐", "々木花子"), ("佐々", "木花子"), ("佐々木花", "子")}
    assert names.split_wrongly(random.Random(0), "林", "一") == ("林", "一")


def test_insert_space() -> None:
    results = outcomes(names.insert_space, "ヤマダ")
    assert len(results) > 4
    for result in results:
        assert sum(c in " 　" for c in result) == 1
        assert result.replace(" ", "").replace("　", "") == "ヤマダ"
    assert names.insert_space(random.Random(0), "") == ""


# --- addresses --------------------------------------------------------------------------


def test_parse_address() -> None:
    parts = addr.parse_address(ADDRESS)
    assert parts == addr.AddressParts("東京都", "新宿区", "西新宿", 2, "8", "1", "メゾン西新宿201")
    assert addr.format_address(parts) == ADDRESS
    other = addr.parse_address("大阪府大阪市北区梅田123番地の4")
    assert other is not None and (other.chome, other.ban, other.go) == (None, "123", "4")
    assert addr.parse_address("住所不明") is None


def test_address_ending_at_banchi() -> None:
    text = "北海道札幌市中央区北一条西二丁目1番地"
    parts = addr.parse_address(text)
    assert parts is not None and (parts.chome, parts.ban, parts.go) == (2, "1", "")
    head = "北海道札幌市中央区北一条西"
    assert outcomes(addr.rewrite_notation, text) == {
        head + "2-1",
        head + "２丁目１",
        head + "2丁目1番地",
        head + "二丁目一番地",
    }
    assert outcomes(addr.partial_address, text) == {head + "二丁目"}
    assert outcomes(addr.typo_banchi, text) == {head + f"二丁目{d}番地" for d in "247"}


def test_notation_variants() -> None:
    building = " メゾン西新宿201"
    head = "東京都新宿区西新宿"
    assert outcomes(addr.rewrite_notation, ADDRESS) == {
        head + "2-8-1" + building,
        head + "２丁目８－１" + building,
        head + "2丁目8番1号" + building,
        head + "二丁目8番地1" + building,
        head + "二丁目八番一号" + building,
    }


def test_partial_building_prefecture() -> None:
    assert outcomes(addr.partial_address, ADDRESS) == {
        "東京都新宿区西新宿二丁目",
        "東京都新宿区西新宿二丁目8番",
    }
    assert addr.drop_building(random.Random(0), ADDRESS) == "東京都新宿区西新宿二丁目8番1号"
    assert addr.drop_building(random.Random(0), "東京都新宿区西新宿二丁目8番1号") == (
        "東京都新宿区西新宿二丁目8番1号"
    )
    assert addr.drop_prefecture(random.Random(0), ADDRESS) == ADDRESS.removeprefix("東京都")
    assert addr.drop_prefecture(random.Random(0), "神奈川県横浜市中区1番2号") == "横浜市中区1番2号"
    for noise in (addr.rewrite_notation, addr.partial_address, addr.typo_banchi):
        assert outcomes(noise, "住所不明") == {"住所不明"}


def test_typo_banchi_changes_one_digit() -> None:
    source = addr.parse_address("東京都新宿区四谷一丁目18番1号 コーポ四谷101")
    assert source is not None
    for result in outcomes(addr.typo_banchi, "東京都新宿区四谷一丁目18番1号 コーポ四谷101"):
        parts = addr.parse_address(result)
        assert parts is not None
        assert (parts.chome, parts.building) == (source.chome, source.building)
        changed = [
            (a, b)
            for a, b in zip(parts.ban + parts.go, source.ban + source.go, strict=True)
            if a != b
        ]
        assert len(changed) == 1
        assert int(parts.ban) > 0 and int(parts.go) > 0


# --- birth dates -------------------------------------------------------------------------


def test_styles_read_back() -> None:
    d = date(1980, 3, 2)
    texts = {style: dates.format_birth_date(d, style) for style in dates.DATE_STYLES}
    assert texts == {
        "wareki": "昭和55年3月2日",
        "wareki_short": "S55.3.2",
        "iso": "1980-03-02",
        "slash": "1980/3/2",
    }
    for text in texts.values():
        assert parse_date(text) == d
        assert dates.read_birth_date(text) == d


def _era_outcomes(d: date, style: str = "wareki") -> set[str]:
    return {dates.era_mistake(random.Random(s), d, style) for s in SEEDS}


def test_era_mistakes() -> None:
    assert _era_outcomes(date(1980, 3, 2)) == {
        "平成55年3月2日",
        "大正55年3月2日",
        "昭和56年3月2日",
        "昭和54年3月2日",
    }
    assert "平成元年1月5日" in _era_outcomes(date(1989, 1, 5))  # 昭和64年
    assert "昭和64年3月1日" in _era_outcomes(date(1989, 3, 1))  # 平成元年
    assert "令和元年2月1日" in _era_outcomes(date(2019, 2, 1))  # 平成31年
    with pytest.raises(WarekiError):
        parse_date("平成元年1月5日")  # the register would refuse it; a business file has it
    assert dates.read_birth_date("平成元年1月5日") == date(1989, 1, 5)
    assert dates.read_birth_date("平成55年3月2日") == date(2043, 3, 2)


def test_era_mistake_in_gregorian_moves_the_year() -> None:
    for text in _era_outcomes(date(1980, 3, 2), "iso"):
        read = dates.read_birth_date(text)
        assert read is not None and read.year != 1980 and (read.month, read.day) == (3, 2)
    # 29 February of 1980 exists in no neighbouring reading: the mistake does not apply.
    assert _era_outcomes(date(1980, 2, 29)) == {"昭和55年2月29日"}


def test_day_month_swap() -> None:
    rng = random.Random(0)
    assert dates.swap_day_month(rng, date(1980, 3, 12), "iso") == "1980-12-03"
    assert dates.swap_day_month(rng, date(1980, 3, 12), "wareki") == "昭和55年12月3日"
    assert dates.swap_day_month(rng, date(1980, 3, 13), "iso") == "1980-03-13"
    assert dates.swap_day_month(rng, date(1980, 3, 3), "iso") == "1980-03-03"


def test_read_birth_date_edge_cases() -> None:
    assert dates.read_birth_date("") is None
    assert dates.read_birth_date("不明") is None
    assert dates.read_birth_date("平成31年2月29日") is None
    assert dates.read_birth_date("Ｈ７．３．４") == date(1995, 3, 4)


# --- foreign names ------------------------------------------------------------------------


def test_transliteration() -> None:
    assert outcomes(foreign.transliterate, "NGUYEN VAN AN") == {
        "NGUYỄN VAN AN",
        "NGUEN VAN AN",
        "GUEN VAN AN",
        "NGUYEM VAN AN",
        "NGUYEN VĂN AN",
    }
    assert outcomes(foreign.transliterate, "NGUYỄN") == {"NGUYEN"}
    assert "Nguyễn Van An" in outcomes(foreign.transliterate, "Nguyen Van An")
    assert outcomes(foreign.transliterate, "PHILIP") == {"FILIP"}  # a generic rule
    assert outcomes(foreign.transliterate, "山田") == {"山田"}


def test_kana_variants() -> None:
    assert outcomes(foreign.kana_variant, "グエン") == {"グェン", "ニュエン", "グウェン"}
    assert outcomes(foreign.kana_variant, "ヴァン アン") == {"バン アン", "ワン アン"}
    assert outcomes(foreign.kana_variant, "ヤマダ") == {"ヤマダ"}


def test_case_middle_order() -> None:
    rng = random.Random(0)
    assert foreign.change_case(rng, "NGUYEN VAN AN") == "Nguyen Van An"
    assert foreign.change_case(rng, "Nguyen Van An") == "NGUYEN VAN AN"
    assert foreign.change_case(rng, "王") == "王"
    assert outcomes(foreign.drop_middle_name, "VAN AN") == {"VAN", "AN"}
    assert outcomes(foreign.drop_middle_name, "AN") == {"AN"}
    assert foreign.reorder_western("NGUYEN", "VAN AN") == ("AN", "NGUYEN VAN")
    assert foreign.reorder_western("KIM", "MINSU") == ("MINSU", "KIM")
    assert foreign.is_alphabetic("NGUYỄN VAN AN") and not foreign.is_alphabetic("王 偉")


# --- the generator ------------------------------------------------------------------------


def test_kind_tables_agree() -> None:
    assert set(KIND_WEIGHTS) == set(APPLIERS)
    assert set(APPLIES_TO) <= set(APPLIERS) and set(GROUPS) <= set(APPLIERS)


def test_deterministic_for_a_seed(sources: list[Src]) -> None:
    first = make_non_residents(random.Random(5), sources, 200, ["tax", "nhi"])
    again = make_non_residents(random.Random(5), sources, 200, ["tax", "nhi"])
    other = make_non_residents(random.Random(6), sources, 200, ["tax", "nhi"])
    assert first == again
    assert first != other


def test_counts_and_ids(sources: list[Src]) -> None:
    records, truth = make_non_residents(
        random.Random(1), sources, 50, ["tax"], id_prefix="KT", first_number=101
    )
    assert len(records) == len(truth) == 50
    assert [r.record_id for r in records] == [f"KT{n:07d}" for n in range(101, 151)]
    assert make_non_residents(random.Random(1), sources, 0, ["tax"]) == ([], [])
    with pytest.raises(ValueError):
        make_non_residents(random.Random(1), [], 5, ["tax"])


def test_truth_covers_every_record_once(
    sources: list[Src], generated: tuple[list[NonResidentRecord], list[TruthRow]]
) -> None:
    records, truth = generated
    keys = {s.key for s in sources}
    assert Counter(t.record_id for t in truth) == Counter(r.record_id for r in records)
    assert all(c == 1 for c in Counter(t.record_id for t in truth).values())
    by_id = {r.record_id: r for r in records}
    for row in truth:
        assert row.true_key in keys
        assert by_id[row.record_id].system == row.system


def test_people_recur_across_and_within_systems(
    generated: tuple[list[NonResidentRecord], list[TruthRow]],
) -> None:
    _, truth = generated
    systems_of: dict[str, list[str]] = defaultdict(list)
    for row in truth:
        systems_of[row.true_key].append(row.system)
    assert any(len(set(s)) >= 2 for s in systems_of.values())  # several systems
    assert any(len(s) > len(set(s)) for s in systems_of.values())  # twice in one system
    assert len(systems_of) < len(truth)


def _content(r: NonResidentRecord) -> tuple[object, ...]:
    return (
        r.family_name,
        r.given_name,
        r.family_kana,
        r.given_kana,
        r.birth_date_text,
        r.postal_code,
        r.address,
    )


def test_records_of_one_person_differ(
    rich: tuple[list[Src], list[NonResidentRecord], list[TruthRow]],
) -> None:
    _, records, truth = rich
    contents: dict[str, list[tuple[object, ...]]] = defaultdict(list)
    for record, row in zip(records, truth, strict=True):
        contents[row.true_key].append(_content(record))
    assert max(len(c) for c in contents.values()) > 10
    for key, group in contents.items():
        assert len(set(group)) == len(group), key


def test_clean_share_and_clean_records(
    sources: list[Src], generated: tuple[list[NonResidentRecord], list[TruthRow]]
) -> None:
    records, truth = generated
    by_key = {s.key: s for s in sources}
    clean = [(r, by_key[t.true_key]) for r, t in zip(records, truth, strict=True) if not r.noise]
    assert abs(len(clean) / len(records) - CLEAN_SHARE) < 0.02
    for record, person in clean:
        assert (record.family_name, record.given_name) == (person.family_name, person.given_name)
        assert (record.family_kana, record.given_kana) == (person.family_kana, person.given_kana)
        assert (record.address, record.postal_code) == (person.address, person.postal_code)
        assert record.birth_date == person.birth_date
    shares = noise_shares(records)
    assert shares["clean"] == len(clean) / len(records)


def test_every_kind_is_used_and_only_where_it_fits(
    rich: tuple[list[Src], list[NonResidentRecord], list[TruthRow]],
) -> None:
    people, records, truth = rich
    by_key = {p.key: p for p in people}
    used: Counter[str] = Counter()
    for record, row in zip(records, truth, strict=True):
        person = by_key[row.true_key]
        used.update(record.noise)
        assert len(record.noise) == len(set(record.noise))
        if not person.is_foreign:
            assert not FOREIGN_KINDS & set(record.noise)
        if "addr_outdated" in record.noise:
            assert person.previous_address is not None
            assert record.postal_code in {person.previous_postal_code, None}
            if not any(k.startswith("addr_") for k in record.noise if k != "addr_outdated"):
                assert record.address == person.previous_address
        groups = [GROUPS[k] for k in record.noise if k in GROUPS]
        assert len(groups) == len(set(groups))
    assert set(used) == set(KIND_WEIGHTS), set(KIND_WEIGHTS) - set(used)


def test_birth_date_is_what_the_text_says(
    rich: tuple[list[Src], list[NonResidentRecord], list[TruthRow]],
) -> None:
    _, records, _ = rich
    for record in records:
        assert record.birth_date == dates.read_birth_date(record.birth_date_text)
        assert (record.birth_date is None) == (record.birth_date_text == "")
    assert {r.birth_date_text[:1] for r in records} & {"昭", "S", "1", "2", "平", "H"}


def test_cp932_safe(rich: tuple[list[Src], list[NonResidentRecord], list[TruthRow]]) -> None:
    people, records, _ = rich

    def encodable(r: NonResidentRecord) -> bool:
        text = "".join(str(v) for v in _content(r))
        try:
            return text.encode("cp932").decode("cp932") == text
        except UnicodeEncodeError:
            return False

    assert not all(map(encodable, records))  # NGUYỄN and friends, by default
    safe, _ = make_non_residents(random.Random(7), people, 4000, ["tax", "nhi"], cp932_safe=True)
    assert all(map(encodable, safe))


# --- files ----------------------------------------------------------------------------------


def _without_noise(records: list[NonResidentRecord]) -> list[NonResidentRecord]:
    return [replace(r, noise=()) for r in records]


def test_csv_utf8_round_trip(
    tmp_path: Path, rich: tuple[list[Src], list[NonResidentRecord], list[TruthRow]]
) -> None:
    _, records, _ = rich
    path = tmp_path / "jutogai.csv"
    write_records_csv(records, path)
    raw = path.read_bytes()
    assert raw.startswith(",".join(RECORD_CSV_HEADER).encode() + b"\r\n")
    assert b"kana_" not in raw and b"addr_" not in raw  # the noise kinds stay out
    assert read_records_csv(path) == _without_noise(records)


def test_csv_cp932_round_trip(tmp_path: Path, sources: list[Src]) -> None:
    records, _ = make_non_residents(random.Random(3), sources, 400, ["tax", "nhi"], cp932_safe=True)
    path = tmp_path / "jutogai_sjis.csv"
    write_records_csv(records, path, encoding="cp932")
    assert path.read_bytes().decode("cp932").startswith("レコード番号,業務システム")
    assert read_records_csv(path, encoding="cp932") == _without_noise(records)


def test_csv_cp932_refuses_what_it_cannot_carry(
    tmp_path: Path, generated: tuple[list[NonResidentRecord], list[TruthRow]]
) -> None:
    records, _ = generated
    path = tmp_path / "bad.csv"
    bad = replace(records[5], family_name="𠮷田")
    with pytest.raises(UnencodableCharacterError) as caught:
        write_records_csv([*records[:5], bad], path, encoding="cp932")
    assert caught.value.code == "unencodable_character"
    assert bad.record_id in caught.value.detail and "U+20BB7" in caught.value.detail
    assert caught.value.extra["record_id"] == bad.record_id
    assert not path.exists()
    minus = replace(records[0], address="東京都新宿区西新宿2−8−1")  # U+2212 → U+FF0D
    with pytest.raises(UnencodableCharacterError, match="U\\+2212"):
        write_records_csv([minus], path, encoding="cp932")
    write_records_csv([bad], path)  # UTF-8 carries it
    assert read_records_csv(path)[0].family_name == "𠮷田"


def test_jsonl_round_trip(
    tmp_path: Path, rich: tuple[list[Src], list[NonResidentRecord], list[TruthRow]]
) -> None:
    _, records, _ = rich
    plain, analysed = tmp_path / "plain.jsonl", tmp_path / "analysed.jsonl"
    write_records_jsonl(records, plain)
    write_records_jsonl(records, analysed, include_noise=True)
    first = json.loads(plain.read_text(encoding="utf-8").split("\n")[0])
    assert "noise" not in first and first["record_id"] == records[0].record_id
    assert read_records_jsonl(plain) == _without_noise(records)
    assert read_records_jsonl(analysed) == records


def test_truth_round_trip(
    tmp_path: Path, generated: tuple[list[NonResidentRecord], list[TruthRow]]
) -> None:
    _, truth = generated
    path = tmp_path / "truth.csv"
    write_truth_csv(truth, path)
    assert path.read_text(encoding="utf-8").startswith("record_id,system,true_key\n")
    assert read_truth_csv(path) == truth


def test_bad_files_are_problems(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(NoiseFileError) as caught:
        read_records_csv(path)
    assert caught.value.code == "invalid_noise_file"
    with pytest.raises(NoiseFileError):
        read_truth_csv(path)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"record_id": "NR1"}\n', encoding="utf-8")
    with pytest.raises(NoiseFileError):
        read_records_jsonl(broken)
    with pytest.raises(Problem) as unsupported:
        write_records_csv([], path, encoding="latin-1")
    assert unsupported.value.code == "unsupported_encoding"


# --- speed --------------------------------------------------------------------------------


@pytest.mark.slow
def test_twenty_thousand_records_under_two_seconds() -> None:
    people = _japanese(5000) + list(FOREIGNERS)
    started = time.perf_counter()
    records, _ = make_non_residents(random.Random(1), people, 20_000, ["tax", "nhi", "kotei"])
    elapsed = time.perf_counter() - started
    assert len(records) == 20_000
    assert elapsed < 2.0, elapsed
