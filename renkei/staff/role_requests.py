"""Role changes with four eyes, for every node.

The rules (DESIGN.md §5), the same for the JSON routes, the staff UI and `renkei staff`:

- nobody changes their own roles, not even through someone's request they approve;
- removing roles, and granting 監査, takes effect at once;
- a *data role* (anything but 管理 and 監査: 宛名:参照, 個人番号:表示, an affair's 照会 …)
  and 管理 itself are granted only when a second administrator approves the request —
  not the one who asked (self-approval is refused), as for large exports
  (renkei.staff.exports). 管理 is included because an administrator who could create a
  second administrator account alone could sign in with it and approve their own
  requests: four eyes would be one person's. The server's operator at the command
  line (``cli:<os user>``, appointed outside the system) grants 管理 at once: that is
  how a node gets its first administrators;
- separation of duties (`roles.check_separation`) holds for the set asked for: an
  auditor changes nothing, and an administrator holds no data role unless the node's
  policy says so (``[extra] admin_may_hold_data_roles = true``, `RolePolicy`); such a
  grant is marked as a separation-of-duties exception in its audit entry.

One request may do both: `request_roles` applies at once what needs no approval (the
removals, 管理/監査) and files a pending `RoleRequest` for the whole set asked for.
`decide` approves (the set is applied, if the account's roles are still those the
request started from) or rejects it; the requester may reject (withdraw) their own
request. A newer change of the same account supersedes its older pending requests.

Each function takes the acting principal, checks its role itself, runs in the caller's
transaction and refuses with a `Problem` (a stable code, a Japanese title) before it
writes anything, in the order its docstring states. The caller audits every step:
request (outcome ``applied`` or ``pending``), approval (``applied``), rejection
(``rejected``), and every refusal under its code.

Accounts created at set-up, before any administrator exists, do not come through here
(`renkei.staff.admin.setup_staff`).

What four eyes assume: each administrator account is one person, and every
administrator was made at set-up, by the server's operator, or approved by another
administrator. A single administrator therefore cannot make a second one alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from sqlalchemy import insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.orm import Session

from renkei.core.errors import Problem
from renkei.staff import auth
from renkei.staff.auth import AuthTables, StaffPrincipal
from renkei.staff.roles import (
    ADMIN,
    RoleConflict,
    admin_with_data_roles,
    check_separation,
    normalize_roles,
    parse_role,
    require,
)

__all__ = [
    "DEFAULT_ROLE_POLICY",
    "STATUS_LABELS",
    "RoleChange",
    "RolePolicy",
    "RoleRequest",
    "decide",
    "file_request",
    "is_operator",
    "get_request",
    "list_requests",
    "request_roles",
]

Status = Literal["pending", "applied", "rejected", "superseded"]
STATUS_LABELS: Final[Mapping[str, str]] = {
    "pending": "承認待ち",
    "applied": "適用済み",
    "rejected": "却下",
    "superseded": "後の変更により無効",
}
SEPARATION_EXCEPTION: Final = "admin_with_data_roles"


@dataclass(frozen=True)
class RolePolicy:
    """A node's role rules; `from_config` reads ``[extra] admin_may_hold_data_roles``."""

    admin_may_hold_data_roles: bool = False

    @classmethod
    def from_config(cls, extra: Mapping[str, Any]) -> RolePolicy:
        raw = extra.get("admin_may_hold_data_roles", False)
        if not isinstance(raw, bool):
            raise ValueError("admin_may_hold_data_roles must be true or false")
        return cls(admin_may_hold_data_roles=raw)


DEFAULT_ROLE_POLICY: Final = RolePolicy()


@dataclass(frozen=True)
class RoleRequest:
    """A request to set an account's roles to ``roles`` (from ``previous_roles``)."""

    id: int
    staff_id: str
    roles: tuple[str, ...]
    previous_roles: tuple[str, ...]
    requested_by: str
    requested_at: datetime
    status: str
    decided_by: str | None
    decided_at: datetime | None

    @property
    def added(self) -> tuple[str, ...]:
        return tuple(r for r in self.roles if r not in self.previous_roles)

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(r for r in self.previous_roles if r not in self.roles)

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)

    def audit_detail(self) -> dict[str, Any]:
        """What the audit entry of a step of this request says (roles, never secrets)."""
        detail: dict[str, Any] = {
            "request": self.id,
            "staff_id": self.staff_id,
            "roles": list(self.roles),
            "added": list(self.added),
            "removed": list(self.removed),
            "requested_by": self.requested_by,
        }
        if admin_with_data_roles(self.roles):
            detail["separation_exception"] = SEPARATION_EXCEPTION
        return detail


