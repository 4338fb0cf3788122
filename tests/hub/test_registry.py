"""Hub registry and serials: organizations, public keys with rotation, 処理通番."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from renkei.core.crypto import pki
from renkei.core.errors import Problem
from renkei.hub import service
from renkei.hub.models import Organization, OrgKey, Serial
from tests.hub.conftest import JLIS, NAKANO, NENKIN, NOW, SHINJUKU

OTHER = "1312340000000000"


def _kids(session: Session, org_code: str) -> dict[str, str]:
    return {
        k.kid: k.status for k in session.scalars(select(OrgKey).where(OrgKey.org_code == org_code))
    }


def test_register_org_stores_organization_and_its_keys(
    session: Session, public_docs: dict[str, dict[str, Any]]
) -> None:
    doc = public_docs[SHINJUKU]
    org = service.register_org(
        session, doc, kind="市町村長", lg_code="131041", chukan_url="https://c.example/", now=NOW
    )
    session.commit()
    assert (org.org_code, org.name, org.kind, org.lg_code, org.role, org.active) == (
        SHINJUKU,
        "新宿区",
        "市町村長",
        "131041",
        "member",
        True,
    )
    stored = session.get(Organization, SHINJUKU)
    assert stored is not None and stored.registered_at == NOW
    assert _kids(session, SHINJUKU) == {
        f"{SHINJUKU}:chukan:sig:1": "active",
        f"{SHINJUKU}:chukan:enc:1": "active",
    }
    sig = session.get(OrgKey, f"{SHINJUKU}:chukan:sig:1")
    assert sig is not None and sig.use == "sig"
    assert sig.jwk["crv"] == "Ed25519" and sig.jwk["x"] == doc["keys"][0]["x"]
    assert "d" not in sig.jwk  # public part only


def test_register_org_rejects_malformed_org_code(
    session: Session, public_docs: dict[str, dict[str, Any]]
) -> None:
    for bad in (
        "131041000000000",
        "13104100000000001",
        "131041000000000X",
        "",
        "１３１０４１００００００００００",
    ):
        doc = {**public_docs[SHINJUKU], "org_code": bad}
        with pytest.raises(Problem) as exc:
            service.register_org(session, doc, kind="市町村長", now=NOW)
        assert exc.value.code == "invalid_org_code" and exc.value.status == 422, bad
    assert session.scalar(select(func.count()).select_from(Organization)) == 0
    assert session.scalar(select(func.count()).select_from(OrgKey)) == 0


def test_reregister_after_rotation_keeps_old_key_ids(
    session: Session, ca_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "other"
    creds = pki.issue_node_credentials(ca_dir, out, OTHER, "架空市", "chukan")
    service.register_org(session, json.loads(creds.public.read_text()), kind="市町村長", now=NOW)
    session.commit()
    old_sig = session.get(OrgKey, f"{OTHER}:chukan:sig:1")
    assert old_sig is not None
    old_x = old_sig.jwk["x"]

    new_sig, new_enc = pki.rotate_node_keys(out, OTHER, "chukan")
    assert (new_sig, new_enc) == (f"{OTHER}:chukan:sig:2", f"{OTHER}:chukan:enc:2")
    later = NOW + timedelta(days=1)
    org = service.register_org(
        session,
        json.loads(creds.public.read_text()),
        kind="市町村長",
        chukan_url="https://x",
        now=later,
    )
    session.commit()
    assert org.registered_at == NOW  # the first registration time is kept
    assert org.chukan_url == "https://x"
    assert _kids(session, OTHER) == {
        f"{OTHER}:chukan:sig:1": "retiring",
        f"{OTHER}:chukan:enc:1": "retiring",
        f"{OTHER}:chukan:sig:2": "active",
        f"{OTHER}:chukan:enc:2": "active",
    }
    kept = session.get(OrgKey, f"{OTHER}:chukan:sig:1")
    assert kept is not None and kept.jwk["x"] == old_x  # the old public key is unchanged

    # A second rotation drops version 1 from public.json; the hub never deletes a key.
    pki.rotate_node_keys(out, OTHER, "chukan")
    service.register_org(session, json.loads(creds.public.read_text()), kind="市町村長", now=later)
    session.commit()
    kids = _kids(session, OTHER)
    assert len(kids) == 6
    assert kids[f"{OTHER}:chukan:sig:2"] == "retiring" and kids[f"{OTHER}:chukan:sig:3"] == "active"
    assert f"{OTHER}:chukan:sig:1" in kids


def test_registry_documents(session: Session, federation: Session) -> None:
    docs = {d["org_code"]: d for d in service.registry_documents(session)}
    assert set(docs) == {"9000000000000001", JLIS, SHINJUKU, NAKANO, NENKIN}
    shinjuku = docs[SHINJUKU]
    assert shinjuku["name"] == "新宿区" and shinjuku["kind"] == "市町村長"
    assert shinjuku["endpoints"] == {"chukan": "https://127.0.0.1:9101/"}
    assert docs[JLIS]["endpoints"] == {}
    assert [k["kid"] for k in shinjuku["keys"]] == sorted(
        [f"{SHINJUKU}:chukan:enc:1", f"{SHINJUKU}:chukan:sig:1"]
    )
    assert all(k["status"] == "active" for k in shinjuku["keys"])
    assert all(k["kid"].startswith(SHINJUKU) for k in shinjuku["keys"])
    # no private key material is ever published
    assert all("d" not in k for d in docs.values() for k in d["keys"])

    org = session.get(Organization, NAKANO)
    assert org is not None
    org.active = False
    session.flush()
    assert NAKANO not in {d["org_code"] for d in service.registry_documents(session)}


def test_key_document(session: Session, federation: Session) -> None:
    assert service.key_document(session, "no-such-kid") is None
    assert service.key_document(session, f"{SHINJUKU}:chukan:sig:9") is None
    doc = service.key_document(session, f"{SHINJUKU}:chukan:enc:1")
    assert doc is not None
    assert doc["kid"] == f"{SHINJUKU}:chukan:enc:1" and doc["use"] == "enc" and doc["crv"] == "X25519"
    assert doc["status"] == "active"
    org = session.get(Organization, SHINJUKU)
    assert org is not None
    org.active = False
    session.flush()
    assert service.key_document(session, f"{SHINJUKU}:chukan:enc:1") is None
    # an inactive organization is no member either
    with pytest.raises(Problem) as exc:
        service.member(session, SHINJUKU)
    assert exc.value.code == "unknown_organization"
    with pytest.raises(Problem) as exc:
        service.member(session, "1234567890123456")
    assert exc.value.code == "unknown_organization" and exc.value.status == 404
    assert service.member(session, NAKANO).name == "中野区"


def test_issue_serial_unique_increasing_twenty_digits(session: Session) -> None:
    serials = [service.issue_serial(session, "inquiry", NOW) for _ in range(50)]
    session.commit()
    assert all(re.fullmatch(r"[0-9]{20}", s) for s in serials)
    assert all(s.startswith("20250401") for s in serials)
    assert len(set(serials)) == 50
    assert serials == sorted(serials)
    assert [int(s) for s in serials] == sorted(int(s) for s in serials)
    # a later session on the same database continues the sequence
    more = service.issue_serial(session, "acquisition", NOW)
    assert more > serials[-1]
    assert session.scalar(select(func.count()).select_from(Serial)) == 51
    kinds = set(session.scalars(select(Serial.kind)))
    assert kinds == {"inquiry", "acquisition"}
    session.commit()
    # after a rollback the sequence still goes on from the last committed serial
    service.issue_serial(session, "inquiry", NOW)
    session.rollback()
    after = service.issue_serial(session, "inquiry", NOW)
    session.commit()
    assert after > more and after not in serials


def test_register_org_cannot_replace_another_organizations_key(
    session: Session, public_docs: dict[str, dict[str, Any]]
) -> None:
    service.register_org(session, public_docs[SHINJUKU], kind="市町村長", now=NOW)
    session.commit()
    theirs = session.get(OrgKey, f"{SHINJUKU}:chukan:sig:1")
    assert theirs is not None
    original = dict(theirs.jwk)
    forged = {
        **public_docs[NAKANO],
        "keys": [{**public_docs[NAKANO]["keys"][0], "kid": f"{SHINJUKU}:chukan:sig:1"}],
    }
    try:
        service.register_org(session, forged, kind="市町村長", now=NOW)
        session.commit()
    except Problem:
        session.rollback()
    session.expire_all()
    key = session.get(OrgKey, f"{SHINJUKU}:chukan:sig:1")
    assert key is not None
    assert key.org_code == SHINJUKU
    assert key.jwk == original
