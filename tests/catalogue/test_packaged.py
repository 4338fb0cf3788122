"""The packaged sample catalogue: contents and the rule check."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pytest

from renkei.catalogue import (
    RULE_NOT_FOUND,
    RULE_NOT_IN_FORCE,
    UNKNOWN_INFO_KIND,
    UNKNOWN_PROCEDURE,
    Catalogue,
)

CHILD_PROC = "JT01010000074001"
TAX_PROC = "JT01010000016001"
BENEFIT_PROC = "JT01010000000214"
TEMP_PROC = "JT01010000900001"
TAX = "TM00000000000002"
CHILD = "TM00000000009001"
WELFARE = "TM00000000009004"
CITY = "市町村長"


def test_is_labelled_sample(catalogue: Catalogue) -> None:
    assert catalogue.sample is True
    assert "サンプル" in catalogue.edition_label
    assert catalogue.organization_kinds == (
        "市町村長",
        "都道府県知事",
        "厚生労働大臣",
        "日本年金機構",
    )


def test_codes_others_depend_on(catalogue: Catalogue) -> None:
    child = catalogue.affairs["JM01000000074000"]
    assert child.name == "児童手当法による児童手当又は特例給付の支給に関する事務"
    assert child.number_use
    assert catalogue.procedures[CHILD_PROC].name == "児童手当の認定請求"
    assert catalogue.procedures[CHILD_PROC].affair_code == "JM01000000074000"
    assert catalogue.affair_of(CHILD_PROC) is child
    assert catalogue.affair_of("JT99999999999999") is None
    assert catalogue.affairs["JM01000000121000"].name == "給付金等の支給に関する事務"
    assert catalogue.affair_of(BENEFIT_PROC) == catalogue.affairs["JM01000000121000"]
    assert catalogue.affair_of(TAX_PROC) == catalogue.affairs["JM01000000016000"]
    assert catalogue.info_kinds["TM00000000000001"].name == "住民票関係情報"
    assert catalogue.info_kinds[TAX].name == "地方税関係情報"
    assert catalogue.info_kinds["TM00000000000089"].name == "公金受取口座情報"
    # every procedure is listed under its affair, every info kind has a layout
    for affair in catalogue.affairs.values():
        for proc in affair.procedures:
            assert catalogue.procedures[proc.code] is proc
    assert all(kind.editions for kind in catalogue.info_kinds.values())


def test_covers_the_seven_areas(catalogue: Catalogue) -> None:
    names = {k.name for k in catalogue.info_kinds.values()}
    assert {"住民票関係情報", "地方税関係情報", "児童手当関係情報", "医療保険給付関係情報"} <= names
    assert {"介護保険給付等関係情報", "生活保護関係情報", "障害者関係情報"} <= names


def test_tax_layout_exactly(catalogue: Catalogue) -> None:
    kind = catalogue.info_kinds[TAX]
    assert len(kind.editions) == 1
    ed = kind.editions[0]
    assert (ed.dataset, ed.edition, ed.valid_from, ed.valid_to) == (
        "0001",
        "0001",
        date(2017, 7, 18),
        None,
    )
    got = [(i.code, i.name, i.type, i.required, i.minimum, i.maximum) for i in ed.items]
    assert got == [
        ("K001", "課税年度", "year", True, None, None),
        ("K002", "課税区分", "code", True, None, None),
        ("K003", "総所得金額等", "integer", False, 0, 999999999999),
        ("K004", "市町村民税所得割額", "integer", False, 0, None),
        ("K005", "市町村民税均等割額", "integer", False, 0, None),
        ("K006", "扶養親族数", "integer", False, 0, 99),
    ]
    assert dict(ed.items[1].codes or {}) == {"1": "課税", "2": "非課税", "3": "未申告"}
    assert kind.edition_on(date(2017, 7, 17)) is None
    assert kind.edition_on(date(2017, 7, 18)) is ed
    assert kind.edition_on(date(2099, 1, 1)) is ed
    hash(ed)  # value objects are hashable, code lists included


def test_edition_switch(catalogue: Catalogue) -> None:
    kind = catalogue.info_kinds[CHILD]
    first = kind.edition_on(date(2024, 9, 30))
    second = kind.edition_on(date(2024, 10, 1))
    assert first is not None and first.edition == "0001"
    assert second is not None and second.edition == "0002"


@pytest.mark.parametrize(
    ("on", "rule_id", "source_part"),
    [
        (date(2017, 7, 18), "B2-074-1", "番号法別表第二 七十四の項"),
        (date(2020, 4, 1), "B2-074-1", "番号法別表第二 七十四の項"),
        (date(2024, 5, 26), "B2-074-1", "番号法別表第二 七十四の項"),
        (date(2024, 5, 27), "MR-074-1", "利用特定個人情報の提供に関する命令"),
        (date(2025, 4, 1), "MR-074-1", "利用特定個人情報の提供に関する命令"),
    ],
)
def test_rule_74_allowed(catalogue: Catalogue, on: date, rule_id: str, source_part: str) -> None:
    decision = catalogue.check_rule(CITY, CHILD_PROC, CITY, TAX, on)
    assert decision.allowed
    assert decision.code is None and decision.message is None
    assert decision.rule is not None
    assert decision.rule.id == rule_id
    assert source_part in decision.rule.source
    assert decision.rule.procedure_code == CHILD_PROC


def test_rule_74_rows(catalogue: Catalogue) -> None:
    old, new = catalogue.rules_for(CITY, CHILD_PROC, CITY, TAX)
    assert (old.valid_from, old.valid_to) == (date(2017, 7, 18), date(2024, 5, 26))
    assert old.source == "番号法別表第二 七十四の項"
    assert (new.valid_from, new.valid_to) == (date(2024, 5, 27), None)
    assert "七十四の項" in new.source and "未確認" in new.source


def test_before_linkage_is_not_in_force(catalogue: Catalogue) -> None:
    # Decision: a combination that has rules, none covering the date, is
    # rule_not_in_force (not rule_not_found), and the message names the periods.
    decision = catalogue.check_rule(CITY, CHILD_PROC, CITY, TAX, date(2017, 7, 17))
    assert not decision.allowed and decision.rule is None
    assert decision.code == RULE_NOT_IN_FORCE
    assert decision.message is not None
    assert "2017-07-17" in decision.message
    assert "2017-07-18〜2024-05-26" in decision.message
    assert "2024-05-27〜" in decision.message


def test_date_range_rule(catalogue: Catalogue) -> None:
    inside = catalogue.check_rule(CITY, TEMP_PROC, CITY, TAX, date(2024, 12, 1))
    assert inside.allowed and inside.rule is not None and inside.rule.id == "SAMPLE-TEMP-1"
    for on in (date(2024, 5, 31), date(2025, 4, 1)):
        after = catalogue.check_rule(CITY, TEMP_PROC, CITY, TAX, on)
        assert after.code == RULE_NOT_IN_FORCE
        assert after.message is not None and "2024-06-01〜2025-03-31" in after.message


def test_benefit_rule(catalogue: Catalogue) -> None:
    decision = catalogue.check_rule(CITY, BENEFIT_PROC, CITY, TAX, date(2025, 4, 1))
    assert decision.allowed


@pytest.mark.parametrize("info_kind", [CHILD, WELFARE])
def test_tax_affair_cannot_ask_for_child_allowance_or_welfare(
    catalogue: Catalogue, info_kind: str
) -> None:
    for provider in catalogue.organization_kinds:
        assert not catalogue.rules_for(CITY, TAX_PROC, provider, info_kind)
    decision = catalogue.check_rule(CITY, TAX_PROC, CITY, info_kind, date(2025, 4, 1))
    assert not decision.allowed and decision.rule is None
    assert decision.code == RULE_NOT_FOUND
    assert decision.message is not None
    name = catalogue.info_kinds[info_kind].name
    assert f"事務手続「{TAX_PROC}（個人住民税の賦課）」" in decision.message
    assert f"特定個人情報「{info_kind}（{name}）」" in decision.message
    assert "照会者「市町村長」が提供者「市町村長」" in decision.message
    assert "別表第二及び利用特定個人情報提供命令のいずれにもありません" in decision.message


def test_wrong_provider_kind_is_not_found(catalogue: Catalogue) -> None:
    decision = catalogue.check_rule(CITY, CHILD_PROC, "都道府県知事", TAX, date(2025, 4, 1))
    assert decision.code == RULE_NOT_FOUND
    decision = catalogue.check_rule("厚生労働大臣", CHILD_PROC, CITY, TAX, date(2025, 4, 1))
    assert decision.code == RULE_NOT_FOUND


def test_unknown_procedure_and_info_kind(catalogue: Catalogue) -> None:
    decision = catalogue.check_rule(CITY, "JT99999999999999", CITY, TAX, date(2025, 4, 1))
    assert decision.code == UNKNOWN_PROCEDURE and not decision.allowed
    assert decision.message is not None and "JT99999999999999" in decision.message
    decision = catalogue.check_rule(CITY, CHILD_PROC, CITY, "TM99999999999999", date(2025, 4, 1))
    assert decision.code == UNKNOWN_INFO_KIND
    assert decision.message is not None and "TM99999999999999" in decision.message


def test_rules_traced_to_beppyo2_cite_a_kou(catalogue: Catalogue) -> None:
    traced = [r for r in catalogue.rules if r.id.startswith("B2-")]
    assert len(traced) >= 5
    for rule in traced:
        assert rule.source.startswith("番号法別表第二 ") and rule.source.endswith("の項")
        assert rule.valid_to == date(2024, 5, 26)


def test_loads_are_independent() -> None:
    from renkei.catalogue import load_catalogue

    a, b = load_catalogue(), load_catalogue()
    assert a is not b and a.affairs is not b.affairs
    assert a.rules == b.rules


BEPPYO2_CSV = Path(__file__).resolve().parents[3] / "shared" / "spec" / "beppyo2.csv"


@pytest.mark.skipif(not BEPPYO2_CSV.exists(), reason="shared 別表第二 extract not present")
def test_traced_rules_match_beppyo2_rows(catalogue: Catalogue) -> None:
    """Each 別表第二 rule's 項 has a row that names its info kind (defined term)."""
    with BEPPYO2_CSV.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for rule in catalogue.rules:
        if not rule.id.startswith("B2-"):
            continue
        kou = rule.source.removeprefix("番号法別表第二 ").removesuffix("の項")
        name = catalogue.info_kinds[rule.info_kind_code].name
        cells = [r["特定個人情報"] for r in rows if r["項"] == kou]
        assert cells, f"{rule.id}: 項 {kou} not in 別表第二"
        assert any(name in c for c in cells), f"{rule.id}: {name} not in 項 {kou}"
