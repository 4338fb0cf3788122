"""Numbering as 共通機能標準仕様書 §2.3–2.4 describe it, through atena's JSON API:

- 団体内統合宛名番号 (0320001 → 0320004 → 0320002 → 0320008): a new number only if no
  person holds the individual number; otherwise the caller's number is linked;
- 住登外者 (0310007 → 0310005 → 0310004 → 0310001): candidates first (exact and partial
  matches on 基本4情報), then a number only with the acknowledgement of the candidates
  shown; a stale or forged acknowledgement is refused and writes nothing.

Every answer is in the caller's own numbers: no 統合宛名番号 in any body. On SQLite and
PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from sqlalchemy import select

from renkei.atena.models import BusinessLink, Person
from renkei.core import ids
from renkei.core.wire import contract
from renkei.core.wire.client import PeerUnavailable
from renkei.core.wire.messaging import Message
from tests.api.fed import Federation
from tests.atena.kit import CHILD_ALLOWANCE_AFFAIR, AtenaKit, open_atena
from tests.conftest import BACKENDS, create_pg_database, drop_pg_database


@pytest.fixture(scope="module", params=BACKENDS)
def atena(request: pytest.FixtureRequest, fed: Federation) -> Iterator[AtenaKit]:
    url = create_pg_database() if request.param == "postgresql" else None
    try:
        with open_atena(fed, database_url=url) as a:
            assert a.app.state.rt.engine.dialect.name == request.param
            yield a
    finally:
        if url is not None:
            drop_pg_database(url)


def basic4(**over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "family_name": "戸山",
        "given_name": "桜子",
        "family_kana": "トヤマ",
        "given_kana": "サクラコ",
        "birth_date": "1972-03-15",
        "sex": "2",
        "postal_code": "1690072",
        "address": "東京都新宿区大久保三丁目8番1号",
        "lg_code": "131041",
    }
    rec.update(over)
    return rec


def number(n: int) -> str:
    return ids.make_individual_number(f"{70_000_000_000 + n:011d}")


def every_atena_no(a: AtenaKit) -> set[str]:
    with a.app.state.rt.sessions() as s:
        return set(s.scalars(select(Person.atena_no)))


def linked(a: AtenaKit, system: str, business_no: str) -> str | None:
    with a.app.state.rt.sessions() as s:
        return s.scalar(
            select(BusinessLink.atena_no).where(
                BusinessLink.system == system, BusinessLink.business_atena_no == business_no
            )
        )


def no_atena_no_in(a: AtenaKit, *texts: str) -> None:
    every = every_atena_no(a)
    assert not {n for n in every for t in texts if n in t}


def test_a_new_number_only_if_nobody_holds_the_individual_number(atena: AtenaKit) -> None:
    resident = {**basic4(given_name="一郎", given_kana="イチロウ", sex="1", birth_date="1950-01-01"), "individual_number": number(1),
                "business_numbers": {"jumin01": ids.make_atena_no(610_001)}}  # fmt: skip
    r = atena.post("/v1/residents", {"persons": [resident]})
    assert r.status_code == 200, r.text
    assert r.json()["numbered"] == 1
    before = atena.counts()
    # Another business system asks for the same person (0320001) with its own number.
    ask = {**basic4(given_name="一郎", given_kana="イチロウ", sex="1", birth_date="1950-01-01"), "individual_number": number(1),
           "system": "welfare", "business_atena_no": ids.make_atena_no(520_001)}  # fmt: skip
    r = atena.post("/v1/numbering", ask)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["numbered"], out["linked"], out["unchanged"]) == (0, 1, 0)
    assert out["results"] == [{"business_numbers": {"welfare": ask["business_atena_no"]}, "outcome": "linked",
                               "outcome_label": "既存の宛名に紐付け・更新"}]  # fmt: skip
    assert out["acquisition"] == {"requested": 0, "relayed": 0, "problems": {}, "deferred": None}
    after = atena.counts()
    assert after["persons"] == before["persons"]  # 0320002 did not issue a number
    assert linked(atena, "welfare", ask["business_atena_no"]) == linked(atena, "jumin01", ids.make_atena_no(610_001))
    # The same request again adds nothing.
    again = atena.post("/v1/numbering", ask)
    assert again.json()["unchanged"] == 1
    # A person nobody holds: a new number, a 住登外者, acquisition started (deferred here).
    new = {**ask, "individual_number": number(2), "business_atena_no": ids.make_atena_no(520_002),
           "given_name": "二郎", "given_kana": "ジロウ"}  # fmt: skip
    r2 = atena.post("/v1/numbering", new)
    assert r2.status_code == 200, r2.text
    assert r2.json()["numbered"] == 1 and r2.json()["acquisition"]["deferred"].startswith("peer_unavailable")
    with atena.app.state.rt.sessions() as s:
        person = s.get(Person, linked(atena, "welfare", new["business_atena_no"]))
        assert person is not None and person.residence == "non_resident" and person.individual_number_index
    no_atena_no_in(atena, r.text, again.text, r2.text)


def test_numbering_refuses_bad_input_and_writes_nothing(atena: AtenaKit) -> None:
    ask = {**basic4(birth_date="1951-01-01"), "individual_number": "123", "system": "welfare", "business_atena_no": ids.make_atena_no(520_009)}
    assert atena.refused("/v1/numbering", ask, 422, "invalid_individual_number")["index"] == 0
    ask["individual_number"] = number(9)
    atena.refused("/v1/numbering", {**ask, "sex": "x"}, 422, "invalid_sex")


def test_non_resident_registered_only_after_the_candidates_were_seen(atena: AtenaKit) -> None:
    query = {**basic4(), "system": "welfare"}
    # A resident with the same 基本4情報 is held: an exact candidate.
    held = {**basic4(), "individual_number": number(10), "business_numbers": {"jumin01": ids.make_atena_no(610_010)}}
    assert atena.post("/v1/residents", {"persons": [held]}).status_code == 200
    c = atena.post("/v1/non-residents/candidates", query)
    assert c.status_code == 200, c.text
    shown = c.json()
    assert [(x["ref"], x["match"], x["business_atena_no"]) for x in shown["candidates"]] == [(1, "exact", None)]
    assert shown["candidates"][0]["residence_label"] == "住民"
    ack = shown["acknowledgement"]
    mine = ids.make_atena_no(530_001)
    register = {**query, "business_atena_no": mine, "acknowledgement": ack, "choice": "new"}
    # Without the acknowledgement, or with a forged one: refused, nothing written.
    atena.refused("/v1/non-residents", {**register, "acknowledgement": ""}, 422, "candidates_not_acknowledged")
    atena.refused("/v1/non-residents", {**register, "acknowledgement": "0" * 64}, 409, "candidates_changed")
    atena.refused("/v1/non-residents", {**register, "choice": "2"}, 422, "bad_candidate")
    # Seen and confirmed: staff decided this is somebody else (a new 住登外者).
    before = atena.counts()
    r = atena.post("/v1/non-residents", register)
    assert r.status_code == 200, r.text
    assert r.json() == {"system": "welfare", "business_atena_no": mine, "outcome": "numbered",
                        "outcome_label": "新規付番", "candidates": 1}  # fmt: skip
    assert atena.counts()["persons"] == before["persons"] + 1
    with atena.app.state.rt.sessions() as s:
        person = s.get(Person, linked(atena, "welfare", mine))
        assert person is not None and person.residence == "non_resident" and person.individual_number_enc is None
    # The same acknowledgement again: the candidates changed (the new person is one now).
    atena.refused(
        "/v1/non-residents", {**register, "business_atena_no": ids.make_atena_no(530_002)}, 409, "candidates_changed"
    )
    # Searched again: both, the caller's own number shown for the one it holds.
    again = atena.post("/v1/non-residents/candidates", query).json()
    assert sorted(x["business_atena_no"] or "-" for x in again["candidates"]) == ["-", mine]
    ref = next(x["ref"] for x in again["candidates"] if x["business_atena_no"] is None)
    other = ids.make_atena_no(530_003)
    link = atena.post(
        "/v1/non-residents",
        {**query, "business_atena_no": other, "acknowledgement": again["acknowledgement"], "choice": str(ref)},
    )
    assert link.status_code == 200 and link.json()["outcome"] == "linked", link.text
    assert linked(atena, "welfare", other) == linked(atena, "jumin01", ids.make_atena_no(610_010))
    entries = [(e["action"], e["outcome"]) for e in atena.audit()[-4:]]
    assert ("non_resident.register", "ok") in entries and ("non_resident.search", "ok") in entries
    no_atena_no_in(atena, c.text, r.text, link.text, str(again))


def test_no_candidates_is_confirmed_not_assumed(atena: AtenaKit) -> None:
    query = {**basic4(family_name="落合", given_name="誠", family_kana="オチアイ", given_kana="マコト",
                      birth_date="1990-01-01", sex="1"), "system": "welfare"}  # fmt: skip
    shown = atena.post("/v1/non-residents/candidates", query).json()
    assert shown["candidates"] == [] and len(shown["acknowledgement"]) == 64
    r = atena.post(
        "/v1/non-residents",
        {**query, "business_atena_no": ids.make_atena_no(530_010), "acknowledgement": shown["acknowledgement"],
         "choice": "new"},
    )  # fmt: skip
    assert r.status_code == 200 and r.json()["outcome"] == "numbered", r.text
    # A query that differs (another birth date) cannot reuse the acknowledgement.
    moved = {**query, "birth_date": "1990-01-02", "business_atena_no": ids.make_atena_no(530_011),
             "acknowledgement": shown["acknowledgement"], "choice": "new"}  # fmt: skip
    atena.refused("/v1/non-residents", moved, 409, "candidates_changed")


def test_partial_matches_by_name_and_by_kana_prefix(atena: AtenaKit) -> None:
    held = {**basic4(family_name="高田", given_name="馬場子", family_kana="タカダ", given_kana="ババコ",
                     birth_date="1960-06-06"),
            "individual_number": number(20), "business_numbers": {}}  # fmt: skip
    assert atena.post("/v1/residents", {"persons": [held]}).status_code == 200
    # Same birth date, kana typed in hiragana and the kanji spelt otherwise: by kana prefix.
    by_kana = {**basic4(family_name="髙田", given_name="ババ子", family_kana="たかだ", given_kana="ばばこ",
                        birth_date="1960-06-06"), "system": "welfare"}  # fmt: skip
    found = atena.post("/v1/non-residents/candidates", by_kana).json()["candidates"]
    assert [x["match"] for x in found] == ["partial_kana"]
    # Same name (full-width space typed between), another birth date: by name.
    by_name = {**basic4(family_name="高田　", given_name="馬場子", birth_date="1961-01-01"), "system": "welfare"}
    found = atena.post("/v1/non-residents/candidates", by_name).json()["candidates"]
    assert [x["match"] for x in found] == ["partial_name"]
    atena.refused("/v1/non-residents/candidates", {**by_name, "sex": "7"}, 422, "invalid_sex")


# --- individual numbers for non-residents through J-LIS's identity search ------------------------


@dataclass
class FakeJlis:
    """J-LIS (and any other peer) as atena sees it: every message recorded, parsed with the
    contract's request model, answered by ``answer``."""

    own_org: str
    answer: dict[str, Any] = field(default_factory=dict)
    sent: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    async def __call__(self, url: str, aud: str, typ: str, body: dict[str, Any], **_: Any) -> Message:
        self.sent.append((url, typ, body))
        mt = contract.message_type(typ)
        assert mt is not None
        assert contract.parse(mt.request, body).dump() == body
        if typ != "identity.search":
            raise PeerUnavailable(url, "not in this test")
        return Message("m" * 22, aud, self.own_org, mt.reply_typ, 0, self.answer, node=mt.receiver)


