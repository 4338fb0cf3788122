"""Search keys (renkei.core.text.normalize): each fold with real-world examples, and the
properties every key keeps (idempotence, width and script invariance)."""

from __future__ import annotations

import random
import unicodedata

import jaconv
import joyokanji
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ja_itaiji import Itaiji

from renkei.core.text import normalize as n
from renkei.core.text.normalize import (
    address_key,
    address_parts,
    digits,
    kana_key,
    name_key,
    town_key,
)
from renkei.core.text.wareki import parse_date
from renkei.dummy import noise_address, noise_kana, noise_kanji

# --- kana --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        # width and script
        ("ﾔﾏﾀﾞ ﾀﾛｳ", "ヤマダタロウ"),
        ("やまだ たろう", "ヤマダタロウ"),
        ("ヤマダ　タロウ", "ヤマダタロウ"),  # full-width space
        ("ヤマダ・タロウ", "ヤマダタロウ"),
        ("ｽﾐｽ･ｼﾞｮﾝ", "スミスジヨン"),
        # voicing marks written apart: spacing, combining, half-width
        ("カ゛ク", "ガク"),
        ("カ\u3099ク", "ガク"),
        ("ﾊﾟｸ", "パク"),
        ("ハ゜ク", "パク"),
        # ヴ and the バ row
        ("ヴァイオリン", "バイオリン"),
        ("ヴィクトリア", "ビクトリア"),
        ("ヴェトナム", "ベトナム"),
        ("ヴォルフ", "ボルフ"),
        ("ヴ", "ブ"),
        ("ゔぃ", "ビ"),
        ("ヷ", "バ"),
        # small kana
        ("キャサリン", "キヤサリン"),
        ("ハットリ", "ハツトリ"),
        ("ジュン", "ジユン"),
        ("ヶ", "ケ"),
        # ヂ/ジ, ヅ/ズ and the old kana
        ("ツヅキ", "ツズキ"),
        ("チヂワ", "チジワ"),
        ("カヲル", "カオル"),
        ("ヰ", "イ"),
        ("ヱミ", "エミ"),
        # 長音 and its look-alikes after a kana
        ("サトー", "サトウ"),
        ("ｻﾄｰ", "サトウ"),
        ("サト－", "サトウ"),  # U+FF0D
        ("サト-", "サトウ"),
        ("サト‐", "サトウ"),  # U+2010
        ("サト―", "サトウ"),  # U+2015
        ("サト〜", "サトウ"),
        ("オーノ", "オウノ"),
        ("オオノ", "オウノ"),
        ("オウノ", "オウノ"),
        ("ケーコ", "ケイコ"),
        ("ユーコ", "ユウコ"),
        ("マーク", "マアク"),
        ("-サト", "サト"),  # a dash after no kana is dropped
        # iteration marks
        ("サヽキ", "ササキ"),
        ("ミスヾ", "ミスズ"),
        # latin letters
        ("smith ｼﾞｮﾝ", "SMITHジヨン"),
    ],
)
def test_kana_key(typed: str, key: str) -> None:
    assert kana_key(typed) == key


def test_kana_key_keeps_voiced_and_unvoiced_apart() -> None:
    assert kana_key("カトウ") != kana_key("ガトウ")
    assert kana_key("サトウ") != kana_key("サト")  # a dropped long vowel is another name


# --- kanji -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        ("渡邉", "渡辺"),
        ("渡邊", "渡辺"),
        ("髙橋", "高橋"),
        ("﨑山", "崎山"),
        ("𠮷田", "吉田"),
        ("齋藤", "斎藤"),
        ("齊藤", "斉藤"),
        ("嶋田", "島田"),
        ("冨田", "富田"),
        ("桒原", "桑原"),
        ("濵田", "浜田"),
        ("國分", "国分"),
        ("澤田", "沢田"),
        ("山田　花子", "山田花子"),
        ("葛\U000e0100城", "葛城"),  # IVS selector
        ("辻\ufe00", "辻"),  # standard variation selector
        ("\uf929", "朗"),  # a compatibility ideograph (NFKC, the key only)
        ("佐藤 さくら", "佐藤サクラ"),
        ("Smith John", "SMITHJOHN"),
        ("ＳＭＩＴＨ", "SMITH"),
    ],
)
def test_name_key(typed: str, key: str) -> None:
    assert name_key(typed) == key


def test_name_key_keeps_sai_surnames_apart() -> None:
    assert name_key("斎藤") != name_key("斉藤")


def test_override_file_holds_only_what_joyokanji_misses_and_ja_itaiji_agrees() -> None:
    table = n._overrides()
    assert len(table) >= 20
    for code, key in table.items():
        variant = chr(code)
        assert joyokanji.convert(variant, variants=True) == variant, f"{variant}: joyokanji converts it already"
        assert joyokanji.convert(key, variants=True) == key, f"{key}: the key is not a fixed point"
        assert Itaiji.is_family(variant, key), f"{variant}→{key}: not one family in ja-itaiji"


def test_every_variant_the_generator_writes_folds_to_its_new_form() -> None:
    for new, olds in noise_kanji.NEW_TO_OLD.items():
        for old in olds:
            assert name_key(old) == name_key(new), (old, new)


# --- addresses ---------------------------------------------------------------------------

