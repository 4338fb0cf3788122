"""Staff identity kernel: passwords, TOTP, lockout, sessions, CSRF and API tokens on both backends."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from argon2 import PasswordHasher
from sqlalchemy import MetaData, select
from sqlalchemy.orm import Session, sessionmaker

from renkei.core import auth
from renkei.core.auth import (
    AuthError,
    AuthPolicy,
    AuthTables,
    LoginResult,
    StaffPrincipal,
    auth_tables,
    auth_transaction,
    authenticate,
    authenticate_api_token,
    change_password,
    check_csrf,
    create_staff,
    csrf_token_for,
    hash_password,
    issue_api_token,
    list_api_tokens,
    login,
    logout,
    password_problems,
    purge_sessions,
    reset_password,
    reset_totp,
    revoke_api_token,
    revoke_sessions,
    set_active,
    set_roles,
    unlock,
)
from renkei.core.crypto.field import FieldCipher, FieldDecryptError
from renkei.core.db import NAMING, make_engine, make_sessionmaker
from renkei.core.roles import PermissionDenied, RoleConflict

CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
POLICY = AuthPolicy(hasher=CHEAP)
T0 = datetime(2026, 4, 1, 1, 0, 0, tzinfo=UTC)  # a TOTP step boundary (10:00 JST)
STEP = timedelta(seconds=30)
CHILD = "JM01000000074000"
PASSWORD = "Kodomo-Teate-2026"
ADMIN_PASSWORD = "Kanri-Sekinin-77"


@dataclass
class Env:
    tables: AuthTables
    sessions: sessionmaker[Session]
    cipher: FieldCipher
    secret: str  # clerk's TOTP secret
    admin_secret: str


@pytest.fixture
def env(db_url: str) -> Iterator[Env]:
    metadata = MetaData(naming_convention=NAMING)
    tables = auth_tables(metadata)
    engine = make_engine(db_url)
    metadata.create_all(engine)
    sessions = make_sessionmaker(engine)
    cipher = FieldCipher.generate()
    with auth_transaction(sessions) as s:
        uri = create_staff(
            s, tables, cipher, "S0001", "連携 花子", PASSWORD,
            [f"{CHILD}:照会", "宛名:参照"], policy=POLICY, now=T0,
        )  # fmt: skip
        admin_uri = create_staff(
            s, tables, cipher, "A0001", "管理 太郎", ADMIN_PASSWORD, ["管理"], policy=POLICY, now=T0
        )
    yield Env(
        tables, sessions, cipher, pyotp.parse_uri(uri).secret, pyotp.parse_uri(admin_uri).secret
    )
    engine.dispose()


def code(secret: str, at: datetime) -> str:
    return pyotp.TOTP(secret).at(at)


def wrong_code(secret: str, at: datetime) -> str:
    """A six-digit code that is valid in none of the accepted steps around ``at``."""
    valid = {code(secret, at + k * STEP) for k in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


def do_login(
    env: Env,
    at: datetime,
    *,
    staff_id: str = "S0001",
    password: str = PASSWORD,
    totp: str | None = "auto",
    policy: AuthPolicy = POLICY,
    terminal: str | None = "PC-01",
) -> LoginResult:
    if totp == "auto":
        totp = code(env.secret if staff_id == "S0001" else env.admin_secret, at)
    with auth_transaction(env.sessions) as s:
        return login(
            s, env.tables, env.cipher, staff_id, password, totp,
            terminal=terminal, policy=policy, now=at,
        )  # fmt: skip


def fails(env: Env, at: datetime, expected: str, **kw: object) -> AuthError:
    with pytest.raises(AuthError) as exc:
        do_login(env, at, **kw)  # type: ignore[arg-type]
    assert exc.value.code == expected, exc.value.message_ja
    return exc.value


def auth_at(env: Env, token: str, at: datetime) -> StaffPrincipal:
    with auth_transaction(env.sessions) as s:
        return authenticate(s, env.tables, token, policy=POLICY, now=at)


def staff_row(env: Env, staff_id: str = "S0001") -> dict[str, object]:
    with env.sessions() as s:
        row = s.execute(select(env.tables.staff).where(env.tables.staff.c.staff_id == staff_id))
        return dict(row.mappings().one())


def admin(env: Env, at: datetime = T0) -> StaffPrincipal:
    result = do_login(env, at, staff_id="A0001", password=ADMIN_PASSWORD)
    return auth_at(env, result.token, at)


# --- positive paths ---------------------------------------------------------------------


def test_login_authenticate_csrf_logout(env: Env) -> None:
    result = do_login(env, T0)
    assert result.expires_at == T0 + timedelta(hours=8)
    assert len(result.token) >= 43 and result.csrf_token != result.token
    assert result.csrf_token == csrf_token_for(result.token)

    principal = auth_at(env, result.token, T0 + timedelta(minutes=1))
    assert principal.staff_id == "S0001"
    assert principal.name == "連携 花子"
    assert principal.roles == frozenset({f"{CHILD}:照会", "宛名:参照"})
    assert principal.terminal == "PC-01"
    assert principal.session_id == hashlib.sha256(result.token.encode()).hexdigest()
    assert principal.api_token_id is None

    with auth_transaction(env.sessions) as s:
        check_csrf(s, env.tables, principal, result.csrf_token)
        logout(s, env.tables, principal, now=T0 + timedelta(minutes=2))
    with pytest.raises(AuthError) as exc:
        auth_at(env, result.token, T0 + timedelta(minutes=3))
    assert exc.value.code == "session_revoked"


def test_no_secret_is_stored_in_clear(env: Env) -> None:
    result = do_login(env, T0)
    with env.sessions() as s:
        sess = dict(s.execute(select(env.tables.sessions)).mappings().one())
    assert sess["id"] == hashlib.sha256(result.token.encode()).hexdigest()
    assert sess["csrf_token_hash"] == hashlib.sha256(result.csrf_token.encode()).hexdigest()
    assert result.token not in repr(sess) and result.csrf_token not in repr(sess)
    row = staff_row(env)
    assert str(row["password_hash"]).startswith("$argon2id$")
    blob = row["totp_secret"]
    assert isinstance(blob, bytes) and env.secret.encode() not in blob
    assert env.cipher.decrypt(blob, ("staff", "totp_secret", "S0001")) == env.secret
    with pytest.raises(FieldDecryptError):  # bound to its row: not movable to another staff
        env.cipher.decrypt(blob, ("staff", "totp_secret", "A0001"))


def test_timestamps_are_aware_utc(env: Env) -> None:
    do_login(env, T0)
    row = staff_row(env)
    assert row["created_at"] == T0 and row["password_changed_at"] == T0
    with env.sessions() as s:
        sess = s.execute(select(env.tables.sessions)).mappings().one()
    assert sess["created_at"].tzinfo is not None and sess["expires_at"] == T0 + timedelta(hours=8)


def test_provisioning_uri() -> None:
    uri = auth.totp_uri("S0001", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", issuer="renkei 連携市")
    parsed = pyotp.parse_uri(uri)
    assert uri.startswith("otpauth://totp/")
    assert parsed.name == "S0001" and parsed.issuer == "renkei 連携市"


def test_totp_qr_svg() -> None:
    pytest.importorskip("segno")
    svg = auth.totp_qr_svg(auth.totp_uri("S0001", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"))
    assert "<svg" in svg


def test_totp_adjacent_steps_are_accepted(env: Env) -> None:
    do_login(env, T0, totp=code(env.secret, T0 - STEP))  # previous step (clock behind)
    do_login(env, T0 + 2 * STEP, totp=code(env.secret, T0 + 3 * STEP))  # next step (clock ahead)
    assert staff_row(env)["totp_last_step"] == int((T0 + 3 * STEP).timestamp()) // 30


def test_full_width_totp_code_and_spaces(env: Env) -> None:
    digits = code(env.secret, T0)
    typed = (
        digits[:3] + " " + digits[3:].translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    )
    do_login(env, T0, totp=typed)


def test_full_width_staff_id_and_password(env: Env) -> None:
    # The same keys typed with a Japanese IME on: NFKC makes them equal.
    wide = str.maketrans({chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)})
    do_login(
        env, T0, staff_id="S0001".translate(wide), password=PASSWORD.translate(wide),
        totp=code(env.secret, T0),
    )  # fmt: skip


def test_success_resets_failure_count(env: Env) -> None:
    for i in range(3):
        fails(env, T0 + i * STEP, "bad_credentials", password="wrong-password-1A")
    assert staff_row(env)["failed_count"] == 3
    do_login(env, T0 + 3 * STEP)
    assert staff_row(env)["failed_count"] == 0


def test_rehash_when_parameters_change(env: Env) -> None:
    old_hash = str(staff_row(env)["password_hash"])
    stronger = AuthPolicy(hasher=PasswordHasher(time_cost=2, memory_cost=16, parallelism=1))
    assert stronger.hasher.check_needs_rehash(old_hash)
    do_login(env, T0, policy=stronger)
    new_hash = str(staff_row(env)["password_hash"])
    assert new_hash != old_hash and not stronger.hasher.check_needs_rehash(new_hash)
    do_login(env, T0 + STEP, policy=stronger)  # still the same password
    assert str(staff_row(env)["password_hash"]) == new_hash  # no rehash when current


def test_default_hasher_is_argon2_cffi_default() -> None:
    default = PasswordHasher()
    policy_hasher = AuthPolicy().hasher
    assert (policy_hasher.time_cost, policy_hasher.memory_cost, policy_hasher.parallelism) == (
        default.time_cost,
        default.memory_cost,
        default.parallelism,
    )
    h = hash_password("Correct-Horse-9")
    assert h.startswith("$argon2id$") and not default.check_needs_rehash(h)
    assert default.verify(h, "Correct-Horse-9")


def test_activity_keeps_a_session_alive_until_the_absolute_limit(env: Env) -> None:
    result = do_login(env, T0)
    at = T0
    while at + timedelta(minutes=25) < T0 + timedelta(hours=8):
        at += timedelta(minutes=25)
        auth_at(env, result.token, at)
    with env.sessions() as s:
        last_seen = s.execute(select(env.tables.sessions.c.last_seen_at)).scalar_one()
    assert last_seen == at


def test_api_token_positive(env: Env) -> None:
    with auth_transaction(env.sessions) as s:
        token = issue_api_token(
            s, env.tables, "S0001", "夜間バッチ", [f"{CHILD}：照会"], T0 + timedelta(days=30),
            policy=POLICY, now=T0,
        )  # fmt: skip
    with auth_transaction(env.sessions) as s:
        p = authenticate_api_token(s, env.tables, token, now=T0 + timedelta(days=1))
    assert p.staff_id == "S0001" and p.roles == frozenset({f"{CHILD}:照会"})
    assert p.session_id is None and p.api_token_id is not None
    with env.sessions() as s:
        [info] = list_api_tokens(s, env.tables, "S0001")
        stored = s.execute(select(env.tables.api_tokens)).mappings().one()
    assert info.id == p.api_token_id and info.scopes == (f"{CHILD}:照会",)
    assert info.last_used_at == T0 + timedelta(days=1)
    assert stored["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(dict(stored))
    # Bearer tokens are not CSRF-able: check_csrf lets them pass.
    with env.sessions() as s:
        check_csrf(s, env.tables, p, None)


def test_api_token_loses_scopes_the_staff_no_longer_holds(env: Env) -> None:
    a = admin(env)
    with auth_transaction(env.sessions) as s:
        token = issue_api_token(
            s, env.tables, "S0001", "batch", [f"{CHILD}:照会", "宛名:参照"], T0 + timedelta(days=1),
            policy=POLICY, now=T0,
        )  # fmt: skip
        set_roles(s, env.tables, "S0001", ["宛名:参照"], a)
    with auth_transaction(env.sessions) as s:
        p = authenticate_api_token(s, env.tables, token, now=T0)
    assert p.roles == frozenset({"宛名:参照"})


def test_role_change_applies_to_open_sessions(env: Env) -> None:
    result = do_login(env, T0)
    a = admin(env)
    with auth_transaction(env.sessions) as s:
        assert set_roles(s, env.tables, "S0001", ["宛名：更新", "宛名:参照"], a) == [
            "宛名:参照",
            "宛名:更新",
        ]
    assert auth_at(env, result.token, T0 + STEP).roles == frozenset({"宛名:参照", "宛名:更新"})


def test_change_password_keeps_current_session_ends_others(env: Env) -> None:
    first = do_login(env, T0, terminal="PC-01")
    second = do_login(env, T0 + STEP, terminal="PC-02")
    keep = auth_at(env, second.token, T0 + STEP)
    new = "Atarashii-Pass-42"
    with auth_transaction(env.sessions) as s:
        change_password(
            s, env.tables, "S0001", PASSWORD, new, policy=POLICY, now=T0 + 2 * STEP,
            keep_session_id=keep.session_id,
        )  # fmt: skip
    with pytest.raises(AuthError) as exc:
        auth_at(env, first.token, T0 + 3 * STEP)
    assert exc.value.code == "session_revoked"
    auth_at(env, second.token, T0 + 3 * STEP)
    assert staff_row(env)["password_changed_at"] == T0 + 2 * STEP
    fails(env, T0 + 4 * STEP, "bad_credentials")  # old password
    do_login(env, T0 + 4 * STEP, password=new)


def test_admin_unlocks(env: Env) -> None:
    for i in range(5):
        fails(env, T0 + i * STEP, "bad_credentials" if i < 4 else "locked", password="x")
    a = admin(env)
    with auth_transaction(env.sessions) as s:
        unlock(s, env.tables, "S0001", a)
    assert staff_row(env)["locked_until"] is None and staff_row(env)["failed_count"] == 0
    do_login(env, T0 + 6 * STEP)


def test_admin_resets_password_and_totp(env: Env) -> None:
    result = do_login(env, T0)
    a = admin(env)
    with auth_transaction(env.sessions) as s:
        reset_password(s, env.tables, "S0001", "Kari-Password-99", a, policy=POLICY, now=T0 + STEP)
        uri = reset_totp(s, env.tables, env.cipher, "S0001", a, policy=POLICY)
    with pytest.raises(AuthError) as exc:
        auth_at(env, result.token, T0 + 2 * STEP)
    assert exc.value.code == "session_revoked"
    new_secret = pyotp.parse_uri(uri).secret
    assert new_secret != env.secret
    fails(env, T0 + 2 * STEP, "totp_invalid", password="Kari-Password-99")
    do_login(env, T0 + 2 * STEP, password="Kari-Password-99", totp=code(new_secret, T0 + 2 * STEP))


def test_totp_can_be_optional_by_policy(env: Env) -> None:
    relaxed = AuthPolicy(hasher=CHEAP, totp_required=False)
    do_login(env, T0, totp=None, policy=relaxed)
    # A code that is given is still checked.
    fails(env, T0 + STEP, "totp_invalid", totp=wrong_code(env.secret, T0 + STEP), policy=relaxed)


def test_purge_sessions(env: Env) -> None:
    old = do_login(env, T0)
    fresh = do_login(env, T0 + timedelta(hours=9))
    with auth_transaction(env.sessions) as s:
        assert purge_sessions(s, env.tables, now=T0 + timedelta(hours=33)) == 1
    with pytest.raises(AuthError) as exc:
        auth_at(env, old.token, T0 + timedelta(hours=33))
    assert exc.value.code == "session_unknown"
    with pytest.raises(AuthError) as exc:
        auth_at(env, fresh.token, T0 + timedelta(hours=33))
    assert exc.value.code == "session_expired"


# --- negative paths: login ----------------------------------------------------------------


def test_wrong_password(env: Env) -> None:
    err = fails(env, T0, "bad_credentials", password="Wrong-Password-1")
    assert err.status == 401
    assert staff_row(env)["failed_count"] == 1  # committed despite the error


def test_unknown_user_same_error_as_wrong_password(env: Env) -> None:
    wrong = fails(env, T0, "bad_credentials", password="Wrong-Password-1")
    unknown = fails(env, T0, "bad_credentials", staff_id="S9999", totp="123456")
    empty = fails(env, T0, "bad_credentials", staff_id="  ", totp="123456")
    assert unknown.message_ja == wrong.message_ja == empty.message_ja
    assert unknown.status == wrong.status and unknown.to_dict() == wrong.to_dict()


def test_wrong_totp(env: Env) -> None:
    fails(env, T0, "totp_invalid", totp=wrong_code(env.secret, T0))
    fails(env, T0 + STEP, "totp_invalid", totp="12345")  # not six digits
    fails(env, T0 + 2 * STEP, "totp_invalid", totp="abcdef")
    assert staff_row(env)["failed_count"] == 3  # counts towards the lockout


def test_missing_totp(env: Env) -> None:
    fails(env, T0, "totp_required", totp=None)
    fails(env, T0, "totp_required", totp="  ")
    assert staff_row(env)["failed_count"] == 0


def test_expired_totp_two_steps_old(env: Env) -> None:
    fails(env, T0, "totp_invalid", totp=code(env.secret, T0 - 2 * STEP))
    fails(env, T0, "totp_invalid", totp=code(env.secret, T0 + 2 * STEP))  # too far ahead too


def test_reused_totp(env: Env) -> None:
    used = code(env.secret, T0)
    do_login(env, T0, totp=used)
    fails(env, T0 + timedelta(seconds=10), "totp_reused", totp=used)
    # An older, never-used code after a newer one was accepted: also refused.
    do_login(env, T0 + STEP, totp=code(env.secret, T0 + 2 * STEP))
    fails(env, T0 + STEP, "totp_reused", totp=code(env.secret, T0 + STEP))
    assert staff_row(env)["failed_count"] == 1  # reuse counts; the success between reset it


def test_lockout_after_five_failures_and_its_expiry(env: Env) -> None:
    for i in range(4):
        fails(env, T0 + i * STEP, "bad_credentials", password=f"Wrong-Password-{i}")
    err = fails(env, T0 + 4 * STEP, "locked", password="Wrong-Password-4")
    until = T0 + 4 * STEP + timedelta(minutes=15)
    assert err.locked_until == until
    assert staff_row(env)["locked_until"] == until
    # 01:02:00Z + 15 min = 10:17 JST
    assert "2026年4月1日 10時17分（日本時間）" in err.message_ja
    # Locked: even the right password and code are refused, and do not count.
    at = T0 + 5 * STEP
    fails(env, at, "locked")
    fails(env, until - timedelta(seconds=1), "locked")
    # After 15 minutes the right credentials work again.
    do_login(env, until)
    row = staff_row(env)
    assert row["failed_count"] == 0 and row["locked_until"] is None


def test_lockout_counts_totp_failures(env: Env) -> None:
    for i in range(4):
        fails(env, T0 + i * STEP, "totp_invalid", totp=wrong_code(env.secret, T0 + i * STEP))
    fails(env, T0 + 4 * STEP, "locked", password="nope")


def test_lock_message_rounds_up_to_the_minute() -> None:
    err = auth._locked(datetime(2026, 4, 1, 1, 2, 30, tzinfo=UTC))
    assert "10時03分" in err.message_ja


def test_after_lock_expiry_the_counter_starts_again(env: Env) -> None:
    for i in range(5):
        fails(env, T0 + i * STEP, "bad_credentials" if i < 4 else "locked", password="x")
    later = T0 + timedelta(minutes=20)
    for i in range(4):
        fails(env, later + i * STEP, "bad_credentials", password="x")
    fails(env, later + 4 * STEP, "locked", password="x")


def test_inactive_staff(env: Env) -> None:
    result = do_login(env, T0)
    a = admin(env)
    with auth_transaction(env.sessions) as s:
        set_active(s, env.tables, "S0001", False, a, now=T0 + STEP)
    with pytest.raises(AuthError) as exc:
        auth_at(env, result.token, T0 + 2 * STEP)
    assert exc.value.code == "session_revoked"
    fails(env, T0 + 2 * STEP, "inactive")
    # Without the right password a suspended account looks like any other.
    fails(env, T0 + 2 * STEP, "bad_credentials", password="Wrong-Password-1")
    with auth_transaction(env.sessions) as s:
        set_active(s, env.tables, "S0001", True, a, now=T0 + 3 * STEP)
    do_login(env, T0 + 3 * STEP)


def test_naive_now_is_refused(env: Env) -> None:
    with pytest.raises(ValueError), env.sessions() as s:
        login(
            s,
            env.tables,
            env.cipher,
            "S0001",
            PASSWORD,
            "123456",
            terminal=None,
            policy=POLICY,
            now=datetime(2026, 4, 1),
        )


def test_auth_error_codes_are_stable() -> None:
    assert set(auth.AUTH_ERROR_CODES) == {
        "bad_credentials", "locked", "totp_required", "totp_invalid", "totp_reused",
        "password_policy", "session_expired", "session_revoked", "session_unknown",
        "csrf_failed", "token_invalid", "token_expired", "scope_denied", "inactive",
    }  # fmt: skip
    with pytest.raises(ValueError):
        AuthError("nope")
    err = AuthError("locked", locked_until=T0)
    again = pickle.loads(pickle.dumps(err))
    assert (again.code, again.message_ja, again.locked_until) == ("locked", err.message_ja, T0)
    assert err.to_dict()["code"] == "locked"


# --- negative paths: sessions and CSRF ----------------------------------------------------


def test_idle_expired_session(env: Env) -> None:
    result = do_login(env, T0)
    auth_at(env, result.token, T0 + timedelta(minutes=29))
    with pytest.raises(AuthError) as exc:
        auth_at(env, result.token, T0 + timedelta(minutes=59))
    assert exc.value.code == "session_expired" and exc.value.detail == "idle"


def test_absolute_expired_session(env: Env) -> None:
    result = do_login(env, T0)
    at = T0
    for _ in range(8 * 3 - 1):
        at += timedelta(minutes=20)
        auth_at(env, result.token, at)
    with pytest.raises(AuthError) as exc:
        auth_at(env, result.token, T0 + timedelta(hours=8))
    assert exc.value.code == "session_expired" and exc.value.detail == "absolute"


def test_shorter_absolute_limit_applies_to_open_sessions(env: Env) -> None:
    result = do_login(env, T0)
    strict = AuthPolicy(hasher=CHEAP, absolute_hours=1, idle_minutes=120)
    with pytest.raises(AuthError) as exc, auth_transaction(env.sessions) as s:
        authenticate(s, env.tables, result.token, policy=strict, now=T0 + timedelta(minutes=61))
    assert exc.value.code == "session_expired"


def test_revoked_session(env: Env) -> None:
    one = do_login(env, T0, terminal="PC-01")
    two = do_login(env, T0 + STEP, terminal="PC-02")
    admin_login = do_login(env, T0 + 2 * STEP, staff_id="A0001", password=ADMIN_PASSWORD)
    a = auth_at(env, admin_login.token, T0 + 2 * STEP)
    with auth_transaction(env.sessions) as s:
        assert revoke_sessions(s, env.tables, "S0001", a, now=T0 + 3 * STEP) == 2
    for result in (one, two):
        with pytest.raises(AuthError) as exc:
            auth_at(env, result.token, T0 + 4 * STEP)
        assert exc.value.code == "session_revoked"
    auth_at(env, admin_login.token, T0 + 4 * STEP)  # other staff unaffected


def test_revoke_sessions_needs_admin(env: Env) -> None:
    result = do_login(env, T0)
    clerk = auth_at(env, result.token, T0)
    with pytest.raises(PermissionDenied) as exc, auth_transaction(env.sessions) as s:
        revoke_sessions(s, env.tables, "A0001", clerk, now=T0)
    assert exc.value.code == "role_required" and "「管理」" in exc.value.message_ja
    for action in (
        lambda s: unlock(s, env.tables, "S0001", clerk),
        lambda s: set_roles(s, env.tables, "S0001", ["管理"], clerk),
        lambda s: set_active(s, env.tables, "A0001", False, clerk, now=T0),
        lambda s: reset_totp(s, env.tables, env.cipher, "A0001", clerk, policy=POLICY),
    ):
        with pytest.raises(PermissionDenied), env.sessions() as s:
            action(s)


def test_unknown_session(env: Env) -> None:
    do_login(env, T0)
    for token in ("", "x" * 43, "x" * 10_000):
        with pytest.raises(AuthError) as exc:
            auth_at(env, token, T0)
        assert exc.value.code == "session_unknown"


def test_missing_or_wrong_csrf(env: Env) -> None:
    one = do_login(env, T0)
    two = do_login(env, T0 + STEP)
    principal = auth_at(env, one.token, T0 + STEP)
    for presented in (None, "", "x" * 43, two.csrf_token, one.token, "x" * 10_000):
        with pytest.raises(AuthError) as exc, env.sessions() as s:
            check_csrf(s, env.tables, principal, presented)
        assert exc.value.code == "csrf_failed" and exc.value.status == 403


# --- negative paths: API tokens -----------------------------------------------------------


def issue(env: Env, scopes: list[str], expires_at: datetime, *, staff_id: str = "S0001") -> str:
    with auth_transaction(env.sessions) as s:
        return issue_api_token(
            s, env.tables, staff_id, "batch", scopes, expires_at, policy=POLICY, now=T0
        )


def test_api_token_scope_beyond_roles(env: Env) -> None:
    for scopes in (["宛名:更新"], [f"{CHILD}:照会", "管理"], ["個人番号:表示"], []):
        with pytest.raises(AuthError) as exc:
            issue(env, scopes, T0 + timedelta(days=1))
        assert exc.value.code == "scope_denied"
    with pytest.raises(AuthError) as exc:
        issue(env, ["宛名:更新", "宛名:参照"], T0 + timedelta(days=1))
    assert "宛名:更新" in exc.value.message_ja and "宛名:参照" not in exc.value.message_ja
    with pytest.raises(AuthError) as exc:
        issue(env, ["なんでも"], T0 + timedelta(days=1))
    assert exc.value.code == "scope_denied"
    with env.sessions() as s:
        assert list_api_tokens(s, env.tables, "S0001") == []


def test_api_token_expiry_bounds(env: Env) -> None:
    for expires_at in (T0, T0 - timedelta(days=1), T0 + timedelta(days=91)):
        with pytest.raises(ValueError):
            issue(env, ["宛名:参照"], expires_at)


def test_expired_api_token(env: Env) -> None:
    token = issue(env, ["宛名:参照"], T0 + timedelta(days=1))
    with auth_transaction(env.sessions) as s:
        authenticate_api_token(s, env.tables, token, now=T0 + timedelta(hours=23))
    with pytest.raises(AuthError) as exc, auth_transaction(env.sessions) as s:
        authenticate_api_token(s, env.tables, token, now=T0 + timedelta(days=1))
    assert exc.value.code == "token_expired"


def test_revoked_api_token(env: Env) -> None:
    token = issue(env, ["宛名:参照"], T0 + timedelta(days=1))
    with auth_transaction(env.sessions) as s:
        p = authenticate_api_token(s, env.tables, token, now=T0)
        assert p.api_token_id is not None
        revoke_api_token(s, env.tables, p.api_token_id, p, now=T0 + STEP)  # the owner
    with pytest.raises(AuthError) as exc, auth_transaction(env.sessions) as s:
        authenticate_api_token(s, env.tables, token, now=T0 + 2 * STEP)
    assert exc.value.code == "token_invalid"
    with env.sessions() as s:
        assert list_api_tokens(s, env.tables, "S0001")[0].revoked_at == T0 + STEP


def test_revoke_api_token_of_another_needs_admin(env: Env) -> None:
    token = issue(env, ["管理"], T0 + timedelta(days=1), staff_id="A0001")
    clerk = auth_at(env, do_login(env, T0).token, T0)
    with auth_transaction(env.sessions) as s:
        token_id = list_api_tokens(s, env.tables, "A0001")[0].id
    with pytest.raises(PermissionDenied), env.sessions() as s:
        revoke_api_token(s, env.tables, token_id, clerk, now=T0)
    with pytest.raises(LookupError), env.sessions() as s:
        revoke_api_token(s, env.tables, "nope", clerk, now=T0)
    a = admin(env)
    with auth_transaction(env.sessions) as s:
        revoke_api_token(s, env.tables, token_id, a, now=T0)
    with pytest.raises(AuthError) as exc, auth_transaction(env.sessions) as s:
        authenticate_api_token(s, env.tables, token, now=T0)
    assert exc.value.code == "token_invalid"


def test_unknown_api_token(env: Env) -> None:
    for token in (None, "", "x" * 43, "x" * 10_000):
        with pytest.raises(AuthError) as exc, env.sessions() as s:
            authenticate_api_token(s, env.tables, token, now=T0)
        assert exc.value.code == "token_invalid"


def test_api_token_of_suspended_staff(env: Env) -> None:
    token = issue(env, ["宛名:参照"], T0 + timedelta(days=1))
    a = admin(env)
    with auth_transaction(env.sessions) as s:
        set_active(s, env.tables, "S0001", False, a, now=T0)
    with pytest.raises(AuthError) as exc, auth_transaction(env.sessions) as s:
        authenticate_api_token(s, env.tables, token, now=T0)
    assert exc.value.code == "inactive"
    with pytest.raises(AuthError) as exc:
        issue(env, ["宛名:参照"], T0 + timedelta(days=1))
    assert exc.value.code == "inactive"


# --- negative paths: staff and passwords --------------------------------------------------


@pytest.mark.parametrize(
    ("password", "fragments"),
    [
        ("Short-1a", ["12文字以上", "現在8文字"]),
        ("alllowercaseletters", ["3種類以上", "英大文字", "数字", "記号"]),
        ("ALLUPPER12345", ["3種類以上", "英小文字、記号"]),
        ("123456789012!", ["英大文字、英小文字"]),
        ("xS0001-Kodomo-Teate", ["職員IDを含めないでください"]),
        ("xs0001-Kodomo-Teate", ["職員IDを含めないでください"]),  # case-insensitive
        ("Password1234", ["よく使われるパスワード"]),
        ("ＰＡＳＳＷＯＲＤ１２３４", ["よく使われるパスワード"]),  # full-width, NFKC
        ("abc", ["12文字以上", "3種類以上"]),
        ("A" * 250 + "a1!" + "b" * 10, ["256文字以内"]),
    ],
)
def test_password_policy_failures(password: str, fragments: list[str]) -> None:
    problems = " ".join(password_problems(password, "S0001", POLICY))
    for fragment in fragments:
        assert fragment in problems
    with pytest.raises(AuthError) as exc:
        auth.check_password(password, "S0001", POLICY)
    assert exc.value.code == "password_policy" and exc.value.status == 422
    assert exc.value.problems and all(p in exc.value.message_ja for p in exc.value.problems)


@pytest.mark.parametrize(
    "password",
    [
        "Kodomo-Teate-2026",
        "kodomoteate2026!",  # lower, digit, symbol
        "ＫｏｄｏｍｏＴｅａｔｅ２０",  # full-width letters and digits count in their classes
        "こどもてあて2026abc",  # kana count as symbols
        "correct horse battery 9",
    ],
)
def test_password_policy_accepts(password: str) -> None:
    assert password_problems(password, "S0001", POLICY) == []


def test_create_staff_refuses_weak_password(env: Env) -> None:
    with pytest.raises(AuthError) as exc, auth_transaction(env.sessions) as s:
        create_staff(
            s,
            env.tables,
            env.cipher,
            "S0002",
            "弱い 設定",
            "password",
            ["宛名:参照"],
            policy=POLICY,
            now=T0,
        )
    assert exc.value.code == "password_policy"
    with env.sessions() as s:
        ids = s.execute(select(env.tables.staff.c.staff_id)).scalars().all()
    assert sorted(ids) == ["A0001", "S0001"]


def test_create_staff_validation(env: Env) -> None:
    cases: list[tuple[str, str, list[str], type[Exception]]] = [
        ("S0001", "重複", ["宛名:参照"], ValueError),  # already registered
        ("", "空", ["宛名:参照"], ValueError),
        ("S 0002", "空白", ["宛名:参照"], ValueError),
        ("S0002", "", ["宛名:参照"], ValueError),  # empty name
        ("S0002", "不正", ["宛名"], ValueError),  # bad role
        ("S0002", "監査兼更新", ["監査", "宛名:更新"], RoleConflict),
    ]
    for staff_id, name, roles, error in cases:
        with pytest.raises(error), auth_transaction(env.sessions) as s:
            create_staff(
                s,
                env.tables,
                env.cipher,
                staff_id,
                name,
                "Valid-Password-12",
                roles,
                policy=POLICY,
                now=T0,
            )
    a = admin(env)
    with pytest.raises(RoleConflict), env.sessions() as s:
        set_roles(s, env.tables, "S0001", ["監査", f"{CHILD}:副本登録"], a)
    with pytest.raises(LookupError), env.sessions() as s:
        unlock(s, env.tables, "S9999", a)


def test_change_password_failures(env: Env) -> None:
    with pytest.raises(AuthError) as exc, auth_transaction(env.sessions) as s:
        change_password(
            s, env.tables, "S0001", "Wrong-Old-Pass-1", "Atarashii-Pass-42", policy=POLICY, now=T0
        )
    assert exc.value.code == "bad_credentials"
    assert staff_row(env)["failed_count"] == 1  # guessing through a stolen session counts
    with pytest.raises(AuthError) as exc, auth_transaction(env.sessions) as s:
        change_password(s, env.tables, "S0001", PASSWORD, "short", policy=POLICY, now=T0)
    assert exc.value.code == "password_policy"
    with pytest.raises(AuthError) as exc, auth_transaction(env.sessions) as s:
        change_password(s, env.tables, "S0001", PASSWORD, PASSWORD, policy=POLICY, now=T0)
    assert exc.value.code == "password_policy" and "異なる" in exc.value.message_ja
    with pytest.raises(AuthError) as exc, auth_transaction(env.sessions) as s:
        change_password(
            s, env.tables, "S9999", PASSWORD, "Atarashii-Pass-42", policy=POLICY, now=T0
        )
    assert exc.value.code == "bad_credentials"
    do_login(env, T0)  # the old password still works


def test_auth_transaction_rolls_back_other_errors(env: Env) -> None:
    with pytest.raises(RuntimeError), auth_transaction(env.sessions) as s:
        s.execute(env.tables.staff.update().values(failed_count=3))
        raise RuntimeError("boom")
    assert staff_row(env)["failed_count"] == 0
