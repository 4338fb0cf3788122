"""Field encryption at rest: AES-256-GCM per value, HMAC-SHA256 blind index.

Envelope scheme: data keys (DEKs) and a blind-index key live in a keyring file,
each wrapped by a master key held by a KMS (here: a 0600 file outside the database).
Stealing the database and the keyring without the master key reveals nothing.

Key generations: the first byte of every field ciphertext names the DEK generation
that encrypted it (1..255; generation 1 is the original single DEK, so ciphertexts
written before rotation existed are generation-1 ciphertexts unchanged). A keyring
holds several generations while a rotation runs: any of them decrypts, the newest
encrypts. The blind-index key is not part of a generation and never changes with a
data-key rotation, so equality lookups work before, during and after one.

Keyring file formats: version 1 (one DEK, written for new keyrings and read as
generation 1) and version 2 (several generations; written by the first rotation).
Loading never rewrites the file. Key management (new generation, retirement,
master-key re-wrap) is in :mod:`renkei.core.crypto.rotation`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import stat
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "FieldCipher",
    "FieldDecryptError",
    "FileKms",
    "Kms",
    "KeyringFile",
    "KmsError",
    "load_or_create_keyring",
]

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
FIELD_VERSION = 1
WRAP_VERSION = 1
KEYRING_VERSION = 1  # single-DEK format: still written for new keyrings
KEYRING_VERSION_GENERATIONS = 2  # several DEK generations: written by key rotation
MAX_GENERATION = 255  # the generation is the ciphertext's first byte
# A process that loaded the keyring from a file checks the file at most this often
# before encrypting, so it starts writing a new generation within this many seconds.
REFRESH_SECONDS = 5.0
# Binds wrapped blobs to their purpose, so a wrapped DEK cannot be replayed as
# something else this KMS wraps later.
_WRAP_AAD = b"renkei/kms-wrap/v1"


log = structlog.get_logger("renkei.keys")


class KmsError(Exception):
    """The master key or keyring is unusable (permissions, wrong key, damage)."""


class FieldDecryptError(Exception):
    """A stored field does not decrypt: wrong AAD (row/column), wrong key or damage."""


class Kms(Protocol):
    """Wraps and unwraps data keys with a master key it never reveals."""

    @property
    def key_id(self) -> str:
        """Identifies the master key, recorded next to what it wrapped."""
        ...

    def wrap(self, dek: bytes) -> bytes:
        """Encrypt ``dek`` under the master key."""
        ...

    def unwrap(self, blob: bytes) -> bytes:
        """Recover a key wrapped by :meth:`wrap`; raises KmsError if it cannot."""
        ...


def _write_private_temp(path: Path, data: bytes) -> Path:
    """``data`` in a fresh 0600 file beside ``path``, flushed to disk; the caller links or renames it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def create_secret_file(path: Path, data: bytes) -> None:
    """Create ``path`` (mode 0600) if absent; concurrent creators agree on one file."""
    tmp = _write_private_temp(path, data)
    try:
        os.link(tmp, path)  # atomic create-if-absent: never overwrite a key
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)




class FileKms:
    """Master key of 32 random bytes in a file readable by its owner only."""

    def __init__(self, path: Path) -> None:
        try:
            st = path.stat()
        except FileNotFoundError as err:
            raise KmsError(f"マスター鍵ファイルがありません: {path}") from err
        if not stat.S_ISREG(st.st_mode):
            raise KmsError(f"マスター鍵ファイルが通常のファイルではありません: {path}")
        if st.st_mode & 0o077:
            raise KmsError(
                f"マスター鍵ファイル {path} のパーミッションが {stat.S_IMODE(st.st_mode):04o} です。"
                f"所有者以外が読めないよう 0600 にしてください (chmod 600 {path})。"
            )
        master = path.read_bytes()
        if len(master) != KEY_SIZE:
            raise KmsError(f"マスター鍵ファイル {path} の長さが不正です ({len(master)} バイト)")
        self.path = path
        self._aead = AESGCM(master)
        # Derived one-way from the key: identifies it without revealing it.
        digest = hmac.new(master, b"renkei/kms-key-id", hashlib.sha256).hexdigest()
        self.key_id = f"file:{digest[:16]}"

    @classmethod
    def create(cls, path: Path) -> FileKms:
        """Generate the master key file if absent (idempotent) and load it."""
        if not path.exists():
            create_secret_file(path, secrets.token_bytes(KEY_SIZE))
        return cls(path)

    def wrap(self, dek: bytes) -> bytes:
        """AES-256-GCM under the master key: version byte, random nonce, ciphertext+tag."""
        nonce = secrets.token_bytes(NONCE_SIZE)
        return bytes([WRAP_VERSION]) + nonce + self._aead.encrypt(nonce, dek, _WRAP_AAD)

    def unwrap(self, blob: bytes) -> bytes:
        """Reverse :meth:`wrap`; KmsError if the blob is damaged or from another key."""
        if len(blob) < 1 + NONCE_SIZE + TAG_SIZE or blob[0] != WRAP_VERSION:
            raise KmsError("鍵の形式が不正です")
        nonce, body = blob[1 : 1 + NONCE_SIZE], blob[1 + NONCE_SIZE :]
        try:
            return self._aead.decrypt(nonce, body, _WRAP_AAD)
        except InvalidTag as err:
            raise KmsError("マスター鍵で鍵を復号できません (別のマスター鍵か、改ざん)") from err


