"""The staff routes every node mounts (renkei.staff.routes): sign-in, administration,
separation of duties, CSRF, revocation, alerts, audit verification and audit export
through the approval flow — on SQLite and PostgreSQL.

Every refusal is problem+json with a stable code and a Japanese title, is audited, and
changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import orjson
import pyotp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from renkei.core import ids
from renkei.core.audit.log import verify_jsonl
from renkei.core.wire.guard import GuardPolicy, RateLimit, WorkingHours
from renkei.hub.models import exports as hub_exports_tables
from renkei.staff import admin as staff_admin
from renkei.staff import auth, exports, role_requests
from renkei.staff.auditor import node_key_resolver, verify_audit_log
from renkei.staff.auth import StaffPrincipal
from renkei.staff.exports import ExportPolicy
from renkei.staff.role_requests import RolePolicy
from renkei.staff.roles import PermissionDenied
from renkei.staff.routes import CSRF_HEADER, SESSION_COOKIE
from tests.api.fed import Federation, assert_problem, build_federation, has_japanese, unchanged
from tests.core.staff_kit import ORG_OF, NodeKit, open_node, rt_auth

ADMIN, ADMIN2, AUDITOR, AUDITOR2, CLERK = "A0001", "A0002", "U0001", "U0002", "C0001"
CHILD = "JM01000000074000"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return build_federation(tmp_path_factory, "staff-api")


def _enrol_all(kit: NodeKit) -> None:
    kit.enrol(ADMIN, "管理", name="管理者（架空）")
    kit.enrol(ADMIN2, "管理", name="管理者2（架空）")
    kit.enrol(AUDITOR, "監査", name="監査担当（架空）")
    kit.enrol(AUDITOR2, "監査", name="監査担当2（架空）")
    kit.enrol(CLERK, f"{CHILD}:参照", name="児童手当係（架空）")


@pytest.fixture
def hub(fed: Federation, db_url: str) -> Iterator[NodeKit]:
    with open_node(fed, "hub", db_url) as kit:
        _enrol_all(kit)
        yield kit


def roles_of(kit: NodeKit) -> dict[str, list[str]]:
    """Every account's roles (a refused role change must leave them as they were)."""
    st = rt_auth(kit.app).staff
    with kit.engine.connect() as conn:
        return {str(sid): list(r) for sid, r in conn.execute(select(st.c.staff_id, st.c.roles))}


def refused(
    kit: NodeKit,
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
    code: str,
    actor: str,
    json: Any = None,
) -> dict[str, Any]:
    """A refusal that writes nothing but its audit entry, which names actor and code."""
    before, held = kit.counts(), roles_of(kit)
    kw = {"json": json} if json is not None else {}
    resp = kit.client.request(method, path, headers=headers, **kw)
    problem = assert_problem(resp, status, code)
    unchanged(before, kit.counts())
    assert roles_of(kit) == held
    assert kit.last_audit()[0] == actor and kit.last_audit()[2] == code
    return problem


# --- sign-in on every node ------------------------------------------------------------------


@pytest.mark.parametrize("node", ["hub", "jlis", "chukan"])
def test_sign_in_show_and_sign_out_on_each_node(fed: Federation, db_url: str, node: str) -> None:
    with open_node(fed, node, db_url) as kit:
        kit.enrol(ADMIN, "管理")
        kit.clock.advance(seconds=30)
        resp = kit.login(ADMIN)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["staff_id"] == ADMIN and body["roles"] == ["管理"] and body["csrf_token"]
        cookie = resp.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=")
        lowered = cookie.lower()
        assert "httponly" in lowered and "secure" in lowered and "samesite=strict" in lowered
        assert "path=/" in lowered and "domain" not in lowered
        assert resp.headers["cache-control"] == "no-store"
        assert kit.last_audit() == (ADMIN, "session.login", "ok")
        headers = {
            "Cookie": f"{SESSION_COOKIE}={resp.cookies[SESSION_COOKIE]}",
            CSRF_HEADER: body["csrf_token"],
        }
        me = kit.client.get("/v1/session", headers=headers)
        assert me.json() == {
            "staff_id": ADMIN,
            "name": "職員(架空)",
            "roles": ["管理"],
            "via": "session",
        }
        assert kit.client.delete("/v1/session", headers=headers).status_code == 204
        assert_problem(kit.client.get("/v1/session", headers=headers), 401, "session_revoked")


def test_atena_mounts_administration_alerts_audit_and_exports(fed: Federation, db_url: str) -> None:
    """atena keeps its own sign-in routes; the kernel's other staff routes work with its sessions."""
    with open_node(fed, "atena", db_url) as kit:
        _enrol_all(kit)
        admin = kit.sign_in(ADMIN)  # atena's own POST /v1/session
        listed = kit.client.get("/v1/staff", headers=admin)
        assert listed.status_code == 200 and len(listed.json()["staff"]) == 5
        assert kit.client.get("/v1/alerts", headers=admin).status_code == 200
        refused(kit, "GET", "/v1/audit/verify", admin, 403, "role_required", ADMIN)
        auditor = kit.sign_in(AUDITOR)
        req = ask(kit, auditor)
        resp = kit.client.get(f"/v1/exports/{req['id']}/download", headers=auditor)
        assert resp.status_code == 200, resp.text
        assert orjson.loads(resp.text.splitlines()[0])["renkei_export"]["exporter"] == AUDITOR
        assert kit.last_audit() == (AUDITOR, "export.download", "ok")


def test_no_credentials_is_401_with_a_bearer_challenge(hub: NodeKit) -> None:
    before = hub.counts()
    resp = hub.client.get("/v1/staff")
    assert_problem(resp, 401, "authentication_required")
    assert resp.headers["www-authenticate"].startswith("Bearer")
    unchanged(before, hub.counts())
    assert hub.last_audit() == ("anonymous", "staff.list", "authentication_required")


