"""Staff identity kernel: passwords (argon2id), TOTP, throttling, DB sessions, CSRF, API tokens.

Every node adds the three tables with `auth_tables` and calls these functions with a
SQLAlchemy `Session` and an explicit timezone-aware `now` (there is no global clock:
tests move time by passing another `now`).

Secrets are never stored: sessions are keyed by the SHA-256 of the opaque cookie token,
CSRF tokens and API tokens are kept as SHA-256 hashes, and the TOTP secret is encrypted
with the caller's `FieldCipher` (AAD ``("staff", "totp_secret", staff_id)``).

Failures that must persist (the throttling counters of renkei.staff.throttle) are
written to the session before the `AuthError` is raised; the caller must commit even
when an `AuthError` escapes. `auth_transaction` does exactly that (commit on success
and on AuthError, roll back on anything else) — `renkei.core.db.transaction` would
roll the counters back.

Errors are `AuthError` (a `Problem`) with a stable `code` and a Japanese `message_ja`.
Sign-in (OWASP): an unknown staff ID, a wrong password, an account an administrator
locked and an attempt refused by the throttle all give the very same error
(``bad_credentials``, same status and message) after the same work — one argon2
verification — so the answer tells nobody which IDs exist, and a stranger cannot lock
an account: failures only slow down further attempts (renkei.staff.throttle). Only
someone who knows the password learns more (``inactive``, the TOTP errors).
`AuthError.reason` says internally which case it was (for the audit log); it never
reaches the wire.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final, cast

import pyotp
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import CursorResult, Result, RowMapping
from sqlalchemy.orm import Session, sessionmaker

from renkei.core.crypto.field import FieldCipher
from renkei.core.db import BigId, UtcDateTime
from renkei.core.errors import Problem
from renkei.core.sql import Prepared
from renkei.staff import throttle
from renkei.staff.roles import ADMIN, check_separation, normalize_roles, parse_role, require
from renkei.staff.throttle import ThrottlePolicy

__all__ = [
    "AUTH_ERROR_CODES",
    "DEFAULT_POLICY",
    "ApiTokenInfo",
    "AuthError",
    "AuthPolicy",
    "AuthTables",
    "LoginResult",
    "UNTIL_UNLOCKED",
    "StaffPrincipal",
    "auth_tables",
    "auth_transaction",
    "authenticate",
    "authenticate_api_token",
    "change_password",
    "check_csrf",
    "check_password",
    "create_staff",
    "csrf_token_for",
    "hash_password",
    "issue_api_token",
    "list_api_tokens",
    "lock",
    "login",
    "logout",
    "password_problems",
    "purge_sessions",
    "reset_password",
    "reset_totp",
    "revoke_api_token",
    "revoke_sessions",
    "set_active",
    "set_roles",
    "staff_principal",
    "totp_qr_svg",
    "totp_uri",
    "unlock",
]

TOTP_INTERVAL: Final = 30
TOTP_DIGITS: Final = 6
TOTP_AAD_TABLE: Final = "staff"
TOTP_AAD_COLUMN: Final = "totp_secret"
# Bound on presented tokens: token_urlsafe(32) is 43 characters.
_MAX_TOKEN_LENGTH: Final = 256
_STAFF_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_CSRF_LABEL: Final = b"renkei/csrf/v1"
# ``locked_until`` of an account an administrator locked without an end: far enough to
# never pass, near enough that adding hours (JST) cannot overflow a datetime.
UNTIL_UNLOCKED: Final = datetime(9000, 1, 1, tzinfo=UTC)

# --- errors ----------------------------------------------------------------------------

# code → (HTTP status, default Japanese message)
AUTH_ERROR_CODES: Final[dict[str, tuple[int, str]]] = {
    # One message for an unknown ID, a wrong password, a locked account and a throttled
    # attempt: it must not tell which one it was.
    "bad_credentials": (
        401,
        "職員IDまたはパスワードが正しくないか、ログインが一時的に制限されています。"
        "しばらく待ってから再度ログインしてください。続く場合は管理者に連絡してください。",
    ),
    "totp_required": (401, "ワンタイムパスワードを入力してください。"),
    "totp_invalid": (401, "ワンタイムパスワードが正しくないか、有効期限が切れています。"),
    "totp_reused": (
        401,
        "このワンタイムパスワードは既に使用されています。次のコードが表示されてから入力してください。",
    ),
    "password_policy": (422, "パスワードが要件を満たしていません。"),
    "session_expired": (
        401,
        "ログインの有効期間が過ぎたか、一定時間操作がなかったため、ログアウトしました。再度ログインしてください。",
    ),
    "session_revoked": (401, "このログインは無効化されています。再度ログインしてください。"),
    "session_unknown": (401, "ログインしていません。ログインしてください。"),
    "csrf_failed": (
        403,
        "不正な要求の可能性があるため処理を中止しました。画面を開き直してから操作してください。",
    ),
    "token_invalid": (401, "APIトークンが無効です。"),
    "token_expired": (401, "APIトークンの有効期限が切れています。"),
    "scope_denied": (403, "APIトークンに指定できない権限が含まれています。"),
    "inactive": (403, "この職員アカウントは利用停止中です。管理者に連絡してください。"),
}


class AuthError(Problem):
    """An authentication failure with a stable ``code`` and a Japanese ``message_ja``.

    ``problems`` lists the unmet rules for ``password_policy``. ``reason`` is the
    internal cause for the audit log (``unknown_staff``, ``locked``, ``throttled`` for
    a ``bad_credentials``; else the code) and never reaches the wire.
    """

    def __init__(
        self,
        code: str,
        message_ja: str | None = None,
        *,
        detail: str = "",
        problems: Sequence[str] = (),
        reason: str | None = None,
    ) -> None:
        if code not in AUTH_ERROR_CODES:
            raise ValueError(f"unknown auth error code: {code}")
        status, default = AUTH_ERROR_CODES[code]
        message = message_ja if message_ja is not None else default
        super().__init__(status, code, message, detail)
        self.message_ja = message
        self.problems = tuple(problems)
        self.reason = reason or code

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_auth_error,
            (self.code, self.message_ja, self.detail, self.problems, self.reason),
        )


def _rebuild_auth_error(
    code: str, message_ja: str, detail: str, problems: tuple[str, ...], reason: str
) -> AuthError:
    return AuthError(code, message_ja, detail=detail, problems=problems, reason=reason)


# --- tables ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthTables:
    staff: Table
    sessions: Table
    api_tokens: Table
    throttle: Table
    role_requests: Table


def auth_tables(metadata: MetaData) -> AuthTables:
    """Add the staff, session, API-token, throttle and role-request tables to a node's metadata.

    Named ``auth_*`` so they can live next to a node's own tables (atena already has
    a ``staff`` table of its own).
    """
    staff = Table(
        "auth_staff",
        metadata,
        Column("staff_id", String(64), primary_key=True),
        Column("name", String(100), nullable=False),
        Column("password_hash", String(255), nullable=False),
        # FieldCipher blob, AAD ("staff", "totp_secret", staff_id)
        Column("totp_secret", LargeBinary, nullable=True),
        Column("totp_last_step", BigInteger, nullable=True),
        # Consecutive failed sign-ins, for administrators to see (the throttle decides).
        Column("failed_count", Integer, nullable=False, default=0),
        # Set by an administrator's lock (`UNTIL_UNLOCKED`), never by failures.
        Column("locked_until", UtcDateTime(), nullable=True),
        Column("roles", JSON, nullable=False),
        Column("active", Boolean, nullable=False, default=True),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("password_changed_at", UtcDateTime(), nullable=False),
    )
    sessions = Table(
        "auth_sessions",
        metadata,
        Column("id", String(64), primary_key=True),  # hex SHA-256 of the cookie token
        Column(
            "staff_id", String(64), ForeignKey("auth_staff.staff_id"), nullable=False, index=True
        ),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("last_seen_at", UtcDateTime(), nullable=False),
        Column("expires_at", UtcDateTime(), nullable=False),
        Column("revoked_at", UtcDateTime(), nullable=True),
        Column("terminal", String(255), nullable=True),
        Column("csrf_token_hash", String(64), nullable=False),
    )
    api_tokens = Table(
        "auth_api_tokens",
        metadata,
        Column("id", String(32), primary_key=True),
        Column(
            "staff_id", String(64), ForeignKey("auth_staff.staff_id"), nullable=False, index=True
        ),
        Column("token_hash", String(64), nullable=False, unique=True),
        Column("name", String(100), nullable=False),
        Column("scopes", JSON, nullable=False),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("expires_at", UtcDateTime(), nullable=False),
        Column("revoked_at", UtcDateTime(), nullable=True),
        Column("last_used_at", UtcDateTime(), nullable=True),
    )
    role_requests = Table(
        "auth_role_requests",
        metadata,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column(
            "staff_id", String(64), ForeignKey("auth_staff.staff_id"), nullable=False, index=True
        ),
        Column("roles", JSON, nullable=False),  # the whole role set asked for (canonical)
        Column("previous_roles", JSON, nullable=False),  # the roles when it was asked
        Column("requested_by", String(64), nullable=False),
        Column("requested_at", UtcDateTime(), nullable=False),
        # pending | applied | rejected | superseded (a later change of the same account)
        Column("status", String(12), nullable=False, index=True),
        Column("decided_by", String(64), nullable=True),
        Column("decided_at", UtcDateTime(), nullable=True),
    )
    return AuthTables(
        staff=staff,
        sessions=sessions,
        api_tokens=api_tokens,
        throttle=throttle.throttle_table(metadata),
        role_requests=role_requests,
    )


# --- policy ----------------------------------------------------------------------------

# Compared after NFKC and casefold; only entries that would otherwise pass the length
# and character-class rules matter.
COMMON_PASSWORDS: Final = frozenset(
    {
        "password1234",
        "password123!",
        "password2024!",
        "password2025!",
        "password2026!",
        "p@ssw0rd1234",
        "p@ssword1234",
        "passw0rd1234",
        "passw0rd!234",
        "qwerty123456",
        "qwerty123456!",
        "qwertyuiop123",
        "welcome12345",
        "welcome2024!",
        "administrator1",
        "admin1234567",
        "admin@123456",
        "abc123456789",
        "abcd12345678",
        "iloveyou1234",
        "letmein12345",
        "changeme1234",
        "changeme123!",
        "1qaz2wsx3edc4rfv",
        "1qaz!qaz2wsx",
        "zaq12wsxcde3",
        "tokyo2020!!!",
        "japan1234567",
        "nihon1234567",
        "renkei123456",
        "mynumber1234",
        "mynumber123!",
    }
)


@dataclass(frozen=True)
class AuthPolicy:
    """Throttling, session and password rules; `hasher` sets the argon2id cost.

    The default hasher is argon2-cffi's `PasswordHasher()` (RFC 9106 low-memory
    profile); tests pass a cheap one. Hashes made with other parameters are upgraded
    at the next successful login (`check_needs_rehash`).
    """

    throttle: ThrottlePolicy = field(default_factory=ThrottlePolicy)
    idle_minutes: int = 30
    absolute_hours: int = 8
    password_min_length: int = 12
    password_max_length: int = 256
    password_min_classes: int = 3
    common_passwords: frozenset[str] = COMMON_PASSWORDS
    totp_required: bool = True
    totp_issuer: str = "renkei"
    totp_window: int = 1  # steps accepted either side of the current one
    api_token_max_days: int = 90
    hasher: PasswordHasher = field(default_factory=PasswordHasher, compare=False, repr=False)

    @property
    def idle(self) -> timedelta:
        return timedelta(minutes=self.idle_minutes)

    @property
    def absolute(self) -> timedelta:
        return timedelta(hours=self.absolute_hours)


DEFAULT_POLICY: Final = AuthPolicy()


# --- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginResult:
    """``token`` goes into the session cookie (HttpOnly, Secure, SameSite=Strict);
    ``csrf_token`` into forms/headers (`csrf_token_for(token)` recomputes it);
    ``expires_at`` is the absolute end of the session."""

    token: str
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class StaffPrincipal:
    """Who is calling. For an API token, ``roles`` are the token's scopes (those the
    staff member still holds), ``session_id`` and ``terminal`` are None."""

    staff_id: str
    name: str
    roles: frozenset[str]
    session_id: str | None
    terminal: str | None
    api_token_id: str | None = None
    # The session's stored CSRF token hash, read with the session by `authenticate`, so
    # that `check_csrf` need not look the session up again.
    csrf_token_hash: str | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ApiTokenInfo:
    id: str
    staff_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


# --- helpers ---------------------------------------------------------------------------


def _rowcount(result: Result[Any]) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now


_DIGIT_RUN = re.compile(r"[0-9]{12}")


def new_token_id() -> str:
    """An API token's id: 16 hex characters, re-drawn in the rare case of a run of 12
    digits (the id goes into audit entries, which refuse anything shaped like an
    individual number — about one id in 700 would otherwise fail with a 500)."""
    while True:
        value = secrets.token_hex(8)
        if not _DIGIT_RUN.search(value):
            return value


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _normalize_password(password: str) -> str:
    # The same password typed with a full-width IME must verify: hash the NFKC form.
    return unicodedata.normalize("NFKC", password)


def _normalize_staff_id(staff_id: str) -> str:
    return unicodedata.normalize("NFKC", staff_id).strip()


def _valid_staff_id(staff_id: str) -> str:
    sid = _normalize_staff_id(staff_id)
    if not _STAFF_ID_RE.fullmatch(sid):
        raise ValueError(
            "職員IDは英数字で始まる64文字以内の英数字・記号（. _ @ -）で指定してください。"
        )
    return sid


def _valid_name(name: str) -> str:
    text = unicodedata.normalize("NFKC", name).strip()
    if not text or len(text) > 100:
        raise ValueError("氏名は1文字以上100文字以内で指定してください。")
    return text


def _hasher_key(h: PasswordHasher) -> tuple[int, int, int, int, int, Type]:
    return (h.time_cost, h.memory_cost, h.parallelism, h.hash_len, h.salt_len, h.type)


@lru_cache(maxsize=8)
def _dummy_hash(key: tuple[int, int, int, int, int, Type]) -> str:
    t, m, p, hl, sl, ty = key
    hasher = PasswordHasher(
        time_cost=t, memory_cost=m, parallelism=p, hash_len=hl, salt_len=sl, type=ty
    )
    return hasher.hash(secrets.token_urlsafe(16))


def _verify(hasher: PasswordHasher, stored: str, password: str) -> bool:
    try:
        return hasher.verify(stored, _normalize_password(password))
    except (VerificationError, InvalidHashError):
        return False


def _burn_verify(hasher: PasswordHasher, password: str) -> None:
    """Spend one verification on an unknown staff ID, like a known one would."""
    _verify(hasher, _dummy_hash(_hasher_key(hasher)), password)


def _staff_row(
    session: Session, tables: AuthTables, staff_id: str, *, lock: bool = False
) -> RowMapping | None:
    st = tables.staff
    stmt = select(st).where(st.c.staff_id == staff_id)
    if lock:
        stmt = stmt.with_for_update()  # PostgreSQL: serialize concurrent logins of one account
    return session.execute(stmt).mappings().one_or_none()


def _require_staff(
    session: Session, tables: AuthTables, staff_id: str, *, lock: bool = False
) -> RowMapping:
    row = _staff_row(session, tables, _normalize_staff_id(staff_id), lock=lock)
    if row is None:
        raise LookupError(f"職員ID「{staff_id}」は登録されていません。")
    return row


def _throttle_keys(
    staff_id: str, source: str | None, policy: AuthPolicy
) -> list[throttle.ThrottleKey]:
    return throttle.keys_for(staff_id, source, policy.throttle)


def _record_failure(
    session: Session,
    tables: AuthTables,
    keys: list[throttle.ThrottleKey],
    policy: AuthPolicy,
    now: datetime,
    *,
    staff_id: str | None = None,
) -> None:
    """Count one failed attempt on the throttle's keys (and on the account's row, if known).

    Nothing is refused here: the caller raises its error, and the throttle refuses the
    next attempts once the failures pile up.
    """
    throttle.record_failure(session, tables.throttle, keys, policy.throttle, now)
    if staff_id is not None:
        st = tables.staff
        session.execute(
            update(st).where(st.c.staff_id == staff_id).values(failed_count=st.c.failed_count + 1)
        )
    session.flush()


def _refused_attempt(
    session: Session,
    tables: AuthTables,
    keys: list[throttle.ThrottleKey],
    policy: AuthPolicy,
    password: str,
    now: datetime,
    reason: str,
    *,
    count: bool = True,
) -> AuthError:
    """``bad_credentials`` after one argon2 verification, like a wrong password costs.

    Unknown, locked and throttled sign-ins must take as long as a wrong password, or
    the time of the answer would tell them apart. A throttled attempt is not counted.
    """
    _burn_verify(policy.hasher, password)
    if count:
        _record_failure(session, tables, keys, policy, now)
    return AuthError("bad_credentials", reason=reason)


def _locked_by_admin(row: RowMapping, now: datetime) -> bool:
    until: datetime | None = row["locked_until"]
    return until is not None and now < until


def _principal_roles(stored: Any) -> list[str]:
    if not isinstance(stored, list):
        return []
    out: set[str] = set()
    for r in stored:
        try:
            out.add(str(parse_role(str(r))))
        except ValueError:
            continue  # a malformed stored role grants nothing
    return sorted(out)


def _revoke_staff_sessions(
    session: Session, tables: AuthTables, staff_id: str, now: datetime, *, keep: str | None = None
) -> int:
    ss = tables.sessions
    stmt = update(ss).where(ss.c.staff_id == staff_id, ss.c.revoked_at.is_(None))
    if keep is not None:
        stmt = stmt.where(ss.c.id != keep)
    count = _rowcount(session.execute(stmt.values(revoked_at=now)))
    session.flush()
    return count


# --- passwords -------------------------------------------------------------------------

_CLASS_NAMES: Final = ("英大文字", "英小文字", "数字", "記号")


def _char_class(ch: str) -> int:
    if ch.isdigit():
        return 2
    if ch.isupper():
        return 0
    if ch.islower():
        return 1
    return 3  # symbols, spaces, and letters without case (kana, kanji) count as 記号


def password_problems(
    password: str, staff_id: str, policy: AuthPolicy = DEFAULT_POLICY
) -> list[str]:
    """The unmet password rules, in Japanese (empty when the password is acceptable).

    Checked on the NFKC form: a full-width letter or digit counts in its class.
    """
    pw = _normalize_password(password)
    problems: list[str] = []
    if len(pw) < policy.password_min_length:
        problems.append(
            f"{policy.password_min_length}文字以上にしてください（現在{len(pw)}文字）。"
        )
    if len(pw) > policy.password_max_length:
        problems.append(f"{policy.password_max_length}文字以内にしてください。")
    present = {_char_class(ch) for ch in pw}
    if len(present) < policy.password_min_classes:
        missing = "、".join(name for i, name in enumerate(_CLASS_NAMES) if i not in present)
        problems.append(
            f"英大文字・英小文字・数字・記号のうち{policy.password_min_classes}種類以上を含めてください"
            f"（含まれていない種類: {missing}）。"
        )
    sid = _normalize_staff_id(staff_id).casefold()
    if len(sid) >= 3 and sid in pw.casefold():
        problems.append("職員IDを含めないでください。")
    if pw.casefold() in policy.common_passwords:
        problems.append("よく使われるパスワードは使用できません。")
    return problems


def check_password(password: str, staff_id: str, policy: AuthPolicy = DEFAULT_POLICY) -> None:
    """Raise AuthError ``password_policy`` listing every unmet rule."""
    problems = password_problems(password, staff_id, policy)
    if problems:
        raise AuthError(
            "password_policy",
            "パスワードが要件を満たしていません。" + "".join(problems),
            problems=problems,
        )


def hash_password(password: str, policy: AuthPolicy = DEFAULT_POLICY) -> str:
    """argon2id hash of the NFKC form of ``password`` with the policy's hasher."""
    return policy.hasher.hash(_normalize_password(password))


