"""Sign-in, sessions and sign-out of the staff UI: every refusal says why in Japanese."""

from __future__ import annotations

from datetime import timedelta

from renkei.web.site import LOGIN_COOKIE, SESSION_COOKIE, PasswordRules
from tests.api.fed import Federation
from tests.web.kit import PASSWORD, Web, csrf_in, open_web


def _set_cookie_headers(resp: object) -> list[str]:
    return [v for k, v in resp.headers.multi_items() if k.lower() == "set-cookie"]  # type: ignore[attr-defined]


def test_sign_in_sets_a_strict_host_only_session_cookie_and_lists_roles(web: Web) -> None:
    web.clock.advance(seconds=30)
    resp = web.post_login("clerk")
    assert resp.status_code == 303 and resp.headers["location"] == "/"
    cookie = next(c for c in _set_cookie_headers(resp) if c.startswith(SESSION_COOKIE + "="))
    attrs = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= attrs
    assert not any(a.startswith("domain") for a in attrs)
    home = web.client.get("/")
    assert home.status_code == 200
    assert "児童手当係(架空)" in home.text  # names are stored NFKC-normalized
    assert "宛名:参照" in home.text and "個人番号:表示" in home.text
    assert "児童手当法による児童手当又は特例給付の支給に関する事務：照会" in home.text
    assert web.last_audit("session.login")["outcome"] == "ok"


def test_wrong_password_and_unknown_id_get_the_same_japanese_refusal(web: Web) -> None:
    before = web.counts()
    wrong = web.post_login("clerk", password="Wrong-Pass-2026!x")
    unknown = web.post_login("nobody-here", password=PASSWORD, totp="123456")
    for resp in (wrong, unknown):
        assert resp.status_code == 401
        assert "職員IDまたはパスワードが正しくないか、ログインが一時的に制限されています。" in resp.text
        assert SESSION_COOKIE not in resp.cookies
    web.unchanged_since({k: v for k, v in before.items() if k != "auth_staff"})
    assert web.staff_row("clerk").failed_count == 1
    outcomes = [(e["actor"], e["outcome"]) for e in web.audit() if e["action"] == "session.login"]
    assert outcomes[-2:] == [("clerk", "bad_credentials"), ("nobody-here", "unknown_staff")]


def test_wrong_or_missing_code_is_refused_with_its_own_message(web: Web) -> None:
    web.clock.advance(seconds=30)
    assert web.post_login("tax", totp="").status_code == 200  # never enrolled: the QR instead
    web.sign_in("tax")  # now enrolled
    web.client.cookies.clear()
    missing = web.post_login("tax", totp="")
    assert missing.status_code == 401 and "ワンタイムパスワードを入力してください。" in missing.text
    assert 'id="totp-qr"' not in missing.text
    wrong = web.post_login("tax", totp="000000" if web.totp("tax") != "000000" else "111111")
    assert wrong.status_code == 401
    assert "ワンタイムパスワードが正しくないか、有効期限が切れています。" in wrong.text
    stale = web.post_login("tax", totp=web.totp("tax", web.clock() - timedelta(minutes=5)))
    assert stale.status_code == 401 and "有効期限が切れています" in stale.text


def _message(resp: object) -> str:
    text: str = resp.text  # type: ignore[attr-defined]
    start = text.index('class="message')
    return text[start : text.index("</", start)]


def test_throttled_sign_in_looks_like_a_wrong_password_and_ends_by_itself(web: Web) -> None:
    web.clock.advance(seconds=30)
    for _ in range(5):
        wrong = web.post_login("viewer", password="Wrong-Pass-2026!x")
        assert wrong.status_code == 401
    again = web.post_login("viewer")  # the right password and code
    assert again.status_code == 401 and _message(again) == _message(wrong)
    assert "ロック" not in again.text and SESSION_COOKIE not in again.cookies
    assert web.last_audit("session.login")["outcome"] == "throttled"
    # A throttled account never shows its enrolment QR, even with the right password.
    for _ in range(5):
        web.post_login("nobody", password="Wrong-Pass-2026!x", totp="")
    page = web.post_login("nobody", totp="")
    assert page.status_code == 401 and 'id="totp-qr"' not in page.text
    web.clock.advance(seconds=2)  # the first delay: two seconds
    assert web.post_login("viewer").status_code == 303


def test_sign_in_without_the_login_csrf_token_is_refused_and_opens_nothing(web: Web) -> None:
    web.clock.advance(seconds=30)
    web.login_token()  # the cookie is set, but the form does not carry it
    before = web.counts()
    form = {"staff_id": "clerk", "password": PASSWORD, "totp": web.totp("clerk")}
    missing = web.client.post("/login", data=form, follow_redirects=False)
    wrong = web.client.post("/login", data={**form, "login_csrf": "x" * 43}, follow_redirects=False)
    web.client.cookies.delete(LOGIN_COOKIE)
    no_cookie = web.client.post("/login", data={**form, "login_csrf": "x" * 43}, follow_redirects=False)
    for resp in (missing, wrong, no_cookie):
        assert resp.status_code == 403
        assert "不正な要求の可能性があるため処理を中止しました" in resp.text
        assert SESSION_COOKIE not in resp.cookies
    web.unchanged_since(before)
    assert web.last_audit("session.login")["outcome"] == "csrf_failed"
    # The code was not spent: the same code still signs in with a proper form.
    assert web.post_login("clerk").status_code == 303


