"""住登外者 (non-residents): candidates first, then a number — 共通機能標準仕様書 §2.3.2.

The standard's flow, 機能ID by 機能ID:

- 0310007 住登外者宛名基本情報照会依頼受信: the 基本4情報 of the person asked about
  (`parse_basic_four`), from a staff screen or a business system;
- 0310005 住登外者宛名基本情報検索: `candidates` — exact and partial matches on the
  基本4情報 among every person held (residents, former residents and non-residents);
- 0310004 住登外者宛名番号付番依頼受信 and 0310001 住登外者宛名番号付番: `register` —
  only with the acknowledgement of the candidates that were shown (`acknowledgement`):
  a new number is never issued blind. The acknowledgement is a keyed hash of the query
  and of the candidates found for it; if the candidates changed since they were shown,
  the registration is refused (409 ``candidates_changed``) and the caller searches again.

Pure: a session in, values out (the routes and screens audit).

The search here is deliberately narrow — rows found by exact name or by birth date and
the first kana, then matched on the kernel's keys (renkei.core.text.normalize) — behind
`candidates(session, basic4)`, so that the search-key table of renkei.atena.search can
replace its body without touching the callers.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

import jaconv
from sqlalchemy import Table, or_, select
from sqlalchemy.orm import Session

from renkei.atena.models import BasicFour, BusinessLink, Person
from renkei.atena.search import refresh_search_keys
from renkei.atena.service import (
    LINKED,
    NUMBERED,
    SEXES,
    UNCHANGED,
    _aad,
    _date,
    _is_current,
    _text,
    issue_atena_nos,
)
from renkei.core import bulk, ids
from renkei.core.crypto.field import FieldCipher
from renkei.core.errors import Problem
from renkei.core.text.normalize import address_key, kana_key, name_key

MAX_CANDIDATES = 50
NO_CANDIDATES = "none"  # what a caller confirms when no candidate was shown

EXACT = "exact"
PARTIAL_KANA = "partial_kana"
PARTIAL_NAME = "partial_name"
MATCH_LABELS = {
    EXACT: "完全一致（氏名・生年月日・性別・住所）",
    PARTIAL_NAME: "部分一致（氏名）",
    PARTIAL_KANA: "部分一致（カナ氏名の前方・生年月日）",
}
_MATCH_ORDER = {EXACT: 0, PARTIAL_NAME: 1, PARTIAL_KANA: 2}


@dataclass(frozen=True)
class BasicFourInput:
    """The 基本4情報 of a non-resident as typed (name, kana, birth date, sex, address)."""

    family_name: str
    given_name: str
    family_kana: str
    given_kana: str
    birth_date: date
    sex: str
    postal_code: str
    address: str
    lg_code: str

    def canonical(self) -> str:
        """One line per query: what the acknowledgement is bound to."""
        return "|".join(
            (
                _key(self.family_name), _key(self.given_name), kana_key(self.family_kana), kana_key(self.given_kana),
                self.birth_date.isoformat(), self.sex, self.postal_code, address_key(self.address), self.lg_code,
            )
        )  # fmt: skip


def _key(text: str) -> str:
    """How typed names compare: the kernel's name key (width, spaces, 旧字・異体字)."""
    return name_key(text)


def _kana(text: str) -> str:
    """Kana as typed, in full-width katakana without spaces (stored as such)."""
    return jaconv.hira2kata("".join(unicodedata.normalize("NFKC", text).split())).replace("・", "")


def parse_basic_four(rec: dict[str, Any]) -> BasicFourInput:
    """0310007: the 基本4情報 of a request, checked; a Problem 422 names the field.

    The birth date is ISO (YYYY-MM-DD) here; screens convert 和暦 before."""
    sex = str(rec.get("sex", ""))
    if sex not in SEXES:
        raise Problem(422, "invalid_sex", "性別は 1（男）、2（女）、9（不明）のいずれかです。")
    postal = str(rec.get("postal_code", ""))
    if not (postal.isascii() and postal.isdigit() and len(postal) == 7):
        raise Problem(422, "invalid_postal_code", "郵便番号は7桁の数字で入力してください。")
    lg = str(rec.get("lg_code", ""))
    lg_problem = ids.check(ids.IdKind.LG_CODE, lg)
    if lg_problem is not None:
        raise Problem(422, "invalid_lg_code", lg_problem.message)
    return BasicFourInput(
        family_name=_text(rec, "family_name", "氏", 100).strip(),
        given_name=_text(rec, "given_name", "名", 100).strip(),
        family_kana=_kana(_text(rec, "family_kana", "氏（カナ）", 100)),
        given_kana=_kana(_text(rec, "given_kana", "名（カナ）", 100)),
        birth_date=_date(rec.get("birth_date"), "生年月日"),
        sex=sex,
        postal_code=postal,
        address=_text(rec, "address", "住所", 300).strip(),
        lg_code=lg,
    )