def pending_master_path(master: Path) -> Path:
    """Where a master-key rotation keeps the new master key until the keyring is re-wrapped."""
    return master.with_name(master.name + ".next")


def _aad(version: int, aad: tuple[str, str, str]) -> bytes:
    # Length-prefixed parts: ("a.b", "c", ...) and ("a", "b.c", ...) differ, whatever
    # characters the names contain. The version (generation) byte is bound too.
    out = bytearray([version])
    for part in aad:
        encoded = part.encode("utf-8")
        out += struct.pack(">I", len(encoded)) + encoded
    return bytes(out)


@dataclass(frozen=True)
class _Generations:
    """The DEKs of one keyring state; replaced as a whole, never mutated."""

    aeads: Mapping[int, AESGCM]
    current: int


@dataclass
class _Source:
    """The keyring file a cipher was loaded from, for picking up new generations."""

    path: Path
    kms: Kms
    signature: tuple[int, int, int] | None
    checked_at: float = field(default_factory=time.monotonic)


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _check_generation(generation: int) -> None:
    if not 1 <= generation <= MAX_GENERATION:
        raise ValueError(f"key generation must be 1..{MAX_GENERATION}, not {generation}")


class FieldCipher:
    """Encrypts single column values bound to their table/column/row.

    Holds one or more DEK generations: :meth:`decrypt` reads any of them, :meth:`encrypt`
    writes the newest (:attr:`generation`). A cipher made by :func:`load_or_create_keyring`
    follows its keyring file: it reloads the file when it meets a ciphertext of a
    generation it does not know, and checks it every :data:`REFRESH_SECONDS` before
    encrypting, so running processes read and then write a new generation without a
    restart.
    """

    def __init__(
        self,
        dek: bytes,
        index_key: bytes,
        *,
        generation: int = FIELD_VERSION,
        previous: Mapping[int, bytes] | None = None,
    ) -> None:
        """``dek`` is the newest generation ``generation``; ``previous`` the older ones, readable only."""
        keys = {generation: dek, **(previous or {})}
        if len(index_key) != KEY_SIZE or any(len(k) != KEY_SIZE for k in keys.values()):
            raise ValueError("dek and index_key must be 32 bytes each")
        if any(hmac.compare_digest(k, index_key) for k in keys.values()):
            raise ValueError("dek and index_key must differ")
        for g in keys:
            _check_generation(g)
        if previous and (generation in previous or max(previous) > generation):
            raise ValueError("the writing generation must be newer than every previous one")
        self._gens = _Generations({g: AESGCM(k) for g, k in sorted(keys.items())}, generation)
        self._index_key = index_key
        self._source: _Source | None = None
        self._lock = threading.Lock()

    @classmethod
    def generate(cls) -> FieldCipher:
        """A cipher with fresh random keys (tests, new keyrings)."""
        return cls(secrets.token_bytes(KEY_SIZE), secrets.token_bytes(KEY_SIZE))

    @property
    def generation(self) -> int:
        """The generation new ciphertexts are written with."""
        return self._gens.current

    @property
    def generations(self) -> tuple[int, ...]:
        """Every generation this cipher can read, oldest first."""
        return tuple(self._gens.aeads)

    @staticmethod
    def generation_of(blob: bytes) -> int:
        """The DEK generation a stored value was encrypted with (its first byte)."""
        if len(blob) < 1 + NONCE_SIZE + TAG_SIZE:
            raise FieldDecryptError("unknown field format")
        return blob[0]

    def encrypt(
        self, plaintext: str, aad: tuple[str, str, str], *, generation: int | None = None
    ) -> bytes:
        """Generation byte + 96-bit random nonce + AES-256-GCM ciphertext and tag.

        Written with the newest generation unless ``generation`` names another one
        this cipher holds (key rotation pins the generation it rotates to).
        """
        if generation is None:
            self._maybe_refresh()
        gens = self._gens
        gen = gens.current if generation is None else generation
        aead = gens.aeads.get(gen)
        if aead is None:
            raise ValueError(f"no data key of generation {gen}")
        nonce = secrets.token_bytes(NONCE_SIZE)
        body = aead.encrypt(nonce, plaintext.encode("utf-8"), _aad(gen, aad))
        return bytes([gen]) + nonce + body

    def decrypt(self, blob: bytes, aad: tuple[str, str, str]) -> str:
        """Decrypt a value from :meth:`encrypt`; the same (table, column, row id) is needed."""
        gen = self.generation_of(blob)
        aead = self._gens.aeads.get(gen)
        if aead is None and self.refresh():
            aead = self._gens.aeads.get(gen)
        if aead is None:
            raise FieldDecryptError(f"unknown field format or no data key of generation {gen}")
        nonce, body = blob[1 : 1 + NONCE_SIZE], blob[1 + NONCE_SIZE :]
        try:
            return aead.decrypt(nonce, body, _aad(gen, aad)).decode("utf-8")
        except (InvalidTag, UnicodeDecodeError) as err:
            raise FieldDecryptError("field does not decrypt with this key and AAD") from err

    def reencrypt(
        self, blob: bytes, aad: tuple[str, str, str], *, generation: int | None = None
    ) -> bytes:
        """Decrypt ``blob`` and encrypt it again with ``generation`` (default: the newest)."""
        gen = self.generation if generation is None else generation
        return self.encrypt(self.decrypt(blob, aad), aad, generation=gen)

    def blind_index(self, value: str) -> str:
        """Hex HMAC-SHA256 of ``value`` for equality search; normalize ``value`` first."""
        return hmac.new(self._index_key, value.encode("utf-8"), hashlib.sha256).hexdigest()

    def refresh(self) -> bool:
        """Reload the keyring file this cipher came from if it changed; True if it did.

        A file that no longer loads (e.g. the master key is being replaced) or that
        holds another blind-index key leaves the keys in memory as they are.
        """
        src = self._source
        if src is None:
            return False
        with self._lock:
            src.checked_at = time.monotonic()
            signature = _signature(src.path)
            if signature is None or signature == src.signature:
                return False
            src.signature = signature
            try:
                kms = FileKms(src.kms.path) if isinstance(src.kms, FileKms) else src.kms
                fresh = KeyringFile.read(src.path).open(kms)
            except (KmsError, OSError) as exc:
                log.warning("keyring_reload_failed", path=str(src.path), error=str(exc))
                return False
            if not hmac.compare_digest(fresh._index_key, self._index_key):
                log.error(
                    "keyring_reload_refused", path=str(src.path), reason="blind index key differs"
                )
                return False
            changed = (
                fresh._gens.current != self._gens.current or fresh.generations != self.generations
            )
            self._gens = fresh._gens
            if changed:
                log.info("keyring_reloaded", path=str(src.path), generation=fresh.generation)
            return changed

    def _maybe_refresh(self) -> None:
        src = self._source
        if src is not None and time.monotonic() - src.checked_at >= REFRESH_SECONDS:
            self.refresh()


