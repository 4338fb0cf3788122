"""A throw-away federation (keys, configs, registry) for in-process API tests.

The private CA and the organizations' keys take a couple of seconds to make, so they
are made once per test process and copied into each federation's directory; configs,
databases and the hub registry are fresh per federation.

Peers are configured on a port range nobody listens on: a test that reaches a peer by
mistake gets a fast `peer_unavailable`, never another engineer's running demo.
"""

from __future__ import annotations

import re
import shutil
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import OKPKey
from sqlalchemy import Engine, MetaData, func, select

from renkei.core.audit.timestamping import STAMP_TYP
from renkei.core.config import NodeConfig, load_config
from renkei.core.crypto import envelope, pki
from renkei.core.wire.messaging import JOSE_MEDIA_TYPE, new_message_id, seal
from renkei.federation import setup
from renkei.federation.topology import NENKIN, Layout, Org

JOSE = {"content-type": JOSE_MEDIA_TYPE}
_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")


def has_japanese(text: str) -> bool:
    return bool(_JAPANESE.search(text))


def _dead_base_port() -> int:
    """A base port whose whole range (base … base+60) nobody listens on right now."""
    for base in range(47000, 60000, 100):
        free = True
        for offset in range(0, 60):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", base + offset))
                except OSError:
                    free = False
                    break
        if free:
            return base
    raise RuntimeError("no free port range")


def _pki_template(base: Path) -> Path:
    """The demo organizations' keys, made once per test run under the run's temp dir."""
    root = base / "renkei-api-pki"
    if not (root / "pki" / "orgs" / NENKIN.slug / "chukan" / "public.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        setup.init_pki(Layout(root))
    return root / "pki"


@dataclass
class Federation:
    layout: Layout

    def config(self, org: Org, node: str) -> NodeConfig:
        return load_config(self.layout.config_path(org, node))

    def key(self, org: Org, node: str | None = None) -> envelope.SigningKey:
        """A node's signing key; by default the node that talks to the hub (a member's chukan)."""
        return envelope.load_signing_key(self.layout.creds_dir(org, node or org.nodes[-1]) / "sig.jwk")

    def public_doc(self, org: Org) -> dict[str, Any]:
        return setup.public_doc(self.layout, org)

    def seal(
        self,
        sender: Org | envelope.SigningKey,
        aud: Org | str,
        typ: str,
        body: dict[str, Any],
        *,
        iss: str | None = None,
        message_id: str | None = None,
        now: datetime | None = None,
        node: str | None = None,
    ) -> str:
        key = self.key(sender, node) if isinstance(sender, Org) else sender
        issuer = (
            iss
            if iss is not None
            else (sender.org_code if isinstance(sender, Org) else key.kid.split(":")[0])
        )
        audience = aud.org_code if isinstance(aud, Org) else aud
        return seal(
            key,
            issuer,
            audience,
            typ,
            body,
            message_id=message_id or new_message_id(),
            now=now or datetime.now(UTC),
        )

    def stranger_same_code(self, org: Org) -> envelope.SigningKey:
        """Keys for `org`'s code issued by a second, unrelated CA (same kid, other key)."""
        root = self.layout.root / "second-ca"
        if not (root / "ca" / "ca.crt").exists():
            pki.create_ca(root / "ca", "someone else's CA")
        node = org.nodes[-1]
        creds = pki.issue_node_credentials(root / "ca", root / org.slug / node, org.org_code, org.name, node)
        return envelope.load_signing_key(creds.sig_key)

    def stranger_org(self, org_code: str = "3999999999999999") -> envelope.SigningKey:
        """A whole organization from a second CA that no registry knows."""
        root = self.layout.root / "second-ca"
        if not (root / "ca" / "ca.crt").exists():
            pki.create_ca(root / "ca", "someone else's CA")
        creds = pki.issue_node_credentials(
            root / "ca", root / f"org-{org_code}", org_code, "未登録機関（架空）", "chukan"
        )
        return envelope.load_signing_key(creds.sig_key)


def fresh_ed25519(kid: str = "1234567890123456:chukan:sig:1") -> envelope.SigningKey:
    key = OKPKey.generate_key("Ed25519", {"kid": kid, "use": "sig"})
    return envelope.SigningKey(key=key, kid=kid)


def build_federation(factory: pytest.TempPathFactory, name: str = "federation") -> Federation:
    """Keys (copied), configs and the hub registry of the five demo organizations."""
    root = factory.mktemp(name)
    layout = Layout(root, _dead_base_port())
    shutil.copytree(_pki_template(factory.getbasetemp()), root / "pki")
    setup.write_configs(layout)
    setup.register_organizations(layout)
    return Federation(layout)


def counts(engine: Engine, metadata: MetaData) -> dict[str, int]:
    """Row count of every table of a node's schema (kernel tables included).

    The outbox's requests for the time-stamp authority (one per audit checkpoint, which
    an audited refusal can trigger) are counted apart, as ``outbox:tsa.stamp``.
    """
    out = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            q = select(func.count()).select_from(table)
            if table.name == "outbox":
                stamps = q.where(table.c.typ == STAMP_TYP)
                out["outbox:" + STAMP_TYP] = int(conn.execute(stamps).scalar_one())
                q = q.where(table.c.typ != STAMP_TYP)
            out[table.name] = int(conn.execute(q).scalar_one())
    return out


def assert_problem(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """A clear refusal: the status, problem+json, the stable code and a Japanese title."""
    ctype = resp.headers.get("content-type", "")
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert ctype.startswith("application/problem+json"), ctype
    body: dict[str, Any] = resp.json()
    assert body.get("code") == code, body
    assert body.get("status") == status, body
    assert str(body.get("type", "")).endswith(code), body
    title = body.get("title")
    assert isinstance(title, str) and title.strip() and has_japanese(title), body
    return body


def b64flip(token: str, part: int = 1) -> str:
    """Change one character in the middle of a JWS segment (still valid base64url)."""
    segments = token.split(".")
    seg = segments[part]
    i = len(seg) // 2
    ch = seg[i]
    repl = "B" if ch != "B" else "C"
    segments[part] = seg[:i] + repl + seg[i + 1 :]
    return ".".join(segments)


# A refusal is itself audited (who tried what) and counted by the abnormal-traffic
# guard (attempts count against rate limits): those tables may grow, nothing else.
AUDIT_TABLES = {
    "audit_entries", "audit_head", "audit_checkpoints", "audit_receipts", "outbox:" + STAMP_TYP,
    "guard_counters", "guard_lookups", "guard_secret", "guard_alerts",
    "auth_throttle",  # a refused sign-in counts towards the throttle: that is its point
}


def unchanged(before: Mapping[str, int], after: Mapping[str, int]) -> None:
    changed = {
        k: (before[k], after.get(k)) for k in before if k not in AUDIT_TABLES and before[k] != after.get(k)
    }
    assert not changed, f"rows written: {changed}"


def iter_post_routes(router: Any) -> Iterator[str]:
    for route in router.routes:
        if "POST" in getattr(route, "methods", set()):
            yield route.path
