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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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


def _eddsa_token(header: dict[str, Any], payload: bytes, private: Any) -> str:
    """A JWS signed by hand (raw Ed25519 / Ed448 over the signing input)."""
    message = f"{_b64(json.dumps(header).encode())}.{_b64(payload)}"
    return f"{message}.{_b64(private.sign(message.encode()))}"


def test_older_eddsa_name_is_accepted_on_an_ed25519_key(shinjuku: Org) -> None:
    # RFC 8037's "EdDSA" over an Ed25519 key is the same signature as "Ed25519".
    raw = shinjuku.sig.key.private_key
    token = _eddsa_token({"alg": "EdDSA", "kid": shinjuku.sig.kid}, PAYLOAD, raw)
    assert verify(token, shinjuku.public.get) == (shinjuku.sig.kid, PAYLOAD)
    forged = _eddsa_token({"alg": "EdDSA", "kid": shinjuku.sig.kid}, b"{}", raw)
    forged = ".".join([*forged.split(".")[:2], token.split(".")[2]])
    assert _code(verify, forged, shinjuku.public.get) == "bad_signature"


def test_eddsa_on_an_ed448_key_is_refused(shinjuku: Org) -> None:
    ed448 = OKPKey.generate_key("Ed448", {"kid": shinjuku.sig.kid, "use": "sig"})
    token = _eddsa_token({"alg": "EdDSA", "kid": shinjuku.sig.kid}, PAYLOAD, ed448.private_key)
    public = OKPKey.import_key(ed448.as_dict(private=False))
    assert _code(verify, token, lambda kid: public) == "unknown_key"
    # Ed448 under the Ed25519 name, or under its own, is refused as well.
    for alg, code in (("Ed25519", "unknown_key"), ("Ed448", "bad_algorithm")):
        other = _eddsa_token({"alg": alg, "kid": shinjuku.sig.kid}, PAYLOAD, ed448.private_key)
        assert _code(verify, other, lambda kid: public) == code
    # An Ed448 signature presented for the Ed25519 key of the kid does not verify.
    assert _code(verify, token, shinjuku.public.get) == "bad_signature"


def test_restricted_eddsa_stays_in_the_envelope() -> None:
    # joserfc keeps algorithms on its registry class: ours must not replace its EdDSA.
    from joserfc.jws import JWSRegistry

    from renkei.core.crypto import envelope

    assert type(JWSRegistry.algorithms["EdDSA"]).__module__.startswith("joserfc.")
    assert type(envelope._JWS_VERIFY_REGISTRY.algorithms["EdDSA"]).__module__ == envelope.__name__


def test_we_sign_with_ed25519_only(shinjuku: Org) -> None:
    header = json.loads(_b64d(sign(PAYLOAD, shinjuku.sig).split(".")[0]))
    assert header["alg"] == "Ed25519"


# --- an independent JOSE library (jwcrypto) --------------------------------------------


def test_jwcrypto_eddsa_signature_verifies(shinjuku: Org) -> None:
    from jwcrypto import jwk as jwc_jwk
    from jwcrypto import jws as jwc_jws
    from jwcrypto.common import json_encode

    kid = f"{SHINJUKU}:chukan:sig:9"
    theirs = jwc_jwk.JWK.generate(kty="OKP", crv="Ed25519", kid=kid, use="sig")
    public = OKPKey.import_key(json.loads(theirs.export_public()))
    for alg in ("EdDSA", "Ed25519"):
        signed = jwc_jws.JWS(PAYLOAD)
        signed.add_signature(theirs, None, json_encode({"alg": alg, "kid": kid}))
        token = signed.serialize(compact=True)
        assert verify(token, lambda _kid: public) == (kid, PAYLOAD)
        assert _code(verify, token, shinjuku.public.get) == "unknown_key"  # kid :9 unknown


def test_jwcrypto_ed448_eddsa_is_refused() -> None:
    from jwcrypto import jwk as jwc_jwk
    from jwcrypto import jws as jwc_jws
    from jwcrypto.common import json_encode

    kid = f"{SHINJUKU}:chukan:sig:8"
    theirs = jwc_jwk.JWK.generate(kty="OKP", crv="Ed448", kid=kid, use="sig")
    signed = jwc_jws.JWS(PAYLOAD)
    signed.add_signature(theirs, None, json_encode({"alg": "EdDSA", "kid": kid}))
    public = OKPKey.import_key(json.loads(theirs.export_public()))
    assert _code(verify, signed.serialize(compact=True), lambda _kid: public) == "unknown_key"


def test_jwcrypto_reads_what_we_sign_and_encrypt(shinjuku: Org, hub: Org) -> None:
    from jwcrypto import jwe as jwc_jwe
    from jwcrypto import jwk as jwc_jwk
    from jwcrypto import jws as jwc_jws

    signed = jwc_jws.JWS()
    signed.deserialize(sign(PAYLOAD, shinjuku.sig))
    signed.verify(jwc_jwk.JWK(**shinjuku.public[shinjuku.sig.kid].as_dict()), alg="Ed25519")
    assert signed.payload == PAYLOAD
    sealed = jwc_jwe.JWE()
    sealed.deserialize(
        encrypt(PAYLOAD, hub.public[hub.enc.kid], hub.enc.kid),
        key=jwc_jwk.JWK(**hub.enc.key.as_dict(private=True)),
    )
    assert sealed.payload == PAYLOAD


