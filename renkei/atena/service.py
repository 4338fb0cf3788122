"""Integrated-addressee logic over a session: numbering, links, translation, affair checks."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from renkei.atena.models import AtenaSerial, BasicFour, BusinessLink, InquiryLog, Person
from renkei.catalogue import Catalogue
from renkei.core import ids
from renkei.core.crypto.field import FieldCipher
from renkei.core.errors import Problem
from renkei.core.roles import PermissionDenied, has_role

MAX_BATCH = 10_000
NUMBER_AAD = ("persons", "individual_number")
SEXES = {"1", "2", "9"}


def _aad(atena_no: str) -> tuple[str, str, str]:
    return (*NUMBER_AAD, atena_no)


def _text(rec: dict[str, Any], name: str, label: str, max_len: int) -> str:
    value = rec.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Problem(422, "missing_field", f"{label}を入力してください。", name)
    if len(value) > max_len:
        raise Problem(422, "too_long", f"{label}は{max_len}文字以内で入力してください。", name)
    return value


def _date(value: Any, label: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise Problem(422, "bad_date", f"{label}の日付形式が誤っています（YYYY-MM-DD）。") from None


def issue_atena_no(session: Session, now: datetime) -> str:
    row = AtenaSerial(issued_at=now)
    session.add(row)
    session.flush()
    return ids.make_atena_no(row.id)


@dataclass(frozen=True)
class ResidentInput:
    individual_number: str
    family_name: str
    given_name: str
    family_kana: str
    given_kana: str
    birth_date: date
    sex: str
    postal_code: str
    address: str
    lg_code: str
    business_numbers: dict[str, str]
    effective_on: date


def parse_resident(rec: dict[str, Any]) -> ResidentInput:
    number = str(rec.get("individual_number", ""))
    problem = ids.check(ids.IdKind.INDIVIDUAL_NUMBER, number)
    if problem is not None:
        raise Problem(422, "invalid_individual_number", problem.message, reason=problem.code)
    sex = str(rec.get("sex", ""))
    if sex not in SEXES:
        raise Problem(422, "invalid_sex", "性別は 1（男）、2（女）、9（不明）のいずれかです。")
    lg = str(rec.get("lg_code", ""))
    lg_problem = ids.check(ids.IdKind.LG_CODE, lg)
    if lg_problem is not None:
        raise Problem(422, "invalid_lg_code", lg_problem.message)
    business = rec.get("business_numbers") or {}
    if not isinstance(business, dict):
        raise Problem(422, "bad_business_numbers", "業務宛名番号は {業務: 番号} の形で指定してください。")
    for system, no in business.items():
        if not isinstance(system, str) or not 1 <= len(system) <= 40:
            raise Problem(422, "bad_business_system", "業務システムIDは1〜40文字で指定してください。")
        p = ids.check(ids.IdKind.ATENA_NO, str(no))
        if p is not None:
            raise Problem(422, "invalid_business_atena_no", f"業務「{system}」の宛名番号: {p.message}")
    postal = str(rec.get("postal_code", ""))
    if not (postal.isascii() and postal.isdigit() and len(postal) == 7):
        raise Problem(422, "invalid_postal_code", "郵便番号は7桁の数字で入力してください。")
    return ResidentInput(
        individual_number=number,
        family_name=_text(rec, "family_name", "氏", 100),
        given_name=_text(rec, "given_name", "名", 100),
        family_kana=_text(rec, "family_kana", "氏（カナ）", 100),
        given_kana=_text(rec, "given_kana", "名（カナ）", 100),
        birth_date=_date(rec.get("birth_date"), "生年月日"),
        sex=sex,
        postal_code=postal,
        address=_text(rec, "address", "住所", 300),
        lg_code=lg,
        business_numbers={str(k): str(v) for k, v in business.items()},
        effective_on=_date(rec.get("effective_on") or rec.get("birth_date"), "異動日"),
    )


def register_residents(
    session: Session, cipher: FieldCipher, records: list[dict[str, Any]], now: datetime
) -> list[str]:
    """Number residents: reuse the 統合宛名番号 of a known individual number, else issue one.

    All or nothing: the first invalid record refuses the batch, naming its index.
    """
    if not 1 <= len(records) <= MAX_BATCH:
        raise Problem(422, "bad_count", f"1〜{MAX_BATCH}件で指定してください。")
    parsed = []
    for index, rec in enumerate(records):
        try:
            parsed.append(parse_resident(rec if isinstance(rec, dict) else {}))
        except Problem as exc:
            exc.extra["index"] = index
            raise
    out = []
    for r in parsed:
        index_value = cipher.blind_index(r.individual_number)
        person = session.scalar(select(Person).where(Person.individual_number_index == index_value))
        if person is None:
            atena_no = issue_atena_no(session, now)
            person = Person(
                atena_no=atena_no,
                individual_number_enc=cipher.encrypt(r.individual_number, _aad(atena_no)),
                individual_number_index=index_value,
                residence="resident",
                pseudonym_status="none",
                created_at=now,
            )
            session.add(person)
            session.flush()  # persons row first: basic_four and links refer to it
            change = "登録"
        else:
            change = "更新"
        session.add(
            BasicFour(
                atena_no=person.atena_no,
                family_name=r.family_name,
                given_name=r.given_name,
                family_kana=r.family_kana,
                given_kana=r.given_kana,
                birth_date=r.birth_date,
                sex=r.sex,
                postal_code=r.postal_code,
                address=r.address,
                lg_code=r.lg_code,
                change_kind=change,
                effective_on=r.effective_on,
                recorded_at=now,
            )
        )
        for system, no in r.business_numbers.items():
            link = session.scalar(
                select(BusinessLink).where(BusinessLink.system == system, BusinessLink.business_atena_no == no)
            )
            if link is None:
                session.add(BusinessLink(system=system, business_atena_no=no, atena_no=person.atena_no, linked_at=now))
            elif link.atena_no != person.atena_no:
                raise Problem(
                    409,
                    "business_number_taken",
                    f"業務「{system}」の宛名番号は別の人に紐付いています。",
                )
        session.flush()
        out.append(person.atena_no)
    return out


def individual_numbers(session: Session, cipher: FieldCipher, atena_nos: Iterable[str]) -> dict[str, str]:
    """Decrypt individual numbers (for the J-LIS relay only)."""
    wanted = list(atena_nos)
    out = {}
    for p in session.scalars(select(Person).where(Person.atena_no.in_(wanted))):
        if p.individual_number_enc is not None:
            out[p.atena_no] = cipher.decrypt(p.individual_number_enc, _aad(p.atena_no))
    return out


def persons_without_pseudonym(session: Session, limit: int = MAX_BATCH) -> list[str]:
    return list(
        session.scalars(
            select(Person.atena_no).where(Person.pseudonym_status != "bound").order_by(Person.atena_no).limit(limit)
        )
    )


def set_pseudonym_status(session: Session, atena_nos: Iterable[str], status: str) -> None:
    for p in session.scalars(select(Person).where(Person.atena_no.in_(list(atena_nos)))):
        p.pseudonym_status = status
    session.flush()


def translate(session: Session, system: str, business_atena_no: str) -> str:
    """業務宛名番号 → 統合宛名番号; business systems never see the latter."""
    problem = ids.check(ids.IdKind.ATENA_NO, business_atena_no)
    if problem is not None:
        raise Problem(422, "invalid_business_atena_no", problem.message)
    atena_no = session.scalar(
        select(BusinessLink.atena_no).where(
            BusinessLink.system == system, BusinessLink.business_atena_no == business_atena_no
        )
    )
    if atena_no is None:
        raise Problem(404, "unknown_business_atena_no", f"業務「{system}」の宛名番号「{business_atena_no}」は登録されていません。")
    return atena_no


INQUIRY = "照会"


def authorize_inquiry(catalogue: Catalogue, roles: Iterable[str], procedure_code: str) -> str:
    """The principal must hold ``<affair>:照会`` for the procedure's affair; returns the affair code.

    ``roles`` are the authenticated principal's roles (a session's staff roles, or an API
    token's scopes that the staff member still holds).
    """
    affair = catalogue.affair_of(procedure_code)
    if affair is None:
        raise Problem(422, "unknown_procedure", f"事務手続「{procedure_code}」は登録されていません。")
    if not has_role(roles, INQUIRY, affair=affair.code):
        raise PermissionDenied(
            "affair_not_permitted",
            f"この職員は事務「{affair.name}」の照会権限を持っていません。",
            needed=f"{affair.code}:{INQUIRY}",
        )
    return affair.code


def log_inquiry(session: Session, **fields: Any) -> None:
    session.add(InquiryLog(**fields))
    session.flush()