def test_idle_and_absolute_timeouts_send_back_to_sign_in_with_the_reason(web: Web) -> None:
    web.sign_in("clerk")
    web.clock.advance(minutes=31)
    resp = web.client.get("/", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/login?reason=session_expired"
    page = web.client.get(resp.headers["location"])
    assert "一定時間操作がなかったため、ログアウトしました" in page.text
    htmx = web.client.get("/atena/search", headers=web.htmx())
    assert htmx.headers.get("hx-redirect") == "/login?reason=session_expired"

    web.sign_in("clerk")
    for _ in range(17):  # active every 29 minutes, but for more than 8 hours
        web.clock.advance(minutes=29)
        if web.client.get("/", follow_redirects=False).status_code != 200:
            break
    assert web.client.get("/", follow_redirects=False).headers["location"].endswith("session_expired")


def test_sign_out_ends_the_session(web: Web) -> None:
    csrf = web.sign_in("clerk")
    resp = web.client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/login?reason=logged_out"
    assert any(c.startswith(SESSION_COOKIE + '=""') or "Max-Age=0" in c for c in _set_cookie_headers(resp))
    assert "ログアウトしました。" in web.client.get("/login?reason=logged_out").text
    assert web.client.get("/", follow_redirects=False).headers["location"].startswith("/login")
    assert web.last_audit("session.logout")["outcome"] == "ok"


def test_an_unknown_reason_is_not_echoed(web: Web) -> None:
    page = web.client.get("/login", params={"reason": "<script>alert(1)</script>"})
    assert page.status_code == 200 and "<script>alert" not in page.text and "alert(1)" not in page.text


def test_a_session_cookie_carried_to_another_terminal_is_refused_and_ended(fed: Federation, db_url: str) -> None:
    with open_web(fed, db_url, residents=False) as web:
        web.sign_in("clerk")
        cookie = web.client.cookies.get(SESSION_COOKIE)
        assert cookie
        from starlette.testclient import TestClient

        with TestClient(web.app, base_url="https://testserver", client=("10.9.9.9", 50000)) as other:
            other.cookies.set(SESSION_COOKIE, cookie)
            resp = other.get("/", follow_redirects=False)
            assert resp.headers["location"] == "/login?reason=terminal_changed"
        # …and the session is over on the first terminal too (the cookie may have been stolen).
        assert web.client.get("/", follow_redirects=False).headers["location"].endswith("session_revoked")
        assert web.last_audit("session.check")["outcome"] in {"terminal_changed", "session_revoked"}


def test_initial_password_must_be_changed_before_anything_else(fed: Federation, db_url: str) -> None:
    with open_web(fed, db_url, residents=False, passwords=PasswordRules(change_initial=True)) as web:
        web.clock.advance(seconds=30)
        assert web.post_login("clerk").status_code == 303
        home = web.client.get("/", follow_redirects=False)
        assert home.status_code == 303 and home.headers["location"] == "/password"
        page = web.client.get("/password")
        assert "パスワードの有効期限が切れています" in page.text
        csrf = csrf_in(page.text)
        weak = web.client.post(
            "/password",
            data={"csrf_token": csrf, "current_password": PASSWORD, "new_password": "short", "new_password_again": "short"},
        )
        assert weak.status_code == 422 and "12文字以上にしてください" in weak.text
        mismatch = web.client.post(
            "/password",
            data={"csrf_token": csrf, "current_password": PASSWORD, "new_password": "Another-Pass-2026!", "new_password_again": "x"},
        )
        assert mismatch.status_code == 422 and "一致しません" in mismatch.text
        done = web.client.post(
            "/password",
            data={"csrf_token": csrf, "current_password": PASSWORD, "new_password": "Another-Pass-2026!", "new_password_again": "Another-Pass-2026!"},
            follow_redirects=False,
        )
        assert done.status_code == 303
        home = web.client.get(done.headers["location"])
        assert home.status_code == 200 and "パスワードを変更しました。" in home.text
        assert web.last_audit("password.change")["outcome"] == "ok"


def test_a_password_older_than_the_limit_expires(fed: Federation, db_url: str) -> None:
    rules = PasswordRules(max_age_days=90, change_initial=False)
    with open_web(fed, db_url, residents=False, passwords=rules) as web:
        web.sign_in("clerk")  # created a day ago: fine
        web.clock.advance(days=90)
        web.client.cookies.clear()
        assert web.post_login("clerk").status_code == 303
        assert web.client.get("/", follow_redirects=False).headers["location"] == "/password"
        assert web.client.get("/atena/search", follow_redirects=False).headers["location"] == "/password"
