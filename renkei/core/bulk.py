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

from sqlalchemy import Column, Table, func, insert, select
from sqlalchemy.orm import Session

__all__ = ["issue_ids", "insert_rows"]


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert ``rows`` (dicts of column values) in as few statements as the driver allows."""
    if not rows:
        return 0
    # Core on the session's connection: the ORM's bulk path adds nothing for plain rows.
    session.connection().execute(insert(table), list(rows))
    return len(rows)


def issue_ids(session: Session, table: Table, rows: Sequence[Mapping[str, Any]], id_column: Column[Any] | None = None) -> list[int]:
    """Insert ``rows`` into a table with an autoincrement key; their new ids, in order."""
    if not rows:
        return []
    key = id_column if id_column is not None else next(iter(table.primary_key.columns))
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        # An INTEGER PRIMARY KEY takes max(rowid) + 1, and the transaction holds SQLite's
        # one write lock from its first insert on: the block is max+1 … max+n. (SQLAlchemy
        # would send RETURNING with parameter order one row at a time here.)
        conn.execute(insert(table), list(rows))
        last = int(conn.execute(select(func.max(key))).scalar_one())
        return list(range(last - len(rows) + 1, last + 1))
    result = conn.execute(insert(table).returning(key, sort_by_parameter_order=True), list(rows))
    return [int(v) for v in result.scalars()]
