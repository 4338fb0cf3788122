"""JOSE envelope for node-to-node messages: Ed25519 JWS and X25519 JWE.

We sign with JWS ``Ed25519`` (RFC 9864) and encrypt with JWE
``ECDH-ES+A256KW``/``A256GCM`` on X25519, nothing else. On verification the older
polymorphic name ``EdDSA`` (RFC 8037) is accepted too, because peers built on other
JOSE libraries (jwcrypto, authlib) sign Ed25519 under that name; it is verified on an
Ed25519 key only, never Ed448. The header is checked before any key is touched (for
a JWE also the ephemeral key: X25519 only), so ``none``, HMAC-with-the-public-key,
another curve and similar tricks never reach joserfc; and whatever joserfc raises on
hostile input is still one of our codes, never an unexpected exception.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from joserfc import jwe, jws
from joserfc.errors import (
    BadSignatureError,
    InvalidKeyCurveError,
    JoseError,
    UnsupportedAlgorithmError,
)
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import OKPKey

from renkei.core.config import NODE_KINDS

__all__ = [
    "ENCRYPTION_ALG",
    "ENCRYPTION_ENC",
    "LEGACY_SIGNING_ALG",
    "SIGNING_ALG",
    "EncryptionKey",
    "EnvelopeError",
    "KeyId",
    "SigningKey",
    "decrypt",
    "encrypt",
    "load_encryption_key",
    "load_signing_key",
    "make_kid",
    "parse_kid",
    "peek_kid",
    "public_keys_from_document",
    "sign",
    "verify",
]

# RFC 9864's fully-specified name: what we sign with.
SIGNING_ALG = "Ed25519"
# RFC 8037's polymorphic name, accepted on verification on Ed25519 keys only.
LEGACY_SIGNING_ALG = "EdDSA"
ENCRYPTION_ALG = "ECDH-ES+A256KW"
ENCRYPTION_ENC = "A256GCM"
_EPK_KEYS = frozenset({"kty", "crv", "x"})

# joserfc's defaults (128 KB JWS payload, 64 KB JWE ciphertext) are too small for
# batched answers; the HTTP layer bounds request bodies anyway.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class _EdDSAOnEd25519(JWSAlgModel):
    """``EdDSA`` verified as Ed25519 and nothing else.

    joserfc's own ``EdDSA`` also admits Ed448 and warns on every use (deprecated by
    RFC 9864); the signature over an Ed25519 key is the same as ``Ed25519``'s.
    """

    name = LEGACY_SIGNING_ALG
    description = "EdDSA (RFC 8037) on Ed25519 keys only"
    key_type = "OKP"

    def check_key(self, key: Any) -> None:
        super().check_key(key)
        if key.curve_name != "Ed25519":
            raise InvalidKeyCurveError(f"{LEGACY_SIGNING_ALG} is accepted on Ed25519 keys only")

    def sign(self, msg: bytes, key: Any) -> bytes:
        raise UnsupportedAlgorithmError(f"we sign with {SIGNING_ALG}, never {LEGACY_SIGNING_ALG}")

    def verify(self, msg: bytes, sig: bytes, key: Any) -> bool:
        op_key = key.get_op_key("verify")
        if not isinstance(op_key, Ed25519PublicKey):
            return False
        try:
            op_key.verify(sig, msg)
        except InvalidSignature:
            return False
        return True


class _VerifyingRegistry(jws.JWSRegistry):
    # A registry class of its own: joserfc keeps algorithms on the class, and the
    # process-wide one must not learn our restricted "EdDSA".
    algorithms = {**jws.JWSRegistry.algorithms, LEGACY_SIGNING_ALG: _EdDSAOnEd25519()}


_JWS_REGISTRY = jws.JWSRegistry(algorithms=[SIGNING_ALG])
_JWS_REGISTRY.max_payload_length = MAX_MESSAGE_BYTES
_JWS_VERIFY_REGISTRY = _VerifyingRegistry(algorithms=[SIGNING_ALG, LEGACY_SIGNING_ALG])
_JWS_VERIFY_REGISTRY.max_payload_length = MAX_MESSAGE_BYTES
_JWE_REGISTRY = jwe.JWERegistry(algorithms=[ENCRYPTION_ALG, ENCRYPTION_ENC])
_JWE_REGISTRY.max_ciphertext_length = MAX_MESSAGE_BYTES * 4 // 3 + 4

_MESSAGES = {
    "malformed": "メッセージの形式が正しくありません。",
    "unknown_key": "鍵IDに対応する鍵が登録されていません。",
    "bad_signature": "署名の検証に失敗しました。",
    "bad_algorithm": "許可されていない暗号アルゴリズムが指定されています。",
    "decrypt_failed": "メッセージを復号できませんでした。",
}


class EnvelopeError(Exception):
    """A message failed a JOSE check; ``code`` is stable, ``message`` is for staff."""

    def __init__(self, code: str, detail: str = "") -> None:
        self.code = code
        self.message = _MESSAGES.get(code, "メッセージを処理できませんでした。")
        self.detail = detail
        super().__init__(f"{code}: {detail}" if detail else code)


@dataclass(frozen=True)
class KeyId:
    """A key id ``<機関コード>:<node kind>:<sig|enc>:<n>``: whose key, which node, what for.

    Every node has keys of its own, so the kid of a signature says which organization
    *and which node* (atena, chukan, hub …) is speaking; receivers decide by it which
    routes the sender may use.
    """

    org_code: str
    node: str
    use: str
    version: int

    def __str__(self) -> str:
        return make_kid(self.org_code, self.node, self.use, self.version)


_KID_RE = re.compile(r"^(?P<org>[0-9A-Za-z]{1,32}):(?P<node>[a-z]+):(?P<use>sig|enc):(?P<n>[1-9][0-9]{0,8})$")


def make_kid(org_code: str, node: str, use: str, version: int) -> str:
    return f"{org_code}:{node}:{use}:{version}"


def parse_kid(kid: str) -> KeyId | None:
    """The parts of a well-formed kid of a known node kind, or None."""
    match = _KID_RE.match(kid) if isinstance(kid, str) else None
    if match is None or match["node"] not in NODE_KINDS:
        return None
    return KeyId(match["org"], match["node"], match["use"], int(match["n"]))


@dataclass(frozen=True)
class SigningKey:
    """Our Ed25519 private signing key and its kid."""

    key: OKPKey
    kid: str


@dataclass(frozen=True)
class EncryptionKey:
    """Our X25519 private decryption key and its kid."""

    key: OKPKey
    kid: str


# --- keys ---------------------------------------------------------------------------


def _load_private_okp(path: Path, curve: str) -> tuple[OKPKey, str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    key = OKPKey.import_key(data)
    if key.curve_name != curve or not key.is_private:
        raise ValueError(f"{path}: expected a private {curve} JWK")
    if not key.kid:
        raise ValueError(f"{path}: JWK has no kid")
    return key, key.kid


def load_signing_key(path: Path) -> SigningKey:
    """Load a private Ed25519 JWK file (``sig.jwk``)."""
    key, kid = _load_private_okp(path, "Ed25519")
    return SigningKey(key=key, kid=kid)


def load_encryption_key(path: Path) -> EncryptionKey:
    """Load a private X25519 JWK file (``enc.jwk``)."""
    key, kid = _load_private_okp(path, "X25519")
    return EncryptionKey(key=key, kid=kid)


_NON_JWK_FIELDS = ("status",)


def public_keys_from_document(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Map kid -> public ``OKPKey`` for every key of a ``public.json``-shaped document.

    A kid must be ``<org_code>:<node kind>:<use>:<n>`` with the document's ``org_code``
    (and its ``node`` where the document names one) and the use its JWK declares: the
    kid is how a receiver knows who signed, so an organization must not publish keys in
    another's name, nor a node in another node's.
    """
    org_code = doc.get("org_code")
    entries = doc.get("keys")
    if not isinstance(org_code, str) or not isinstance(entries, list):
        raise EnvelopeError("malformed", "document needs org_code and keys")
    out: dict[str, Any] = {}
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise EnvelopeError("malformed", "key entry is not an object")
        jwk = {k: v for k, v in entry.items() if k not in _NON_JWK_FIELDS}
        kid = jwk.get("kid")
        parsed = parse_kid(kid) if isinstance(kid, str) else None
        if parsed is None or parsed.org_code != org_code:
            raise EnvelopeError("malformed", f"kid {kid!r} not under {org_code}")
        if doc.get("node") not in (None, parsed.node) or jwk.get("use", parsed.use) != parsed.use:
            raise EnvelopeError("malformed", f"kid {kid!r} does not match the document's node or the key's use")
        if "d" in jwk:
            raise EnvelopeError("malformed", f"{kid}: private key material in a public document")
        try:
            key = OKPKey.import_key(jwk)
        except (JoseError, ValueError, KeyError, TypeError) as err:
            raise EnvelopeError("malformed", f"{kid}: {err}") from err
        if key.curve_name not in ("Ed25519", "X25519"):
            raise EnvelopeError("malformed", f"{kid}: unsupported curve {key.curve_name}")
        out[str(parsed)] = key
    return out