def test_wrong_password_then_throttled_then_unlocked(hub: NodeKit) -> None:
    admin = hub.sign_in(ADMIN)  # signing in moves the clock: before the failures
    problem = assert_problem(
        hub.login(CLERK, password="Wrong-password-123"), 401, "bad_credentials"
    )
    assert "パスワード" in problem["title"]
    assert hub.last_audit() == (CLERK, "session.login", "bad_credentials")
    for _ in range(4):
        assert_problem(hub.login(CLERK, password="Wrong-password-123"), 401, "bad_credentials")
    # Throttled now: the right password and code get the answer of a wrong password, and
    # so does an ID that does not exist — nobody learns which IDs exist or are throttled.
    throttled = assert_problem(hub.login(CLERK), 401, "bad_credentials")
    assert hub.last_audit() == (CLERK, "session.login", "throttled")  # the log knows
    unknown = assert_problem(hub.login("NOBODY", password="Wrong-password-123"), 401, "bad_credentials")
    assert throttled == unknown == problem
    assert hub.last_audit() == ("NOBODY", "session.login", "unknown_staff")
    # The administrator sees the throttling (not a lock), and lifts it.
    listed = {s["staff_id"]: s for s in hub.client.get("/v1/staff", headers=admin).json()["staff"]}
    assert listed[CLERK]["throttled_until"] is not None and listed[CLERK]["locked"] is False
    assert listed[CLERK]["failed_count"] == 5 and listed[ADMIN]["throttled_until"] is None
    resp = hub.client.post(f"/v1/staff/{CLERK}/unlock", headers=admin)
    assert resp.status_code == 200, resp.text
    assert hub.last_audit() == (ADMIN, "staff.unlock", "ok")
    assert hub.audit()[-1]["ref"] == CLERK
    hub.sign_in(CLERK)


def test_throttling_ends_by_itself(hub: NodeKit) -> None:
    hub.clock.advance(seconds=30)
    for _ in range(5):
        assert_problem(hub.login(CLERK, password="Wrong-password-123"), 401, "bad_credentials")
    assert_problem(hub.login(CLERK), 401, "bad_credentials")
    hub.clock.advance(seconds=2)  # the first delay is two seconds
    resp = hub.login(CLERK)
    assert resp.status_code == 200, resp.text


def test_administrator_locks_and_unlocks_an_account(hub: NodeKit) -> None:
    clerk = hub.sign_in(CLERK)
    admin = hub.sign_in(ADMIN)
    resp = hub.client.post(f"/v1/staff/{CLERK}/lock", headers=admin)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"staff_id": CLERK, "revoked": 1}
    assert hub.last_audit() == (ADMIN, "staff.lock", "ok")
    assert_problem(hub.client.get("/v1/session", headers=clerk), 401, "session_revoked")
    # Locked: the right credentials are refused exactly like a wrong password.
    hub.clock.advance(seconds=30)
    locked = assert_problem(hub.login(CLERK), 401, "bad_credentials")
    wrong = assert_problem(hub.login(ADMIN2, password="Wrong-password-123"), 401, "bad_credentials")
    assert locked == wrong
    assert hub.audit()[-2]["outcome"] == "locked"
    listed = {s["staff_id"]: s for s in hub.client.get("/v1/staff", headers=admin).json()["staff"]}
    assert listed[CLERK]["locked"] is True and listed[CLERK]["locked_until"] is None
    refused(hub, "POST", f"/v1/staff/{ADMIN}/lock", admin, 409, "own_account", ADMIN)
    refused(hub, "POST", "/v1/staff/NOBODY/lock", admin, 404, "staff_not_found", ADMIN)
    auditor = hub.sign_in(AUDITOR)
    refused(hub, "POST", f"/v1/staff/{ADMIN}/lock", auditor, 403, "role_required", AUDITOR)
    assert hub.client.post(f"/v1/staff/{CLERK}/unlock", headers=admin).status_code == 200
    hub.sign_in(CLERK)


# --- separation of duties -------------------------------------------------------------------


def test_administrator_cannot_read_or_export_the_audit_log(hub: NodeKit) -> None:
    admin = hub.sign_in(ADMIN)
    problem = refused(hub, "GET", "/v1/audit/verify", admin, 403, "role_required", ADMIN)
    assert "監査" in problem["title"]
    refused(
        hub,
        "POST",
        "/v1/exports",
        admin,
        403,
        "role_required",
        ADMIN,
        json={"kind": "audit", "params": {}},
    )


def test_auditor_cannot_create_staff_or_change_roles(hub: NodeKit) -> None:
    auditor = hub.sign_in(AUDITOR)
    body = {"staff_id": "X0001", "name": "新規（架空）", "roles": ["管理"]}
    refused(hub, "POST", "/v1/staff", auditor, 403, "role_required", AUDITOR, json=body)
    refused(
        hub,
        "PUT",
        f"/v1/staff/{AUDITOR}/roles",
        auditor,
        403,
        "role_required",
        AUDITOR,
        json={"roles": ["監査", "管理"]},
    )
    refused(hub, "POST", f"/v1/staff/{CLERK}/disable", auditor, 403, "role_required", AUDITOR)
    refused(hub, "GET", "/v1/alerts", auditor, 403, "role_required", AUDITOR)
    # What an auditor may do: verify the chain.
    report = hub.client.get("/v1/audit/verify", headers=auditor)
    assert report.status_code == 200, report.text
    assert report.json()["ok"] is True and report.json()["entries"] > 0
    assert hub.last_audit() == (AUDITOR, "audit.verify", "ok")


