"""Staff tables reach hub, jlis and chukan by migration <node>_0002 (and the sign-in
throttle and role requests by the next one) without touching existing data; the demo
enrols operators in every node, credentials kept private."""

from __future__ import annotations

import importlib
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, func, insert, inspect, select, text
from starlette.testclient import TestClient

from renkei.core.audit.log import AuditEvent, AuditLog, verify
from renkei.core.crypto import envelope
from renkei.core.db import make_engine, make_sessionmaker, migrate, transaction
from renkei.federation import staff as demo_staff
from renkei.federation.topology import HUB, JLIS, NAKANO, SHINJUKU
from renkei.hub.app import create_app as hub_app
from renkei.staff import auth
from renkei.staff.admin import cli_principal, enrol_staff, node_cipher
from tests.api.fed import Federation, build_federation
from tests.core.staff_kit import CHEAP_POLICY, ORG_OF

NOW = datetime(2026, 4, 1, 0, 30, tzinfo=UTC)
NEW_TABLES = {
    "auth_staff", "auth_sessions", "auth_api_tokens", "export_requests",
    "auth_throttle", "auth_role_requests",
}  # fmt: skip
OWN_TABLE = {"hub": "organizations", "jlis": "citizens", "chukan": "pseudonym_bindings"}


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return build_federation(tmp_path_factory, "staff-hub")


def _alembic(engine: Engine, node: str) -> Config:
    models = importlib.import_module(f"renkei.{node}.models")
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(str(models.__file__)).parent / "migrations"))
    cfg.attributes["engine"] = engine
    cfg.attributes["metadata"] = models.Base.metadata
    return cfg


def _seed_0001(engine: Engine, node: str) -> None:
    """A row of the node's own data, written with the 0001 schema."""
    rows = {
        "hub": (
            "organizations",
            {
                "org_code": SHINJUKU.org_code,
                "name": "新宿区",
                "kind": "市町村長",
                "lg_code": "131041",
                "chukan_url": None,
                "role": "member",
                "registered_at": NOW,
                "active": True,
            },
        ),
        "jlis": (
            "citizens",
            {
                "resident_code": "12345678901",
                "individual_number": "123456789012",
                "lg_code": "131041",
                "registered_at": NOW,
            },
        ),
        "chukan": (
            "pseudonym_bindings",
            {"atena_no": "000000000000019", "pseudonym": "p" * 40, "bound_at": NOW},
        ),
    }
    values = rows[node][1]
    table = OWN_TABLE[node]
    # The 0001 shape of the table (J-LIS's citizens have since changed: jlis_0003).
    shape = sa.table(table, *(sa.column(name) for name in values))
    with engine.begin() as conn:
        conn.execute(insert(shape).values(**values))


