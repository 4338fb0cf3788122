"""Field encryption at rest: AES-256-GCM per value, HMAC-SHA256 blind index.

Envelope scheme: a data key (DEK) and a blind-index key live in a keyring file,
each wrapped by a master key held by a KMS (here: a 0600 file outside the database).
Stealing the database and the keyring without the master key reveals nothing.
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
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "FieldCipher",
    "FieldDecryptError",
    "FileKms",
    "Kms",
    "KmsError",
    "load_or_create_keyring",
]

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
FIELD_VERSION = 1
WRAP_VERSION = 1
KEYRING_VERSION = 1
# Binds wrapped blobs to their purpose, so a wrapped DEK cannot be replayed as
# something else this KMS wraps later.
_WRAP_AAD = b"renkei/kms-wrap/v1"


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


def _create_secret_file(path: Path, data: bytes) -> None:
    """Create ``path`` (mode 0600) if absent; concurrent creators agree on one file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
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
            _create_secret_file(path, secrets.token_bytes(KEY_SIZE))
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


def _aad(version: int, aad: tuple[str, str, str]) -> bytes:
    # Length-prefixed parts: ("a.b", "c", ...) and ("a", "b.c", ...) differ, whatever
    # characters the names contain. The version byte is bound too.
    out = bytearray([version])
    for part in aad:
        encoded = part.encode("utf-8")
        out += struct.pack(">I", len(encoded)) + encoded
    return bytes(out)


class FieldCipher:
    """Encrypts single column values bound to their table/column/row."""

    def __init__(self, dek: bytes, index_key: bytes) -> None:
        if len(dek) != KEY_SIZE or len(index_key) != KEY_SIZE:
            raise ValueError("dek and index_key must be 32 bytes each")
        if hmac.compare_digest(dek, index_key):
            raise ValueError("dek and index_key must differ")
        self._aead = AESGCM(dek)
        self._index_key = index_key

    @classmethod
    def generate(cls) -> FieldCipher:
        """A cipher with fresh random keys (tests, new keyrings)."""
        return cls(secrets.token_bytes(KEY_SIZE), secrets.token_bytes(KEY_SIZE))

    def encrypt(self, plaintext: str, aad: tuple[str, str, str]) -> bytes:
        """Version byte + 96-bit random nonce + AES-256-GCM ciphertext and tag."""
        nonce = secrets.token_bytes(NONCE_SIZE)
        body = self._aead.encrypt(nonce, plaintext.encode("utf-8"), _aad(FIELD_VERSION, aad))
        return bytes([FIELD_VERSION]) + nonce + body

    def decrypt(self, blob: bytes, aad: tuple[str, str, str]) -> str:
        """Decrypt a value from :meth:`encrypt`; the same (table, column, row id) is needed."""
        if len(blob) < 1 + NONCE_SIZE + TAG_SIZE or blob[0] != FIELD_VERSION:
            raise FieldDecryptError("unknown field format")
        nonce, body = blob[1 : 1 + NONCE_SIZE], blob[1 + NONCE_SIZE :]
        try:
            return self._aead.decrypt(nonce, body, _aad(blob[0], aad)).decode("utf-8")
        except (InvalidTag, UnicodeDecodeError) as err:
            raise FieldDecryptError("field does not decrypt with this key and AAD") from err

    def blind_index(self, value: str) -> str:
        """Hex HMAC-SHA256 of ``value`` for equality search; normalize ``value`` first."""
        return hmac.new(self._index_key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def load_or_create_keyring(path: Path, kms: Kms) -> FieldCipher:
    """Load the wrapped DEK and index key from ``path``, creating the file if absent."""
    if not path.exists():
        doc = {
            "version": KEYRING_VERSION,
            "kms_key_id": kms.key_id,
            "dek": base64.b64encode(kms.wrap(secrets.token_bytes(KEY_SIZE))).decode(),
            "index_key": base64.b64encode(kms.wrap(secrets.token_bytes(KEY_SIZE))).decode(),
        }
        _create_secret_file(path, json.dumps(doc, indent=2).encode() + b"\n")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        version, key_id = doc["version"], doc["kms_key_id"]
        wrapped_dek = base64.b64decode(doc["dek"], validate=True)
        wrapped_index = base64.b64decode(doc["index_key"], validate=True)
    except (ValueError, KeyError, TypeError) as err:
        raise KmsError(f"鍵リング {path} を読み込めません: {err}") from err
    if version != KEYRING_VERSION:
        raise KmsError(f"鍵リング {path} の版 {version!r} には対応していません")
    if key_id != kms.key_id:
        raise KmsError(
            f"鍵リング {path} はマスター鍵 {key_id} で保護されていますが、"
            f"指定されたマスター鍵は {kms.key_id} です"
        )
    return FieldCipher(kms.unwrap(wrapped_dek), kms.unwrap(wrapped_index))