def test_roles_break_separation_of_duties_are_refused(hub: NodeKit) -> None:
    admin = hub.sign_in(ADMIN)
    problem = refused(
        hub,
        "PUT",
        f"/v1/staff/{AUDITOR}/roles",
        admin,
        422,
        "role_conflict",
        ADMIN,
        json={"roles": ["監査", "管理"]},
    )
    assert "職務分掌" in problem["title"]
    refused(
        hub,
        "POST",
        "/v1/staff",
        admin,
        422,
        "role_conflict",
        ADMIN,
        json={"staff_id": "X0002", "name": "兼務（架空）", "roles": ["監査", f"{CHILD}:更新"]},
    )
    # An administrator holds no data role (unless the node's policy says so) …
    refused(
        hub,
        "PUT",
        f"/v1/staff/{ADMIN2}/roles",
        admin,
        422,
        "role_conflict",
        ADMIN,
        json={"roles": ["管理", "宛名:参照"]},
    )
    # … changes no role of their own, and cannot lock themselves out either.
    refused(
        hub, "PUT", f"/v1/staff/{ADMIN}/roles", admin, 403, "own_roles", ADMIN, json={"roles": []}
    )
    refused(hub, "POST", f"/v1/staff/{ADMIN}/disable", admin, 409, "own_account", ADMIN)
    refused(hub, "POST", "/v1/staff/NOBODY/unlock", admin, 404, "staff_not_found", ADMIN)
    resp = hub.client.put(
        f"/v1/staff/{CLERK}/roles",
        headers=admin,
        json={"roles": ["ＪＭ01000000074000：参照", "監査"]},
    )
    assert resp.status_code == 200, resp.text  # 監査 is no data role: applied at once
    assert resp.json()["roles"] == [f"{CHILD}:参照", "監査"]  # canonical spelling
    assert resp.json()["status"] == "applied" and resp.json()["request"] is None


# --- role changes with four eyes ----------------------------------------------------------

DATA_ROLES = ["宛名:参照", "個人番号:表示", f"{CHILD}:照会"]


def test_an_administrator_cannot_grant_itself_data_roles(hub: NodeKit) -> None:
    """The probe of issue 8: 管理 only, PUT its own roles with data roles."""
    admin = hub.sign_in(ADMIN)
    for wanted in (["管理", *DATA_ROLES], DATA_ROLES, ["管理"]):
        problem = refused(
            hub, "PUT", f"/v1/staff/{ADMIN}/roles", admin, 403, "own_roles", ADMIN,
            json={"roles": wanted},
        )  # fmt: skip
        assert "自分自身の権限は変更できません" in problem["title"]
    # Spelled full-width, it is still the administrator's own ID.
    refused(
        hub, "PUT", "/v1/staff/%EF%BC%A10001/roles", admin, 403, "own_roles", ADMIN,
        json={"roles": DATA_ROLES},
    )  # fmt: skip
    assert hub.audit()[-1]["action"] == "staff.roles.request"


def test_an_administrator_cannot_make_a_second_administrator_alone(hub: NodeKit) -> None:
    """Four eyes would be one person's if an administrator could create an administrator
    account, sign in with it and approve their own requests: 管理 given by an
    administrator waits for a second one, like a data role."""
    admin, admin2 = hub.sign_in(ADMIN), hub.sign_in(ADMIN2)
    resp = hub.client.post(
        "/v1/staff", headers=admin, json={"staff_id": "P0001", "name": "分身（架空）", "roles": ["管理"]}
    )
    assert resp.status_code in (200, 201, 202), resp.text
    assert resp.json()["roles"] == [] and resp.json()["pending_request"]["roles"] == ["管理"]
    # The same through a role change of an existing account.
    resp = hub.client.put(f"/v1/staff/{CLERK}/roles", headers=admin, json={"roles": ["管理"]})
    assert resp.status_code == 202 and resp.json()["status"] == "pending", resp.text
    request_id = resp.json()["request"]["id"]
    refused(
        hub, "POST", f"/v1/role-requests/{request_id}/approve", admin, 403, "self_approval", ADMIN
    )
    resp = hub.client.post(f"/v1/role-requests/{request_id}/approve", headers=admin2)
    assert resp.status_code == 200 and resp.json()["status"] == "applied", resp.text


def test_data_roles_wait_for_a_second_administrator(hub: NodeKit) -> None:
    admin, admin2 = hub.sign_in(ADMIN), hub.sign_in(ADMIN2)
    clerk = hub.sign_in(CLERK)
    wanted = [f"{CHILD}:参照", *DATA_ROLES]
    resp = hub.client.put(f"/v1/staff/{CLERK}/roles", headers=admin, json={"roles": wanted})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "pending" and body["roles"] == [f"{CHILD}:参照"]
    request_id = body["request"]["id"]
    assert sorted(body["request"]["added"]) == sorted(DATA_ROLES)
    entry = hub.audit()[-1]
    assert (entry["actor"], entry["action"], entry["outcome"]) == (ADMIN, "staff.roles.request", "pending")
    assert entry["detail"]["request"] == request_id
    # Not granted yet: the clerk's session still has only the old role.
    assert hub.client.get("/v1/session", headers=clerk).json()["roles"] == [f"{CHILD}:参照"]
    # Listed for the administrators; not for an auditor.
    listed = hub.client.get("/v1/role-requests", headers=admin2).json()["requests"]
    assert [r["id"] for r in listed] == [request_id] and listed[0]["status_label"] == "承認待ち"
    auditor = hub.sign_in(AUDITOR)
    refused(hub, "GET", "/v1/role-requests", auditor, 403, "role_required", AUDITOR)
    refused(
        hub, "POST", f"/v1/role-requests/{request_id}/approve", auditor, 403, "role_required", AUDITOR
    )
    # The requester cannot approve it …
    problem = refused(
        hub, "POST", f"/v1/role-requests/{request_id}/approve", admin, 403, "self_approval", ADMIN
    )
    assert "別の管理者" in problem["title"]
    assert hub.audit()[-1]["ref"] == f"role-request:{request_id}"
    # … a second administrator does, and the roles apply at once.
    resp = hub.client.post(f"/v1/role-requests/{request_id}/approve", headers=admin2)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "applied" and resp.json()["decided_by"] == ADMIN2
    entry = hub.audit()[-1]
    assert (entry["actor"], entry["action"], entry["outcome"]) == (ADMIN2, "staff.roles.approve", "applied")
    assert entry["detail"]["requested_by"] == ADMIN and entry["detail"]["staff_id"] == CLERK
    assert hub.client.get("/v1/session", headers=clerk).json()["roles"] == sorted(wanted)
    # Decided once: a second decision is refused.
    refused(
        hub, "POST", f"/v1/role-requests/{request_id}/reject", admin2, 409,
        "role_request_not_pending", ADMIN2,
    )  # fmt: skip
    refused(hub, "POST", "/v1/role-requests/999/approve", admin2, 404, "role_request_not_found", ADMIN2)
    # Taking roles away needs nobody's approval.
    resp = hub.client.put(f"/v1/staff/{CLERK}/roles", headers=admin, json={"roles": ["宛名:参照"]})
    assert resp.status_code == 200 and resp.json()["status"] == "applied", resp.text
    assert hub.last_audit() == (ADMIN, "staff.roles.request", "applied")
    assert hub.client.get("/v1/session", headers=clerk).json()["roles"] == ["宛名:参照"]


