"""Staff identity kernel: passwords, TOTP, sign-in throttling, administrators' locks,
sessions, CSRF and API tokens on both backends."""

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

from renkei.core.crypto.field import FieldCipher, FieldDecryptError
from renkei.core.db import NAMING, make_engine, make_sessionmaker
from renkei.staff import auth
from renkei.staff.auth import (
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
    lock,
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
from renkei.staff.roles import PermissionDenied, RoleConflict
from renkei.staff.throttle import ThrottlePolicy

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


def test_admin_unlock_lifts_the_throttle(env: Env) -> None:
    for _ in range(5):
        fails(env, T0, "bad_credentials", password="x")
    at = T0 + timedelta(seconds=1)
    assert fails(env, at, "bad_credentials").reason == "throttled"  # the right password too
    a = admin(env)
    with auth_transaction(env.sessions) as s:
        unlock(s, env.tables, "S0001", a)
    assert staff_row(env)["locked_until"] is None and staff_row(env)["failed_count"] == 0
    do_login(env, at)
    with env.sessions() as s:
        left = set(s.scalars(select(env.tables.throttle.c.key)))
    assert left == {"source:PC-01"}  # the source's count is not the account's to clear


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


class CountingHasher(PasswordHasher):
    """The cheap hasher, counting the argon2 verifications (the work an answer costs)."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002
        self.verified += 1
        return super().verify(hash, password)


def test_unknown_locked_throttled_and_wrong_password_answer_alike(env: Env) -> None:
    """OWASP: one answer, one argon2 verification, whatever the reason (no enumeration)."""
    hasher = CountingHasher()
    policy = AuthPolicy(hasher=hasher)
    a = admin(env)
    with auth_transaction(env.sessions) as s:
        create_staff(s, env.tables, env.cipher, "S0002", "ロック 対象", PASSWORD, [], policy=POLICY, now=T0)
        lock(s, env.tables, "S0002", a, now=T0)
    for _ in range(5):  # S0001 from PC-09 is throttled after five failures
        fails(env, T0 + 6 * STEP, "bad_credentials", password="x", terminal="PC-09")

    def refusal(**kw: object) -> AuthError:
        before = hasher.verified
        err = fails(env, T0 + 6 * STEP, "bad_credentials", policy=policy, **kw)
        assert hasher.verified == before + 1, err.reason  # the same work every time
        return err

    wrong = refusal(password="Wrong-Password-1")
    unknown = refusal(staff_id="S9999", totp="123456")
    empty = refusal(staff_id="  ", totp="123456")
    locked = refusal(staff_id="S0002", totp="123456")  # even with the right password
    throttled = refusal(terminal="PC-09")  # even with the right password and code
    reasons = [e.reason for e in (wrong, unknown, empty, locked, throttled)]
    assert reasons == ["bad_credentials", "unknown_staff", "unknown_staff", "locked", "throttled"]
    for err in (unknown, empty, locked, throttled):
        assert err.to_dict() == wrong.to_dict() and err.status == wrong.status == 401
    assert "reason" not in repr(wrong.to_dict()) and "throttled" not in repr(throttled.to_dict())


def test_throttle_after_five_failures_with_increasing_delays(env: Env) -> None:
    with env.sessions() as s:  # nothing is counted before a failure
        assert s.scalar(select(env.tables.throttle.c.key)) is None
    at = T0
    for _ in range(4):
        fails(env, at, "bad_credentials", password="x")
    # The fifth failure from this terminal refuses its next attempts for 2 s, then 4, 8 …
    for delay in (2, 4, 8, 16):
        fails(env, at, "bad_credentials", password="x")
        assert fails(env, at + timedelta(seconds=delay - 1), "bad_credentials").reason == "throttled"
        at += timedelta(seconds=delay)
    # Refused attempts are not counted: hammering does not lengthen the delay.
    fails(env, at, "bad_credentials", password="x")  # 9th failure: 32 s
    for k in range(30):
        assert fails(env, at + timedelta(seconds=k), "bad_credentials").reason == "throttled"
    do_login(env, at + timedelta(seconds=32))  # and the right credentials work again
    assert staff_row(env)["failed_count"] == 0


def test_the_delay_is_capped(env: Env) -> None:
    policy = AuthPolicy(hasher=CHEAP, throttle=ThrottlePolicy(max_delay_seconds=60))
    at = T0
    for _ in range(20):
        fails(env, at, "bad_credentials", password="x", policy=policy)
        at += timedelta(seconds=61)  # always past the (capped) delay
    assert fails(env, at - timedelta(seconds=2), "bad_credentials", policy=policy).reason == "throttled"
    do_login(env, at, policy=policy)


def test_a_stranger_cannot_lock_the_owner_out(env: Env) -> None:
    """Failures from one terminal slow down that terminal; the owner elsewhere signs in."""
    at = T0
    for _ in range(30):
        err = fails(env, at, "bad_credentials", password="x", terminal="EVIL-PC")
        at += timedelta(seconds=20)
    assert err.reason == "throttled"  # the stranger is slowed down …
    do_login(env, at, terminal="PC-01")  # … the owner at their terminal is not


def test_guessing_from_many_addresses_throttles_the_account(env: Env) -> None:
    policy = AuthPolicy(hasher=CHEAP, throttle=ThrottlePolicy(account_after=10))
    for i in range(10):
        fails(env, T0, "bad_credentials", password="x", terminal=f"10.0.0.{i}", policy=policy)
    assert fails(env, T0, "bad_credentials", terminal="PC-01", policy=policy).reason == "throttled"
    do_login(env, T0 + timedelta(seconds=2), terminal="PC-01", policy=policy)


def test_spraying_from_one_address_throttles_the_address(env: Env) -> None:
    for i in range(20):
        fails(env, T0, "bad_credentials", staff_id=f"X{i:04d}", password="x", totp="123456", terminal="SPRAY")
    assert fails(env, T0, "bad_credentials", terminal="SPRAY").reason == "throttled"
    do_login(env, T0, terminal="PC-01")  # other terminals are not affected


def test_counting_starts_again_in_a_new_window(env: Env) -> None:
    for i in range(4):
        fails(env, T0 + i * STEP, "bad_credentials", password="x")
    later = T0 + timedelta(minutes=61)  # the window of the first failure is over
    for i in range(4):
        assert fails(env, later + i * STEP, "bad_credentials", password="x").reason == "bad_credentials"
    assert fails(env, later + 4 * STEP, "bad_credentials", password="x").reason == "bad_credentials"
    assert fails(env, later + 4 * STEP, "bad_credentials").reason == "throttled"


def test_totp_failures_count_towards_the_throttle(env: Env) -> None:
    for i in range(5):
        fails(env, T0 + i * STEP, "totp_invalid", totp=wrong_code(env.secret, T0 + i * STEP))
    # Throttled: refused before the password is checked, like any other attempt.
    assert fails(env, T0 + 4 * STEP + timedelta(seconds=1), "bad_credentials").reason == "throttled"


def test_ids_that_cannot_exist_are_never_stored(env: Env) -> None:
    number = "123456789018"  # a valid individual number typed as the staff ID
    for presented in (number, "S" + number, "<script>", "ｘ" * 70):
        fails(env, T0, "bad_credentials", staff_id=presented, totp="123456")
    with env.sessions() as s:
        keys = set(s.scalars(select(env.tables.throttle.c.key)))
    assert keys == {"source:PC-01"}  # counted against the address only
    assert number not in repr(keys)


def test_throttle_rows_are_pruned(env: Env) -> None:
    for i in range(3):
        fails(env, T0, "bad_credentials", staff_id=f"Z{i}", totp="123456", terminal=f"T{i}")
    fails(env, T0 + timedelta(hours=2), "bad_credentials", password="x")
    with env.sessions() as s:
        keys = set(s.scalars(select(env.tables.throttle.c.key)))
    assert keys == {"account:S0001", "source:PC-01", "pair:S0001|PC-01"}


def test_administrator_locks_until_unlocked(env: Env) -> None:
    result = do_login(env, T0)
    a = admin(env)
    with auth_transaction(env.sessions) as s:
        assert lock(s, env.tables, "S0001", a, now=T0 + STEP) == 1  # its session ends
    with pytest.raises(AuthError) as exc:
        auth_at(env, result.token, T0 + 2 * STEP)
    assert exc.value.code == "session_revoked"
    assert staff_row(env)["locked_until"] == auth.UNTIL_UNLOCKED
    # Refused like a wrong password, for good: no time ends it.
    assert fails(env, T0 + 2 * STEP, "bad_credentials").reason == "locked"
    assert fails(env, T0 + timedelta(days=400), "bad_credentials").reason == "locked"
    with auth_transaction(env.sessions) as s:
        unlock(s, env.tables, "S0001", a)
    do_login(env, T0 + timedelta(days=400))
    clerk = auth_at(env, do_login(env, T0 + timedelta(days=400, seconds=30)).token, T0 + timedelta(days=400, seconds=30))
    with pytest.raises(PermissionDenied), env.sessions() as s:
        lock(s, env.tables, "A0001", clerk, now=T0)


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
        "bad_credentials", "totp_required", "totp_invalid", "totp_reused",
        "password_policy", "session_expired", "session_revoked", "session_unknown",
        "csrf_failed", "token_invalid", "token_expired", "scope_denied", "inactive",
    }  # fmt: skip
    with pytest.raises(ValueError):
        AuthError("nope")
    err = AuthError("bad_credentials", reason="throttled")
    again = pickle.loads(pickle.dumps(err))
    assert (again.code, again.message_ja, again.reason) == ("bad_credentials", err.message_ja, "throttled")
    assert err.to_dict() == AuthError("bad_credentials").to_dict()  # the reason stays inside
    assert AuthError("inactive").reason == "inactive"


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


def test_an_api_token_id_never_looks_like_an_individual_number(monkeypatch: pytest.MonkeyPatch) -> None:
    """Token ids go into audit entries, which refuse a 12-digit run: such a draw is re-drawn."""
    import secrets

    from renkei.core import ids
    from renkei.staff import auth

    number = ids.make_individual_number("12345678901")
    draws = iter([number + "abcd", "0123456789abcdef"])
    monkeypatch.setattr(secrets, "token_hex", lambda _n: next(draws))
    assert auth.new_token_id() == "0123456789abcdef"