# --- TOTP ------------------------------------------------------------------------------


def _totp_aad(staff_id: str) -> tuple[str, str, str]:
    return (TOTP_AAD_TABLE, TOTP_AAD_COLUMN, staff_id)


def totp_uri(staff_id: str, secret: str, *, issuer: str = "renkei") -> str:
    """``otpauth://totp/...`` provisioning URI for an authenticator app."""
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_INTERVAL).provisioning_uri(
        name=staff_id, issuer_name=issuer
    )


def totp_qr_svg(uri: str) -> str:
    """The provisioning URI as an inline SVG QR code (needs the optional package segno)."""
    import segno  # optional dependency: only the enrolment screen needs it

    svg: str = segno.make(uri, error="m").svg_inline(scale=4)
    return svg


def _step(now: datetime) -> int:
    return int(now.timestamp()) // TOTP_INTERVAL


def _check_totp(
    session: Session,
    tables: AuthTables,
    cipher: FieldCipher,
    row: RowMapping,
    code: str | None,
    policy: AuthPolicy,
    now: datetime,
    keys: list[throttle.ThrottleKey],
) -> None:
    staff_id: str = row["staff_id"]
    blob = row["totp_secret"]
    if blob is None:
        raise AuthError(
            "totp_required",
            "ワンタイムパスワードが登録されていません。管理者に再登録を依頼してください。",
        )
    if code is None or not code.strip():
        raise AuthError("totp_required")
    presented = re.sub(r"\s", "", unicodedata.normalize("NFKC", code))
    secret = cipher.decrypt(bytes(blob), _totp_aad(staff_id))
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_INTERVAL)
    current = _step(now)
    matched: list[int] = []
    well_formed = len(presented) == TOTP_DIGITS and presented.isascii() and presented.isdigit()
    for step in range(current - policy.totp_window, current + policy.totp_window + 1):
        expected = totp.generate_otp(step)
        if hmac.compare_digest(expected.encode(), presented.encode()) and well_formed:
            matched.append(step)
    if not matched:
        _record_failure(session, tables, keys, policy, now, staff_id=staff_id)
        raise AuthError("totp_invalid")
    last: int | None = row["totp_last_step"]
    unused = [s for s in matched if last is None or s > last]
    if unused:
        st = tables.staff
        step = max(unused)
        # Conditional update: two concurrent logins with one code cannot both win.
        won = _rowcount(
            session.execute(
                update(st)
                .where(
                    st.c.staff_id == staff_id,
                    or_(st.c.totp_last_step.is_(None), st.c.totp_last_step < step),
                )
                .values(totp_last_step=step)
            )
        )
        if won == 1:
            return
    _record_failure(session, tables, keys, policy, now, staff_id=staff_id)
    raise AuthError("totp_reused")