def test_removals_apply_at_once_and_additions_wait(hub: NodeKit) -> None:
    admin, admin2 = hub.sign_in(ADMIN), hub.sign_in(ADMIN2)
    resp = hub.client.put(f"/v1/staff/{CLERK}/roles", headers=admin, json={"roles": ["宛名:参照"]})
    assert resp.status_code == 202, resp.text
    # The affair's role is gone already; 宛名:参照 waits.
    assert resp.json()["roles"] == []
    first = resp.json()["request"]["id"]
    # A newer change of the same account supersedes the older request …
    resp = hub.client.put(f"/v1/staff/{CLERK}/roles", headers=admin, json={"roles": ["個人番号:表示"]})
    second = resp.json()["request"]["id"]
    assert hub.audit()[-1]["detail"]["superseded"] == [first]
    refused(
        hub, "POST", f"/v1/role-requests/{first}/approve", admin2, 409,
        "role_request_not_pending", ADMIN2,
    )  # fmt: skip
    everything = hub.client.get("/v1/role-requests?all=true", headers=admin2).json()["requests"]
    assert {r["id"]: r["status"] for r in everything} == {first: "superseded", second: "pending"}
    # … and the requester may withdraw their own request (a rejection grants nothing).
    resp = hub.client.post(f"/v1/role-requests/{second}/reject", headers=admin)
    assert resp.status_code == 200 and resp.json()["status"] == "rejected", resp.text
    assert hub.last_audit() == (ADMIN, "staff.roles.reject", "rejected")
    assert roles_of(hub)[CLERK] == []


def test_a_request_overtaken_by_another_change_cannot_be_approved(hub: NodeKit) -> None:
    admin, admin2 = hub.sign_in(ADMIN), hub.sign_in(ADMIN2)
    resp = hub.client.put(
        f"/v1/staff/{CLERK}/roles", headers=admin, json={"roles": [f"{CHILD}:参照", "宛名:参照"]}
    )
    request_id = resp.json()["request"]["id"]
    # The account's roles change outside the request (e.g. a set-up script on the host).
    rt = hub.app.state.rt
    with rt.sessions.begin() as s:
        auth.set_roles(s, rt_auth(hub.app), CLERK, [], staff_admin.cli_principal("ops"))
    problem = refused(
        hub, "POST", f"/v1/role-requests/{request_id}/approve", admin2, 409,
        "role_request_stale", ADMIN2,
    )  # fmt: skip
    assert "改めて依頼" in problem["title"]


def test_a_new_account_gets_its_data_roles_only_after_approval(hub: NodeKit) -> None:
    """An administrator cannot reach data roles through an account it creates either."""
    admin, admin2 = hub.sign_in(ADMIN), hub.sign_in(ADMIN2)
    resp = hub.client.post(
        "/v1/staff",
        headers=admin,
        json={"staff_id": "N0100", "name": "新任（架空）", "roles": ["監査", *DATA_ROLES[:1]]},
    )
    assert resp.status_code == 201, resp.text
    made = resp.json()
    assert made["roles"] == ["監査"] and made["pending_request"]["added"] == ["宛名:参照"]
    entry = hub.audit()[-1]
    assert (entry["action"], entry["outcome"]) == ("staff.create", "pending")
    assert entry["detail"]["request"]["roles"] == ["宛名:参照", "監査"]
    hub.passwords["N0100"], hub.totp_uris["N0100"] = made["initial_password"], made["totp_uri"]
    me = hub.client.get("/v1/session", headers=hub.sign_in("N0100")).json()
    assert me["roles"] == ["監査"]
    request_id = made["pending_request"]["id"]
    assert hub.client.post(f"/v1/role-requests/{request_id}/approve", headers=admin2).status_code == 200
    me = hub.client.get("/v1/session", headers=hub.sign_in("N0100")).json()
    assert me["roles"] == ["宛名:参照", "監査"]
    # An administrator with data roles breaks separation of duties: refused at creation.
    refused(
        hub, "POST", "/v1/staff", admin, 422, "role_conflict", ADMIN,
        json={"staff_id": "N0101", "name": "兼務（架空）", "roles": ["管理", "個人番号:表示"]},
    )  # fmt: skip


def test_a_node_policy_may_let_administrators_hold_data_roles(hub: NodeKit) -> None:
    """Explicitly allowed, still four eyes, never for oneself, and audited as an exception."""
    hub.app.state.role_policy = RolePolicy(admin_may_hold_data_roles=True)
    admin, admin2 = hub.sign_in(ADMIN), hub.sign_in(ADMIN2)
    resp = hub.client.put(
        f"/v1/staff/{ADMIN2}/roles", headers=admin, json={"roles": ["管理", "宛名:参照"]}
    )
    assert resp.status_code == 202, resp.text
    request_id = resp.json()["request"]["id"]
    assert hub.audit()[-1]["detail"]["separation_exception"] == "admin_with_data_roles"
    # The account it is about cannot approve (nor reject) it.
    refused(hub, "POST", f"/v1/role-requests/{request_id}/approve", admin2, 403, "own_roles", ADMIN2)
    refused(hub, "POST", f"/v1/role-requests/{request_id}/reject", admin2, 403, "own_roles", ADMIN2)
    # Nor its requester; a third administrator does.
    hub.enrol("A0003", "管理", name="管理者3（架空）")
    resp = hub.client.post(f"/v1/role-requests/{request_id}/approve", headers=hub.sign_in("A0003"))
    assert resp.status_code == 200, resp.text
    entry = hub.audit()[-1]
    assert (entry["action"], entry["outcome"]) == ("staff.roles.approve", "applied")
    assert entry["detail"]["separation_exception"] == "admin_with_data_roles"
    assert roles_of(hub)[ADMIN2] == ["宛名:参照", "管理"]
    # The policy is read from the node's config: anything but true/false is refused.
    with pytest.raises(ValueError):
        RolePolicy.from_config({"admin_may_hold_data_roles": "yes"})
    assert RolePolicy.from_config({"admin_may_hold_data_roles": True}).admin_may_hold_data_roles
    assert not RolePolicy.from_config({}).admin_may_hold_data_roles


