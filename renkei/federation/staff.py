"""Demo staff of the nodes other than atena: hub and J-LIS operators, each chukan's staff.

Each node gets an administrator (管理), two auditors (監査: an export above the size
limit needs a second one's approval) and, at each intermediate server, clerks who
read the provision records of one affair each. This is the node's set-up, not an
administrator at work: the accounts get their roles at once through
`staff_admin.setup_staff` (no administrator exists yet who could approve a data
role), audited under ``setup:demo``; from then on `renkei staff`, the routes and the
UI apply the four-eyes rules. The generated passwords and
TOTP provisioning URIs are written to ``<node dir>/secrets/demo-credentials.json``
(0600, like `setup.enrol_atena`'s) and nowhere else: neither printed nor logged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select

from renkei import nodes  # noqa: F401  (registers every node's schema: open_node_store)
from renkei.core.audit.log import AuditEvent
from renkei.core.config import load_config
from renkei.core.db import transaction, utcnow
from renkei.federation.setup import CREDENTIALS_FILE, StaffSpec, write_private_json
from renkei.federation.topology import HUB, JLIS, ORGS, TSA, Layout, Org
from renkei.staff.admin import (
    generate_password,
    open_node_store,
    setup_principal,
    setup_staff,
)
from renkei.staff.auth import DEFAULT_POLICY, AuthPolicy

CHILD_ALLOWANCE_AFFAIR = "JM01000000074000"
LOCAL_TAX_AFFAIR = "JM01000000016000"
ENROLLER = "demo"


def _operators(prefix: str, unit: str) -> list[StaffSpec]:
    return [
        StaffSpec(f"{prefix}0001", f"{unit} 管理者（架空）", ("管理",)),
        StaffSpec(f"{prefix}0101", f"{unit} 監査担当（架空）", ("監査",)),
        StaffSpec(f"{prefix}0102", f"{unit} 監査担当2（架空）", ("監査",)),
    ]


HUB_STAFF: tuple[StaffSpec, ...] = tuple(_operators("H", "情報提供ネットワークシステム"))
JLIS_STAFF: tuple[StaffSpec, ...] = tuple(_operators("J", "J-LIS"))
TSA_STAFF: tuple[StaffSpec, ...] = tuple(_operators("T", "タイムスタンプ局"))
CHUKAN_STAFF: tuple[StaffSpec, ...] = (
    *_operators("C", "中間サーバー"),
    StaffSpec("C0201", "児童手当係 職員（架空）", (f"{CHILD_ALLOWANCE_AFFAIR}:参照",)),
    StaffSpec("C0202", "住民税係 職員（架空）", (f"{LOCAL_TAX_AFFAIR}:参照",)),
)


def credentials_path(layout: Layout, org: Org, node: str) -> Path:
    """Where a node's demo credentials are written (mode 0600, never committed)."""
    return layout.node_dir(org, node) / "secrets" / CREDENTIALS_FILE


def enrol_node_staff(
    layout: Layout,
    org: Org,
    node: str,
    staff: Iterable[StaffSpec],
    *,
    policy: AuthPolicy = DEFAULT_POLICY,
) -> Path:
    """Create the staff of one node (generated password, TOTP enrolled); returns the file.

    Accounts that already exist are left as they are (a demo re-run on the same data
    directory keeps the credentials written the first time).
    """
    path = credentials_path(layout, org, node)
    previous: dict[str, Any] = {}
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8")).get("staff", {})
    store = open_node_store(load_config(layout.config_path(org, node)))
    doc: dict[str, Any] = {
        "org_code": org.org_code,
        "node": node,
        "url": layout.url(org, node),
        "staff": {},
    }
    by = setup_principal(ENROLLER)
    try:
        with transaction(store.sessions) as s:
            existing = set(s.scalars(select(store.auth.staff.c.staff_id)))
            for member in staff:
                if member.staff_id in existing:
                    if member.staff_id in previous:
                        doc["staff"][member.staff_id] = previous[member.staff_id]
                    continue
                password = generate_password(member.staff_id, policy)
                made = setup_staff(
                    s,
                    store.auth,
                    store.cipher,
                    staff_id=member.staff_id,
                    name=member.name,
                    roles=member.roles,
                    password=password,
                    policy=policy,
                    now=utcnow(),
                )
                store.audit.append(
                    s,
                    AuditEvent(
                        actor=by.staff_id,
                        terminal="setup",
                        action="staff.create",
                        outcome="ok",
                        ref=made.staff_id,
                        detail={"roles": list(made.roles)},
                    ),
                )
                doc["staff"][made.staff_id] = {
                    "name": made.name,
                    "roles": list(made.roles),
                    "password": password,
                    "totp_uri": made.totp_uri,
                }
    finally:
        store.close()
    write_private_json(path, doc)
    return path


def enrol_federation_staff(
    layout: Layout,
    *,
    orgs: Sequence[Org] = ORGS,
    policy: AuthPolicy = DEFAULT_POLICY,
) -> dict[tuple[str, str], Path]:
    """Demo staff in the hub, J-LIS, the time-stamp authority and every intermediate server;
    {(org slug, node): file}."""
    out: dict[tuple[str, str], Path] = {}
    for org in orgs:
        if org == HUB:
            out[(org.slug, "hub")] = enrol_node_staff(layout, org, "hub", HUB_STAFF, policy=policy)
        elif org == JLIS:
            out[(org.slug, "jlis")] = enrol_node_staff(
                layout, org, "jlis", JLIS_STAFF, policy=policy
            )
        elif org == TSA:
            out[(org.slug, "tsa")] = enrol_node_staff(layout, org, "tsa", TSA_STAFF, policy=policy)
        elif "chukan" in org.nodes:
            out[(org.slug, "chukan")] = enrol_node_staff(
                layout, org, "chukan", CHUKAN_STAFF, policy=policy
            )
    return out


def load_node_credentials(layout: Layout, org: Org, node: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        credentials_path(layout, org, node).read_text(encoding="utf-8")
    )
    return doc