def _new_totp_secret(cipher: FieldCipher, staff_id: str) -> tuple[str, bytes]:
    secret = pyotp.random_base32()
    return secret, cipher.encrypt(secret, _totp_aad(staff_id))


# --- staff -----------------------------------------------------------------------------


def create_staff(
    session: Session,
    tables: AuthTables,
    cipher: FieldCipher,
    staff_id: str,
    name: str,
    password: str,
    roles: Iterable[str],
    *,
    policy: AuthPolicy = DEFAULT_POLICY,
    now: datetime,
    admin_may_hold_data_roles: bool = False,
) -> str:
    """Register a staff member; returns the TOTP provisioning URI (show it once).

    ValueError for a bad staff ID, name or role, `RoleConflict` (a ValueError) when the
    roles break separation of duties, AuthError ``password_policy`` for a weak password.
    The caller authorizes: renkei.staff.admin (an administrator: data roles only
    after a second one approves) or the set-up (`staff_admin.setup_staff`).
    """
    _aware(now)
    sid = _valid_staff_id(staff_id)
    display = _valid_name(name)
    canonical = normalize_roles(roles)
    check_separation(canonical, admin_may_hold_data_roles=admin_may_hold_data_roles)
    check_password(password, sid, policy)
    if _staff_row(session, tables, sid) is not None:
        raise ValueError(f"職員ID「{sid}」は既に登録されています。")
    secret, blob = _new_totp_secret(cipher, sid)
    session.execute(
        insert(tables.staff).values(
            staff_id=sid,
            name=display,
            password_hash=hash_password(password, policy),
            totp_secret=blob,
            totp_last_step=None,
            failed_count=0,
            locked_until=None,
            roles=canonical,
            active=True,
            created_at=now,
            password_changed_at=now,
        )
    )
    session.flush()
    return totp_uri(sid, secret, issuer=policy.totp_issuer)


