"""J-LIS tables: individual number ↔ resident code, and the acquisitions relayed.

The individual number is stored AES-GCM encrypted (AAD ``citizens``/``individual_number``/
resident code) with an HMAC blind index for lookup, as atena stores it: a copy of the
database file, a backup or a dump shows no number in clear.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import LargeBinary, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from renkei.core.audit.log import audit_tables
from renkei.core.db import NAMING, BigId, UtcDateTime, kernel_tables
from renkei.core.imports import import_tables
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
imports = import_tables(Base.metadata)  # bulk imports from files, resumable (renkei.core.imports)

# What this node hands the kernel (renkei.core.schema): nothing finds it by module name.
SCHEMA = register(
    NodeSchema(
        kind="jlis",
        metadata=Base.metadata,
        migrations=Path(__file__).parent / "migrations",
        kernel=kernel,
        audit=audit,
        auth=auth,
        exports=exports,
        guard=guard,
    )
)


class Citizen(Base):
    __tablename__ = "citizens"
    resident_code: Mapped[str] = mapped_column(String(11), primary_key=True)
    individual_number_enc: Mapped[bytes] = mapped_column(LargeBinary)
    individual_number_index: Mapped[str] = mapped_column(String(64), unique=True)
    lg_code: Mapped[str] = mapped_column(String(6))
    registered_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # 基本4情報 (氏名・カナ・生年月日・性別・住所) sealed like the number (AAD ``citizens``/
    # ``identity``/resident code), for the identity search; the blind index of
    # (name, birth date, sex) finds the rows to open. Empty for a pair loaded without them.
    identity_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    identity_index: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)


class RelayedAcquisition(Base):
    __tablename__ = "relayed_acquisitions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    acquisition_no: Mapped[str] = mapped_column(String(20), index=True)
    org_code: Mapped[str] = mapped_column(String(16))
    resident_code: Mapped[str] = mapped_column(String(11))
    relayed_at: Mapped[datetime] = mapped_column(UtcDateTime())
