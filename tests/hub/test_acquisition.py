"""Hub side of pseudonym acquisition: acquisition numbers, resolution, delivery outbox."""

from __future__ import annotations

import json
import random
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from renkei.core import ids
from renkei.core.errors import Problem
from renkei.hub import service
from renkei.hub.models import Acquisition, Base, Link, Organization, Pseudonym, kernel
from tests.hub.conftest import JLIS, NAKANO, NENKIN, NOW, SECRET, SHINJUKU, resolve

RNG = random.Random(20250401)
CODE_A = ids.generate_resident_code(RNG)
CODE_B = ids.generate_resident_code(RNG)


def _bad_check_digit(code: str) -> str:
    return code[:-1] + str((int(code[-1]) + 1) % 10)


def _outbox(session: Session) -> list[dict[str, Any]]:
    t = kernel.outbox
    return [dict(r) for r in session.execute(select(t).order_by(t.c.id)).mappings()]


def _resolve(session: Session, org: str, code: str) -> tuple[str, service.ResolveResult]:
    [acq] = service.create_acquisitions(session, org, 1, NOW)
    [res] = resolve(
        session,
        kernel,
        SECRET,
        [{"acquisition_no": acq, "resident_code": code, "org_code": org}],
        NOW,
    )
    return acq, res


def _pseudonym_of(session: Session, acq_no: str) -> str:
    for row in _outbox(session):
        for item in row["body"]["items"]:
            if item["acquisition_no"] == acq_no:
                return str(item["pseudonym"])
    raise AssertionError(f"no delivery for {acq_no}")


def test_create_acquisitions(federation: Session) -> None:
    nos = service.create_acquisitions(federation, SHINJUKU, 3, NOW)
    federation.commit()
    assert len(nos) == 3 and len(set(nos)) == 3
    assert all(re.fullmatch(r"[0-9]{20}", n) for n in nos)
    rows = federation.scalars(select(Acquisition).order_by(Acquisition.acquisition_no)).all()
    assert [r.acquisition_no for r in rows] == sorted(nos)
    assert {(r.org_code, r.status, r.resolved_at) for r in rows} == {(SHINJUKU, "pending", None)}
    assert all(r.serial == r.acquisition_no for r in rows)
    # a second batch never repeats a number
    again = service.create_acquisitions(federation, NAKANO, 2, NOW)
    assert not set(again) & set(nos)


def test_create_acquisitions_refusals(federation: Session) -> None:
    s = federation
    for count in (0, -1, service.MAX_BATCH + 1):
        with pytest.raises(Problem) as exc:
            service.create_acquisitions(s, SHINJUKU, count, NOW)
        assert exc.value.code == "bad_count" and exc.value.status == 422, count
    with pytest.raises(Problem) as exc:
        service.create_acquisitions(s, JLIS, 1, NOW)
    assert exc.value.code == "not_a_member" and exc.value.status == 403
    # a member without an intermediate server cannot receive a pseudonym either
    nenkin = s.get(Organization, NENKIN)
    assert nenkin is not None
    nenkin.chukan_url = None
    with pytest.raises(Problem) as exc:
        service.create_acquisitions(s, NENKIN, 1, NOW)
    assert exc.value.code == "not_a_member"
    with pytest.raises(Problem) as exc:
        service.create_acquisitions(s, "1399990000000000", 1, NOW)
    assert exc.value.code == "unknown_organization" and exc.value.status == 404
    nakano = s.get(Organization, NAKANO)
    assert nakano is not None
    nakano.active = False
    with pytest.raises(Problem) as exc:
        service.create_acquisitions(s, NAKANO, 1, NOW)
    assert exc.value.code == "unknown_organization"
    s.flush()
    assert s.scalar(select(func.count()).select_from(Acquisition)) == 0


