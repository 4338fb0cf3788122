"""The register feed as a daily file: `renkei atena import feed --config ATENA_CONFIG FILE`.

Two shapes (docs/register-feed.md):

- **CSV** with a header row of the fields' Japanese labels (異動ID, 異動事由, 異動日 …; the
  English field names are accepted too), in any column order; optional columns may be
  left out;
- **fixed width**: no header, one record a line, the fields of `feed.FIELDS` side by side
  at their widths in bytes counted as CP932 (a kanji is two), numbers zero-filled on
  the left, text space-filled on the right (half- or full-width spaces), 694 bytes.

The shape is told from the first line (a header naming 異動ID is CSV); the encoding from
the bytes: a BOM or valid UTF-8 is UTF-8, anything else CP932. CRLF or LF; blank lines
and a final EOF mark (0x1A) are ignored. Dates: YYYYMMDD, YYYY-MM-DD or 和暦 (CSV).

**All or nothing**: the whole file is read and checked first; if any record is malformed
(or an event id was applied before with other content), every error is reported with
file, line, field and reason in Japanese and nothing is applied. Otherwise the file is
applied in one transaction, together with its import-ledger row and its audit entry
(counts, never a number). The same file again applies nothing new (every event id is
known), and says so.

Fixed-width files are read and written by the shared record reader
(renkei.core.text.layout, `FEED_LAYOUT`); CSV lines are decoded in `_decoded_lines`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final

from sqlalchemy import Engine

from renkei.atena import feed
from renkei.atena.models import SCHEMA, imports
from renkei.core import imports as ledger
from renkei.core.config import NodeConfig
from renkei.core.db import transaction, utcnow
from renkei.core.errors import Problem
from renkei.core.text import layout

__all__ = ["KIND", "FeedImported", "import_feed", "read_feed", "write_feed"]

KIND: Final = "register_feed"
ACTION: Final = "register.feed"
_BOM: Final = b"\xef\xbb\xbf"
_EOF: Final = "\x1a"
MAX_LINE_BYTES: Final = 64 * 1024


# --- reading: the one place that decodes and cuts lines ---------------------------------


def _decoded_lines(fh: IO[bytes], encoding: str) -> Iterator[tuple[int, str | None, str]]:
    """(line number, text or None, reason) of each physical line, line end removed."""
    label = "UTF-8" if encoding == "utf-8" else "CP932（シフトJIS）"
    for number, raw in enumerate(fh, start=1):
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        raw = raw.rstrip(b"\n").rstrip(b"\r")
        if len(raw) > MAX_LINE_BYTES:
            yield number, None, f"1行が長すぎます（{len(raw):,} バイト）。"
            continue
        try:
            yield number, raw.decode(encoding), ""
        except UnicodeDecodeError as exc:
            yield number, None, f"{label} として読めないバイトがあります（{exc.start + 1} バイト目）。"


def _layout() -> layout.Layout:
    def kind(f: feed.FeedField) -> layout.Kind:
        if f.numeric:
            return "numeric"
        return "code" if f.name == "event_id" else "text"

    return layout.Layout("住民異動", tuple(layout.Field(f.name, f.label, f.width, kind(f), f.required) for f in feed.FIELDS))


FEED_LAYOUT: Final = _layout()  # the fixed-width shape (docs/register-feed.md)


def _blank(text: str) -> bool:
    return not text.strip(" \t\u3000" + _EOF)


def _is_header(text: str) -> bool:
    first = text.lstrip("\ufeff").split(",", 1)[0].strip().strip('"')
    return first in (feed.LABELS["event_id"], "event_id")


@dataclass
class ReadFeed:
    """A file read and checked: its events, its errors (the first `feed.MAX_ERRORS`) and
    how many errors there were, the encoding and shape it was read in."""

    source: str
    encoding: str
    shape: str
    events: list[feed.FeedEvent] = field(default_factory=list)
    errors: list[feed.FeedError] = field(default_factory=list)
    error_count: int = 0

    def error(self, line: int, label: str, reason: str) -> None:
        self.error_count += 1
        if len(self.errors) < feed.MAX_ERRORS:
            self.errors.append(feed.FeedError(line, label, reason, self.source))

    def take(self, line: int, record: Mapping[str, Any]) -> None:
        checked = feed.parse_event(record, line)
        if isinstance(checked, list):
            for e in checked:
                self.error(line, e.field, e.reason)
        else:
            self.events.append(checked)


def _header(cells: list[str], out: ReadFeed) -> list[str | None]:
    names: list[str | None] = []
    for cell in cells:
        label = cell.strip().lstrip("\ufeff")
        name = feed.BY_LABEL.get(label) or (label if label in feed.LABELS else None)
        if name is None:
            out.error(1, label, "この列は扱えません（docs/register-feed.md の列名を使ってください）。")
        names.append(name)
    given = {n for n in names if n}
    for f in feed.FIELDS:
        if f.required and f.name not in given:
            out.error(1, f.label, "必須の列がありません。")
    return names


class _LineFeeder:
    """Decoded lines to csv.reader, remembering the physical line of each row's start."""

    def __init__(self, lines: Iterator[tuple[int, str]]) -> None:
        self._lines = lines
        self.line = 0

    def __iter__(self) -> _LineFeeder:
        return self

    def __next__(self) -> str:
        self.line, text = next(self._lines)
        return text


