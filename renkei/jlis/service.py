"""J-LIS logic: number ↔ resident code, and the relay of pseudonym acquisition to the hub."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from renkei.core import bulk, ids
from renkei.core.crypto.field import FieldCipher
from renkei.core.db import KernelTables
from renkei.core.errors import Problem
from renkei.core.records import Columns
from renkei.core.text.normalize import address_key, name_key
from renkei.core.wire.contract import (
    ACQUISITION_RESOLVE,
    AcquisitionResolve,
    IdentitySearch,
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


@dataclass(frozen=True)
class Identity:
    """A citizen's 基本4情報 (氏名, カナ, 生年月日, 性別, 住所) as J-LIS holds them."""

    family_name: str
    given_name: str
    family_kana: str
    given_kana: str
    birth_date: date
    sex: str
    address: str

    def sealed(self) -> str:
        return json.dumps(
            {
                "family_name": self.family_name, "given_name": self.given_name, "family_kana": self.family_kana,
                "given_kana": self.given_kana, "birth_date": self.birth_date.isoformat(), "sex": self.sex,
                "address": self.address,
            },
            ensure_ascii=False,
        )  # fmt: skip

    @classmethod
    def opened(cls, text: str) -> Identity:
        data = json.loads(text)
        return cls(**{**data, "birth_date": date.fromisoformat(data["birth_date"])})


def identity_aad(resident_code: str) -> tuple[str, str, str]:
    return ("citizens", "identity", resident_code)


def identity_key(family_name: str, given_name: str, birth_date: date, sex: str) -> str:
    """What the blind index of a citizen's identity is made of (name, birth date, sex),
    the name by the kernel's key (width, spaces, 旧字・異体字 folded)."""
    return f"identity|{name_key(family_name)}{name_key(given_name)}|{birth_date.isoformat()}|{sex}"


