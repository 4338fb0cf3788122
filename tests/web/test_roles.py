"""Roles scoped to affairs on the staff screens; every refusal is audited and changes nothing."""

from __future__ import annotations

import re

from sqlalchemy import select

from renkei.atena.models import auth as auth_t
from tests.atena.kit import CHILD_ALLOWANCE_AFFAIR, LOCAL_TAX_AFFAIR
from tests.web.kit import Web, add_staff, csrf_in

CHILD_PROCEDURE = "JT01010000074001"
TAX_PROCEDURE = "JT01010000016001"


def _inquiry(web: Web, csrf: str, procedure: str) -> dict[str, str]:
    return {
        "csrf_token": csrf,
        "procedure_code": procedure,
        "info_kind_code": "TM00000000000002",
        "provider_org": "1311480000000000",
        "person_by": "atena_no",
        "atena_no": web.people[0],
        "as_of": "R6.6.1",
    }


def test_tax_clerk_cannot_inquire_for_child_allowance(web: Web) -> None:
    csrf = web.sign_in("tax")
    form = web.client.get("/atena/inquiry")
    assert form.status_code == 200
    assert TAX_PROCEDURE in form.text and CHILD_PROCEDURE not in form.text  # only own affairs offered
    before = web.counts()
    resp = web.client.post("/atena/inquiry", data=_inquiry(web, csrf, CHILD_PROCEDURE), headers=web.htmx())
    assert resp.status_code == 403
    assert "照会権限を持っていません" in resp.text and 'data-code="affair_not_permitted"' in resp.text
    web.unchanged_since(before)
    entry = web.last_audit("inquiry")
    assert (entry["actor"], entry["outcome"], entry["affair"]) == ("tax", "affair_not_permitted", CHILD_ALLOWANCE_AFFAIR)


def test_tax_clerk_without_the_number_role_cannot_reveal(web: Web) -> None:
    csrf = web.sign_in("tax")
    page = web.client.get(f"/atena/persons/{web.people[0]}")
    assert page.status_code == 200 and "********" in page.text
    for affair in (LOCAL_TAX_AFFAIR, CHILD_ALLOWANCE_AFFAIR, "", "JM99999999999999"):
        resp = web.client.post(
            f"/atena/persons/{web.people[0]}/number",
            data={"csrf_token": csrf, "affair": affair},
            headers=web.htmx(),
        )
        assert resp.status_code == 403 and "個人番号を表示する権限がありません" in resp.text
        assert 'class="revealed"' not in resp.text
        entry = web.last_audit("individual_number.reveal")
        assert (entry["actor"], entry["outcome"], entry["subject"]) == ("tax", "denied", web.people[0])


def test_the_number_role_works_only_for_the_affair_it_is_held_in(web: Web) -> None:
    csrf = web.sign_in("taxnum")
    ok = web.client.post(
        f"/atena/persons/{web.people[0]}/number",
        data={"csrf_token": csrf, "affair": LOCAL_TAX_AFFAIR},
        headers=web.htmx(),
    )
    assert ok.status_code == 200 and 'class="revealed"' in ok.text
    wrong = web.client.post(
        f"/atena/persons/{web.people[0]}/number",
        data={"csrf_token": csrf, "affair": CHILD_ALLOWANCE_AFFAIR},
        headers=web.htmx(),
    )
    assert wrong.status_code == 403 and "児童手当" in wrong.text
    entry = web.last_audit("individual_number.reveal")
    assert (entry["outcome"], entry["affair"]) == ("denied", CHILD_ALLOWANCE_AFFAIR)


def test_without_the_view_role_no_resident_is_shown(web: Web) -> None:
    web.sign_in("nobody")
    home = web.client.get("/")
    assert "権限が付与されていません" in home.text and "宛名検索" not in home.text
    for path in ("/atena/search", f"/atena/persons/{web.people[0]}", f"/atena/persons/{web.people[0]}/number"):
        resp = web.client.get(path)
        assert resp.status_code == 403, path
        assert "権限「宛名:参照」が必要です" in resp.text
        assert "新宿" not in resp.text.split("<main>")[1]
    assert web.client.get("/atena/inquiry").status_code == 403
    assert web.last_audit()["outcome"] in {"role_required", "affair_not_permitted"}


