"""Key rotation: generations, online re-encryption interrupted and resumed, retirement,
master-key re-wrap. Runs on SQLite and PostgreSQL (``db_url``)."""

from __future__ import annotations

import json
import os
import random
import stat
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Column, Engine, Integer, LargeBinary, MetaData, String, Table, insert, select

from renkei.core.crypto import field
from renkei.core.crypto.field import (
    FieldCipher,
    FieldDecryptError,
    FileKms,
    KmsError,
    load_or_create_keyring,
    pending_master_path,
)
from renkei.core.crypto.rotation import (
    OAUTH_CLIENT_SECRET,
    PERSONS_INDIVIDUAL_NUMBER,
    STAFF_TOTP_SECRET,
    EncryptedColumn,
    KeyRotationReport,
    RotationError,
    RotationReport,
    add_generation,
    generation_counts,
    keyring_status,
    retire_generation,
    rewrap_keyring,
    rotate_column,
    rotate_keys,
    rotate_master_key,
)
from renkei.core.db import make_engine
from renkei.core.ids import generate_individual_number

ROWS = 2500
COL = PERSONS_INDIVIDUAL_NUMBER
_rng = random.Random(1)
NUMBERS = [generate_individual_number(_rng) for _ in range(ROWS)]
assert len(set(NUMBERS)) == ROWS


def pk(i: int) -> str:
    return f"1{i:014d}"


@dataclass
class Env:
    engine: Engine
    table: Table
    master: Path
    keyring: Path
    kms: FileKms
    reader: FieldCipher  # a running process: loaded before any rotation, never reloaded by hand
    checkpoint: Path

    def load(self) -> FieldCipher:
        return load_or_create_keyring(self.keyring, FileKms(self.master))

    def rotate(
        self,
        cipher: FieldCipher,
        *,
        table: str | Table = COL.table,
        batch: int = 1000,
        progress: Callable[[int, int], None] | None = None,
        stop_after: int | None = None,
    ) -> RotationReport:
        return rotate_column(
            self.engine,
            table=table,
            pk_column=COL.pk_column,
            ciphertext_column=COL.ciphertext_column,
            aad=COL.aad,
            keyring=cipher,
            batch=batch,
            progress=progress,
            stop_after=stop_after,
            checkpoint=self.checkpoint,
        )

    def counts(self) -> dict[int, int]:
        return generation_counts(
            self.engine, table=COL.table, ciphertext_column=COL.ciphertext_column
        )

    def decrypt_all(self, cipher: FieldCipher) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(self.table.c.atena_no, self.table.c.individual_number_enc)
                .where(self.table.c.individual_number_enc.is_not(None))
                .order_by(self.table.c.atena_no)
            ).all()
        return [cipher.decrypt(bytes(blob), COL.aad(no)) for no, blob in rows]

    def lookup(self, cipher: FieldCipher, number: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(self.table.c.atena_no).where(
                    self.table.c.individual_number_index == cipher.blind_index(number)
                )
            ).scalar_one_or_none()


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[Env]:
    engine = make_engine(db_url)
    metadata = MetaData()
    table = Table(
        "persons",
        metadata,
        Column("atena_no", String(15), primary_key=True),
        Column("individual_number_enc", LargeBinary, nullable=True),
        Column("individual_number_index", String(64), unique=True, nullable=True),
    )
    metadata.create_all(engine)
    master, keyring = tmp_path / "secrets" / "master.key", tmp_path / "data" / "keyring.json"
    kms = FileKms.create(master)
    reader = load_or_create_keyring(keyring, kms)
    rows: list[dict[str, object]] = [
        {
            "atena_no": pk(i),
            "individual_number_enc": reader.encrypt(n, COL.aad(pk(i))),
            "individual_number_index": reader.blind_index(n),
        }
        for i, n in enumerate(NUMBERS)
    ]
    # persons without a known number (住登外者): NULL, never touched
    rows += [
        {"atena_no": f"2{i:014d}", "individual_number_enc": None, "individual_number_index": None}
        for i in range(20)
    ]
    with engine.begin() as conn:
        conn.execute(insert(table), rows)
    yield Env(engine, table, master, keyring, kms, reader, tmp_path / "data" / "rotation.json")
    engine.dispose()