def load_citizens(
    session: Session,
    cipher: FieldCipher,
    rows: Iterable[tuple[str, str, str]],
    now: datetime,
    identities: dict[str, Identity] | None = None,
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
            n += load_pairs(session, cipher, chunk, now, _identities_of(chunk, identities))
            chunk = []
    if chunk:
        n += load_pairs(session, cipher, chunk, now, _identities_of(chunk, identities))
    return n


def _identities_of(
    rows: Sequence[tuple[str, str, str]], identities: dict[str, Identity] | None
) -> list[Identity | None] | None:
    """The identity of each row (by resident code), when any were given."""
    if not identities:
        return None
    return [identities.get(code) for _, code, _ in rows]


# Columns of a pairs CSV (`renkei jlis import pairs`); the 基本4情報 columns are optional
# (all of them or none: a pair with them can be found by the identity search).
PAIR_COLUMNS = Columns(
    names={
        "個人番号": "individual_number", "住民票コード": "resident_code", "地方公共団体コード": "lg_code",
        "氏": "family_name", "名": "given_name", "氏（カナ）": "family_kana", "名（カナ）": "given_kana",
        "生年月日": "birth_date", "性別": "sex", "住所": "address",
    },
    required=frozenset({"individual_number", "resident_code", "lg_code"}),
)  # fmt: skip
IDENTITY_FIELDS = {
    "family_name": "氏", "given_name": "名", "family_kana": "氏（カナ）", "given_kana": "名（カナ）",
    "birth_date": "生年月日", "sex": "性別", "address": "住所",
}  # fmt: skip


def parse_identities(records: Sequence[dict[str, Any]]) -> list[Identity | None]:
    """The 基本4情報 of each pair record: None when it has none of the fields; all of them
    checked otherwise (the first bad record is a Problem 422 with its ``index``)."""
    out: list[Identity | None] = []
    for index, rec in enumerate(records):
        given = {k: rec.get(k) for k in IDENTITY_FIELDS if rec.get(k) not in (None, "")}
        if not given:
            out.append(None)
            continue
        for key, label in IDENTITY_FIELDS.items():
            value = given.get(key)
            if not isinstance(value, str) or not value.strip() or len(value) > 300:
                raise Problem(422, "missing_field", f"{label}を入力してください（基本4情報は全項目が必要です）。",
                              key, index=index)  # fmt: skip
        if given["sex"] not in ("1", "2", "9"):
            raise Problem(422, "invalid_sex", "性別は 1（男）、2（女）、9（不明）のいずれかです。", index=index)
        try:
            born = date.fromisoformat(str(given["birth_date"]))
        except ValueError:
            raise Problem(422, "bad_date", "生年月日の日付形式が誤っています（YYYY-MM-DD）。", index=index) from None
        out.append(
            Identity(
                family_name=str(given["family_name"]).strip(), given_name=str(given["given_name"]).strip(),
                family_kana=str(given["family_kana"]).strip(), given_kana=str(given["given_kana"]).strip(),
                birth_date=born, sex=str(given["sex"]), address=str(given["address"]).strip(),
            )
        )  # fmt: skip
    return out


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


def load_pairs(
    session: Session,
    cipher: FieldCipher,
    rows: Sequence[tuple[str, str, str]],
    now: datetime,
    identities: Sequence[Identity | None] | None = None,
) -> int:
    """Set-based load of checked (number, code, lg) rows: one lookup of the known blind
    indexes and resident codes, one multi-row insert. Returns the pairs added.

    A pair already held, or a resident code already held, is kept as it is (a row
    repeated in the batch is added once); a number held with another resident code is
    refused (409 ``resident_code_changed``, with the row's ``index``): changes are not
    a bulk load's business. ``identities`` (one per row, or None) are the 基本4情報 a new
    citizen is stored with, sealed, with the blind index the identity search uses.
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
            who = identities[i] if identities is not None else None
            new.append(
                {
                    "resident_code": code,
                    "individual_number_enc": cipher.encrypt(number, number_aad(code)),
                    "individual_number_index": index,
                    "lg_code": lg,
                    "registered_at": now,
                    "identity_enc": cipher.encrypt(who.sealed(), identity_aad(code)) if who else None,
                    "identity_index": (
                        cipher.blind_index(identity_key(who.family_name, who.given_name, who.birth_date, who.sex))
                        if who
                        else None
                    ),
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


# --- identity search on 基本4情報 ------------------------------------------------------


@dataclass(frozen=True)
class IdentityAnswer:
    status: str  # found | not_found | multiple
    matches: int
    individual_number: str | None
    message: str


def search_identity(session: Session, cipher: FieldCipher, query: IdentitySearch) -> IdentityAnswer:
    """本人確認情報の検索: the citizens whose 氏名, 生年月日 and 性別 match (by blind index)
    and whose address matches once opened (by the kernel's address key: width, kanji
    numerals, 丁目/番地/号 written either way). One match gives its
    individual number; none or several give none, with a clear Japanese answer — never a
    guess."""
    index = cipher.blind_index(identity_key(query.family_name, query.given_name, query.birth_date, query.sex))
    rows = session.execute(
        select(Citizen.resident_code, Citizen.identity_enc, Citizen.individual_number_enc).where(
            Citizen.identity_index == index
        )
    ).all()
    wanted = address_key(query.address)
    matches = []
    for code, sealed, number in rows:
        if sealed is None:
            continue
        who = Identity.opened(cipher.decrypt(sealed, identity_aad(code)))
        if address_key(who.address) == wanted:
            matches.append((code, number))
    if not matches:
        return IdentityAnswer(
            "not_found", 0, None, "該当する本人確認情報がありません（基本4情報をご確認ください）。"
        )
    if len(matches) > 1:
        return IdentityAnswer(
            "multiple",
            len(matches),
            None,
            f"基本4情報に該当する方が{len(matches)}名います。個人番号は特定できません（届出書等で確認してください）。",
        )
    code, sealed_number = matches[0]
    return IdentityAnswer(
        "found", 1, cipher.decrypt(sealed_number, number_aad(code)), "該当する方が1名見つかりました。"
    )
