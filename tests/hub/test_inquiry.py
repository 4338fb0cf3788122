"""Hub inquiries: rule check, pseudonym conversion, routing and provision records."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from renkei.catalogue import Catalogue
from renkei.core import ids
from renkei.core.errors import Problem
from renkei.hub import service
from renkei.hub.models import Link, ProvisionRecord, Pseudonym, kernel
from tests.hub.conftest import NAKANO, NENKIN, NOW, SECRET, SHINJUKU, begin, resolve

TODAY = date(2025, 4, 1)
RNG = random.Random(74)
CODE = ids.generate_resident_code(RNG)
OTHER_CODE = ids.generate_resident_code(RNG)


def _acquire(session: Session, org: str, code: str = CODE) -> str:
    [acq] = service.create_acquisitions(session, org, 1, NOW)
    [res] = resolve(
        session,
        kernel,
        SECRET,
        [{"acquisition_no": acq, "resident_code": code, "org_code": org}],
        NOW,
    )
    assert res.status == "issued"
    link_id = session.scalar(
        select(Link.id).where(Link.resident_key == service.resident_key(SECRET, code))
    )
    pseudonym = session.scalar(
        select(Pseudonym.pseudonym).where(Pseudonym.link_id == link_id, Pseudonym.org_code == org)
    )
    assert pseudonym is not None
    return pseudonym


def _body(pseudonym: str, **over: Any) -> dict[str, Any]:
    body = {
        "pseudonym": pseudonym,
        "provider_org": NAKANO,
        "procedure_code": "JT01010000074001",
        "info_kind_code": "TM00000000000002",
        "as_of": "2024-06-01",
    }
    body.update(over)
    return body


def _records(session: Session) -> list[ProvisionRecord]:
    return list(session.scalars(select(ProvisionRecord).order_by(ProvisionRecord.serial)))


def test_allowed_inquiry_is_routed_with_the_providers_pseudonym(
    federation: Session, catalogue: Catalogue
) -> None:
    s = federation
    mine = _acquire(s, SHINJUKU)
    theirs = _acquire(s, NAKANO)
    _acquire(s, NAKANO, OTHER_CODE)
    route, problem = begin(s, catalogue, SHINJUKU, _body(mine), NOW, TODAY)
    s.commit()
    assert problem is None and route is not None
    assert route.provider_pseudonym == theirs != mine
    assert route.provider_url == "https://127.0.0.1:9201"
    assert len(route.serial) == 20 and route.serial.isdigit()
    [rec] = _records(s)
    link_id = s.scalar(select(Pseudonym.link_id).where(Pseudonym.pseudonym == mine))
    assert rec.serial == route.serial
    assert (rec.inquirer_org, rec.provider_org) == (SHINJUKU, NAKANO)
    assert (rec.procedure_code, rec.info_kind_code, rec.as_of) == (
        "JT01010000074001",
        "TM00000000000002",
        "2024-06-01",
    )
    assert rec.outcome == "pending" and rec.answered_at is None and rec.requested_at == NOW
    assert rec.link_id == link_id
    assert rec.rule_id == "MR-074-1"  # the successor ordinance is in force on TODAY
    assert rec.rule_source is not None and "七十四の項" in rec.rule_source
    assert rec.reason_code is None and rec.withheld is False

    service.finish_inquiry(s, route.serial, "answered", NOW + timedelta(seconds=2))
    s.commit()
    s.expire_all()
    [rec] = _records(s)
    assert rec.outcome == "answered" and rec.answered_at == NOW + timedelta(seconds=2)
    assert rec.reason_code is None
    assert service.records_for_link(s, rec.link_id or 0) == [rec]
    assert service.count_records(s) == 1


def test_rule_is_checked_on_the_day_of_the_inquiry(
    federation: Session, catalogue: Catalogue
) -> None:
    s = federation
    mine = _acquire(s, SHINJUKU)
    _acquire(s, NAKANO)
    route, _ = begin(s, catalogue, SHINJUKU, _body(mine), NOW, date(2020, 1, 1))
    assert route is not None
    assert s.get(ProvisionRecord, route.serial).rule_id == "B2-074-1"  # type: ignore[union-attr]
    route, _ = begin(s, catalogue, SHINJUKU, _body(mine), NOW, date(2024, 5, 27))
    assert route is not None
    assert s.get(ProvisionRecord, route.serial).rule_id == "MR-074-1"  # type: ignore[union-attr]
    # the day before linkage started
    route, problem = begin(
        s, catalogue, SHINJUKU, _body(mine), NOW, date(2017, 7, 17)
    )
    assert route is None and problem is not None
    assert problem.code == "rule_violation" and problem.extra["reason_code"] == "rule_not_in_force"
    rec = s.get(ProvisionRecord, problem.extra["serial"])
    assert rec is not None and rec.outcome == "refused" and rec.reason_code == "rule_not_in_force"
    assert rec.reason is not None and "2017-07-17" in rec.reason and "2017-07-18" in rec.reason


def test_refused_inquiry_is_recorded(federation: Session, catalogue: Catalogue) -> None:
    s = federation
    mine = _acquire(s, SHINJUKU)
    _acquire(s, NAKANO)
    body = _body(mine, procedure_code="JT01010000016001", info_kind_code="TM00000000009001")
    route, problem = begin(s, catalogue, SHINJUKU, body, NOW, TODAY)
    s.commit()
    assert route is None and problem is not None
    assert problem.code == "rule_violation" and problem.status == 403
    assert problem.extra["reason_code"] == "rule_not_found"
    serial = problem.extra["serial"]
    assert len(serial) == 20 and serial.isdigit()
    assert "JT01010000016001" in problem.detail and "TM00000000009001" in problem.detail
    [rec] = _records(s)
    assert rec.serial == serial
    assert rec.outcome == "refused" and rec.reason_code == "rule_not_found"
    assert rec.reason is not None
    for needle in ("JT01010000016001", "TM00000000009001", "市町村長"):
        assert needle in rec.reason
    assert rec.answered_at == NOW and rec.rule_id is None
    assert rec.link_id is not None


def test_refused_when_no_rule_in_force(federation: Session, catalogue: Catalogue) -> None:
    mine = _acquire(federation, SHINJUKU)
    _acquire(federation, NAKANO)
    route, problem = begin(
        federation, catalogue, SHINJUKU, _body(mine), NOW, date(2017, 7, 17)
    )
    assert route is None and problem is not None
    assert problem.extra["reason_code"] == "rule_not_in_force"
    [rec] = _records(federation)
    assert rec.outcome == "refused" and rec.reason_code == "rule_not_in_force"
    assert rec.reason is not None and "2017-07-17" in rec.reason


def test_other_refusals_by_the_catalogue(federation: Session, catalogue: Catalogue) -> None:
    s = federation
    mine = _acquire(s, SHINJUKU)
    _acquire(s, NAKANO)
    _acquire(s, NENKIN)
    cases = [
        # 地方税関係情報 is held by 市町村長, not by 日本年金機構
        (_body(mine, provider_org=NENKIN), "rule_not_found", "日本年金機構"),
        (_body(mine, procedure_code="JT99999999999999"), "unknown_procedure", "JT99999999999999"),
        (_body(mine, info_kind_code="TM99999999999999"), "unknown_info_kind", "TM99999999999999"),
    ]
    for body, reason_code, needle in cases:
        route, problem = begin(s, catalogue, SHINJUKU, body, NOW, TODAY)
        assert route is None and problem is not None
        assert problem.extra["reason_code"] == reason_code
        rec = s.get(ProvisionRecord, problem.extra["serial"])
        assert rec is not None and rec.outcome == "refused" and rec.reason_code == reason_code
        assert needle in (rec.reason or "")
    assert service.count_records(s) == 3


def test_provider_without_pseudonym(federation: Session, catalogue: Catalogue) -> None:
    s = federation
    mine = _acquire(s, SHINJUKU)
    _acquire(s, NAKANO, OTHER_CODE)  # 中野区 knows someone else, not this person
    route, problem = begin(s, catalogue, SHINJUKU, _body(mine), NOW, TODAY)
    s.commit()
    assert route is None and problem is not None
    assert problem.code == "provider_pseudonym_missing" and problem.status == 404
    [rec] = _records(s)
    assert problem.extra["serial"] == rec.serial
    assert rec.outcome == "no_pseudonym" and rec.reason_code == "provider_pseudonym_missing"
    assert rec.rule_id == "MR-074-1"  # the rule check passed before
    assert rec.answered_at == NOW


MALFORMED: list[tuple[dict[str, Any], str]] = [
    ({"pseudonym": ""}, "missing_field"),
    ({"pseudonym": None}, "missing_field"),
    ({"provider_org": 1311480000000000}, "missing_field"),
    ({"procedure_code": ""}, "missing_field"),
    ({"info_kind_code": None}, "missing_field"),
    ({"as_of": ""}, "missing_field"),
    ({"procedure_code": "JM01010000074001"}, "invalid_procedure_code"),
    ({"procedure_code": "JT0101000007400"}, "invalid_procedure_code"),
    ({"info_kind_code": "TM0000000000000X"}, "invalid_info_kind_code"),
    ({"as_of": "2024-13-01"}, "bad_date"),
    ({"as_of": "令和6年6月1日"}, "bad_date"),
    ({"as_of": "2024-02-30"}, "bad_date"),
]


def test_malformed_or_unknown_inquiries_are_refused_unrecorded(
    federation: Session, catalogue: Catalogue
) -> None:
    s = federation
    mine = _acquire(s, SHINJUKU)
    theirs = _acquire(s, NAKANO)
    for over, code in MALFORMED:
        with pytest.raises(Problem) as exc:
            begin(s, catalogue, SHINJUKU, {**_body(mine), **over}, NOW, TODAY)
        assert (exc.value.code, exc.value.status) == (code, 422), over
    body = _body(mine)
    del body["as_of"]
    with pytest.raises(Problem) as exc:
        begin(s, catalogue, SHINJUKU, body, NOW, TODAY)
    assert exc.value.code == "missing_field" and "as_of" in exc.value.title
    # someone else's pseudonym, or none at all
    for pseudonym in (theirs, "no-such-pseudonym"):
        with pytest.raises(Problem) as exc:
            begin(s, catalogue, SHINJUKU, _body(pseudonym), NOW, TODAY)
        assert (exc.value.code, exc.value.status) == ("unknown_pseudonym", 404)
    with pytest.raises(Problem) as exc:
        begin(
            s, catalogue, SHINJUKU, _body(mine, provider_org="1399990000000000"), NOW, TODAY
        )
    assert exc.value.code == "unknown_organization"
    with pytest.raises(Problem) as exc:
        begin(s, catalogue, "1399990000000000", _body(mine), NOW, TODAY)
    assert exc.value.code == "unknown_organization"
    assert service.count_records(s) == 0


def test_finish_inquiry_error_and_unknown_serial(federation: Session, catalogue: Catalogue) -> None:
    s = federation
    mine = _acquire(s, SHINJUKU)
    _acquire(s, NAKANO)
    route, _ = begin(s, catalogue, SHINJUKU, _body(mine), NOW, TODAY)
    assert route is not None
    service.finish_inquiry(s, route.serial, "error", NOW, reason_code="peer_unreachable")
    s.commit()
    s.expire_all()
    rec = s.get(ProvisionRecord, route.serial)
    assert rec is not None and rec.outcome == "error" and rec.reason_code == "peer_unreachable"
    with pytest.raises(Problem) as exc:
        service.finish_inquiry(s, "20250401000000009999", "answered", NOW)
    assert exc.value.code == "unknown_serial"


def test_serials_of_inquiries_are_distinct_and_records_per_link(
    federation: Session, catalogue: Catalogue
) -> None:
    s = federation
    mine = _acquire(s, SHINJUKU)
    _acquire(s, NAKANO)
    other = _acquire(s, SHINJUKU, OTHER_CODE)
    serials = []
    for i in range(3):
        route, _ = begin(
            s, catalogue, SHINJUKU, _body(mine), NOW + timedelta(minutes=i), TODAY
        )
        assert route is not None
        serials.append(route.serial)
    _, problem = begin(s, catalogue, SHINJUKU, _body(other), NOW, TODAY)
    assert problem is not None and problem.code == "provider_pseudonym_missing"
    s.commit()
    assert len(set(serials)) == 3
    link_id = s.scalar(select(Pseudonym.link_id).where(Pseudonym.pseudonym == mine))
    assert [r.serial for r in service.records_for_link(s, link_id or 0)] == serials
    assert service.count_records(s) == 4
    assert (
        s.scalar(
            select(func.count())
            .select_from(ProvisionRecord)
            .where(ProvisionRecord.outcome == "pending")
        )
        == 3
    )