def _spy(cipher: FieldCipher, calls: Counter[str], crash_at: int | None = None) -> None:
    """Count re-encryptions per primary key; optionally die at the ``crash_at``-th one."""
    real = cipher.reencrypt

    def spy(blob: bytes, aad: tuple[str, str, str], *, generation: int | None = None) -> bytes:
        if crash_at is not None and sum(calls.values()) + 1 == crash_at:
            raise RuntimeError("simulated crash")
        calls[aad[2]] += 1
        return real(blob, aad, generation=generation)

    cipher.reencrypt = spy  # type: ignore[method-assign]


# --- generations in FieldCipher ----------------------------------------------------------


def test_generations_read_old_and_write_new() -> None:
    old_dek, new_dek, index_key = os.urandom(32), os.urandom(32), os.urandom(32)
    old = FieldCipher(old_dek, index_key)
    both = FieldCipher(new_dek, index_key, generation=2, previous={1: old_dek})
    aad = COL.aad(pk(0))
    blob1, blob2 = old.encrypt(NUMBERS[0], aad), both.encrypt(NUMBERS[0], aad)
    assert (blob1[0], blob2[0]) == (1, 2) and len(blob1) == len(blob2)
    assert both.generations == (1, 2) and both.generation == 2
    assert both.decrypt(blob1, aad) == both.decrypt(blob2, aad) == NUMBERS[0]
    assert both.blind_index(NUMBERS[0]) == old.blind_index(NUMBERS[0])
    assert FieldCipher.generation_of(both.reencrypt(blob1, aad)) == 2
    with pytest.raises(FieldDecryptError):  # the generation byte is bound into the AAD
        both.decrypt(b"\x01" + blob2[1:], aad)
    with pytest.raises(FieldDecryptError):  # a reader without generation 2
        old.decrypt(blob2, aad)
    with pytest.raises(ValueError):  # the writing generation must be the newest
        FieldCipher(old_dek, index_key, generation=1, previous={2: new_dek})
    for bad in (0, 256):
        with pytest.raises(ValueError):
            FieldCipher(new_dek, index_key, generation=bad)
    with pytest.raises(ValueError):
        FieldCipher(new_dek, index_key, generation=2, previous={1: index_key})


def test_format_1_keyring_is_read_and_migrated_on_first_rotation(tmp_path: Path) -> None:
    kms = FileKms.create(tmp_path / "master.key")
    keyring = tmp_path / "keyring.json"
    first = load_or_create_keyring(keyring, kms)
    v1 = json.loads(keyring.read_text())
    assert v1["version"] == 1
    blob = first.encrypt(NUMBERS[0], COL.aad(pk(0)))

    assert add_generation(keyring, kms) == 2
    v2 = json.loads(keyring.read_text())
    assert v2["version"] == 2 and v2["current"] == 2 and set(v2["generations"]) == {"1", "2"}
    assert v2["generations"]["1"]["dek"] == v1["dek"]  # generation 1 is the old DEK
    assert v2["index_key"] == v1["index_key"]  # the blind-index key does not rotate
    assert stat.S_IMODE(keyring.stat().st_mode) == 0o600
    status = keyring_status(keyring)
    assert (status.format_version, status.current, status.generations) == (2, 2, (1, 2))
    assert status.rotation_pending

    second = load_or_create_keyring(keyring, kms)
    assert second.decrypt(blob, COL.aad(pk(0))) == NUMBERS[0]
    assert second.blind_index(NUMBERS[0]) == first.blind_index(NUMBERS[0])
    assert second.encrypt(NUMBERS[0], COL.aad(pk(0)))[0] == 2
    assert json.loads(keyring.read_text()) == v2  # loading never rewrites