def test_resolve_issues_distinct_pseudonyms_per_org_on_one_link(federation: Session) -> None:
    s = federation
    acq_s, res_s = _resolve(s, SHINJUKU, CODE_A)
    acq_n, res_n = _resolve(s, NAKANO, CODE_A)
    s.commit()
    assert res_s == service.ResolveResult(acq_s, "issued")
    assert res_n == service.ResolveResult(acq_n, "issued")
    links = s.scalars(select(Link)).all()
    assert len(links) == 1
    assert re.fullmatch(r"[0-9a-f]{64}", links[0].resident_key)
    pseudonyms = s.scalars(select(Pseudonym).order_by(Pseudonym.org_code)).all()
    assert [(p.org_code, p.link_id) for p in pseudonyms] == sorted(
        [(SHINJUKU, links[0].id), (NAKANO, links[0].id)]
    )
    p_s, p_n = _pseudonym_of(s, acq_s), _pseudonym_of(s, acq_n)
    assert p_s != p_n
    assert {p.pseudonym for p in pseudonyms} == {p_s, p_n}
    assert all(len(p.pseudonym) == 40 for p in pseudonyms)
    for acq in (acq_s, acq_n):
        row = s.get(Acquisition, acq)
        assert row is not None and row.status == "issued" and row.resolved_at == NOW

    # another person gets another link
    _resolve(s, SHINJUKU, CODE_B)
    assert s.scalar(select(func.count()).select_from(Link)) == 2
    # a new acquisition for a person already known gives the same pseudonym again
    acq_again, res_again = _resolve(s, SHINJUKU, CODE_A)
    assert res_again.status == "issued"
    assert _pseudonym_of(s, acq_again) == p_s
    assert s.scalar(select(func.count()).select_from(Link)) == 2
    assert s.scalar(select(func.count()).select_from(Pseudonym)) == 3


def test_resolve_is_idempotent(federation: Session) -> None:
    s = federation
    acq, first = _resolve(s, SHINJUKU, CODE_A)
    s.commit()
    pseudonym = _pseudonym_of(s, acq)
    later = NOW + timedelta(hours=1)
    [again] = resolve(
        s,
        kernel,
        SECRET,
        [{"acquisition_no": acq, "resident_code": CODE_A, "org_code": SHINJUKU}],
        later,
    )
    s.commit()
    assert first.status == "issued"
    assert again == service.ResolveResult(acq, "already_resolved")
    boxes = _outbox(s)
    assert len(boxes) == 2  # delivered again, so a lost delivery can be repeated
    assert boxes[1]["body"] == {"items": [{"acquisition_no": acq, "pseudonym": pseudonym}]}
    assert s.scalar(select(func.count()).select_from(Pseudonym)) == 1
    assert s.scalar(select(func.count()).select_from(Link)) == 1


def test_resolve_refusals(federation: Session) -> None:
    s = federation
    [acq1, acq2] = service.create_acquisitions(s, SHINJUKU, 2, NOW)
    items = [
        {"acquisition_no": "20250401999999999999", "resident_code": CODE_A, "org_code": SHINJUKU},
        {"acquisition_no": acq1, "resident_code": CODE_A, "org_code": NAKANO},
        {"acquisition_no": acq2, "resident_code": _bad_check_digit(CODE_A), "org_code": SHINJUKU},
        {"acquisition_no": acq2, "resident_code": CODE_A[:-1], "org_code": SHINJUKU},
        {"acquisition_no": acq2, "org_code": SHINJUKU},
        {},
    ]
    results = resolve(s, kernel, SECRET, items, NOW)
    s.commit()
    assert [r.status for r in results] == [
        "unknown_acquisition",
        "org_mismatch",
        "invalid_resident_code",
        "invalid_resident_code",
        "invalid_resident_code",
        "unknown_acquisition",
    ]
    assert [r.acquisition_no for r in results[:4]] == ["20250401999999999999", acq1, acq2, acq2]
    assert _outbox(s) == []
    assert s.scalar(select(func.count()).select_from(Link)) == 0
    assert s.scalar(select(func.count()).select_from(Pseudonym)) == 0
    assert {a.status for a in s.scalars(select(Acquisition))} == {"pending"}

    with pytest.raises(Problem) as exc:
        resolve(s, kernel, SECRET, [{}] * (service.MAX_BATCH + 1), NOW)
    assert exc.value.code == "bad_count"


