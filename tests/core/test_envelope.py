"""JWS/JWE envelope: round trips, tampering, algorithm confusion, key rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import OKPKey

from renkei.core.crypto.envelope import (
    EncryptionKey,
    EnvelopeError,
    SigningKey,
    decrypt,
    encrypt,
    load_encryption_key,
    load_signing_key,
    peek_kid,
    public_keys_from_document,
    sign,
    verify,
)
from renkei.core.crypto.pki import (
    NodeCredentials,
    create_ca,
    issue_node_credentials,
    rotate_node_keys,
)

SHINJUKU = "1310410000000001"
HUB = "0000000000000001"
PAYLOAD = json.dumps({"id": "m-1", "個人番号": "123456789018"}, ensure_ascii=False).encode()


@dataclass
class Org:
    creds: NodeCredentials
    sig: SigningKey
    enc: EncryptionKey
    public: dict[str, Any]


def _org(ca: Path, directory: Path, code: str, name: str) -> Org:
    creds = issue_node_credentials(ca, directory, code, name, "chukan")
    return Org(
        creds=creds,
        sig=load_signing_key(creds.sig_key),
        enc=load_encryption_key(creds.enc_key),
        public=public_keys_from_document(json.loads(creds.public.read_text(encoding="utf-8"))),
    )


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ca")
    create_ca(directory)
    return directory


@pytest.fixture(scope="module")
def shinjuku(ca: Path, tmp_path_factory: pytest.TempPathFactory) -> Org:
    return _org(ca, tmp_path_factory.mktemp("shinjuku"), SHINJUKU, "新宿区")


@pytest.fixture(scope="module")
def hub(ca: Path, tmp_path_factory: pytest.TempPathFactory) -> Org:
    return _org(ca, tmp_path_factory.mktemp("hub"), HUB, "情報提供ネットワークシステム")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64d(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _code(fn: Callable[..., object], *args: Any) -> str:
    with pytest.raises(EnvelopeError) as info:
        fn(*args)
    assert info.value.message  # a Japanese message for staff accompanies every code
    return info.value.code


# --- JWS ----------------------------------------------------------------------------


def test_sign_verify_round_trip(shinjuku: Org) -> None:
    token = sign(PAYLOAD, shinjuku.sig)
    header = json.loads(_b64d(token.split(".")[0]))
    assert header == {"alg": "Ed25519", "kid": f"{SHINJUKU}:chukan:sig:1", "typ": "JOSE"}
    assert peek_kid(token) == shinjuku.sig.kid
    assert verify(token, shinjuku.public.get) == (shinjuku.sig.kid, PAYLOAD)


def test_tampered_payload_is_refused(shinjuku: Org) -> None:
    header, _, signature = sign(PAYLOAD, shinjuku.sig).split(".")
    forged = ".".join([header, _b64(PAYLOAD.replace(b"m-1", b"m-2")), signature])
    assert _code(verify, forged, shinjuku.public.get) == "bad_signature"


def test_tampered_signature_is_refused(shinjuku: Org) -> None:
    header, payload, signature = sign(PAYLOAD, shinjuku.sig).split(".")
    raw = bytearray(_b64d(signature))
    raw[0] ^= 0x01
    forged = ".".join([header, payload, _b64(bytes(raw))])
    assert _code(verify, forged, shinjuku.public.get) == "bad_signature"


def test_signature_by_another_organization_is_refused(shinjuku: Org, hub: Org) -> None:
    # hub signs, but claims Shinjuku's kid
    forged = sign(PAYLOAD, SigningKey(key=hub.sig.key, kid=shinjuku.sig.kid))
    assert _code(verify, forged, shinjuku.public.get) == "bad_signature"


def test_unknown_kid(shinjuku: Org) -> None:
    token = sign(PAYLOAD, shinjuku.sig)
    assert _code(verify, token, lambda kid: None) == "unknown_key"


def test_encryption_key_is_not_a_signing_key(shinjuku: Org) -> None:
    token = sign(PAYLOAD, shinjuku.sig)
    enc_public = shinjuku.public[shinjuku.enc.kid]
    assert _code(verify, token, lambda kid: enc_public) == "unknown_key"


def _crafted(header: dict[str, Any], signature: bytes) -> str:
    return ".".join([_b64(json.dumps(header).encode()), _b64(PAYLOAD), _b64(signature)])


def test_alg_none_is_refused(shinjuku: Org) -> None:
    for alg in ("none", "None", "NONE"):
        token = _crafted({"alg": alg, "kid": shinjuku.sig.kid}, b"")
        assert _code(verify, token, shinjuku.public.get) == "bad_algorithm"
        unsigned = token.rsplit(".", 1)[0] + "."
        assert _code(verify, unsigned, shinjuku.public.get) == "bad_algorithm"


def test_hs256_with_the_public_key_as_secret_is_refused(shinjuku: Org) -> None:
    # Classic key confusion: HMAC keyed with the (public) verification key.
    public_jwk = shinjuku.public[shinjuku.sig.kid].as_dict()
    secret = _b64d(public_jwk["x"])
    header = {"alg": "HS256", "kid": shinjuku.sig.kid, "typ": "JOSE"}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(PAYLOAD)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{_b64(mac)}"
    assert _code(verify, token, shinjuku.public.get) == "bad_algorithm"


def test_deprecated_polymorphic_eddsa_is_refused(shinjuku: Org) -> None:
    message = (
        f"{_b64(json.dumps({'alg': 'EdDSA', 'kid': shinjuku.sig.kid}).encode())}.{_b64(PAYLOAD)}"
    )
    raw = shinjuku.sig.key.private_key
    assert raw is not None
    token = f"{message}.{_b64(raw.sign(message.encode()))}"  # type: ignore[union-attr]
    assert _code(verify, token, shinjuku.public.get) == "bad_algorithm"


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "!!!.e30.xx", "e30.e30.e30"])
def test_malformed_tokens(token: str, shinjuku: Org) -> None:
    assert _code(verify, token, shinjuku.public.get) == "malformed"


def test_peek_kid(shinjuku: Org, hub: Org) -> None:
    assert peek_kid(encrypt(PAYLOAD, hub.public[hub.enc.kid], hub.enc.kid)) == hub.enc.kid
    for token in ("", "x.y", "not-a-token", f"{_b64(b'[]')}.e30.e30", f"{_b64(b'{}')}.e30.e30"):
        assert _code(peek_kid, token) == "malformed"


# --- JWE ----------------------------------------------------------------------------


def test_encrypt_decrypt_round_trip(hub: Org) -> None:
    token = encrypt(PAYLOAD, hub.public[hub.enc.kid], hub.enc.kid)
    assert len(token.split(".")) == 5
    header = json.loads(_b64d(token.split(".")[0]))
    assert (header["alg"], header["enc"], header["kid"]) == (
        "ECDH-ES+A256KW",
        "A256GCM",
        hub.enc.kid,
    )
    assert header["epk"]["crv"] == "X25519"
    assert decrypt(token, hub.enc) == PAYLOAD


def test_ciphertext_hides_the_plaintext(hub: Org) -> None:
    token = encrypt(PAYLOAD, hub.public[hub.enc.kid], hub.enc.kid)
    assert "123456789018" not in token
    assert _b64(PAYLOAD) not in token and _b64(b"123456789018")[:12] not in token
    assert b"123456789018" not in b"".join(_b64d(s) for s in token.split("."))


def test_wrong_recipient_cannot_decrypt(shinjuku: Org, hub: Org) -> None:
    token = encrypt(PAYLOAD, hub.public[hub.enc.kid], hub.enc.kid)
    assert _code(decrypt, token, shinjuku.enc) == "decrypt_failed"


def test_tampered_ciphertext_cannot_decrypt(hub: Org) -> None:
    parts = encrypt(PAYLOAD, hub.public[hub.enc.kid], hub.enc.kid).split(".")
    ciphertext = bytearray(_b64d(parts[3]))
    ciphertext[0] ^= 0x01
    parts[3] = _b64(bytes(ciphertext))
    assert _code(decrypt, ".".join(parts), hub.enc) == "decrypt_failed"


def test_jwe_with_other_algorithms_is_refused(hub: Org) -> None:
    parts = encrypt(PAYLOAD, hub.public[hub.enc.kid], hub.enc.kid).split(".")
    header = json.loads(_b64d(parts[0]))
    for change in ({"alg": "dir"}, {"enc": "A128CBC-HS256"}, {"zip": "DEF"}):
        forged = ".".join([_b64(json.dumps({**header, **change}).encode()), *parts[1:]])
        assert _code(decrypt, forged, hub.enc) == "bad_algorithm"


def test_encrypt_needs_an_x25519_key(shinjuku: Org) -> None:
    sig_public = shinjuku.public[shinjuku.sig.kid]
    assert _code(encrypt, PAYLOAD, sig_public, shinjuku.sig.kid) == "unknown_key"


# --- public documents and rotation --------------------------------------------------


def test_public_document_must_not_speak_for_another_organization(shinjuku: Org) -> None:
    doc = json.loads(shinjuku.creds.public.read_text(encoding="utf-8"))
    doc["org_code"] = HUB
    assert _code(public_keys_from_document, doc) == "malformed"


def test_public_document_must_not_carry_private_keys(shinjuku: Org) -> None:
    doc = json.loads(shinjuku.creds.public.read_text(encoding="utf-8"))
    doc["keys"][0] = json.loads(shinjuku.creds.sig_key.read_text())
    assert _code(public_keys_from_document, doc) == "malformed"


def test_public_keys_are_public_only(shinjuku: Org) -> None:
    assert shinjuku.public.keys() == {shinjuku.sig.kid, shinjuku.enc.kid}
    assert all(isinstance(k, OKPKey) and not k.is_private for k in shinjuku.public.values())


def test_rotation_keeps_old_messages_valid(ca: Path, tmp_path: Path) -> None:
    org = _org(ca, tmp_path / "org", SHINJUKU, "新宿区")
    before_sig = sign(PAYLOAD, org.sig)
    before_enc = encrypt(PAYLOAD, org.public[org.enc.kid], org.enc.kid)

    new_sig_kid, new_enc_kid = rotate_node_keys(org.creds.directory, SHINJUKU, "chukan")
    rotated = _org(ca, tmp_path / "org", SHINJUKU, "新宿区")
    assert (rotated.sig.kid, rotated.enc.kid) == (new_sig_kid, new_enc_kid)
    assert rotated.public.keys() == {org.sig.kid, org.enc.kid, new_sig_kid, new_enc_kid}

    # in flight across the switch: old signature still verifies via the new public.json
    assert verify(before_sig, rotated.public.get) == (org.sig.kid, PAYLOAD)
    # ... and the recipient finds the retired decryption key by the JWE kid
    archived = load_encryption_key(tmp_path / "org" / "enc.1.jwk")
    assert peek_kid(before_enc) == archived.kid
    assert decrypt(before_enc, archived) == PAYLOAD

    after = sign(PAYLOAD, rotated.sig)
    assert peek_kid(after) == new_sig_kid
    assert verify(after, rotated.public.get) == (new_sig_kid, PAYLOAD)
    # a peer that only knows the old keys does not know the new kid
    assert _code(verify, after, org.public.get) == "unknown_key"