def test_a_running_process_switches_to_the_new_generation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kms = FileKms.create(tmp_path / "master.key")
    keyring = tmp_path / "keyring.json"
    running = load_or_create_keyring(keyring, kms)
    aad = COL.aad(pk(0))
    add_generation(keyring, kms)
    assert running.encrypt(NUMBERS[0], aad)[0] == 1  # checked at most every REFRESH_SECONDS
    monkeypatch.setattr(field, "REFRESH_SECONDS", 0.0)
    assert running.encrypt(NUMBERS[0], aad)[0] == 2 and running.generations == (1, 2)
    assert not running.refresh()  # unchanged file: nothing to do
    assert FieldCipher.generate().refresh() is False  # not loaded from a file


# --- re-encryption -----------------------------------------------------------------------


def test_rotation_reencrypts_every_row(env: Env) -> None:
    assert add_generation(env.keyring, env.kms) == 2
    cipher = env.load()
    assert (cipher.generation, cipher.generations) == (2, (1, 2))
    seen: list[tuple[int, int]] = []
    report = env.rotate(
        cipher, table=env.table, batch=500, progress=lambda d, t: seen.append((d, t))
    )
    assert (report.reencrypted, report.total, report.remaining, report.conflicts) == (
        2500,
        2500,
        0,
        0,
    )
    assert report.completed and report.batches == 5 and report.generation == 2
    assert seen[0] == (0, 2500) and seen[-1] == (2500, 2500) and len(seen) == 6
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert env.counts() == {2: ROWS}
    assert env.decrypt_all(cipher) == NUMBERS
    assert env.lookup(cipher, NUMBERS[1234]) == pk(1234)
    assert not env.checkpoint.exists()
    again = env.rotate(cipher)  # idempotent: nothing left to do
    assert again.reencrypted == 0 and again.completed


def test_interrupted_rotation_resumes_without_reencrypting_twice(env: Env) -> None:
    add_generation(env.keyring, env.kms)
    cipher = env.load()
    calls: Counter[str] = Counter()
    _spy(cipher, calls)

    first = env.rotate(cipher, batch=500, stop_after=1200)
    assert (first.reencrypted, first.batches, first.remaining) == (1200, 3, 1300)
    assert not first.completed and first.last_pk == pk(1199) and first.resumed_after is None
    assert env.counts() == {1: 1300, 2: 1200}
    saved = json.loads(env.checkpoint.read_text())
    assert (saved["last_pk"], saved["done"], saved["generation"]) == (pk(1199), 1200, 2)

    # Mid-rotation: every reader works, the running one (gen 1 only) reloads by itself.
    assert env.decrypt_all(env.reader) == NUMBERS
    assert env.reader.generations == (1, 2)
    assert env.decrypt_all(env.load()) == NUMBERS
    for i in (0, 1199, 1200, ROWS - 1):  # blind-index lookups on both sides of the checkpoint
        assert env.lookup(env.reader, NUMBERS[i]) == pk(i)
        assert env.lookup(cipher, NUMBERS[i]) == pk(i)

    seen: list[tuple[int, int]] = []
    second = env.rotate(cipher, batch=500, progress=lambda d, t: seen.append((d, t)))
    assert second.resumed_after == pk(1199) and second.previously_done == 1200
    assert (second.reencrypted, second.total, second.remaining) == (1300, 2500, 0)
    assert second.completed and seen[0] == (1200, 2500) and seen[-1] == (2500, 2500)
    assert len(calls) == ROWS and set(calls.values()) == {1}  # no row re-encrypted twice
    assert env.counts() == {2: ROWS}
    assert env.decrypt_all(env.reader) == NUMBERS
    assert not env.checkpoint.exists()


def test_crash_inside_a_batch_rolls_it_back_and_resumes(env: Env) -> None:
    add_generation(env.keyring, env.kms)
    cipher = env.load()
    calls: Counter[str] = Counter()
    _spy(cipher, calls, crash_at=1250)
    with pytest.raises(RuntimeError, match="simulated crash"):
        env.rotate(cipher, batch=500)
    assert env.counts() == {1: 1500, 2: 1000}  # the third batch was rolled back whole
    assert json.loads(env.checkpoint.read_text())["last_pk"] == pk(999)
    assert env.decrypt_all(env.load()) == NUMBERS

    cipher = env.load()  # the restarted process
    _spy(cipher, calls := Counter())
    report = env.rotate(cipher, batch=500)
    assert report.resumed_after == pk(999) and report.reencrypted == 1500 and report.completed
    assert min(calls) == pk(1000) and set(calls.values()) == {1}
    assert env.counts() == {2: ROWS}


