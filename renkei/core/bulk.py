"""Set-based writes for bulk paths: many rows per statement, ids issued a block at a time.

`insert_rows` is SQLAlchemy Core's executemany: with SQLite and psycopg it is sent as
multi-row ``INSERT … VALUES (…), (…)`` statements ("insertmanyvalues"), a few hundred
rows a round trip instead of one. `issue_ids` inserts a block of rows into a serial
table and returns their ids in the order given (``RETURNING`` sorted by parameter
order), so a batch of 5,000 persons costs a handful of statements, not 5,000 flushes.
The ids come from the table's own autoincrement, as a row-by-row insert would get them:
on SQLite the next free rowid (no gap after a rolled-back batch), on PostgreSQL the
sequence (whose values a rolled-back batch does not return, as with single inserts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Column, Table, insert
from sqlalchemy.orm import Session

__all__ = ["issue_ids", "insert_rows"]


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert ``rows`` (dicts of column values) in as few statements as the driver allows."""
    if not rows:
        return 0
    session.execute(insert(table), list(rows))
    return len(rows)


def issue_ids(session: Session, table: Table, rows: Sequence[Mapping[str, Any]], id_column: Column[Any] | None = None) -> list[int]:
    """Insert ``rows`` into a table with an autoincrement key; their new ids, in order."""
    if not rows:
        return []
    key = id_column if id_column is not None else next(iter(table.primary_key.columns))
    result = session.execute(insert(table).returning(key, sort_by_parameter_order=True), list(rows))
    return [int(v) for v in result.scalars()]
