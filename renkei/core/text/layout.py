"""Fixed-layout record files: the shapes real municipal clients write, read and written.

A `Layout` is an ordered list of `Field` s — name, Japanese label, width in bytes and a
kind that says how the field is padded:

- ``numeric``: ASCII digits, zero-filled on the left (``000000000012345``);
- ``code``: printable ASCII (``JM01000000121000``), space-filled on the right;
- ``text``: any text, space-filled on the right; its width counts CP932 bytes (a kanji
  is two), because that is how fixed-width files have always been measured, whatever
  encoding the file itself uses.

One record is one line, in one of two shapes:

- ``comma``: the fields joined by commas (a field may be written at full width, shorter,
  or with zero width when empty — real clients leave empty fields zero-width);
- ``fixed``: the fields side by side at exactly their widths, no separator.

What `read_records` accepts, as a real client may send it: UTF-8 (with or without a
BOM) or CP932 — told from the bytes (a BOM, else valid UTF-8, else CP932; for ASCII-only
files, the two are the same bytes); CRLF or LF line ends; blank lines and a final DOS
end-of-file mark (``\\x1a``) are ignored. The shape is told from the first record (unless
given): ``fixed`` if it is exactly the layout's width with no comma between fields, else
``comma``.

Each record is read on its own: a malformed one yields a `Row` carrying its
`RecordError` s (file, line, field, reason in Japanese) and reading goes on, so a
caller chooses valid-records-only or all-or-nothing itself (`Row.ok`,
`first_error`). Line numbers are the file's physical lines, 1-based.

`format_record` / `RecordWriter` write records in the same shapes (CRLF by default,
UTF-8 or CP932 — CP932 strictly, see `renkei.core.text.cp932`), and `RecordWriter.cells`
writes free CSV cells (a result file's extra columns), quoted only where needed.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final, Literal

from renkei.core.errors import STATUS_OF, Problem
from renkei.core.text import cp932

__all__ = [
    "Encoding",
    "Field",
    "FileShape",
    "Kind",
    "Layout",
    "RecordError",
    "RecordFile",
    "RecordWriter",
    "Row",
    "Shape",
    "first_error",
    "format_record",
    "read_records",
    "sniff",
]

Kind = Literal["numeric", "code", "text"]
Shape = Literal["comma", "fixed"]
Encoding = Literal["utf-8", "cp932"]
Newline = Literal["\r\n", "\n"]

_BOM: Final = b"\xef\xbb\xbf"
_EOF_MARK: Final = "\x1a"
MAX_LINE_BYTES: Final = 64 * 1024  # a "line" longer than this is not a record of any layout here
_CHUNK: Final = 1 << 20
_KIND_LABEL: Final = {"numeric": "数字", "code": "半角英数字", "text": "文字"}


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a layout. ``width`` is in bytes (CP932 bytes for text)."""

    name: str
    label: str
    width: int
    kind: Kind = "code"
    required: bool = False

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"field {self.name}: width must be at least 1")

    def pad(self, value: str) -> str:
        """The value at full width: numeric zero-filled left, others space-filled right.
        An empty value is all spaces (an empty number is not zero)."""
        size = _width(value)
        if size > self.width:
            raise ValueError(f"{self.label}: {size} bytes do not fit in {self.width}")
        if not value:
            return " " * self.width
        if self.kind == "numeric":
            return value.rjust(self.width, "0")
        return value + " " * (self.width - size)


