"""Hub logic: registry, serials, pseudonym issuance, rule check, conversion, records.

Plain functions over a session; no HTTP here.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from renkei.catalogue import Catalogue
from renkei.core import ids
from renkei.core.crypto.envelope import parse_kid
from renkei.core.crypto.field import create_secret_file
from renkei.core.db import KernelTables
from renkei.core.errors import Problem
from renkei.core.sql import Prepared
from renkei.core.wire.contract import (
    PSEUDONYM_DELIVER,
    Delivery,
    HubInquiry,
    PseudonymDeliver,
    ResolveItem,
)
from renkei.core.wire.outbox import enqueue
from renkei.hub.models import (
    Acquisition,
    Base,
    Link,
    Organization,
    OrgKey,
    ProvisionRecord,
    Pseudonym,
    Serial,
)

MAX_BATCH = 10_000
_JST = ZoneInfo("Asia/Tokyo")


def load_or_create_secret(path: Path) -> bytes:
    """The hub's key for hashing resident codes; 0600, generated on first start.

    Several hub processes may start at once: whoever creates the file first wins, and
    every process reads back the key that is on disk.
    """
    if not path.exists():
        create_secret_file(path, secrets.token_bytes(32))
    return path.read_bytes()


# --- registry ---------------------------------------------------------------


# The kinds of node an organization of each registered role runs: a member
# municipality or agency its atena and chukan, the national pieces one node each.
NODES_OF_ROLE: dict[str, frozenset[str]] = {
    "member": frozenset({"atena", "chukan"}),
    "hub": frozenset({"hub"}),
    "jlis": frozenset({"jlis"}),
    "tsa": frozenset({"tsa"}),
    "portal": frozenset({"portal"}),
}


def register_org(
    session: Session,
    public_doc: dict[str, Any],
    *,
    kind: str,
    now: datetime,
    lg_code: str | None = None,
    chukan_url: str | None = None,
    role: str = "member",
) -> Organization:
    """Add or update an organization and its nodes' public keys (keys are never deleted: rotation).

    ``public_doc`` lists the keys of every node of the organization; each kid names its
    node (``<機関コード>:<node kind>:<use>:<n>``), and only node kinds the role runs are
    accepted, so that no member can publish a key speaking as the hub or J-LIS.
    """
    org_code = str(public_doc["org_code"])
    if ids.check(ids.IdKind.ORG_CODE, org_code) is not None:
        raise Problem(422, "invalid_org_code", "機関コードの形式が誤っています。", org_code)
    if role not in NODES_OF_ROLE:
        raise Problem(422, "invalid_role", "機関の役割が誤っています。", role)
    for k in public_doc.get("keys", []):
        kid = str(k.get("kid", ""))
        parsed = parse_kid(kid)
        owner = session.get(OrgKey, kid)
        if parsed is None or parsed.org_code != org_code or (owner is not None and owner.org_code != org_code):
            raise Problem(
                422,
                "key_owner_mismatch",
                "公開鍵の鍵IDが登録する機関のものではありません。",
                kid,
            )
        if parsed.node not in NODES_OF_ROLE[role]:
            raise Problem(
                422,
                "key_node_not_allowed",
                "この機関の役割では登録できないノードの公開鍵です。",
                f"{kid} (role {role})",
            )
    org = session.get(Organization, org_code)
    if org is None:
        org = Organization(org_code=org_code, registered_at=now)
        session.add(org)
    org.name = str(public_doc.get("name", ""))
    org.kind = kind
    org.lg_code = lg_code
    org.chukan_url = chukan_url
    org.role = role
    org.active = True
    for k in public_doc.get("keys", []):
        key = session.get(OrgKey, k["kid"])
        if key is None:
            session.add(
                OrgKey(kid=k["kid"], org_code=org_code, use=k["use"], jwk=dict(k), status=k.get("status", "active"))
            )
        else:
            key.status = k.get("status", "active")
            key.jwk = dict(k)
    session.flush()
    return org


def registry_documents(session: Session) -> list[dict[str, Any]]:
    orgs = session.scalars(select(Organization).where(Organization.active)).all()
    keys: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for k in session.scalars(select(OrgKey).order_by(OrgKey.kid)):
        keys[k.org_code].append({**k.jwk, "status": k.status})
    return [
        {
            "org_code": o.org_code,
            "name": o.name,
            "kind": o.kind,
            "endpoints": {"chukan": o.chukan_url} if o.chukan_url else {},
            "keys": keys[o.org_code],
        }
        for o in orgs
    ]


def key_document(session: Session, kid: str) -> dict[str, Any] | None:
    key = session.get(OrgKey, kid)
    if key is None:
        return None
    org = session.get(Organization, key.org_code)
    if org is None or not org.active:
        return None
    return {**key.jwk, "status": key.status}


def require_role(session: Session, org_code: str, role: str, message: str) -> Organization:
    """The sending organization, if the registry gives it ``role``; else 403."""
    org = session.get(Organization, org_code)
    if org is None or org.role != role:
        raise Problem(403, "sender_not_allowed", message, org_code)
    return org


def today_in_japan(now: datetime) -> date:
    """The day in Japan at ``now``: rules take effect on Japanese dates."""
    return now.astimezone(_JST).date()


@dataclass(frozen=True)
class OrgView:
    """What routing an inquiry needs of a registered organization."""

    org_code: str
    kind: str
    role: str
    chukan_url: str | None


ORG_CACHE_SECONDS = 30.0
_ORG_CACHE: dict[tuple[str, str], tuple[float, OrgView]] = {}


def member_view(session: Session, org_code: str) -> OrgView:
    """`member`, kept in this process for ``ORG_CACHE_SECONDS``: a registry change (a new
    chukan URL, a suspension) reaches every hub process within that time, as its keys do
    (`DbRegistryView`). Two lookups an inquiry, otherwise."""
    where = (str(session.get_bind().engine.url), org_code)
    hit = _ORG_CACHE.get(where)
    if hit is not None and time.monotonic() - hit[0] < ORG_CACHE_SECONDS:
        return hit[1]
    org = member(session, org_code)
    view = OrgView(org.org_code, org.kind, org.role, org.chukan_url)
    _ORG_CACHE[where] = (time.monotonic(), view)
    return view


def member(session: Session, org_code: str) -> Organization:
    org = session.get(Organization, org_code)
    if org is None or not org.active:
        raise Problem(404, "unknown_organization", "登録されていない機関です。", org_code)
    return org


# --- serials ----------------------------------------------------------------


def _table(model: type[Base]) -> Table:
    """A model's table: bulk statements on it skip the ORM's per-row bookkeeping."""
    return cast(Table, model.__table__)


def issue_serial(session: Session, kind: str, now: datetime) -> str:
    """20 digits: issue date and a 12-digit database sequence (ours; the real format is not public).

    One INSERT … RETURNING, the statement built once (an inquiry issues one serial)."""
    row_id = _ISSUE_SERIAL.scalar(session, {"kind": kind, "issued_at": now})
    return f"{now:%Y%m%d}{row_id:012d}"


def issue_serials(session: Session, kind: str, now: datetime, count: int) -> list[str]:
    """``count`` serials in one statement (one multi-row INSERT … RETURNING), in order."""
    if count <= 0:
        return []
    t = _table(Serial)
    ids_ = session.scalars(
        insert(t).returning(t.c.id, sort_by_parameter_order=True), [{"kind": kind, "issued_at": now}] * count
    ).all()
    return [f"{now:%Y%m%d}{row_id:012d}" for row_id in ids_]


# --- pseudonym acquisition --------------------------------------------------


def create_acquisitions(session: Session, org_code: str, count: int, now: datetime) -> list[str]:
    """Step 1: acquisition numbers for an organization's chukan (set-based: the serials
    and the acquisitions each in one multi-row INSERT)."""
    org = member(session, org_code)
    if org.role != "member" or not org.chukan_url:
        raise Problem(403, "not_a_member", "符号を取得できる機関ではありません。", org_code)
    if not 1 <= count <= MAX_BATCH:
        raise Problem(422, "bad_count", f"取得番号の件数は1〜{MAX_BATCH}件で指定してください。", str(count))
    out = issue_serials(session, "acquisition", now, count)
    session.execute(
        insert(_table(Acquisition)),
        [
            {"acquisition_no": no, "org_code": org_code, "serial": no, "requested_at": now, "status": "pending"}
            for no in out
        ],
    )
    return out


def resident_key(secret: bytes, resident_code: str) -> str:
    return hmac.new(secret, resident_code.encode(), hashlib.sha256).hexdigest()


def pseudonym_for(session: Session, link_id: int, org_code: str, now: datetime) -> str:
    return pseudonyms_for(session, [link_id], org_code, now)[link_id]


def pseudonyms_for(session: Session, link_ids: Iterable[int], org_code: str, now: datetime) -> dict[int, str]:
    """The organization's pseudonym of each person (link id): the one issued before, or a
    new one (one SELECT for the set, one multi-row INSERT for the new ones)."""
    wanted = set(link_ids)
    if not wanted:
        return {}
    out: dict[int, str] = {}
    for part in _parts(sorted(wanted)):
        out.update(
            session.execute(
                select(Pseudonym.link_id, Pseudonym.pseudonym).where(
                    Pseudonym.org_code == org_code, Pseudonym.link_id.in_(part)
                )
            ).all()
        )
    new = {link_id: secrets.token_urlsafe(30) for link_id in sorted(wanted - out.keys())}  # 40 chars each
    if new:
        session.execute(
            insert(_table(Pseudonym)),
            [{"pseudonym": v, "link_id": k, "org_code": org_code, "issued_at": now} for k, v in new.items()],
        )
        out.update(new)
    return out


def _parts(values: Sequence[Any], size: int = 5000) -> Iterable[Sequence[Any]]:
    """Slices of at most ``size`` values: one IN list stays well under both backends'
    limits on bound parameters."""
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _links(session: Session, keys: set[str], now: datetime) -> dict[str, int]:
    """Link id per resident key: found, or created (one multi-row INSERT … RETURNING)."""
    found: dict[str, int] = {}
    for part in _parts(sorted(keys)):
        found.update(session.execute(select(Link.resident_key, Link.id).where(Link.resident_key.in_(part))).all())
    missing = sorted(keys - found.keys())
    if missing:
        t = _table(Link)
        rows = session.execute(
            insert(t).returning(t.c.resident_key, t.c.id, sort_by_parameter_order=True),
            [{"resident_key": k, "created_at": now} for k in missing],
        ).all()
        found.update(rows)
    return found


@dataclass(frozen=True)
class ResolveResult:
    acquisition_no: str
    status: str  # issued | already_resolved | unknown_acquisition | org_mismatch | invalid_resident_code | resident_code_mismatch


def resolve_acquisitions(
    session: Session,
    kernel: KernelTables,
    secret: bytes,
    items: Sequence[ResolveItem],
    now: datetime,
) -> list[ResolveResult]:
    """Steps 3–4: J-LIS names the person by resident code; issue the pseudonym and queue its
    delivery (one message per organization for the whole batch).

    Set-based: the acquisitions, the links and the pseudonyms of the batch are each read
    in one query and written in one multi-row statement; the items are then judged one by
    one in memory, in order (a status each), as a repeated item in the batch would be.
    """
    if len(items) > MAX_BATCH:
        raise Problem(422, "bad_count", f"一度に{MAX_BATCH}件までです。")
    # acquisition no → [org code, link id, status]: the state the items below change in turn.
    state: dict[str, list[Any]] = {}
    wanted_nos = sorted({i.acquisition_no for i in items})
    for part in _parts(wanted_nos):
        for no, owner, link_id, status in session.execute(
            select(Acquisition.acquisition_no, Acquisition.org_code, Acquisition.link_id, Acquisition.status).where(
                Acquisition.acquisition_no.in_(part)
            )
        ):
            state[no] = [owner, link_id, status]
    # Pass 1: the checks that need no link; the keyed hash of each resident code that passes.
    keys: dict[int, str] = {}
    for n, item in enumerate(items):
        acq = state.get(item.acquisition_no)
        if acq is None or acq[0] != item.org_code or ids.check(ids.IdKind.RESIDENT_CODE, item.resident_code) is not None:
            continue
        keys[n] = resident_key(secret, item.resident_code)
    links = _links(session, set(keys.values()), now)
    # Pass 2: each item in order; the pseudonyms asked for, per organization.
    results: list[ResolveResult] = []
    issued: list[tuple[str, str, int]] = []  # (acquisition no, org code, link id), in order
    for n, item in enumerate(items):
        acq_no = item.acquisition_no
        acq = state.get(acq_no)
        if acq is None:
            results.append(ResolveResult(acq_no, "unknown_acquisition"))
            continue
        if acq[0] != item.org_code:
            results.append(ResolveResult(acq_no, "org_mismatch"))
            continue
        key = keys.get(n)
        if key is None:
            results.append(ResolveResult(acq_no, "invalid_resident_code"))
            continue
        link_id = links[key]
        if acq[1] is not None and acq[1] != link_id:
            # An acquisition number names one person, once and for all.
            results.append(ResolveResult(acq_no, "resident_code_mismatch"))
            continue
        # Re-acquisition is idempotent: the same pseudonym is delivered again.
        results.append(ResolveResult(acq_no, "issued" if acq[2] == "pending" else "already_resolved"))
        acq[1], acq[2] = link_id, "issued"
        issued.append((acq_no, acq[0], link_id))
    if issued:
        t = _table(Acquisition)
        session.execute(
            update(t)
            .where(t.c.acquisition_no == bindparam("no"))
            .values(status="issued", link_id=bindparam("link"), resolved_at=now),
            [{"no": no, "link": link_id} for no, link_id in {no: link_id for no, _, link_id in issued}.items()],
        )
    by_org: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for no, org_code, link_id in issued:
        by_org[org_code].append((no, link_id))
    for org_code, batch in by_org.items():
        pseudonyms = pseudonyms_for(session, (link_id for _, link_id in batch), org_code, now)
        org = member(session, org_code)
        assert org.chukan_url is not None
        enqueue(
            session,
            kernel,
            destination=org.chukan_url.rstrip("/") + PSEUDONYM_DELIVER.path,
            audience=org_code,
            typ=PSEUDONYM_DELIVER.typ,
            body=PseudonymDeliver(
                items=[Delivery(acquisition_no=no, pseudonym=pseudonyms[link_id]) for no, link_id in batch]
            ).dump(),
            now=now,
        )
    return results


# --- inquiries ----------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    serial: str
    provider_url: str
    provider_pseudonym: str


def begin_inquiry(
    session: Session,
    catalogue: Catalogue,
    inquirer_org: str,
    req: HubInquiry,
    now: datetime,
    today: date,
) -> tuple[Route | None, Problem | None]:
    """Check, record and route one inquiry (its fields were checked by the contract).

    Returns (route, None) to forward, or (None, problem) for a refusal that has
    been recorded and must be committed before the problem is returned.
    """
    provider_code = req.provider_org
    inquirer = member_view(session, inquirer_org)
    provider = member_view(session, provider_code)
    # One read for both pseudonyms: the inquirer's (whose link names the person) and the
    # provider's of the same person (used only if the rule allows the inquiry).
    found = _PSEUDONYMS.first(session, {"pseudonym": req.pseudonym, "provider": provider_code})
    if found is None or found[0] != inquirer_org:
        raise Problem(404, "unknown_pseudonym", "符号エラー（照会者の機関別符号が未発行です）。")
    link_id, provider_pseudonym = found[1], found[2]
    serial = issue_serial(session, "inquiry", now)
    # The record is written once, with its outcome decided (a plain INSERT: no ORM unit of work).
    record: dict[str, Any] = {
        "serial": serial,
        "requested_at": now,
        "inquirer_org": inquirer_org,
        "inquirer_department": req.inquirer_department,
        "inquirer_user": req.inquirer_user,
        "provider_org": provider_code,
        "procedure_code": req.procedure_code,
        "info_kind_code": req.info_kind_code,
        "link_id": link_id,
        "as_of": req.as_of.isoformat(),
        "outcome": "pending",
        "reason_code": None,
        "reason": None,
        "rule_id": None,
        "rule_source": None,
        "answered_at": None,
    }
    decision = catalogue.check_rule(
        inquirer.kind, req.procedure_code, provider.kind, req.info_kind_code, today
    )
    if not decision.allowed:
        record.update(outcome="refused", reason_code=decision.code, reason=decision.message, answered_at=now)
        _INSERT_RECORD.run(session, record)
        return None, Problem(
            403,
            "rule_violation",
            "情報照会は許可されていません。",
            decision.message or "",
            serial=serial,
            reason_code=decision.code,
        )
    assert decision.rule is not None
    record.update(rule_id=decision.rule.id, rule_source=decision.rule.source)
    if provider_pseudonym is None or not provider.chukan_url:
        record.update(
            outcome="no_pseudonym",
            reason_code="provider_pseudonym_missing",
            reason="符号エラー（機関別符号未発行）",
            answered_at=now,
        )
        _INSERT_RECORD.run(session, record)
        return None, Problem(
            404,
            "provider_pseudonym_missing",
            "符号エラー（機関別符号未発行）",
            "情報提供者はこの人の符号を取得していません。",
            serial=serial,
        )
    _INSERT_RECORD.run(session, record)
    return Route(serial=serial, provider_url=provider.chukan_url, provider_pseudonym=provider_pseudonym), None


def finish_inquiry(session: Session, serial: str, outcome: str, now: datetime, reason_code: str | None = None) -> None:
    done = _FINISH_RECORD.run(
        session, {"key": serial, "outcome": outcome, "reason_code": reason_code, "answered_at": now}
    )
    if done != 1:
        raise Problem(404, "unknown_serial", "処理通番が見つかりません。", serial)


# The inquiry path's statements, built once (Core on the tables: no per-row ORM work,
# and no statement to build and key for the cache on every inquiry) and run lean
# (`Prepared`: no Core execution machinery per statement).
_OWN = _table(Pseudonym).alias("own")
_TARGET = _table(Pseudonym).alias("target")
_PSEUDONYMS = Prepared(
    select(_OWN.c.org_code, _OWN.c.link_id, _TARGET.c.pseudonym)
    .select_from(_OWN)
    .outerjoin(_TARGET, (_TARGET.c.link_id == _OWN.c.link_id) & (_TARGET.c.org_code == bindparam("provider")))
    .where(_OWN.c.pseudonym == bindparam("pseudonym")),
    ("pseudonym", "provider"),
)
_ISSUE_SERIAL = Prepared(insert(_table(Serial)).returning(_table(Serial).c.id), ("kind", "issued_at"))
_RECORDS = _table(ProvisionRecord)
_RECORD_KEYS = (  # what `begin_inquiry` writes (``withheld`` keeps its default)
    "serial", "requested_at", "inquirer_org", "inquirer_department", "inquirer_user", "provider_org",
    "procedure_code", "info_kind_code", "link_id", "as_of", "outcome", "reason_code", "reason", "rule_id",
    "rule_source", "answered_at",
)  # fmt: skip
_INSERT_RECORD = Prepared(insert(_RECORDS), _RECORD_KEYS)
_FINISH_RECORD = Prepared(
    update(_RECORDS).where(_RECORDS.c.serial == bindparam("key")), ("key", "outcome", "reason_code", "answered_at")
)


def records_for_link(session: Session, link_id: int) -> list[ProvisionRecord]:
    return list(
        session.scalars(
            select(ProvisionRecord).where(ProvisionRecord.link_id == link_id).order_by(ProvisionRecord.requested_at)
        )
    )


def count_records(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(ProvisionRecord)) or 0)
