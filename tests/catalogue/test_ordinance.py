"""The ordinance for in-house sharing (庁内連携) as data: the packaged sample loads, the
check allows exactly what the table lists, and a bad file is refused naming file, line,
entry, field and reason in Japanese."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from renkei.catalogue import Catalogue
from renkei.catalogue.ordinance import (
    AFFAIR_NOT_LISTED,
    ENTRY_NOT_IN_FORCE,
    NOT_LISTED,
    SYSTEM_NOT_FOR_AFFAIR,
    Ordinance,
    OrdinanceError,
    load_ordinance,
    packaged_ordinance,
)
from renkei.core.errors import STATUS_OF

SAMPLE = packaged_ordinance("131041")
KODOMO = "JM13104100000001"
SHUGAKU = "JM13104100000002"
NHI = "JM01000000901000"
TAX_INFO = "TM00000000000002"
RESIDENT_INFO = "TM00000000000001"
WELFARE_INFO = "TM00000000009004"
ON = date(2025, 4, 1)


@pytest.fixture(scope="module")
def ordinance(catalogue: Catalogue) -> Ordinance:
    assert SAMPLE is not None
    return load_ordinance(SAMPLE, catalogue)


def test_sample_lists_the_usual_entries(ordinance: Ordinance) -> None:
    assert ordinance.sample and ordinance.lg_code == "131041"
    listed = {(e.affair_code, e.provider_system, e.info_kind_code) for e in ordinance.entries}
    assert (KODOMO, "tax", TAX_INFO) in listed  # 子ども・子育て支援 ← 地方税
    assert (SHUGAKU, "tax", TAX_INFO) in listed  # 就学援助 ← 住民税
    assert (NHI, "jumin01", RESIDENT_INFO) in listed  # 国民健康保険 ← 住民票
    assert ("JM01000000904000", "welfare", WELFARE_INFO) in listed  # 障害福祉 ← 生活保護
    assert packaged_ordinance("999999") is None


def test_check_allows_a_listed_read_with_its_items(ordinance: Ordinance) -> None:
    decision = ordinance.check("shugaku", SHUGAKU, "tax", TAX_INFO, ON)
    assert decision.allowed and decision.entry is not None
    assert decision.entry.id == "T1-02" and decision.entry.items == ("K001", "K002", "K003")
    assert "K004" not in decision.entry.items  # 所得割額 is not for 就学援助 in the sample


@pytest.mark.parametrize(
    ("system", "affair", "provider", "kind", "on", "code"),
    [
        ("shugaku", "JM01000000016000", "tax", TAX_INFO, ON, AFFAIR_NOT_LISTED),  # 地方税: not a user
        ("kodomo", SHUGAKU, "tax", TAX_INFO, ON, SYSTEM_NOT_FOR_AFFAIR),  # another department's affair
        ("shugaku", SHUGAKU, "welfare", WELFARE_INFO, ON, NOT_LISTED),  # not in the table
        ("shugaku", SHUGAKU, "tax", RESIDENT_INFO, ON, NOT_LISTED),  # wrong info kind
        ("shugaku", SHUGAKU, "tax", TAX_INFO, date(2015, 12, 31), ENTRY_NOT_IN_FORCE),
    ],
)
def test_check_refuses_what_the_table_does_not_list(
    ordinance: Ordinance, system: str, affair: str, provider: str, kind: str, on: date, code: str
) -> None:
    decision = ordinance.check(system, affair, provider, kind, on)
    assert not decision.allowed and decision.entry is None
    assert decision.code == code
    assert decision.message and "条例" in decision.message or "期間" in str(decision.message)


def test_decision_codes_are_registered_403() -> None:
    # renkei.atena.chonai.authorize raises them as problems.
    for code in (AFFAIR_NOT_LISTED, SYSTEM_NOT_FOR_AFFAIR, NOT_LISTED, ENTRY_NOT_IN_FORCE):
        assert STATUS_OF.get(code) == 403, code


def test_provided_items_are_the_union_of_entries(ordinance: Ordinance) -> None:
    assert ordinance.provided_items("tax", TAX_INFO) == {"K001", "K002", "K003", "K004", "K006"}
    assert ordinance.provided_items("tax", WELFARE_INFO) == frozenset()


# --- bad files ---------------------------------------------------------------------------


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    assert SAMPLE is not None
    target = tmp_path / SAMPLE.name
    shutil.copy(SAMPLE, target)
    return target


def _line_of(path: Path, needle: str, occurrence: int = 1) -> int:
    seen = 0
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip() == needle:
            seen += 1
            if seen == occurrence:
                return i
    raise AssertionError(needle)


def _error(path: Path, catalogue: Catalogue) -> OrdinanceError:
    with pytest.raises(OrdinanceError) as info:
        load_ordinance(path, catalogue)
    message = str(info.value)
    assert message.startswith("条例のデータに誤りがあります: ordinance_131041.toml"), message
    return info.value


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


# (what to break, old text, new text, expected words in the message, header of the entry)
BREAKAGES = [
    ("unknown info kind", 'info_kind = "TM00000000000002"   # 地方税関係情報\nitems = ["K001", "K002", "K003", "K004"',
     'info_kind = "TM00000000999999"   # 地方税関係情報\nitems = ["K001", "K002", "K003", "K004"',
     ["info_kind", "TM00000000999999", "カタログの特定個人情報にありません"], ("T1-01", 1)),
    ("item not in layout", '["J001", "J003", "J004", "J005"]', '["J001", "X999"]',
     ["items", "X999", "レイアウトにありません"], ("T1-03", 3)),
    ("unknown affair", 'affair = "JM01000000904000"', 'affair = "JM01000000999000"',
     ["affair", "JM01000000999000", "[[affair]] にありません"], ("T1-04", 4)),
    ("unknown provider", 'provider_system = "welfare"', 'provider_system = "seiho"',
     ["provider_system", "seiho", "[[system]] にありません"], ("T1-04", 4)),
    ("reads from itself", 'provider_system = "welfare"', 'provider_system = "disability"',
     ["provider_system", "disability", "庁内連携ではありません"], ("T1-04", 4)),
    ("dates reversed", 'valid_from = 2016-01-01\nnote = "就学援助', 'valid_from = 2016-01-01\nvalid_to = 2015-01-01\nnote = "就学援助',
     ["valid_to", "valid_from", "より前"], ("T1-02", 2)),
    ("unknown key", 'article = "第4条第2項・別表第2 第5号"', 'article = "第4条第2項・別表第2 第5号"\nitem = ["K001"]',
     ["知らないキー", "item"], ("T1-05", 5)),
    ("duplicate id", 'id = "T1-05"', 'id = "T1-01"', ["ID「T1-01」が重複"], ("T1-01", 5)),
    ("overlap", 'affair = "JM01000000074000"\nprovider_system = "tax"', 'affair = "JM13104100000002"\nprovider_system = "tax"',
     ["重なっています", "T1-02"], ("T1-05", 5)),
    ("catalogue affair missing", 'code = "JM01000000904000"', 'code = "JM01000000998000"',
     ["カタログにありません", "JM01000000998000"], None),
    ("own affair clashing with catalogue", 'code = "JM13104100000002"', 'code = "JM01000000016000"',
     ["独自利用事務", "カタログ"], None),
    ("empty items", '["K001", "K002", "K003"]', "[]", ["items が空です"], ("T1-02", 2)),
    ("bad lg code", 'lg_code = "131041"', 'lg_code = "131042"', ["lg_code", "131042"], None),
]  # fmt: skip


@pytest.mark.parametrize(("what", "old", "new", "words", "entry"), BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_bad_file_names_file_line_field_and_reason(
    copy: Path,
    catalogue: Catalogue,
    what: str,
    old: str,
    new: str,
    words: list[str],
    entry: tuple[str, int] | None,
) -> None:
    _replace(copy, old, new)
    err = _error(copy, catalogue)
    message = str(err)
    for word in words:
        assert word in message, (what, message)
    if entry is not None:
        eid, n = entry
        line = _line_of(copy, "[[entry]]", n)
        assert err.location is not None
        assert err.location.startswith(f"{line}行目 [[entry]] {n}件目"), err.location
        assert eid in err.location


def test_not_toml_names_the_line(copy: Path, catalogue: Catalogue) -> None:
    _replace(copy, 'title = "', 'title = ')
    assert "TOML として読めません" in str(_error(copy, catalogue)) and "line" in str(_error(copy, catalogue))


def test_not_utf8(copy: Path, catalogue: Catalogue) -> None:
    copy.write_bytes(copy.read_text(encoding="utf-8").encode("cp932", errors="replace"))
    assert "UTF-8 として読めません" in str(_error(copy, catalogue))


def test_missing_file(tmp_path: Path, catalogue: Catalogue) -> None:
    with pytest.raises(OrdinanceError) as info:
        load_ordinance(tmp_path / "ordinance_131041.toml", catalogue)
    assert "ファイルを読めません" in str(info.value)
