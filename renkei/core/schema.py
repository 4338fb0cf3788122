"""What a node hands the kernel about its storage: tables, metadata, migrations.

The kernel (and `renkei.staff`) never imports a node. Each node's ``models.py``
registers its `NodeSchema` at import (`register`); code that must open a node's
database from its configuration alone — the command line, the demo's set-up — looks
the schema up by the node kind (`schema_of`) after `renkei.nodes` has imported every
node. Nothing is found by module name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData

from renkei.core.audit.log import AuditTables
from renkei.core.db import KernelTables

__all__ = ["NodeSchema", "SchemaError", "register", "schema_of"]


class SchemaError(LookupError):
    """No node of that kind has registered its schema (a Japanese message)."""


@dataclass(frozen=True)
class NodeSchema:
    """A node's database: its metadata and Alembic migrations, and the table groups the
    kernel and staff work on (``auth``/``exports`` are `renkei.staff` table groups, kept
    untyped here because the kernel does not know staff)."""

    kind: str
    metadata: MetaData
    migrations: Path
    kernel: KernelTables
    audit: AuditTables
    auth: Any = None
    exports: Any = None
    guard: Any = None


_SCHEMAS: dict[str, NodeSchema] = {}


def register(schema: NodeSchema) -> NodeSchema:
    """Called once by each node's models module; returns the schema for its own use."""
    known = _SCHEMAS.get(schema.kind)
    if known is not None and known is not schema:
        raise SchemaError(f"ノード種別 {schema.kind} のスキーマが二重に登録されています。")
    _SCHEMAS[schema.kind] = schema
    return schema


def schema_of(kind: str) -> NodeSchema:
    try:
        return _SCHEMAS[kind]
    except KeyError:
        raise SchemaError(f"ノード種別 {kind} のデータベース定義が読み込まれていません。") from None
