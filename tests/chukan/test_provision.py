"""Both ends of an answer: what a provider's chukan answers (`service.answer_provision`,
the contract's ProvisionAnswer) is what an asking chukan accepts (`service.check_answer`),
for 回答あり, 回答待ち and 該当なし; a serial answered before is refused writing nothing.
On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from renkei.catalogue import Catalogue
from renkei.chukan import service
from renkei.chukan.models import PendingAcquisition, ProvisionRecord
from renkei.core.crypto.field import FieldCipher
from renkei.core.errors import Problem
from renkei.core.ids import make_atena_no
from renkei.core.wire import contract
from renkei.core.wire.contract import (
    PROVISION_ANSWER_TYP,
    ChukanInquiry,
    Delivery,
    ProvisionRequest,
)
from tests.chukan.conftest import NOW

TAX = "TM00000000000002"
PROCEDURE = "JT01010000074001"
INQUIRER = "1310410000000000"
PROVIDER = "1311480000000000"
VALUES = {"K001": "2024", "K002": "1", "K003": "3500000", "K004": "120000", "K005": "5000", "K006": "2"}
PEOPLE = {"answered": make_atena_no(11), "pending": make_atena_no(12), "no_data": make_atena_no(13)}


def _provider(session: Session, catalogue: Catalogue, cipher: FieldCipher) -> None:
    """Copies of the first two people (the second for manual answers), and a pseudonym for each."""
    for status, atena_no in PEOPLE.items():
        session.add(PendingAcquisition(acquisition_no=f"acq-{status}", atena_no=atena_no, requested_at=NOW))
    session.flush()
    service.bind_deliveries(session, [Delivery(acquisition_no=f"acq-{s}", pseudonym=f"p-{s}") for s in PEOPLE], NOW)
    copy = {"info_kind_code": TAX, "record_key": "2024", "values": dict(VALUES), "valid_from": "2024-06-01"}
    service.register_fukuhon(
        session,
        catalogue,
        [{**copy, "atena_no": PEOPLE["answered"]}, {**copy, "atena_no": PEOPLE["pending"], "no_auto_answer": True}],
        NOW,
        cipher,
    )
    session.commit()


def _ask(serial: str, status: str) -> ProvisionRequest:
    return ProvisionRequest(
        serial=serial, pseudonym=f"p-{status}", inquirer_org=INQUIRER, procedure_code=PROCEDURE,
        info_kind_code=TAX, as_of=date(2024, 6, 3),
    )  # fmt: skip


@pytest.mark.parametrize("status", list(PEOPLE))
def test_what_a_provider_answers_the_asker_accepts(
    session: Session, catalogue: Catalogue, cipher: FieldCipher, status: str
) -> None:
    _provider(session, catalogue, cipher)
    serial = "20240603000000000001"
    provision = service.answer_provision(session, cipher, _ask(serial, status), NOW)
    session.commit()
    assert provision.answer.status == status and provision.atena_no == PEOPLE[status]
    [row] = session.scalars(select(ProvisionRecord).where(ProvisionRecord.serial == serial))
    kept = (row.direction, row.outcome, row.counterpart_org, row.atena_no)
    assert kept == ("provision", status, INQUIRER, PEOPLE[status])
    # The body the provider signs for the inquirer, as the asking chukan reads it.
    body = provision.answer.dump()
    asked = ChukanInquiry(
        atena_no=make_atena_no(99), provider_org=PROVIDER, procedure_code=PROCEDURE, info_kind_code=TAX,
        as_of=date(2024, 6, 3),
    )  # fmt: skip
    result = service.check_answer(catalogue, PROVISION_ANSWER_TYP, body, serial=serial, status=status, req=asked)
    assert (result.serial, result.status) == (serial, status)
    if status == "answered":
        assert result.values == VALUES and (result.valid_from, result.valid_to) == ("2024-06-01", None)
        assert result.edition == contract.parse(contract.ProvisionAnswer, body).edition
    else:
        assert set(body) == {"serial", "status", "info_kind_code", "as_of"}  # no content, not even nulls
        assert result.values is None and "values" not in result.dump()


def test_a_serial_answered_before_is_refused_and_writes_nothing(
    session: Session, catalogue: Catalogue, cipher: FieldCipher
) -> None:
    _provider(session, catalogue, cipher)
    serial = "20240603000000000002"
    service.answer_provision(session, cipher, _ask(serial, "answered"), NOW)
    session.commit()
    with pytest.raises(Problem) as exc:
        service.answer_provision(session, cipher, _ask(serial, "no_data"), NOW)
    assert (exc.value.status, exc.value.code) == (409, "duplicate_serial")
    session.rollback()
    assert session.scalar(select(func.count()).select_from(ProvisionRecord)) == 1
