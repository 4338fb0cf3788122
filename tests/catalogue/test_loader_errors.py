"""load_catalogue refuses inconsistent data files, naming file, line/entry and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from renkei.catalogue import CatalogueError, load_catalogue

RULE_LINE = (
    "X-1,市町村長,JT01010000074001,市町村長,TM00000000000002,2017-07-18,2024-05-26,テスト,\n"
)


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(text)


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def load_error(directory: Path) -> CatalogueError:
    with pytest.raises(CatalogueError) as info:
        load_catalogue(directory)
    return info.value


def test_copy_loads(data_copy: Path) -> None:
    cat = load_catalogue(data_copy)
    assert cat.sample and len(cat.rules) == len(load_catalogue().rules)


# ------------------------------------------------------------------ duplicates


def test_duplicate_affair_code(data_copy: Path) -> None:
    append(
        data_copy / "affairs.toml",
        '\n[[affair]]\ncode = "JM01000000074000"\nname = "重複"\nnumber_use = true\n'
        'origin = "ours"\n[[affair.procedure]]\ncode = "JT01010000999001"\nname = "x"\n'
        'origin = "ours"\n',
    )
    err = load_error(data_copy)
    assert err.file == "affairs.toml"
    assert err.location is not None and "JM01000000074000" in err.location
    assert "重複" in str(err) and "affairs.toml" in str(err)


def test_duplicate_procedure_code(data_copy: Path) -> None:
    append(
        data_copy / "affairs.toml",
        '\n[[affair]]\ncode = "JM01000000999000"\nname = "別の事務"\nnumber_use = true\n'
        'origin = "ours"\n[[affair.procedure]]\ncode = "JT01010000074001"\nname = "x"\n'
        'origin = "ours"\n',
    )
    err = load_error(data_copy)
    assert err.file == "affairs.toml"
    assert "JT01010000074001" in err.problem and "JM01000000074000" in err.problem


def test_duplicate_info_kind_code(data_copy: Path) -> None:
    append(
        data_copy / "info_kinds.toml",
        '\n[[info_kind]]\ncode = "TM00000000000002"\nname = "別名"\norigin = "ours"\n',
    )
    err = load_error(data_copy)
    assert err.file == "info_kinds.toml" and "TM00000000000002" in err.problem


def test_duplicate_rule_id(data_copy: Path) -> None:
    rules = data_copy / "rules.csv"
    append(
        rules, RULE_LINE.replace("X-1", "B2-074-1").replace("JT01010000074001", "JT01010000074002")
    )
    err = load_error(data_copy)
    assert err.file == "rules.csv"
    assert err.location == f"{line_count(rules)}行目"
    assert "B2-074-1" in err.problem


# ------------------------------------------------------------------ references


def test_dangling_procedure_in_rules(data_copy: Path) -> None:
    rules = data_copy / "rules.csv"
    append(rules, RULE_LINE.replace("JT01010000074001", "JT01010000999999"))
    err = load_error(data_copy)
    assert err.file == "rules.csv"
    assert err.location == f"{line_count(rules)}行目"
    assert "JT01010000999999" in err.problem and "affairs.toml" in err.problem
    assert f"rules.csv {line_count(rules)}行目" in str(err)


def test_dangling_info_kind_in_rules(data_copy: Path) -> None:
    append(data_copy / "rules.csv", RULE_LINE.replace("TM00000000000002", "TM00000000999999"))
    err = load_error(data_copy)
    assert err.file == "rules.csv" and "TM00000000999999" in err.problem


def test_unknown_organization_kind_in_rules(data_copy: Path) -> None:
    append(data_copy / "rules.csv", RULE_LINE.replace(",市町村長,JT", ",区長,JT"))
    err = load_error(data_copy)
    assert "区長" in err.problem and "organization_kinds" in err.problem


def test_layout_for_unknown_info_kind(data_copy: Path) -> None:
    src = data_copy / "layouts" / "TM00000000009006.toml"
    text = src.read_text(encoding="utf-8").replace("TM00000000009006", "TM00000000009999")
    (data_copy / "layouts" / "TM00000000009999.toml").write_text(text, encoding="utf-8")
    err = load_error(data_copy)
    assert err.file == "layouts/TM00000000009999.toml" and "info_kinds.toml" in err.problem


def test_info_kind_without_layout(data_copy: Path) -> None:
    (data_copy / "layouts" / "TM00000000009006.toml").unlink()
    err = load_error(data_copy)
    assert "TM00000000009006" in str(err) and "layouts/TM00000000009006.toml" in err.problem


def test_layout_file_name_must_match(data_copy: Path) -> None:
    layouts = data_copy / "layouts"
    (layouts / "TM00000000009006.toml").rename(layouts / "pension.toml")
    err = load_error(data_copy)
    assert err.file == "layouts/pension.toml"


# ------------------------------------------------------------------ dates


@pytest.mark.parametrize(
    ("bad", "expect"),
    [("2017-02-30", "実在しない"), ("2017/07/18", "YYYY-MM-DD"), ("H29.7.18", "YYYY-MM-DD")],
)
def test_bad_date_in_rules(data_copy: Path, bad: str, expect: str) -> None:
    rules = data_copy / "rules.csv"
    append(rules, RULE_LINE.replace("2017-07-18", bad))
    err = load_error(data_copy)
    assert err.location == f"{line_count(rules)}行目"
    assert bad in err.problem and expect in err.problem


def test_rule_ends_before_it_starts(data_copy: Path) -> None:
    append(
        data_copy / "rules.csv", RULE_LINE.replace("2017-07-18,2024-05-26", "2024-05-26,2017-07-18")
    )
    err = load_error(data_copy)
    assert "valid_to" in err.problem


def test_bad_date_in_toml(data_copy: Path) -> None:
    layout = data_copy / "layouts" / "TM00000000000002.toml"
    replace(layout, "valid_from = 2017-07-18", "valid_from = 2017-02-30")
    err = load_error(data_copy)
    assert err.file == "layouts/TM00000000000002.toml"
    assert "line" in err.problem  # tomllib names the line


def test_bad_date_string_in_toml(data_copy: Path) -> None:
    layout = data_copy / "layouts" / "TM00000000000002.toml"
    replace(layout, "valid_from = 2017-07-18", 'valid_from = "平成29年7月18日"')
    err = load_error(data_copy)
    assert err.file == "layouts/TM00000000000002.toml"
    assert err.location is not None and "0001" in err.location
    assert "valid_from" in err.problem


def test_edition_ends_before_it_starts(data_copy: Path) -> None:
    layout = data_copy / "layouts" / "TM00000000000002.toml"
    replace(layout, "valid_from = 2017-07-18", "valid_from = 2017-07-18\nvalid_to = 2017-07-17")
    err = load_error(data_copy)
    assert "valid_to" in err.problem


def test_overlapping_editions(data_copy: Path) -> None:
    layout = data_copy / "layouts" / "TM00000000009001.toml"
    replace(layout, "valid_from = 2024-10-01", "valid_from = 2024-09-30")
    err = load_error(data_copy)
    assert err.file == "layouts/TM00000000009001.toml"
    assert "重なって" in err.problem and "0001" in err.problem
    assert err.location is not None and "0002" in err.location


def test_open_ended_editions_overlap(data_copy: Path) -> None:
    layout = data_copy / "layouts" / "TM00000000009001.toml"
    replace(layout, "valid_to = 2024-09-30\n", "")
    err = load_error(data_copy)
    assert "重なって" in err.problem


def test_overlapping_rules(data_copy: Path) -> None:
    rules = data_copy / "rules.csv"
    append(rules, RULE_LINE.replace("2017-07-18,2024-05-26", "2024-01-01,"))
    err = load_error(data_copy)
    assert err.location == f"{line_count(rules)}行目"
    assert "重なって" in err.problem and "B2-074-1" in err.problem


# ------------------------------------------------------------------ formats and shapes


def test_bad_code_format(data_copy: Path) -> None:
    replace(data_copy / "affairs.toml", 'code = "JM01000000016000"', 'code = "JM16000"')
    err = load_error(data_copy)
    assert err.file == "affairs.toml" and "JM16000" in err.problem


def test_bad_code_format_in_rules(data_copy: Path) -> None:
    append(data_copy / "rules.csv", RULE_LINE.replace("TM00000000000002", "TM2"))
    err = load_error(data_copy)
    assert "TM2" in err.problem and "形式" in err.problem


def test_unknown_key_is_a_typo(data_copy: Path) -> None:
    layout = data_copy / "layouts" / "TM00000000000002.toml"
    replace(layout, 'type = "year"\n  required = true', 'type = "year"\n  requried = true')
    err = load_error(data_copy)
    assert "requried" in err.problem
    assert err.location is not None and "K001" in err.location


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        ('type = "year"', 'type = "number"', "type"),
        ('codes = { "1" = "課税", "2" = "非課税", "3" = "未申告" }\n', "", "codes"),
        ("minimum = 0\n  maximum = 99\n", "minimum = 100\n  maximum = 99\n", "minimum"),
        ('type = "year"', 'type = "year"\n  codes = { "1" = "x" }', "codes"),
        ('code = "K006"', 'code = "K005"', "K005"),
    ],
)
def test_bad_layout_items(data_copy: Path, old: str, new: str, expect: str) -> None:
    replace(data_copy / "layouts" / "TM00000000000002.toml", old, new)
    err = load_error(data_copy)
    assert err.file == "layouts/TM00000000000002.toml" and expect in err.problem


def test_sample_flag_must_agree(data_copy: Path) -> None:
    replace(data_copy / "info_kinds.toml", "sample = true", "sample = false")
    err = load_error(data_copy)
    assert err.file == "info_kinds.toml" and "sample" in err.problem


def test_rules_header(data_copy: Path) -> None:
    replace(data_copy / "rules.csv", "id,inquirer_kind,", "rule_id,inquirer_kind,")
    err = load_error(data_copy)
    assert err.file == "rules.csv" and "見出し" in err.problem


def test_rules_wrong_column_count(data_copy: Path) -> None:
    append(data_copy / "rules.csv", "X-1,市町村長,JT01010000074001\n")
    assert "列" in load_error(data_copy).problem


def test_missing_file(data_copy: Path) -> None:
    (data_copy / "rules.csv").unlink()
    err = load_error(data_copy)
    assert err.file == "rules.csv" and "ありません" in err.problem


def test_not_utf8(data_copy: Path) -> None:
    path = data_copy / "info_kinds.toml"
    path.write_bytes(path.read_text(encoding="utf-8").encode("cp932"))
    err = load_error(data_copy)
    assert err.file == "info_kinds.toml" and "UTF-8" in err.problem


def test_utf8_bom_is_tolerated(data_copy: Path) -> None:
    path = data_copy / "rules.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    load_catalogue(data_copy)


def test_toml_syntax_error(data_copy: Path) -> None:
    append(data_copy / "affairs.toml", "\n[[affair]\n")
    err = load_error(data_copy)
    assert err.file == "affairs.toml" and "TOML" in err.problem and "line" in err.problem


def test_manifest_format(data_copy: Path) -> None:
    replace(data_copy / "catalogue.toml", "format = 1", "format = 2")
    assert load_error(data_copy).file == "catalogue.toml"
