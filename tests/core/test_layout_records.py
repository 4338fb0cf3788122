"""renkei.core.text.layout: fixed-layout records read in every shape real clients send,
malformed records reported with file, line, field and reason, and written back."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest

from renkei.core.text import cp932
from renkei.core.text.layout import (
    Field,
    FileShape,
    Layout,
    RecordError,
    RecordWriter,
    first_error,
    format_record,
    read_records,
    sniff,
)

LAYOUT = Layout(
    "試験レコード",
    (
        Field("kind", "番号体系", 2, "numeric", required=True),
        Field("number", "宛名番号", 15, "numeric"),
        Field("code", "事務コード", 16, "code", required=True),
        Field("name", "氏名", 10, "text"),
        Field("flag", "区分", 1, "code"),
    ),
)
VALUES = [
    {"kind": "01", "number": "000000000012345", "code": "JM01000000121000", "name": "山田太郎", "flag": "1"},
    {"kind": "02", "number": "", "code": "JM01000000121000", "name": "", "flag": ""},
    {"kind": "01", "number": "000000000000042", "code": "JM0100", "name": "ABC", "flag": "0"},
]


def _write(tmp_path: Path, name: str, lines: list[str], encoding: str, newline: str, bom: bool = False) -> Path:
    path = tmp_path / name
    data = "".join(line + newline for line in lines).encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


@pytest.mark.parametrize("shape", ["comma", "fixed"])
@pytest.mark.parametrize("encoding", ["utf-8", "cp932"])
@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_every_shape_reads_back_the_same_values(tmp_path: Path, shape: str, encoding: str, newline: str) -> None:
    lines = [format_record(LAYOUT, v, shape) for v in VALUES]  # type: ignore[arg-type]
    path = _write(tmp_path, "f.DAT", lines, encoding, newline)
    f = read_records(path, LAYOUT)
    rows = list(f)
    assert f.shape == FileShape(encoding=encoding, bom=False, newline=newline, shape=shape)  # type: ignore[arg-type]
    assert [r.line for r in rows] == [1, 2, 3]
    assert all(r.ok for r in rows), [r.errors for r in rows]
    assert [dict(r.values) for r in rows] == VALUES


def test_comma_shape_writes_empty_fields_zero_width_and_fixed_at_full_width() -> None:
    assert format_record(LAYOUT, VALUES[1], "comma") == "02,,JM01000000121000,,"
    assert format_record(LAYOUT, VALUES[2], "comma") == "01,000000000000042,JM0100          ,ABC       ,0"
    fixed = format_record(LAYOUT, VALUES[0], "fixed")
    assert fixed == "01000000000012345JM01000000121000山田太郎  1"
    assert len(fixed.encode("cp932")) == LAYOUT.width == 44


def test_a_real_client_line_reads_as_written(tmp_path: Path) -> None:
    """As the public client writes: ASCII, zero-width empties, CRLF, no header."""
    path = tmp_path / "P640R110_20240601093000_0001.DAT"
    path.write_bytes(b"01,000000000012345,JM01000000121000,,1\r\n")
    (row,) = list(read_records(path, LAYOUT))
    assert row.ok and row.values == {
        "kind": "01", "number": "000000000012345", "code": "JM01000000121000", "name": "", "flag": "1"
    }


def test_utf8_with_bom_and_kanji_in_a_fixed_file_counts_cp932_bytes(tmp_path: Path) -> None:
    line = format_record(LAYOUT, VALUES[0], "fixed")
    path = _write(tmp_path, "f.txt", [line], "utf-8", "\n", bom=True)
    f = read_records(path, LAYOUT)
    (row,) = list(f)
    assert f.shape.bom and f.shape.encoding == "utf-8" and f.shape.shape == "fixed"
    assert row.ok and row.values["name"] == "山田太郎"


def test_cp932_is_told_from_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    path = _write(tmp_path, "f.csv", [format_record(LAYOUT, VALUES[0])], "cp932", "\r\n")
    assert sniff(path, LAYOUT).encoding == "cp932"
    (row,) = list(read_records(path, LAYOUT))
    assert row.values["name"] == "山田太郎"


def test_blank_lines_and_a_dos_eof_mark_are_skipped_and_lines_keep_their_numbers(tmp_path: Path) -> None:
    lines = [format_record(LAYOUT, VALUES[0]), "", format_record(LAYOUT, VALUES[1]), "\x1a"]
    rows = list(read_records(_write(tmp_path, "f", lines, "utf-8", "\r\n"), LAYOUT))
    assert [r.line for r in rows] == [1, 3]


def test_a_number_without_its_zero_fill_is_filled(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"1,12345,JM01000000121000,,\n")
    (row,) = list(read_records(path, LAYOUT))
    assert row.ok and row.values["kind"] == "01" and row.values["number"] == "000000000012345"


@pytest.mark.parametrize(
    ("line", "field", "reason"),
    [
        ("01,0000000000123,JM01000000121000,,,9", "", "項目の数が違います（5 項目のはずが 6 項目）"),
        ("01,00000000001234567,JM01000000121000,,", "宛名番号", "15 バイト以内"),
        ("01,000000000012a45,JM01000000121000,,", "宛名番号", "半角数字"),
        ("01,００００１,JM01000000121000,,", "宛名番号", "全角"),
        ("01,,JM0100 000012100,,", "事務コード", "空白"),
        ("01,,,,", "事務コード", "必須"),
        ("01,,JM01000000121000,山田太郎山田太郎,", "氏名", "10 バイト以内"),
    ],
)
def test_a_bad_record_names_file_line_field_and_reason(tmp_path: Path, line: str, field: str, reason: str) -> None:
    good = format_record(LAYOUT, VALUES[0])
    path = _write(tmp_path, "req.DAT", [good, line, good], "utf-8", "\r\n")
    rows = list(read_records(path, LAYOUT))
    assert [r.ok for r in rows] == [True, False, True]  # reading goes on past the bad one
    err = rows[1].errors[0]
    assert isinstance(err, RecordError)
    assert (err.file, err.line, err.field) == ("req.DAT", 2, field)
    assert reason in err.reason
    assert err.title.startswith("req.DAT の 2 行目") and reason in err.title
    assert err.code == "bad_record" and err.status == 422
    assert err.to_dict()["line"] == 2 and err.to_dict()["field"] == field


def test_every_bad_field_of_a_record_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"AB,x,,,\r\n")
    (row,) = list(read_records(path, LAYOUT))
    assert [e.field for e in row.errors] == ["番号体系", "宛名番号", "事務コード"]
    assert row.cells == ("AB", "x", "", "", "")


def test_fixed_records_of_the_wrong_length_and_split_kanji(tmp_path: Path) -> None:
    good = format_record(LAYOUT, VALUES[0], "fixed")
    short = good[:-3]
    # 氏名 starts at byte 33: a kanji at byte 42–43 straddles 氏名 (10 bytes) and 区分
    split = good[:33] + "山田太郎 山"
    path = _write(tmp_path, "fixed.DAT", [good, short, split], "cp932", "\r\n")
    rows = list(read_records(path, LAYOUT))
    assert rows[0].ok
    assert "44 バイトのはずが 41 バイト" in rows[1].errors[0].reason
    assert "2バイト文字が切れています" in rows[2].errors[0].reason and rows[2].errors[0].line == 3


def test_undecodable_bytes_are_one_record_error(tmp_path: Path) -> None:
    path = tmp_path / "f"
    good = format_record(LAYOUT, VALUES[0]).encode("cp932")
    path.write_bytes(good + b"\r\n" + b"01,,JM01000000121000,\x81\xff,\r\n")
    rows = list(read_records(path, LAYOUT))
    assert rows[0].ok
    assert rows[1].errors[0].line == 2 and "CP932" in rows[1].errors[0].reason


def test_first_error_for_all_or_nothing_callers(tmp_path: Path) -> None:
    path = _write(tmp_path, "f", [format_record(LAYOUT, VALUES[0]), "x"], "utf-8", "\n")
    err = first_error(read_records(path, LAYOUT))
    assert err is not None and err.line == 2
    assert first_error(read_records(_write(tmp_path, "g", [format_record(LAYOUT, VALUES[0])], "utf-8", "\n"), LAYOUT)) is None


def test_record_error_survives_pickling() -> None:
    err = pickle.loads(pickle.dumps(RecordError("a.DAT", 3, "宛名番号", "理由")))
    assert (err.file, err.line, err.field, err.reason) == ("a.DAT", 3, "宛名番号", "理由")


def test_writer_in_the_same_shape_and_quoted_extra_cells() -> None:
    buf = io.BytesIO()
    w = RecordWriter.like(buf, FileShape("cp932", False, "\r\n", "comma"))
    w.record(LAYOUT, VALUES[1], extra=["09", "正常終了", 'a,"b"'])
    w.cells(["x", "y"])
    assert buf.getvalue().decode("cp932") == '02,,JM01000000121000,,,09,正常終了,"a,""b"""\r\nx,y\r\n'


def test_cp932_writer_refuses_what_cp932_cannot_carry() -> None:
    w = RecordWriter(io.BytesIO(), encoding="cp932", source="out.csv")
    with pytest.raises(cp932.Cp932Error) as exc:
        w.record(LAYOUT, {**VALUES[0], "name": "𠮷野"})
    assert exc.value.extra["column"] == "氏名" and exc.value.extra["line"] == 1


def test_a_value_longer_than_its_field_is_refused_on_write() -> None:
    with pytest.raises(ValueError):
        format_record(LAYOUT, {**VALUES[0], "number": "1" * 16})


def test_record_error_takes_registered_422_codes_only() -> None:
    assert RecordError("f", 1, "日付", "理由", code="bad_date").status == 422
    for code in ("affair_not_permitted", "no_such_code"):
        with pytest.raises(ValueError):
            RecordError("f", 1, "", "理由", code=code)
