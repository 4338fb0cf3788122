"""Staff administration for every node: the 管理 role's operations, as plain functions.

Each function takes the acting principal (``by``) and checks its role itself, so the
JSON routes, the staff UI and `renkei staff` share one set of rules. Errors are
`Problem`s with stable codes: ``role_required`` (403), ``staff_not_found`` (404),
``staff_exists`` (409), ``role_conflict`` and ``invalid_staff`` (422),
``own_account`` (409, an administrator locking themselves out), ``own_roles`` (403),
and the auth kernel's ``password_policy``.

Roles go through the four-eyes rules of renkei.staff.role_requests: an administrator
never changes their own roles, and data roles — on an existing account or a new one —
are granted only when a second administrator approves.

The command line acts as `cli_principal`: whoever may run it on the node's host with
its configuration already holds the database, so it acts as an administrator — under
the same rules (its data-role grants wait for another administrator) — and every
command is audited under ``cli:<os user>``.

Set-up is not an administrator: `setup_staff` creates the first accounts of a node
(the demo's, a test's) with their roles at once, before anyone could approve anything.
No route, screen or `renkei staff` command reaches it; its audit actor is ``setup:…``.
"""

from __future__ import annotations

import getpass
import re
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from renkei.core.audit.log import AuditLog
from renkei.core.config import NodeConfig
from renkei.core.crypto import envelope
from renkei.core.crypto.field import FieldCipher, FileKms, load_or_create_keyring
from renkei.core.db import make_engine, make_sessionmaker, migrate
from renkei.core.errors import Problem
from renkei.core.schema import SchemaError, schema_of
from renkei.core.wire import guard
from renkei.core.wire.guard import GuardTables
from renkei.staff import auth, role_requests
from renkei.staff.auth import AuthPolicy, AuthTables, StaffPrincipal
from renkei.staff.role_requests import DEFAULT_ROLE_POLICY, RoleChange, RolePolicy, RoleRequest
from renkei.staff.roles import (
    ADMIN,
    RoleConflict,
    check_separation,
    normalize_roles,
    parse_role,
    require,
)

__all__ = [
    "Enrolment",
    "NodeStore",
    "acknowledge_guard_alert",
    "StaffInfo",
    "cli_principal",
    "enrol_staff",
    "generate_password",
    "list_guard_alerts",
    "list_staff",
    "lock_staff",
    "node_cipher",
    "open_node_store",
    "reset_staff_totp",
    "revoke_staff_sessions",
    "set_staff_active",
    "set_staff_roles",
    "setup_principal",
    "setup_staff",
    "unlock_staff",
]

_PASSWORD_SYMBOLS: Final = "!#%+=?@"
# Staff IDs appear in audit entries, which refuse anything that may be an individual number.
_DIGIT_RUN: Final = re.compile(r"[0-9]{12,}")


@dataclass(frozen=True)
class StaffInfo:
    """A staff account as administrators see it (never a secret)."""

    staff_id: str
    name: str
    roles: tuple[str, ...]
    active: bool
    locked: bool  # by an administrator
    locked_until: datetime | None  # None while locked: until an administrator unlocks
    throttled_until: datetime | None  # sign-ins refused until then (after failures)
    failed_count: int
    totp_enrolled: bool
    open_sessions: int
    created_at: datetime
    password_changed_at: datetime


@dataclass(frozen=True)
class Enrolment:
    """What a new account's holder needs once: the initial password (if generated) and TOTP."""

    staff_id: str
    name: str
    roles: tuple[str, ...]  # held now: data roles wait for `pending_request`'s approval
    totp_uri: str
    initial_password: str | None
    pending_request: RoleRequest | None = None


def node_cipher(config: NodeConfig) -> FieldCipher:
    """The node's field cipher (TOTP secrets): its keyring under the data directory.

    The same keyring layout as atena's, so `renkei keys rotate` works on every node.
    """
    master = config.master_key or (config.data_dir / "master.key")
    return load_or_create_keyring(config.data_dir / "keyring.json", FileKms.create(master))


@dataclass
class NodeStore:
    """A node's database, staff tables, audit log and cipher, opened from its config
    (for the command line and the demo's set-up, outside the node's process)."""

    config: NodeConfig
    engine: Engine
    sessions: sessionmaker[Session]
    auth: AuthTables
    audit: AuditLog
    cipher: FieldCipher

    def close(self) -> None:
        self.engine.dispose()