SAME_PLACE = [
    "東京都新宿区西新宿二丁目8番1号",
    "新宿区西新宿2-8-1",
    "新宿区西新宿２丁目８－１",
    "新宿区西新宿2丁目8番地1",
    "新宿区西新宿2丁目8番地の1",
    "新宿区西新宿二丁目八番一号",
    "新宿区西新宿2‐8‐1",  # U+2010
    "新宿区西新宿2ー8ー1",  # the long-vowel mark typed for a hyphen
    "新宿区 西新宿 2-8-1",
    "新宿区西新宿2丁目8の1",
]


@pytest.mark.parametrize("typed", SAME_PLACE)
def test_address_block_written_any_way_gives_one_key(typed: str) -> None:
    assert address_key(typed) == "新宿区西新宿2-8-1"
    assert town_key(typed) == "西新宿2-8-1"


@pytest.mark.parametrize(
    ("typed", "place", "building"),
    [
        ("東京都新宿区西新宿二丁目8番1号 新宿パークタワー　５０１号室", "新宿区西新宿2-8-1", "新宿パークタワー501号室"),
        ("新宿区西新宿2-8-1 501", "新宿区西新宿2-8-1", "501"),
        ("港区麻布十番1丁目2番3号", "港区麻布十番1-2-3", ""),  # 十番 is the town's name
        ("千代田区三番町5-1", "千代田区三番町5-1", ""),
        ("新宿区四谷三丁目", "新宿区四谷3", ""),
        ("大字山田字北十番地の三", "山田北10-3", ""),  # 大字 and 字 dropped
        ("中野区中央4丁目10番地の2 コーポ中央 2F", "中野区中央4-10-2", "コーポ中央2F"),
        ("新宿区高田馬場一丁目", "新宿区高田馬場1", ""),
        ("新宿区髙田馬場1丁目", "新宿区高田馬場1", ""),  # 異体字 folded as in names
    ],
)
def test_address_parts(typed: str, place: str, building: str) -> None:
    parts = address_parts(typed)
    assert (parts.place, parts.building) == (place, building)
    assert address_key(typed) == (f"{place}/{building}" if building else place)


def test_generator_notations_give_one_key() -> None:
    rng = random.Random(7)
    for canonical in (
        "東京都新宿区西新宿二丁目8番1号 西新宿ハイツ 302",
        "東京都中野区中央四丁目12番3号",
        "東京都新宿区西早稲田3番5号",
    ):
        parts = noise_address.parse_address(canonical)
        assert parts is not None
        keys = {address_key(noise_address.format_address(parts, notation)) for notation in noise_address.NOTATIONS}
        keys.add(address_key(noise_address.drop_prefecture(rng, canonical)))
        assert len(keys) == 1, keys
        assert address_parts(noise_address.drop_building(rng, canonical)).place == address_parts(canonical).place


# --- numbers and dates -------------------------------------------------------------------


def test_digits() -> None:
    assert digits("０００１２３４５６７８９０１２") == "000123456789012"
    assert digits("1234 5678 9012") == "123456789012"
    assert digits("1234-5678－9012") == "123456789012"
    with pytest.raises(ValueError):
        digits("12a4")
    with pytest.raises(ValueError):
        digits("")


def test_dates_in_full_width() -> None:
    assert parse_date("昭和６０年４月１日") == parse_date("1985-04-01") == parse_date("１９８５０４０１")
    assert parse_date("Ｓ６０．４．１").isoformat() == "1985-04-01"


# --- properties --------------------------------------------------------------------------

KATAKANA = st.text(alphabet=st.characters(min_codepoint=0x30A1, max_codepoint=0x30FA), max_size=12)
MIXED = st.text(
    alphabet=st.sampled_from(
        list("アイウエオカガキャッーｰ－-‐ヴァィゥぁがゔ゛゜ﾞﾟヽヾ 　・高髙邉辺嶋葛一二十丁目番地号の0123４５西新宿ABcﾊﾟ")
        + ["\U000e0100", "\ufe00", "\uf929"]
    ),
    max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(MIXED, st.text(max_size=20)))
def test_every_key_is_idempotent(text: str) -> None:
    for key in (kana_key, name_key, address_key, town_key):
        once = key(text)
        assert key(once) == once, (key.__name__, text, once)


@settings(max_examples=300, deadline=None)
@given(KATAKANA)
def test_kana_key_ignores_width_and_script(text: str) -> None:
    key = kana_key(text)
    assert kana_key(jaconv.z2h(text, kana=True, ascii=False, digit=False)) == key
    assert kana_key(jaconv.kata2hira(text)) == key
    assert kana_key(" ".join(text)) == key


@settings(max_examples=200, deadline=None)
@given(KATAKANA, st.randoms(use_true_random=False))
def test_kana_key_ignores_the_generators_kana_noise(text: str, rng: random.Random) -> None:
    key = kana_key(text)
    for noise in (
        noise_kana.swap_vu,
        noise_kana.enlarge_small_kana,
        noise_kana.swap_ji_zu,
        noise_kana.swap_wo,
        noise_kana.to_halfwidth,
        noise_kana.to_hiragana,
    ):
        noisy = noise(rng, text)
        # ヴ before a small kana that swap_vu splits (ヴァ → ブァ) folds to the same key too
        assert kana_key(noisy) == key, (noise.__name__, text, noisy)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), max_size=8))
def test_name_key_never_changes_what_nfkc_and_the_tables_leave(text: str) -> None:
    key = name_key(text)
    assert len(key) == len(text)  # a kanji folds to one kanji, never to nothing
    assert unicodedata.normalize("NFKC", key) == key
