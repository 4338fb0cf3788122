"""Integrated-addressee tables: persons, 基本4情報 history, households, the register feed,
business links, inquiry log.

The individual number is stored AES-GCM encrypted with an HMAC blind index for
lookup; no resident code and no pseudonym is ever stored here. Staff accounts,
sessions and API tokens are the kernel's `auth_*` tables (renkei.staff.auth), business
systems the kernel's `oauth_*` tables (renkei.staff.oauth).
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from renkei.core.audit.log import audit_tables
from renkei.core.db import NAMING, BigId, UtcDateTime, kernel_tables
from renkei.core.imports import import_tables
from renkei.core.schema import NodeSchema, register
from renkei.core.wire.guard import guard_tables
from renkei.staff.auth import auth_tables
from renkei.staff.exports import export_tables
from renkei.staff.oauth import oauth_tables


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


kernel = kernel_tables(Base.metadata)
audit = audit_tables(Base.metadata)
auth = auth_tables(Base.metadata)
oauth = oauth_tables(Base.metadata)
guard = guard_tables(Base.metadata)  # rate limits and alerts for staff and business clients
exports = export_tables(Base.metadata)  # downloads of personal data and their approvals
imports = import_tables(Base.metadata)  # bulk imports from files, resumable (renkei.core.imports)

# What this node hands the kernel (renkei.core.schema): nothing finds it by module name.
SCHEMA = register(
    NodeSchema(
        kind="atena",
        metadata=Base.metadata,
        migrations=Path(__file__).parent / "migrations",
        kernel=kernel,
        audit=audit,
        auth=auth,
        exports=exports,
        guard=guard,
    )
)


class Person(Base):
    __tablename__ = "persons"
    atena_no: Mapped[str] = mapped_column(String(15), primary_key=True)
    individual_number_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    individual_number_index: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    residence: Mapped[str] = mapped_column(String(12))  # resident | non_resident
    pseudonym_status: Mapped[str] = mapped_column(String(10), default="none")  # none | requested | bound
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AtenaSerial(Base):
    """Source of 統合宛名番号 serials (14 digits + check digit)."""

    __tablename__ = "atena_serials"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())


class BasicFour(Base):
    """One version of 基本4情報; a change adds a row, never overwrites one.

    The version in force on a day is the one with the latest ``effective_on`` (異動日) not
    after it, ties broken by recorded order (``id``); the current version is the one in
    force today. A late-arriving older change is history, not current
    (renkei.atena.history).
    """

    __tablename__ = "basic_four"
    __table_args__ = (Index("ix_basic_four_atena_no_effective", "atena_no", "effective_on", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    atena_no: Mapped[str] = mapped_column(ForeignKey("persons.atena_no"), index=True)
    family_name: Mapped[str] = mapped_column(String(100))
    given_name: Mapped[str] = mapped_column(String(100))
    family_kana: Mapped[str] = mapped_column(String(100))
    given_kana: Mapped[str] = mapped_column(String(100))
    # Indexed: the staff search by kana name always names the birth date.
    birth_date: Mapped[date] = mapped_column(Date, index=True)
    sex: Mapped[str] = mapped_column(String(1))
    postal_code: Mapped[str] = mapped_column(String(7))
    address: Mapped[str] = mapped_column(String(300))
    lg_code: Mapped[str] = mapped_column(String(6))
    # 異動事由: 新規 (first registration), 転入, 転出, 転居, 出生, 死亡, 氏名変更, 職権修正
    # (更新: rows recorded before the reasons were kept).
    change_kind: Mapped[str] = mapped_column(String(10))
    effective_on: Mapped[date] = mapped_column(Date)  # 異動日
    # resident (on the register) | former (転出・死亡: 除票, kept and searchable) | non_resident
    status: Mapped[str] = mapped_column(String(12), default="resident", server_default="resident")
    # Who said so: "feed:<system>:<file>", "api:<client>", "import:<file>", "staff:<id>" …
    source: Mapped[str] = mapped_column(String(200), default="", server_default="")
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Household(Base):
    """A 世帯 of the resident register, by its 世帯番号 (15 digits with check digit)."""

    __tablename__ = "households"
    household_no: Mapped[str] = mapped_column(String(15), primary_key=True)
    lg_code: Mapped[str] = mapped_column(String(6))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class HouseholdMember(Base):
    """One version of a person's household membership, from ``effective_on`` on: the
    世帯番号 and 続柄 (世帯主 for the head), or no household (``household_no`` None: the
    person left the register). Ordered like `BasicFour` (effective date, then id)."""

    __tablename__ = "household_members"
    __table_args__ = (Index("ix_household_members_atena_no_effective", "atena_no", "effective_on", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    atena_no: Mapped[str] = mapped_column(ForeignKey("persons.atena_no"))
    household_no: Mapped[str | None] = mapped_column(
        ForeignKey("households.household_no"), index=True, nullable=True
    )
    relationship: Mapped[str] = mapped_column(String(20), default="", server_default="")  # 続柄
    change_kind: Mapped[str] = mapped_column(String(10))
    effective_on: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(200), default="", server_default="")
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())


class RegisterEvent(Base):
    """One 異動 of the resident register feed, applied once: the same event id again
    (same content) changes nothing; other content under a known id is refused."""

    __tablename__ = "register_events"
    __table_args__ = (UniqueConstraint("system", "event_id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    system: Mapped[str] = mapped_column(String(40))  # the register's business-system ID
    event_id: Mapped[str] = mapped_column(String(40))  # 異動ID
    digest: Mapped[str] = mapped_column(String(64))  # SHA-256 of the event's content
    kind: Mapped[str] = mapped_column(String(10))  # 異動事由
    effective_on: Mapped[date] = mapped_column(Date)
    notified_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    atena_no: Mapped[str] = mapped_column(ForeignKey("persons.atena_no"), index=True)
    other_lg_code: Mapped[str | None] = mapped_column(String(6), nullable=True)  # 転入元・転出先
    other_address: Mapped[str | None] = mapped_column(String(300), nullable=True)
    outcome: Mapped[str] = mapped_column(String(12))  # applied | history | no_change
    source: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())


class BusinessLink(Base):
    __tablename__ = "business_links"
    __table_args__ = (UniqueConstraint("system", "business_atena_no"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    system: Mapped[str] = mapped_column(String(40))
    business_atena_no: Mapped[str] = mapped_column(String(15))
    atena_no: Mapped[str] = mapped_column(ForeignKey("persons.atena_no"), index=True)
    linked_at: Mapped[datetime] = mapped_column(UtcDateTime())


class InquiryLog(Base):
    __tablename__ = "inquiry_log"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    staff_id: Mapped[str] = mapped_column(String(64))  # the staff member or business system that ran it
    # who asked inside the organization, as the request names them (一括照会: 部署コード, ユーザーID)
    department: Mapped[str | None] = mapped_column(String(20), nullable=True)
    user_id: Mapped[str | None] = mapped_column(String(20), nullable=True)
    affair_code: Mapped[str] = mapped_column(String(16))
    procedure_code: Mapped[str] = mapped_column(String(16))
    info_kind_code: Mapped[str] = mapped_column(String(16))
    provider_org: Mapped[str] = mapped_column(String(16))
    atena_no: Mapped[str] = mapped_column(String(15))
    serial: Mapped[str | None] = mapped_column(String(20), nullable=True)
    # a status or a refusal code, relayed codes included (some exceed 20 characters)
    outcome: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)


def _key(length: int) -> String:
    """A search key column: compared code point by code point on both engines (SQLite's
    BINARY; PostgreSQL's "C" collation), so that a prefix is one index range."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


class PersonSearchKey(Base):
    """The search keys of one version of a person's 基本4情報 (renkei.atena.search).

    Derived, never edited: `renkei.atena.search.refresh_search_keys` rebuilds a person's
    rows from ``persons`` and ``basic_four`` whenever those are written. Each index ends
    in ``id`` so that a page in key order is read straight off the index.
    """

    __tablename__ = "person_search_keys"
    __table_args__ = (
        Index("ix_person_search_keys_kana", "kana_key", "id"),
        Index("ix_person_search_keys_name", "name_key", "id"),
        Index("ix_person_search_keys_birth", "birth_date", "kana_key", "id"),
        Index("ix_person_search_keys_place", "place_key", "id"),
        Index("ix_person_search_keys_town", "town_key", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    atena_no: Mapped[str] = mapped_column(ForeignKey("persons.atena_no"), index=True)
    version_id: Mapped[int] = mapped_column(BigInteger)  # basic_four.id the keys come from
    kana_key: Mapped[str] = mapped_column(_key(200))
    name_key: Mapped[str] = mapped_column(_key(200))
    birth_date: Mapped[date] = mapped_column(Date)
    place_key: Mapped[str] = mapped_column(_key(300))  # 市区町村 + town + block
    town_key: Mapped[str] = mapped_column(_key(300))  # town + block
    residence: Mapped[str] = mapped_column(String(12))
    current: Mapped[bool] = mapped_column(Boolean)
class ChonaiRecord(Base):
    """特定個人情報 a business system published for in-house sharing (庁内連携,
    renkei.atena.chonai): the current record per (provider system, info kind, person,
    record key), keyed by 統合宛名番号 (translated from the provider's 宛名番号). The items
    are one AES-GCM sealed JSON object (AAD: table, column, the key)."""

    __tablename__ = "chonai_records"
    __table_args__ = (UniqueConstraint("provider_system", "info_kind_code", "atena_no", "record_key"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider_system: Mapped[str] = mapped_column(String(40))
    info_kind_code: Mapped[str] = mapped_column(String(16))
    atena_no: Mapped[str] = mapped_column(ForeignKey("persons.atena_no"), index=True)
    record_key: Mapped[str] = mapped_column(String(40))  # e.g. the tax year; "" if one record a person
    values_enc: Mapped[bytes] = mapped_column(LargeBinary)
    published_by: Mapped[str] = mapped_column(String(64))  # OAuth client or cli:<user>
    published_at: Mapped[datetime] = mapped_column(UtcDateTime())