@dataclass(frozen=True)
class Candidate:
    """A person held who may be the one asked about, with how the match was made."""

    atena_no: str  # atena's own: shown to atena staff, never to a business system
    residence: str
    match: str
    family_name: str
    given_name: str
    family_kana: str
    given_kana: str
    birth_date: date
    sex: str
    postal_code: str
    address: str

    @property
    def match_label(self) -> str:
        return MATCH_LABELS[self.match]


def _match(q: BasicFourInput, row: BasicFour) -> str | None:
    same_name = (_key(row.family_name), _key(row.given_name)) == (_key(q.family_name), _key(q.given_name))
    same_address = address_key(row.address) == address_key(q.address)
    if same_name and row.birth_date == q.birth_date and row.sex == q.sex and same_address:
        return EXACT
    if same_name:
        return PARTIAL_NAME
    if row.birth_date == q.birth_date and kana_key(row.family_kana + row.given_kana).startswith(
        kana_key(q.family_kana)
    ):
        return PARTIAL_KANA
    return None


def candidates(session: Session, basic4: BasicFourInput) -> list[Candidate]:
    """0310005: persons whose current 基本4情報 match exactly or partly — the same name
    (kanji, width and spaces ignored), or the same birth date with the kana name starting
    with the family kana asked — best matches first, at most `MAX_CANDIDATES`. Residents
    and former residents count: a non-resident is registered only when nobody held is
    the person."""
    prefix = basic4.family_kana
    rows = session.execute(
        select(BasicFour, Person.residence)
        .join(Person, Person.atena_no == BasicFour.atena_no)
        .where(
            _is_current(BasicFour),
            or_(
                (BasicFour.family_name == basic4.family_name) & (BasicFour.given_name == basic4.given_name),
                (BasicFour.birth_date == basic4.birth_date) & BasicFour.family_kana.like(prefix[:1] + "%"),
            ),
        )
        .order_by(BasicFour.atena_no)
        .limit(MAX_CANDIDATES * 20)
    ).all()
    found: list[Candidate] = []
    for row, residence in rows:
        kind = _match(basic4, row)
        if kind is None:
            continue
        found.append(
            Candidate(
                atena_no=row.atena_no,
                residence=residence,
                match=kind,
                family_name=row.family_name,
                given_name=row.given_name,
                family_kana=row.family_kana,
                given_kana=row.given_kana,
                birth_date=row.birth_date,
                sex=row.sex,
                postal_code=row.postal_code,
                address=row.address,
            )
        )
    found.sort(key=lambda c: (_MATCH_ORDER[c.match], c.atena_no))
    return found[:MAX_CANDIDATES]


def acknowledgement(cipher: FieldCipher, basic4: BasicFourInput, shown: Sequence[Candidate]) -> str:
    """The token a caller sends back to register: a keyed hash (nobody outside atena can
    make one) of the query and of the candidates shown, in order. For no candidates it
    is still a token: "nothing found" is confirmed, not assumed."""
    listed = ",".join(f"{c.atena_no}:{c.match}" for c in shown) or NO_CANDIDATES
    return cipher.blind_index(f"non_resident_candidates|{basic4.canonical()}|{listed}")


@dataclass(frozen=True)
class NonResidentRegistration:
    atena_no: str  # atena's own; a business system is answered with its own number
    outcome: str  # NUMBERED | LINKED | UNCHANGED
    candidates: int  # how many were shown and acknowledged


