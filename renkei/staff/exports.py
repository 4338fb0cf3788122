"""Exports of personal data: a role, an audit entry, the exporter's id in the file, and
a second staff member's approval above a size limit (the seed forbids copying out).

Flow: `request_export` → (if large) `approve` by someone else → `begin_export` (returns
the header naming exporter and request) → write → `finish_export`. Each step is a plain
function in the caller's transaction; the caller audits each step.

Nodes offer their own kinds of export through an `ExportRegistry` of `ExportKind`s
(name, role, how to read and count the parameters, how to write the rows);
`ask_export`, `decide_export` and `run_export` drive the flow above for a registered
kind, checking the kind's role at every step (not only at the route).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, Final, Literal, cast

import orjson
from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.engine import CursorResult, RowMapping
from sqlalchemy.orm import Session

from renkei.core.db import BigId, UtcDateTime
from renkei.core.errors import Problem
from renkei.staff.roles import has_role, require

# The role each kind of export needs (a staff member without it cannot even ask).
EXPORT_ROLES: Mapping[str, str] = {
    "audit": "監査",
    "provision_records": "監査",
    "addressees": "宛名:参照",
}

NOTICE: Final = "持出し・複製禁止"
STATUS_LABELS: Final[Mapping[str, str]] = {
    "pending": "承認待ち",
    "approved": "実行可能",
    "running": "書き出し中",
    "done": "書き出し済み",
    "rejected": "却下",
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

    @classmethod
    def from_config(cls, extra: Mapping[str, Any]) -> ExportPolicy:
        """``[extra] export_approval_rows`` of the node's config (default 1000)."""
        raw = extra.get("export_approval_rows", cls.approval_threshold_rows)
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ValueError("export_approval_rows must be an integer")
        value = int(raw)
        if value < 0:
            raise ValueError("export_approval_rows must be 0 or more")
        return cls(approval_threshold_rows=value)


@dataclass(frozen=True)
class ExportRequest:
    id: int
    kind: str
    params: dict[str, Any]
    requested_by: str
    estimated_rows: int
    status: str
    decided_by: str | None
    requested_at: datetime | None = None
    decided_at: datetime | None = None
    rows_written: int | None = None
    finished_at: datetime | None = None

    @property
    def needs_approval(self) -> bool:
        return self.status == "pending"


@dataclass(frozen=True)
class ExportHeader:
    """What the first line of every exported file says: who, which request, who approved."""

    request_id: int
    kind: str
    exporter: str
    approver: str | None  # None: small enough to need no approval
    exported_at: datetime
    params: dict[str, Any]
    estimated_rows: int

    def as_dict(self) -> dict[str, Any]:
        """The JSON Lines header: one object under the key ``renkei_export``."""
        return {
            "renkei_export": {
                "request_id": self.request_id,
                "kind": self.kind,
                "exporter": self.exporter,
                "approver": self.approver,
                "exported_at": self.exported_at.isoformat(),
                "params": self.params,
                "estimated_rows": self.estimated_rows,
                "notice": NOTICE,
            }
        }

    def comment(self) -> str:
        """The header as a ``#`` comment line (CSV files)."""
        approver = self.approver or "承認不要（件数が上限以下）"
        return (
            f"# 出力者: {self.exporter} / 依頼番号: {self.request_id} / 承認者: {approver}"
            f" / 出力日時: {self.exported_at.isoformat()} / 種類: {self.kind} / {NOTICE}"
        )


def _request_of(row: RowMapping) -> ExportRequest:
    return ExportRequest(
        id=int(row["id"]),
        kind=str(row["kind"]),
        params=dict(row["params"]),
        requested_by=str(row["requested_by"]),
        estimated_rows=int(row["estimated_rows"]),
        status=str(row["status"]),
        decided_by=row["decided_by"],
        requested_at=row["requested_at"],
        decided_at=row["decided_at"],
        rows_written=row["rows_written"],
        finished_at=row["finished_at"],
    )


def _get(session: Session, tables: ExportTables, request_id: int) -> ExportRequest:
    row = session.execute(select(tables.requests).where(tables.requests.c.id == request_id)).mappings().first()
    if row is None:
        raise Problem(404, "export_not_found", "書き出し依頼が見つかりません。", str(request_id))
    return _request_of(row)