@dataclass(frozen=True)
class KeyringFile:
    """The keyring file's content: wrapped keys and their generations (nothing in clear)."""

    kms_key_id: str
    index_key: bytes  # wrapped
    deks: Mapping[int, bytes]  # generation -> wrapped DEK
    current: int
    retired: tuple[int, ...] = ()
    created_at: Mapping[int, str] = field(default_factory=dict)  # generation -> ISO time
    version: int = KEYRING_VERSION_GENERATIONS  # format it was read in

    @classmethod
    def read(cls, path: Path) -> KeyringFile:
        """Parse a version 1 or version 2 keyring file."""
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            version, key_id = doc["version"], doc["kms_key_id"]
            index_key = base64.b64decode(doc["index_key"], validate=True)
            if version == KEYRING_VERSION:
                ring = cls(
                    key_id,
                    index_key,
                    {1: base64.b64decode(doc["dek"], validate=True)},
                    1,
                    version=version,
                )
            elif version == KEYRING_VERSION_GENERATIONS:
                gens: dict[str, Any] = doc["generations"]
                ring = cls(
                    key_id,
                    index_key,
                    {int(g): base64.b64decode(v["dek"], validate=True) for g, v in gens.items()},
                    int(doc["current"]),
                    tuple(int(g) for g in doc.get("retired", [])),
                    {int(g): str(v["created_at"]) for g, v in gens.items() if v.get("created_at")},
                    version,
                )
            else:
                raise KmsError(f"鍵リング {path} の版 {version!r} には対応していません")
            if not isinstance(key_id, str):
                raise TypeError("kms_key_id")
            for g in (*ring.deks, *ring.retired):
                _check_generation(g)
            if ring.current not in ring.deks or max(ring.deks) != ring.current:
                raise ValueError(f"current generation {ring.current} is not the newest key")
            if set(ring.deks) & set(ring.retired):
                raise ValueError("a generation is both present and retired")
        except KmsError:
            raise
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise KmsError(f"鍵リング {path} を読み込めません: {err}") from err
        return ring

    def to_json(self) -> bytes:
        """Version 2 document (the format every rewrite uses)."""
        doc = {
            "version": KEYRING_VERSION_GENERATIONS,
            "kms_key_id": self.kms_key_id,
            "index_key": base64.b64encode(self.index_key).decode(),
            "current": self.current,
            "generations": {
                str(g): {"dek": base64.b64encode(w).decode(), "created_at": self.created_at.get(g)}
                for g, w in sorted(self.deks.items())
            },
            "retired": sorted(self.retired),
        }
        return json.dumps(doc, indent=2).encode() + b"\n"

    def write(self, path: Path) -> None:
        """Replace ``path`` atomically (0600, fsynced): readers see the old or the new file."""
        _replace_secret_file(path, self.to_json())

    def unwrap_all(self, kms: Kms) -> tuple[dict[int, bytes], bytes]:
        """Every DEK (by generation) and the index key in clear."""
        if self.kms_key_id != kms.key_id:
            raise KmsError(
                f"鍵リングはマスター鍵 {self.kms_key_id} で保護されていますが、"
                f"指定されたマスター鍵は {kms.key_id} です"
            )
        return {g: kms.unwrap(w) for g, w in self.deks.items()}, kms.unwrap(self.index_key)

    def open(self, kms: Kms) -> FieldCipher:
        """A cipher over every generation; ``kms`` must hold the wrapping master key."""
        deks, index_key = self.unwrap_all(_matching_kms(self.kms_key_id, kms))
        current = deks.pop(self.current)
        try:
            return FieldCipher(current, index_key, generation=self.current, previous=deks)
        except ValueError as err:
            raise KmsError(f"鍵リングの鍵が不正です: {err}") from err


