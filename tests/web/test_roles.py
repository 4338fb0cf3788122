"""Roles scoped to affairs on the staff screens; every refusal is audited and changes nothing."""

from __future__ import annotations

import re

from tests.atena.kit import CHILD_ALLOWANCE_AFFAIR, LOCAL_TAX_AFFAIR
from tests.web.kit import Web, csrf_in

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
    entry = web.last_audit("staff.create")
    assert (entry["ref"], entry["outcome"]) == ("newbie", "ok")

    conflict = web.client.post(
        "/admin/staff", data={"csrf_token": csrf, "staff_id": "mixed", "name": "混在（架空）", "roles": "監査\n宛名:更新"}
    )
    assert conflict.status_code == 422 and "職務分掌に反する" in conflict.text
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


def test_administrator_unlocks_and_ends_sessions(web: Web) -> None:
    victim = web.sign_in("viewer")
    assert victim
    viewer_cookie = dict(web.client.cookies)
    for _ in range(5):
        web.post_login("clerk", password="Wrong-Pass-2026!x")
    assert web.staff_row("clerk").locked_until is not None
    csrf = web.sign_in("admin")
    listing = web.client.get("/admin/staff")
    assert "ロック中" in listing.text
    assert web.client.post("/admin/staff/clerk/unlock", data={"csrf_token": csrf}).status_code == 200
    assert web.staff_row("clerk").locked_until is None
    assert web.client.post("/admin/staff/viewer/revoke", data={"csrf_token": csrf}).status_code == 200
    entry = web.last_audit("staff.revoke_sessions")
    assert entry["ref"] == "viewer" and entry["detail"] == {"sessions": 1}
    unknown = web.client.post("/admin/staff/ghost/unlock", data={"csrf_token": csrf})
    assert unknown.status_code == 404 and "登録されていません" in unknown.text
    web.client.cookies.clear()
    for k, v in viewer_cookie.items():
        web.client.cookies.set(k, v)
    back = web.client.get("/", follow_redirects=False)
    assert back.headers["location"] == "/login?reason=session_revoked"
    web.clock.advance(seconds=30)
    assert web.post_login("clerk").status_code == 303  # unlocked