def set_roles(
    session: Session,
    tables: AuthTables,
    staff_id: str,
    roles: Iterable[str],
    by: StaffPrincipal,
    *,
    admin_may_hold_data_roles: bool = False,
) -> list[str]:
    """Replace a staff member's roles (by a 管理 principal); returns the canonical roles.

    The kernel's write, with separation of duties: who may change whom, and the second
    administrator's approval of data roles, are renkei.staff.role_requests' rules.
    Takes effect at the next request: sessions read the roles afresh, API tokens keep
    only the scopes the staff member still holds.
    """
    require(by.roles, ADMIN)
    row = _require_staff(session, tables, staff_id, lock=True)
    canonical = normalize_roles(roles)
    check_separation(canonical, admin_may_hold_data_roles=admin_may_hold_data_roles)
    st = tables.staff
    session.execute(update(st).where(st.c.staff_id == row["staff_id"]).values(roles=canonical))
    session.flush()
    return canonical


def set_active(
    session: Session,
    tables: AuthTables,
    staff_id: str,
    active: bool,
    by: StaffPrincipal,
    *,
    now: datetime,
) -> None:
    """Suspend or reinstate a staff member (by a 管理 principal); suspending ends their sessions."""
    _aware(now)
    require(by.roles, ADMIN)
    row = _require_staff(session, tables, staff_id, lock=True)
    st = tables.staff
    session.execute(update(st).where(st.c.staff_id == row["staff_id"]).values(active=active))
    if not active:
        _revoke_staff_sessions(session, tables, row["staff_id"], now)
    session.flush()