def _role_for(kind: str, role: str | None) -> str:
    needed = role if role is not None else EXPORT_ROLES.get(kind)
    if needed is None:
        raise Problem(422, "unknown_export", f"書き出しの種類「{kind}」はありません。")
    return needed


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
    role: str | None = None,
) -> ExportRequest:
    """Ask to export; small exports are approved at once, large ones wait for a second person.

    ``role`` is the kind's role when the kind comes from a registry (else `EXPORT_ROLES`).
    """
    require(list(roles), _role_for(kind, role))
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
    role: str | None = None,
) -> ExportRequest:
    """A second staff member, holding the same role, approves (or rejects) a large export."""
    req = _get(session, tables, request_id)
    # The role first: someone without it learns nothing about the request.
    require(list(roles), _role_for(req.kind, role))
    if staff_id == req.requested_by:
        raise Problem(403, "self_approval", "自分の書き出し依頼は承認できません（別の職員の承認が必要です）。")
    if req.status != "pending":
        raise Problem(409, "export_not_pending", "この書き出し依頼は承認待ちではありません。", req.status)
    # Conditional: of two people deciding at once, only the first decision stands.
    done = session.execute(
        update(tables.requests)
        .where(tables.requests.c.id == request_id, tables.requests.c.status == "pending")
        .values(status="rejected" if reject else "approved", decided_by=staff_id, decided_at=now)
    )
    if cast(CursorResult[Any], done).rowcount != 1:
        raise Problem(409, "export_not_pending", "この書き出し依頼は承認待ちではありません。")
    return _get(session, tables, request_id)


def start_export(
    session: Session, tables: ExportTables, request_id: int, *, staff_id: str, now: datetime
) -> ExportHeader:
    """Start an approved export (once only); returns the header naming exporter, request, approver."""
    req = _get(session, tables, request_id)
    if req.requested_by != staff_id:
        raise Problem(403, "not_requester", "書き出しは依頼した職員本人のみ実行できます。")
    if req.status == "pending":
        raise Problem(
            403,
            "export_needs_approval",
            f"{req.estimated_rows}件の書き出しには別の職員の承認が必要です。",
        )
    if req.status == "rejected":
        raise Problem(409, "export_not_approved", "この書き出し依頼は却下されています。", req.status)
    if req.status != "approved":
        raise Problem(409, "export_not_approved", "この書き出し依頼は実行できません（書き出しは1回限りです）。", req.status)
    # Conditional: two downloads at once cannot both run (the second finds it running).
    started = session.execute(
        update(tables.requests)
        .where(tables.requests.c.id == request_id, tables.requests.c.status == "approved")
        .values(status="running")
    )
    if cast(CursorResult[Any], started).rowcount != 1:
        raise Problem(409, "export_not_approved", "この書き出し依頼は実行できません（書き出しは1回限りです）。")
    return ExportHeader(
        request_id=req.id,
        kind=req.kind,
        exporter=staff_id,
        approver=req.decided_by,
        exported_at=now,
        params=req.params,
        estimated_rows=req.estimated_rows,
    )


def begin_export(
    session: Session, tables: ExportTables, request_id: int, *, staff_id: str, now: datetime
) -> str:
    """Start an approved export; returns the header line that names the exporter and request."""
    return start_export(session, tables, request_id, staff_id=staff_id, now=now).comment()


def finish_export(
    session: Session, tables: ExportTables, request_id: int, *, rows_written: int, now: datetime
) -> None:
    session.execute(
        update(tables.requests)
        .where(tables.requests.c.id == request_id)
        .values(status="done", rows_written=rows_written, finished_at=now)
    )


# --- kinds of export a node offers ------------------------------------------------------

ExportFormat = Literal["jsonl", "csv"]
_MEDIA_TYPES: Final[Mapping[str, str]] = {
    "jsonl": "application/jsonl; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
}


@dataclass(frozen=True)
class ExportKind:
    """One kind of download of personal data.

    ``parse_params(raw, now)`` checks and normalizes what the requester sent (a 422
    `Problem` if wrong) — the normalized form is stored, counted, approved and written,
    so the approver approves exactly what will run; ``count`` says how many rows the
    export will write; ``write`` writes them (no header) and returns how many it wrote.
    """

    name: str
    role: str
    label: str
    format: ExportFormat
    parse_params: Callable[[Mapping[str, Any], datetime], dict[str, Any]]
    count: Callable[[Session, Mapping[str, Any]], int]
    write: Callable[[Session, Mapping[str, Any], IO[str]], int]

    @property
    def media_type(self) -> str:
        return _MEDIA_TYPES[self.format]

    def filename(self, request_id: int) -> str:
        return f"export-{request_id}-{self.name}.{self.format}"