@pytest.mark.parametrize("node", ["hub", "jlis", "chukan"])
def test_upgrade_from_0001_keeps_data_and_adds_staff_tables(
    fed: Federation, db_url: str, node: str
) -> None:
    engine = make_engine(db_url)
    try:
        cfg = _alembic(engine, node)
        command.upgrade(cfg, f"{node}_0001")
        assert not NEW_TABLES & set(inspect(engine).get_table_names())
        _seed_0001(engine, node)
        models = importlib.import_module(f"renkei.{node}.models")
        sessions = make_sessionmaker(engine)
        config = fed.config(ORG_OF[node], node)
        log = AuditLog(models.audit, envelope.load_signing_key(config.keys.sig))
        with transaction(sessions) as s:
            log.append(s, AuditEvent(actor="operator", action="before.upgrade", outcome="ok"))
        before = {
            t: _count(engine, t)
            for t in inspect(engine).get_table_names()
            if t != "alembic_version"
        }

        cipher = node_cipher(config)
        migrate(
            engine,
            Path(str(models.__file__)).parent / "migrations",
            models.Base.metadata,
            {"field_cipher": cipher},
        )

        with engine.connect() as conn:
            head = conn.execute(text("select version_num from alembic_version")).scalar_one()
        # 0002 added the staff tables; later revisions follow it (the newest is the head).
        assert head == ScriptDirectory.from_config(cfg).get_current_head()
        assert head != f"{node}_0001"
        assert NEW_TABLES | {"audit_receipts"} <= set(inspect(engine).get_table_names())
        assert {t: _count(engine, t) for t in before} == before  # nothing existing touched
        # The new tables work: an account, and a sign-in with password and TOTP.
        with transaction(sessions) as s:
            made = enrol_staff(
                s,
                models.auth,
                cipher,
                staff_id="A0001",
                name="管理者（架空）",
                roles=["管理"],
                by=cli_principal("test"),
                policy=CHEAP_POLICY,
                now=NOW,
            )
            log.append(
                s, AuditEvent(actor="cli:test", action="staff.create", outcome="ok", ref="A0001")
            )
        assert made.initial_password is not None
        code = pyotp.TOTP(pyotp.parse_uri(made.totp_uri).secret).at(NOW)
        with auth.auth_transaction(sessions) as s:
            auth.login(
                s,
                models.auth,
                cipher,
                "A0001",
                made.initial_password,
                code,
                terminal=None,
                policy=CHEAP_POLICY,
                now=NOW,
            )
        with sessions() as s:
            report = verify(s, models.audit, lambda kid: None)
        assert report.entries == 2 and report.problem in (None, "unsigned_tail")
        # And back down: the staff tables go, the node's data stays.
        cfg.attributes["field_cipher"] = cipher
        command.downgrade(cfg, f"{node}_0001")
        assert not NEW_TABLES & set(inspect(engine).get_table_names())
        assert _count(engine, OWN_TABLE[node]) == 1
    finally:
        engine.dispose()


def _count(engine: Engine, table: str) -> int:
    md = MetaData()
    md.reflect(engine, only=[table])
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(md.tables[table])).scalar_one())


def test_demo_enrols_operators_in_every_node(fed: Federation) -> None:
    files = demo_staff.enrol_federation_staff(fed.layout, policy=CHEAP_POLICY)
    assert set(files) == {
        ("hub", "hub"),
        ("jlis", "jlis"),
        ("shinjuku", "chukan"),
        ("nakano", "chukan"),
        ("nenkin", "chukan"),
        ("tsa", "tsa"),
    }
    for path in files.values():
        assert path.parent.name == "secrets"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    creds = demo_staff.load_node_credentials(fed.layout, HUB, "hub")
    assert set(creds["staff"]) == {"H0001", "H0101", "H0102"}
    assert creds["staff"]["H0101"]["roles"] == ["監査"]
    chukan = demo_staff.load_node_credentials(fed.layout, NAKANO, "chukan")
    assert chukan["staff"]["C0202"]["roles"] == ["JM01000000016000:参照"]
    assert demo_staff.load_node_credentials(fed.layout, JLIS, "jlis")["staff"]["J0001"]["password"]
    # A second run keeps the accounts and the credentials written the first time.
    again = demo_staff.enrol_federation_staff(fed.layout, policy=CHEAP_POLICY)
    assert demo_staff.load_node_credentials(fed.layout, HUB, "hub") == creds
    assert again == files
    # The hub's operator signs in with them; the enrolment is in the hub's audit log.
    app = hub_app(fed.config(HUB, "hub"))
    app.state.auth_policy = CHEAP_POLICY
    app.state.rt.registry.refresh = None
    member = creds["staff"]["H0001"]
    with TestClient(app, base_url="https://testserver") as client:
        code = pyotp.TOTP(pyotp.parse_uri(member["totp_uri"]).secret).now()
        resp = client.post(
            "/v1/session", json={"staff_id": "H0001", "password": member["password"], "totp": code}
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["roles"] == ["管理"]
    engine = app.state.rt.engine
    with engine.connect() as conn:
        actions = conn.execute(
            text("select actor, action, ref from audit_entries order by seq")
        ).all()
    # Set-up, not an administrator: its own actor in the audit log.
    assert ("setup:demo", "staff.create", "H0001") in [tuple(a) for a in actions]
    dump = repr(actions)
    assert member["password"] not in dump and "otpauth" not in dump
