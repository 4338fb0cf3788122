"""Streaming bulk-file readers: JSON Lines and CSV, errors naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from renkei.core.errors import Problem
from renkei.core.records import Columns, detect_format, file_digest, read_records

COLUMNS = Columns(
    names={"個人番号": "individual_number", "氏": "family_name"},
    nested={"業務宛名番号:": "business_numbers"},
    required=frozenset({"individual_number"}),
)


def _problem(path: Path, columns: Columns | None = COLUMNS, skip: int = 0) -> Problem:
    with pytest.raises(Problem) as exc:
        list(read_records(path, columns, skip=skip))
    return exc.value


def test_jsonl_lines_numbered_blank_lines_ignored(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n\n{"a": "二"}\n{"a": 3}', encoding="utf-8")
    assert list(read_records(path)) == [(1, {"a": 1}), (3, {"a": "二"}), (4, {"a": 3})]
    assert list(read_records(path, skip=2)) == [(4, {"a": 3})]
    assert detect_format(tmp_path / "x.NDJSON") == "jsonl"


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        (b'{"a": 1}\n{"a": \n', 2, "JSON として読めません"),
        (b'{"a": 1}\n\n[1, 2]\n', 3, "JSON オブジェクト"),
        (b'{"a": 1}\n{"a": "\xff\xfe"}\n', 2, "UTF-8"),
    ],
)
def test_jsonl_bad_line_named(tmp_path: Path, body: bytes, line: int, words: str) -> None:
    path = tmp_path / "people.jsonl"
    path.write_bytes(body)
    problem = _problem(path, None)
    assert problem.code == "bad_record" and problem.status == 422
    assert f"people.jsonl の {line} 行目" in problem.title and words in problem.title
    assert problem.extra["line"] == line


def test_jsonl_stops_at_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 3}\n', encoding="utf-8")
    got: list[int] = []
    with pytest.raises(Problem):
        for line, _ in read_records(path):
            got.append(line)
    assert got == [1]


def test_csv_columns_mapped_nested_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    text = '個人番号,氏,業務宛名番号:tax,業務宛名番号:juki\r\n123,"山田\r\n太郎",T1,\r\n456,鈴木,,J2\r\n'
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert list(read_records(path, COLUMNS)) == [
        (2, {"individual_number": "123", "family_name": "山田\r\n太郎", "business_numbers": {"tax": "T1"}}),
        (4, {"individual_number": "456", "family_name": "鈴木", "business_numbers": {"juki": "J2"}}),
    ]
    assert [line for line, _ in read_records(path, COLUMNS, skip=1)] == [4]
    # English field names are accepted as headers too.
    other = tmp_path / "b.csv"
    other.write_text("individual_number\n789\n", encoding="utf-8")
    assert list(read_records(other, COLUMNS)) == [(2, {"individual_number": "789", "business_numbers": {}})]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("個人番号,氏\n1,a\n2,b,c\n", 3, "列の数"),
        ("個人番号,年齢\n1,2\n", 1, "年齢"),
        ("氏\na\n", 1, "個人番号"),
        ("個人番号,氏,氏\n", 1, "2回"),
        ("", 1, "見出し行"),
    ],
)
def test_csv_bad_line_named(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = tmp_path / "people.csv"
    path.write_text(text, encoding="utf-8")
    problem = _problem(path)
    assert problem.code == "bad_record"
    assert f"people.csv の {line} 行目" in problem.title and words in problem.title


def test_csv_undecodable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes("個人番号,氏\n1,a\n".encode() + "2,山田\n".encode("cp932"))
    problem = _problem(path)
    assert "people.csv の 3 行目" in problem.title and "UTF-8" in problem.title


def test_unknown_suffix_refused(tmp_path: Path) -> None:
    path = tmp_path / "people.txt"
    path.write_text("{}", encoding="utf-8")
    problem = _problem(path)
    assert problem.code == "unsupported_format" and ".jsonl" in problem.title


def test_digest_is_sha256_of_the_bytes(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "a.jsonl"
    path.write_bytes(b"x" * 3_000_000)
    assert file_digest(path) == hashlib.sha256(b"x" * 3_000_000).hexdigest()
