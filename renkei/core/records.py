"""Streaming readers for bulk files: JSON Lines and CSV, of any size.

A bulk file is read one line at a time and never held whole: `read_records` yields
``(line number, record)`` where the record is a dict of field names. The format is
told by the suffix (`detect_format`): ``.jsonl``/``.ndjson`` (one JSON object a
line; blank lines are ignored) or ``.csv`` (UTF-8, a BOM allowed, a header row).

CSV headers are mapped to field names by a per-kind `Columns` table: Japanese column
names (``個人番号`` → ``individual_number``), the field names themselves also accepted,
and prefixed columns gathered into one dict field (``業務宛名番号:tax`` →
``business_numbers["tax"]``, an empty cell left out). Every CSV value is a string.

A line that cannot be read — not JSON, not an object, a CSV row with the wrong number
of cells, bytes that are not UTF-8, an unknown CSV column — is a `Problem` 422
``bad_record`` whose title names the file and the line in Japanese; nothing after it
is yielded. Line numbers are 1-based physical lines of the file (the CSV header is
line 1), so a staff member finds the line in an editor.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Literal

import orjson

from renkei.core.errors import Problem

__all__ = [
    "FORMATS",
    "Columns",
    "Format",
    "bad_record",
    "detect_format",
    "file_digest",
    "read_records",
]

Format = Literal["jsonl", "csv"]
FORMATS: Final[dict[str, Format]] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
_BOM: Final = b"\xef\xbb\xbf"
_DIGEST_CHUNK: Final = 1 << 20


@dataclass(frozen=True)
class Columns:
    """How one kind of record's CSV headers map to field names.

    ``names``: column name → field (Japanese names; each field's own name is accepted
    too). ``nested``: a column-name prefix → dict field, e.g. ``{"業務宛名番号:":
    "business_numbers"}`` reads ``業務宛名番号:tax`` into ``business_numbers["tax"]``.
    ``required``: fields the header must carry (missing ones refuse the file at line 1).
    """

    names: Mapping[str, str]
    nested: Mapping[str, str] = field(default_factory=dict)
    required: frozenset[str] = frozenset()

    def field_of(self, header: str) -> tuple[str, str | None] | None:
        """(field, key inside it or None) for one header cell; None if unknown."""
        name = header.strip()
        if name in self.names:
            return self.names[name], None
        if name in self.names.values():
            return name, None
        for prefix, target in self.nested.items():
            if name.startswith(prefix) and len(name) > len(prefix):
                return target, name[len(prefix) :]
        return None


def bad_record(source: str, line: int, reason: str, **extra: Any) -> Problem:
    """The one error for a record that cannot be taken: file and line named in Japanese."""
    return Problem(
        422, "bad_record", f"{source} の {line} 行目を読み込めません: {reason}", reason, source=source, line=line, **extra
    )


def detect_format(path: Path) -> Format:
    """The format by suffix; another suffix is a Problem 422 ``unsupported_format``."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise Problem(
            422,
            "unsupported_format",
            f"{path.name}: ファイル形式を判別できません（拡張子は .jsonl、.ndjson、.csv のいずれかにしてください）。",
        )
    return fmt


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes (hex), read in chunks: what identifies an import."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_DIGEST_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _decoded(fh: IO[bytes], source: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of each physical line, decoded as UTF-8 one line at a time so
    that undecodable bytes are reported at their line."""
    for number, raw in enumerate(fh, start=1):
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise bad_record(source, number, f"UTF-8 として読めないバイトがあります（{exc.start + 1} バイト目）。") from None


def _jsonl(fh: IO[bytes], source: str, skip: int) -> Iterator[tuple[int, dict[str, Any]]]:
    seen = 0
    for number, text in _decoded(fh, source):
        if not text.strip():
            continue
        seen += 1
        if seen <= skip:  # already applied by an earlier run: not even parsed
            continue
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise bad_record(source, number, "JSON として読めません。") from None
        if not isinstance(value, dict):
            raise bad_record(source, number, "1行に1つの JSON オブジェクト（{…}）を書いてください。")
        yield number, value


class _Lines:
    """Feeds csv.reader decoded lines and remembers the physical line last read, so a
    row that spans lines (a quoted newline) is reported at the line where it starts."""

    def __init__(self, lines: Iterator[tuple[int, str]]) -> None:
        self._lines = lines
        self.line = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        self.line, text = next(self._lines)
        return text


def _csv(fh: IO[bytes], source: str, columns: Columns, skip: int) -> Iterator[tuple[int, dict[str, Any]]]:
    lines = _Lines(_decoded(fh, source))
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise bad_record(source, 1, "見出し行がありません。") from None
    except csv.Error as exc:
        raise bad_record(source, 1, f"CSV として読めません（{exc}）。") from None
    fields: list[tuple[str, str | None]] = []
    for cell in header:
        target = columns.field_of(cell)
        if target is None:
            raise bad_record(source, 1, f"見出し「{cell[:40]}」は使えない列名です。")
        fields.append(target)
    plain = [f for f, key in fields if key is None]
    if len(plain) != len(set(plain)):
        raise bad_record(source, 1, "同じ列が見出しに2回あります。")
    missing = sorted(columns.required - set(plain))
    if missing:
        wanted = {v: k for k, v in columns.names.items()}
        raise bad_record(source, 1, f"列「{'」「'.join(wanted.get(m, m) for m in missing)}」がありません。")
    seen = 0
    while True:
        start = lines.line + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise bad_record(source, start, f"CSV として読めません（{exc}）。") from None
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        seen += 1
        if seen <= skip:
            continue
        if len(row) != len(fields):
            raise bad_record(source, start, f"列の数が見出しと違います（見出し {len(fields)} 列、この行 {len(row)} 列）。")
        record: dict[str, Any] = {}
        for (name, key), value in zip(fields, row, strict=True):
            if key is None:
                record[name] = value
            elif value.strip():
                record.setdefault(name, {})[key] = value.strip()
        for name in columns.nested.values():
            record.setdefault(name, {})
        yield start, record


def read_records(
    path: Path, columns: Columns | None = None, *, skip: int = 0, source: str | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Stream ``(line number, record)`` from a JSON Lines or CSV file.

    ``skip`` records (not lines) are passed over first — those an interrupted import
    already committed. ``source`` names the file in errors (default: its name).
    CSV needs ``columns``.
    """
    fmt = detect_format(path)
    name = source or path.name
    if fmt == "csv" and columns is None:
        raise ValueError("CSV needs a column table")
    with path.open("rb") as fh:
        if fmt == "jsonl":
            yield from _jsonl(fh, name, skip)
        else:
            assert columns is not None
            yield from _csv(fh, name, columns, skip)
