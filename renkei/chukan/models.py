"""Intermediate-server tables: pseudonym bindings, provision copies (副本), provision records.

No individual number and no resident code is ever stored here.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
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
guard = guard_tables(Base.metadata)
auth = auth_tables(Base.metadata)  # staff (operators) with password + TOTP, sessions, API tokens
exports = export_tables(Base.metadata)  # downloads of personal data and their approvals

# What this node hands the kernel (renkei.core.schema): nothing finds it by module name.
SCHEMA = register(
    NodeSchema(
        kind="chukan",
        metadata=Base.metadata,
        migrations=Path(__file__).parent / "migrations",
        kernel=kernel,
        audit=audit,
        auth=auth,
        exports=exports,
        guard=guard,
    )
)


class PseudonymBinding(Base):
    __tablename__ = "pseudonym_bindings"
    atena_no: Mapped[str] = mapped_column(String(15), primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(64), unique=True)
    bound_at: Mapped[datetime] = mapped_column(UtcDateTime())


class PendingAcquisition(Base):
    __tablename__ = "pending_acquisitions"
    acquisition_no: Mapped[str] = mapped_column(String(20), primary_key=True)
    atena_no: Mapped[str] = mapped_column(String(15), index=True)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class Fukuhon(Base):
    """One version of one provision copy; never updated or deleted in place."""

    __tablename__ = "fukuhon"
    __table_args__ = (UniqueConstraint("atena_no", "info_kind_code", "record_key", "version"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    atena_no: Mapped[str] = mapped_column(String(15), index=True)
    info_kind_code: Mapped[str] = mapped_column(String(16))
    dataset: Mapped[str] = mapped_column(String(4))
    edition: Mapped[str] = mapped_column(String(4))
    record_key: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    values: Mapped[dict[str, Any]] = mapped_column(JSON)  # the items not marked sensitive
    # Items the catalogue marks sensitive (e.g. 総所得金額等, 所得割額): one JSON object,
    # AES-256-GCM under the node's field key, AAD ("fukuhon", "sealed_values", id).
    sealed_values: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date, nullable=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    no_auto_answer: Mapped[bool] = mapped_column(Boolean, default=False)
    registered_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ProvisionRecord(Base):
    """情報提供等の記録 at this end: inquiries made and provisions given."""

    __tablename__ = "provision_records"
    __table_args__ = (UniqueConstraint("serial", "direction"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    serial: Mapped[str] = mapped_column(String(20), index=True)
    direction: Mapped[str] = mapped_column(String(10))  # inquiry | provision
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    counterpart_org: Mapped[str] = mapped_column(String(16))
    # Our inquiries: who asked inside this organization, as atena passed it on (optional).
    inquirer_department: Mapped[str | None] = mapped_column(String(20), nullable=True)
    inquirer_user: Mapped[str | None] = mapped_column(String(20), nullable=True)
    procedure_code: Mapped[str] = mapped_column(String(16))
    info_kind_code: Mapped[str] = mapped_column(String(16))
    atena_no: Mapped[str | None] = mapped_column(String(15), nullable=True, index=True)
    as_of: Mapped[str] = mapped_column(String(10))
    outcome: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
