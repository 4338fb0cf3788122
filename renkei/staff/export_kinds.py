"""Export kinds every node offers, and the period parameters they share.

A period is ``{"from": …, "to": …}``: dates as staff type them (2026-04-01, 令和8年4月1日,
R8.4.1) or ISO 8601 date-times. Dates are Japan time and both ends inclusive (``to``
2026-04-30 takes the whole of 30 April); a missing ``from`` starts at the beginning, a
missing ``to`` ends at the moment of the request, so that what is approved is exactly
what will be written. The normalized period is two ISO 8601 UTC instants, ``to``
exclusive.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from typing import IO, Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from renkei.core.audit.log import AuditTables, export_jsonl
from renkei.core.errors import Problem
from renkei.core.text.wareki import WarekiError, parse_date
from renkei.staff.exports import ExportKind
from renkei.staff.roles import AUDIT

JAPAN: Final = ZoneInfo("Asia/Tokyo")
PERIOD_KEYS: Final = frozenset({"from", "to"})
_MAX_TEXT: Final = 40


def _bad(message: str, detail: str = "") -> Problem:
    return Problem(422, "bad_export_params", message, detail)


def _instant(value: Any, label: str, *, end: bool) -> datetime:
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_TEXT:
        raise _bad(f"{label}は日付（例: 2026-04-01、令和8年4月1日）または日時で指定してください。")
    text = value.strip()
    if "T" in text or ":" in text:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise _bad(
                f"{label}の日時を読み取れません（ISO 8601 で指定してください）。", text
            ) from None
        return (moment if moment.tzinfo else moment.replace(tzinfo=JAPAN)).astimezone(UTC)
    try:
        day = parse_date(text)
    except WarekiError as exc:
        raise _bad(f"{label}: {exc}") from None
    if end:  # a date as the end means that whole day
        day += timedelta(days=1)
    return datetime.combine(day, time(), JAPAN).astimezone(UTC)


def parse_period(raw: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Normalize ``{"from", "to"}`` to ISO UTC instants (``to`` exclusive, at most now)."""
    if not isinstance(raw, Mapping):
        raise _bad("条件は「from」「to」を持つオブジェクトで指定してください。")
    unknown = sorted(str(k)[:_MAX_TEXT] for k in raw if k not in PERIOD_KEYS)
    if unknown:
        raise _bad(
            "指定できない条件があります（指定できるのは from と to です）。", "、".join(unknown)
        )
    start = _instant(raw["from"], "開始日", end=False) if raw.get("from") is not None else None
    stop = _instant(raw["to"], "終了日", end=True) if raw.get("to") is not None else None
    current = now.astimezone(UTC)
    # The future is not exported: entries made after the request are not what was approved.
    stop = current if stop is None or stop > current else stop
    if start is not None and start >= stop:
        raise _bad("開始日は終了日より前にしてください。")
    return {"from": start.isoformat() if start else None, "to": stop.isoformat()}


def period_bounds(params: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    """The (start, end) instants of a normalized period."""
    start = params.get("from")
    stop = params.get("to")
    return (
        datetime.fromisoformat(start) if isinstance(start, str) else None,
        datetime.fromisoformat(stop) if isinstance(stop, str) else None,
    )


def audit_export_kind(tables: AuditTables) -> ExportKind:
    """The node's audit log as JSON Lines (role 監査), as `renkei.core.audit.log.export_jsonl` writes it.

    Each line verifies offline with `renkei.core.audit.log.verify_jsonl` (after the header line).
    """

    def count(session: Session, params: Mapping[str, Any]) -> int:
        # The same contiguous stretch of seqs that export_jsonl writes.
        start, stop = period_bounds(params)
        e = tables.entries
        lo_q = select(func.min(e.c.seq))
        hi_q = select(func.max(e.c.seq))
        if start is not None:
            lo_q = lo_q.where(e.c.at >= start)
        if stop is not None:
            hi_q = hi_q.where(e.c.at < stop)
        lo = session.execute(lo_q).scalar()
        hi = session.execute(hi_q).scalar()
        if lo is None or hi is None or lo > hi:
            return 0
        return int(hi) - int(lo) + 1

    def write(session: Session, params: Mapping[str, Any], out: IO[str]) -> int:
        start, stop = period_bounds(params)
        return export_jsonl(session, tables, out, start=start, end=stop)

    return ExportKind(
        name="audit",
        role=AUDIT,
        label="監査ログ",
        format="jsonl",
        parse_params=parse_period,
        count=count,
        write=write,
    )