# --- headers ------------------------------------------------------------------------


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _header(token: str, parts: tuple[int, ...]) -> dict[str, Any]:
    segments = token.split(".") if isinstance(token, str) else []
    if len(segments) not in parts:
        raise EnvelopeError("malformed", "not a compact JWS/JWE")
    try:
        header = json.loads(_b64decode(segments[0]))
    except (binascii.Error, ValueError) as err:
        raise EnvelopeError("malformed", "header is not base64url JSON") from err
    if not isinstance(header, dict):
        raise EnvelopeError("malformed", "header is not a JSON object")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise EnvelopeError("malformed", "header has no kid")
    return header


def peek_kid(token: str) -> str:
    """The ``kid`` of a compact JWS or JWE header, without verifying anything."""
    kid: str = _header(token, (3, 5))["kid"]
    return kid


# --- JWS ----------------------------------------------------------------------------


def sign(payload: bytes, key: SigningKey) -> str:
    """Compact JWS over ``payload`` with our Ed25519 key; header carries kid, typ JOSE."""
    header = {"alg": SIGNING_ALG, "kid": key.kid, "typ": "JOSE"}
    return jws.serialize_compact(header, payload, key.key, registry=_JWS_REGISTRY)


def verify(token: str, resolve: Callable[[str], Any | None]) -> tuple[str, bytes]:
    """Verify a compact JWS; ``resolve(kid)`` returns the signer's public key or None.

    ``alg`` is ``Ed25519`` or ``EdDSA``, on an Ed25519 key either way. Returns
    (kid, payload). Raises EnvelopeError with code malformed, bad_algorithm,
    unknown_key or bad_signature.
    """
    header = _header(token, (3,))
    if header.get("alg") not in (SIGNING_ALG, LEGACY_SIGNING_ALG):
        raise EnvelopeError("bad_algorithm", f"alg {str(header.get('alg'))[:20]!r}")
    kid: str = header["kid"]
    key = resolve(kid)
    if key is None:
        raise EnvelopeError("unknown_key", kid)
    # An encryption key under a signing kid (or any other key type) is not a signer.
    if not isinstance(key, OKPKey) or key.curve_name != "Ed25519" or key.get("use", "sig") != "sig":
        raise EnvelopeError("unknown_key", f"{kid} is not an Ed25519 signing key")
    try:
        obj = jws.deserialize_compact(token, key, registry=_JWS_VERIFY_REGISTRY)
    except BadSignatureError as err:
        raise EnvelopeError("bad_signature", kid) from err
    except Exception as err:
        # Anything else joserfc raises on a hostile token (its errors, a KeyError, a
        # binascii.Error …) is a token we cannot read, never an unexpected error.
        raise EnvelopeError("malformed", type(err).__name__) from err
    return kid, obj.payload


