"""Setting a federation up: keys and certificates, node configs, registry, seed data, accounts."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from renkei.core.config import dump_config, load_config
from renkei.core.crypto import pki
from renkei.core.db import make_engine, make_sessionmaker, migrate, transaction, utcnow
from renkei.federation.topology import HUB, ORGS, Layout, Org, node_config, write_config
from renkei.staff.admin import generate_password, node_cipher, setup_staff
from renkei.staff.auth import DEFAULT_POLICY, AuthPolicy
from renkei.staff.oauth import register_client

# The staff UI listener of each atena: its mTLS port + 5 (free in every organization's block of 10).
STAFF_PORT_OFFSET = 5


def terminal_ca_dir(layout: Layout, org: Org) -> Path:
    """The organization's own CA for designated staff terminals (not the federation CA).

    Where `renkei pki terminal --data-dir <atena data dir>` keeps it.
    """
    return layout.node_dir(org, "atena") / "terminal-ca"


def init_pki(layout: Layout, orgs: Iterable[Org] = ORGS) -> None:
    """Private CA and, per node, its own TLS certificate, signing and encryption keys;
    a terminal CA for each organization with an atena."""
    pki.create_ca(layout.ca_dir)
    for org in orgs:
        for node in org.nodes:
            pki.issue_node_credentials(layout.ca_dir, layout.creds_dir(org, node), org.org_code, org.name, node)
        if "atena" in org.nodes:
            pki.create_terminal_ca(terminal_ca_dir(layout, org), org.org_code)


def staff_port(layout: Layout, org: Org) -> int:
    return layout.port(org, "atena") + STAFF_PORT_OFFSET


def staff_url(layout: Layout, org: Org) -> str:
    return f"https://127.0.0.1:{staff_port(layout, org)}"


def staff_section(layout: Layout, org: Org) -> dict[str, Any]:
    """``[staff]`` of a demo atena: the UI listener, terminal certificates NOT required.

    The demo has no terminal certificates in browsers, so every page shows the red
    warning; production keeps the default (true). To try the check, issue a certificate
    with `renkei pki terminal --data-dir <var>/<org>/atena ...`, import its .p12 into the
    browser and start with RENKEI_STAFF_REQUIRE_TERMINAL_CERT=true.
    """
    return {
        "port": staff_port(layout, org),
        "require_terminal_cert": False,
        "terminal_ca": str((terminal_ca_dir(layout, org) / pki.CA_CERT).resolve()),
    }


def write_configs(layout: Layout, database_urls: dict[str, str] | None = None) -> dict[tuple[str, str], Path]:
    urls = database_urls or {}
    out = {}
    for org in ORGS:
        for node in org.nodes:
            url = urls.get(f"{org.slug}/{node}")
            if node == "atena":
                cfg = node_config(layout, org, node, url)
                cfg["staff"] = staff_section(layout, org)
                path = layout.config_path(org, node)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(dump_config(cfg), encoding="utf-8")
                out[(org.slug, node)] = path
            else:
                out[(org.slug, node)] = write_config(layout, org, node, url)
    return out


def node_public_doc(layout: Layout, org: Org, node: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((layout.creds_dir(org, node) / "public.json").read_text(encoding="utf-8"))
    return doc


def public_doc(layout: Layout, org: Org) -> dict[str, Any]:
    """What the hub registers for an organization: the public keys of all its nodes."""
    docs = [node_public_doc(layout, org, node) for node in org.nodes]
    return {
        "org_code": org.org_code,
        "name": org.name,
        "keys": [key for doc in docs for key in doc["keys"]],
    }


def register_organizations(layout: Layout) -> None:
    """Enter every organization and its public keys into the hub's registry."""
    from renkei.hub import service as hub_service
    from renkei.hub.app import MIGRATIONS
    from renkei.hub.models import Base

    cfg = load_config(layout.config_path(HUB, "hub"))
    engine = make_engine(cfg.database_url)
    migrate(engine, MIGRATIONS, Base.metadata)
    with transaction(make_sessionmaker(engine)) as s:
        for org in ORGS:
            hub_service.register_org(
                s,
                public_doc(layout, org),
                kind=org.kind,
                lg_code=org.lg_code,
                chukan_url=layout.url(org, "chukan") if "chukan" in org.nodes else None,
                role=org.role,
                now=utcnow(),
            )
    engine.dispose()


