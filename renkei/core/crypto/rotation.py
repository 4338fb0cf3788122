"""Key rotation: data-key generations, online re-encryption, retirement, master-key re-wrap.

Data-key rotation (what ``renkei keys rotate`` runs, :func:`rotate_keys`):

1. :func:`begin_rotation` adds a DEK generation to the keyring file and makes it the
   writing one (or, after a crash, finds the unfinished rotation and resumes it).
   Running processes pick it up by themselves (:meth:`FieldCipher.refresh`): they read
   the new generation at once and write it within ``REFRESH_SECONDS``.
2. :func:`rotate_column` re-encrypts each encrypted column in small committed batches,
   ordered by primary key, touching only rows still on an older generation, with a
   checkpoint file; it is idempotent, so a crash at any point is resumed by running it
   again. Every generation stays readable, so readers never stop.
3. :func:`retire_generation` removes an old DEK from the keyring, and refuses while a
   row still uses it.

The blind-index key is not rotated with the DEK: the index is an HMAC of the
plaintext, so rotating its key would change every index value, and every lookup
during the pass would have to try both keys. HMAC-SHA256 has no nonce and no
per-key usage limit, which are what DEK rotation guards against (AES-GCM with random
nonces). Lookups therefore work unchanged throughout a rotation. The index key is
re-wrapped with the DEKs when the master key changes.

Master-key rotation (:func:`rotate_master_key`, or :func:`rewrap_keyring` for any
:class:`~renkei.core.crypto.field.Kms` such as an HSM): every key in the keyring is
re-wrapped under the new master key; no field value changes.

Keyring edits hold an exclusive ``flock`` on ``<keyring>.lock`` and replace the file
atomically, so concurrent editors and readers never see half a keyring.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    Engine,
    LargeBinary,
    MetaData,
    Table,
    and_,
    bindparam,
    func,
    inspect,
    literal,
    select,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from renkei.core.crypto.field import (
    KEY_SIZE,
    MAX_GENERATION,
    REFRESH_SECONDS,
    FieldCipher,
    FieldDecryptError,
    FileKms,
    KeyringFile,
    Kms,
    KmsError,
    _fsync_dir,
    _replace_secret_file,
    load_or_create_keyring,
    pending_master_path,
)

__all__ = [
    "ENCRYPTED_COLUMNS",
    "OAUTH_CLIENT_SECRET",
    "PERSONS_INDIVIDUAL_NUMBER",
    "SETTLE_SECONDS",
    "STAFF_TOTP_SECRET",
    "EncryptedColumn",
    "KeyRotationReport",
    "KeyringStatus",
    "MasterKeyReport",
    "RotationError",
    "RotationReport",
    "add_generation",
    "begin_rotation",
    "generation_counts",
    "keyring_lock",
    "keyring_status",
    "retire_generation",
    "rewrap_keyring",
    "rotate_column",
    "rotate_keys",
    "rotate_master_key",
]

# How long a new generation must have been the writing one before an older one may be
# retired: processes switch within REFRESH_SECONDS, and a transaction that encrypted
# just before the switch still has to commit.
SETTLE_SECONDS = 6 * REFRESH_SECONDS
# Passes over a column before rotate_keys gives up on rows that keep being rewritten
# with an old generation (a process that does not follow the keyring file).
MAX_PASSES = 3

PrimaryKey = int | str


class RotationError(Exception):
    """A rotation step refused or failed; the message (Japanese) says why and what to do."""


@dataclass(frozen=True)
class EncryptedColumn:
    """A column of FieldCipher blobs, AAD ``(aad_table, aad_column, str(primary key))``."""

    table: str
    pk_column: str
    ciphertext_column: str
    aad_table: str
    aad_column: str

    @property
    def label(self) -> str:
        return f"{self.table}.{self.ciphertext_column}"

    def aad(self, pk: object) -> tuple[str, str, str]:
        return (self.aad_table, self.aad_column, str(pk))


# Every FieldCipher column of the code base; rotate_keys skips tables a database lacks.
PERSONS_INDIVIDUAL_NUMBER = EncryptedColumn(
    "persons", "atena_no", "individual_number_enc", "persons", "individual_number"
)
STAFF_TOTP_SECRET = EncryptedColumn("auth_staff", "staff_id", "totp_secret", "staff", "totp_secret")
OAUTH_CLIENT_SECRET = EncryptedColumn(
    "oauth_clients", "client_id", "secret", "oauth_clients", "secret"
)
FUKUHON_SEALED_VALUES = EncryptedColumn("fukuhon", "id", "sealed_values", "fukuhon", "sealed_values")
CITIZENS_INDIVIDUAL_NUMBER = EncryptedColumn(
    "citizens", "resident_code", "individual_number_enc", "citizens", "individual_number"
)
ENCRYPTED_COLUMNS: tuple[EncryptedColumn, ...] = (
    PERSONS_INDIVIDUAL_NUMBER,
    CITIZENS_INDIVIDUAL_NUMBER,
    STAFF_TOTP_SECRET,
    OAUTH_CLIENT_SECRET,
    FUKUHON_SEALED_VALUES,
)


@dataclass(frozen=True)
class RotationReport:
    """Outcome of one :func:`rotate_column` call."""

    table: str
    column: str
    generation: int  # the generation rows were re-encrypted to
    total: int  # rows of this pass: done before a resume plus those on old generations at start
    reencrypted: int  # rows this call re-encrypted (and committed)
    previously_done: int  # rows earlier, interrupted calls of this pass re-encrypted
    conflicts: int  # rows rewritten by someone else meanwhile: left for the next pass
    remaining: int  # rows still on an older generation when the call returned
    resumed_after: PrimaryKey | None  # checkpoint the call started from
    last_pk: PrimaryKey | None  # last primary key done
    completed: bool  # the pass reached the end and no row is left on an old generation
    batches: int
    seconds: float


@dataclass(frozen=True)
class KeyRotationReport:
    """Outcome of :func:`rotate_keys`."""

    generation: int
    started: bool  # False: an unfinished rotation to ``generation`` was resumed
    columns: tuple[RotationReport, ...]
    skipped_tables: tuple[str, ...]  # listed columns whose table this database lacks
    retired: tuple[int, ...]
    completed: bool


@dataclass(frozen=True)
class MasterKeyReport:
    old_key_id: str
    new_key_id: str
    resumed: bool  # an interrupted master-key rotation was finished


@dataclass(frozen=True)
class KeyringStatus:
    """What a keyring file holds, readable without the master key."""

    kms_key_id: str
    format_version: int
    current: int
    generations: tuple[int, ...]
    retired: tuple[int, ...]
    created_at: dict[int, str]

    @property
    def rotation_pending(self) -> bool:
        """Older generations are still present: a rotation has not been finished."""
        return len(self.generations) > 1


# --- keyring file -----------------------------------------------------------------------


@contextmanager
def keyring_lock(keyring_path: Path) -> Iterator[None]:
    """Exclusive lock for editing the keyring file (``<keyring>.lock``, released on exit)."""
    keyring_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(keyring_path.with_name(keyring_path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def keyring_status(keyring_path: Path) -> KeyringStatus:
    ring = KeyringFile.read(keyring_path)
    return KeyringStatus(
        kms_key_id=ring.kms_key_id,
        format_version=ring.version,
        current=ring.current,
        generations=tuple(sorted(ring.deks)),
        retired=tuple(sorted(ring.retired)),
        created_at=dict(ring.created_at),
    )


def _same_master(ring: KeyringFile, kms: Kms) -> None:
    if ring.kms_key_id != kms.key_id:
        raise RotationError(
            f"鍵リングはマスター鍵 {ring.kms_key_id} で保護されていますが、指定されたマスター鍵は "
            f"{kms.key_id} です。マスター鍵の切替が途中なら、先にそれを完了してください。"
        )


def _add_generation_locked(keyring_path: Path, kms: Kms, now: datetime) -> int:
    ring = KeyringFile.read(keyring_path)
    _same_master(ring, kms)
    deks, index_key = ring.unwrap_all(kms)  # proves the master key before anything is written
    generation = max((*ring.deks, *ring.retired)) + 1
    if generation > MAX_GENERATION:
        raise RotationError(
            f"鍵世代が上限 {MAX_GENERATION} に達しました。新しい鍵リングへの移行が必要です。"
        )
    dek = secrets.token_bytes(KEY_SIZE)
    while dek == index_key or dek in deks.values():  # astronomically unlikely
        dek = secrets.token_bytes(KEY_SIZE)
    wrapped = kms.wrap(dek)
    if kms.unwrap(wrapped) != dek:
        raise KmsError("マスター鍵で包んだ鍵を元に戻せません")
    replace(
        ring,
        deks={**ring.deks, generation: wrapped},
        current=generation,
        created_at={**ring.created_at, generation: now.isoformat()},
    ).write(keyring_path)
    return generation


def add_generation(keyring_path: Path, kms: Kms, *, now: datetime | None = None) -> int:
    """Add a fresh DEK generation and make it the writing one; returns its number.

    The file is migrated to format 2 if it was in format 1. Old generations stay.
    """
    with keyring_lock(keyring_path):
        return _add_generation_locked(keyring_path, kms, now or datetime.now(UTC))


def begin_rotation(
    keyring_path: Path, kms: Kms, *, now: datetime | None = None
) -> tuple[int, bool]:
    """Start a data-key rotation, or find the unfinished one: ``(generation, started)``.

    An unfinished rotation is one whose older generations are still in the keyring;
    it is resumed rather than stacked under yet another generation.
    """
    with keyring_lock(keyring_path):
        ring = KeyringFile.read(keyring_path)
        if len(ring.deks) > 1:
            _same_master(ring, kms)
            return ring.current, False
        return _add_generation_locked(keyring_path, kms, now or datetime.now(UTC)), True


# --- re-encryption ----------------------------------------------------------------------


def _table(engine: Engine, table: str | Table, *columns: str) -> Table:
    if isinstance(table, Table):
        return table
    if not inspect(engine).has_table(table):
        raise RotationError(f"テーブル {table} がありません")
    return Table(table, MetaData(), autoload_with=engine, include_columns=list(columns))


def _generation_expr(ciphertext: ColumnElement[bytes]) -> ColumnElement[bytes]:
    # The generation is the first byte: substr() on a BLOB (SQLite) or bytea (PostgreSQL).
    return func.substr(ciphertext, 1, 1, type_=LargeBinary)


def generation_counts(
    engine: Engine, *, table: str | Table, ciphertext_column: str
) -> dict[int, int]:
    """How many non-NULL values of the column each generation encrypted."""
    tbl = _table(engine, table, ciphertext_column)
    gen = _generation_expr(tbl.c[ciphertext_column])
    query = select(gen, func.count()).where(tbl.c[ciphertext_column].is_not(None)).group_by(gen)
    with engine.connect() as conn:
        return {bytes(g)[0]: int(n) for g, n in conn.execute(query) if g}


@dataclass
class _Checkpoint:
    path: Path
    table: str
    column: str
    generation: int
    last_pk: PrimaryKey | None = None
    done: int = 0

    @classmethod
    def load(cls, path: Path, table: str, column: str, generation: int) -> _Checkpoint:
        fresh = cls(path, table, column, generation)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return fresh
        except (OSError, ValueError):
            return fresh  # a damaged checkpoint only costs a rescan: the filter is the truth
        last, done = doc.get("last_pk"), doc.get("done")
        if (
            doc.get("table") != table
            or doc.get("column") != column
            or doc.get("generation") != generation
            or not isinstance(last, int | str)
            or isinstance(last, bool)
            or not isinstance(done, int)
        ):
            return fresh
        return cls(path, table, column, generation, last, done)

    def save(self) -> None:
        doc = {
            "table": self.table,
            "column": self.column,
            "generation": self.generation,
            "last_pk": self.last_pk,
            "done": self.done,
            "updated_at": datetime.now(UTC).isoformat(),
        }
        _replace_secret_file(self.path, json.dumps(doc, ensure_ascii=False).encode() + b"\n")

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def rotate_column(
    engine: Engine,
    *,
    table: str | Table,
    pk_column: str,
    ciphertext_column: str,
    aad: Callable[[PrimaryKey], tuple[str, str, str]],
    keyring: FieldCipher,
    batch: int = 1000,
    progress: Callable[[int, int], None] | None = None,
    stop_after: int | None = None,
    checkpoint: Path | None = None,
) -> RotationReport:
    """Re-encrypt every value of one column still on an older generation, online.

    Batches of at most ``batch`` rows, ordered by primary key, each in its own
    transaction: a batch selects only rows not yet on ``keyring.generation``, and
    writes each row back only if its ciphertext is still the one read (a concurrent
    update wins; the row is counted in ``conflicts`` and left for the next pass). So a
    second call never re-encrypts a row twice, and resumes where a crashed one stopped
    (``checkpoint``: a JSON file holding the last primary key done; without it the
    call rescans from the start, which is slower but equally correct). ``progress`` is
    called with ``(done, total)`` after each committed batch. ``stop_after`` stops after
    that many rows have been committed, as a crash would (for tests and for bounded
    maintenance windows). The primary key must be a single integer or text column.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    started = time.monotonic()
    tbl = _table(engine, table, pk_column, ciphertext_column)
    pk, ct = tbl.c[pk_column], tbl.c[ciphertext_column]
    target = keyring.generation
    stale = and_(ct.is_not(None), _generation_expr(ct) != literal(bytes([target]), LargeBinary))
    cp = (
        _Checkpoint.load(checkpoint, tbl.name, ciphertext_column, target)
        if checkpoint is not None
        else _Checkpoint(Path(), tbl.name, ciphertext_column, target)
    )
    resumed_after, previously_done = cp.last_pk, cp.done

    def after(last: PrimaryKey | None) -> ColumnElement[bool]:
        return stale if last is None else and_(stale, pk > last)

    with engine.connect() as conn:
        todo = int(
            conn.execute(
                select(func.count()).select_from(tbl).where(after(cp.last_pk))
            ).scalar_one()
        )
    total = previously_done + todo
    write = (
        update(tbl)
        .where(pk == bindparam("rot_pk"), ct == bindparam("rot_old", type_=LargeBinary))
        .values({ct.name: bindparam("rot_new", type_=LargeBinary)})
    )
    reencrypted = conflicts = batches = 0
    reached_end = False
    if progress is not None:
        progress(previously_done, total)
    while True:
        limit = batch if stop_after is None else min(batch, stop_after - reencrypted)
        if limit <= 0:
            break
        with engine.begin() as conn:
            rows = conn.execute(
                select(pk, ct).where(after(cp.last_pk)).order_by(pk).limit(limit)
            ).all()
            if not rows:
                reached_end = True
                break
            params = []
            for row_pk, blob in rows:
                if not isinstance(row_pk, int | str):
                    raise RotationError(
                        f"{tbl.name}.{pk_column} の型 {type(row_pk).__name__} の主キーには対応していません"
                    )
                old = bytes(blob)
                try:
                    new = keyring.reencrypt(old, aad(row_pk), generation=target)
                except FieldDecryptError as exc:
                    raise RotationError(
                        f"{tbl.name}.{ciphertext_column} の行 {row_pk} を復号できません"
                        f"（鍵世代 {old[0] if old else '?'}）: {exc}"
                    ) from exc
                params.append({"rot_pk": row_pk, "rot_old": old, "rot_new": new})
            written = conn.execute(write, params).rowcount
        batches += 1
        reencrypted += written
        conflicts += len(rows) - written
        cp.last_pk = rows[-1][0]
        cp.done += written
        if checkpoint is not None:
            cp.save()
        if progress is not None:
            progress(cp.done, total)
    with engine.connect() as conn:
        remaining = int(
            conn.execute(select(func.count()).select_from(tbl).where(stale)).scalar_one()
        )
    if reached_end and checkpoint is not None:
        cp.clear()  # the pass is over; a next pass (stragglers) starts from the beginning
    return RotationReport(
        table=tbl.name,
        column=ciphertext_column,
        generation=target,
        total=total,
        reencrypted=reencrypted,
        previously_done=previously_done,
        conflicts=conflicts,
        remaining=remaining,
        resumed_after=resumed_after,
        last_pk=cp.last_pk,
        completed=reached_end and remaining == 0,
        batches=batches,
        seconds=time.monotonic() - started,
    )