# --- administration ---------------------------------------------------------------------------


def test_create_staff_returns_enrolment_once_and_the_account_works(hub: NodeKit) -> None:
    admin = hub.sign_in(ADMIN)
    resp = hub.client.post(
        "/v1/staff",
        headers=admin,
        json={"staff_id": "N0001", "name": "新任（架空）", "roles": ["監査"]},
    )
    assert resp.status_code == 201, resp.text
    assert resp.headers["cache-control"] == "no-store"
    made = resp.json()
    assert made["initial_password"] and made["totp_uri"].startswith("otpauth://totp/")
    assert made["totp_qr_svg"].startswith("<svg")
    assert hub.last_audit() == (ADMIN, "staff.create", "ok")
    assert hub.audit()[-1]["detail"] == {"roles": ["監査"]}
    # Secrets are in the answer, never in the audit log or the database in clear.
    dump = repr(hub.audit())
    assert made["initial_password"] not in dump and "otpauth" not in dump
    with hub.engine.connect() as conn:
        rows = repr([tuple(r) for r in conn.exec_driver_sql("select * from auth_staff")])
    assert (
        made["initial_password"] not in rows
        and pyotp.parse_uri(made["totp_uri"]).secret not in rows
    )
    # Not enrolled until a first code from the secret is accepted.
    def enrolled() -> bool:
        listed = hub.client.get("/v1/staff", headers=hub.sign_in(ADMIN)).json()["staff"]
        return bool(next(m for m in listed if m["staff_id"] == "N0001")["totp_enrolled"])

    assert not enrolled()
    # The new staff member signs in with what they were given.
    hub.passwords["N0001"], hub.totp_uris["N0001"] = made["initial_password"], made["totp_uri"]
    hub.sign_in("N0001")
    assert enrolled()
    # The same ID again is refused.
    refused(
        hub,
        "POST",
        "/v1/staff",
        admin,
        409,
        "staff_exists",
        ADMIN,
        json={"staff_id": "N0001", "name": "重複（架空）", "roles": []},
    )
    # A staff ID that could be an individual number is refused (and never logged).
    number = ids.make_individual_number("12345678901")
    refused(
        hub,
        "POST",
        "/v1/staff",
        admin,
        422,
        "invalid_staff",
        ADMIN,
        json={"staff_id": number, "name": "番号（架空）", "roles": []},
    )
    assert hub.audit()[-1]["ref"] is None and number not in repr(hub.audit())
    # A chosen initial password must meet the policy.
    refused(
        hub,
        "POST",
        "/v1/staff",
        admin,
        422,
        "password_policy",
        ADMIN,
        json={"staff_id": "N0002", "name": "弱い（架空）", "roles": [], "password": "short"},
    )


def test_missing_csrf_token_is_refused_and_nothing_changes(hub: NodeKit) -> None:
    admin = hub.sign_in(ADMIN)
    cookie_only = {"Cookie": admin["Cookie"]}
    body = {"staff_id": "X0003", "name": "新規（架空）", "roles": []}
    problem = refused(hub, "POST", "/v1/staff", cookie_only, 403, "csrf_failed", ADMIN, json=body)
    assert "不正な要求" in problem["title"]
    refused(
        hub,
        "PUT",
        f"/v1/staff/{CLERK}/roles",
        cookie_only,
        403,
        "csrf_failed",
        ADMIN,
        json={"roles": []},
    )
    refused(
        hub, "POST", f"/v1/staff/{CLERK}/revoke-sessions", cookie_only, 403, "csrf_failed", ADMIN
    )
    wrong = {**cookie_only, CSRF_HEADER: "x" * 43}
    refused(hub, "POST", f"/v1/staff/{CLERK}/disable", wrong, 403, "csrf_failed", ADMIN)
    # Another session's token does not do either.
    other = hub.sign_in(ADMIN)
    refused(
        hub,
        "POST",
        f"/v1/staff/{CLERK}/disable",
        {**cookie_only, CSRF_HEADER: other[CSRF_HEADER]},
        403,
        "csrf_failed",
        ADMIN,
    )
    # With the right token the same request goes through.
    assert hub.client.post("/v1/staff", headers=admin, json=body).status_code == 201


def test_revoked_session_is_refused(hub: NodeKit) -> None:
    clerk = hub.sign_in(CLERK)
    clerk2 = hub.sign_in(CLERK)
    assert hub.client.get("/v1/session", headers=clerk).status_code == 200
    admin = hub.sign_in(ADMIN)
    resp = hub.client.post(f"/v1/staff/{CLERK}/revoke-sessions", headers=admin)
    assert resp.status_code == 200 and resp.json()["revoked"] == 2
    assert hub.last_audit() == (ADMIN, "staff.revoke_sessions", "ok")
    for headers in (clerk, clerk2):
        assert_problem(hub.client.get("/v1/session", headers=headers), 401, "session_revoked")
    assert hub.last_audit() == ("anonymous", "session.show", "session_revoked")
    hub.sign_in(CLERK)  # a new sign-in works


def test_disable_ends_sessions_and_refuses_sign_in(hub: NodeKit) -> None:
    clerk = hub.sign_in(CLERK)
    admin = hub.sign_in(ADMIN)
    resp = hub.client.post(f"/v1/staff/{CLERK}/disable", headers=admin)
    assert resp.status_code == 200 and resp.json() == {"staff_id": CLERK, "active": False}
    assert_problem(hub.client.get("/v1/session", headers=clerk), 401, "session_revoked")
    hub.clock.advance(seconds=30)
    assert_problem(hub.login(CLERK), 403, "inactive")
    assert hub.client.post(f"/v1/staff/{CLERK}/enable", headers=admin).status_code == 200
    hub.sign_in(CLERK)


