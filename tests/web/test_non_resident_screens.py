"""Staff register a 住登外者 only after seeing the candidates (共通機能標準仕様書 §2.3.2):
the search shows exact and partial matches with an acknowledgement, the registration
needs it and is refused (nothing written) when the candidates changed; a non-resident's
individual number comes from J-LIS's identity search, for a number-use affair, audited."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from renkei.atena.models import Person
from renkei.core import ids
from renkei.core.wire import contract
from renkei.core.wire.messaging import Message
from tests.atena.kit import CHILD_ALLOWANCE_AFFAIR
from tests.web.kit import Web

FORM = {
    "family_name": "新宿",
    "given_name": "花子0",
    "family_kana": "シンジュク",
    "given_kana": "ハナコ",
    "birth_date": "昭和60年4月1日",
    "sex": "2",
    "postal_code": "1600023",
    "address": "東京都新宿区西新宿二丁目8番1号",
    "lg_code": "131041",
}


def _hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, name
    return match.group(1)


def _register_form(page: str, csrf: str, **over: str) -> dict[str, str]:
    form = {k: _hidden(page, k) for k in (*FORM, "acknowledgement")}
    return {**form, "csrf_token": csrf, "choice": "new", "system": "", "business_atena_no": "", **over}


def test_candidates_first_then_a_number(web: Web) -> None:
    csrf = web.sign_in("registrar")
    assert "住登外者の登録" in web.client.get("/").text
    page = web.client.post("/atena/non-residents/candidates", data={**FORM, "csrf_token": csrf})
    assert page.status_code == 200, page.text
    # resident 0 (moved to this address) is the exact match; the other シンジュク born that day partial.
    assert "完全一致" in page.text and "部分一致（カナ氏名の前方・生年月日）" in page.text
    assert f'href="/atena/persons/{web.people[0]}"' in page.text
    assert web.last_audit("non_resident.search")["detail"]["count"] >= 2
    before = web.counts()
    # Without the acknowledgement, or with the candidates changed since: nothing written.
    for form, code in (
        ({**_register_form(page.text, csrf), "acknowledgement": ""}, "candidates_not_acknowledged"),
        ({**_register_form(page.text, csrf), "acknowledgement": "f" * 64}, "candidates_changed"),
        (_register_form(page.text, csrf, choice="99"), "bad_candidate"),
    ):
        refused = web.client.post("/atena/non-residents/register", data=form)
        assert refused.status_code in {409, 422} and f"（コード: {code}）" in refused.text
        web.unchanged_since(before)
        assert web.last_audit("non_resident.register")["outcome"] == code
    # Seen, and decided to be somebody else: a new 住登外者 with a welfare number linked.
    welfare = ids.make_atena_no(560_001)
    done = web.client.post(
        "/atena/non-residents/register",
        data=_register_form(page.text, csrf, system="welfare", business_atena_no=welfare),
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    new_no = done.headers["location"].rsplit("/", 1)[1]
    assert new_no not in web.people
    with web.atena.state.rt.sessions() as s:
        person = s.get(Person, new_no)
        assert person is not None and person.residence == "non_resident" and person.individual_number_enc is None
    detail = web.client.get(f"/atena/persons/{new_no}")
    assert "住登外者" in detail.text and welfare in detail.text and 'id="identity-search"' in detail.text
    # The same acknowledgement again: refused, the new person is a candidate now.
    again = web.client.post("/atena/non-residents/register", data=_register_form(page.text, csrf))
    assert again.status_code == 409 and "candidates_changed" in again.text


def test_staff_without_the_register_role_are_refused(web: Web) -> None:
    csrf = web.sign_in("clerk")
    before = web.counts()
    resp = web.client.post("/atena/non-residents/candidates", data={**FORM, "csrf_token": csrf})
    assert resp.status_code == 403
    web.unchanged_since(before)


def test_a_wareki_date_that_does_not_exist_is_told_in_japanese(web: Web) -> None:
    csrf = web.sign_in("registrar")
    resp = web.client.post("/atena/non-residents/candidates", data={**FORM, "birth_date": "昭和65年1月1日",
                                                                    "csrf_token": csrf})  # fmt: skip
    assert resp.status_code == 422 and "生年月日" in resp.text


def test_identity_search_from_the_person_page(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    csrf = web.sign_in("registrar")
    page = web.client.post(
        "/atena/non-residents/candidates",
        data={**FORM, "family_name": "大久保", "family_kana": "オオクボ", "birth_date": "1977-07-07",
              "csrf_token": csrf},
    )  # fmt: skip
    assert "候補者はいません" in page.text
    done = web.client.post("/atena/non-residents/register", data=_register_form(page.text, csrf),
                           follow_redirects=False)  # fmt: skip
    atena_no = done.headers["location"].rsplit("/", 1)[1]
    found = ids.make_individual_number("31234567890")
    sent: list[tuple[str, dict[str, Any]]] = []
    rt = web.atena.state.rt

    async def jlis(url: str, aud: str, typ: str, body: dict[str, Any], **_: Any) -> Message:
        sent.append((typ, body))
        mt = contract.message_type(typ)
        assert mt is not None
        reply = {"status": "found", "matches": 1, "individual_number": found, "message": "該当する方が1名見つかりました。"}
        return Message("m" * 22, aud, rt.org_code, mt.reply_typ, 0, reply, node=mt.receiver)

    monkeypatch.setattr(rt.peer, "call", jlis)
    # A staff member who may not see numbers for the affair: refused, J-LIS not asked.
    viewer_csrf = web.sign_in("tax")
    denied = web.client.post(f"/atena/persons/{atena_no}/identity-search",
                             data={"csrf_token": viewer_csrf, "affair": CHILD_ALLOWANCE_AFFAIR})  # fmt: skip
    assert denied.status_code == 403 and sent == []
    csrf = web.sign_in("registrar")
    resp = web.client.post(f"/atena/persons/{atena_no}/identity-search",
                           data={"csrf_token": csrf, "affair": CHILD_ALLOWANCE_AFFAIR})  # fmt: skip
    assert resp.status_code == 200, resp.text
    assert 'data-status="found"' in resp.text and found not in resp.text and "********" in resp.text
    assert [t for t, _ in sent] == ["identity.search"] and atena_no not in str(sent)
    entry = web.last_audit("individual_number.search")
    assert (entry["outcome"], entry["subject"], entry["affair"]) == ("found", atena_no, CHILD_ALLOWANCE_AFFAIR)
    assert found not in str(web.audit())
    with web.atena.state.rt.sessions() as s:
        assert s.scalar(select(Person.individual_number_index).where(Person.atena_no == atena_no))
