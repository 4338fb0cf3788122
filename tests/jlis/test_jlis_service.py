"""J-LIS: the individual number ↔ resident code table and the relay of acquisitions."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from renkei.core import ids
from renkei.core.crypto.field import FieldCipher, FieldDecryptError
from renkei.core.errors import Problem
from renkei.core.wire import contract
from renkei.jlis import service
from renkei.jlis.models import Citizen, RelayedAcquisition, kernel
from tests.jlis.conftest import NOW

RNG = random.Random(131041)
PEOPLE = [
    (ids.generate_individual_number(RNG), ids.generate_resident_code(RNG), "131041")
    for _ in range(5)
]
CIPHER = FieldCipher.generate()
HUB_URL = "https://127.0.0.1:9001"
HUB_ORG = "9000000000000001"
SHINJUKU = "1310410000000000"


def _bump(value: str) -> str:
    return value[:-1] + str((int(value[-1]) + 1) % 10)


def _outbox(session: Session) -> list[dict[str, Any]]:
    t = kernel.outbox
    return [dict(r) for r in session.execute(select(t).order_by(t.c.id)).mappings()]


def _citizens(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Citizen)) or 0)


def _acq(i: int) -> str:
    return f"2025040100000000{i:04d}"


def _submit(session: Session, cipher: FieldCipher, items: list[dict[str, Any]]) -> list[service.SubmitResult]:
    """`service.submit_acquisitions` on items as they arrive on the wire (parsed by the contract)."""
    parsed = contract.parse(contract.AcquisitionSubmit, {"items": items}).items
    return service.submit_acquisitions(
        session, kernel, cipher, org_code=SHINJUKU, items=parsed, hub_url=HUB_URL, hub_org=HUB_ORG, now=NOW
    )


def test_load_citizens(session: Session) -> None:
    assert service.load_citizens(session, CIPHER, PEOPLE[:3], NOW) == 3
    session.commit()
    rows = {c.resident_code: c for c in session.scalars(select(Citizen))}
    assert set(rows) == {p[1] for p in PEOPLE[:3]}
    for number, code, lg in PEOPLE[:3]:
        assert (service.individual_number(CIPHER, rows[code]), rows[code].lg_code, rows[code].registered_at) == (
            number,
            lg,
            NOW,
        )
    # any iterable of rows; a row repeated in one batch is added once
    assert service.load_citizens(session, CIPHER, (p for p in [PEOPLE[3], PEOPLE[4], PEOPLE[3]]), NOW) == 2
    session.commit()
    assert _citizens(session) == 5


def test_load_citizens_is_idempotent(session: Session) -> None:
    assert service.load_citizens(session, CIPHER, PEOPLE[:3], NOW) == 3
    session.commit()
    assert service.load_citizens(session, CIPHER, PEOPLE, NOW + timedelta(days=1)) == 2
    assert service.load_citizens(session, CIPHER, PEOPLE, NOW + timedelta(days=2)) == 0
    session.commit()
    assert _citizens(session) == 5
    first = session.get(Citizen, PEOPLE[0][1])
    assert first is not None and first.registered_at == NOW


def test_load_citizens_validates_ids(session: Session) -> None:
    number, code, lg = PEOPLE[4]
    bad_rows = [
        (_bump(number), code, lg),
        (number[:-1], code, lg),
        ("１" + number[1:], code, lg),
        (number, _bump(code), lg),
        (number, code + "0", lg),
    ]
    for row in bad_rows:
        with pytest.raises(ids.InvalidId) as exc:
            service.load_citizens(session, CIPHER, [PEOPLE[0], row], NOW)
        # the message never repeats the number
        assert row[0] not in str(exc.value) and row[1] not in str(exc.value)
        session.rollback()
    assert _citizens(session) == 0


def test_submit_relays_known_numbers(session: Session) -> None:
    service.load_citizens(session, CIPHER, PEOPLE, NOW)
    session.commit()
    items = [
        {"individual_number": PEOPLE[0][0], "acquisition_no": _acq(1)},
        {"individual_number": PEOPLE[1][0], "acquisition_no": _acq(2)},
        {
            "individual_number": ids.generate_individual_number(random.Random(1)),
            "acquisition_no": _acq(3),
        },
        {"individual_number": _bump(PEOPLE[2][0]), "acquisition_no": _acq(4)},
        {"individual_number": PEOPLE[2][0], "acquisition_no": "2025040100000000005"},
        {"individual_number": PEOPLE[2][0], "acquisition_no": "2025040100000000000X"},
        {
            "individual_number": PEOPLE[2][0],
            "acquisition_no": "２０２５０４０１０００００００００００６",
        },
        {"individual_number": PEOPLE[2][0]},
        {"acquisition_no": _acq(7)},
    ]
    results = _submit(session, CIPHER, items)
    session.commit()
    assert [r.status for r in results] == [
        "relayed",
        "relayed",
        "unknown_individual_number",
        "invalid_individual_number",
        "bad_acquisition_no",
        "bad_acquisition_no",
        "bad_acquisition_no",
        "bad_acquisition_no",
        "invalid_individual_number",
    ]
    assert [r.acquisition_no for r in results[:4]] == [_acq(1), _acq(2), _acq(3), _acq(4)]

    [box] = _outbox(session)
    assert box["destination"] == HUB_URL + "/v1/acquisitions/resolve"
    assert box["audience"] == HUB_ORG and box["typ"] == "acquisition.resolve"
    assert box["delivered_at"] is None and box["next_attempt_at"] == NOW
    assert box["body"] == {
        "items": [
            {"acquisition_no": _acq(1), "resident_code": PEOPLE[0][1], "org_code": SHINJUKU},
            {"acquisition_no": _acq(2), "resident_code": PEOPLE[1][1], "org_code": SHINJUKU},
        ]
    }
    # the hub must never see an individual number
    text = json.dumps(box["body"])
    assert not any(number in text for number, _, _ in PEOPLE)

    relayed = session.scalars(
        select(RelayedAcquisition).order_by(RelayedAcquisition.acquisition_no)
    ).all()
    assert [(r.acquisition_no, r.org_code, r.resident_code, r.relayed_at) for r in relayed] == [
        (_acq(1), SHINJUKU, PEOPLE[0][1], NOW),
        (_acq(2), SHINJUKU, PEOPLE[1][1], NOW),
    ]


def test_submit_with_nothing_relayed_enqueues_nothing(session: Session) -> None:
    service.load_citizens(session, CIPHER, PEOPLE[:1], NOW)
    items = [
        {"individual_number": PEOPLE[1][0], "acquisition_no": _acq(1)},
        {"individual_number": _bump(PEOPLE[0][0]), "acquisition_no": _acq(2)},
        {"individual_number": PEOPLE[0][0], "acquisition_no": "1"},
    ]
    results = _submit(session, CIPHER, items)
    assert [r.status for r in results] == [
        "unknown_individual_number",
        "invalid_individual_number",
        "bad_acquisition_no",
    ]
    assert _outbox(session) == []
    assert session.scalar(select(func.count()).select_from(RelayedAcquisition)) == 0
    assert _submit(session, CIPHER, []) == []
    assert _outbox(session) == []
    with pytest.raises(Problem) as exc:
        service.submit_acquisitions(
            session,
            kernel,
            CIPHER,
            org_code=SHINJUKU,
            items=[contract.SubmitItem()] * (service.MAX_BATCH + 1),
            hub_url=HUB_URL,
            hub_org=HUB_ORG,
            now=NOW,
        )
    assert exc.value.code == "bad_count"
    assert _outbox(session) == []


def test_each_submission_is_one_message(session: Session) -> None:
    service.load_citizens(session, CIPHER, PEOPLE, NOW)
    for i, (number, _, _) in enumerate(PEOPLE):
        _submit(session, CIPHER, [{"individual_number": number, "acquisition_no": _acq(i)}])
    session.commit()
    boxes = _outbox(session)
    assert len(boxes) == 5 and len({b["message_id"] for b in boxes}) == 5
    assert [b["body"]["items"][0]["resident_code"] for b in boxes] == [p[1] for p in PEOPLE]


def test_load_citizens_refuses_a_changed_resident_code_clearly(session: Session) -> None:
    service.load_citizens(session, CIPHER, PEOPLE[:1], NOW)
    session.commit()
    number, code, lg = PEOPLE[0]
    other = ids.generate_resident_code(random.Random(1))
    with pytest.raises(Problem) as info:
        service.load_citizens(session, CIPHER, [(number, other, lg)], NOW)
    assert info.value.code == "resident_code_changed"


def test_individual_numbers_are_sealed_at_rest(session: Session) -> None:
    """J-LIS keeps the number encrypted (bound to its row) with a blind index: no row
    holds it in clear, and a sealed number moved to another row does not decrypt."""
    service.load_citizens(session, CIPHER, PEOPLE, NOW)
    session.commit()
    table = Citizen.__table__
    assert "individual_number" not in table.c
    for row in session.execute(select(table)).all():
        text = repr(tuple(row))
        assert not any(number in text for number, _code, _lg in PEOPLE)
    first, second = (session.get(Citizen, p[1]) for p in PEOPLE[:2])
    assert first is not None and second is not None
    assert service.individual_number(CIPHER, first) == PEOPLE[0][0]
    with pytest.raises(FieldDecryptError):
        CIPHER.decrypt(first.individual_number_enc, service.number_aad(second.resident_code))
    # Found by the blind index only: another cipher's index finds nobody.
    other = FieldCipher.generate()
    results = _submit(session, other, [{"individual_number": PEOPLE[0][0], "acquisition_no": _acq(1)}])
    assert [r.status for r in results] == ["unknown_individual_number"]


def test_a_repeated_submission_is_relayed_again_but_recorded_once(session: Session) -> None:
    """atena retrying after a crash sends the same (number, acquisition number): relayed
    again (the hub answers with the same pseudonym), one record; the same acquisition
    number for another person is refused here, and nothing of it is relayed."""
    service.load_citizens(session, CIPHER, PEOPLE, NOW)
    first = [{"individual_number": PEOPLE[0][0], "acquisition_no": _acq(1)}]
    assert [r.status for r in _submit(session, CIPHER, first)] == ["relayed"]
    session.commit()
    again = [
        {"individual_number": PEOPLE[0][0], "acquisition_no": _acq(1)},
        {"individual_number": PEOPLE[1][0], "acquisition_no": _acq(1)},  # another person
        {"individual_number": PEOPLE[2][0], "acquisition_no": _acq(2)},
        {"individual_number": PEOPLE[2][0], "acquisition_no": _acq(2)},  # twice in one batch
    ]
    results = _submit(session, CIPHER, again)
    session.commit()
    assert [r.status for r in results] == ["relayed", "acquisition_no_conflict", "relayed", "relayed"]
    relayed = session.execute(
        select(RelayedAcquisition.acquisition_no, RelayedAcquisition.resident_code).order_by(RelayedAcquisition.id)
    ).all()
    assert [tuple(r) for r in relayed] == [(_acq(1), PEOPLE[0][1]), (_acq(2), PEOPLE[2][1])]
    boxes = _outbox(session)
    assert len(boxes) == 2
    assert boxes[1]["body"]["items"] == [
        {"acquisition_no": _acq(1), "resident_code": PEOPLE[0][1], "org_code": SHINJUKU},
        {"acquisition_no": _acq(2), "resident_code": PEOPLE[2][1], "org_code": SHINJUKU},
    ]


def test_submit_of_many_is_the_same_as_one_by_one(session: Session) -> None:
    """The set-based path on a larger batch: every known number relayed under its own
    acquisition number with its own resident code, in order."""
    rng = random.Random(7)
    people = [(ids.generate_individual_number(rng), ids.generate_resident_code(rng), "131041") for _ in range(300)]
    people = list({p[0]: p for p in people}.values())
    service.load_citizens(session, CIPHER, people[:-50], NOW)
    items = [{"individual_number": n, "acquisition_no": _acq(i)} for i, (n, _, _) in enumerate(people)]
    results = _submit(session, CIPHER, items)
    assert [r.status for r in results] == ["relayed"] * (len(people) - 50) + ["unknown_individual_number"] * 50
    [box] = _outbox(session)
    assert box["body"]["items"] == [
        {"acquisition_no": _acq(i), "resident_code": code, "org_code": SHINJUKU}
        for i, (_, code, _) in enumerate(people[:-50])
    ]
