"""J-LIS logic: number ↔ resident code, and the relay of pseudonym acquisition to the hub."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from renkei.core import ids
from renkei.core.crypto.field import FieldCipher
from renkei.core.db import KernelTables
from renkei.core.errors import Problem
from renkei.core.wire.contract import (
    ACQUISITION_RESOLVE,
    AcquisitionResolve,
    ResolveItem,
    SubmitItem,
)
from renkei.core.wire.outbox import enqueue
from renkei.jlis.models import Citizen, RelayedAcquisition

MAX_BATCH = 10_000


def number_aad(resident_code: str) -> tuple[str, str, str]:
    """AAD of a citizen's sealed individual number: bound to its row."""
    return ("citizens", "individual_number", resident_code)


def load_citizens(
    session: Session, cipher: FieldCipher, rows: Iterable[tuple[str, str, str]], now: datetime
) -> int:
    """Bulk load (individual number, resident code, lg code); existing pairs are kept.

    The number is stored sealed with its blind index, never in clear.
    """
    n = 0
    for number, code, lg in rows:
        ids.validate(ids.IdKind.INDIVIDUAL_NUMBER, number)
        ids.validate(ids.IdKind.RESIDENT_CODE, code)
        index = cipher.blind_index(number)
        known = session.scalar(select(Citizen).where(Citizen.individual_number_index == index))
        if known is not None and known.resident_code != code:
            raise Problem(
                409,
                "resident_code_changed",
                "住民票コードの変更は一括登録では扱えません（変更の手続で行ってください）。",
            )
        if known is None and session.get(Citizen, code) is None:
            session.add(
                Citizen(
                    resident_code=code,
                    individual_number_enc=cipher.encrypt(number, number_aad(code)),
                    individual_number_index=index,
                    lg_code=lg,
                    registered_at=now,
                )
            )
            n += 1
    session.flush()
    return n


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
            .tuples()
            .all()
        )
    before: dict[str, tuple[str, str]] = {}  # acquisition no → (org code, resident code)
    for part in _parts(sorted({i.acquisition_no for i in items})):
        for relayed_no, relayed_org, relayed_code in session.execute(
            select(RelayedAcquisition.acquisition_no, RelayedAcquisition.org_code, RelayedAcquisition.resident_code)
            .where(RelayedAcquisition.acquisition_no.in_(part))
            .order_by(RelayedAcquisition.id)
        ).tuples():
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
