"""Files of the non-resident data set: business records (CSV in UTF-8 or CP932, JSON Lines)
and the ground truth (CSV). Re-exported by `renkei.dummy.noise`.

Business CSV: Japanese header (`RECORD_CSV_HEADER`), CRLF, no BOM, every value as
entered; the noise kinds are not in it. A value CP932 cannot carry faithfully (𠮷, NGUYỄN;
also U+2212, which CP932 would silently turn into U+FF0D) stops the write with
`UnencodableCharacterError` naming the record and the character; nothing is written.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from renkei.core.errors import Problem
from renkei.dummy.noise_date import read_birth_date
from renkei.dummy.noise_records import NonResidentRecord, TruthRow

__all__ = [
    "RECORD_CSV_HEADER",
    "TRUTH_CSV_HEADER",
    "NoiseFileError",
    "UnencodableCharacterError",
    "read_records_csv",
    "read_records_jsonl",
    "read_truth_csv",
    "write_records_csv",
    "write_records_jsonl",
    "write_truth_csv",
]

RECORD_CSV_HEADER: Final = (
    "レコード番号",
    "業務システム",
    "業務宛名番号",
    "氏",
    "名",
    "氏カナ",
    "名カナ",
    "性別",
    "生年月日",
    "郵便番号",
    "住所",
)
TRUTH_CSV_HEADER: Final = ("record_id", "system", "true_key")
SUPPORTED_ENCODINGS: Final = ("utf-8", "cp932")


class UnencodableCharacterError(Problem):
    """A record holds a character the file's encoding cannot carry."""

    def __init__(self, record_id: str, char: str, encoding: str) -> None:
        codepoint = f"U+{ord(char):04X}"
        super().__init__(
            422,
            "unencodable_character",
            "ファイルの文字コードで表せない文字があります。",
            f"レコード {record_id} の文字「{char}」({codepoint}) は {encoding} で表せません。",
            record_id=record_id,
            character=codepoint,
            encoding=encoding,
        )