def test_resolve_enqueues_one_delivery_per_organization(federation: Session) -> None:
    s = federation
    shinjuku = service.create_acquisitions(s, SHINJUKU, 2, NOW)
    nakano = service.create_acquisitions(s, NAKANO, 1, NOW)
    items = [
        {"acquisition_no": shinjuku[0], "resident_code": CODE_A, "org_code": SHINJUKU},
        {"acquisition_no": nakano[0], "resident_code": CODE_A, "org_code": NAKANO},
        {"acquisition_no": shinjuku[1], "resident_code": CODE_B, "org_code": SHINJUKU},
        {"acquisition_no": "00000000000000000000", "resident_code": CODE_B, "org_code": NAKANO},
    ]
    results = resolve(s, kernel, SECRET, items, NOW)
    s.commit()
    assert [r.status for r in results] == ["issued", "issued", "issued", "unknown_acquisition"]
    boxes = {r["audience"]: r for r in _outbox(s)}
    assert set(boxes) == {SHINJUKU, NAKANO}
    # the registered URL of 新宿区 ends with "/": no double slash
    assert boxes[SHINJUKU]["destination"] == "https://127.0.0.1:9101/v1/acquisitions/deliver"
    assert boxes[NAKANO]["destination"] == "https://127.0.0.1:9201/v1/acquisitions/deliver"
    for row in boxes.values():
        assert row["typ"] == "pseudonym.deliver"
        assert (
            row["delivered_at"] is None and row["attempts"] == 0 and row["next_attempt_at"] == NOW
        )
        assert all(set(item) == {"acquisition_no", "pseudonym"} for item in row["body"]["items"])
        text = json.dumps(row["body"])
        assert CODE_A not in text and CODE_B not in text
    assert [i["acquisition_no"] for i in boxes[SHINJUKU]["body"]["items"]] == shinjuku
    assert [i["acquisition_no"] for i in boxes[NAKANO]["body"]["items"]] == nakano
    s_items = boxes[SHINJUKU]["body"]["items"]
    assert s_items[0]["pseudonym"] != s_items[1]["pseudonym"]
    assert s_items[0]["pseudonym"] != boxes[NAKANO]["body"]["items"][0]["pseudonym"]
    assert len({r["message_id"] for r in boxes.values()}) == 2


def test_resident_code_is_stored_only_as_keyed_hash(federation: Session) -> None:
    s = federation
    for org in (SHINJUKU, NAKANO, NENKIN):
        _resolve(s, org, CODE_A)
    _resolve(s, SHINJUKU, CODE_B)
    [bad] = service.create_acquisitions(s, NAKANO, 1, NOW)
    resolve(
        s,
        kernel,
        SECRET,
        [{"acquisition_no": bad, "resident_code": _bad_check_digit(CODE_B), "org_code": NAKANO}],
        NOW,
    )
    s.commit()
    keys = set(s.scalars(select(Link.resident_key)))
    assert keys == {service.resident_key(SECRET, CODE_A), service.resident_key(SECRET, CODE_B)}
    assert all(re.fullmatch(r"[0-9a-f]{64}", k) for k in keys)
    # the key depends on the hub's secret: without it the hash cannot be recomputed
    assert service.resident_key(b"x" * 32, CODE_A) not in keys

    secrets_ = [CODE_A, CODE_B, _bad_check_digit(CODE_B)]
    scanned = 0
    for table in Base.metadata.sorted_tables:
        for row in s.execute(select(table)).all():
            scanned += 1
            text = json.dumps(
                [str(v) if not isinstance(v, dict) else v for v in row], ensure_ascii=False
            )
            for code in secrets_:
                assert code not in text, f"resident code found in table {table.name}"
    assert scanned > 0

    bind = s.get_bind()
    if bind.dialect.name == "sqlite":
        s.close()
        db_path = Path(str(bind.engine.url.database))
        for path in [db_path, *db_path.parent.glob(db_path.name + "-*")]:
            data = path.read_bytes()
            for code in secrets_:
                assert code.encode() not in data, f"resident code found in {path.name}"