# --- retirement -------------------------------------------------------------------------


def retire_generation(
    engine: Engine,
    keyring_path: Path,
    generation: int,
    columns: Sequence[EncryptedColumn],
    *,
    settle_seconds: float = SETTLE_SECONDS,
    now: datetime | None = None,
) -> None:
    """Remove an old DEK generation from the keyring, once no row of ``columns`` uses it.

    ``columns`` must list every encrypted column of the database: a value in a column
    not listed becomes unreadable. Refuses (RotationError) for the writing generation,
    while any row still uses ``generation``, and until the writing generation has been
    in place for ``settle_seconds`` (so no running process still writes the old one).
    Retiring an already retired generation does nothing.
    """
    moment = now or datetime.now(UTC)
    with keyring_lock(keyring_path):
        ring = KeyringFile.read(keyring_path)
        if generation in ring.retired:
            return
        if generation not in ring.deks:
            raise RotationError(f"鍵世代 {generation} は鍵リングにありません")
        if generation == ring.current:
            raise RotationError(f"鍵世代 {generation} は現在の書込み用の世代のため廃棄できません")
        since = ring.created_at.get(ring.current)
        if since is not None:
            age = (moment - datetime.fromisoformat(since)).total_seconds()
            if age < settle_seconds:
                raise RotationError(
                    f"鍵世代 {ring.current} を作成してから {age:.0f} 秒しか経っていません。"
                    f"稼働中のプロセスが新しい世代に切り替わるよう、{settle_seconds:.0f} 秒経ってから"
                    "再暗号化を確認し、廃棄してください。"
                )
        in_use = []
        for col in columns:
            if not inspect(engine).has_table(col.table):
                continue
            n = generation_counts(
                engine, table=col.table, ciphertext_column=col.ciphertext_column
            ).get(generation, 0)
            if n:
                in_use.append(f"{col.label} {n:,} 行")
        if in_use:
            raise RotationError(
                f"鍵世代 {generation} はまだ使われているため廃棄できません（{'、'.join(in_use)}）。"
                "`renkei keys rotate` で再暗号化を完了してから廃棄してください。"
            )
        deks = {g: w for g, w in ring.deks.items() if g != generation}
        created = {g: t for g, t in ring.created_at.items() if g != generation}
        replace(ring, deks=deks, created_at=created, retired=(*ring.retired, generation)).write(
            keyring_path
        )


