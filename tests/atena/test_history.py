"""基本4情報 history in atena: never overwritten, current by effective date, as-of reads,
households — on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from renkei.atena import history, search, service
from renkei.atena.models import BasicFour, HouseholdMember
from renkei.core import ids
from renkei.core.crypto.field import FieldCipher
from renkei.core.errors import Problem
from tests.import_kit import person

CIPHER = FieldCipher.generate()
NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
HOUSEHOLD = ids.make_atena_no(900_001)
OTHER_HOUSEHOLD = ids.make_atena_no(900_002)


@pytest.fixture
def session(node_db: Callable[[str], Any]) -> Iterator[Session]:
    s = node_db("atena")()
    try:
        yield s
    finally:
        s.rollback()
        s.close()


def _one(rec: dict[str, Any], **changes: Any) -> service.ResidentInput:
    return replace(service.parse_resident(rec), **changes)


def _register(s: Session, *items: service.ResidentInput, source: str = "test") -> service.Registration:
    done = service.register_parsed(s, CIPHER, list(items), NOW, source=source)
    s.flush()
    return done


def _versions(s: Session, atena_no: str) -> list[tuple[str, str, date, str]]:
    return [
        (r.change_kind, r.address, r.effective_on, r.status)
        for r in s.scalars(select(BasicFour).where(BasicFour.atena_no == atena_no).order_by(BasicFour.id))
    ]


def test_the_same_facts_twice_add_nothing_whatever_the_date(session: Session) -> None:
    rec = person(1)
    first = _register(session, service.parse_resident(rec))
    assert (first.persons, first.versions, first.outcomes) == (1, 1, ("applied",))
    atena_no = first.atena_nos[0]
    # Again as it was, again without a date (today), again with a later date: nothing.
    again = _register(session, service.parse_resident(rec))
    undated = _register(session, _one(rec, effective_on=None))
    later = _register(session, _one(rec, effective_on=date(2024, 5, 1)))
    for done in (again, undated, later):
        assert (done.persons, done.versions, done.changed, done.outcomes) == (0, 0, 0, ("no_change",))
    assert _versions(session, atena_no) == [("新規", rec["address"], date(2020, 4, 1), "resident")]
    row = session.scalars(select(BasicFour).where(BasicFour.atena_no == atena_no)).one()
    assert row.source == "test"


def test_reasons_are_derived_or_taken_from_the_record(session: Session) -> None:
    rec = person(2)
    atena_no = _register(session, service.parse_resident(rec)).atena_nos[0]
    _register(session, _one(rec, address="東京都新宿区西新宿二丁目8番", effective_on=date(2021, 1, 1)))
    _register(session, _one(rec, address="東京都新宿区西新宿二丁目8番", family_name="改姓", effective_on=date(2022, 1, 1)))
    _register(session, _one(rec, address="東京都新宿区西新宿二丁目8番", family_name="改姓", sex="2" if rec["sex"] == "1" else "1",
                            effective_on=date(2023, 1, 1)))  # fmt: skip
    _register(session, _one(rec, address="東京都新宿区西新宿二丁目9番", family_name="改姓", sex="2" if rec["sex"] == "1" else "1",
                            effective_on=date(2023, 2, 1), reason="職権修正"))  # fmt: skip
    assert [k for k, *_ in _versions(session, atena_no)] == ["新規", "転居", "氏名変更", "職権修正", "職権修正"]


def test_a_late_older_change_becomes_history_not_current(session: Session) -> None:
    rec = person(3)
    atena_no = _register(session, service.parse_resident(rec)).atena_nos[0]  # 2020-04-01
    moved = _register(session, _one(rec, address="新住所", effective_on=date(2024, 6, 1), reason="転居"))
    assert moved.outcomes == ("applied",)
    late = _register(session, _one(rec, address="中間の住所", effective_on=date(2022, 3, 1), reason="転居"))
    assert late.outcomes == ("history",) and late.versions == 1
    # The newest row is the late one, yet the current version is the one of 2024.
    newest = session.scalars(select(BasicFour).where(BasicFour.atena_no == atena_no).order_by(BasicFour.id.desc())).first()
    assert newest is not None and newest.address == "中間の住所"
    detail = service.resident_detail(session, atena_no)
    assert detail.current.address == "新住所"
    assert [v.address for v in detail.history] == ["新住所", "中間の住所", rec["address"]]
    assert [v.address for v in history.history(session, atena_no)] == ["新住所", "中間の住所", rec["address"]]
    assert history.current_rows(session, [atena_no])[atena_no].address == "新住所"
    # As of each day: where did the person live?
    for day, address in [
        (date(2020, 4, 1), rec["address"]),
        (date(2022, 2, 28), rec["address"]),
        (date(2022, 3, 1), "中間の住所"),
        (date(2024, 5, 31), "中間の住所"),
        (date(2024, 6, 1), "新住所"),
        (date(2030, 1, 1), "新住所"),
    ]:
        got = history.as_of(session, atena_no, day)
        assert got.version is not None and got.version.address == address, day
        assert got.status == "resident"
    before = history.as_of(session, atena_no, date(2019, 1, 1))
    assert before.version is None and before.status == "unregistered"
    # The same late change again adds nothing (an identical version of that day exists).
    assert _register(session, _one(rec, address="中間の住所", effective_on=date(2022, 3, 1))).versions == 0
    # The kana search and the export see the current version only.
    page = search.search(session, search.parse_criteria({"kana": rec["family_kana"], "birth_date": rec["birth_date"]}))
    assert page.total == 1 and page.rows[0].address == "新住所"
    out = io.StringIO()
    assert service.write_addressees_csv(session, {}, out) == 1 and "新住所" in out.getvalue()
    with pytest.raises(Problem) as exc:
        history.as_of(session, ids.make_atena_no(424242), date(2024, 1, 1))
    assert exc.value.code == "unknown_atena_no"


def test_ties_on_one_day_go_by_recorded_order(session: Session) -> None:
    rec = person(4)
    atena_no = _register(session, service.parse_resident(rec)).atena_nos[0]
    day = date(2024, 1, 10)
    _register(session, _one(rec, address="先の住所", effective_on=day))
    _register(session, _one(rec, address="後の住所", effective_on=day))
    assert history.as_of(session, atena_no, day).version.address == "後の住所"  # type: ignore[union-attr]
    assert service.resident_detail(session, atena_no).current.address == "後の住所"


def test_a_former_resident_stays_searchable_with_status_former(session: Session) -> None:
    rec = person(5)
    atena_no = _register(session, service.parse_resident(rec)).atena_nos[0]
    left = _register(session, _one(rec, effective_on=date(2024, 8, 1), reason="転出", status="former",
                                   household=(None, "")))  # fmt: skip
    # Out of any household from then on (recorded even though none was known before).
    assert left.versions == 1 and left.memberships == 1
    page = search.search(session, search.parse_criteria({"kana": rec["family_kana"], "birth_date": rec["birth_date"]}))
    assert page.total == 1 and page.rows[0].residence == "former"
    assert history.STATUS_LABELS[page.rows[0].residence].startswith("除票")
    assert history.as_of(session, atena_no, date(2024, 7, 31)).status == "resident"
    assert history.as_of(session, atena_no, date(2024, 8, 1)).status == "former"
    # A later registration without a status keeps the person former (the status in force).
    again = _register(session, _one(rec, address="転出先の住所", effective_on=date(2024, 9, 1)))
    assert again.versions == 1 and history.as_of(session, atena_no, date(2024, 9, 1)).status == "former"


def test_households_with_head_relationship_and_history(session: Session) -> None:
    head, wife, child = person(10), person(11), person(12)
    done = _register(
        session,
        _one(head, household=(HOUSEHOLD, "世帯主")),
        _one(wife, household=(HOUSEHOLD, "妻")),
        _one(child, household=(HOUSEHOLD, "子"), effective_on=date(2021, 5, 5), reason="出生"),
    )
    assert done.memberships == 3
    a_head, a_wife, a_child = done.atena_nos
    on = history.household_on(session, HOUSEHOLD, date(2022, 1, 1))
    assert on.head == a_head and {(m.atena_no, m.relationship) for m in on.members} == {
        (a_head, "世帯主"), (a_wife, "妻"), (a_child, "子")
    }
    assert [m.atena_no for m in history.household_on(session, HOUSEHOLD, date(2021, 1, 1)).members] == [a_head, a_wife]
    # The same membership again adds nothing.
    assert _register(session, _one(head, household=(HOUSEHOLD, "世帯主"))).memberships == 0
    # The child moves to a household of their own (世帯主) in 2024, then leaves the register.
    _register(session, _one(child, household=(OTHER_HOUSEHOLD, "世帯主"), address="別の住所",
                            effective_on=date(2024, 4, 1), reason="転居"))  # fmt: skip
    _register(session, _one(child, household=(None, ""), address="別の住所", effective_on=date(2025, 1, 1),
                            reason="転出", status="former"))  # fmt: skip
    assert history.household_on(session, HOUSEHOLD, date(2024, 4, 1)).members == (
        history.Member(a_head, "世帯主"), history.Member(a_wife, "妻")
    )
    assert history.household_on(session, OTHER_HOUSEHOLD, date(2024, 4, 1)).head == a_child
    assert history.household_on(session, OTHER_HOUSEHOLD, date(2025, 1, 1)).members == ()
    as_2023 = history.as_of(session, a_child, date(2023, 1, 1))
    assert as_2023.household is not None and (as_2023.household.household_no, as_2023.household.relationship,
                                              as_2023.household.head) == (HOUSEHOLD, "子", a_head)  # fmt: skip
    assert history.as_of(session, a_child, date(2025, 2, 1)).household is None
    # The person's page shows the current household: the wife's is the head's.
    wife_now = service.resident_detail(session, a_wife).household
    assert wife_now is not None and (wife_now.household_no, wife_now.relationship, wife_now.head) == (HOUSEHOLD, "妻", a_head)
    assert service.resident_detail(session, a_child).household is None
    kinds = session.execute(
        select(HouseholdMember.change_kind, func.count()).where(HouseholdMember.atena_no == a_child)
        .group_by(HouseholdMember.change_kind).order_by(HouseholdMember.change_kind)
    ).all()  # fmt: skip
    assert dict(kinds) == {"出生": 1, "転居": 1, "転出": 1}


def test_household_fields_are_checked(session: Session) -> None:
    rec = person(20)
    with pytest.raises(Problem) as exc:
        service.parse_resident({**rec, "household_no": "123", "relationship": "子"})
    assert exc.value.code == "invalid_household_no"
    with pytest.raises(Problem) as exc:
        service.parse_resident({**rec, "household_no": HOUSEHOLD})
    assert exc.value.code == "missing_relationship"
    with pytest.raises(Problem) as exc:
        service.parse_resident({**rec, "relationship": "子"})
    assert exc.value.code == "missing_household_no"
    assert service.parse_resident({**rec, "household_no": HOUSEHOLD, "relationship": "子"}).household == (HOUSEHOLD, "子")