def load_jlis(
    layout: Layout, rows: list[tuple[str, str, str]], identities: dict[str, dict[str, str]] | None = None
) -> int:
    """Give the J-LIS simulator its (individual number, resident code, lg code) table, and
    the 基本4情報 of each resident code in ``identities`` (for the identity search)."""
    from renkei.federation.topology import JLIS
    from renkei.jlis import service as jlis_service
    from renkei.jlis.app import MIGRATIONS
    from renkei.jlis.models import Base

    cfg = load_config(layout.config_path(JLIS, "jlis"))
    cipher = node_cipher(cfg)
    engine = make_engine(cfg.database_url)
    migrate(engine, MIGRATIONS, Base.metadata, {"field_cipher": cipher})
    with transaction(make_sessionmaker(engine)) as s:
        found = jlis_service.parse_identities(list((identities or {}).values()))
        by_code = {code: who for code, who in zip(identities or {}, found, strict=True) if who is not None}
        n = jlis_service.load_citizens(s, cipher, rows, utcnow(), by_code)
    engine.dispose()
    return n


@dataclass(frozen=True)
class StaffSpec:
    staff_id: str
    name: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class ClientSpec:
    """A business system allowed to call atena with OAuth client credentials."""

    client_id: str
    system_id: str
    name: str
    scopes: tuple[str, ...]


CREDENTIALS_FILE = "demo-credentials.json"


def credentials_path(layout: Layout, org: Org) -> Path:
    """Where `enrol_atena` writes the generated credentials (mode 0600, never committed)."""
    return layout.node_dir(org, "atena") / "secrets" / CREDENTIALS_FILE


def write_private_json(path: Path, doc: dict[str, Any]) -> None:
    """Write credentials readable by the owner only (0600, in a 0700 directory)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False, indent=2)
    os.chmod(path, 0o600)  # also when the file existed with a wider mode


def enrol_atena(
    layout: Layout,
    org: Org,
    staff: Iterable[StaffSpec],
    clients: Iterable[ClientSpec] = (),
    *,
    policy: AuthPolicy = DEFAULT_POLICY,
) -> Path:
    """Create staff (generated password, TOTP enrolled) and OAuth clients in an atena.

    Set-up, not an administrator: the accounts get all their roles at once
    (`staff_admin.setup_staff`; separation of duties still holds).

    The generated passwords, TOTP provisioning URIs and client secrets are written to
    `credentials_path` (0600) and nowhere else: neither printed nor logged. Returns it.
    """
    from renkei.atena.app import MIGRATIONS, field_cipher, token_endpoint_url
    from renkei.atena.models import Base
    from renkei.atena.models import auth as auth_t
    from renkei.atena.models import oauth as oauth_t

    cfg = load_config(layout.config_path(org, "atena"))
    cipher = field_cipher(cfg)
    engine = make_engine(cfg.database_url)
    migrate(engine, MIGRATIONS, Base.metadata)
    doc: dict[str, Any] = {
        "org_code": org.org_code,
        "atena_url": layout.url(org, "atena"),
        "token_endpoint": token_endpoint_url(cfg),
        "staff": {},
        "clients": {},
    }
    try:
        with transaction(make_sessionmaker(engine)) as s:
            now = utcnow()
            for member in staff:
                password = generate_password(member.staff_id, policy)
                made = setup_staff(
                    s, auth_t, cipher, staff_id=member.staff_id, name=member.name,
                    roles=member.roles, password=password, policy=policy, now=now,
                )
                doc["staff"][member.staff_id] = {
                    "name": member.name,
                    "roles": list(member.roles),
                    "password": password,
                    "totp_uri": made.totp_uri,
                }
            for client in clients:
                secret = register_client(
                    s, oauth_t, cipher,
                    client_id=client.client_id, system_id=client.system_id, name=client.name,
                    allowed_scopes=list(client.scopes), now=now,
                )
                doc["clients"][client.client_id] = {
                    "system_id": client.system_id,
                    "scopes": list(client.scopes),
                    "secret": secret,
                }
    finally:
        engine.dispose()
    path = credentials_path(layout, org)
    write_private_json(path, doc)
    return path


def load_credentials(layout: Layout, org: Org) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(credentials_path(layout, org).read_text(encoding="utf-8"))
    return doc