class NoiseFileError(Problem):
    """A file that is not in the layout this module writes."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            422,
            "invalid_noise_file",
            "住登外者ファイルの形式が正しくありません。",
            f"{path.name}: {detail}",
        )


def _encoding(name: str) -> str:
    try:
        canonical = codecs.lookup(name).name
    except LookupError:
        canonical = name
    normalized = {"shift_jis": "cp932", "ms932": "cp932"}.get(canonical, canonical)
    if normalized not in SUPPORTED_ENCODINGS:
        raise Problem(
            422,
            "unsupported_encoding",
            "この文字コードには対応していません。",
            f"「{name}」は使えません（utf-8 または cp932）。",
        )
    return normalized


def _row(record: NonResidentRecord) -> tuple[str, ...]:
    return (
        record.record_id,
        record.system,
        record.business_atena_no or "",
        record.family_name,
        record.given_name,
        record.family_kana,
        record.given_kana,
        record.sex,
        record.birth_date_text,
        record.postal_code or "",
        record.address,
    )


def _check_encodable(record_id: str, values: Sequence[str], encoding: str) -> None:
    text = "".join(values)
    try:
        if text.encode(encoding).decode(encoding) == text:
            return
    except UnicodeEncodeError:
        pass
    for char in text:  # slow path: find the first offending character
        try:
            faithful = char.encode(encoding).decode(encoding) == char
        except UnicodeEncodeError:
            faithful = False
        if not faithful:
            raise UnencodableCharacterError(record_id, char, encoding)


def write_records_csv(
    records: Iterable[NonResidentRecord], path: Path, encoding: str = "utf-8"
) -> None:
    """The business file: Japanese header, one row per record, in UTF-8 or CP932."""
    encoding = _encoding(encoding)
    rows: list[tuple[str, ...]] = [RECORD_CSV_HEADER]
    for record in records:
        row = _row(record)
        _check_encodable(record.record_id, row, encoding)
        rows.append(row)
    with path.open("w", encoding=encoding, newline="") as f:
        csv.writer(f).writerows(rows)


def _record_from_row(row: Sequence[str]) -> NonResidentRecord:
    (rid, system, atena_no, fam, given, fam_kana, given_kana, sex, birth, postal, address) = row
    return NonResidentRecord(
        record_id=rid,
        system=system,
        business_atena_no=atena_no or None,
        family_name=fam,
        given_name=given,
        family_kana=fam_kana,
        given_kana=given_kana,
        sex=sex,
        birth_date=read_birth_date(birth),
        birth_date_text=birth,
        postal_code=postal or None,
        address=address,
        noise=(),
    )


def _read_csv(path: Path, encoding: str, header: Sequence[str], what: str) -> list[list[str]]:
    """The data rows of a CSV whose first row is `header`, each with as many values."""
    try:
        with path.open(encoding=encoding, newline="") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError:
        raise NoiseFileError(path, f"{encoding} として読めません。") from None
    if not rows or tuple(rows[0]) != tuple(header):
        raise NoiseFileError(path, f"見出し行が{what}のものではありません。")
    for number, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise NoiseFileError(path, f"{number}行目の項目数が正しくありません。")
    return rows[1:]


def read_records_csv(path: Path, encoding: str = "utf-8") -> list[NonResidentRecord]:
    """Records back from a business CSV (without their noise kinds)."""
    rows = _read_csv(path, _encoding(encoding), RECORD_CSV_HEADER, "住登外者ファイル")
    return [_record_from_row(row) for row in rows]


def _json_object(record: NonResidentRecord, include_noise: bool) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "record_id": record.record_id,
        "system": record.system,
        "business_atena_no": record.business_atena_no,
        "family_name": record.family_name,
        "given_name": record.given_name,
        "family_kana": record.family_kana,
        "given_kana": record.given_kana,
        "sex": record.sex,
        "birth_date": record.birth_date.isoformat() if record.birth_date else None,
        "birth_date_text": record.birth_date_text,
        "postal_code": record.postal_code,
        "address": record.address,
    }
    if include_noise:
        obj["noise"] = list(record.noise)
    return obj


def write_records_jsonl(
    records: Iterable[NonResidentRecord], path: Path, *, include_noise: bool = False
) -> None:
    """One JSON object per line, UTF-8; `include_noise` adds the noise kinds for analysis."""
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for record in records:
            f.write(json.dumps(_json_object(record, include_noise), ensure_ascii=False) + "\n")


def _record_from_json(obj: dict[str, Any]) -> NonResidentRecord:
    text = str(obj["birth_date_text"])
    atena_no, postal = obj["business_atena_no"], obj["postal_code"]
    return NonResidentRecord(
        record_id=str(obj["record_id"]),
        system=str(obj["system"]),
        business_atena_no=None if atena_no is None else str(atena_no),
        family_name=str(obj["family_name"]),
        given_name=str(obj["given_name"]),
        family_kana=str(obj["family_kana"]),
        given_kana=str(obj["given_kana"]),
        sex=str(obj["sex"]),
        birth_date=read_birth_date(text),
        birth_date_text=text,
        postal_code=None if postal is None else str(postal),
        address=str(obj["address"]),
        noise=tuple(str(kind) for kind in obj.get("noise", ())),
    )


def read_records_jsonl(path: Path) -> list[NonResidentRecord]:
    """Records back from a JSON Lines file (noise kinds too, when it has them)."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError:
        raise NoiseFileError(path, "UTF-8 として読めません。") from None
    out: list[NonResidentRecord] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(_record_from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise NoiseFileError(path, f"{number}行目を読めません。") from None
    return out


def write_truth_csv(truth: Iterable[TruthRow], path: Path) -> None:
    """The ground truth: record_id, system, true_key; UTF-8, CRLF."""
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(TRUTH_CSV_HEADER)
        writer.writerows((row.record_id, row.system, row.true_key) for row in truth)


def read_truth_csv(path: Path) -> list[TruthRow]:
    """Truth rows back from `write_truth_csv`'s file."""
    rows = _read_csv(path, "utf-8", TRUTH_CSV_HEADER, "正解ファイル")
    return [TruthRow(record_id, system, key) for record_id, system, key in rows]
