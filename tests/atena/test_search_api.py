"""GET /v1/addressees: the staff search as JSON, with the screen's rules (role 宛名:参照,
criteria alone or combined, audited without the terms, Japanese problems)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from renkei.core import ids
from tests.api.fed import Federation, assert_problem, unchanged
from tests.atena.kit import AtenaKit as Atena
from tests.atena.kit import open_atena


def person(n: int, **over: Any) -> dict[str, Any]:
    return {
        "individual_number": ids.make_individual_number(f"{52_000_000_000 + n:011d}"),
        "family_name": "髙橋", "given_name": f"一郎{n}", "family_kana": "タカハシ", "given_kana": "イチロウ",
        "birth_date": "1975-06-30", "sex": "1", "postal_code": "1600023",
        "address": f"東京都新宿区西新宿二丁目{n + 1}番1号", "lg_code": "131041", "business_numbers": {},
    } | over  # fmt: skip


@pytest.fixture(scope="module")
def atena(fed: Federation) -> Iterator[Atena]:
    with open_atena(fed) as a:
        resp = a.post("/v1/residents", {"persons": [person(n) for n in range(3)]})
        assert resp.status_code == 200, resp.text
        yield a


def test_staff_search_by_name_birth_date_and_address(atena: Atena) -> None:
    headers = atena.sign_in("S0007")
    resp = atena.client.get("/v1/addressees", params={"name": "高橋", "birth_date": "昭和50年6月30日"}, headers=headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["total"], body["capped"], body["pages"]) == (3, False, 1)
    assert {i["given_name"] for i in body["items"]} == {"一郎0", "一郎1", "一郎2"}
    assert body["items"][0]["birth_date_wareki"] == "昭和50年6月30日"
    one = atena.client.get("/v1/addressees", params={"kana": "たかはし", "address": "西新宿２－２"}, headers=headers)
    assert [i["given_name"] for i in one.json()["items"]] == ["一郎1"]
    entry = [e for e in atena.audit() if e["action"] == "resident.search"][-1]
    assert entry["outcome"] == "ok" and entry["detail"]["terms"] == ["kana", "address"]
    assert "タカハシ" not in str(entry) and "西新宿" not in str(entry)


def test_refusals_are_japanese_problems_that_change_nothing(atena: Atena) -> None:
    no_role = atena.sign_in("S0003")
    denied = atena.client.get("/v1/addressees", params={"kana": "タカハシ"}, headers=no_role)
    assert_problem(denied, 403, "role_required")
    headers = atena.sign_in("S0007")
    before = atena.counts()
    for params, code in [
        ({}, "missing_criteria"),
        ({"birth_date": "令和1年4月30日"}, "bad_date"),
        ({"kana": "高橋"}, "bad_kana"),
        ({"kana": "タカ\x01"}, "invalid_characters"),
    ]:
        problem = assert_problem(atena.client.get("/v1/addressees", params=params, headers=headers), 422, code)
        assert problem["title"]
    after = atena.counts()
    # only audit entries (and the guard's counters) were written by the refusals
    unchanged(
        {k: v for k, v in before.items() if not k.startswith(("audit", "guard", "outbox"))},
        {k: v for k, v in after.items() if not k.startswith(("audit", "guard", "outbox"))},
    )