# --- the whole data-key rotation --------------------------------------------------------


def rotate_keys(
    engine: Engine,
    keyring_path: Path,
    kms: Kms,
    columns: Sequence[EncryptedColumn] = ENCRYPTED_COLUMNS,
    *,
    batch: int = 1000,
    progress: Callable[[EncryptedColumn, int, int], None] | None = None,
    checkpoint_dir: Path | None = None,
    retire: bool = True,
    settle_seconds: float = SETTLE_SECONDS,
    stop_after: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> KeyRotationReport:
    """``renkei keys rotate``: new generation, re-encrypt every column, retire the old ones.

    Run again after a crash or a ``stop_after`` stop: it resumes the same generation
    from the checkpoints (``checkpoint_dir``, by default beside the keyring). With
    ``retire`` it waits until the new generation is ``settle_seconds`` old, sweeps the
    columns once more, then retires every older generation.
    """
    generation, started = begin_rotation(keyring_path, kms, now=clock())
    cipher = load_or_create_keyring(keyring_path, kms)
    if cipher.generation != generation:
        raise RotationError(
            f"鍵リングの現在の世代が {cipher.generation} に変わりました。やり直してください。"
        )
    folder = checkpoint_dir or keyring_path.parent
    present = [c for c in columns if inspect(engine).has_table(c.table)]
    skipped = tuple(c.table for c in columns if c not in present)
    reports: list[RotationReport] = []
    budget = stop_after

    def sweep(col: EncryptedColumn) -> bool:
        nonlocal budget
        for _ in range(MAX_PASSES):
            report = rotate_column(
                engine,
                table=col.table,
                pk_column=col.pk_column,
                ciphertext_column=col.ciphertext_column,
                aad=col.aad,
                keyring=cipher,
                batch=batch,
                progress=None if progress is None else (lambda d, t: progress(col, d, t)),
                stop_after=budget,
                checkpoint=folder / f"rotation-{col.table}.{col.ciphertext_column}.json",
            )
            reports.append(report)
            if budget is not None:
                budget -= report.reencrypted
            if report.completed:
                return True
            if budget is not None and budget <= 0:
                return False
        return False

    def sweep_all() -> bool:
        return all(sweep(col) for col in present)  # stops at the first unfinished column

    done = sweep_all()
    retired: list[int] = []
    if done and retire:
        status = keyring_status(keyring_path)
        since = status.created_at.get(generation)
        if since is not None:
            wait = settle_seconds - (clock() - datetime.fromisoformat(since)).total_seconds()
            if wait > 0:
                sleep(wait)
        done = sweep_all()  # a last pass: rows written meanwhile with an old generation
        if done:
            for old in status.generations:
                if old != generation:
                    retire_generation(
                        engine,
                        keyring_path,
                        old,
                        columns,
                        settle_seconds=settle_seconds,
                        now=clock(),
                    )
                    retired.append(old)
    return KeyRotationReport(
        generation=generation,
        started=started,
        columns=tuple(reports),
        skipped_tables=skipped,
        retired=tuple(retired),
        completed=done and (not retire or len(keyring_status(keyring_path).generations) == 1),
    )


# --- master key -------------------------------------------------------------------------


def _rewrap_locked(keyring_path: Path, old_kms: Kms, new_kms: Kms) -> None:
    ring = KeyringFile.read(keyring_path)
    if ring.kms_key_id == new_kms.key_id:
        return  # already done (resumed after a crash)
    _same_master(ring, old_kms)
    deks, index_key = ring.unwrap_all(old_kms)
    fresh = replace(
        ring,
        kms_key_id=new_kms.key_id,
        index_key=new_kms.wrap(index_key),
        deks={g: new_kms.wrap(k) for g, k in deks.items()},
    )
    if fresh.unwrap_all(new_kms) != (deks, index_key):
        raise KmsError("新しいマスター鍵で包み直した鍵を元に戻せません")
    fresh.write(keyring_path)


def rewrap_keyring(keyring_path: Path, old_kms: Kms, new_kms: Kms) -> None:
    """Re-wrap every key of the keyring under ``new_kms``, replacing the file atomically.

    Field values are untouched. Idempotent: a keyring already under ``new_kms`` is left
    as it is. Keep the old master key until this returns.
    """
    with keyring_lock(keyring_path):
        _rewrap_locked(keyring_path, old_kms, new_kms)


def rotate_master_key(keyring_path: Path, master_path: Path) -> MasterKeyReport:
    """Replace the FileKms master key at ``master_path`` by a new one, re-wrapping the keyring.

    Steps, each safe to crash after (running it again finishes the job):
    1. the new key is created as ``<master>.next`` (0600);
    2. the keyring is re-wrapped under it and verified (meanwhile both loaders, with
       the old master path, find ``.next``);
    3. ``.next`` is renamed over the master key file, atomically: the old key is gone
       only once the keyring no longer needs it.
    Master-key files that others can read are refused (KmsError), as everywhere.
    """
    with keyring_lock(keyring_path):
        old = FileKms(master_path)
        pending = pending_master_path(master_path)
        ring = KeyringFile.read(keyring_path)
        resumed = pending.exists()
        if not resumed:
            _same_master(ring, old)
        new = FileKms.create(pending)
        if ring.kms_key_id not in (old.key_id, new.key_id):
            raise RotationError(
                f"鍵リングのマスター鍵 {ring.kms_key_id} は {master_path} とも {pending} とも一致しません"
            )
        _rewrap_locked(keyring_path, old, new)
        KeyringFile.read(keyring_path).open(new)  # loads with the new master alone
        os.replace(pending, master_path)
        _fsync_dir(master_path.parent)
        return MasterKeyReport(old_key_id=old.key_id, new_key_id=new.key_id, resumed=resumed)