class ExportRegistry:
    """The kinds of export one node offers, by name."""

    def __init__(self, kinds: Iterable[ExportKind] = ()) -> None:
        self._kinds: dict[str, ExportKind] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: ExportKind) -> ExportKind:
        if kind.name in self._kinds:
            raise ValueError(f"export kind {kind.name!r} is already registered")
        if len(kind.name) > 40:
            raise ValueError("export kind names are at most 40 characters")
        self._kinds[kind.name] = kind
        return kind

    def get(self, name: str) -> ExportKind:
        kind = self._kinds.get(name)
        if kind is None:
            raise Problem(
                422,
                "unknown_export",
                f"書き出しの種類「{name[:40]}」はありません。",
                "指定できる種類: " + "、".join(sorted(self._kinds)),
            )
        return kind

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def __iter__(self) -> Iterator[ExportKind]:
        return iter(self._kinds.values())


@dataclass(frozen=True)
class ExportResult:
    header: ExportHeader
    rows: int


def ask_export(
    session: Session,
    tables: ExportTables,
    registry: ExportRegistry,
    *,
    staff_id: str,
    roles: Iterable[str],
    kind: str,
    params: Mapping[str, Any],
    policy: ExportPolicy,
    now: datetime,
) -> ExportRequest:
    """Request an export of a registered kind: role, parameters checked, rows counted."""
    found = registry.get(kind)
    held = list(roles)
    require(held, found.role)  # before reading anything
    normalized = found.parse_params(params, now)
    estimated = found.count(session, normalized)
    return request_export(
        session,
        tables,
        staff_id=staff_id,
        roles=held,
        kind=found.name,
        params=normalized,
        estimated_rows=estimated,
        policy=policy,
        now=now,
        role=found.role,
    )


def decide_export(
    session: Session,
    tables: ExportTables,
    registry: ExportRegistry,
    request_id: int,
    *,
    staff_id: str,
    roles: Iterable[str],
    now: datetime,
    reject: bool = False,
) -> ExportRequest:
    """Approve or reject someone else's pending request (holding the kind's role)."""
    req = _get(session, tables, request_id)
    kind = registry.get(req.kind)
    return approve(
        session, tables, request_id, staff_id=staff_id, roles=roles, now=now, reject=reject, role=kind.role
    )


def get_export(
    session: Session, tables: ExportTables, registry: ExportRegistry, request_id: int, *, roles: Iterable[str]
) -> ExportRequest:
    """One request, for a holder of its kind's role."""
    req = _get(session, tables, request_id)
    require(list(roles), registry.get(req.kind).role)
    return req


def list_exports(
    session: Session,
    tables: ExportTables,
    registry: ExportRegistry,
    *,
    roles: Iterable[str],
    status: str | None = None,
    limit: int = 200,
) -> list[ExportRequest]:
    """Requests of the kinds whose role is held, newest first (e.g. those awaiting approval)."""
    held = list(roles)
    kinds = [k.name for k in registry if has_role(held, k.role)]
    if not kinds:
        return []
    r = tables.requests
    q = select(r).where(r.c.kind.in_(kinds)).order_by(r.c.id.desc()).limit(limit)
    if status is not None:
        q = q.where(r.c.status == status)
    return [_request_of(row) for row in session.execute(q).mappings()]


def run_export(
    session: Session,
    tables: ExportTables,
    registry: ExportRegistry,
    request_id: int,
    *,
    staff_id: str,
    roles: Iterable[str],
    policy: ExportPolicy,
    now: datetime,
    out: IO[str],
) -> ExportResult:
    """Write an approved export once: header line first, then the rows; marks it done.

    The role is checked again (it may have been taken away since the request), and an
    export that went through without approval is refused if it has grown beyond the
    approval limit meanwhile. On any error the caller rolls back: the request stays
    approved and can run later.
    """
    req = _get(session, tables, request_id)
    kind = registry.get(req.kind)
    require(list(roles), kind.role)
    header = start_export(session, tables, request_id, staff_id=staff_id, now=now)
    if header.approver is None and kind.count(session, req.params) > policy.approval_threshold_rows:
        raise Problem(
            409,
            "export_grew",
            "依頼後に件数が増え、別の職員の承認が必要な件数を超えました。書き出しを依頼し直してください。",
        )
    if kind.format == "jsonl":
        out.write(orjson.dumps(header.as_dict()).decode() + "\n")
    else:
        out.write(header.comment() + "\n")
    rows = kind.write(session, req.params, out)
    finish_export(session, tables, request_id, rows_written=rows, now=now)
    return ExportResult(header=header, rows=rows)