@dataclass(frozen=True)
class RoleChange:
    """What `request_roles` did: the roles the account holds now, and what waits."""

    staff_id: str
    roles: tuple[str, ...]  # held now (after what needed no approval was applied)
    previous: tuple[str, ...]  # held before
    requested: tuple[str, ...]  # the whole set asked for
    pending: RoleRequest | None  # waiting for a second administrator, if data roles were added
    superseded: tuple[int, ...] = ()

    @property
    def status(self) -> Literal["applied", "pending"]:
        return "pending" if self.pending is not None else "applied"

    def audit_detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "roles": list(self.roles),
            "previous": list(self.previous),
            "requested": list(self.requested),
        }
        if self.pending is not None:
            detail["request"] = self.pending.id
            detail["awaiting_approval"] = list(self.pending.added)
        if self.superseded:
            detail["superseded"] = list(self.superseded)
        if admin_with_data_roles(self.requested):
            detail["separation_exception"] = SEPARATION_EXCEPTION
        return detail


# --- refusals ---------------------------------------------------------------------------


def _own_roles() -> Problem:
    return Problem(
        403,
        "own_roles",
        "自分自身の権限は変更できません（承認も含みます）。別の管理者に依頼してください。",
    )


def _not_found(staff_id: str) -> Problem:
    return Problem(404, "staff_not_found", f"職員ID「{staff_id[:64]}」は登録されていません。")


def _conflict(exc: RoleConflict) -> Problem:
    return Problem(422, "role_conflict", exc.message_ja, "、".join(exc.conflicting))


def _canonical(roles: Iterable[str]) -> list[str]:
    try:
        return normalize_roles(list(roles))
    except ValueError as exc:
        raise Problem(422, "invalid_staff", str(exc)) from None


def _check(roles: Iterable[str], policy: RolePolicy) -> None:
    try:
        check_separation(roles, admin_may_hold_data_roles=policy.admin_may_hold_data_roles)
    except RoleConflict as exc:
        raise _conflict(exc) from None


# --- storage ----------------------------------------------------------------------------


def _held(stored: Any) -> list[str]:
    """The canonical roles of a staff row (a malformed stored role is dropped, as it grants nothing)."""
    out: set[str] = set()
    for r in stored if isinstance(stored, list) else []:
        try:
            out.add(str(parse_role(str(r))))
        except ValueError:
            continue
    return sorted(out)


def _current(session: Session, tables: AuthTables, staff_id: str) -> list[str] | None:
    """The account's roles, its row locked until the transaction ends (None if unknown)."""
    st = tables.staff
    stored = session.execute(
        select(st.c.roles).where(st.c.staff_id == staff_id).with_for_update()
    ).first()
    return None if stored is None else _held(stored[0])


def _request_of(row: RowMapping) -> RoleRequest:
    return RoleRequest(
        id=int(row["id"]),
        staff_id=str(row["staff_id"]),
        roles=tuple(row["roles"]),
        previous_roles=tuple(row["previous_roles"]),
        requested_by=str(row["requested_by"]),
        requested_at=row["requested_at"],
        status=str(row["status"]),
        decided_by=row["decided_by"],
        decided_at=row["decided_at"],
    )


def _supersede(
    session: Session, tables: AuthTables, staff_id: str, by: StaffPrincipal, now: datetime
) -> tuple[int, ...]:
    """Older pending requests for the account: a newer change replaces them."""
    rr = tables.role_requests
    ids = tuple(
        int(i)
        for i in session.execute(
            select(rr.c.id).where(rr.c.staff_id == staff_id, rr.c.status == "pending")
        ).scalars()
    )
    if ids:
        session.execute(
            update(rr)
            .where(rr.c.id.in_(ids), rr.c.status == "pending")
            .values(status="superseded", decided_by=by.staff_id, decided_at=now)
        )
    return ids


def get_request(
    session: Session, tables: AuthTables, request_id: int, by: StaffPrincipal
) -> RoleRequest:
    """One request, for an administrator; ``role_request_not_found`` (404) if none."""
    require(by.roles, ADMIN)
    row = (
        session.execute(select(tables.role_requests).where(tables.role_requests.c.id == request_id))
        .mappings()
        .first()
    )
    if row is None:
        raise Problem(404, "role_request_not_found", "権限変更の依頼が見つかりません。")
    return _request_of(row)


def list_requests(
    session: Session,
    tables: AuthTables,
    by: StaffPrincipal,
    *,
    status: str | None = "pending",
    limit: int = 200,
) -> list[RoleRequest]:
    """Requests for administrators, newest first (by default those awaiting approval)."""
    require(by.roles, ADMIN)
    rr = tables.role_requests
    q = select(rr).order_by(rr.c.id.desc()).limit(limit)
    if status is not None:
        q = q.where(rr.c.status == status)
    return [_request_of(r) for r in session.execute(q).mappings()]


def file_request(
    session: Session,
    tables: AuthTables,
    staff_id: str,
    roles: list[str],
    previous: list[str],
    by: StaffPrincipal,
    now: datetime,
) -> RoleRequest:
    """Record a pending request (the checks are the caller's: `request_roles`, enrolment)."""
    rr = tables.role_requests
    new_id = session.execute(
        insert(rr)
        .values(
            staff_id=staff_id,
            roles=roles,
            previous_roles=previous,
            requested_by=by.staff_id,
            requested_at=now,
            status="pending",
        )
        .returning(rr.c.id)
    ).scalar_one()
    return get_request(session, tables, int(new_id), by)