def open_node_store(config: NodeConfig, *, engine: Engine | None = None) -> NodeStore:
    """Open (and migrate to the newest schema) the database of the node ``config`` names.

    The node's schema comes from the kernel's registry (`renkei.core.schema`), filled
    when `renkei.nodes` is imported; a kind nobody registered is a ValueError.
    """
    try:
        schema = schema_of(config.kind)
    except SchemaError as exc:
        raise ValueError(str(exc)) from None
    tables: AuthTables | None = schema.auth
    if tables is None:
        raise ValueError(f"{config.kind} には職員アカウントがありません。")
    eng = engine or make_engine(config.database_url)
    migrate(eng, schema.migrations, schema.metadata, {"field_cipher": node_cipher(config)})
    return NodeStore(
        config=config,
        engine=eng,
        sessions=make_sessionmaker(eng),
        auth=tables,
        audit=AuditLog(schema.audit, envelope.load_signing_key(config.keys.sig)),
        cipher=node_cipher(config),
    )


def cli_principal(user: str | None = None) -> StaffPrincipal:
    """The administrator the command line acts as: ``cli:<os user>``."""
    name = user or getpass.getuser()
    actor = "cli:" + "".join(ch for ch in name if ch.isalnum() or ch in "._-")[:60]
    return StaffPrincipal(
        staff_id=actor, name=actor, roles=frozenset({ADMIN}), session_id=None, terminal=None
    )


def setup_principal(name: str = "setup") -> StaffPrincipal:
    """Who creates the first accounts at set-up: ``setup:<name>``, not an administrator."""
    actor = "setup:" + "".join(ch for ch in name if ch.isalnum() or ch in "._-")[:60]
    return StaffPrincipal(
        staff_id=actor, name=actor, roles=frozenset(), session_id=None, terminal=None
    )


def generate_password(staff_id: str, policy: AuthPolicy = auth.DEFAULT_POLICY) -> str:
    """A random initial password that meets the policy (about 190 bits)."""
    while True:
        candidate = (
            secrets.token_urlsafe(24)
            + secrets.choice(_PASSWORD_SYMBOLS)
            + secrets.choice("0123456789")
        )
        if not auth.password_problems(candidate, staff_id, policy):
            return candidate


@contextmanager
def _as_problems() -> Iterator[None]:
    """The auth kernel's ValueError/LookupError as stable problems."""
    try:
        yield
    except RoleConflict as exc:
        raise Problem(422, "role_conflict", exc.message_ja, "、".join(exc.conflicting)) from None
    except LookupError as exc:
        raise Problem(404, "staff_not_found", str(exc)) from None
    except ValueError as exc:
        raise Problem(422, "invalid_staff", str(exc)) from None


def _exists(session: Session, tables: AuthTables, staff_id: str) -> bool:
    st = tables.staff
    return (
        session.execute(select(st.c.staff_id).where(st.c.staff_id == staff_id)).first() is not None
    )


def _require_known(session: Session, tables: AuthTables, staff_id: str) -> None:
    if not _exists(session, tables, staff_id):
        raise Problem(404, "staff_not_found", f"職員ID「{staff_id[:64]}」は登録されていません。")


def list_staff(
    session: Session, tables: AuthTables, by: StaffPrincipal, *, now: datetime
) -> list[StaffInfo]:
    """Every staff account, by ID, with its lock state and open sessions."""
    require(by.roles, ADMIN)
    st, ss = tables.staff, tables.sessions
    open_sessions: dict[str, int] = {
        str(sid): int(n)
        for sid, n in session.execute(
            select(ss.c.staff_id, func.count())
            .where(ss.c.revoked_at.is_(None), ss.c.expires_at > now)
            .group_by(ss.c.staff_id)
        ).all()
    }
    throttled = _throttled(session, tables, now)
    out = []
    for r in session.execute(select(st).order_by(st.c.staff_id)).mappings():
        until = r["locked_until"]
        locked = until is not None and until > now
        out.append(
            StaffInfo(
                staff_id=r["staff_id"],
                name=r["name"],
                roles=tuple(r["roles"] or ()),
                active=bool(r["active"]),
                locked=locked,
                locked_until=until if locked and until != auth.UNTIL_UNLOCKED else None,
                throttled_until=throttled.get(r["staff_id"]),
                failed_count=int(r["failed_count"] or 0),
                # Enrolled once the first code from the secret was accepted (a new
                # account, or one whose TOTP an administrator reset, is not yet).
                totp_enrolled=r["totp_last_step"] is not None,
                open_sessions=int(open_sessions.get(r["staff_id"], 0)),
                created_at=r["created_at"],
                password_changed_at=r["password_changed_at"],
            )
        )
    return out


