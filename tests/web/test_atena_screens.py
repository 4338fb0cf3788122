"""atena's staff screens: search, detail in 和暦, the masked number and its audited reveal, inquiry."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from renkei.atena.models import Base
from renkei.core.errors import Problem
from renkei.core.wire.guard import GuardPolicy
from tests.atena.kit import CHILD_ALLOWANCE_AFFAIR
from tests.web.kit import CHILD_SYSTEM_NO, KANA_CROWD, TAX_SYSTEM_NO, Web, number_of


def _number_shown(text: str) -> str:
    match = re.search(r'id="individual-number">([^<]+)<', text)
    assert match, "no number element"
    return match.group(1)


def test_search_by_number_opens_the_person(web: Web) -> None:
    web.sign_in("clerk")
    by_no = web.client.get("/atena/search", params={"mode": "atena_no", "atena_no": web.people[0]}, follow_redirects=False)
    assert by_no.status_code == 303 and by_no.headers["location"] == f"/atena/persons/{web.people[0]}"
    by_business = web.client.get(
        "/atena/search",
        params={"mode": "business", "system": "child_allowance", "business_atena_no": CHILD_SYSTEM_NO},
        headers=web.htmx(),
    )
    assert by_business.headers["hx-redirect"] == f"/atena/persons/{web.people[0]}"
    entry = web.last_audit("resident.search")
    assert (entry["subject"], entry["detail"]) == (web.people[0], {"mode": "business"})


def test_unknown_or_malformed_numbers_are_told_apart_in_japanese(web: Web) -> None:
    web.sign_in("clerk")
    unknown = web.client.get("/atena/search", params={"mode": "atena_no", "atena_no": "000000009999997"})
    bad = web.client.get("/atena/search", params={"mode": "atena_no", "atena_no": "123"})
    no_link = web.client.get(
        "/atena/search", params={"mode": "business", "system": "tax", "business_atena_no": CHILD_SYSTEM_NO}
    )
    assert unknown.status_code in {404, 422} and "統合宛名番号" in unknown.text
    assert bad.status_code == 422 and "統合宛名番号" in bad.text
    assert no_link.status_code == 404 and "登録されていません" in no_link.text
    assert web.last_audit("resident.search")["outcome"] == "unknown_business_atena_no"


def test_kana_search_with_a_wareki_birth_date_is_paginated(web: Web) -> None:
    web.sign_in("clerk")
    first = web.client.get("/atena/search", params={"mode": "kana", "kana": "しんじゅく", "birth_date": "昭和60年4月1日"})
    assert first.status_code == 200
    assert f"検索結果 {KANA_CROWD} 件（昭和60年4月1日生まれ）" in first.text
    rows_1 = re.findall(r'<td><a href="/atena/persons/(\d{15})">', first.text)
    assert len(rows_1) == 20 and "1 / 2 ページ" in first.text
    second = web.client.get(
        "/atena/search", params={"mode": "kana", "kana": "ｼﾝｼﾞｭｸ", "birth_date": "S60.4.1", "page": 2}, headers=web.htmx()
    )
    assert "<html" not in second.text  # an htmx fragment
    rows_2 = re.findall(r'<td><a href="/atena/persons/(\d{15})">', second.text)
    assert len(rows_2) == KANA_CROWD - 20 and not set(rows_1) & set(rows_2)
    narrow = web.client.get("/atena/search", params={"mode": "kana", "kana": "シンジュク ハナコア", "birth_date": "1985-04-01"})
    assert "検索結果 16 件" in narrow.text  # ハナコア and ハナコアア: n % 3 in (1, 2)
    other_day = web.client.get("/atena/search", params={"mode": "kana", "kana": "シンジュク", "birth_date": "1985-04-02"})
    assert "検索結果 0 件" in other_day.text and "該当する方はいません" in other_day.text
    entry = web.last_audit("resident.search")
    assert entry["detail"] == {"mode": "person", "terms": ["kana", "birth_date"], "count": 0, "page": 1}
    assert "シンジュク" not in str(entry)  # the search terms are personal data: not logged


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"kana": "", "birth_date": ""}, "検索条件"),
        ({"kana": "シンジュク", "birth_date": "平成31年5月1日"}, "令和"),
        ({"kana": "シ", "birth_date": ""}, "2文字以上"),
        ({"address": "新宿区西新宿2", "birth_date": "1985-02-30"}, "存在しない日付"),
        ({"kana": "新宿", "birth_date": "S60.4.1"}, "カタカナまたはひらがな"),
        ({"kana": "シン%", "birth_date": "S60.4.1"}, "カタカナまたはひらがな"),
        ({"kana": "シン\x00", "birth_date": "S60.4.1"}, "使用できない文字"),
    ],
)
def test_bad_search_input_is_a_japanese_422(web: Web, params: dict[str, str], message: str) -> None:
    web.sign_in("clerk")
    resp = web.client.get("/atena/search", params={"mode": "kana", **params})
    assert resp.status_code == 422 and message in resp.text


def test_a_name_an_address_or_a_birth_date_alone_finds_people(web: Web) -> None:
    web.sign_in("clerk")
    kana_only = web.client.get("/atena/search", params={"mode": "person", "kana": "しんじゅく　はなこあ"})
    assert kana_only.status_code == 200 and "検索結果 16 件" in kana_only.text  # no birth date needed
    by_name = web.client.get("/atena/search", params={"mode": "person", "name": "新宿 花子1"})
    rows = re.findall(r'<td><a href="/atena/persons/(\d{15})">', by_name.text)
    assert web.people[1] in rows and web.people[0] not in rows  # 花子1, 花子10 … not 花子0
    by_address = web.client.get("/atena/search", params={"mode": "person", "address": "新宿１丁目２"})
    assert re.findall(r'<td><a href="/atena/persons/(\d{15})">', by_address.text) == [web.people[1]]
    by_birth = web.client.get("/atena/search", params={"mode": "person", "birth_date": "Ｓ６０．４．１"})
    assert "件（昭和60年4月1日生まれ）" in by_birth.text
    moved = web.client.get("/atena/search", params={"mode": "person", "address": "新宿一丁目1番1号", "history": "1"})
    assert re.findall(r'<td><a href="/atena/persons/(\d{15})">', moved.text) == [web.people[0]]
    assert "（旧）" in moved.text  # found by the address the person had before
    entry = web.last_audit("resident.search")
    assert entry["detail"]["terms"] == ["address"] and "新宿" not in str(entry)


def test_search_by_individual_number_needs_the_number_role_and_is_audited(web: Web) -> None:
    number = number_of(3)
    wide = " ".join(number[i : i + 4] for i in (0, 4, 8)).translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    csrf = web.sign_in("clerk")
    assert 'id="search-number"' in web.client.get("/atena/search").text
    found = web.client.post(
        "/atena/search/number",
        data={"csrf_token": csrf, "affair": CHILD_ALLOWANCE_AFFAIR, "number": wide},
        follow_redirects=False,
    )
    assert found.status_code == 303 and found.headers["location"] == f"/atena/persons/{web.people[3]}"
    entry = web.last_audit("resident.search")
    assert (entry["subject"], entry["affair"], entry["detail"]) == (
        web.people[3], CHILD_ALLOWANCE_AFFAIR, {"mode": "individual_number"},
    )
    assert all(number not in str(e) for e in web.audit())
    csrf = web.sign_in("viewer")
    assert 'id="search-number"' not in web.client.get("/atena/search").text
    denied = web.client.post(
        "/atena/search/number", data={"csrf_token": csrf, "affair": CHILD_ALLOWANCE_AFFAIR, "number": number}
    )
    assert denied.status_code == 403 and "個人番号で検索する権限がありません" in denied.text
    assert web.last_audit("resident.search")["outcome"] == "denied"


def test_nothing_a_user_sends_gives_a_500(web: Web) -> None:
    csrf = web.sign_in("clerk")
    probes = [
        web.client.get("/atena/search", params={"mode": "kana", "kana": "シ", "birth_date": "S60.4.1", "page": "x"}),
        web.client.get("/atena/search", params={"mode": "kana", "kana": "シ", "birth_date": "S60.4.1", "page": "-5"}),
        web.client.get("/atena/search", params={"mode": "kana", "kana": "ア" * 5000, "birth_date": "9" * 300}),
        web.client.get("/atena/search", params={"mode": "business", "system": "\x00", "business_atena_no": "1"}),
        web.client.get("/atena/search", params={"mode": "person", "address": "十十番地", "name": "\U000e0100", "kana": "ｰｰ"}),
        web.client.get("/atena/search", params={"mode": "person", "address": "-", "birth_date": "令和元年"}),
        web.client.get("/atena/search", params={"mode": "atena_no", "atena_no": "１２３ー４５"}),
        web.client.post("/atena/search/number", data={"csrf_token": csrf, "affair": CHILD_ALLOWANCE_AFFAIR, "number": "x" * 500}),
        web.client.get("/atena/persons/%00"),
        web.client.get("/atena/persons/" + "9" * 400),
        web.client.post(f"/atena/persons/{web.people[0]}/number", data={"csrf_token": csrf, "affair": "\x00"}),
        web.client.post(
            "/atena/inquiry",
            content=f"csrf_token={csrf}&as_of=%ED%A0%80&procedure_code=%FF".encode(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        ),
        web.client.post("/atena/inquiry", files={"x": ("a.txt", b"x")}, data={"csrf_token": csrf}),
        web.client.get("/audit", params={"subject": "1" * 12}),
        web.client.get("/login", params={"reason": "\x00"}),
    ]
    for resp in probes:
        assert resp.status_code < 500, (resp.request.url, resp.status_code, resp.text[:200])


def test_detail_shows_wareki_history_links_and_only_a_masked_number(web: Web) -> None:
    web.sign_in("viewer")  # may view, may not reveal
    page = web.client.get(f"/atena/persons/{web.people[0]}")
    assert page.status_code == 200
    text = page.text
    assert "昭和60年4月1日" in text and "東京都新宿区西新宿二丁目8番1号" in text
    history = text.split('id="history"')[1].split("</table>")[0]
    assert "令和6年10月1日" in history and "東京都新宿区新宿一丁目1番1号" in history  # the old address too
    assert history.count("<tr>") == 3  # header + two versions, newest first
    assert history.index("西新宿") < history.index("新宿一丁目")
    links = text.split('id="links"')[1].split("</table>")[0]
    assert CHILD_SYSTEM_NO in links and TAX_SYSTEM_NO in links
    number = number_of(0)
    assert _number_shown(text) == "********" + number[-4:]
    assert number not in text and " ".join([number[:4], number[4:8], number[8:]]) not in text
    entry = web.last_audit("resident.view")
    assert (entry["actor"], entry["subject"], entry["outcome"]) == ("viewer", web.people[0], "ok")


def test_reveal_shows_the_number_and_is_audited_without_it(web: Web) -> None:
    csrf = web.sign_in("clerk")
    page = web.client.get(f"/atena/persons/{web.people[0]}")
    assert 'id="reveal"' in page.text and CHILD_ALLOWANCE_AFFAIR in page.text
    resp = web.client.post(
        f"/atena/persons/{web.people[0]}/number",
        data={"csrf_token": csrf, "affair": CHILD_ALLOWANCE_AFFAIR},
        headers=web.htmx(),
    )
    assert resp.status_code == 200 and "<html" not in resp.text
    number = number_of(0)
    assert _number_shown(resp.text).replace(" ", "") == number
    entry = web.last_audit("individual_number.reveal")
    assert (entry["actor"], entry["subject"], entry["affair"], entry["outcome"]) == (
        "clerk", web.people[0], CHILD_ALLOWANCE_AFFAIR, "ok",
    )
    for e in web.audit():
        assert number not in str(e)
    hidden = web.client.get(f"/atena/persons/{web.people[0]}/number", headers=web.htmx())
    assert _number_shown(hidden.text).startswith("********")


def test_viewing_is_screened_by_the_abnormal_traffic_guard(web: Web) -> None:
    web.sign_in("clerk")
    web.atena.state.rt.guard_policy = GuardPolicy.from_dict({"limits": {"staff": 8}})
    statuses = [web.client.get(f"/atena/persons/{web.people[i]}").status_code for i in range(10)]
    assert statuses[:7].count(200) == 7 and 429 in statuses[7:]
    refused = [e for e in web.audit() if e["action"] == "resident.view" and e["outcome"] != "ok"]
    assert refused and refused[-1]["outcome"] in {"rate_limited", "blocked_by_rule"}


def test_inquiry_screen_takes_the_api_path_and_shows_its_refusal(web: Web) -> None:
    csrf = web.sign_in("clerk")
    form = web.client.get("/atena/inquiry")
    assert form.status_code == 200 and "JT01010000074001" in form.text and "令和" in form.text
    bad_date = web.client.post(
        "/atena/inquiry",
        data={
            "csrf_token": csrf, "procedure_code": "JT01010000074001", "info_kind_code": "TM00000000000002",
            "provider_org": "1311480000000000", "person_by": "atena_no", "atena_no": web.people[0], "as_of": "令和99年13月1日",
        },
        headers=web.htmx(),
    )
    assert bad_date.status_code == 422 and "基準日" in bad_date.text
    resp = web.client.post(
        "/atena/inquiry",
        data={
            "csrf_token": csrf, "procedure_code": "JT01010000074001", "info_kind_code": "TM00000000000002",
            "provider_org": "1311480000000000", "person_by": "business", "system": "child_allowance",
            "business_atena_no": CHILD_SYSTEM_NO, "as_of": "R6.6.1",
        },
        headers=web.htmx(),
    )
    # No chukan runs in these tests: the relay fails as the JSON API's would, logged and audited.
    assert resp.status_code >= 400 and 'data-code="' in resp.text and "<html" not in resp.text
    code = re.search(r'data-code="([a-z_]+)"', resp.text)
    assert code is not None
    entry = web.last_audit("inquiry")
    assert (entry["actor"], entry["subject"], entry["affair"], entry["outcome"]) == (
        "clerk", web.people[0], CHILD_ALLOWANCE_AFFAIR, code.group(1),
    )
    log = Base.metadata.tables["inquiry_log"]
    with web.atena.state.rt.engine.connect() as conn:
        row = conn.execute(select(log).order_by(log.c.id.desc())).mappings().first()
    assert row is not None and row["staff_id"] == "clerk" and row["atena_no"] == web.people[0]
    assert row["outcome"] == code.group(1)


RELAYED = {
    # chukan's refusal of a bad answer from the provider (issue 8): 502 with the serial
    "bad_answer": Problem(
        502, "bad_answer", "情報提供者からの回答を検証できないため、受け付けませんでした。",
        "回答の署名を検証できません。", serial="20240601000000000042", reason_code="bad_signature",
    ),
    # refusals whose codes are longer than 20 characters
    "provider_pseudonym_missing": Problem(
        404, "provider_pseudonym_missing", "符号エラー（機関別符号未発行）", serial="20240601000000000043",
    ),
    "pseudonym_not_acquired": Problem(409, "pseudonym_not_acquired", "符号が未取得です。"),
}


@pytest.mark.parametrize("code", list(RELAYED))
def test_inquiry_screen_shows_a_relayed_refusal_with_its_serial(web: Web, code: str) -> None:
    refusal = RELAYED[code]

    async def chukan(*_: Any, **__: Any) -> Any:
        raise refusal

    web.atena.state.rt.peer.call = chukan
    csrf = web.sign_in("clerk")
    resp = web.client.post(
        "/atena/inquiry",
        data={
            "csrf_token": csrf, "procedure_code": "JT01010000074001", "info_kind_code": "TM00000000000002",
            "provider_org": "1311480000000000", "person_by": "atena_no", "atena_no": web.people[0], "as_of": "R6.6.1",
        },
        headers=web.htmx(),
    )
    assert resp.status_code == refusal.status, resp.text
    assert f'data-code="{code}"' in resp.text and refusal.title in resp.text
    serial = refusal.extra.get("serial")
    if serial:
        assert f'処理通番: <span id="error-serial">{serial}</span>' in resp.text
    else:
        assert "error-serial" not in resp.text
    log = Base.metadata.tables["inquiry_log"]
    with web.atena.state.rt.engine.connect() as conn:
        row = conn.execute(select(log).order_by(log.c.id.desc())).mappings().first()
    assert row is not None and (row["outcome"], row["serial"]) == (code, serial)
    entry = web.last_audit("inquiry")
    assert (entry["outcome"], entry["ref"]) == (code, serial)


def test_the_person_as_of_a_day_typed_in_wareki_or_gregorian(web: Web) -> None:
    """The person's page shows where they lived on a day and in which status (resident(0)
    moved within the ward on 2024-10-01); a bad day is a Japanese 422; before the first
    record there is none."""
    web.sign_in("clerk")
    page = f"/atena/persons/{web.people[0]}"
    before = web.client.get(page, params={"on": "令和6年9月30日"})
    assert before.status_code == 200
    card = before.text.split('id="as-of"', 1)[1].split("</section>", 1)[0]
    assert "新宿一丁目1番1号" in card and "西新宿" not in card and "令和6年9月30日" in card
    after = web.client.get(page, params={"on": "２０２４－１０－０１"})
    card = after.text.split('id="as-of"', 1)[1].split("</section>", 1)[0]
    assert "西新宿二丁目8番1号" in card and "転居" in card
    unborn = web.client.get(page, params={"on": "S55.1.1"})
    assert "この日にはまだ記録がありません。" in unborn.text
    bad = web.client.get(page, params={"on": "令和6年13月1日"})
    assert bad.status_code == 422 and "基準日:" in bad.text