def test_jwcrypto_jwe_decrypts(hub: Org) -> None:
    from jwcrypto import jwe as jwc_jwe
    from jwcrypto import jwk as jwc_jwk
    from jwcrypto.common import json_encode

    header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": hub.enc.kid}
    theirs = jwc_jwe.JWE(PAYLOAD, protected=json_encode(header))
    theirs.add_recipient(jwc_jwk.JWK(**hub.public[hub.enc.kid].as_dict()))
    assert decrypt(theirs.serialize(compact=True), hub.enc) == PAYLOAD


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


def _with_header(token: str, **change: Any) -> str:
    """The JWE with header members replaced (None removes one); the rest unchanged."""
    parts = token.split(".")
    header = json.loads(_b64d(parts[0]))
    for name, value in change.items():
        if value is None:
            header.pop(name, None)
        else:
            header[name] = value
    return ".".join([_b64(json.dumps(header).encode()), *parts[1:]])


def _p256_public_jwk() -> dict[str, Any]:
    from joserfc.jwk import ECKey

    return dict(ECKey.generate_key("P-256").as_dict(private=False))


def _x25519_x() -> str:
    return str(OKPKey.generate_key("X25519").as_dict(private=False)["x"])


# Every way the ephemeral key of an answer can be wrong, and the code it gets.
BAD_EPKS: dict[str, tuple[Any, str]] = {
    # the probe's finding: joserfc raised a bare KeyError('P-256')
    "p256": (_p256_public_jwk(), "bad_algorithm"),
    "ed25519": ({"kty": "OKP", "crv": "Ed25519", "x": _x25519_x()}, "bad_algorithm"),
    "x448": ({"kty": "OKP", "crv": "X448", "x": _b64(b"\x01" * 56)}, "bad_algorithm"),
    "ec-without-coordinates": ({"kty": "EC", "crv": "P-256"}, "bad_algorithm"),
    "rsa": ({"kty": "RSA", "n": "AQAB", "e": "AQAB"}, "bad_algorithm"),
    "oct": ({"kty": "oct", "k": "AAAA"}, "bad_algorithm"),
    "empty-object": ({}, "bad_algorithm"),
    "string": ("X25519", "malformed"),
    "list": ([_x25519_x()], "malformed"),
    "absent": (None, "malformed"),
    "no-x": ({"kty": "OKP", "crv": "X25519"}, "malformed"),
    "x-not-base64": ({"kty": "OKP", "crv": "X25519", "x": "!!!!"}, "malformed"),
    "x-not-a-string": ({"kty": "OKP", "crv": "X25519", "x": 12345}, "malformed"),
    "x-too-short": ({"kty": "OKP", "crv": "X25519", "x": _b64(b"\x02" * 31)}, "malformed"),
    "x-non-ascii": ({"kty": "OKP", "crv": "X25519", "x": "ＡＡＡＡ"}, "malformed"),
    "with-private-d": (
        {"kty": "OKP", "crv": "X25519", "x": _x25519_x(), "d": _b64(b"\x03" * 32)},
        "malformed",
    ),
    "with-extra-member": ({"kty": "OKP", "crv": "X25519", "x": _x25519_x(), "kid": "x"}, "malformed"),
    # well formed, but not the key the sender agreed with: the unwrap fails
    "other-x25519": ({"kty": "OKP", "crv": "X25519", "x": _x25519_x()}, "decrypt_failed"),
    # a low-order point: cryptography refuses the all-zero shared secret
    "all-zero": ({"kty": "OKP", "crv": "X25519", "x": _b64(b"\x00" * 32)}, "decrypt_failed"),
}


@pytest.mark.parametrize("name", list(BAD_EPKS))
def test_bad_ephemeral_key_is_refused(hub: Org, name: str) -> None:
    epk, code = BAD_EPKS[name]
    token = encrypt(PAYLOAD, hub.public[hub.enc.kid], hub.enc.kid)
    assert _code(decrypt, _with_header(token, epk=epk), hub.enc) == code


def _segment(token: str, index: int, value: str) -> str:
    parts = token.split(".")
    parts[index] = value
    return ".".join(parts)


def _flip_byte(segment: str) -> str:
    raw = bytearray(_b64d(segment))
    raw[-1] ^= 0x01
    return _b64(bytes(raw))


