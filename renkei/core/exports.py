"""Exports of personal data: a role, an audit entry, the exporter's id in the file, and
a second staff member's approval above a size limit (the seed forbids copying out).

Flow: `request_export` → (if large) `approve` by someone else → `begin_export` (returns
the header naming exporter and request) → write → `finish_export`. Each step is a plain
function in the caller's transaction; the caller audits each step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.orm import Session

from renkei.core.db import BigId, UtcDateTime
from renkei.core.errors import Problem
from renkei.core.roles import require

# The role each kind of export needs (a staff member without it cannot even ask).
EXPORT_ROLES: Mapping[str, str] = {
    "audit": "監査",
    "provision_records": "監査",
    "addressees": "宛名:参照",
}


@dataclass(frozen=True)
class ExportTables:
    requests: Table


def export_tables(metadata: MetaData) -> ExportTables:
    return ExportTables(
        Table(
            "export_requests",
            metadata,
            Column("id", BigId, primary_key=True, autoincrement=True),
            Column("kind", String(40), nullable=False),
            Column("params", JSON, nullable=False),
            Column("requested_by", String(64), nullable=False),
            Column("requested_at", UtcDateTime(), nullable=False),
            Column("estimated_rows", Integer, nullable=False),
            Column("status", String(12), nullable=False),  # pending | approved | running | done | rejected
            Column("decided_by", String(64), nullable=True),
            Column("decided_at", UtcDateTime(), nullable=True),
            Column("rows_written", Integer, nullable=True),
            Column("finished_at", UtcDateTime(), nullable=True),
        )
    )


@dataclass(frozen=True)
class ExportPolicy:
    approval_threshold_rows: int = 1000


@dataclass(frozen=True)
class ExportRequest:
    id: int
    kind: str
    params: dict[str, Any]
    requested_by: str
    estimated_rows: int
    status: str
    decided_by: str | None

    @property
    def needs_approval(self) -> bool:
        return self.status == "pending"


def _get(session: Session, tables: ExportTables, request_id: int) -> ExportRequest:
    row = session.execute(select(tables.requests).where(tables.requests.c.id == request_id)).mappings().first()
    if row is None:
        raise Problem(404, "export_not_found", "書き出し依頼が見つかりません。", str(request_id))
    return ExportRequest(
        id=int(row["id"]),
        kind=str(row["kind"]),
        params=dict(row["params"]),
        requested_by=str(row["requested_by"]),
        estimated_rows=int(row["estimated_rows"]),
        status=str(row["status"]),
        decided_by=row["decided_by"],
    )


def request_export(
    session: Session,
    tables: ExportTables,
    *,
    staff_id: str,
    roles: Iterable[str],
    kind: str,
    params: Mapping[str, Any],
    estimated_rows: int,
    policy: ExportPolicy,
    now: datetime,
) -> ExportRequest:
    """Ask to export; small exports are approved at once, large ones wait for a second person."""
    if kind not in EXPORT_ROLES:
        raise Problem(422, "unknown_export", f"書き出しの種類「{kind}」はありません。")
    require(list(roles), EXPORT_ROLES[kind])
    if estimated_rows < 0:
        raise Problem(422, "bad_count", "件数が誤っています。")
    status = "pending" if estimated_rows > policy.approval_threshold_rows else "approved"
    new_id = session.execute(
        insert(tables.requests)
        .values(
            kind=kind,
            params=dict(params),
            requested_by=staff_id,
            requested_at=now,
            estimated_rows=estimated_rows,
            status=status,
        )
        .returning(tables.requests.c.id)
    ).scalar_one()
    return _get(session, tables, int(new_id))


def approve(
    session: Session,
    tables: ExportTables,
    request_id: int,
    *,
    staff_id: str,
    roles: Iterable[str],
    now: datetime,
    reject: bool = False,
) -> ExportRequest:
    """A second staff member, holding the same role, approves (or rejects) a large export."""
    req = _get(session, tables, request_id)
    if req.status != "pending":
        raise Problem(409, "export_not_pending", "この書き出し依頼は承認待ちではありません。", req.status)
    if staff_id == req.requested_by:
        raise Problem(403, "self_approval", "自分の書き出し依頼は承認できません（別の職員の承認が必要です）。")
    require(list(roles), EXPORT_ROLES[req.kind])
    session.execute(
        update(tables.requests)
        .where(tables.requests.c.id == request_id)
        .values(status="rejected" if reject else "approved", decided_by=staff_id, decided_at=now)
    )
    return _get(session, tables, request_id)


def begin_export(
    session: Session, tables: ExportTables, request_id: int, *, staff_id: str, now: datetime
) -> str:
    """Start an approved export; returns the header line that names the exporter and request."""
    req = _get(session, tables, request_id)
    if req.requested_by != staff_id:
        raise Problem(403, "not_requester", "書き出しは依頼した職員本人のみ実行できます。")
    if req.status == "pending":
        raise Problem(
            403,
            "export_needs_approval",
            f"{req.estimated_rows}件の書き出しには別の職員の承認が必要です。",
        )
    if req.status != "approved":
        raise Problem(409, "export_not_approved", "この書き出し依頼は実行できません。", req.status)
    session.execute(update(tables.requests).where(tables.requests.c.id == request_id).values(status="running"))
    return f"# 出力者: {staff_id} / 依頼番号: {request_id} / 出力日時: {now.isoformat()} / 種類: {req.kind} / 持出し・複製禁止"


def finish_export(
    session: Session, tables: ExportTables, request_id: int, *, rows_written: int, now: datetime
) -> None:
    session.execute(
        update(tables.requests)
        .where(tables.requests.c.id == request_id)
        .values(status="done", rows_written=rows_written, finished_at=now)
    )