# --- the steps --------------------------------------------------------------------------


def is_operator(by: StaffPrincipal) -> bool:
    """The server's operator at the command line (`staff_admin.cli_principal`)."""
    return by.staff_id.startswith("cli:") and by.session_id is None and by.api_token_id is None


def request_roles(
    session: Session,
    tables: AuthTables,
    staff_id: str,
    roles: Iterable[str],
    by: StaffPrincipal,
    *,
    policy: RolePolicy = DEFAULT_ROLE_POLICY,
    now: datetime,
) -> RoleChange:
    """Ask to set an account's roles to ``roles``; applies what needs no approval.

    Refuses, in this order: ``role_required`` (403, not an administrator),
    ``own_roles`` (403, the account is the requester's own), ``staff_not_found`` (404),
    ``invalid_staff`` (422, a malformed role), ``role_conflict`` (422, the set breaks
    separation of duties). Then the roles that are removed, and 監査 added, are
    applied; if data roles or 管理 are added, a pending request for the whole set waits
    for a second administrator (`decide`).
    """
    require(by.roles, ADMIN)
    sid = auth._normalize_staff_id(staff_id)  # "Ａ0001" is A0001: compare as stored
    if sid == by.staff_id:
        raise _own_roles()
    current = _current(session, tables, sid)
    if current is None:
        raise _not_found(sid)
    wanted = _canonical(roles)
    _check(wanted, policy)

    added = [r for r in wanted if r not in current]
    data_added = [r for r in added if parse_role(r).needs_second_admin(by_operator=is_operator(by))]
    # Now: everything kept, and the additions that are not data roles (a subset of a
    # set that passed separation of duties passes too).
    now_held = sorted({r for r in wanted if r in current or r not in data_added})
    if now_held == current and not data_added:
        return RoleChange(sid, tuple(current), tuple(current), tuple(wanted), None)
    superseded = _supersede(session, tables, sid, by, now)
    if now_held != current:
        auth.set_roles(
            session,
            tables,
            sid,
            now_held,
            by,
            admin_may_hold_data_roles=policy.admin_may_hold_data_roles,
        )
    pending = None
    if data_added:
        pending = file_request(session, tables, sid, wanted, now_held, by, now)
    return RoleChange(
        sid, tuple(now_held), tuple(current), tuple(wanted), pending, superseded=superseded
    )


def decide(
    session: Session,
    tables: AuthTables,
    request_id: int,
    by: StaffPrincipal,
    *,
    reject: bool,
    policy: RolePolicy = DEFAULT_ROLE_POLICY,
    now: datetime,
) -> RoleRequest:
    """Approve (apply) or reject a pending request; returns it as decided.

    Refuses, in this order: ``role_required`` (403), ``role_request_not_found`` (404),
    ``own_roles`` (403, a request about the decider's own account), ``self_approval``
    (403, approving one's own request — rejecting, i.e. withdrawing it, is allowed),
    ``role_request_not_pending`` (409), and for an approval ``role_request_stale``
    (409, the account's roles changed since the request) and ``role_conflict`` (422,
    under the node's current policy).
    """
    req = get_request(session, tables, request_id, by)
    if req.staff_id == by.staff_id:
        raise _own_roles()
    if not reject and req.requested_by == by.staff_id:
        raise Problem(
            403,
            "self_approval",
            "自分が依頼した権限変更は承認できません（別の管理者の承認が必要です）。",
        )
    not_pending = Problem(
        409,
        "role_request_not_pending",
        "この権限変更の依頼は承認待ちではありません。",
        STATUS_LABELS.get(req.status, req.status),
    )
    if req.status != "pending":
        raise not_pending
    if not reject:
        current = _current(session, tables, req.staff_id)
        if current != list(req.previous_roles):
            raise Problem(
                409,
                "role_request_stale",
                "依頼の後に対象職員の権限が変わったため、この依頼は承認できません。"
                "却下して、改めて依頼してください。",
            )
        _check(req.roles, policy)
    rr = tables.role_requests
    # Conditional: of two administrators deciding at once, only the first decision stands.
    done = session.execute(
        update(rr)
        .where(rr.c.id == request_id, rr.c.status == "pending")
        .values(status="rejected" if reject else "applied", decided_by=by.staff_id, decided_at=now)
    )
    if int(getattr(done, "rowcount", 0) or 0) != 1:
        raise not_pending
    if not reject:
        auth.set_roles(
            session,
            tables,
            req.staff_id,
            list(req.roles),
            by,
            admin_may_hold_data_roles=policy.admin_may_hold_data_roles,
        )
    return get_request(session, tables, request_id, by)