def test_auditor_reads_the_audit_log_but_changes_nothing(web: Web) -> None:
    csrf = web.sign_in("auditor")
    log = web.client.get("/audit")
    assert log.status_code == 200 and "session.login" in log.text
    assert web.last_audit("audit.read")["actor"] == "auditor"
    before = web.counts()
    for path, data in (
        ("/admin/staff", {"staff_id": "x1", "name": "不正（架空）", "roles": "管理"}),
        ("/admin/staff/clerk/unlock", {}),
        ("/admin/staff/clerk/revoke", {}),
        ("/admin/staff/clerk/totp", {}),
    ):
        resp = web.client.post(path, data={"csrf_token": csrf, **data})
        assert resp.status_code == 403 and "権限「管理」が必要です" in resp.text, path
    assert web.client.get("/admin/staff").status_code == 403
    reveal = web.client.post(
        f"/atena/persons/{web.people[0]}/number", data={"csrf_token": csrf, "affair": CHILD_ALLOWANCE_AFFAIR}
    )
    assert reveal.status_code == 403
    web.unchanged_since(before)


def test_administrator_manages_staff_but_cannot_read_the_audit_log(web: Web) -> None:
    csrf = web.sign_in("admin")
    denied = web.client.get("/audit")
    assert denied.status_code == 403 and "監査ログの閲覧には権限「監査」が必要です" in denied.text
    assert "session.login" not in denied.text
    assert web.last_audit("audit.read")["outcome"] == "role_required"
    staff = web.client.get("/admin/staff")
    assert staff.status_code == 200 and 'id="staff-clerk"' in staff.text
    assert web.client.get(f"/atena/persons/{web.people[0]}").status_code == 403  # 管理 reads no residents

    created = web.client.post(
        "/admin/staff",
        data={"csrf_token": csrf, "staff_id": "newbie", "name": "新任（架空）", "roles": "宛名:参照\nJM01000000074000:照会"},
    )
    assert created.status_code == 201
    password = re.search(r'id="initial-password">([^<]+)<', created.text)
    assert password is not None
    assert "otpauth" not in created.text and "<svg" not in created.text  # the TOTP is the staff's own
    # Data roles wait for another administrator: the account holds none yet.
    assert 'id="created-pending"' in created.text and 'id="role-request-' in created.text
    assert web.staff_row("newbie").roles == []
    entry = web.last_audit("staff.create")
    assert (entry["ref"], entry["outcome"]) == ("newbie", "pending")

    conflict = web.client.post(
        "/admin/staff", data={"csrf_token": csrf, "staff_id": "mixed", "name": "混在（架空）", "roles": "監査\n宛名:更新"}
    )
    assert conflict.status_code == 422 and "職務分掌に反する" in conflict.text
    assert web.last_audit("staff.create")["outcome"] == "role_conflict"
    bad_role = web.client.post(
        "/admin/staff", data={"csrf_token": csrf, "staff_id": "odd", "name": "不明（架空）", "roles": "なんでも"}
    )
    assert bad_role.status_code == 422 and "権限「なんでも」" in bad_role.text

    # The new member signs in with the initial password and enrols the TOTP.
    web.client.cookies.clear()
    token = web.login_token()
    page = web.client.post("/login", data={"login_csrf": token, "staff_id": "newbie", "password": password.group(1), "totp": ""})
    assert page.status_code == 200 and 'id="totp-qr"' in page.text
    assert csrf_in(page.text)


def test_administrator_lifts_throttling_locks_and_ends_sessions(web: Web) -> None:
    victim = web.sign_in("viewer")
    assert victim
    viewer_cookie = dict(web.client.cookies)
    csrf = web.sign_in("admin")  # before the failures: signing in moves the clock
    admin_cookie = dict(web.client.cookies)
    for _ in range(5):
        web.post_login("clerk", password="Wrong-Pass-2026!x")
    assert web.post_login("clerk").status_code == 401  # throttled: even the right password
    web.client.cookies.clear()
    for k, v in admin_cookie.items():
        web.client.cookies.set(k, v)
    listing = web.client.get("/admin/staff")
    assert "ログイン制限中" in listing.text
    assert web.client.post("/admin/staff/clerk/unlock", data={"csrf_token": csrf}).status_code == 200
    assert "ログイン制限中" not in web.client.get("/admin/staff").text
    assert web.client.post("/admin/staff/viewer/revoke", data={"csrf_token": csrf}).status_code == 200
    entry = web.last_audit("staff.revoke_sessions")
    assert entry["ref"] == "viewer" and entry["detail"] == {"sessions": 1}
    unknown = web.client.post("/admin/staff/ghost/unlock", data={"csrf_token": csrf})
    assert unknown.status_code == 404 and "登録されていません" in unknown.text
    assert web.last_audit("staff.unlock")["outcome"] == "staff_not_found"
    # An administrator's lock: until unlocked, refused like a wrong password.
    assert web.client.post("/admin/staff/tax/lock", data={"csrf_token": csrf}).status_code == 200
    assert "ロック中（解除するまで）" in web.client.get("/admin/staff").text
    own = web.client.post("/admin/staff/admin/lock", data={"csrf_token": csrf})
    assert own.status_code == 409 and "自分自身のアカウントはロックできません" in own.text
    web.client.cookies.clear()
    for k, v in viewer_cookie.items():
        web.client.cookies.set(k, v)
    back = web.client.get("/", follow_redirects=False)
    assert back.headers["location"] == "/login?reason=session_revoked"
    web.clock.advance(seconds=30)
    assert web.post_login("clerk").status_code == 303  # unlocked
    web.clock.advance(seconds=30)
    assert web.post_login("tax").status_code == 401  # locked
    assert web.last_audit("session.login")["outcome"] == "locked"


