"""Setting a federation up: keys and certificates, node configs, registry and seed data."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from renkei.core.config import load_config
from renkei.core.crypto import pki
from renkei.core.db import make_engine, make_sessionmaker, migrate, transaction, utcnow
from renkei.federation.topology import HUB, ORGS, Layout, Org, write_config


def init_pki(layout: Layout, orgs: Iterable[Org] = ORGS) -> None:
    """Private CA and, per organization, TLS certificate, signing and encryption keys."""
    pki.create_ca(layout.ca_dir)
    for org in orgs:
        pki.issue_org_credentials(layout.ca_dir, layout.creds_dir(org), org.org_code, org.name)


def write_configs(layout: Layout, database_urls: dict[str, str] | None = None) -> dict[tuple[str, str], Path]:
    urls = database_urls or {}
    out = {}
    for org in ORGS:
        for node in org.nodes:
            out[(org.slug, node)] = write_config(layout, org, node, urls.get(f"{org.slug}/{node}"))
    return out


def public_doc(layout: Layout, org: Org) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((layout.creds_dir(org) / "public.json").read_text(encoding="utf-8"))
    return doc


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


def load_jlis(layout: Layout, rows: list[tuple[str, str, str]]) -> int:
    """Give the J-LIS simulator its (individual number, resident code, lg code) table."""
    from renkei.federation.topology import JLIS
    from renkei.jlis import service as jlis_service
    from renkei.jlis.app import MIGRATIONS
    from renkei.jlis.models import Base

    cfg = load_config(layout.config_path(JLIS, "jlis"))
    engine = make_engine(cfg.database_url)
    migrate(engine, MIGRATIONS, Base.metadata)
    with transaction(make_sessionmaker(engine)) as s:
        n = jlis_service.load_citizens(s, rows, utcnow())
    engine.dispose()
    return n


def add_staff(layout: Layout, org: Org, staff: list[tuple[str, str, list[str]]]) -> None:
    from renkei.atena import service as atena_service
    from renkei.atena.app import MIGRATIONS
    from renkei.atena.models import Base

    cfg = load_config(layout.config_path(org, "atena"))
    engine = make_engine(cfg.database_url)
    migrate(engine, MIGRATIONS, Base.metadata)
    with transaction(make_sessionmaker(engine)) as s:
        for staff_id, name, roles in staff:
            atena_service.add_staff(s, staff_id, name, roles)
    engine.dispose()
