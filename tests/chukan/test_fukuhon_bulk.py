"""Set-based registration of provision copies gives what the row-by-row one gave.

`reference_register` below is the registration as it was before it became set-based (one
look-up and one flush per copy), kept here as the oracle: on a mixed batch — new copies,
copies held unchanged, changed ones, a deletion, the same copy twice in one batch —
both give the same answers and leave the same rows; on a batch with bad records both
refuse it with the same problems and write nothing.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from renkei.catalogue import Catalogue
from renkei.chukan import service
from renkei.chukan.models import Fukuhon
from renkei.core.crypto.field import FieldCipher
from renkei.core.errors import Problem
from renkei.core.ids import make_atena_no
from tests.chukan.conftest import NOW

CIPHER = FieldCipher.generate()
TAX, NHI, CHILD = "TM00000000000002", "TM00000000009002", "TM00000000009001"
A = [make_atena_no(n) for n in range(1, 12)]
NHI_VALUES = {"H001": "1", "H002": "138040", "H003": "2020-04-01"}
TAX_VALUES = {"K001": "2024", "K002": "1", "K003": "3500000", "K004": "120000", "K005": "5000", "K006": "2"}


def tax(atena_no: str, key: str = "2024", **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "atena_no": atena_no,
        "info_kind_code": TAX,
        "record_key": key,
        "values": {**TAX_VALUES, "K001": key},
        "valid_from": "2024-06-01",
    }
    rec.update(over)
    return rec


def reference_register(
    session: Session, catalogue: Catalogue, records: list[Any], now: datetime, cipher: FieldCipher
) -> list[service.Registered]:
    """The registration before it was set-based (the oracle)."""
    problems: list[dict[str, Any]] = []
    prepared = []
    for index, raw in enumerate(records):
        rec: dict[str, Any] = raw if isinstance(raw, dict) else {}
        try:
            atena_no = service.check_atena_no(rec.get("atena_no"))
            kind_code = str(rec.get("info_kind_code", ""))
            kind = catalogue.info_kinds.get(kind_code)
            if kind is None:
                raise Problem(422, "unknown_info_kind", f"特定個人情報名コード「{kind_code}」は登録されていません。")
            valid_from = service.parse_date(rec.get("valid_from"), "公開開始日")
            valid_to = service.parse_date(rec["valid_to"], "公開終了日") if rec.get("valid_to") else None
            if valid_to is not None and valid_to < valid_from:
                raise Problem(422, "bad_period", "公開終了日が公開開始日より前です。")
            record_key = str(rec.get("record_key", "")) or "1"
            if len(record_key) > 64:
                raise Problem(422, "too_long", "レコードキーは64文字以内で指定してください。")
            raw_values = rec.get("values", {})
            if not isinstance(raw_values, dict):
                raise Problem(422, "bad_values", "副本の項目（values）は {項目コード: 値} の形で指定してください。")
            values = {str(k): "" if v is None else str(v) for k, v in raw_values.items()}
            deleted = bool(rec.get("delete", False))
            edition = kind.edition_on(valid_from)
            if edition is None:
                raise Problem(422, "no_edition", f"{valid_from.isoformat()} に有効なデータ標準レイアウトの版がありません。")
            if not deleted:
                issues = catalogue.validate_record(kind_code, values, valid_from, edition.edition)
                if issues:
                    for issue in issues:
                        problems.append({"index": index, "item": issue.item_code, "code": issue.code, "message": issue.message})
                    continue
            prepared.append((atena_no, kind_code, edition, record_key, values, valid_from, valid_to, deleted, rec))
        except Problem as exc:
            problems.append({"index": index, "item": None, "code": exc.code, "message": exc.title})
    if problems:
        raise Problem(422, "invalid_fukuhon", "副本の内容がデータ標準レイアウトに適合しません。",
                      f"{len(problems)}件の誤りがあります。", errors=problems[:100])  # fmt: skip
    out = []
    for atena_no, kind_code, edition, record_key, values, valid_from, valid_to, deleted, rec in prepared:
        newest = session.scalars(
            select(Fukuhon)
            .where(Fukuhon.atena_no == atena_no, Fukuhon.info_kind_code == kind_code, Fukuhon.record_key == record_key)
            .order_by(Fukuhon.version.desc())
            .limit(1)
        ).first()
        no_auto_answer = bool(rec.get("no_auto_answer", False))
        if newest is not None and (
            (newest.edition, newest.valid_from, newest.valid_to, newest.deleted, newest.no_auto_answer)
            == (edition.edition, valid_from, valid_to, deleted, no_auto_answer)
            and service.copy_values(newest, cipher) == values
        ):
            out.append(service.Registered(atena_no, kind_code, record_key, newest.version, added=False))
            continue
        version = (newest.version if newest is not None else 0) + 1
        sensitive = {it.code for it in edition.items if it.sensitive}
        sealed = {k: v for k, v in values.items() if k in sensitive}
        row = Fukuhon(atena_no=atena_no, info_kind_code=kind_code, dataset=edition.dataset, edition=edition.edition,
                      record_key=record_key, version=version, values={k: v for k, v in values.items() if k not in sensitive},
                      valid_from=valid_from, valid_to=valid_to, deleted=deleted, no_auto_answer=no_auto_answer,
                      registered_at=now)  # fmt: skip
        session.add(row)
        session.flush()
        if sealed:
            row.sealed_values = cipher.encrypt(json.dumps(sealed, ensure_ascii=False, sort_keys=True), service.sealed_aad(row.id))
            session.flush()
        out.append(service.Registered(atena_no, kind_code, record_key, version))
    return out


def snapshot(session: Session) -> list[tuple[Any, ...]]:
    """Every row as it reads back (sensitive items decrypted with their row id), without ids."""
    session.expire_all()
    rows = session.scalars(select(Fukuhon)).all()
    return sorted(
        (r.atena_no, r.info_kind_code, r.record_key, r.version, r.dataset, r.edition, json.dumps(r.values, sort_keys=True),
         json.dumps(service.copy_values(r, CIPHER), sort_keys=True), r.sealed_values is not None, r.valid_from, r.valid_to,
         r.deleted, r.no_auto_answer, r.registered_at)  # fmt: skip
        for r in rows
    )


def _count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Fukuhon)) or 0)


HELD = [
    tax(A[0]),
    tax(A[1]),
    tax(A[2]),
    tax(A[3], no_auto_answer=True),
    {"atena_no": A[4], "info_kind_code": NHI, "record_key": "1", "values": {**NHI_VALUES}, "valid_from": "2024-04-01"},
]
LATER = NOW + timedelta(hours=1)


def mixed_batch() -> list[dict[str, Any]]:
    return [
        tax(A[0]),  # held unchanged
        tax(A[1], values={**TAX_VALUES, "K003": "3600000"}),  # changed (a sensitive item)
        tax(A[2], valid_to="2025-03-31"),  # changed (the period only)
        tax(A[3]),  # changed (the flag only)
        tax(A[5]),  # new
        tax(A[6]), tax(A[6], values={**TAX_VALUES, "K005": "6000"}),  # new, then changed in the same batch
        tax(A[7]), tax(A[7]),  # new, then the same again in the same batch
        tax(A[0], key="2023"),  # a new record key of a held person
        tax(A[1], delete=True, values={}),  # a deletion (its values are not checked)
        {"atena_no": A[4], "info_kind_code": NHI, "record_key": "1", "values": {**NHI_VALUES, "H001": 1},
         "valid_from": "2024-04-01"},
        {"atena_no": A[8], "info_kind_code": CHILD, "record_key": "", "values": {"C001": "1", "C002": "1"},
         "valid_from": "2024-09-30"},  # the older layout edition; an empty key is record "1"
        {"atena_no": A[8], "info_kind_code": CHILD, "record_key": "1", "values": {"C001": "1", "C005": None},
         "valid_from": "2024-10-01"},  # the newer edition: a new version of the same record
    ]  # fmt: skip


def test_mixed_batch_same_as_row_by_row(session: Session, catalogue: Catalogue) -> None:
    service.register_fukuhon(session, catalogue, HELD, NOW, CIPHER)
    session.commit()
    expected = reference_register(session, catalogue, mixed_batch(), LATER, CIPHER)
    expected_rows = snapshot(session)
    session.rollback()
    assert _count(session) == len(HELD)

    got = service.register_fukuhon(session, catalogue, mixed_batch(), LATER, CIPHER)
    session.commit()
    assert got == expected
    assert [r.added for r in got] == [r.added for r in expected]
    assert [r.version for r in got] == [1, 2, 2, 2, 1, 1, 2, 1, 1, 1, 3, 1, 1, 2]
    assert [r.added for r in got].count(False) == 3  # A0, the repeated A7, the NHI copy (1 == "1")
    assert snapshot(session) == expected_rows

    # Every row's sealed items open with its own id as AAD (the ids were reserved before
    # the insert); and a row-by-row insert after it takes the next id without a clash.
    for row in session.scalars(select(Fukuhon)):
        service.copy_values(row, CIPHER)
    reference_register(session, catalogue, [tax(A[9])], LATER, CIPHER)
    session.commit()
    assert _count(session) == len(expected_rows) + 1


def test_rerun_adds_nothing(session: Session, catalogue: Catalogue) -> None:
    """A batch sent again adds nothing (a batch naming one copy twice with different
    contents is not such a batch: its last record wins each time)."""
    unique = list({(r["atena_no"], r["info_kind_code"], r["record_key"] or "1"): r for r in HELD + mixed_batch()}.values())
    service.register_fukuhon(session, catalogue, HELD, NOW, CIPHER)
    first = service.register_fukuhon(session, catalogue, unique, NOW, CIPHER)
    session.commit()
    rows = snapshot(session)
    assert sum(r.added for r in first) == 8
    again = service.register_fukuhon(session, catalogue, unique, LATER, CIPHER)
    session.commit()
    assert snapshot(session) == rows
    assert not any(r.added for r in again)
    assert [r.version for r in again] == [r.version for r in first]


def test_refused_batch_same_problems_nothing_written(session: Session, catalogue: Catalogue) -> None:
    service.register_fukuhon(session, catalogue, HELD, NOW, CIPHER)
    session.commit()
    bad = [
        tax(A[5]),  # fine
        tax(A[6], values={**TAX_VALUES, "K002": "9", "K999": "1"}),  # not in the code list; unknown item
        tax(A[7], values={"K001": "2024"}),  # K002 is required
        "not an object",
        tax("12345"),  # not a 統合宛名番号
        tax(A[8], valid_from="2024-13-01"),
        tax(A[9], valid_to="2024-01-01"),  # ends before it starts
        {**tax(A[9]), "info_kind_code": "TM99999999999999"},
        tax(A[10], values=["K001"]),
        tax(A[1], values={**TAX_VALUES, "K003": "-1"}),  # below the minimum
        tax(A[1], key="x" * 65),
        tax(A[2], values={**TAX_VALUES, "K001": "２０２４"}),  # full-width digits
    ]
    with pytest.raises(Problem) as expected:
        reference_register(session, catalogue, bad, LATER, CIPHER)
    session.rollback()
    with pytest.raises(Problem) as got:
        service.register_fukuhon(session, catalogue, bad, LATER, CIPHER)
    session.rollback()
    assert (got.value.status, got.value.code, got.value.title, got.value.detail) == (
        expected.value.status, expected.value.code, expected.value.title, expected.value.detail)  # fmt: skip
    assert got.value.extra == expected.value.extra
    errors = got.value.extra["errors"]
    assert {e["index"] for e in errors} == set(range(1, len(bad)))  # all but the first, each named
    assert all(isinstance(e["message"], str) and e["message"] for e in errors)
    assert _count(session) == len(HELD)


def _valid_value(item: Any) -> str:
    if item.type == "code":
        return str(next(iter(item.codes)))
    if item.type == "year":
        return "2024"
    if item.type == "date":
        return "2024-01-01"
    if item.type == "integer":
        return str(item.minimum if item.minimum is not None else 0)
    return "x"


TRICKY = ["", " ", "0", "-1", "1", "12", "2024", "20240101", "2024-01-01", "2024-02-30", "２０２４", "1.5", "+1",
          "1e3", "999999999999999", "-999999999999", "x" * 200, "ア", "00", "9999"]  # fmt: skip


def test_quick_layout_check_never_looser_than_the_catalogue(catalogue: Catalogue) -> None:
    """The per-edition check says yes only when `validate_record` finds no issue (and for
    a valid record it does say yes, so the catalogue is not asked for every record)."""
    checked = 0
    for kind in catalogue.info_kinds.values():
        for edition in kind.editions:
            layout = service._Layout.of(edition)
            base = {it.code: _valid_value(it) for it in edition.items if it.required}
            on = edition.valid_from
            assert layout.fits(base) and not catalogue.validate_record(kind.code, base, on, edition.edition)
            for item in edition.items:
                for value in [*TRICKY, *(item.codes or {})]:
                    values = {**base, item.code: value}
                    issues = catalogue.validate_record(kind.code, values, on, edition.edition)
                    assert layout.fits(values) == (not issues), (kind.code, item.code, value)
                    checked += 1
            assert not layout.fits({**base, "Z999": "1"})
    assert checked > 500


def test_batch_of_ten_thousand_across_person_chunks(session: Session, catalogue: Catalogue) -> None:
    """More persons than one look-up takes (2,000): every held copy is found."""
    many = [tax(make_atena_no(100 + n), valid_from=date(2024, 6, 1).isoformat()) for n in range(service.MAX_BATCH)]
    first = service.register_fukuhon(session, catalogue, many, NOW, CIPHER)
    session.commit()
    assert all(r.added and r.version == 1 for r in first)
    again = service.register_fukuhon(session, catalogue, many, LATER, CIPHER)
    session.commit()
    assert not any(r.added for r in again)
    assert _count(session) == service.MAX_BATCH