def _throttled(session: Session, tables: AuthTables, now: datetime) -> dict[str, datetime]:
    """Per staff ID, the latest time its account or one of its sources is throttled until."""
    t = tables.throttle
    out: dict[str, datetime] = {}
    rows = session.execute(
        select(t.c.key, t.c.blocked_until).where(
            t.c.blocked_until > now, (t.c.key.startswith("account:") | t.c.key.startswith("pair:"))
        )
    ).all()
    for key, until in rows:
        kind, _, rest = str(key).partition(":")
        sid = rest if kind == "account" else rest.partition("|")[0]
        if until is not None and (sid not in out or until > out[sid]):
            out[sid] = until
    return out


def enrol_staff(
    session: Session,
    tables: AuthTables,
    cipher: FieldCipher,
    *,
    staff_id: str,
    name: str,
    roles: Iterable[str],
    by: StaffPrincipal,
    password: str | None = None,
    policy: AuthPolicy = auth.DEFAULT_POLICY,
    now: datetime,
    role_policy: RolePolicy = DEFAULT_ROLE_POLICY,
) -> Enrolment:
    """Create an account with TOTP enrolled; generates the initial password if none is given.

    The account gets at once the roles that need no approval (監査; 管理 when the server's
    operator creates it at the command line); its data roles, and 管理 given by an
    administrator, wait in a role request for a second administrator
    (`Enrolment.pending_request`) — an administrator cannot hand themselves data roles,
    or a second administrator account to approve with, through an account they create.
    Separation of duties is checked on the whole set asked for.
    """
    require(by.roles, ADMIN)
    with _as_problems():
        sid = auth._valid_staff_id(staff_id)
        if _DIGIT_RUN.search(sid):
            raise Problem(
                422,
                "invalid_staff",
                "職員IDに12桁以上の数字の並びは使えません（個人番号と取り違えないため）。",
            )
        if _exists(session, tables, sid):
            raise Problem(409, "staff_exists", f"職員ID「{sid}」は既に登録されています。")
        wanted = normalize_roles(list(roles))
        check_separation(wanted, admin_may_hold_data_roles=role_policy.admin_may_hold_data_roles)
        operator = role_requests.is_operator(by)
        now_held = [r for r in wanted if not parse_role(r).needs_second_admin(by_operator=operator)]
        initial = password if password is not None else generate_password(sid, policy)
        uri = auth.create_staff(
            session, tables, cipher, sid, name, initial, now_held, policy=policy, now=now
        )
    pending = None
    if now_held != wanted:
        pending = role_requests.file_request(session, tables, sid, wanted, now_held, by, now)
    row = session.execute(
        select(tables.staff.c.name, tables.staff.c.roles).where(tables.staff.c.staff_id == sid)
    ).one()
    return Enrolment(
        staff_id=sid,
        name=str(row[0]),
        roles=tuple(row[1]),
        totp_uri=uri,
        initial_password=None if password is not None else initial,
        pending_request=pending,
    )


def setup_staff(
    session: Session,
    tables: AuthTables,
    cipher: FieldCipher,
    *,
    staff_id: str,
    name: str,
    roles: Iterable[str],
    password: str,
    policy: AuthPolicy = auth.DEFAULT_POLICY,
    now: datetime,
) -> Enrolment:
    """Set-up, not an administrator: an account with all its roles at once.

    Only the node's set-up calls this (the demo's `renkei.federation`, tests), when no
    administrator exists yet who could approve a data role; separation of duties still
    holds. The routes, the staff UI and `renkei staff` go through `enrol_staff`. The
    caller audits the creation under `setup_principal`.
    """
    with _as_problems():
        sid = auth._valid_staff_id(staff_id)
        if _DIGIT_RUN.search(sid):
            raise Problem(
                422,
                "invalid_staff",
                "職員IDに12桁以上の数字の並びは使えません（個人番号と取り違えないため）。",
            )
        uri = auth.create_staff(
            session, tables, cipher, sid, name, password, roles, policy=policy, now=now
        )
    row = session.execute(
        select(tables.staff.c.name, tables.staff.c.roles).where(tables.staff.c.staff_id == sid)
    ).one()
    return Enrolment(
        staff_id=sid, name=str(row[0]), roles=tuple(row[1]), totp_uri=uri, initial_password=None
    )


