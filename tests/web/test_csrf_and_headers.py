"""Every state-changing request needs the session's CSRF token; every page carries the
security headers; the terminal warning shows exactly when the terminal check is off."""

from __future__ import annotations

from typing import Any

import pytest

from renkei.web.pages import TERMINAL_WARNING
from renkei.web.site import SESSION_COOKIE
from tests.api.fed import Federation
from tests.atena.kit import CHILD_ALLOWANCE_AFFAIR
from tests.web.kit import Web, number_of, open_web

# POST route → (who would be allowed to do it, a form that would change something)
POSTS: dict[str, tuple[str, dict[str, str]]] = {
    "/logout": ("clerk", {}),
    "/password": (
        "clerk",
        {"current_password": "Kari-Pass-2026!x", "new_password": "Another-Pass-2026!", "new_password_again": "Another-Pass-2026!"},
    ),
    "/admin/staff": ("admin", {"staff_id": "newbie", "name": "新任（架空）", "roles": "宛名:参照"}),
    "/admin/staff/{target}/roles": ("admin", {"roles": "宛名:参照\n個人番号:表示"}),
    "/admin/staff/{target}/unlock": ("admin", {}),
    "/admin/staff/{target}/lock": ("admin", {}),
    "/admin/role-requests/{request_id}/approve": ("admin", {}),
    "/admin/role-requests/{request_id}/reject": ("admin", {}),
    "/admin/staff/{target}/revoke": ("admin", {}),
    "/admin/staff/{target}/totp": ("admin", {}),
    "/atena/persons/{atena_no}/number": ("clerk", {"affair": CHILD_ALLOWANCE_AFFAIR}),
    "/atena/persons/{atena_no}/identity-search": ("registrar", {"affair": CHILD_ALLOWANCE_AFFAIR}),
    "/atena/non-residents/candidates": (
        "registrar",
        {"family_name": "新宿", "given_name": "花子0", "family_kana": "シンジュク", "given_kana": "ハナコ",
         "birth_date": "1985-04-01", "sex": "2", "postal_code": "1600022", "address": "東京都", "lg_code": "131041"},
    ),
    "/atena/non-residents/register": (
        "registrar",
        {"family_name": "新宿", "given_name": "花子0", "family_kana": "シンジュク", "given_kana": "ハナコ",
         "birth_date": "1985-04-01", "sex": "2", "postal_code": "1600022", "address": "東京都", "lg_code": "131041",
         "acknowledgement": "", "choice": "new"},
    ),
    "/atena/search/number": ("clerk", {"affair": CHILD_ALLOWANCE_AFFAIR, "number": number_of(0)}),
    "/atena/inquiry": (
        "clerk",
        {
            "procedure_code": "JT01010000074001",
            "info_kind_code": "TM00000000000002",
            "provider_org": "1311480000000000",
            "person_by": "atena_no",
            "atena_no": "",
            "as_of": "令和6年6月1日",
        },
    ),
    # 庁内連携 (renkei.web.chonai)
    "/atena/chonai": ("clerk", {"entry": "T1-05", "atena_no": "", "as_of": "令和7年4月1日"}),
}


def _routes(routes: Any) -> Any:
    for r in routes:
        inner = getattr(r, "original_router", None)  # FastAPI keeps included routers whole
        if inner is not None:
            yield from _routes(inner.routes)
        else:
            yield r


def _post_routes(web: Web) -> set[str]:
    return {
        str(r.path)
        for r in _routes(web.app.routes)
        if "POST" in getattr(r, "methods", set()) and r.path != "/login"
    }


def test_the_table_covers_every_post_route(web: Web) -> None:
    assert _post_routes(web) == set(POSTS)