def test_reset_totp_replaces_the_second_factor(hub: NodeKit) -> None:
    admin = hub.sign_in(ADMIN)
    clerk = hub.sign_in(CLERK)
    resp = hub.client.post(f"/v1/staff/{CLERK}/reset-totp", headers=admin)
    assert resp.status_code == 200, resp.text
    new_uri = resp.json()["totp_uri"]
    assert new_uri != hub.totp_uris[CLERK] and resp.json()["totp_qr_svg"].startswith("<svg")
    assert_problem(hub.client.get("/v1/session", headers=clerk), 401, "session_revoked")
    hub.clock.advance(seconds=30)
    assert_problem(hub.login(CLERK), 401, "totp_invalid")  # the old authenticator
    hub.totp_uris[CLERK] = new_uri
    hub.sign_in(CLERK)


def test_change_own_password(hub: NodeKit) -> None:
    clerk = hub.sign_in(CLERK)
    other = hub.sign_in(CLERK)
    new = "Neue-Passwort-2026!"
    assert_problem(
        hub.client.post(
            "/v1/session/password",
            headers=clerk,
            json={"current_password": "wrong-Password-1", "new_password": new},
        ),
        401,
        "bad_credentials",
    )
    assert hub.last_audit() == (CLERK, "session.password", "bad_credentials")
    assert_problem(
        hub.client.post(
            "/v1/session/password",
            headers=clerk,
            json={"current_password": hub.passwords[CLERK], "new_password": "weak"},
        ),
        422,
        "password_policy",
    )
    resp = hub.client.post(
        "/v1/session/password",
        headers=clerk,
        json={"current_password": hub.passwords[CLERK], "new_password": new},
    )
    assert resp.status_code == 204, resp.text
    assert hub.client.get("/v1/session", headers=clerk).status_code == 200  # this session stays
    assert_problem(hub.client.get("/v1/session", headers=other), 401, "session_revoked")
    hub.clock.advance(seconds=30)
    assert_problem(hub.login(CLERK), 401, "bad_credentials")  # the old password
    hub.passwords[CLERK] = new
    hub.sign_in(CLERK)


def test_api_token_scoped_to_administration(hub: NodeKit) -> None:
    admin = hub.sign_in(ADMIN)
    resp = hub.client.post(
        "/v1/api-tokens", headers=admin, json={"name": "夜間バッチ", "scopes": ["管理"]}
    )
    assert resp.status_code == 200, resp.text
    token = {"Authorization": f"Bearer {resp.json()['token']}"}
    # No CSRF token needed with a bearer token.
    listed = hub.client.get("/v1/staff", headers=token)
    assert listed.status_code == 200 and len(listed.json()["staff"]) == 5
    assert hub.client.post(f"/v1/staff/{CLERK}/unlock", headers=token).status_code == 200
    assert_problem(hub.client.delete("/v1/session", headers=token), 403, "session_required")
    # A scope the staff member does not hold cannot be put in a token.
    resp = hub.client.post("/v1/api-tokens", headers=admin, json={"name": "x", "scopes": ["監査"]})
    assert_problem(resp, 403, "scope_denied")
    token_id = hub.client.get("/v1/api-tokens", headers=admin).json()["tokens"][0]["id"]
    assert hub.client.delete(f"/v1/api-tokens/{token_id}", headers=admin).status_code == 204
    assert_problem(hub.client.get("/v1/staff", headers=token), 401, "token_invalid")


def test_service_functions_check_the_roles_themselves(hub: NodeKit) -> None:
    """Not only the routes: every staff service refuses a principal without the role."""
    rt = hub.app.state.rt
    auditor = StaffPrincipal(AUDITOR, "監査担当", frozenset({"監査"}), None, None)
    admin = StaffPrincipal(ADMIN, "管理者", frozenset({"管理"}), None, None)
    tables = rt_auth(hub.app)
    registry = hub.app.state.export_registry
    with rt.sessions() as s:
        calls = [
            lambda: staff_admin.list_staff(s, tables, auditor, now=hub.clock()),
            lambda: staff_admin.set_staff_roles(s, tables, CLERK, ["監査"], auditor, now=hub.clock()),
            lambda: role_requests.list_requests(s, tables, auditor),
            lambda: role_requests.decide(s, tables, 1, auditor, reject=False, now=hub.clock()),
            lambda: staff_admin.unlock_staff(s, tables, CLERK, auditor),
            lambda: staff_admin.lock_staff(s, tables, CLERK, auditor, now=hub.clock()),
            lambda: staff_admin.list_guard_alerts(s, rt.guard, auditor, everything=True, limit=5),
            lambda: verify_audit_log(s, rt.audit.tables, lambda kid: None, roles=admin.roles),
            lambda: exports.ask_export(
                s,
                hub_exports_tables,
                registry,
                staff_id=ADMIN,
                roles=admin.roles,
                kind="audit",
                params={},
                policy=ExportPolicy(),
                now=hub.clock(),
            ),
        ]
        for call in calls:
            with pytest.raises(PermissionDenied) as info:
                call()
            assert info.value.code == "role_required"
        s.rollback()


# --- alerts ----------------------------------------------------------------------------------


