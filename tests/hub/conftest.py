"""Hub storage fixtures: a migrated hub database, the catalogue, real public key documents."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from renkei.catalogue import Catalogue, load_catalogue
from renkei.core.crypto import pki
from renkei.core.wire import contract
from renkei.hub import service

NOW = datetime(2025, 4, 1, 0, 30, tzinfo=UTC)
SECRET = b"k" * 32

HUB = "9000000000000001"
JLIS = "9000000000000002"
SHINJUKU = "1310410000000000"
NAKANO = "1311480000000000"
NENKIN = "2000000000000001"

# org code → (name, kind, role, chukan url)
ORGS: dict[str, tuple[str, str, str, str | None]] = {
    HUB: ("情報提供ネットワークシステム", "総務大臣", "hub", None),
    JLIS: ("地方公共団体情報システム機構", "地方公共団体情報システム機構", "jlis", None),
    SHINJUKU: ("新宿区", "市町村長", "member", "https://127.0.0.1:9101/"),
    NAKANO: ("中野区", "市町村長", "member", "https://127.0.0.1:9201"),
    NENKIN: ("日本年金機構", "日本年金機構", "member", "https://127.0.0.1:9301"),
}


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return load_catalogue()


@pytest.fixture(scope="session")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hub-pki") / "ca"
    pki.create_ca(d)
    return d


@pytest.fixture(scope="session")
def public_docs(ca_dir: Path) -> dict[str, dict[str, Any]]:
    """Real public.json documents of every organization, issued once per session."""
    docs = {}
    for code, (name, _kind, role, _url) in ORGS.items():
        node = role if role in {"hub", "jlis"} else "chukan"
        creds = pki.issue_node_credentials(ca_dir, ca_dir.parent / code, code, name, node)
        docs[code] = json.loads(creds.public.read_text(encoding="utf-8"))
    return docs


@pytest.fixture
def session(node_db: Callable[[str], Any]) -> Iterator[Session]:
    s = node_db("hub")()
    try:
        yield s
    finally:
        s.rollback()
        s.close()


@pytest.fixture
def federation(session: Session, public_docs: dict[str, dict[str, Any]]) -> Session:
    """The hub database with every organization registered."""
    for code, (_name, kind, role, url) in ORGS.items():
        service.register_org(
            session, public_docs[code], kind=kind, role=role, chukan_url=url, now=NOW
        )
    session.commit()
    return session


def resolve(session: Session, kernel: Any, secret: bytes, items: Any, now: Any) -> Any:
    """`service.resolve_acquisitions` on items as they arrive on the wire (parsed by the contract)."""
    parsed = contract.parse(contract.AcquisitionResolve, {"items": items}).items
    return service.resolve_acquisitions(session, kernel, secret, parsed, now)


def begin(session: Session, catalogue: Any, inquirer: str, body: Any, now: Any, today: Any) -> Any:
    """`service.begin_inquiry` on a body as it arrives on the wire (parsed by the contract)."""
    return service.begin_inquiry(session, catalogue, inquirer, contract.parse(contract.HubInquiry, body), now, today)