@pytest.mark.parametrize("presented", ["missing", "wrong", "other_session"])
def test_every_post_without_the_right_csrf_token_is_refused_and_changes_nothing(web: Web, presented: str) -> None:
    other = web.sign_in("viewer")  # a valid token, but of another session
    for route, (staff_id, form) in POSTS.items():
        web.sign_in(staff_id)
        cookie = web.client.cookies.get(SESSION_COOKIE)
        path = route.format(target="viewer", atena_no=web.people[0], request_id=1)
        data: dict[str, Any] = dict(form)
        if route == "/atena/inquiry":
            data["atena_no"] = web.people[0]
        if presented == "wrong":
            data["csrf_token"] = "A" * 43
        elif presented == "other_session":
            data["csrf_token"] = other
        before = web.counts()
        for headers in ({}, web.htmx()):
            resp = web.client.post(path, data=data, headers=headers, follow_redirects=False)
            assert resp.status_code == 403, (route, resp.status_code, resp.text[:300])
            assert "不正な要求の可能性があるため処理を中止しました" in resp.text, route
            assert 'data-code="csrf_failed"' in resp.text
        web.unchanged_since(before)
        entry = web.last_audit("session.check")
        assert (entry["actor"], entry["outcome"]) == (staff_id, "csrf_failed")
        # The session is untouched: still signed in (the refused /logout did not log out).
        assert web.client.cookies.get(SESSION_COOKIE) == cookie
        assert web.client.get("/", follow_redirects=False).status_code == 200


def test_the_token_in_the_htmx_header_is_accepted(web: Web) -> None:
    csrf = web.sign_in("clerk")
    resp = web.client.post(
        f"/atena/persons/{web.people[0]}/number",
        data={"affair": CHILD_ALLOWANCE_AFFAIR},
        headers={**web.htmx(), "X-CSRF-Token": csrf},
    )
    assert resp.status_code == 200 and 'class="revealed"' in resp.text
    wrong = web.client.post(
        f"/atena/persons/{web.people[0]}/number",
        data={"affair": CHILD_ALLOWANCE_AFFAIR, "csrf_token": csrf},
        headers={**web.htmx(), "X-CSRF-Token": "B" * 43},
    )
    assert wrong.status_code == 403  # a wrong header is not rescued by a right field
    assert wrong.headers.get("hx-retarget") == "#flash"


def _assert_security_headers(resp: Any, *, static: bool = False) -> None:
    h = resp.headers
    csp = h["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert h["x-frame-options"] == "DENY"
    assert h["referrer-policy"] == "no-referrer"
    assert h["x-content-type-options"] == "nosniff"
    assert h["cache-control"] == ("no-cache" if static else "no-store")


def test_security_headers_on_every_kind_of_response(web: Web) -> None:
    _assert_security_headers(web.client.get("/login"))
    _assert_security_headers(web.client.get("/", follow_redirects=False))  # redirect to sign-in
    web.sign_in("clerk")
    for path in ("/", f"/atena/persons/{web.people[0]}", "/atena/search", "/no-such-page", "/atena/persons/123"):
        _assert_security_headers(web.client.get(path))
    _assert_security_headers(web.client.get("/static/htmx.min.js"), static=True)
    _assert_security_headers(web.client.post("/logout", data={}))  # a 403


def test_pages_hold_no_inline_script_or_style(web: Web) -> None:
    web.sign_in("clerk")
    for path in ("/login", "/", f"/atena/persons/{web.people[0]}", "/atena/search", "/atena/inquiry"):
        text = web.client.get(path).text
        assert "<script>" not in text and "<script " not in text.replace('<script src="/static/htmx.min.js" defer>', "")
        assert " style=" not in text and "<style" not in text and " hx-on" not in text and "javascript:" not in text


def test_oversized_bodies_are_refused_before_parsing(web: Web) -> None:
    resp = web.client.post("/login", content=b"a=" + b"x" * 70_000, headers={"content-type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 413 and "送信内容が大きすぎます" in resp.text


@pytest.mark.parametrize("check", [False, True])
def test_the_terminal_warning_shows_exactly_when_the_check_is_off(fed: Federation, db_url: str, check: bool) -> None:
    with open_web(fed, db_url, terminal_check=check, residents=False) as web:
        pages = [web.client.get("/login"), web.client.get("/nowhere")]
        web.sign_in("clerk")
        pages += [web.client.get("/"), web.client.get("/atena/search")]
        for page in pages:
            assert (TERMINAL_WARNING in page.text) is (not check)
            assert ('id="terminal-warning"' in page.text) is (not check)