def read_feed(path: Path) -> ReadFeed:
    """Read and check the whole file (see the module docstring); nothing is applied here."""
    source = path.name
    enc = layout.sniff(path, FEED_LAYOUT, "fixed").encoding
    with path.open("rb") as fh:
        first = next((text for _n, text, _r in _decoded_lines(fh, enc) if text is not None and not _blank(text)), "")
    if not _is_header(first):
        out = ReadFeed(source, enc, "fixed")
        for row in layout.read_records(path, FEED_LAYOUT, shape="fixed"):
            if row.errors:
                for e in row.errors:
                    out.error(row.line, e.field, e.reason)
            else:
                out.take(row.line, row.values)
        return out
    out = ReadFeed(source, enc, "csv")
    with path.open("rb") as fh:
        good: list[tuple[int, str]] = []
        for number, text, reason in _decoded_lines(fh, enc):
            if text is None:
                out.error(number, "", reason)
            elif not _blank(text):
                good.append((number, text.rstrip(_EOF)))
    feeder = _LineFeeder(iter(good))
    names: list[str | None] = []
    for cells in csv.reader(feeder):
        line = feeder.line
        if not names:
            names = _header(cells, out)
            if out.errors:
                break
            continue
        if len(cells) != len(names):
            out.error(line, "", f"列の数が見出しと違います（見出し {len(names)} 列、この行 {len(cells)} 列）。")
            continue
        out.take(line, {n: c for n, c in zip(names, cells, strict=True) if n})
    return out


# --- writing (the generator's events, tests, a register system's side) -------------------


def _fixed(record: Mapping[str, Any]) -> str:
    values = {}
    for f in feed.FIELDS:
        value = str(record.get(f.name) or "")
        values[f.name] = value.replace("-", "") if f.numeric else value
    return layout.format_record(FEED_LAYOUT, values, "fixed")


def write_feed(
    records: Iterable[Mapping[str, Any]], path: Path, *, shape: str = "csv", encoding: str = "utf-8"
) -> int:
    """Events (field name → value; dates as YYYY-MM-DD or YYYYMMDD) as a feed file, CRLF:
    CSV with the Japanese header, or fixed width. The number of records written."""
    n = 0
    with path.open("w", encoding=encoding, newline="") as fh:
        if shape == "csv":
            writer = csv.writer(fh, lineterminator="\r\n")
            writer.writerow([f.label for f in feed.FIELDS])
            for rec in records:
                writer.writerow([rec.get(f.name) or "" for f in feed.FIELDS])
                n += 1
        else:
            for rec in records:
                fh.write(_fixed(rec) + "\r\n")
                n += 1
    return n