def _matching_kms(key_id: str, kms: Kms) -> Kms:
    """``kms``, or during a master-key rotation the pending new master key beside it."""
    if key_id == kms.key_id or not isinstance(kms, FileKms):
        return kms
    pending = pending_master_path(kms.path)
    if pending.exists():
        candidate = FileKms(pending)
        if candidate.key_id == key_id:
            return candidate
    return kms


def _replace_secret_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a 0600 temporary file, fsync, rename over ``path``, fsync the folder."""
    tmp = _write_private_temp(path, data)
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_or_create_keyring(path: Path, kms: Kms) -> FieldCipher:
    """Load every key generation from ``path``, creating the file (one generation) if absent.

    The cipher follows the file afterwards (see :meth:`FieldCipher.refresh`).
    """
    if not path.exists():
        doc = {
            "version": KEYRING_VERSION,
            "kms_key_id": kms.key_id,
            "dek": base64.b64encode(kms.wrap(secrets.token_bytes(KEY_SIZE))).decode(),
            "index_key": base64.b64encode(kms.wrap(secrets.token_bytes(KEY_SIZE))).decode(),
        }
        create_secret_file(path, json.dumps(doc, indent=2).encode() + b"\n")
    signature = _signature(path)  # before reading: a later replacement is seen as a change
    ring = KeyringFile.read(path)
    if _matching_kms(ring.kms_key_id, kms).key_id != ring.kms_key_id:
        raise KmsError(
            f"鍵リング {path} はマスター鍵 {ring.kms_key_id} で保護されていますが、"
            f"指定されたマスター鍵は {kms.key_id} です"
        )
    cipher = ring.open(kms)
    cipher._source = _Source(path, kms, signature)
    return cipher