def test_rotation_without_checkpoint_restarts_from_the_top_but_skips_done_rows(env: Env) -> None:
    add_generation(env.keyring, env.kms)
    cipher = env.load()
    env.checkpoint.unlink(missing_ok=True)
    env.rotate(cipher, batch=700, stop_after=1200)
    env.checkpoint.unlink()  # checkpoint lost in the crash
    calls: Counter[str] = Counter()
    _spy(cipher, calls)
    report = env.rotate(cipher, batch=700)
    assert report.resumed_after is None and report.reencrypted == 1300 and report.completed
    assert min(calls) == pk(1200) and set(calls.values()) == {1}


def test_a_concurrent_writer_wins_over_the_rotation(env: Env) -> None:
    add_generation(env.keyring, env.kms)
    cipher = env.load()
    real = cipher.reencrypt
    target = pk(10)

    def meanwhile(
        blob: bytes, aad: tuple[str, str, str], *, generation: int | None = None
    ) -> bytes:
        if aad[2] == target:  # someone rewrites the row between the rotation's read and write
            with env.engine.begin() as conn:
                conn.execute(
                    env.table.update()
                    .where(env.table.c.atena_no == target)
                    .values(individual_number_enc=env.reader.encrypt(NUMBERS[11], aad))
                )
        return real(blob, aad, generation=generation)

    cipher.reencrypt = meanwhile  # type: ignore[method-assign]
    report = env.rotate(cipher, batch=100)
    assert (report.conflicts, report.reencrypted) == (1, ROWS - 1)
    with env.engine.connect() as conn:
        blob = conn.execute(
            select(env.table.c.individual_number_enc).where(env.table.c.atena_no == target)
        ).scalar_one()
    assert cipher.decrypt(bytes(blob), COL.aad(target)) == NUMBERS[11]  # not overwritten
    assert report.remaining == (1 if bytes(blob)[0] == 1 else 0)


def test_undecryptable_row_is_named(env: Env) -> None:
    add_generation(env.keyring, env.kms)
    with env.engine.begin() as conn:
        conn.execute(
            env.table.update()
            .where(env.table.c.atena_no == pk(5))
            .values(individual_number_enc=env.reader.encrypt(NUMBERS[5], COL.aad(pk(6))))
        )
    with pytest.raises(RotationError, match=f"行 {pk(5)} を復号できません"):
        env.rotate(env.load(), batch=100)
    assert not env.checkpoint.exists() and env.counts() == {1: ROWS}  # first batch rolled back


# --- retirement ----------------------------------------------------------------------------


def test_retire_is_refused_while_old_rows_remain(env: Env) -> None:
    old_blob = env.reader.encrypt(NUMBERS[0], COL.aad(pk(0)))
    add_generation(env.keyring, env.kms)
    cipher = env.load()
    env.rotate(cipher, batch=500, stop_after=1200)
    with pytest.raises(
        RotationError, match="鍵世代 1 はまだ使われているため廃棄できません"
    ) as info:
        retire_generation(env.engine, env.keyring, 1, [COL], settle_seconds=0)
    assert "persons.individual_number_enc 1,300 行" in str(info.value)
    with pytest.raises(RotationError, match="現在の書込み用"):
        retire_generation(env.engine, env.keyring, 2, [COL], settle_seconds=0)
    with pytest.raises(RotationError, match="鍵世代 7 は鍵リングにありません"):
        retire_generation(env.engine, env.keyring, 7, [COL], settle_seconds=0)
    assert keyring_status(env.keyring).generations == (1, 2)

    assert env.rotate(cipher, batch=500).completed
    with pytest.raises(
        RotationError, match="秒しか経っていません"
    ):  # processes may not have switched yet
        retire_generation(env.engine, env.keyring, 1, [COL], settle_seconds=3600)
    retire_generation(env.engine, env.keyring, 1, [COL], settle_seconds=0)
    retire_generation(env.engine, env.keyring, 1, [COL], settle_seconds=0)  # again: nothing to do
    status = keyring_status(env.keyring)
    assert (status.generations, status.retired, status.rotation_pending) == ((2,), (1,), False)

    fresh = env.load()
    assert fresh.generations == (2,) and env.decrypt_all(fresh) == NUMBERS
    with pytest.raises(FieldDecryptError):  # the retired key is gone
        fresh.decrypt(old_blob, COL.aad(pk(0)))
    assert env.reader.refresh() and env.reader.generations == (2,)  # running processes follow
    assert env.reader.encrypt(NUMBERS[0], COL.aad(pk(0)))[0] == 2
    assert add_generation(env.keyring, env.kms) == 3  # a retired number is never reused


