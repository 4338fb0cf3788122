"""Exports need a role, carry the exporter, and large ones a second person's approval."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import MetaData
from sqlalchemy.orm import Session

from renkei.core.db import make_engine, make_sessionmaker
from renkei.core.errors import Problem
from renkei.staff.exports import (
    ExportPolicy,
    approve,
    begin_export,
    export_tables,
    finish_export,
    request_export,
)

NOW = datetime(2026, 4, 1, 1, 0, tzinfo=UTC)
POLICY = ExportPolicy(approval_threshold_rows=100)
AUDITOR = ["監査"]


@pytest.fixture
def db(db_url: str) -> Iterator[tuple[Session, object]]:
    md = MetaData()
    tables = export_tables(md)
    engine = make_engine(db_url)
    md.create_all(engine)
    with make_sessionmaker(engine)() as s:
        yield s, tables
    engine.dispose()


def _ask(s: Session, t: object, rows: int, staff: str = "A0001", roles: list[str] = AUDITOR) -> int:
    return request_export(s, t, staff_id=staff, roles=roles, kind="audit", params={"from": "2026-01-01"},  # type: ignore[arg-type]
                          estimated_rows=rows, policy=POLICY, now=NOW).id


def test_small_export_runs_and_names_the_exporter(db: tuple[Session, object]) -> None:
    s, t = db
    rid = _ask(s, t, 10)
    header = begin_export(s, t, rid, staff_id="A0001", now=NOW)  # type: ignore[arg-type]
    assert "出力者: A0001" in header and f"依頼番号: {rid}" in header
    finish_export(s, t, rid, rows_written=10, now=NOW)  # type: ignore[arg-type]


def test_role_is_needed(db: tuple[Session, object]) -> None:
    s, t = db
    with pytest.raises(Problem) as info:
        _ask(s, t, 10, roles=["管理"])
    assert info.value.code == "role_required"


def test_unapproved_bulk_export_is_refused(db: tuple[Session, object]) -> None:
    s, t = db
    rid = _ask(s, t, 5000)
    with pytest.raises(Problem) as info:
        begin_export(s, t, rid, staff_id="A0001", now=NOW)  # type: ignore[arg-type]
    assert info.value.code == "export_needs_approval"
    with pytest.raises(Problem) as info:
        approve(s, t, rid, staff_id="A0001", roles=AUDITOR, now=NOW)  # type: ignore[arg-type]
    assert info.value.code == "self_approval"
    with pytest.raises(Problem) as info:
        approve(s, t, rid, staff_id="K0001", roles=["管理"], now=NOW)  # type: ignore[arg-type]
    assert info.value.code == "role_required"
    approve(s, t, rid, staff_id="A0002", roles=AUDITOR, now=NOW)  # type: ignore[arg-type]
    with pytest.raises(Problem) as info:
        begin_export(s, t, rid, staff_id="A0002", now=NOW)  # type: ignore[arg-type]
    assert info.value.code == "not_requester"
    assert "出力者: A0001" in begin_export(s, t, rid, staff_id="A0001", now=NOW)  # type: ignore[arg-type]


def test_rejected_export_cannot_run(db: tuple[Session, object]) -> None:
    s, t = db
    rid = _ask(s, t, 5000)
    approve(s, t, rid, staff_id="A0002", roles=AUDITOR, now=NOW, reject=True)  # type: ignore[arg-type]
    with pytest.raises(Problem) as info:
        begin_export(s, t, rid, staff_id="A0001", now=NOW)  # type: ignore[arg-type]
    assert info.value.code == "export_not_approved"
