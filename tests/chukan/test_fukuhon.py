"""Chukan provision copies (副本): validation, versions, deletions, look-up by date; records."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from renkei.catalogue import Catalogue
from renkei.chukan import service
from renkei.chukan.models import Fukuhon, ProvisionRecord
from renkei.core.crypto.field import FieldCipher, FieldDecryptError
from renkei.core.errors import Problem
from renkei.core.ids import make_atena_no
from tests.chukan.conftest import NOW

A1, A2 = make_atena_no(1), make_atena_no(2)
CIPHER = FieldCipher.generate()
TAX = "TM00000000000002"
VALUES = {
    "K001": "2024",
    "K002": "1",
    "K003": "3500000",
    "K004": "120000",
    "K005": "5000",
    "K006": "2",
}


def _rec(**over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "atena_no": A1,
        "info_kind_code": TAX,
        "record_key": "2024",
        "values": dict(VALUES),
        "valid_from": "2024-06-01",
    }
    rec.update(over)
    return rec


def _count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Fukuhon)) or 0)


def _register(
    session: Session, catalogue: Catalogue, *recs: dict[str, Any], at: Any = NOW
) -> list[service.Registered]:
    return service.register_fukuhon(session, catalogue, list(recs), at, CIPHER)


def test_register_valid_record(session: Session, catalogue: Catalogue) -> None:
    out = _register(session, catalogue, _rec())
    session.commit()
    assert out == [service.Registered(A1, TAX, "2024", 1)]
    [row] = session.scalars(select(Fukuhon)).all()
    assert (row.atena_no, row.info_kind_code, row.record_key, row.version) == (A1, TAX, "2024", 1)
    assert (row.dataset, row.edition) == ("0001", "0001")
    assert service.copy_values(row, CIPHER) == VALUES
    assert row.valid_from == date(2024, 6, 1) and row.valid_to is None
    assert row.deleted is False and row.no_auto_answer is False and row.registered_at == NOW

    # values given as numbers or None are stored as strings; an empty key is record "1"
    values: dict[str, Any] = {
        "K001": 2024,
        "K002": 1,
        "K003": 0,
        "K004": None,
        "K005": 5000,
        "K006": 0,
    }
    _register(
        session, catalogue, _rec(atena_no=A2, values=values, record_key="", no_auto_answer=True)
    )
    session.commit()
    row = session.scalars(select(Fukuhon).where(Fukuhon.atena_no == A2)).one()
    assert service.copy_values(row, CIPHER) == {
        "K001": "2024",
        "K002": "1",
        "K003": "0",
        "K004": "",
        "K005": "5000",
        "K006": "0",
    }
    assert row.record_key == "1"  # default key
    assert row.no_auto_answer is True


def test_versions_count_per_record(session: Session, catalogue: Catalogue) -> None:
    assert _register(session, catalogue, _rec())[0].version == 1
    corrected = {**VALUES, "K003": "3600000"}
    later = NOW + timedelta(days=1)
    assert _register(session, catalogue, _rec(values=corrected), at=later)[0].version == 2
    # other record key, other person, other kind: each has its own version sequence
    out = _register(
        session,
        catalogue,
        _rec(record_key="2023", values={**VALUES, "K001": "2023"}),
        _rec(atena_no=A2),
        _rec(record_key="2023", values={**VALUES, "K001": "2023", "K006": "3"}),
    )
    assert [r.version for r in out] == [1, 1, 2]  # within one batch too
    session.commit()
    assert _count(session) == 5
    copy = service.find_copy(session, A1, TAX, date(2025, 1, 1))
    assert copy is not None
    # both records of A1 start on 2024-06-01; the later registration (day 2) wins the tie
    assert copy.record_key == "2024" and copy.version == 2
    v2 = session.scalar(
        select(Fukuhon).where(
            Fukuhon.atena_no == A1, Fukuhon.record_key == "2024", Fukuhon.version == 2
        )
    )
    assert v2 is not None and service.copy_values(v2, CIPHER)["K003"] == "3600000"


def test_deletion_is_a_new_version(session: Session, catalogue: Catalogue) -> None:
    _register(session, catalogue, _rec())
    assert service.find_copy(session, A1, TAX, date(2024, 7, 1)) is not None
    out = _register(session, catalogue, _rec(values={}, delete=True))
    session.commit()
    assert out[0].version == 2
    assert service.find_copy(session, A1, TAX, date(2024, 7, 1)) is None
    rows = session.scalars(select(Fukuhon).order_by(Fukuhon.version)).all()
    assert [(r.version, r.deleted) for r in rows] == [(1, False), (2, True)]
    assert service.copy_values(rows[0], CIPHER) == VALUES  # the old version is kept unchanged
    # registering again after the deletion publishes it again
    assert _register(session, catalogue, _rec())[0].version == 3
    copy = service.find_copy(session, A1, TAX, date(2024, 7, 1))
    assert copy is not None and copy.version == 3


def test_invalid_values_refuse_the_whole_batch(session: Session, catalogue: Catalogue) -> None:
    _register(session, catalogue, _rec(atena_no=A2))
    session.commit()
    batch = [
        _rec(),  # valid, but must not be written either
        _rec(values={**VALUES, "K002": "9", "K006": "100"}),
        _rec(values={**VALUES, "K001": "", "K999": "x"}),
        _rec(values={**VALUES, "K003": "-1"}),
    ]
    with pytest.raises(Problem) as exc:
        service.register_fukuhon(session, catalogue, batch, NOW, CIPHER)
    p = exc.value
    assert p.code == "invalid_fukuhon" and p.status == 422
    errors = p.extra["errors"]
    got = {(e["index"], e["item"], e["code"]) for e in errors}
    assert {(i, item) for i, item, _ in got} == {
        (1, "K002"),
        (1, "K006"),
        (2, "K001"),
        (2, "K999"),
        (3, "K003"),
    }
    assert all(e["index"] != 0 for e in errors)
    assert all(e["message"] for e in errors)
    # values are never repeated in messages
    assert not any("100" in e["message"] or "-1" in e["message"] for e in errors)
    assert f"{len(errors)}件" in p.detail
    session.rollback()
    assert _count(session) == 1


RECORD_PROBLEMS: list[tuple[dict[str, Any], str]] = [
    ({"info_kind_code": "TM99999999999999"}, "unknown_info_kind"),
    ({"info_kind_code": ""}, "unknown_info_kind"),
    ({"valid_from": "2024-13-01"}, "bad_date"),
    ({"valid_from": "2024/06/01"}, "bad_date"),
    ({"valid_from": None}, "bad_date"),
    ({"valid_to": "2024-06-31"}, "bad_date"),
    ({"valid_to": "2024-05-31"}, "bad_period"),
    ({"valid_from": "2010-04-01"}, "no_edition"),
    ({"atena_no": "12345"}, "invalid_atena_no"),
    ({"atena_no": None}, "invalid_atena_no"),
]


def test_record_level_problems(session: Session, catalogue: Catalogue) -> None:
    for over, code in RECORD_PROBLEMS:
        with pytest.raises(Problem) as exc:
            service.register_fukuhon(session, catalogue, [_rec(), _rec(**over)], NOW, CIPHER)
        assert exc.value.code == "invalid_fukuhon", over
        [error] = exc.value.extra["errors"]
        assert (error["index"], error["item"], error["code"]) == (1, None, code), over
        assert error["message"]
    # valid_to equal to valid_from is a one-day period, not an error
    _register(session, catalogue, _rec(atena_no=A2, valid_to="2024-06-01"))
    for records in ([], [_rec()] * (service.MAX_BATCH + 1)):
        with pytest.raises(Problem) as exc:
            service.register_fukuhon(session, catalogue, records, NOW, CIPHER)
        assert exc.value.code == "bad_count"
    session.commit()
    assert _count(session) == 1


def test_period_boundaries_are_inclusive(session: Session, catalogue: Catalogue) -> None:
    _register(session, catalogue, _rec(valid_to="2025-05-31"))
    session.commit()
    assert service.find_copy(session, A1, TAX, date(2024, 5, 31)) is None
    for d in (date(2024, 6, 1), date(2025, 1, 1), date(2025, 5, 31)):
        copy = service.find_copy(session, A1, TAX, d)
        assert copy is not None and copy.version == 1, d
    assert service.find_copy(session, A1, TAX, date(2025, 6, 1)) is None
    # other person or other kind: nothing
    assert service.find_copy(session, A2, TAX, date(2025, 1, 1)) is None
    assert service.find_copy(session, A1, "TM00000000009001", date(2025, 1, 1)) is None


def test_find_copy_picks_newest_version(session: Session, catalogue: Catalogue) -> None:
    _register(session, catalogue, _rec())
    _register(session, catalogue, _rec(values={**VALUES, "K003": "1"}))
    _register(session, catalogue, _rec(values={**VALUES, "K003": "2"}))
    copy = service.find_copy(session, A1, TAX, date(2024, 12, 1))
    assert copy is not None and copy.version == 3 and service.copy_values(copy, CIPHER)["K003"] == "2"
    # the newest version replaces the older ones even where its period is shorter
    _register(session, catalogue, _rec(values={**VALUES, "K003": "4"}, valid_to="2024-12-31"))
    copy = service.find_copy(session, A1, TAX, date(2024, 12, 31))
    assert copy is not None and copy.version == 4
    assert service.find_copy(session, A1, TAX, date(2025, 1, 1)) is None


def test_find_copy_across_records_prefers_latest_start(
    session: Session, catalogue: Catalogue
) -> None:
    _register(
        session,
        catalogue,
        _rec(
            record_key="2023",
            values={**VALUES, "K001": "2023"},
            valid_from="2023-06-01",
            valid_to="2024-05-31",
        ),
        _rec(record_key="2024", valid_from="2024-06-01"),
        _rec(record_key="2025", values={**VALUES, "K001": "2025"}, valid_from="2025-06-01"),
    )
    session.commit()
    keys = {
        d: service.find_copy(session, A1, TAX, d)
        for d in (date(2023, 7, 1), date(2024, 7, 1), date(2025, 7, 1))
    }
    assert {d: c.record_key if c else None for d, c in keys.items()} == {
        date(2023, 7, 1): "2023",
        date(2024, 7, 1): "2024",
        date(2025, 7, 1): "2025",
    }
    assert service.find_copy(session, A1, TAX, date(2023, 5, 31)) is None


def test_record(session: Session) -> None:
    common: dict[str, Any] = dict(
        serial="20250401000000000001",
        counterpart_org="1311480000000000",
        procedure_code="JT01010000074001",
        info_kind_code=TAX,
        as_of="2024-06-01",
        now=NOW,
    )
    service.record(session, direction="inquiry", atena_no=A1, outcome="answered", **common)
    service.record(
        session,
        direction="provision",
        atena_no=None,
        outcome="no_data",
        reason="該当なし",
        **common,
    )
    session.commit()
    rows = session.scalars(select(ProvisionRecord).order_by(ProvisionRecord.direction)).all()
    assert [(r.direction, r.atena_no, r.outcome, r.reason, r.at) for r in rows] == [
        ("inquiry", A1, "answered", None, NOW),
        ("provision", None, "no_data", "該当なし", NOW),
    ]
    assert {r.serial for r in rows} == {"20250401000000000001"}
    with pytest.raises(IntegrityError):
        service.record(session, direction="inquiry", atena_no=A1, outcome="answered", **common)


def test_later_version_does_not_hide_what_was_published_earlier(session: Session, catalogue: Catalogue) -> None:
    _register(session, catalogue, _rec(valid_from="2024-06-01"))
    _register(session, catalogue, _rec(values={**VALUES, "K003": "3600000"}, valid_from="2025-06-01"))
    session.commit()
    early = service.find_copy(session, A1, TAX, date(2024, 12, 1))
    late = service.find_copy(session, A1, TAX, date(2025, 7, 1))
    assert early is not None and early.version == 1 and service.copy_values(early, CIPHER)["K003"] == "3500000"
    assert late is not None and late.version == 2 and service.copy_values(late, CIPHER)["K003"] == "3600000"
    assert service.find_copy(session, A1, TAX, date(2024, 5, 31)) is None


def test_sensitive_items_are_stored_encrypted(session: Session, catalogue: Catalogue) -> None:
    """総所得金額等 (K003) and 所得割額 (K004) are marked sensitive: never in clear at rest."""
    _register(session, catalogue, _rec())
    session.commit()
    [row] = session.scalars(select(Fukuhon)).all()
    assert set(row.values) == {"K001", "K002", "K005", "K006"}
    assert row.sealed_values is not None
    assert b"3500000" not in row.sealed_values and b"120000" not in row.sealed_values
    stored = json.dumps(row.values)
    assert "3500000" not in stored and "120000" not in stored
    assert service.copy_values(row, CIPHER) == VALUES
    # Bound to its row: the same blob under another row id does not decrypt.
    with pytest.raises(FieldDecryptError):
        CIPHER.decrypt(row.sealed_values, service.sealed_aad(row.id + 1))
    # And only under this node's key.
    with pytest.raises(FieldDecryptError):
        service.copy_values(row, FieldCipher.generate())


def test_copy_without_sensitive_items_has_nothing_sealed(session: Session, catalogue: Catalogue) -> None:
    _register(session, catalogue, _rec(values={}, delete=True))
    session.commit()
    [row] = session.scalars(select(Fukuhon)).all()
    assert row.sealed_values is None and service.copy_values(row, CIPHER) == {}


def test_registering_the_same_copy_again_adds_no_version(session: Session, catalogue: Catalogue) -> None:
    """A re-run batch leaves the copies as they are; any change makes a new version."""
    assert _register(session, catalogue, _rec())[0].version == 1
    assert _register(session, catalogue, _rec())[0].version == 1
    assert _count(session) == 1
    # A sensitive item (sealed) changed, the period changed, the flag changed: new versions.
    assert _register(session, catalogue, _rec(values={**VALUES, "K004": "120001"}))[0].version == 2
    assert _register(session, catalogue, _rec(values={**VALUES, "K004": "120001"}, valid_to="2025-05-31"))[0].version == 3
    assert _register(
        session, catalogue, _rec(values={**VALUES, "K004": "120001"}, valid_to="2025-05-31", no_auto_answer=True)
    )[0].version == 4
    # Going back to an earlier content is a change too (the newest version decides).
    assert _register(session, catalogue, _rec())[0].version == 5
    assert _count(session) == 5