# --- JWE ----------------------------------------------------------------------------


def encrypt(payload: bytes, recipient_public_key: Any, recipient_kid: str) -> str:
    """Compact JWE (ECDH-ES+A256KW, A256GCM) of ``payload`` for an X25519 public key."""
    if not isinstance(recipient_public_key, OKPKey) or recipient_public_key.curve_name != "X25519":
        raise EnvelopeError("unknown_key", f"{recipient_kid} is not an X25519 key")
    header = {"alg": ENCRYPTION_ALG, "enc": ENCRYPTION_ENC, "kid": recipient_kid}
    return jwe.encrypt_compact(header, payload, recipient_public_key, registry=_JWE_REGISTRY)


def _check_epk(header: Mapping[str, Any]) -> None:
    """The sender's ephemeral key must be a public X25519 key: nothing else is agreed on.

    (joserfc meets an ``epk`` on P-256 with a bare KeyError; one on Ed25519 with yet
    another error.)
    """
    epk = header.get("epk")
    if not isinstance(epk, dict):
        raise EnvelopeError("malformed", "epk is not a JWK object")
    if epk.get("kty") != "OKP" or epk.get("crv") != "X25519":
        raise EnvelopeError("bad_algorithm", "epk is not an X25519 key")
    if not set(epk) <= _EPK_KEYS:
        # "d" would be a private key; anything else has no meaning for X25519.
        raise EnvelopeError("malformed", "epk has members other than kty, crv, x")
    x = epk.get("x")
    try:
        raw = _b64decode(x) if isinstance(x, str) and x.isascii() else b""
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise EnvelopeError("malformed", "epk x is not 32 bytes of base64url")


def decrypt(token: str, key: EncryptionKey) -> bytes:
    """Decrypt a compact JWE addressed to ``key``.

    Refuses, before any key is used: another alg, enc or a zip (bad_algorithm), an
    ephemeral key that is not X25519 (bad_algorithm or malformed) and a JWE for
    another key id (decrypt_failed). A wrong key or tampering is decrypt_failed.
    """
    header = _header(token, (5,))
    if header.get("alg") != ENCRYPTION_ALG or header.get("enc") != ENCRYPTION_ENC:
        raise EnvelopeError("bad_algorithm", "alg/enc other than ECDH-ES+A256KW/A256GCM")
    if "zip" in header:
        # Compression before encryption leaks plaintext through length (CRIME-style).
        raise EnvelopeError("bad_algorithm", "zip is not allowed")
    _check_epk(header)
    if header["kid"] != key.kid:
        raise EnvelopeError("decrypt_failed", "encrypted for another key")
    try:
        obj = jwe.decrypt_compact(token, key.key, registry=_JWE_REGISTRY)
    except Exception as err:
        # joserfc's errors, cryptography's InvalidTag/InvalidUnwrap, and whatever else
        # a hostile header provokes: none of them may escape as an unexpected error.
        raise EnvelopeError("decrypt_failed", type(err).__name__) from err
    if obj.plaintext is None:
        raise EnvelopeError("decrypt_failed", "no plaintext")
    return obj.plaintext