# --- importing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedImported:
    """One file imported: the ledger row, what was read and applied, how long it took."""

    run: ledger.ImportRun
    read: ReadFeed
    result: feed.FeedResult
    seconds: float

    def summary(self) -> str:
        r = self.result
        landed = "、".join(
            f"{label} {r.outcomes.get(key, 0):,} 件"
            for key, label in (("applied", "現在の情報に反映"), ("history", "過去の異動として履歴に追加"),
                               ("no_change", "変更なし"))  # fmt: skip
        )
        return (
            f"住民異動の取込が完了しました: {self.read.source}（{self.read.shape}・{self.read.encoding}）を "
            f"{r.read:,} 件読込、新たに {r.applied:,} 件反映（{landed}）、反映済みの異動 {r.duplicates:,} 件。"
            f"新規 {r.persons:,} 人、基本4情報 {r.versions:,} 件、世帯の所属 {r.memberships:,} 件を追加。"
            f"符号取得の対象（転入・出生） {len(r.arrivals):,} 人。所要 {self.seconds:.1f} 秒。取込番号 {self.run.id}"
        )


def import_feed(
    config: NodeConfig,
    path: Path,
    *,
    system: str,
    actor: str,
    engine: Engine | None = None,
    clock: Any = utcnow,
    progress: ledger.Progress | None = None,
) -> FeedImported:
    """Read, check and apply one feed file to the atena ``config`` names (all or nothing).

    Raises Problem 422 ``bad_feed`` listing every malformed record (nothing applied; the
    refusal is audited).
    """
    import time

    from renkei.core.audit.log import AuditEvent, AuditLog
    from renkei.core.crypto import envelope
    from renkei.core.db import make_engine, make_sessionmaker, migrate
    from renkei.staff.admin import node_cipher

    started = time.perf_counter()
    cipher = node_cipher(config)
    eng = engine or make_engine(config.database_url)
    try:
        migrate(eng, SCHEMA.migrations, SCHEMA.metadata, {"field_cipher": cipher})
        log = AuditLog(SCHEMA.audit, envelope.load_signing_key(config.keys.sig))
        sessions = make_sessionmaker(eng)
        digest, _ = ledger.scan_file(path)
        read = read_feed(path)

        def refuse(exc: Problem) -> Problem:
            with transaction(sessions) as s:
                log.append(s, AuditEvent(actor=actor, action=ACTION, outcome=exc.code, ref=f"file:{digest[:16]}",
                                         detail={"file": path.name[-100:], "errors": int(exc.extra.get("error_count", 1))}))  # fmt: skip
            return exc

        if read.error_count:
            raise refuse(feed.refused(read.errors, read.error_count, read.source))
        now: datetime = clock()
        try:
            with transaction(sessions) as s:
                run = ledger.begin(s, imports, kind=KIND, source=path.name, digest=digest, actor=actor, now=now, force=True)
                result = feed.apply_events(
                    s,
                    cipher,
                    read.events,
                    now,
                    system=system,
                    source=f"feed:{system}:{path.name}",
                    file=path.name,
                    progress=progress,
                )
                run = ledger.advance(s, imports, run, read=result.read, applied=result.applied, now=now)
                run = ledger.finish(s, imports, run, now)
                log.append(
                    s,
                    AuditEvent(
                        actor=actor,
                        action=ACTION,
                        outcome="ok",
                        ref=f"import:{run.id}",
                        detail={"import": run.id, "count": result.read, "applied": result.applied,
                                "duplicates": result.duplicates, **result.outcomes},  # fmt: skip
                    ),
                )
        except Problem as exc:
            if exc.code == "bad_feed":
                raise refuse(exc) from None
            raise
        return FeedImported(run, read, result, time.perf_counter() - started)
    finally:
        if engine is None:
            eng.dispose()
