"""Chukan pseudonym bindings: acquisitions remembered, deliveries bound."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from renkei.chukan import service
from renkei.chukan.models import PendingAcquisition, PseudonymBinding
from renkei.core.errors import Problem
from renkei.core.ids import make_atena_no
from renkei.core.wire import contract
from tests.chukan.conftest import NOW

A1, A2, A3 = make_atena_no(1), make_atena_no(2), make_atena_no(3)
ACQ = [f"2025040100000000000{i}" for i in range(10)]
P1, P2, P3 = "p" * 40, "q" * 40, "r" * 40


def _bind(session: Session, items: list[dict[str, Any]], now: datetime) -> dict[str, int]:
    """`service.bind_deliveries` on items as they arrive on the wire (parsed by the contract)."""
    return service.bind_deliveries(session, contract.parse(contract.PseudonymDeliver, {"items": items}).items, now)


def _counts(**kw: int) -> dict[str, int]:
    return {"bound": 0, "unchanged": 0, "unknown_acquisition": 0, "conflict": 0, **kw}


def test_remember_and_bind(session: Session) -> None:
    s = session
    service.remember_acquisitions(s, [(A1, ACQ[0]), (A2, ACQ[1])], NOW)
    s.commit()
    pending = s.scalars(
        select(PendingAcquisition).order_by(PendingAcquisition.acquisition_no)
    ).all()
    assert [(p.acquisition_no, p.atena_no, p.completed_at) for p in pending] == [
        (ACQ[0], A1, None),
        (ACQ[1], A2, None),
    ]
    later = NOW + timedelta(minutes=5)
    counts = _bind(
        s,
        [{"acquisition_no": ACQ[0], "pseudonym": P1}, {"acquisition_no": ACQ[1], "pseudonym": P2}],
        later,
    )
    s.commit()
    assert counts == _counts(bound=2)
    assert service.pseudonym_of(s, A1) == P1 and service.pseudonym_of(s, A2) == P2
    assert service.atena_of_pseudonym(s, P2) == A2
    assert service.atena_of_pseudonym(s, P3) is None
    b = s.get(PseudonymBinding, A1)
    assert b is not None and b.bound_at == later
    assert {p.completed_at for p in s.scalars(select(PendingAcquisition))} == {later}


def test_repeat_delivery_is_unchanged(session: Session) -> None:
    s = session
    service.remember_acquisitions(s, [(A1, ACQ[0])], NOW)
    assert _bind(
        s, [{"acquisition_no": ACQ[0], "pseudonym": P1}], NOW
    ) == _counts(bound=1)
    later = NOW + timedelta(hours=1)
    assert _bind(
        s, [{"acquisition_no": ACQ[0], "pseudonym": P1}], later
    ) == _counts(unchanged=1)
    # a re-acquisition for the same person under a new number gives the same pseudonym
    service.remember_acquisitions(s, [(A1, ACQ[1])], NOW)
    assert _bind(
        s, [{"acquisition_no": ACQ[1], "pseudonym": P1}], later
    ) == _counts(unchanged=1)
    s.commit()
    b = s.get(PseudonymBinding, A1)
    assert b is not None and b.bound_at == NOW  # the first binding is kept
    assert s.scalar(select(func.count()).select_from(PseudonymBinding)) == 1


def test_unknown_and_conflicting_deliveries(session: Session) -> None:
    s = session
    service.remember_acquisitions(s, [(A1, ACQ[0]), (A1, ACQ[1]), (A2, ACQ[2])], NOW)
    counts = _bind(
        s,
        [
            {"acquisition_no": ACQ[9], "pseudonym": P1},
            {"acquisition_no": ACQ[0], "pseudonym": ""},
            {"acquisition_no": ACQ[0]},
            {"pseudonym": P1},
            {},
        ],
        NOW,
    )
    assert counts == _counts(unknown_acquisition=5)
    assert s.scalar(select(func.count()).select_from(PseudonymBinding)) == 0
    pending = s.get(PendingAcquisition, ACQ[0])
    assert pending is not None and pending.completed_at is None

    # a second acquisition for A1 comes back with a different pseudonym: a mix-up upstream
    counts = _bind(
        s,
        [
            {"acquisition_no": ACQ[0], "pseudonym": P1},
            {"acquisition_no": ACQ[1], "pseudonym": P2},
            {"acquisition_no": ACQ[0], "pseudonym": P1},
            {"acquisition_no": ACQ[2], "pseudonym": P3},
            {"acquisition_no": ACQ[5], "pseudonym": P3},
        ],
        NOW,
    )
    s.commit()
    assert counts == _counts(bound=2, unchanged=1, conflict=1, unknown_acquisition=1)
    assert service.pseudonym_of(s, A1) == P1 and service.pseudonym_of(s, A2) == P3
    assert service.atena_of_pseudonym(s, P2) is None
    pending = s.get(PendingAcquisition, ACQ[1])
    assert pending is not None and pending.completed_at is None


def test_same_pseudonym_for_two_atena_nos_is_a_conflict(session: Session) -> None:
    # Two 統合宛名番号 for one person (a missed 名寄せ): the hub issues one pseudonym per
    # person and organization, so both acquisitions come back with the same pseudonym.
    s = session
    service.remember_acquisitions(s, [(A1, ACQ[0]), (A2, ACQ[1])], NOW)
    counts = _bind(
        s,
        [{"acquisition_no": ACQ[0], "pseudonym": P1}, {"acquisition_no": ACQ[1], "pseudonym": P1}],
        NOW,
    )
    assert counts == _counts(bound=1, conflict=1)
    assert service.atena_of_pseudonym(s, P1) == A1


def test_bound_atena_nos(session: Session) -> None:
    s = session
    assert service.bound_atena_nos(s, []) == []
    service.remember_acquisitions(s, [(A1, ACQ[0]), (A2, ACQ[1])], NOW)
    _bind(s, [{"acquisition_no": ACQ[0], "pseudonym": P1}], NOW)
    s.commit()
    assert service.bound_atena_nos(s, [A1, A2, A3]) == [A1]
    assert service.bound_atena_nos(s, [A2, A3]) == []
    _bind(s, [{"acquisition_no": ACQ[1], "pseudonym": P2}], NOW)
    assert sorted(service.bound_atena_nos(s, [A1, A2, A3])) == [A1, A2]

    service.remember_acquisitions(s, [(A3, ACQ[2])], NOW)  # asked for, not yet delivered
    with pytest.raises(Problem) as exc:
        service.pseudonym_of(s, A3)
    assert exc.value.code == "pseudonym_not_acquired" and exc.value.status == 409
    assert exc.value.title == f"指定された団体内統合宛名番号「{A3}」は符号が未取得です。"
    s.commit()
    # an acquisition number is remembered once
    with pytest.raises(IntegrityError):
        service.remember_acquisitions(s, [(A3, ACQ[0])], NOW)


def test_check_atena_no() -> None:
    assert service.check_atena_no(A1) == A1
    for bad in (None, "", A1[:-1], A1[:-1] + str((int(A1[-1]) + 1) % 10), "0" * 15):
        with pytest.raises(Problem) as exc:
            service.check_atena_no(bad)
        assert exc.value.code == "invalid_atena_no"


def test_a_large_delivery_is_bound_as_item_by_item(session: Session) -> None:
    """The set-based path on 1,500 deliveries: new bindings, a repeat (unchanged), a person
    already bound to another pseudonym and a pseudonym held by another person (conflicts,
    their acquisitions stay open), unknown numbers; the first completion time is kept."""
    s = session
    people = [make_atena_no(1000 + i) for i in range(1500)]
    nos = [f"2025040200{i:010d}" for i in range(1500)]
    service.remember_acquisitions(s, list(zip(people, nos, strict=True)), NOW)
    s.add(PseudonymBinding(atena_no=people[0], pseudonym="x" * 40, bound_at=NOW))  # bound before
    service.remember_acquisitions(s, [(people[1], "20250402999999999998")], NOW)  # a second number
    s.commit()
    later = NOW + timedelta(minutes=1)
    items = [{"acquisition_no": n, "pseudonym": f"{i:040d}"} for i, n in enumerate(nos)]
    items.append({"acquisition_no": nos[2], "pseudonym": f"{2:040d}"})  # the same again
    items.append({"acquisition_no": "20250402999999999998", "pseudonym": f"{3:040d}"})  # people[3]'s
    items.append({"acquisition_no": "20250402999999999999", "pseudonym": "z" * 40})
    counts = _bind(s, items, later)
    s.commit()
    assert counts == _counts(bound=1499, unchanged=1, conflict=2, unknown_acquisition=1)
    assert service.pseudonym_of(s, people[0]) == "x" * 40
    assert all(service.pseudonym_of(s, people[i]) == f"{i:040d}" for i in (1, 2, 1499))
    assert s.scalar(select(func.count()).select_from(PseudonymBinding)) == 1500
    open_nos = set(s.scalars(select(PendingAcquisition.acquisition_no).where(PendingAcquisition.completed_at.is_(None))))
    assert open_nos == {nos[0], "20250402999999999998"}
    assert set(service.bound_atena_nos(s, people)) == set(people)
    assert service.pending_acquisitions(s, [people[0], people[1], people[5]]) == {
        people[0]: nos[0], people[1]: "20250402999999999998"
    }
    # Asked again, a bound person is asked under the number they were bound under (never a
    # fresh one from the hub); a person never asked has none.
    stranger = make_atena_no(9999)
    assert service.acquisition_numbers(s, [people[0], people[1], people[5], stranger]) == {
        people[0]: nos[0], people[1]: "20250402999999999998", people[5]: nos[5]
    }
