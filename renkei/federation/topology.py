"""The demo federation: which organizations and nodes exist, their codes, ports and files.

機関コード of the demo organizations are ours (the real ones are not public):
a municipality's is its 6-digit 地方公共団体コード followed by ten zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from renkei.core.config import dump_config


@dataclass(frozen=True)
class Org:
    slug: str
    org_code: str
    name: str
    kind: str
    role: str  # hub | jlis | tsa | member
    nodes: tuple[str, ...]
    lg_code: str | None = None


HUB = Org("hub", "9000000000000001", "情報提供ネットワークシステム", "総務大臣", "hub", ("hub",))
JLIS = Org("jlis", "9000000000000002", "地方公共団体情報システム機構", "地方公共団体情報システム機構", "jlis", ("jlis",))
SHINJUKU = Org("shinjuku", "1310410000000000", "新宿区", "市町村長", "member", ("atena", "chukan"), "131041")
NAKANO = Org("nakano", "1311480000000000", "中野区", "市町村長", "member", ("atena", "chukan"), "131148")
NENKIN = Org("nenkin", "2000000000000001", "日本年金機構", "日本年金機構", "member", ("atena", "chukan"))
TSA = Org("tsa", "9000000000000003", "タイムスタンプ局", "タイムスタンプ局", "tsa", ("tsa",))

ORGS: tuple[Org, ...] = (HUB, JLIS, SHINJUKU, NAKANO, NENKIN, TSA)
NATIONAL_ROLES = frozenset(("hub", "jlis", "tsa"))  # one node each, ports base + offset
NODE_OFFSETS = {"hub": 1, "jlis": 2, "tsa": 3, "atena": 0, "chukan": 1}


@dataclass(frozen=True)
class Layout:
    """Where everything of one federation lives under a `var` directory."""

    root: Path
    base_port: int = 18400

    @property
    def ca_dir(self) -> Path:
        return self.root / "pki" / "ca"

    @property
    def ca_cert(self) -> Path:
        return self.ca_dir / "ca.crt"

    def creds_dir(self, org: Org, node: str) -> Path:
        """One node's own certificate and keys: every node has its own (DESIGN.md §3)."""
        return self.root / "pki" / "orgs" / org.slug / node

    def node_dir(self, org: Org, node: str) -> Path:
        return self.root / org.slug / node

    def config_path(self, org: Org, node: str) -> Path:
        return self.node_dir(org, node) / "node.toml"

    def port(self, org: Org, node: str) -> int:
        index = ORGS.index(org)
        if org.role in NATIONAL_ROLES:
            return self.base_port + NODE_OFFSETS[node]
        return self.base_port + 10 * index + NODE_OFFSETS[node]

    def url(self, org: Org, node: str) -> str:
        return f"https://127.0.0.1:{self.port(org, node)}"

    @property
    def demo_dir(self) -> Path:
        return self.root / "demo"


def node_config(layout: Layout, org: Org, node: str, database_url: str | None = None) -> dict[str, dict[str, Any]]:
    creds = layout.creds_dir(org, node).resolve()
    node_section: dict[str, Any] = {
        "kind": node,
        "org_code": org.org_code,
        "org_name": org.name,
        "org_kind": org.kind,
        "host": "127.0.0.1",
        "port": layout.port(org, node),
        "data_dir": str(layout.node_dir(org, node).resolve()),
        "hub_org_code": HUB.org_code,
        "tsa_org_code": TSA.org_code,
    }
    if database_url:
        node_section["database_url"] = database_url
    cfg: dict[str, dict[str, Any]] = {
        "node": node_section,
        "tls": {"cert": str(creds / "tls.crt"), "key": str(creds / "tls.key"), "ca": str(layout.ca_cert.resolve())},
        "keys": {
            "sig": str(creds / "sig.jwk"),
            "enc": str(creds / "enc.jwk"),
            "public": str(creds / "public.json"),
            "hub_public": str((layout.creds_dir(HUB, "hub") / "public.json").resolve()),
            "tsa_public": str((layout.creds_dir(TSA, "tsa") / "public.json").resolve()),
        },
        # Every node's audit checkpoints are countersigned by the time-stamp authority.
        "peers": {"hub": layout.url(HUB, "hub"), "jlis": layout.url(JLIS, "jlis"), "tsa": layout.url(TSA, "tsa")},
        "extra": {"jlis_org_code": JLIS.org_code},
    }
    if "chukan" in org.nodes:
        cfg["peers"]["chukan"] = layout.url(org, "chukan")
    if node == "atena":
        cfg["field"] = {"master_key": str((layout.node_dir(org, node) / "secrets" / "master.key").resolve())}
        # The demo and `make bench` play hundreds of inquiries by one staff member within a
        # minute; a real office keeps the defaults (60 requests a minute, 50 persons an hour).
        cfg["guard"] = {"limits": {"staff": 6000}, "distinct_persons": {"max": 5000}}
    return cfg


def write_config(layout: Layout, org: Org, node: str, database_url: str | None = None) -> Path:
    path = layout.config_path(org, node)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_config(node_config(layout, org, node, database_url)), encoding="utf-8")
    return path