# --- the whole command ---------------------------------------------------------------------


def test_rotate_keys_resumes_then_retires(env: Env, tmp_path: Path) -> None:
    notes = Table(
        "notes",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("secret", LargeBinary, nullable=True),
    )
    notes.create(env.engine)
    note_col = EncryptedColumn("notes", "id", "secret", "notes", "secret")
    with env.engine.begin() as conn:
        conn.execute(
            insert(notes),
            [
                {"id": i, "secret": env.reader.encrypt(f"メモ{i}", note_col.aad(i))}
                for i in range(1, 51)
            ],
        )
    absent = EncryptedColumn("absent", "id", "x", "absent", "x")
    columns = [COL, note_col, absent]
    shown: list[tuple[str, int, int]] = []
    t = [datetime(2026, 4, 1, 9, 0, tzinfo=UTC)]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        t[0] += timedelta(seconds=seconds)

    def run(stop_after: int | None = None) -> KeyRotationReport:
        return rotate_keys(
            env.engine,
            env.keyring,
            env.kms,
            columns,
            batch=400,
            progress=lambda c, d, n: shown.append((c.table, d, n)),
            checkpoint_dir=tmp_path / "cp",
            settle_seconds=30,
            sleep=sleep,
            clock=lambda: t[0],
            stop_after=stop_after,
        )

    first = run(stop_after=1200)
    assert first.generation == 2 and first.started and not first.completed
    assert first.retired == () and env.counts() == {1: 1300, 2: 1200}
    assert (tmp_path / "cp" / "rotation-persons.individual_number_enc.json").exists()

    second = run()
    assert second.generation == 2 and not second.started
    assert second.completed and second.retired == (1,)
    assert second.skipped_tables == ("absent",)
    assert slept == [30.0]  # waited for running processes to switch before retiring
    assert env.counts() == {2: ROWS}
    assert generation_counts(env.engine, table="notes", ciphertext_column="secret") == {2: 50}
    assert ("persons", 2500, 2500) in shown and ("notes", 50, 50) in shown
    assert env.decrypt_all(env.reader) == NUMBERS
    assert keyring_status(env.keyring).generations == (2,)

    t[0] += timedelta(days=365)
    third = run()
    assert third.generation == 3 and third.started and third.retired == (2,)
    assert env.counts() == {3: ROWS} and env.decrypt_all(env.load()) == NUMBERS


def test_known_columns_match_the_code() -> None:
    from renkei.atena import service
    from renkei.atena.models import Person
    from renkei.staff import auth, oauth

    assert PERSONS_INDIVIDUAL_NUMBER.aad("100000000000019") == service._aad("100000000000019")
    assert COL.ciphertext_column in Person.__table__.c and COL.pk_column in Person.__table__.c
    assert STAFF_TOTP_SECRET.aad("s1") == auth._totp_aad("s1")
    staff = auth.auth_tables(MetaData()).staff
    assert staff.name == STAFF_TOTP_SECRET.table and STAFF_TOTP_SECRET.ciphertext_column in staff.c
    assert OAUTH_CLIENT_SECRET.aad("c1") == oauth._secret_aad("c1")
    clients = oauth.oauth_tables(MetaData()).clients
    assert clients.name == OAUTH_CLIENT_SECRET.table and OAUTH_CLIENT_SECRET.pk_column in clients.c