def _non_resident(atena: AtenaKit, business_no: str, **over: Any) -> dict[str, Any]:
    query = {**basic4(**over), "system": "welfare"}
    ack = atena.post("/v1/non-residents/candidates", query).json()["acknowledgement"]
    r = atena.post("/v1/non-residents", {**query, "business_atena_no": business_no, "acknowledgement": ack,
                                         "choice": "new"})  # fmt: skip
    assert r.status_code == 200 and r.json()["outcome"] == "numbered", r.text
    return query


def test_individual_number_of_a_non_resident_from_jlis(
    atena: AtenaKit, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rt = atena.app.state.rt
    jlis = FakeJlis(rt.org_code)
    monkeypatch.setattr(rt.peer, "call", jlis)
    mine = ids.make_atena_no(540_001)
    _non_resident(atena, mine, family_name="柏木", given_name="律", family_kana="カシワギ", given_kana="リツ",
                  birth_date="1979-07-07")  # fmt: skip
    found_no = number(30)
    jlis.answer = {"status": "found", "matches": 1, "individual_number": found_no, "message": "該当する方が1名見つかりました。"}
    ask = {"system": "welfare", "business_atena_no": mine, "affair_code": CHILD_ALLOWANCE_AFFAIR}
    r = atena.post("/v1/non-residents/individual-number", ask)
    assert r.status_code == 200, r.text
    assert r.json() == {"system": "welfare", "business_atena_no": mine, "status": "found",
                        "message": "該当する方が1名見つかりました。", "individual_number": found_no}  # fmt: skip
    # J-LIS was asked with the 基本4情報 and the affair — never the 統合宛名番号.
    ((url, typ, body),) = jlis.sent
    assert typ == "identity.search" and url.endswith("/v1/identities/search")
    assert body == {"affair_code": CHILD_ALLOWANCE_AFFAIR, "family_name": "柏木", "given_name": "律",
                    "birth_date": "1979-07-07", "sex": "2", "address": basic4()["address"]}  # fmt: skip
    held = linked(atena, "welfare", mine)
    assert held is not None and held not in str(body)
    with rt.sessions() as s:
        person = s.get(Person, held)
        assert person is not None and person.individual_number_index == atena.app.state.cipher.blind_index(found_no)
    entry = atena.audit()[-1]
    assert (entry["action"], entry["outcome"], entry["subject"], entry["affair"]) == (
        "individual_number.search", "found", held, CHILD_ALLOWANCE_AFFAIR,
    )
    # Asked again: the number is held, J-LIS is not asked.
    again = atena.post("/v1/non-residents/individual-number", ask)
    assert again.json()["status"] == "already_held" and again.json()["individual_number"] is None
    assert len(jlis.sent) == 1
    # Trust boundary: the number went to no other peer, into no audit entry and no log line.
    assert all(typ == "identity.search" for _u, typ, _b in jlis.sent)
    assert found_no not in str(atena.audit())
    assert found_no not in capsys.readouterr().out


def test_no_guess_and_only_for_number_use_affairs(atena: AtenaKit, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = atena.app.state.rt
    jlis = FakeJlis(rt.org_code)
    monkeypatch.setattr(rt.peer, "call", jlis)
    mine = ids.make_atena_no(540_002)
    _non_resident(atena, mine, family_name="神楽", given_name="坂", family_kana="カグラ", given_kana="サカ",
                  birth_date="1981-02-02")  # fmt: skip
    ask = {"system": "welfare", "business_atena_no": mine, "affair_code": CHILD_ALLOWANCE_AFFAIR}
    for status, matches, message in (("not_found", 0, "該当する本人確認情報がありません。"),
                                     ("multiple", 2, "基本4情報に該当する方が2名います。")):  # fmt: skip
        jlis.answer = {"status": status, "matches": matches, "individual_number": None, "message": message}
        before = atena.counts()
        r = atena.post("/v1/non-residents/individual-number", ask)
        assert r.json() == {"system": "welfare", "business_atena_no": mine, "status": status, "message": message,
                            "individual_number": None}  # fmt: skip
        assert atena.counts()["persons"] == before["persons"]
        assert atena.audit()[-1]["outcome"] == status
    with rt.sessions() as s:
        assert s.get(Person, linked(atena, "welfare", mine)).individual_number_index is None  # type: ignore[union-attr]
    # A number another person holds: not recorded, staff must check.
    held_by = {**basic4(birth_date="1940-01-01"), "individual_number": number(31), "business_numbers": {}}
    assert atena.post("/v1/residents", {"persons": [held_by]}).status_code == 200
    jlis.answer = {"status": "found", "matches": 1, "individual_number": number(31), "message": "見つかりました。"}
    r = atena.post("/v1/non-residents/individual-number", ask)
    assert r.json()["status"] == "held_by_other" and r.json()["individual_number"] is None
    # Not a 番号利用事務 (or not an affair at all): refused before J-LIS is asked.
    sent = len(jlis.sent)
    catalogue = atena.app.state.catalogue
    monkeypatch.setitem(
        catalogue.affairs, CHILD_ALLOWANCE_AFFAIR, replace(catalogue.affairs[CHILD_ALLOWANCE_AFFAIR], number_use=False)
    )
    refused = atena.refused("/v1/non-residents/individual-number", ask, 403, "affair_not_permitted")
    assert "番号利用事務ではない" in refused["title"]
    atena.refused(
        "/v1/non-residents/individual-number", {**ask, "affair_code": "JM01999999999999"}, 403, "affair_not_permitted"
    )
    assert len(jlis.sent) == sent
    # Named by a number the caller does not hold: 404 in its own words.
    atena.refused(
        "/v1/non-residents/individual-number",
        {**ask, "business_atena_no": ids.make_atena_no(549_999)},
        404,
        "unknown_business_atena_no",
    )


def test_a_bulk_load_may_leave_acquisition_to_the_command(atena: AtenaKit) -> None:
    rec = {**basic4(birth_date="1952-02-02"), "individual_number": number(40), "business_numbers": {}}
    r = atena.post("/v1/residents", {"persons": [rec], "start_acquisition": False})
    assert r.status_code == 200, r.text
    assert r.json()["numbered"] == 1
    assert r.json()["acquisition"] == {"requested": 0, "relayed": 0, "problems": {}, "deferred": "start_acquisition=false"}
    assert atena.audit()[-1]["action"] == "residents.register"  # no acquisition was attempted
