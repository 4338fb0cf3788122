"""What auditors (role 監査) do on every node, as plain functions: verify the audit chain.

Separation of duties: only audit roles read the audit log (`roles.may_read_audit`);
管理 alone does not. Exports of the log go through the approval flow
(renkei.staff.exports, kind ``audit`` in renkei.staff.export_kinds).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from joserfc.jwk import OKPKey
from sqlalchemy.orm import Session

from renkei.core.audit.log import AuditTables, VerifyReport, verify
from renkei.core.config import NodeConfig
from renkei.core.crypto import envelope
from renkei.staff.roles import AUDIT, PermissionDenied, may_read_audit

KeyResolver = Callable[[str], Any | None]


def require_auditor(roles: Iterable[str]) -> None:
    """PermissionDenied ``role_required`` unless the roles may read the audit log."""
    if not may_read_audit(roles):
        raise PermissionDenied(
            "role_required",
            "監査ログを参照するには権限「監査」が必要です（管理の権限では参照できません）。",
            needed=AUDIT,
        )


def node_key_resolver(config: NodeConfig) -> KeyResolver:
    """The node's public signing keys, current and retired, by key id (checkpoints)."""
    doc = json.loads(config.keys.public.read_text(encoding="utf-8"))
    keys: dict[str, Any] = dict(envelope.public_keys_from_document(doc))
    # Keys retired from public.json stay on disk as sig.<n>.jwk: they verify old checkpoints.
    for old in sorted(config.keys.sig.parent.glob("sig.*.jwk")):
        key = envelope.load_signing_key(old)
        keys.setdefault(key.kid, OKPKey.import_key(key.key.as_dict(private=False)))
    return keys.get


def verify_audit_log(
    session: Session, tables: AuditTables, resolve_key: KeyResolver, *, roles: Iterable[str]
) -> VerifyReport:
    """Walk the node's whole audit chain and its signed checkpoints (auditors only)."""
    require_auditor(roles)
    return verify(session, tables, resolve_key)