def lock(
    session: Session, tables: AuthTables, staff_id: str, by: StaffPrincipal, *, now: datetime
) -> int:
    """Lock an account until an administrator unlocks it (by a 管理 principal).

    Its sign-ins are refused exactly like a wrong password (nobody learns that it is
    locked), and its open sessions end; returns how many.
    """
    _aware(now)
    require(by.roles, ADMIN)
    row = _require_staff(session, tables, staff_id, lock=True)
    st = tables.staff
    session.execute(
        update(st).where(st.c.staff_id == row["staff_id"]).values(locked_until=UNTIL_UNLOCKED)
    )
    return _revoke_staff_sessions(session, tables, row["staff_id"], now)


def unlock(session: Session, tables: AuthTables, staff_id: str, by: StaffPrincipal) -> None:
    """Lift a lock, clear the failure counter and the account's sign-in throttling
    from every source (by a 管理 principal)."""
    require(by.roles, ADMIN)
    row = _require_staff(session, tables, staff_id, lock=True)
    st = tables.staff
    session.execute(
        update(st).where(st.c.staff_id == row["staff_id"]).values(failed_count=0, locked_until=None)
    )
    throttle.forget_account(session, tables.throttle, row["staff_id"])
    session.flush()


def reset_totp(
    session: Session,
    tables: AuthTables,
    cipher: FieldCipher,
    staff_id: str,
    by: StaffPrincipal,
    *,
    policy: AuthPolicy = DEFAULT_POLICY,
) -> str:
    """New TOTP secret for a staff member (by a 管理 principal); returns the provisioning URI."""
    require(by.roles, ADMIN)
    row = _require_staff(session, tables, staff_id, lock=True)
    sid: str = row["staff_id"]
    secret, blob = _new_totp_secret(cipher, sid)
    st = tables.staff
    session.execute(
        update(st).where(st.c.staff_id == sid).values(totp_secret=blob, totp_last_step=None)
    )
    session.flush()
    return totp_uri(sid, secret, issuer=policy.totp_issuer)


