"""J-LIS logic: number ↔ resident code, and the relay of pseudonym acquisition to the hub."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from renkei.core import bulk, ids
from renkei.core.crypto.field import FieldCipher
from renkei.core.db import KernelTables
from renkei.core.errors import Problem
from renkei.core.records import Columns
from renkei.core.wire.contract import (
    ACQUISITION_RESOLVE,
    AcquisitionResolve,
    ResolveItem,
    SubmitItem,
)
from renkei.core.wire.outbox import enqueue
from renkei.jlis.models import Citizen, RelayedAcquisition

MAX_BATCH = 10_000
_IN_CHUNK = 5_000  # values per IN (…) list: under SQLite's 32,766 bound parameters


def number_aad(resident_code: str) -> tuple[str, str, str]:
    """AAD of a citizen's sealed individual number: bound to its row."""
    return ("citizens", "individual_number", resident_code)


def load_citizens(
    session: Session, cipher: FieldCipher, rows: Iterable[tuple[str, str, str]], now: datetime
) -> int:
    """Bulk load (individual number, resident code, lg code); existing pairs are kept.

    The number is stored sealed with its blind index, never in clear. A malformed number
    or code raises `ids.InvalidId` (its message never repeats the value).
    """
    n = 0
    chunk: list[tuple[str, str, str]] = []
    for row in rows:
        number, code, _ = row
        ids.validate(ids.IdKind.INDIVIDUAL_NUMBER, number)
        ids.validate(ids.IdKind.RESIDENT_CODE, code)
        chunk.append(row)
        if len(chunk) == MAX_BATCH:
            n += load_pairs(session, cipher, chunk, now)
            chunk = []
    if chunk:
        n += load_pairs(session, cipher, chunk, now)
    return n


# Columns of a pairs CSV (`renkei jlis import pairs`).
PAIR_COLUMNS = Columns(
    names={"個人番号": "individual_number", "住民票コード": "resident_code", "地方公共団体コード": "lg_code"},
    required=frozenset({"individual_number", "resident_code", "lg_code"}),
)