def register(
    session: Session,
    cipher: FieldCipher,
    basic4: BasicFourInput,
    *,
    ack: str,
    choice: str,
    now: datetime,
    system: str | None = None,
    business_atena_no: str | None = None,
    source: str = "",
) -> NonResidentRegistration:
    """0310004 → 0310001: register after the candidates were seen.

    ``ack`` is the `acknowledgement` of the candidates shown for this query; if the
    candidates found now differ, 409 ``candidates_changed`` (nothing written). ``choice``
    is ``"new"`` (a new 統合宛名番号 for a 住登外者, no individual number) or the 1-based
    position of a candidate shown (the business number is linked to that person). A
    business number is linked when given; one linked to another person is 409
    ``business_number_taken``."""
    if not ack:
        raise Problem(
            422,
            "candidates_not_acknowledged",
            "候補者を確認してから登録してください（候補の検索結果の確認が必要です）。",
        )
    found = candidates(session, basic4)
    if acknowledgement(cipher, basic4, found) != ack:
        raise Problem(
            409,
            "candidates_changed",
            "候補者の検索結果が確認時から変わっています。もう一度検索して候補を確認してください。",
        )
    if business_atena_no is not None:
        problem = ids.check(ids.IdKind.ATENA_NO, business_atena_no)
        if problem is not None:
            raise Problem(422, "invalid_business_atena_no", problem.message)
    if choice == "new":
        atena_no = issue_atena_nos(session, 1, now)[0]
        bulk.insert_rows(
            session,
            cast(Table, Person.__table__),
            [{"atena_no": atena_no, "individual_number_enc": None, "individual_number_index": None,
              "residence": "non_resident", "pseudonym_status": "none", "created_at": now}],
        )  # fmt: skip
        bulk.insert_rows(
            session,
            cast(Table, BasicFour.__table__),
            [{"atena_no": atena_no, "family_name": basic4.family_name, "given_name": basic4.given_name,
              "family_kana": basic4.family_kana, "given_kana": basic4.given_kana, "birth_date": basic4.birth_date,
              "sex": basic4.sex, "postal_code": basic4.postal_code, "address": basic4.address,
              "lg_code": basic4.lg_code, "change_kind": "新規", "effective_on": now.date(),
              "status": "non_resident", "source": (source or "")[:200], "recorded_at": now}],
        )  # fmt: skip
        refresh_search_keys(session, [atena_no])  # searchable at once, like every registration
        outcome = NUMBERED
    else:
        if not (choice.isascii() and choice.isdigit() and 1 <= int(choice) <= len(found)):
            raise Problem(
                422, "bad_candidate", f"候補の番号は 1〜{len(found)} のいずれか、または new（新規付番）です。"
            )
        atena_no = found[int(choice) - 1].atena_no
        outcome = UNCHANGED
    if system is not None and business_atena_no is not None:
        holder = session.scalar(
            select(BusinessLink.atena_no).where(
                BusinessLink.system == system, BusinessLink.business_atena_no == business_atena_no
            )
        )
        if holder is None:
            session.add(BusinessLink(system=system, business_atena_no=business_atena_no, atena_no=atena_no, linked_at=now))
            session.flush()
            outcome = NUMBERED if outcome == NUMBERED else LINKED
        elif holder != atena_no:
            raise Problem(409, "business_number_taken", f"業務「{system}」の宛名番号は別の人に紐付いています。")
    return NonResidentRegistration(atena_no=atena_no, outcome=outcome, candidates=len(found))


# --- the individual number of a non-resident, through J-LIS's identity search ------------------


@dataclass(frozen=True)
class IdentityTarget:
    """Whom J-LIS is asked about: a person's current 基本4情報 (never the 統合宛名番号)."""

    atena_no: str
    has_number: bool
    family_name: str
    given_name: str
    birth_date: date
    sex: str
    address: str


def identity_target(session: Session, atena_no: str) -> IdentityTarget:
    """The current 基本4情報 of a person held; Problem 404 if unknown."""
    person = session.get(Person, atena_no)
    row = session.scalar(select(BasicFour).where(BasicFour.atena_no == atena_no, _is_current(BasicFour)).limit(1))
    if person is None or row is None:
        raise Problem(404, "unknown_atena_no", f"統合宛名番号「{atena_no}」は登録されていません。")
    return IdentityTarget(
        atena_no=atena_no,
        has_number=person.individual_number_index is not None,
        family_name=row.family_name,
        given_name=row.given_name,
        birth_date=row.birth_date,
        sex=row.sex,
        address=row.address,
    )


HELD_BY_OTHER = "held_by_other"
ALREADY_HELD = "already_held"
IDENTITY_MESSAGES = {
    ALREADY_HELD: "この方の個人番号は既に登録されています（J-LIS には照会していません）。",
    HELD_BY_OTHER: "J-LIS が回答した個人番号は別の宛名に登録されています。同一人物か確認してください（登録していません）。",
}


def store_found_number(session: Session, cipher: FieldCipher, atena_no: str, number: str) -> str:
    """Record the individual number J-LIS found for a person without one: ``found``, or
    `HELD_BY_OTHER` (another person holds it: nothing written, staff must check)."""
    index = cipher.blind_index(number)
    holder = session.scalar(select(Person.atena_no).where(Person.individual_number_index == index))
    if holder is not None and holder != atena_no:
        return HELD_BY_OTHER
    person = session.get(Person, atena_no)
    assert person is not None
    person.individual_number_enc = cipher.encrypt(number, _aad(atena_no))
    person.individual_number_index = index
    session.flush()
    return "found"