def set_staff_roles(
    session: Session,
    tables: AuthTables,
    staff_id: str,
    roles: Iterable[str],
    by: StaffPrincipal,
    *,
    role_policy: RolePolicy = DEFAULT_ROLE_POLICY,
    now: datetime,
) -> RoleChange:
    """Ask to set an account's roles (renkei.staff.role_requests.request_roles).

    Never one's own; removals and 管理/監査 apply at once, data roles wait for a second
    administrator; separation of duties is enforced.
    """
    return role_requests.request_roles(
        session, tables, staff_id, roles, by, policy=role_policy, now=now
    )


def set_staff_active(
    session: Session,
    tables: AuthTables,
    staff_id: str,
    active: bool,
    by: StaffPrincipal,
    *,
    now: datetime,
) -> None:
    """Suspend (ends every session) or reinstate an account; not one's own suspension."""
    require(by.roles, ADMIN)
    with _as_problems():
        sid = auth._normalize_staff_id(staff_id)
        _require_known(session, tables, sid)
        if sid == by.staff_id and not active:
            raise Problem(409, "own_account", "自分自身のアカウントは利用停止にできません。")
        auth.set_active(session, tables, sid, active, by, now=now)


def lock_staff(
    session: Session, tables: AuthTables, staff_id: str, by: StaffPrincipal, *, now: datetime
) -> int:
    """Lock an account until an administrator unlocks it; ends its sessions (returns how
    many). Its sign-ins are refused like a wrong password; not one's own account."""
    require(by.roles, ADMIN)
    with _as_problems():
        sid = auth._normalize_staff_id(staff_id)
        _require_known(session, tables, sid)
        if sid == by.staff_id:
            raise Problem(409, "own_account", "自分自身のアカウントはロックできません。")
        return auth.lock(session, tables, sid, by, now=now)


def unlock_staff(session: Session, tables: AuthTables, staff_id: str, by: StaffPrincipal) -> None:
    """Lift a lock, clear the failure count and the account's sign-in throttling."""
    require(by.roles, ADMIN)
    with _as_problems():
        auth.unlock(session, tables, staff_id, by)


def revoke_staff_sessions(
    session: Session, tables: AuthTables, staff_id: str, by: StaffPrincipal, *, now: datetime
) -> int:
    """End every open session of the account; returns how many."""
    require(by.roles, ADMIN)
    with _as_problems():
        sid = auth._normalize_staff_id(staff_id)
        _require_known(session, tables, sid)
        return auth.revoke_sessions(session, tables, sid, by, now=now)


def reset_staff_totp(
    session: Session,
    tables: AuthTables,
    cipher: FieldCipher,
    staff_id: str,
    by: StaffPrincipal,
    *,
    policy: AuthPolicy = auth.DEFAULT_POLICY,
    now: datetime,
) -> str:
    """A new TOTP secret (the old authenticator stops working); ends the account's sessions.

    Returns the provisioning URI, to be shown once.
    """
    require(by.roles, ADMIN)
    with _as_problems():
        sid = auth._normalize_staff_id(staff_id)
        _require_known(session, tables, sid)
        uri = auth.reset_totp(session, tables, cipher, sid, by, policy=policy)
        # Whoever held the old second factor may hold a session opened with it.
        auth.revoke_sessions(session, tables, sid, by, now=now)
        return uri


def list_guard_alerts(
    session: Session, tables: GuardTables, by: StaffPrincipal, *, everything: bool, limit: int
) -> list[guard.Alert]:
    """The guard's alerts for administrators (管理), newest first."""
    require(by.roles, ADMIN)
    return guard.list_alerts(session, tables, unacknowledged_only=not everything, limit=limit)


def acknowledge_guard_alert(
    session: Session, tables: GuardTables, alert_id: int, by: StaffPrincipal, *, now: datetime
) -> guard.Alert:
    """Mark an alert as seen by this administrator (管理)."""
    require(by.roles, ADMIN)
    return guard.acknowledge(session, tables, alert_id, by.staff_id, now)
