"""First-login TOTP enrolment: the QR only after the password, a code confirms it, codes are single-use."""

from __future__ import annotations

import re

import pyotp

from renkei.web.site import SESSION_COOKIE
from tests.web.kit import PASSWORD, Web, csrf_in


def _secret(page: str) -> str:
    match = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page)
    assert match, "no secret on the enrolment page"
    return match.group(1).replace(" ", "")


def test_first_sign_in_shows_the_qr_and_a_code_confirms_it(web: Web) -> None:
    web.clock.advance(seconds=30)
    page = web.post_login("clerk", totp="")
    assert page.status_code == 200
    assert "ワンタイムパスワードの登録（初回のみ）" in page.text
    assert '<svg' in page.text and 'id="totp-qr"' in page.text
    assert SESSION_COOKIE not in page.cookies
    secret = _secret(page.text)
    assert pyotp.parse_uri(web.uris["clerk"]).secret == secret  # the account's own secret
    assert web.staff_row("clerk").totp_last_step is None
    assert web.last_audit("session.login")["outcome"] == "totp_enrolment"

    code = pyotp.TOTP(secret).at(web.clock())
    form = {"login_csrf": csrf_in(page.text), "staff_id": "clerk", "password": PASSWORD, "totp": code}
    done = web.client.post("/login", data=form, follow_redirects=False)
    assert done.status_code == 303 and done.cookies.get(SESSION_COOKIE)
    assert web.staff_row("clerk").totp_last_step is not None
    entry = web.last_audit("session.login")
    assert entry["outcome"] == "ok" and entry["detail"] == {"totp_enrolled": True}

    # The confirming code cannot be replayed, and the QR is never shown again.
    web.client.cookies.clear()
    replay = web.post_login("clerk", totp=code)
    assert replay.status_code == 401 and "既に使用されています" in replay.text
    assert 'id="totp-qr"' not in replay.text
    no_code = web.post_login("clerk", totp="")
    assert no_code.status_code == 401 and 'id="totp-qr"' not in no_code.text


def test_a_wrong_code_during_enrolment_shows_the_qr_again_with_the_reason(web: Web) -> None:
    web.clock.advance(seconds=30)
    wrong = "000000" if web.totp("viewer") != "000000" else "111111"
    page = web.post_login("viewer", totp=wrong)
    assert page.status_code == 401
    assert "ワンタイムパスワードが正しくないか" in page.text and 'id="totp-qr"' in page.text
    assert web.staff_row("viewer").failed_count == 1  # a wrong code counts towards the throttle


def test_no_qr_without_the_password(web: Web) -> None:
    page = web.post_login("clerk", password="Wrong-Pass-2026!x", totp="")
    assert page.status_code == 401
    assert "<svg" not in page.text and "totp-secret" not in page.text
    assert "職員IDまたはパスワードが正しくないか" in page.text


def test_after_an_administrator_resets_the_totp_the_staff_member_enrols_a_new_secret(web: Web) -> None:
    web.sign_in("viewer")
    old = pyotp.parse_uri(web.uris["viewer"]).secret
    admin_csrf = web.sign_in("admin")
    resp = web.client.post("/admin/staff/viewer/totp", data={"csrf_token": admin_csrf}, follow_redirects=False)
    assert resp.status_code == 303
    assert web.last_audit("staff.totp_reset")["ref"] == "viewer"
    web.client.cookies.clear()
    web.clock.advance(seconds=30)
    page = web.post_login("viewer", totp="")
    assert 'id="totp-qr"' in page.text
    new = _secret(page.text)
    assert new != old
    old_code = pyotp.TOTP(old).at(web.clock())
    if old_code != pyotp.TOTP(new).at(web.clock()):
        refused = web.post_login("viewer", totp=old_code)
        assert refused.status_code == 401  # the old app no longer works
    web.clock.advance(seconds=30)
    ok = web.post_login("viewer", totp=pyotp.TOTP(new).at(web.clock()))
    assert ok.status_code == 303
