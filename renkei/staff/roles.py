"""Staff roles scoped to affairs, permission checks and separation of duties.

A role string is ``<scope>:<operation>``:

- scope: an affair code (``JM`` + 14 digits) or one of the named scopes
  宛名, 個人番号, 管理, 監査;
- operation: one of 照会, 副本登録, 参照, 更新, 表示, 管理, 監査.

``管理`` (staff and system administration) and ``監査`` (reading the audit log) may
also stand alone; ``管理:管理`` and ``監査:監査`` are the same roles written long.
Examples: ``JM01000000074000:照会``, ``宛名:参照``, ``宛名:更新``, ``個人番号:表示``,
``管理``, ``監査``.

*Data roles* are all roles but administration and audit (bare ``管理``, the ``管理``
scope, and audit roles): they read or change personal data. Granting one needs a
second administrator's approval (renkei.staff.role_requests), and separation of duties
keeps them away from administrators unless a node's policy explicitly allows it.

Roles match exactly: no role implies another (``宛名:更新`` does not include
``宛名:参照``, ``管理`` does not include reading data or the audit log). Role strings are
NFKC-normalized before parsing, so a full-width colon or full-width digits are accepted;
`Role.__str__` gives the canonical spelling.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, Final

from renkei.core.errors import Problem
from renkei.core.ids import IdKind, check

__all__ = [
    "AUDIT",
    "ADMIN",
    "BARE_ROLES",
    "CHANGING_OPERATIONS",
    "NAMED_SCOPES",
    "OPERATIONS",
    "PermissionDenied",
    "Role",
    "RoleConflict",
    "admin_with_data_roles",
    "can_see_individual_number",
    "check_separation",
    "data_roles",
    "has_role",
    "may_read_audit",
    "normalize_roles",
    "parse_role",
    "parse_roles",
    "require",
]

ADMIN: Final = "管理"
AUDIT: Final = "監査"
ATENA: Final = "宛名"
INDIVIDUAL_NUMBER: Final = "個人番号"

NAMED_SCOPES: Final = (ATENA, INDIVIDUAL_NUMBER, ADMIN, AUDIT)
OPERATIONS: Final = ("照会", "副本登録", "参照", "更新", "表示", ADMIN, AUDIT)
BARE_ROLES: Final = (ADMIN, AUDIT)
# Operations that change data (or administer it): never held together with an audit role.
CHANGING_OPERATIONS: Final = frozenset({"更新", "副本登録", ADMIN})
REVEAL_NUMBER: Final = "個人番号:表示"

_MAX_ROLE_LENGTH: Final = 64


@dataclass(frozen=True, order=True, slots=True)
class Role:
    """A parsed role; ``scope`` is None for the bare roles 管理 and 監査."""

    scope: str | None
    operation: str

    @property
    def affair(self) -> str | None:
        """The affair code when the scope is an affair, else None."""
        if self.scope is not None and self.scope not in NAMED_SCOPES:
            return self.scope
        return None

    @property
    def is_audit(self) -> bool:
        """An audit role: bare 監査, anything in the 監査 scope, or 監査 of an affair."""
        return self.operation == AUDIT or self.scope == AUDIT

    @property
    def is_admin(self) -> bool:
        """An administration role: bare 管理 or anything in the 管理 scope."""
        return self.scope == ADMIN or (self.scope is None and self.operation == ADMIN)

    @property
    def is_data(self) -> bool:
        """A data role: neither administration nor audit (it reads or changes personal data)."""
        return not (self.is_admin or self.is_audit)

    def needs_second_admin(self, *, by_operator: bool = False) -> bool:
        """Granted only when a second administrator approves: a data role, or 管理 itself
        (an administrator who could make another administrator account alone could
        approve their own requests through it) — unless the grant of 管理 comes from the
        server's operator at the command line (``by_operator``), who is appointed outside
        the system and creates the first administrators."""
        return self.is_data or (self.is_admin and not by_operator)

    @property
    def changes_data(self) -> bool:
        """更新, 副本登録 or 管理 outside the 監査 scope (bare 管理 included)."""
        return self.operation in CHANGING_OPERATIONS and self.scope != AUDIT

    def __str__(self) -> str:
        return self.operation if self.scope is None else f"{self.scope}:{self.operation}"


def parse_role(s: str) -> Role:
    """Parse one role string; ValueError with a Japanese message if it is not a role."""
    if not isinstance(s, str):
        raise ValueError("権限は文字列で指定してください。")
    text = unicodedata.normalize("NFKC", s).strip()
    if not text:
        raise ValueError("権限が空です。")
    if len(text) > _MAX_ROLE_LENGTH:
        raise ValueError(f"権限が長すぎます（{_MAX_ROLE_LENGTH}文字まで）。")
    if ":" not in text:
        if text in BARE_ROLES:
            return Role(None, text)
        raise ValueError(
            f"権限「{text}」は「<範囲>:<操作>」の形式で指定してください"
            f"（範囲を省略できるのは {'・'.join(BARE_ROLES)} だけです）。"
        )
    scope, _, operation = text.partition(":")
    scope, operation = scope.strip(), operation.strip()
    if ":" in operation:
        raise ValueError(f"権限「{text}」に「:」が複数あります。")
    if scope not in NAMED_SCOPES:
        if not scope.startswith("JM"):
            raise ValueError(
                f"権限「{text}」の範囲「{scope}」が不正です。事務コード（JM＋14桁）または"
                f" {'・'.join(NAMED_SCOPES)} のいずれかを指定してください。"
            )
        problem = check(IdKind.AFFAIR_CODE, scope)
        if problem is not None:
            raise ValueError(f"権限「{text}」の範囲が不正です: {problem.message}")
    if operation not in OPERATIONS:
        raise ValueError(
            f"権限「{text}」の操作「{operation}」が不正です。"
            f" {'・'.join(OPERATIONS)} のいずれかを指定してください。"
        )
    if scope in BARE_ROLES and operation == scope:
        return Role(None, scope)  # 管理:管理 == 管理, 監査:監査 == 監査
    return Role(scope, operation)


def parse_roles(roles: Iterable[str]) -> frozenset[Role]:
    """Parse every role; ValueError naming the first bad one."""
    if isinstance(roles, str):
        raise ValueError("権限は文字列の並びで指定してください（1つの文字列ではなく）。")
    return frozenset(parse_role(r) for r in roles)


def normalize_roles(roles: Iterable[str]) -> list[str]:
    """Canonical, sorted, de-duplicated role strings; ValueError on a bad role."""
    return sorted({str(r) for r in parse_roles(roles)})


def _lenient(roles: Iterable[str]) -> frozenset[Role]:
    # Roles held by a principal: a malformed stored role grants nothing, rather than
    # turning every permission check into an error.
    out: set[Role] = set()
    for r in roles:
        try:
            out.add(parse_role(r))
        except ValueError:
            continue
    return frozenset(out)


class PermissionDenied(Problem):
    """The principal lacks a role; ``code`` is stable, ``message_ja`` is shown to staff."""

    def __init__(self, code: str, message_ja: str, *, needed: str | None = None) -> None:
        super().__init__(403, code, message_ja)
        self.message_ja = message_ja
        self.needed = needed

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_denied, (self.code, self.message_ja, self.needed))


def _rebuild_denied(code: str, message_ja: str, needed: str | None) -> PermissionDenied:
    return PermissionDenied(code, message_ja, needed=needed)


def _needed_role(needed: str, affair: str | None) -> Role:
    if affair is None:
        return parse_role(needed)
    if ":" in unicodedata.normalize("NFKC", needed):
        raise ValueError(
            "affair を指定するときは needed に操作だけを指定してください（例: 照会）。"
        )
    role = parse_role(f"{affair}:{needed}")
    if role.affair is None:
        raise ValueError(f"事務コードではありません: {affair}")
    return role


def has_role(principal_roles: Iterable[str], needed: str, *, affair: str | None = None) -> bool:
    """Whether the roles include ``needed`` (or ``<affair>:<needed>`` when affair is given)."""
    return _needed_role(needed, affair) in _lenient(principal_roles)


def require(principal_roles: Iterable[str], needed: str, *, affair: str | None = None) -> None:
    """Raise `PermissionDenied` (code ``role_required``) unless the role is held.

    ``require(roles, "宛名:参照")`` or ``require(roles, "照会", affair="JM01000000074000")``.
    A malformed ``needed``/``affair`` is a programming error: ValueError.
    """
    role = _needed_role(needed, affair)
    if role not in _lenient(principal_roles):
        raise PermissionDenied(
            "role_required", f"この操作には権限「{role}」が必要です。", needed=str(role)
        )


def can_see_individual_number(
    roles: Iterable[str],
    affair_is_number_use: Callable[[str], bool] | Collection[str],
    *,
    affair: str | None = None,
) -> bool:
    """Whether the staff member may see an individual number in clear.

    Needs ``個人番号:表示`` AND a role (other than 監査) in a 番号利用事務.
    ``affair_is_number_use`` tells which affairs are number-use: a predicate on the
    affair code (e.g. ``lambda c: catalogue.affairs[c].number_use``) or a collection of
    the number-use affair codes. With ``affair``, the role must be in that very affair
    (the one the screen or request works for).
    """
    if isinstance(affair_is_number_use, str):
        raise TypeError("affair_is_number_use must be a predicate or a collection of codes")
    if callable(affair_is_number_use):
        is_number_use = affair_is_number_use
    else:
        codes = frozenset(affair_is_number_use)
        is_number_use = codes.__contains__
    held = _lenient(roles)
    if parse_role(REVEAL_NUMBER) not in held:
        return False
    for role in held:
        code = role.affair
        if code is None or role.operation == AUDIT:
            continue
        if affair is not None and code != affair:
            continue
        if is_number_use(code):
            return True
    return False


class RoleConflict(ValueError):
    """A role set breaks separation of duties; ``conflicting`` lists the roles involved."""

    def __init__(self, message_ja: str, conflicting: tuple[str, ...]) -> None:
        super().__init__(message_ja)
        self.message_ja = message_ja
        self.conflicting = conflicting

    def __reduce__(self) -> tuple[Any, ...]:
        return (RoleConflict, (self.message_ja, self.conflicting))


def data_roles(roles: Iterable[str]) -> list[str]:
    """The data roles among ``roles`` (canonical, sorted); ValueError on a malformed role."""
    return sorted(str(r) for r in parse_roles(roles) if r.is_data)


def admin_with_data_roles(roles: Iterable[str]) -> bool:
    """Whether the set holds an administration role together with a data role."""
    parsed = parse_roles(roles)
    return any(r.is_admin for r in parsed) and any(r.is_data for r in parsed)


def check_separation(roles: Iterable[str], *, admin_may_hold_data_roles: bool = False) -> None:
    """Refuse a role set that breaks separation of duties; the rules, in this order:

    1. an auditor cannot change data: 監査 (bare, in the 監査 scope, or 監査 of an
       affair) may not be combined with 更新, 副本登録 or 管理 of anything but the audit
       scope (bare 管理 included);
    2. an administrator holds no data role: 管理 may not be combined with a role that
       reads or changes personal data (宛名:参照, 個人番号:表示, an affair's 照会 …),
       unless the node's policy says so (``admin_may_hold_data_roles``; the caller then
       audits the grant as such).

    Raises `RoleConflict` (a ValueError); also ValueError for a malformed role.
    """
    parsed = parse_roles(roles)
    audit = sorted(str(r) for r in parsed if r.is_audit)
    changing = sorted(str(r) for r in parsed if r.changes_data)
    if audit and changing:
        raise RoleConflict(
            "職務分掌に反する権限の組合せです。監査の権限（"
            + "、".join(audit)
            + "）とデータを変更する権限（"
            + "、".join(changing)
            + "）を同じ職員に付与することはできません。",
            tuple(audit + changing),
        )
    admin = sorted(str(r) for r in parsed if r.is_admin)
    data = sorted(str(r) for r in parsed if r.is_data)
    if admin and data and not admin_may_hold_data_roles:
        raise RoleConflict(
            "職務分掌に反する権限の組合せです。管理の権限（"
            + "、".join(admin)
            + "）と個人情報を扱う権限（"
            + "、".join(data)
            + "）を同じ職員に付与することはできません"
            "（このノードの設定で明示的に認めている場合を除きます）。",
            tuple(admin + data),
        )


def may_read_audit(roles: Iterable[str], *, affair: str | None = None) -> bool:
    """Whether the roles allow reading the audit log.

    Only audit roles do: bare 監査 or a role in the 監査 scope reads all of it;
    ``<affair>:監査`` reads the entries of that affair when ``affair`` is given. An
    administrator (管理) without an audit role cannot read it.
    """
    for role in _lenient(roles):
        if role.scope is None and role.operation == AUDIT:
            return True
        if role.scope == AUDIT:
            return True
        if affair is not None and role.affair == affair and role.operation == AUDIT:
            return True
    return False
