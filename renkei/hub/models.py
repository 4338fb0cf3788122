"""Hub tables: organization registry, links and pseudonyms, serials, provision records.

The hub never stores an individual number, and a resident code only as a keyed hash.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, MetaData, String, Text, UniqueConstraint
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
        kind="hub",
        metadata=Base.metadata,
        migrations=Path(__file__).parent / "migrations",
        kernel=kernel,
        audit=audit,
        auth=auth,
        exports=exports,
        guard=guard,
    )
)


class Organization(Base):
    __tablename__ = "organizations"
    org_code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(50))
    lg_code: Mapped[str | None] = mapped_column(String(6), nullable=True)
    chukan_url: Mapped[str | None] = mapped_column(String(255), nullable=True)
    role: Mapped[str] = mapped_column(String(20), default="member")  # member | jlis | hub
    registered_at: Mapped[datetime] = mapped_column(UtcDateTime())
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class OrgKey(Base):
    __tablename__ = "org_keys"
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_code: Mapped[str] = mapped_column(ForeignKey("organizations.org_code"), index=True)
    use: Mapped[str] = mapped_column(String(3))
    jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10), default="active")


class Serial(Base):
    """Source of 処理通番 and 取得番号: the database sequence makes them unique across hub processes."""

    __tablename__ = "serials"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(12))
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Link(Base):
    """One person, as the hub knows them: an internal id behind a keyed hash of the resident code."""

    __tablename__ = "links"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    resident_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Pseudonym(Base):
    __tablename__ = "pseudonyms"
    __table_args__ = (UniqueConstraint("link_id", "org_code"),)
    pseudonym: Mapped[str] = mapped_column(String(64), primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("links.id"), index=True)
    org_code: Mapped[str] = mapped_column(ForeignKey("organizations.org_code"))
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Acquisition(Base):
    __tablename__ = "acquisitions"
    acquisition_no: Mapped[str] = mapped_column(String(20), primary_key=True)
    org_code: Mapped[str] = mapped_column(ForeignKey("organizations.org_code"), index=True)
    serial: Mapped[str] = mapped_column(String(20))
    link_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    status: Mapped[str] = mapped_column(String(12), default="pending")


class ProvisionRecord(Base):
    """情報提供等の記録 at the hub: metadata only, never content."""

    __tablename__ = "provision_records"
    serial: Mapped[str] = mapped_column(String(20), primary_key=True)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    inquirer_org: Mapped[str] = mapped_column(String(16), index=True)
    # Who asked inside the inquiring organization, as it names them (optional).
    inquirer_department: Mapped[str | None] = mapped_column(String(20), nullable=True)
    inquirer_user: Mapped[str | None] = mapped_column(String(20), nullable=True)
    provider_org: Mapped[str] = mapped_column(String(16), index=True)
    procedure_code: Mapped[str] = mapped_column(String(16))
    info_kind_code: Mapped[str] = mapped_column(String(16))
    link_id: Mapped[int | None] = mapped_column(BigId, nullable=True, index=True)
    as_of: Mapped[str] = mapped_column(String(10))
    outcome: Mapped[str] = mapped_column(String(20))
    reason_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    rule_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    rule_source: Mapped[str | None] = mapped_column(Text, nullable=True)
    withheld: Mapped[bool] = mapped_column(Boolean, default=False)