BAD_JWES: dict[str, tuple[Callable[[str], Any], str]] = {
    "empty": (lambda t: "", "malformed"),
    "not-a-string": (lambda t: None, "malformed"),
    "a-jws": (lambda t: ".".join(t.split(".")[:3]), "malformed"),
    "six-parts": (lambda t: t + ".AAAA", "malformed"),
    "header-not-json": (lambda t: _segment(t, 0, _b64(b"not json")), "malformed"),
    "header-a-list": (lambda t: _segment(t, 0, _b64(b"[]")), "malformed"),
    "no-kid": (lambda t: _with_header(t, kid=None), "malformed"),
    "alg-dir": (lambda t: _with_header(t, alg="dir"), "bad_algorithm"),
    "alg-rsa": (lambda t: _with_header(t, alg="RSA-OAEP"), "bad_algorithm"),
    "alg-ecdh-es-direct": (lambda t: _with_header(t, alg="ECDH-ES"), "bad_algorithm"),
    "enc-cbc": (lambda t: _with_header(t, enc="A128CBC-HS256"), "bad_algorithm"),
    "zip": (lambda t: _with_header(t, zip="DEF"), "bad_algorithm"),
    "kid-of-another-key": (lambda t: _with_header(t, kid=f"{SHINJUKU}:chukan:enc:1"), "decrypt_failed"),
    "unknown-crit": (lambda t: _with_header(t, crit=["exp"], exp=1), "decrypt_failed"),
    "key-not-base64": (lambda t: _segment(t, 1, "!!!!"), "decrypt_failed"),
    "key-tampered": (lambda t: _segment(t, 1, _flip_byte(t.split(".")[1])), "decrypt_failed"),
    "iv-empty": (lambda t: _segment(t, 2, ""), "decrypt_failed"),
    "iv-short": (lambda t: _segment(t, 2, _b64(b"\x00" * 4)), "decrypt_failed"),
    "ciphertext-empty": (lambda t: _segment(t, 3, ""), "decrypt_failed"),
    "tag-tampered": (lambda t: _segment(t, 4, _flip_byte(t.split(".")[4])), "decrypt_failed"),
    "tag-empty": (lambda t: _segment(t, 4, ""), "decrypt_failed"),
    "header-tampered": (lambda t: _with_header(t, extra="x"), "decrypt_failed"),
}


@pytest.mark.parametrize("name", list(BAD_JWES))
def test_malformed_jwe_is_refused(hub: Org, name: str) -> None:
    mutate, code = BAD_JWES[name]
    token = encrypt(PAYLOAD, hub.public[hub.enc.kid], hub.enc.kid)
    assert decrypt(token, hub.enc) == PAYLOAD  # the baseline the mutations start from
    assert _code(decrypt, mutate(token), hub.enc) == code


# --- whatever arrives, decrypt and verify answer with one of our codes --------------------

FUZZ = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["kty", "crv", "x", "y", "d", "kid", "k", "n", "e"]) | st.text(max_size=5), inner, max_size=5),
    max_leaves=12,
)
_EPK = st.fixed_dictionaries(
    {
        "kty": st.sampled_from(["OKP", "EC", "RSA", "oct", ""]) | st.text(max_size=5),
        "crv": st.sampled_from(["X25519", "X448", "Ed25519", "P-256", "P-384", "secp256k1"]) | _JSON,
    },
    optional={"x": st.text(max_size=60) | _JSON, "y": st.text(max_size=60), "d": st.text(max_size=60)},
)


def _fuzz_code(fn: Callable[..., object], *args: Any) -> None:
    try:
        fn(*args)
    except EnvelopeError as exc:
        assert exc.code in {"malformed", "bad_algorithm", "decrypt_failed", "unknown_key", "bad_signature"}


@FUZZ
@given(epk=_EPK | _JSON)
def test_any_ephemeral_key_is_a_refusal_or_the_plaintext(hub: Org, epk: Any) -> None:
    token = encrypt(PAYLOAD, hub.public[hub.enc.kid], hub.enc.kid)
    _fuzz_code(decrypt, _with_header(token, epk=epk), hub.enc)


@FUZZ
@given(data=st.data())
def test_any_edit_of_a_jwe_or_jws_is_a_refusal(hub: Org, shinjuku: Org, data: st.DataObject) -> None:
    tokens = (
        (encrypt(PAYLOAD, hub.public[hub.enc.kid], hub.enc.kid), lambda t: decrypt(t, hub.enc)),
        (sign(PAYLOAD, shinjuku.sig), lambda t: verify(t, shinjuku.public.get)),
    )
    token, open_ = data.draw(st.sampled_from(tokens))
    chars = list(token)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(chars) - 1))
        chars[i] = data.draw(st.sampled_from("AB_-.=!0\u3042") | st.text(max_size=3))
    _fuzz_code(open_, "".join(chars))


@FUZZ
@given(header=st.dictionaries(st.text(max_size=6), _JSON, max_size=6))
def test_any_jwe_header_is_a_refusal(hub: Org, header: dict[str, Any]) -> None:
    token = encrypt(PAYLOAD, hub.public[hub.enc.kid], hub.enc.kid)
    forged = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": hub.enc.kid, **header}
    _fuzz_code(decrypt, ".".join([_b64(json.dumps(forged).encode()), *token.split(".")[1:]]), hub.enc)


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
