"""Time-stamp authority tables: the newest head of every node, and every receipt issued.

Nothing here is about a person: node ids (機関コード/種別), sequence numbers, hashes and
signatures only (DESIGN.md §1).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from renkei.core.audit.log import audit_tables
from renkei.core.db import NAMING, BigId, UtcDateTime, kernel_tables
from renkei.core.schema import NodeSchema, register
from renkei.core.wire.guard import guard_tables
from renkei.staff.auth import auth_tables
from renkei.staff.exports import export_tables


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


kernel = kernel_tables(Base.metadata)
audit = audit_tables(Base.metadata)
guard = guard_tables(Base.metadata)  # also the alerts for heads that move back or fork
auth = auth_tables(Base.metadata)  # staff (operators) with password + TOTP, sessions, API tokens
exports = export_tables(Base.metadata)  # downloads of the audit log and their approvals

# What this node hands the kernel (renkei.core.schema): nothing finds it by module name.
SCHEMA = register(
    NodeSchema(
        kind="tsa",
        metadata=Base.metadata,
        migrations=Path(__file__).parent / "migrations",
        kernel=kernel,
        audit=audit,
        auth=auth,
        exports=exports,
        guard=guard,
    )
)


class Head(Base):
    """The newest stamped head of one node's sequence of one kind; seq only moves forward.

    A row with seq 0 is a placeholder created before the first stamp (it serializes
    concurrent stamps of one node through its row lock).
    """

    __tablename__ = "tsa_heads"
    node: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    seq: Mapped[int] = mapped_column(BigId)
    hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[str] = mapped_column(String(40))  # the submitter's own time ("at")
    token: Mapped[str] = mapped_column(Text)  # the submitter's JWS over {seq, hash, at}
    receipt_serial: Mapped[int] = mapped_column(BigId)
    stamped_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Receipt(Base):
    """Every receipt issued, by serial: the authority's own record of what it countersigned."""

    __tablename__ = "tsa_receipts"
    __table_args__ = (UniqueConstraint("node", "kind", "seq"),)
    serial: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    node: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(20))
    seq: Mapped[int] = mapped_column(BigId)
    hash: Mapped[str] = mapped_column(String(64))
    submitted_by: Mapped[str] = mapped_column(String(16))
    stamped_at: Mapped[datetime] = mapped_column(UtcDateTime())
    receipt: Mapped[str] = mapped_column(Text)