def parse_pairs(records: Sequence[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(individual number, resident code, lg code) of each record, checked; the first bad
    one is a Problem 422 carrying its ``index`` (the message never repeats the value)."""
    out = []
    for index, rec in enumerate(records):
        number, code, lg = (str(rec.get(k, "")) for k in ("individual_number", "resident_code", "lg_code"))
        problem = ids.check(ids.IdKind.INDIVIDUAL_NUMBER, number)
        if problem is not None:
            raise Problem(422, "invalid_individual_number", problem.message, index=index)
        problem = ids.check(ids.IdKind.RESIDENT_CODE, code)
        if problem is not None:
            raise Problem(422, "invalid_resident_code", problem.message, index=index)
        problem = ids.check(ids.IdKind.LG_CODE, lg)
        if problem is not None:
            raise Problem(422, "invalid_lg_code", problem.message, index=index)
        out.append((number, code, lg))
    return out


def load_pairs(session: Session, cipher: FieldCipher, rows: Sequence[tuple[str, str, str]], now: datetime) -> int:
    """Set-based load of checked (number, code, lg) rows: one lookup of the known blind
    indexes and resident codes, one multi-row insert. Returns the pairs added.

    A pair already held, or a resident code already held, is kept as it is (a row
    repeated in the batch is added once); a number held with another resident code is
    refused (409 ``resident_code_changed``, with the row's ``index``): changes are not
    a bulk load's business.
    """
    table = cast(Table, Citizen.__table__)
    indexes = [cipher.blind_index(number) for number, _, _ in rows]
    by_index: dict[str, str] = {}
    held_codes: set[str] = set()
    wanted = list(set(indexes))
    codes = list({code for _, code, _ in rows})
    for part in range(0, max(len(wanted), len(codes)), _IN_CHUNK):
        by_index.update(
            (index, code)
            for index, code in session.execute(
                select(Citizen.individual_number_index, Citizen.resident_code).where(
                    bulk.among(session, Citizen.individual_number_index, wanted[part : part + _IN_CHUNK])
                )
            )
        )
        held_codes.update(
            session.scalars(select(Citizen.resident_code).where(bulk.among(session, Citizen.resident_code, codes[part : part + _IN_CHUNK])))
        )
    held_codes.update(by_index.values())
    new: list[dict[str, Any]] = []
    for i, ((number, code, lg), index) in enumerate(zip(rows, indexes, strict=True)):
        known = by_index.get(index)
        if known is not None and known != code:
            raise Problem(
                409,
                "resident_code_changed",
                "住民票コードの変更は一括登録では扱えません（変更の手続で行ってください）。",
                index=i,
            )
        if known is None and code not in held_codes:
            new.append(
                {
                    "resident_code": code,
                    "individual_number_enc": cipher.encrypt(number, number_aad(code)),
                    "individual_number_index": index,
                    "lg_code": lg,
                    "registered_at": now,
                }
            )
            by_index[index] = code
            held_codes.add(code)
    bulk.insert_rows(session, table, new)
    return len(new)


def individual_number(cipher: FieldCipher, citizen: Citizen) -> str:
    return cipher.decrypt(citizen.individual_number_enc, number_aad(citizen.resident_code))


@dataclass(frozen=True)
class SubmitResult:
    acquisition_no: str
    # relayed | invalid_individual_number | unknown_individual_number | bad_acquisition_no
    # | acquisition_no_conflict (the number was relayed before for another person or organization)
    status: str


def _parts(values: Sequence[str], size: int = 5000) -> Iterable[Sequence[str]]:
    """Slices of at most ``size`` values: one IN list stays well under both backends'
    limits on bound parameters."""
    for i in range(0, len(values), size):
        yield values[i : i + size]


def submit_acquisitions(
    session: Session,
    kernel: KernelTables,
    cipher: FieldCipher,
    *,
    org_code: str,
    items: Sequence[SubmitItem],
    hub_url: str,
    hub_org: str,
    now: datetime,
) -> list[SubmitResult]:
    """Step 2–3: turn each individual number into the resident code and queue it for the hub.

    Items are checked one by one (a status each, e.g. ``invalid_individual_number``):
    one bad item does not hold up the others of the batch. Set-based: the blind indexes of
    the batch are looked up in one query, the acquisition numbers relayed before in
    another, the new relays written in one multi-row INSERT, and the whole batch goes to
    the hub as one message.

    Idempotent: an acquisition number relayed before for the same person and organization
    (atena retrying) is relayed again — the hub answers it with the same pseudonym — but
    not recorded twice; one relayed for another person or organization is refused
    (``acquisition_no_conflict``) here rather than by the hub, out of atena's sight.
    """
    if len(items) > MAX_BATCH:
        raise Problem(422, "bad_count", f"一度に{MAX_BATCH}件までです。")
    results: list[SubmitResult] = []
    forward: dict[str, ResolveItem] = {}
    new: list[dict[str, object]] = []
    indexes = {i.individual_number: cipher.blind_index(i.individual_number) for i in items}
    by_index: dict[str, str] = {}
    for part in _parts(sorted(set(indexes.values()))):
        by_index.update(
            session.execute(
                select(Citizen.individual_number_index, Citizen.resident_code).where(
                    Citizen.individual_number_index.in_(part)
                )
            )
            .all()
        )
    before: dict[str, tuple[str, str]] = {}  # acquisition no → (org code, resident code)
    for part in _parts(sorted({i.acquisition_no for i in items})):
        for relayed_no, relayed_org, relayed_code in session.execute(
            select(RelayedAcquisition.acquisition_no, RelayedAcquisition.org_code, RelayedAcquisition.resident_code)
            .where(RelayedAcquisition.acquisition_no.in_(part))
            .order_by(RelayedAcquisition.id)
        ):
            before.setdefault(relayed_no, (relayed_org, relayed_code))
    for item in items:
        acq_no, number = item.acquisition_no, item.individual_number
        if not (acq_no.isascii() and acq_no.isdigit() and len(acq_no) == 20):
            results.append(SubmitResult(acq_no, "bad_acquisition_no"))
            continue
        if ids.check(ids.IdKind.INDIVIDUAL_NUMBER, number) is not None:
            results.append(SubmitResult(acq_no, "invalid_individual_number"))
            continue
        code = by_index.get(indexes[number])
        if code is None:
            results.append(SubmitResult(acq_no, "unknown_individual_number"))
            continue
        seen = before.get(acq_no)
        if seen is None:
            before[acq_no] = (org_code, code)
            new.append({"acquisition_no": acq_no, "org_code": org_code, "resident_code": code, "relayed_at": now})
        elif seen != (org_code, code):
            results.append(SubmitResult(acq_no, "acquisition_no_conflict"))
            continue
        forward.setdefault(acq_no, ResolveItem(acquisition_no=acq_no, resident_code=code, org_code=org_code))
        results.append(SubmitResult(acq_no, "relayed"))
    if new:
        session.execute(insert(cast(Table, RelayedAcquisition.__table__)), new)  # Core: no per-row ORM work
    if forward:
        enqueue(
            session,
            kernel,
            destination=hub_url.rstrip("/") + ACQUISITION_RESOLVE.path,
            audience=hub_org,
            typ=ACQUISITION_RESOLVE.typ,
            body=AcquisitionResolve(items=list(forward.values())).dump(),
            now=now,
        )
    return results
