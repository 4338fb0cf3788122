"""Field encryption at rest: AES-GCM bound to table/column/row, blind index, file KMS."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from renkei.core.crypto.field import (
    FieldCipher,
    FieldDecryptError,
    FileKms,
    KmsError,
    load_or_create_keyring,
)

NUMBER = "123456789018"
AAD = ("persons", "individual_number", "100000000000019")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- FieldCipher --------------------------------------------------------------------


def test_round_trip() -> None:
    cipher = FieldCipher.generate()
    for value in (NUMBER, "", "髙橋 𠮷太郎"):
        blob = cipher.encrypt(value, AAD)
        assert blob[0] == 1 and len(blob) == 1 + 12 + len(value.encode()) + 16
        assert cipher.decrypt(blob, AAD) == value


def test_ciphertext_is_randomized_and_hides_the_value() -> None:
    cipher = FieldCipher.generate()
    first, second = cipher.encrypt(NUMBER, AAD), cipher.encrypt(NUMBER, AAD)
    assert first != second
    assert NUMBER.encode() not in first


@pytest.mark.parametrize(
    "aad",
    [
        ("persons", "individual_number", "100000000000027"),  # another row
        ("persons", "name", "100000000000019"),  # another column
        ("audit", "individual_number", "100000000000019"),  # another table
        # same characters, different split: the AAD encoding must not collide
        ("persons", "individual_number1", "00000000000019"),
        ("persons/individual_number", "", "100000000000019"),
    ],
)
def test_wrong_aad_fails(aad: tuple[str, str, str]) -> None:
    cipher = FieldCipher.generate()
    blob = cipher.encrypt(NUMBER, AAD)
    with pytest.raises(FieldDecryptError):
        cipher.decrypt(blob, aad)


def test_tampered_or_foreign_blob_fails() -> None:
    cipher = FieldCipher.generate()
    blob = bytearray(cipher.encrypt(NUMBER, AAD))
    blob[-1] ^= 0x01
    for bad in (bytes(blob), b"", b"\x01short", b"\x02" + bytes(blob[1:])):
        with pytest.raises(FieldDecryptError):
            cipher.decrypt(bad, AAD)
    with pytest.raises(FieldDecryptError):
        FieldCipher.generate().decrypt(cipher.encrypt(NUMBER, AAD), AAD)


def test_blind_index_is_stable_and_keyed() -> None:
    dek, index_key = os.urandom(32), os.urandom(32)
    one, same_keys = FieldCipher(dek, index_key), FieldCipher(dek, index_key)
    other = FieldCipher(dek, os.urandom(32))
    digest = one.blind_index(NUMBER)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert digest == one.blind_index(NUMBER) == same_keys.blind_index(NUMBER)
    assert digest != one.blind_index("123456789026")
    assert digest != other.blind_index(NUMBER)


def test_key_sizes_are_checked() -> None:
    with pytest.raises(ValueError):
        FieldCipher(b"short", os.urandom(32))
    same = os.urandom(32)
    with pytest.raises(ValueError):
        FieldCipher(same, same)


# --- FileKms ------------------------------------------------------------------------


def test_file_kms_creates_a_private_master_key(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "master.key"
    kms = FileKms.create(path)
    assert _mode(path) == 0o600 and len(path.read_bytes()) == 32
    content = path.read_bytes()
    again = FileKms.create(path)  # idempotent: same key
    assert path.read_bytes() == content and again.key_id == kms.key_id
    dek = os.urandom(32)
    blob = kms.wrap(dek)
    assert dek not in blob and blob != kms.wrap(dek)
    assert FileKms(path).unwrap(blob) == dek


def test_file_kms_refuses_a_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    FileKms.create(path)
    for mode in (0o644, 0o640, 0o604):
        path.chmod(mode)
        with pytest.raises(KmsError, match="0600"):
            FileKms(path)


def test_file_kms_refuses_missing_or_bad_files(tmp_path: Path) -> None:
    with pytest.raises(KmsError):
        FileKms(tmp_path / "absent.key")
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 16)
    short.chmod(0o600)
    with pytest.raises(KmsError):
        FileKms(short)


def test_another_master_key_cannot_unwrap(tmp_path: Path) -> None:
    blob = FileKms.create(tmp_path / "a.key").wrap(os.urandom(32))
    with pytest.raises(KmsError):
        FileKms.create(tmp_path / "b.key").unwrap(blob)


# --- keyring ------------------------------------------------------------------------


def test_keyring_is_created_once_and_reloads_the_same_keys(tmp_path: Path) -> None:
    kms = FileKms.create(tmp_path / "kms" / "master.key")
    keyring = tmp_path / "data" / "keyring.json"
    cipher = load_or_create_keyring(keyring, kms)
    assert _mode(keyring) == 0o600
    doc = json.loads(keyring.read_text())
    assert doc["kms_key_id"] == kms.key_id and {"dek", "index_key"} <= doc.keys()

    blob = cipher.encrypt(NUMBER, AAD)
    reloaded = load_or_create_keyring(keyring, FileKms(tmp_path / "kms" / "master.key"))
    assert reloaded.decrypt(blob, AAD) == NUMBER
    assert reloaded.blind_index(NUMBER) == cipher.blind_index(NUMBER)
    assert json.loads(keyring.read_text()) == doc


def test_keyring_needs_its_own_master_key(tmp_path: Path) -> None:
    keyring = tmp_path / "keyring.json"
    load_or_create_keyring(keyring, FileKms.create(tmp_path / "a.key"))
    with pytest.raises(KmsError):
        load_or_create_keyring(keyring, FileKms.create(tmp_path / "b.key"))


def test_keyring_holds_no_plain_key(tmp_path: Path) -> None:
    kms = FileKms.create(tmp_path / "master.key")
    keyring = tmp_path / "keyring.json"
    cipher = load_or_create_keyring(keyring, kms)
    raw = keyring.read_bytes()
    assert cipher._index_key not in raw  # noqa: SLF001 - white-box check
    assert cipher._index_key.hex().encode() not in raw