def test_alerts_are_listed_for_administrators_and_acknowledged(hub: NodeKit) -> None:
    rt = hub.app.state.rt
    rt.guard_policy = GuardPolicy(
        limits={"staff": RateLimit(3)}, working_hours=WorkingHours(enabled=False)
    )
    clerk = hub.sign_in(CLERK)
    statuses = [hub.client.get("/v1/session", headers=clerk).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert hub.last_audit() == (CLERK, "session.show", "rate_limited")
    rt.guard_policy = GuardPolicy(
        limits={"staff": RateLimit(1000)}, working_hours=WorkingHours(enabled=False)
    )
    admin = hub.sign_in(ADMIN)
    alerts = hub.client.get("/v1/alerts", headers=admin).json()["alerts"]
    assert [(a["rule"], a["subject"], a["action"]) for a in alerts] == [
        ("rate_limit", CLERK, "block")
    ]
    # The alert is in the audit log too.
    assert any(e["action"] == "guard.rate_limit" and e["actor"] == CLERK for e in hub.audit())
    alert_id = alerts[0]["id"]
    resp = hub.client.post(f"/v1/alerts/{alert_id}/acknowledge", headers=admin)
    assert resp.status_code == 200 and resp.json()["acknowledged_by"] == ADMIN
    assert hub.client.get("/v1/alerts", headers=admin).json()["alerts"] == []
    assert len(hub.client.get("/v1/alerts?all=true", headers=admin).json()["alerts"]) == 1
    refused(hub, "POST", "/v1/alerts/999999/acknowledge", admin, 404, "alert_not_found", ADMIN)
    assert_problem(
        hub.client.post(f"/v1/alerts/{2**70}/acknowledge", headers=admin), 422, "invalid_request"
    )


# --- audit export through the approval flow ----------------------------------------------


def ask(kit: NodeKit, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    kit.clock.advance(seconds=1)  # the period ends at the request: let the sign-ins be before it
    resp = kit.client.post("/v1/exports", headers=headers, json={"kind": "audit", "params": params})
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_small_export_runs_at_once_names_the_exporter_and_is_audited(
    hub: NodeKit, fed: Federation
) -> None:
    auditor = hub.sign_in(AUDITOR)
    req = ask(hub, auditor)
    assert req["status"] == "approved" and not req["needs_approval"]
    assert hub.last_audit() == (AUDITOR, "export.request", "ok")
    resp = hub.client.get(f"/v1/exports/{req['id']}/download", headers=auditor)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/jsonl")
    assert f"export-{req['id']}-audit.jsonl" in resp.headers["content-disposition"]
    assert resp.headers["cache-control"] == "no-store"
    lines = resp.text.splitlines()
    header = orjson.loads(lines[0])["renkei_export"]
    assert header["exporter"] == AUDITOR and header["request_id"] == req["id"]
    assert header["approver"] is None and header["kind"] == "audit" and header["exported_at"]
    # The rest is the audit chain itself, and verifies offline with the node's keys.
    assert len(lines) - 1 == req["estimated_rows"]
    report = verify_jsonl(lines[1:], node_key_resolver(fed.config(ORG_OF[hub.node], hub.node)))
    assert report.ok, report.message
    entry = hub.audit()[-1]
    assert (entry["actor"], entry["action"], entry["outcome"]) == (AUDITOR, "export.download", "ok")
    assert entry["detail"]["rows"] == len(lines) - 1 and entry["detail"]["kind"] == "audit"
    assert entry["detail"]["params"] == req["params"] and entry["ref"] == f"export:{req['id']}"
    # A second download is refused.
    refused(
        hub,
        "GET",
        f"/v1/exports/{req['id']}/download",
        auditor,
        409,
        "export_not_approved",
        AUDITOR,
    )


def test_large_export_needs_a_second_auditor(hub: NodeKit) -> None:
    hub.app.state.export_policy = ExportPolicy(approval_threshold_rows=1)
    auditor, other = hub.sign_in(AUDITOR), hub.sign_in(AUDITOR2)
    req = ask(hub, auditor, **{"from": "2000-01-01"})
    assert req["status"] == "pending" and req["needs_approval"] and req["estimated_rows"] > 1
    path = f"/v1/exports/{req['id']}"
    # Unapproved: the download is refused.
    problem = refused(
        hub, "GET", f"{path}/download", auditor, 403, "export_needs_approval", AUDITOR
    )
    assert "承認" in problem["title"]
    # Nobody approves their own request, and an administrator cannot approve at all.
    refused(hub, "POST", f"{path}/approve", auditor, 403, "self_approval", AUDITOR)
    refused(hub, "POST", f"{path}/approve", hub.sign_in(ADMIN), 403, "role_required", ADMIN)
    # The second auditor sees it waiting, approves it, and cannot run it themselves.
    waiting = hub.client.get("/v1/exports?status=pending", headers=other).json()["exports"]
    assert [w["id"] for w in waiting] == [req["id"]]
    resp = hub.client.post(f"{path}/approve", headers=other)
    assert resp.status_code == 200 and resp.json()["decided_by"] == AUDITOR2
    assert hub.last_audit() == (AUDITOR2, "export.approve", "ok")
    refused(hub, "POST", f"{path}/approve", other, 409, "export_not_pending", AUDITOR2)
    refused(hub, "GET", f"{path}/download", other, 403, "not_requester", AUDITOR2)
    # Downloads need the CSRF token even though they are GETs (they run once).
    refused(
        hub, "GET", f"{path}/download", {"Cookie": auditor["Cookie"]}, 403, "csrf_failed", AUDITOR
    )
    resp = hub.client.get(f"{path}/download", headers=auditor)
    assert resp.status_code == 200, resp.text
    header = orjson.loads(resp.text.splitlines()[0])["renkei_export"]
    assert (header["exporter"], header["approver"]) == (AUDITOR, AUDITOR2)
    assert hub.audit()[-1]["detail"]["approver"] == AUDITOR2
    shown = hub.client.get(path, headers=auditor).json()
    assert shown["status"] == "done" and shown["rows_written"] == len(resp.text.splitlines()) - 1
    refused(hub, "GET", f"{path}/download", auditor, 409, "export_not_approved", AUDITOR)


def test_rejected_export_cannot_run(hub: NodeKit) -> None:
    hub.app.state.export_policy = ExportPolicy(approval_threshold_rows=0)
    auditor, other = hub.sign_in(AUDITOR), hub.sign_in(AUDITOR2)
    req = ask(hub, auditor)
    assert req["status"] == "pending"
    resp = hub.client.post(f"/v1/exports/{req['id']}/reject", headers=other)
    assert resp.status_code == 200 and resp.json()["status"] == "rejected"
    assert hub.last_audit() == (AUDITOR2, "export.reject", "ok")
    problem = refused(
        hub,
        "GET",
        f"/v1/exports/{req['id']}/download",
        auditor,
        409,
        "export_not_approved",
        AUDITOR,
    )
    assert "却下" in problem["title"]


def test_export_without_the_role_or_with_bad_parameters(hub: NodeKit) -> None:
    clerk = hub.sign_in(CLERK)
    refused(
        hub,
        "POST",
        "/v1/exports",
        clerk,
        403,
        "role_required",
        CLERK,
        json={"kind": "audit", "params": {}},
    )
    auditor = hub.sign_in(AUDITOR)
    refused(
        hub,
        "POST",
        "/v1/exports",
        auditor,
        422,
        "unknown_export",
        AUDITOR,
        json={"kind": "addressees", "params": {}},
    )
    for params in (
        {"from": "昨日"},
        {"since": "2026-01-01"},
        {"from": "2026-05-01", "to": "2026-04-01"},
        {"to": 20260401},
    ):
        refused(
            hub,
            "POST",
            "/v1/exports",
            auditor,
            422,
            "bad_export_params",
            AUDITOR,
            json={"kind": "audit", "params": params},
        )
    # Another auditor's request is not theirs to run; the administrator cannot even see it.
    req = ask(hub, auditor, **{"from": "令和7年4月1日", "to": "R8.3.31"})
    assert req["params"]["from"] == "2025-03-31T15:00:00+00:00"
    assert req["params"]["to"] == "2026-03-31T15:00:00+00:00"  # the whole of 31 March
    refused(hub, "GET", f"/v1/exports/{req['id']}", hub.sign_in(ADMIN), 403, "role_required", ADMIN)
    refused(hub, "GET", "/v1/exports/424242", auditor, 404, "export_not_found", AUDITOR)


def test_export_period_selects_entries(hub: NodeKit) -> None:
    """Only the entries of the period are written; ``to`` defaults to the request time."""
    rt = hub.app.state.rt
    entries = rt.audit.tables.entries
    auditor = hub.sign_in(AUDITOR)
    start = hub.clock.advance(seconds=1)  # after the sign-in
    for _ in range(3):
        hub.clock.advance(minutes=1)
        hub.client.get("/v1/audit/verify", headers=auditor)
    req = ask(hub, auditor, **{"from": start.isoformat()})
    resp = hub.client.get(f"/v1/exports/{req['id']}/download", headers=auditor)
    written = [orjson.loads(line) for line in resp.text.splitlines()[1:]]
    # The request's own entry is at the end of the period: not in it.
    assert [w["action"] for w in written] == ["audit.verify"] * 3
    with hub.engine.connect() as conn:
        total = conn.execute(entries.select()).all()
    assert len(total) > len(written)
    # Nothing changed rows directly: the chain still verifies after all this.
    assert hub.client.get("/v1/audit/verify", headers=auditor).json()["ok"] is True


# --- nothing a user sends makes a 5xx ------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(
        [
            "",
            "\x00",
            "\ud800",
            "管理",
            "監査",
            f"{CHILD}:参照",
            "2026-04-01",
            "令和8年4月1日",
            "audit",
            "C0001",
            "x" * 2000,
        ]
    )
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "staff_id",
                    "name",
                    "roles",
                    "password",
                    "kind",
                    "params",
                    "from",
                    "to",
                    "current_password",
                    "new_password",
                    "scopes",
                    "expires_in_days",
                    "totp",
                ]
            )
            | st.text(max_size=5),
            inner,
            max_size=5,
        )
    ),
    max_leaves=10,
)
FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def test_random_input_to_staff_routes_never_5xx(hub: NodeKit) -> None:
    admin, auditor, clerk = hub.sign_in(ADMIN), hub.sign_in(AUDITOR), hub.sign_in(CLERK)
    routes = [
        ("POST", "/v1/session", {}),
        ("POST", "/v1/session/password", clerk),
        ("POST", "/v1/api-tokens", admin),
        ("POST", "/v1/staff", admin),
        ("PUT", "/v1/staff/{}/roles", admin),
        ("POST", "/v1/staff/{}/unlock", admin),
        ("POST", "/v1/staff/{}/lock", admin),
        ("GET", "/v1/role-requests?status={}", admin),
        ("POST", "/v1/role-requests/{}/approve", admin),
        ("POST", "/v1/role-requests/{}/reject", admin),
        ("POST", "/v1/exports", auditor),
        ("POST", "/v1/exports/{}/approve", auditor),
        ("GET", "/v1/exports/{}/download", auditor),
        ("GET", "/v1/exports?status={}", auditor),
        ("POST", "/v1/alerts/{}/acknowledge", admin),
    ]

    @FUZZ
    @given(route=st.sampled_from(routes), body=JSON, segment=st.text(min_size=1, max_size=70))
    def run(route: tuple[str, str, dict[str, str]], body: Any, segment: str) -> None:
        method, template, headers = route
        path = template.format(quote(segment, safe=""))
        data = json.dumps(body)  # ASCII escapes: lone surrogates and NUL reach the server
        resp = hub.client.request(
            method, path, content=data, headers={**headers, "content-type": "application/json"}
        )
        assert resp.status_code < 500, (method, path, data, resp.text[:300])
        if resp.status_code >= 400:
            assert resp.headers["content-type"].startswith("application/problem+json"), resp.text
            assert has_japanese(resp.json()["title"]), resp.text

    run()
    # The audit chain is whole after all of that.
    assert hub.client.get("/v1/audit/verify", headers=hub.sign_in(AUDITOR)).json()["ok"] is True


def test_control_characters_and_surrogates_are_refused_before_the_database(hub: NodeKit) -> None:
    """PostgreSQL text cannot hold NUL: such input is a 422, never a 500."""
    admin = hub.sign_in(ADMIN)
    bodies = [
        (
            "POST",
            "/v1/session",
            {},
            '{"staff_id": "A0001\\u0000", "password": "x", "totp": "123456"}',
        ),
        ("POST", "/v1/session", {}, '{"staff_id": "\\ud800", "password": "x"}'),
        ("POST", "/v1/staff", admin, '{"staff_id": "N0009", "name": "名\\u0000前", "roles": []}'),
        ("PUT", f"/v1/staff/{CLERK}/roles", admin, '{"roles": ["\\u0000"]}'),
        ("PUT", "/v1/staff/C0001%00/roles", admin, '{"roles": []}'),
        ("POST", "/v1/staff/%00/unlock", admin, ""),
    ]
    for method, path, headers, data in bodies:
        before = hub.counts()
        resp = hub.client.request(
            method, path, content=data, headers={**headers, "content-type": "application/json"}
        )
        assert_problem(resp, 422, "invalid_request")
        unchanged(before, hub.counts())