def test_load_or_create_secret(tmp_path: Path) -> None:
    path = tmp_path / "hub" / "resident.key"
    key = service.load_or_create_secret(path)
    assert len(key) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert service.load_or_create_secret(path) == key


def test_acquisition_number_names_one_person_for_good(federation: Session) -> None:
    acq, first = _resolve(federation, SHINJUKU, CODE_A)
    assert first.status == "issued"
    deliveries = len(_outbox(federation))
    [again] = resolve(
        federation, kernel, SECRET, [{"acquisition_no": acq, "resident_code": CODE_B, "org_code": SHINJUKU}], NOW
    )
    assert again.status == "resident_code_mismatch"
    assert len(_outbox(federation)) == deliveries  # nothing delivered for another person


def test_a_large_batch_is_resolved_as_item_by_item(federation: Session) -> None:
    """The set-based path on a batch of 1,200: one pseudonym per person and organization
    whatever the batch holds — persons known before and new, one person under two numbers,
    a number repeated, refusals in between — and one delivery message for the lot."""
    s = federation
    rng = random.Random(5)
    codes = list(dict.fromkeys(ids.generate_resident_code(rng) for _ in range(1000)))
    known = codes[:100]
    _, res = _resolve(s, SHINJUKU, known[0])  # one person already has a pseudonym
    earlier = _pseudonym_of(s, _)
    assert res.status == "issued"
    nos = service.create_acquisitions(s, SHINJUKU, len(codes) + 1, NOW)
    assert len(set(nos)) == len(nos) and nos == sorted(nos)  # in issue order
    items = [{"acquisition_no": n, "resident_code": c, "org_code": SHINJUKU} for n, c in zip(nos, codes, strict=False)]
    items.append({"acquisition_no": nos[-1], "resident_code": codes[1], "org_code": SHINJUKU})  # codes[1] again
    items.append(items[5])  # the same item twice
    items.append({"acquisition_no": nos[7], "resident_code": codes[8], "org_code": SHINJUKU})  # another person
    items.append({"acquisition_no": nos[9], "resident_code": codes[9], "org_code": NAKANO})
    items.append({"acquisition_no": "20250401999999999999", "resident_code": codes[9], "org_code": SHINJUKU})
    before = len(_outbox(s))
    results = resolve(s, kernel, SECRET, items, NOW)
    s.commit()
    assert [r.status for r in results] == ["issued"] * (len(codes) + 1) + [
        "already_resolved", "resident_code_mismatch", "org_mismatch", "unknown_acquisition",
    ]  # fmt: skip
    boxes = _outbox(s)[before:]
    assert len(boxes) == 1
    delivered = boxes[0]["body"]["items"]
    assert len(delivered) == len(codes) + 2
    by_no: dict[str, set[str]] = {}
    for d in delivered:
        by_no.setdefault(d["acquisition_no"], set()).add(d["pseudonym"])
    assert all(len(v) == 1 for v in by_no.values())
    assert by_no[nos[0]] == {earlier}  # the person known before: the same pseudonym
    assert by_no[nos[-1]] == by_no[nos[1]]  # one person under two numbers: one pseudonym
    assert len({p for v in by_no.values() for p in v}) == len(codes)
    assert s.scalar(select(func.count()).select_from(Link)) == len(codes)
    assert s.scalar(select(func.count()).select_from(Pseudonym)) == len(codes)
    issued = {a.acquisition_no: a for a in s.scalars(select(Acquisition).where(Acquisition.acquisition_no.in_(nos)))}
    assert all(a.status == "issued" and a.link_id is not None and a.resolved_at is not None for a in issued.values())
    assert issued[nos[-1]].link_id == issued[nos[1]].link_id