def reset_password(
    session: Session,
    tables: AuthTables,
    staff_id: str,
    new_password: str,
    by: StaffPrincipal,
    *,
    policy: AuthPolicy = DEFAULT_POLICY,
    now: datetime,
) -> None:
    """Set a new password for a staff member (by a 管理 principal); ends their sessions."""
    _aware(now)
    require(by.roles, ADMIN)
    row = _require_staff(session, tables, staff_id, lock=True)
    sid: str = row["staff_id"]
    check_password(new_password, sid, policy)
    st = tables.staff
    session.execute(
        update(st)
        .where(st.c.staff_id == sid)
        .values(
            password_hash=hash_password(new_password, policy),
            password_changed_at=now,
            failed_count=0,
            locked_until=None,
        )
    )
    throttle.forget_account(session, tables.throttle, sid)
    _revoke_staff_sessions(session, tables, sid, now)


# --- login and sessions ----------------------------------------------------------------


def csrf_token_for(token: str) -> str:
    """The synchronizer CSRF token of a session token.

    Derived (HMAC-SHA256 keyed by the session token), so the server can render it into
    every form from the cookie alone; the database keeps only its SHA-256.
    """
    mac = hmac.new(token.encode("utf-8", "surrogatepass"), _CSRF_LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def login(
    session: Session,
    tables: AuthTables,
    cipher: FieldCipher,
    staff_id: str,
    password: str,
    totp_code: str | None,
    *,
    terminal: str | None,
    policy: AuthPolicy = DEFAULT_POLICY,
    now: datetime,
    source: str | None = None,
) -> LoginResult:
    """Password (argon2id) + TOTP sign-in; opens a session.

    ``source`` is the address the attempt comes from (default: ``terminal``), for the
    throttle. Order: throttled / unknown ID / locked by an administrator → password →
    suspended → TOTP. The first four all raise ``bad_credentials`` after one argon2
    verification (see the module docstring); wrong passwords, unknown IDs, locked
    accounts and wrong or reused TOTP codes count towards the throttle, throttled
    attempts do not. Counter changes are flushed before raising: commit even on
    AuthError (see `auth_transaction`).
    """
    _aware(now)
    sid = _normalize_staff_id(staff_id)
    keys = _throttle_keys(sid, terminal if source is None else source, policy)
    row = _staff_row(session, tables, sid, lock=True) if sid else None
    if throttle.blocked_until(session, tables.throttle, keys, now) is not None:
        raise _refused_attempt(
            session, tables, keys, policy, password, now, "throttled", count=False
        )
    if row is None:
        raise _refused_attempt(session, tables, keys, policy, password, now, "unknown_staff")
    sid = row["staff_id"]
    if _locked_by_admin(row, now):
        raise _refused_attempt(session, tables, keys, policy, password, now, "locked")
    stored_hash: str = row["password_hash"]
    if not _verify(policy.hasher, stored_hash, password):
        _record_failure(session, tables, keys, policy, now, staff_id=sid)
        raise AuthError("bad_credentials")
    if not row["active"]:
        raise AuthError("inactive")
    if policy.totp_required or (totp_code is not None and totp_code.strip()):
        _check_totp(session, tables, cipher, row, totp_code, policy, now, keys)

    st = tables.staff
    values: dict[str, Any] = {"failed_count": 0}
    if policy.hasher.check_needs_rehash(stored_hash):
        values["password_hash"] = hash_password(password, policy)
    session.execute(update(st).where(st.c.staff_id == sid).values(**values))
    throttle.clear(session, tables.throttle, keys)

    token = secrets.token_urlsafe(32)
    csrf = csrf_token_for(token)
    expires_at = now + policy.absolute
    session.execute(
        insert(tables.sessions).values(
            id=_digest(token),
            staff_id=sid,
            created_at=now,
            last_seen_at=now,
            expires_at=expires_at,
            revoked_at=None,
            terminal=terminal,
            csrf_token_hash=_digest(csrf),
        )
    )
    session.flush()
    return LoginResult(token=token, csrf_token=csrf, expires_at=expires_at)


# How often a session's last use is written (see `authenticate`).
TOUCH_EVERY = timedelta(seconds=15)


def authenticate(
    session: Session,
    tables: AuthTables,
    token: str | None,
    *,
    policy: AuthPolicy = DEFAULT_POLICY,
    now: datetime,
) -> StaffPrincipal:
    """The principal of a session cookie; enforces the idle and absolute timeouts.

    Touches ``last_seen_at`` (at most every ``TOUCH_EVERY``). Roles are read from the staff row on every call, so a
    role change or suspension takes effect at once. ``terminal`` is the terminal the
    session was opened on: a listener that requires terminal certificates should
    compare it with the current one.
    """
    _aware(now)
    if not token or len(token) > _MAX_TOKEN_LENGTH:
        raise AuthError("session_unknown")
    ss = tables.sessions
    row = _statements(tables).session_row.first_mapping(session, {"id": _digest(token)})
    if row is None:
        raise AuthError("session_unknown")
    if row["revoked_at"] is not None:
        raise AuthError("session_revoked")
    if now >= min(row["expires_at"], row["created_at"] + policy.absolute):
        raise AuthError("session_expired", detail="absolute")
    if now - row["last_seen_at"] >= policy.idle:
        raise AuthError("session_expired", detail="idle")
    if not row["active"]:
        raise AuthError("inactive")
    # Touch at most every TOUCH_EVERY: a write per request is most of a quick request's
    # cost; the idle timeout then counts from up to that much earlier (never later).
    if now - row["last_seen_at"] >= TOUCH_EVERY:
        session.execute(update(ss).where(ss.c.id == row["id"]).values(last_seen_at=now))
        session.flush()
    return StaffPrincipal(
        staff_id=row["staff_id"],
        name=row["name"],
        roles=frozenset(_principal_roles(row["roles"])),
        session_id=row["id"],
        terminal=row["terminal"],
        csrf_token_hash=row["csrf_token_hash"],
    )


def staff_principal(session: Session, tables: AuthTables, staff_id: str, *, now: datetime) -> StaffPrincipal:
    """The principal of a staff member for work run on their behalf away from a sign-in
    (a batch command started by an operator naming them with ``--actor``): the account
    must exist, be active and not locked; roles as stored, read now.

    Problem 403: ``unknown_staff``, ``inactive`` or ``locked`` (no password is checked
    here: whoever runs the command holds the node's configuration and keys already).
    """
    _aware(now)
    try:
        row = _require_staff(session, tables, staff_id)
    except LookupError:
        raise Problem(403, "unknown_staff", f"職員ID「{staff_id[:64]}」は登録されていません。") from None
    if not row["active"]:
        raise Problem(403, "inactive", AUTH_ERROR_CODES["inactive"][1])
    if _locked_by_admin(row, now):
        raise Problem(403, "locked", "この職員アカウントは管理者によりロックされています。")
    return StaffPrincipal(
        staff_id=row["staff_id"],
        name=row["name"],
        roles=frozenset(_principal_roles(row["roles"])),
        session_id=None,
        terminal=None,
    )


@dataclass(frozen=True)
class _Statements:
    """The lookups of every authenticated request, built once per set of tables (not
    rebuilt and re-keyed for the statement cache on each request), run lean (`Prepared`;
    both by primary key: at most one row)."""

    session_row: Prepared
    csrf_hash: Prepared


_STATEMENTS: dict[Any, _Statements] = {}


def _statements(tables: AuthTables) -> _Statements:
    ss, st = tables.sessions, tables.staff
    found = _STATEMENTS.get(ss)
    if found is None:
        found = _STATEMENTS[ss] = _Statements(
            session_row=Prepared(
                select(
                    ss.c.id,
                    ss.c.created_at,
                    ss.c.last_seen_at,
                    ss.c.expires_at,
                    ss.c.revoked_at,
                    ss.c.terminal,
                    ss.c.csrf_token_hash,
                    st.c.staff_id,
                    st.c.name,
                    st.c.roles,
                    st.c.active,
                )
                .select_from(ss.join(st, ss.c.staff_id == st.c.staff_id))
                .where(ss.c.id == bindparam("id")),
                ("id",),
            ),
            csrf_hash=Prepared(select(ss.c.csrf_token_hash).where(ss.c.id == bindparam("id")), ("id",)),
        )
    return found


def check_csrf(
    session: Session, tables: AuthTables, principal: StaffPrincipal, presented: str | None
) -> None:
    """Raise ``csrf_failed`` unless ``presented`` is the session's CSRF token (constant time).

    Principals from API tokens pass: bearer tokens are not sent by browsers on their own.
    """
    if principal.session_id is None:
        return
    if not presented or len(presented) > _MAX_TOKEN_LENGTH:
        raise AuthError("csrf_failed")
    stored = principal.csrf_token_hash
    if stored is None:  # a principal not made by `authenticate`
        stored = _statements(tables).csrf_hash.scalar(session, {"id": principal.session_id})
    if stored is None or not hmac.compare_digest(str(stored).encode(), _digest(presented).encode()):
        raise AuthError("csrf_failed")


def logout(
    session: Session, tables: AuthTables, principal: StaffPrincipal, *, now: datetime
) -> None:
    """End the principal's session."""
    _aware(now)
    if principal.session_id is None:
        raise ValueError("logout needs a session principal, not an API token")
    ss = tables.sessions
    session.execute(
        update(ss)
        .where(ss.c.id == principal.session_id, ss.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    session.flush()


def revoke_sessions(
    session: Session, tables: AuthTables, staff_id: str, by: StaffPrincipal, *, now: datetime
) -> int:
    """End every open session of a staff member (by a 管理 principal); returns how many."""
    _aware(now)
    require(by.roles, ADMIN)
    return _revoke_staff_sessions(session, tables, _normalize_staff_id(staff_id), now)


def change_password(
    session: Session,
    tables: AuthTables,
    staff_id: str,
    old_password: str,
    new_password: str,
    *,
    policy: AuthPolicy = DEFAULT_POLICY,
    now: datetime,
    keep_session_id: str | None = None,
    source: str | None = None,
) -> None:
    """The staff member changes their own password; other sessions end.

    A wrong old password counts as a failed sign-in from ``source`` (so a stolen
    session cannot be used to guess it), and a throttled or locked account is refused
    like a wrong password. ``keep_session_id`` (the current principal's session) stays
    open.
    """
    _aware(now)
    sid = _normalize_staff_id(staff_id)
    keys = _throttle_keys(sid, source, policy)
    row = _staff_row(session, tables, sid, lock=True) if sid else None
    if throttle.blocked_until(session, tables.throttle, keys, now) is not None:
        raise _refused_attempt(
            session, tables, keys, policy, old_password, now, "throttled", count=False
        )
    if row is None:
        raise _refused_attempt(session, tables, keys, policy, old_password, now, "unknown_staff")
    sid = row["staff_id"]
    if _locked_by_admin(row, now):
        raise _refused_attempt(session, tables, keys, policy, old_password, now, "locked")
    if not _verify(policy.hasher, row["password_hash"], old_password):
        _record_failure(session, tables, keys, policy, now, staff_id=sid)
        raise AuthError("bad_credentials")
    if not row["active"]:
        raise AuthError("inactive")
    problems = password_problems(new_password, sid, policy)
    if _normalize_password(new_password) == _normalize_password(old_password):
        problems.append("現在のパスワードとは異なるものにしてください。")
    if problems:
        raise AuthError(
            "password_policy",
            "パスワードが要件を満たしていません。" + "".join(problems),
            problems=problems,
        )
    st = tables.staff
    session.execute(
        update(st)
        .where(st.c.staff_id == sid)
        .values(
            password_hash=hash_password(new_password, policy),
            password_changed_at=now,
            failed_count=0,
        )
    )
    throttle.clear(session, tables.throttle, keys)
    _revoke_staff_sessions(session, tables, sid, now, keep=keep_session_id)


def purge_sessions(
    session: Session, tables: AuthTables, *, now: datetime, keep: timedelta = timedelta(days=1)
) -> int:
    """Delete sessions that ended (expired or revoked) more than ``keep`` ago."""
    _aware(now)
    ss = tables.sessions
    cutoff = now - keep
    count = _rowcount(
        session.execute(delete(ss).where(or_(ss.c.expires_at < cutoff, ss.c.revoked_at < cutoff)))
    )
    session.flush()
    return count


@contextmanager
def auth_transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Like `renkei.core.db.transaction`, but an AuthError commits before propagating,
    so the throttle's failure counters persist."""
    session = factory()
    try:
        yield session
        session.commit()
    except AuthError:
        session.commit()
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# --- API tokens ------------------------------------------------------------------------


def issue_api_token(
    session: Session,
    tables: AuthTables,
    staff_id: str,
    name: str,
    scopes: Iterable[str],
    expires_at: datetime,
    *,
    policy: AuthPolicy = DEFAULT_POLICY,
    now: datetime,
) -> str:
    """A bearer token for scripts, limited to ``scopes`` (a subset of the staff's roles).

    Returns the token once; only its SHA-256 is stored. ``scope_denied`` for a scope
    the staff member does not hold (or a malformed one); ValueError for an expiry not
    in (now, now + api_token_max_days]. The caller authenticates the staff member
    (a session, not another API token).
    """
    _aware(now)
    _aware(expires_at)
    row = _require_staff(session, tables, staff_id)
    sid: str = row["staff_id"]
    if not row["active"]:
        raise AuthError("inactive")
    label = _valid_name(name)
    try:
        requested = normalize_roles(scopes)
    except ValueError as err:
        raise AuthError("scope_denied", f"APIトークンの権限が不正です: {err}") from err
    if not requested:
        raise AuthError("scope_denied", "APIトークンには少なくとも1つの権限を指定してください。")
    held = set(_principal_roles(row["roles"]))
    beyond = [s for s in requested if s not in held]
    if beyond:
        raise AuthError(
            "scope_denied",
            "職員が持っていない権限はAPIトークンに付与できません: " + "、".join(beyond),
        )
    if expires_at <= now:
        raise ValueError("APIトークンの有効期限は現在より後にしてください。")
    if expires_at > now + timedelta(days=policy.api_token_max_days):
        raise ValueError(
            f"APIトークンの有効期限は{policy.api_token_max_days}日以内にしてください。"
        )
    token = secrets.token_urlsafe(32)
    session.execute(
        insert(tables.api_tokens).values(
            id=new_token_id(),
            staff_id=sid,
            token_hash=_digest(token),
            name=label,
            scopes=requested,
            created_at=now,
            expires_at=expires_at,
            revoked_at=None,
            last_used_at=None,
        )
    )
    session.flush()
    return token


def authenticate_api_token(
    session: Session, tables: AuthTables, token: str | None, *, now: datetime
) -> StaffPrincipal:
    """The principal of a bearer API token; roles = the token's scopes still held by the staff."""
    _aware(now)
    if not token or len(token) > _MAX_TOKEN_LENGTH:
        raise AuthError("token_invalid")
    at, st = tables.api_tokens, tables.staff
    row = (
        session.execute(
            select(
                at.c.id,
                at.c.scopes,
                at.c.expires_at,
                at.c.revoked_at,
                st.c.staff_id,
                st.c.name,
                st.c.roles,
                st.c.active,
            )
            .select_from(at.join(st, at.c.staff_id == st.c.staff_id))
            .where(at.c.token_hash == _digest(token))
        )
        .mappings()
        .one_or_none()
    )
    if row is None:
        raise AuthError("token_invalid")
    if row["revoked_at"] is not None:
        raise AuthError("token_invalid", "このAPIトークンは失効しています。")
    if now >= row["expires_at"]:
        raise AuthError("token_expired")
    if not row["active"]:
        raise AuthError("inactive")
    held = set(_principal_roles(row["roles"]))
    roles = frozenset(s for s in _principal_roles(row["scopes"]) if s in held)
    session.execute(update(at).where(at.c.id == row["id"]).values(last_used_at=now))
    session.flush()
    return StaffPrincipal(
        staff_id=row["staff_id"],
        name=row["name"],
        roles=roles,
        session_id=None,
        terminal=None,
        api_token_id=row["id"],
    )


def list_api_tokens(session: Session, tables: AuthTables, staff_id: str) -> list[ApiTokenInfo]:
    """A staff member's API tokens (never the tokens themselves), newest first."""
    at = tables.api_tokens
    rows = session.execute(
        select(at)
        .where(at.c.staff_id == _normalize_staff_id(staff_id))
        .order_by(at.c.created_at.desc(), at.c.id)
    ).mappings()
    return [
        ApiTokenInfo(
            id=r["id"],
            staff_id=r["staff_id"],
            name=r["name"],
            scopes=tuple(r["scopes"]),
            created_at=r["created_at"],
            expires_at=r["expires_at"],
            revoked_at=r["revoked_at"],
            last_used_at=r["last_used_at"],
        )
        for r in rows
    ]


def revoke_api_token(
    session: Session, tables: AuthTables, token_id: str, by: StaffPrincipal, *, now: datetime
) -> None:
    """Revoke an API token: by its owner or a 管理 principal. LookupError if unknown."""
    _aware(now)
    at = tables.api_tokens
    owner = session.execute(select(at.c.staff_id).where(at.c.id == token_id)).scalar_one_or_none()
    if owner is None:
        raise LookupError(f"APIトークン「{token_id}」は存在しません。")
    if owner != by.staff_id:
        require(by.roles, ADMIN)
    session.execute(
        update(at).where(at.c.id == token_id, at.c.revoked_at.is_(None)).values(revoked_at=now)
    )
    session.flush()