def _roles(web: Web, staff_id: str) -> list[str]:
    with web.atena.state.rt.engine.connect() as conn:
        return list(conn.execute(select(auth_t.staff.c.roles).where(auth_t.staff.c.staff_id == staff_id)).scalar_one())


def test_role_changes_need_a_second_administrator_on_the_screens(web: Web) -> None:
    web.uris["admin2"] = add_staff(web.atena, web.clock, "admin2", "システム管理者2（架空）", ("管理",))
    csrf = web.sign_in("admin")
    page = web.client.get("/admin/staff")
    assert 'action="/admin/staff/viewer/roles"' in page.text
    assert 'action="/admin/staff/admin/roles"' not in page.text  # no form for one's own roles
    # The probe of issue 8, on the screens: one's own roles cannot be changed.
    before = web.counts()
    own = web.client.post(
        "/admin/staff/admin/roles",
        data={"csrf_token": csrf, "roles": "管理\n宛名:参照\n個人番号:表示\nJM01000000074000:照会"},
    )
    assert own.status_code == 403 and "自分自身の権限は変更できません" in own.text
    web.unchanged_since(before)
    assert _roles(web, "admin") == ["管理"]
    assert web.last_audit("staff.roles.request")["outcome"] == "own_roles"
    # A data role for someone else waits; the requester sees no approve button for it.
    asked = web.client.post(
        "/admin/staff/viewer/roles",
        data={"csrf_token": csrf, "roles": "宛名:参照\n個人番号:表示"},
        follow_redirects=False,
    )
    assert asked.status_code == 303 and asked.headers["location"] == "/admin/staff?done=roles_pending"
    assert _roles(web, "viewer") == ["宛名:参照"]
    page = web.client.get("/admin/staff")
    request_id = re.search(r'id="role-request-(\d+)"', page.text)
    assert request_id
    rid = request_id.group(1)
    assert f"/admin/role-requests/{rid}/approve" not in page.text and "取り下げ" in page.text
    mine = web.client.post(f"/admin/role-requests/{rid}/approve", data={"csrf_token": csrf})
    assert mine.status_code == 403 and "別の管理者の承認が必要です" in mine.text
    assert _roles(web, "viewer") == ["宛名:参照"]
    # The second administrator approves with the button on the same page.
    web.client.cookies.clear()
    csrf2 = web.sign_in("admin2")
    page = web.client.get("/admin/staff")
    assert f'action="/admin/role-requests/{rid}/approve"' in page.text
    done = web.client.post(
        f"/admin/role-requests/{rid}/approve", data={"csrf_token": csrf2}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"] == "/admin/staff?done=approved"
    assert _roles(web, "viewer") == ["個人番号:表示", "宛名:参照"]
    entry = web.last_audit("staff.roles.approve")
    assert (entry["actor"], entry["outcome"], entry["ref"]) == ("admin2", "applied", f"role-request:{rid}")
    assert "承認待ちの依頼はありません" in web.client.get("/admin/staff").text
    # Taking a role away applies at once; an unknown role is refused in Japanese.
    gone = web.client.post(
        "/admin/staff/viewer/roles",
        data={"csrf_token": csrf2, "roles": "宛名:参照"},
        follow_redirects=False,
    )
    assert gone.headers["location"] == "/admin/staff?done=roles"
    assert _roles(web, "viewer") == ["宛名:参照"]
    bad = web.client.post("/admin/staff/viewer/roles", data={"csrf_token": csrf2, "roles": "なんでも"})
    assert bad.status_code == 422 and "権限「なんでも」" in bad.text
    # An administrator holds no data role (separation of duties, this node's policy).
    before = web.counts()
    mixed = web.client.post("/admin/staff/admin/roles", data={"csrf_token": csrf2, "roles": "管理\n宛名:参照"})
    assert mixed.status_code == 422 and "職務分掌に反する" in mixed.text and "管理の権限" in mixed.text
    web.unchanged_since(before)
    assert _roles(web, "admin") == ["管理"]
    assert web.last_audit("staff.roles.request")["outcome"] == "role_conflict"