# --- master key ----------------------------------------------------------------------------


def test_master_key_rewrap(env: Env, tmp_path: Path) -> None:
    add_generation(env.keyring, env.kms)
    env.rotate(env.load(), batch=500, stop_after=1000)  # mixed generations under the old master
    old_master = env.master.read_bytes()
    report = rotate_master_key(env.keyring, env.master)
    assert report.old_key_id == env.kms.key_id != report.new_key_id and not report.resumed
    assert env.master.read_bytes() != old_master and len(env.master.read_bytes()) == 32
    assert stat.S_IMODE(env.master.stat().st_mode) == 0o600
    assert not pending_master_path(env.master).exists()
    assert json.loads(env.keyring.read_text())["kms_key_id"] == report.new_key_id

    new_only = env.load()  # the new master alone opens the keyring
    assert env.decrypt_all(new_only) == NUMBERS
    assert env.lookup(new_only, NUMBERS[2000]) == pk(2000)
    stale = tmp_path / "old.key"
    stale.write_bytes(old_master)
    stale.chmod(0o600)
    with pytest.raises(KmsError):
        load_or_create_keyring(env.keyring, FileKms(stale))

    # A process started before keeps working, and follows a later data-key rotation.
    assert env.decrypt_all(env.reader) == NUMBERS
    add_generation(env.keyring, FileKms(env.master))
    assert env.rotate(env.load(), batch=1000).completed
    assert env.counts() == {3: ROWS} and env.decrypt_all(env.reader) == NUMBERS


@pytest.mark.parametrize("crash_after", ["new key created", "keyring re-wrapped"])
def test_master_rotation_resumes_after_a_crash(tmp_path: Path, crash_after: str) -> None:
    master, keyring = tmp_path / "master.key", tmp_path / "keyring.json"
    cipher = load_or_create_keyring(keyring, FileKms.create(master))
    blob = cipher.encrypt(NUMBERS[0], COL.aad(pk(0)))
    new = FileKms.create(pending_master_path(master))
    if crash_after == "keyring re-wrapped":
        rewrap_keyring(keyring, FileKms(master), new)
        rewrap_keyring(keyring, FileKms(master), new)  # idempotent
    # In between, a process configured with the old path still starts.
    assert (
        load_or_create_keyring(keyring, FileKms(master)).decrypt(blob, COL.aad(pk(0))) == NUMBERS[0]
    )

    report = rotate_master_key(keyring, master)
    assert report.resumed and report.new_key_id == new.key_id
    assert FileKms(master).key_id == new.key_id and not pending_master_path(master).exists()
    assert (
        load_or_create_keyring(keyring, FileKms(master)).decrypt(blob, COL.aad(pk(0))) == NUMBERS[0]
    )


def test_readable_master_key_files_are_refused(tmp_path: Path) -> None:
    master, keyring = tmp_path / "master.key", tmp_path / "keyring.json"
    load_or_create_keyring(keyring, FileKms.create(master))
    before = keyring.read_bytes()
    master.chmod(0o644)
    with pytest.raises(KmsError, match="0600"):
        load_or_create_keyring(keyring, FileKms(master))
    with pytest.raises(KmsError, match="0600"):
        rotate_master_key(keyring, master)
    master.chmod(0o600)
    pending = pending_master_path(master)
    pending.write_bytes(os.urandom(32))
    pending.chmod(0o644)
    with pytest.raises(KmsError, match="0600"):
        rotate_master_key(keyring, master)
    assert keyring.read_bytes() == before  # nothing was changed


def test_key_management_needs_the_right_master(tmp_path: Path) -> None:
    keyring = tmp_path / "keyring.json"
    load_or_create_keyring(keyring, FileKms.create(tmp_path / "a.key"))
    other = FileKms.create(tmp_path / "b.key")
    with pytest.raises(RotationError, match="マスター鍵"):
        add_generation(keyring, other)
    with pytest.raises(RotationError, match="マスター鍵"):
        rewrap_keyring(keyring, other, FileKms.create(tmp_path / "c.key"))
    assert keyring_status(keyring).generations == (1,)