@dataclass(frozen=True)
class Layout:
    """An ordered set of fields; ``name`` is the record kind in Japanese (for messages)."""

    name: str
    fields: tuple[Field, ...]
    width: int = field(init=False)

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(names) != len(set(names)):
            raise ValueError(f"layout {self.name}: a field name is used twice")
        object.__setattr__(self, "width", sum(f.width for f in self.fields))

    def __len__(self) -> int:
        return len(self.fields)

    def get(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


class RecordError(Problem):
    """One malformed record: the file, the line, the field (its Japanese label; "" when
    the record as a whole is wrong) and the reason, in Japanese. ``code`` is
    ``bad_record`` for what the layout refuses; a caller checking a record's meaning may
    give a sharper 422 code (``bad_date``, ``invalid_org_code`` …)."""

    def __init__(self, file: str, line: int, field: str, reason: str, code: str = "bad_record") -> None:
        if STATUS_OF.get(code) != 422:
            raise ValueError(f"RecordError needs a registered 422 code, not {code!r}")
        where = f"{file} の {line} 行目" + (f"（項目「{field}」）" if field else "")
        super().__init__(422, code, f"{where}: {reason}", reason, source=file, line=line, field=field)
        self.file = file
        self.line = line
        self.field = field
        self.reason = reason

    def __reduce__(self) -> tuple[type[RecordError], tuple[str, int, str, str, str]]:
        return (RecordError, (self.file, self.line, self.field, self.reason, self.code))


@dataclass(frozen=True, slots=True)
class Row:
    """One record as read: its line, the raw cells (comma-split or sliced at the layout's
    widths, as many as were found), the values by field name (padding removed: spaces
    on the right of codes and text; an all-space field is ""), and its errors."""

    line: int
    cells: tuple[str, ...]
    values: Mapping[str, str]
    errors: tuple[RecordError, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True, slots=True)
class FileShape:
    """How a file is written: what a reply written "in the same shape" copies."""

    encoding: Encoding
    bom: bool
    newline: Newline
    shape: Shape


@dataclass(frozen=True)
class RecordFile:
    """A file opened for reading: its shape, and its rows (read once, streamed)."""

    source: str
    shape: FileShape
    rows: Iterator[Row]

    def __iter__(self) -> Iterator[Row]:
        return self.rows


def first_error(rows: Iterable[Row]) -> RecordError | None:
    """The first error of any row (for all-or-nothing files); consumes ``rows``."""
    for row in rows:
        if row.errors:
            return row.errors[0]
    return None


def _width(text: str) -> int:
    """Bytes of ``text`` in CP932 (what a fixed width counts); a character CP932 lacks counts 2."""
    if text.isascii():
        return len(text)
    total = 0
    for ch in text:
        try:
            total += len(ch.encode("cp932"))
        except UnicodeEncodeError:
            total += 2
    return total


# --- reading ----------------------------------------------------------------------------


Source = Path | bytes


def _open(src: Source) -> IO[bytes]:
    return io.BytesIO(src) if isinstance(src, bytes) else src.open("rb")


def _is_utf8(src: Source) -> bool:
    if isinstance(src, bytes):
        try:
            src.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with src.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _first_line(src: Source) -> bytes:
    with _open(src) as fh:
        for raw in fh:
            stripped = raw.rstrip(b"\r\n")
            if stripped.startswith(_BOM):
                stripped = stripped[len(_BOM) :]
            if stripped.strip(b" \t\x1a"):
                return raw
    return b""


def sniff(src: Source, layout: Layout, shape: Shape | None = None) -> FileShape:
    """The file's encoding, BOM, line end and shape (see the module docstring); ``src``
    is a path or the file's bytes."""
    with _open(src) as fh:
        bom = fh.read(len(_BOM)) == _BOM
    encoding: Encoding = "utf-8" if bom or _is_utf8(src) else "cp932"
    first = _first_line(src)
    newline: Newline = "\r\n" if first.endswith(b"\r\n") else "\n"
    if shape is None:
        text = first.rstrip(b"\r\n").decode(encoding, errors="replace").lstrip("\ufeff")
        shape = _shape_of(text, layout)
    return FileShape(encoding=encoding, bom=bom, newline=newline, shape=shape)


def _shape_of(text: str, layout: Layout) -> Shape:
    if text.count(",") == len(layout) - 1:
        return "comma"
    if _width(text) == layout.width:
        return "fixed"
    return "comma" if "," in text else "fixed"


def _lines(fh: IO[bytes], encoding: Encoding) -> Iterator[tuple[int, str | None, str]]:
    """(line, text or None when undecodable, reason) of every physical line."""
    for number, raw in enumerate(fh, start=1):
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        raw = raw.rstrip(b"\n").rstrip(b"\r")
        if len(raw) > MAX_LINE_BYTES:
            yield number, None, f"1行が長すぎます（{len(raw):,} バイト）。改行のないファイルではありませんか。"
            continue
        try:
            yield number, raw.decode(encoding), ""
        except UnicodeDecodeError as exc:
            name = "UTF-8" if encoding == "utf-8" else "CP932（シフトJIS）"
            yield number, None, f"{name} として読めないバイトがあります（{exc.start + 1} バイト目）。"


def _split_comma(text: str) -> list[str]:
    if '"' not in text:
        return text.split(",")
    # A spreadsheet may have quoted a field; real clients never do.
    return next(csv.reader([text]))


def _split_fixed(text: str, layout: Layout) -> tuple[list[str], str]:
    """Cells at the layout's byte widths; a reason when the line cannot be cut."""
    if text.isascii():
        data = text
        if len(data) != layout.width:
            return [], f"レコードの長さが違います（{layout.width} バイトのはずが {len(data)} バイト）。"
        cells = []
        at = 0
        for f in layout.fields:
            cells.append(data[at : at + f.width])
            at += f.width
        return cells, ""
    try:
        raw = text.encode("cp932")
    except UnicodeEncodeError as exc:
        return [], f"固定長の桁数を数えられない文字があります（{exc.start + 1} 文字目、{cp932.describe(text[exc.start])}）。"
    if len(raw) != layout.width:
        return [], f"レコードの長さが違います（{layout.width} バイトのはずが {len(raw)} バイト）。"
    cells = []
    at = 0
    for f in layout.fields:
        piece = raw[at : at + f.width]
        at += f.width
        try:
            cells.append(piece.decode("cp932"))
        except UnicodeDecodeError:
            return [], f"項目「{f.label}」の境目で2バイト文字が切れています。"
    return cells, ""


def _check(f: Field, cell: str) -> tuple[str, str]:
    """(value, reason) of one cell: the value without padding, or why it is refused."""
    size = _width(cell)
    if size > f.width:
        return "", f"{f.width} バイト以内で指定してください（{size} バイトあります）。"
    value = cell.rstrip(" ")
    if f.kind == "text":
        if any(ord(c) < 0x20 or c == "\x7f" for c in value):
            return "", "制御文字が含まれています。"
    else:
        if not value.isascii():
            return "", f"{_KIND_LABEL[f.kind]}は半角で指定してください（全角の文字があります）。"
        if " " in value:
            return "", "値の途中に空白があります。"
        if not value.isprintable():
            return "", "制御文字が含まれています。"
        if f.kind == "numeric" and value:
            if not value.isdigit():
                return "", "半角数字で指定してください。"
            if len(value) < f.width:
                value = value.rjust(f.width, "0")  # a client that forgot the zero fill
    if f.required and not value:
        return "", "必須の項目が空です。"
    return value, ""


def _row(number: int, text: str, layout: Layout, shape: Shape, source: str) -> Row:
    if shape == "comma":
        try:
            cells = _split_comma(text)
        except csv.Error as exc:
            return Row(number, (text,), {}, (RecordError(source, number, "", f"CSV として読めません（{exc}）。"),))
        if len(cells) != len(layout):
            reason = f"項目の数が違います（{len(layout)} 項目のはずが {len(cells)} 項目）。"
            return Row(number, tuple(cells), {}, (RecordError(source, number, "", reason),))
    else:
        cells, reason = _split_fixed(text, layout)
        if reason:
            return Row(number, (text,), {}, (RecordError(source, number, "", reason),))
    values: dict[str, str] = {}
    errors: list[RecordError] = []
    for f, cell in zip(layout.fields, cells, strict=True):
        value, why = _check(f, cell)
        if why:
            errors.append(RecordError(source, number, f.label, why))
        else:
            values[f.name] = value
    return Row(number, tuple(cells), values, tuple(errors))


def _rows(src: Source, layout: Layout, fs: FileShape, source: str) -> Iterator[Row]:
    with _open(src) as fh:
        for number, text, reason in _lines(fh, fs.encoding):
            if text is None:
                yield Row(number, (), {}, (RecordError(source, number, "", reason),))
                continue
            if not text.strip(" \t") or text == _EOF_MARK:
                continue
            yield _row(number, text, layout, fs.shape, source)


def read_records(
    src: Source, layout: Layout, *, source: str | None = None, shape: Shape | None = None
) -> RecordFile:
    """Open ``src`` (a path, or a file's bytes as uploaded) as records of ``layout``: its
    `FileShape` and a stream of `Row` s, one per non-blank line, malformed ones carrying
    their errors. ``source`` names the file in errors (default: the path's name)."""
    name = source or (src.name if isinstance(src, Path) else "")
    fs = sniff(src, layout, shape)
    return RecordFile(source=name, shape=fs, rows=_rows(src, layout, fs, name))


# --- writing ----------------------------------------------------------------------------


def format_record(layout: Layout, values: Mapping[str, str], shape: Shape = "comma") -> str:
    """One record as a line (without its line end). In ``comma`` shape an empty field is
    zero-width, as real clients write it; in ``fixed`` every field is at full width.
    A value longer than its field, or a cell with a comma in comma shape, is a ValueError."""
    cells = []
    for f in layout.fields:
        value = values.get(f.name, "")
        if shape == "comma":
            if "," in value or '"' in value or "\n" in value or "\r" in value:
                raise ValueError(f"{f.label}: a separator inside a field")
            cells.append(f.pad(value) if value else "")
        else:
            cells.append(f.pad(value))
    return ("," if shape == "comma" else "").join(cells)


def _csv_cell(value: str) -> str:
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


class RecordWriter:
    """Writes lines to a binary stream in one encoding and line end. CP932 is strict: a
    character it cannot carry faithfully is a `cp932.Cp932Error` naming file, line and
    column (nothing of that line is written)."""

    def __init__(
        self,
        out: IO[bytes],
        *,
        encoding: Encoding = "utf-8",
        newline: Newline = "\r\n",
        bom: bool = False,
        source: str = "",
    ) -> None:
        self._out = out
        self.encoding: Encoding = encoding
        self.newline: Newline = newline
        self.source = source
        self.lines = 0
        if bom and encoding == "utf-8":
            out.write(_BOM)

    @classmethod
    def like(cls, out: IO[bytes], shape: FileShape, source: str = "") -> RecordWriter:
        """A writer in the same encoding, BOM and line end as a file read."""
        return cls(out, encoding=shape.encoding, newline=shape.newline, bom=shape.bom, source=source)

    def _line(self, text: str, columns: Sequence[str]) -> None:
        self.lines += 1
        if self.encoding == "cp932" and not cp932.is_faithful(text):
            bad = cp932.first_unfaithful(text)
            column = ""
            if columns:
                # which cell: count separators before the bad character
                column = columns[min(text[:bad].count(","), len(columns) - 1)]
            raise cp932.Cp932Error(self.source, self.lines, str(self.lines), column, text[bad])
        self._out.write((text + self.newline).encode(self.encoding))

    def record(
        self,
        layout: Layout,
        values: Mapping[str, str],
        shape: Shape = "comma",
        extra: Sequence[str] = (),
        extra_labels: Sequence[str] = (),
    ) -> None:
        """One record of ``layout``, then (comma shape only) free ``extra`` cells
        (``extra_labels`` name them in a CP932 error)."""
        text = format_record(layout, values, shape)
        if extra:
            if shape != "comma":
                raise ValueError("extra cells need the comma shape")
            text += "," + ",".join(_csv_cell(c) for c in extra)
        self._line(text, [*(f.label for f in layout.fields), *extra_labels])

    def cells(self, cells: Sequence[str], labels: Sequence[str] = ()) -> None:
        """One CSV line of free cells, quoted only where a cell needs it."""
        self._line(",".join(_csv_cell(c) for c in cells), labels)
