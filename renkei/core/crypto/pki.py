"""Private CA and per-node credentials (TLS certificate, JOSE keys).

Every node (an organization's atena, its chukan, the hub, J-LIS …) has credentials of
its own: a node's key speaks for that node only, so holding atena's key does not let
anyone talk to the hub as the organization's chukan. Layout of a node's credential
directory::

    tls.crt  tls.key      leaf certificate (CN = 機関コード, OU = node kind) and its key
    sig.jwk  enc.jwk      Ed25519 signing / X25519 encryption private JWKs,
                          kid ``<機関コード>:<node kind>:<sig|enc>:<n>``
    sig.<n>.jwk ...       keys retired by rotation (kept to decrypt messages in flight)
    public.json           what the hub's organization registry publishes for this node

Private files are created with mode 0600 from the start (never chmod'ed after the
write), and every file is written to a temporary name first, so a crash never leaves
a truncated key behind.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from joserfc.jwk import OKPKey

from renkei.core.config import NODE_KINDS
from renkei.core.crypto.envelope import make_kid, parse_kid

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "NodeCredentials",
    "PkiError",
    "TerminalCredentials",
    "client_ssl_context",
    "create_ca",
    "create_terminal_ca",
    "issue_node_credentials",
    "issue_terminal_certificate",
    "node_of_certificate",
    "org_code_of_certificate",
    "rotate_node_keys",
    "server_ssl_context",
]

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"
SIG_KEY = "sig.jwk"
ENC_KEY = "enc.jwk"
PUBLIC_DOC = "public.json"

CA_VALIDITY = dt.timedelta(days=3652)
LEAF_VALIDITY = dt.timedelta(days=730)
# Backdate notBefore a little so a peer whose clock runs slightly behind accepts a
# certificate issued a moment ago.
CLOCK_SKEW = dt.timedelta(minutes=5)



class PkiError(Exception):
    """Credential files are missing, inconsistent, or not what was asked for."""


@dataclass(frozen=True)
class NodeCredentials:
    """Paths of one node's credential files."""

    directory: Path
    org_code: str
    node: str
    tls_cert: Path
    tls_key: Path
    sig_key: Path
    enc_key: Path
    public: Path


# --- file helpers -----------------------------------------------------------------


def _write_file(path: Path, data: bytes, mode: int, *, replace: bool = False) -> bool:
    """Write ``data`` to ``path`` atomically with ``mode``.

    Without ``replace`` an existing file wins (returns False), which makes concurrent
    first-time creation safe: exactly one writer's file survives.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # O_EXCL + mode at creation: the secret never sits in a wider-permission file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # the umask may have removed bits the caller asked for
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # atomic "create if absent"
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _mkdir_private(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_ec_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{path}: not an EC private key")
    return key


def _load_cert(pem_or_der: bytes) -> x509.Certificate:
    try:
        if pem_or_der.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(pem_or_der)
        return x509.load_der_x509_certificate(pem_or_der)
    except ValueError as err:
        raise PkiError(f"not an X.509 certificate: {err}") from err


# --- CA --------------------------------------------------------------------------


def create_ca(directory: Path, name: str = "renkei private CA") -> tuple[Path, Path]:
    """Create the private CA (ECDSA P-256, 10 years) in ``directory``.

    Idempotent: existing ``ca.crt``/``ca.key`` are kept. Returns (cert, key) paths.
    """
    _mkdir_private(directory)
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    if cert_path.exists():
        # Never mint a new key under an existing certificate: peers trust that cert.
        raise PkiError(f"{cert_path} exists but {key_path} is missing")

    if key_path.exists():
        key = _load_ec_key(key_path)
    else:
        new_key = ec.generate_private_key(ec.SECP256R1())
        _write_file(key_path, _key_pem(new_key), 0o600)
        key = _load_ec_key(key_path)  # another process may have won the race

    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    _write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


# --- organization credentials ------------------------------------------------------


def _san_entries(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _issue_leaf(
    ca_dir: Path,
    key: ec.EllipticCurvePrivateKey,
    org_code: str,
    org_name: str,
    node: str,
    hosts: Sequence[str],
) -> x509.Certificate:
    ca_cert = _load_cert((ca_dir / CA_CERT).read_bytes())
    ca_key = _load_ec_key(ca_dir / CA_KEY)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, org_code),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, node),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org_name),
        ]
    )
    return _sign_end_entity(
        ca_cert,
        ca_key,
        subject,
        key,
        validity=LEAF_VALIDITY,
        usages=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        extra=[x509.SubjectAlternativeName(_san_entries(hosts))],
    )


def _sign_end_entity(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    *,
    validity: dt.timedelta,
    usages: Sequence[x509.ObjectIdentifier],
    extra: Sequence[x509.ExtensionType] = (),
) -> x509.Certificate:
    """A certificate for ``key`` signed by the CA: digital signature only, the extended
    key usages given, never valid beyond the CA."""
    now = _now()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + validity, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    )
    for ext in extra:
        builder = builder.add_extension(ext, critical=False)
    return (
        builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _new_jwk(crv: str, kid: str, use: str) -> bytes:
    key = OKPKey.generate_key("Ed25519" if crv == "Ed25519" else "X25519", {"kid": kid, "use": use})
    return json.dumps(key.as_dict(private=True), indent=2).encode() + b"\n"


def _read_jwk(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("kid"), str):
        raise PkiError(f"{path}: not a JWK with a kid")
    return data


def _public_entry(path: Path, **extra: str) -> dict[str, Any]:
    private = _read_jwk(path)
    public = OKPKey.import_key(private).as_dict(private=False)
    public.update(extra)
    return dict(public)


def _kid_version(kid: str, org_code: str, node: str, use: str, path: Path) -> int:
    parsed = parse_kid(kid)
    if parsed is None or (parsed.org_code, parsed.node, parsed.use) != (org_code, node, use):
        raise PkiError(f"{path}: kid {kid!r} does not belong to {org_code}/{node}/{use}")
    return parsed.version


def _write_public(
    directory: Path, org_code: str, name: str, node: str, keys: list[dict[str, Any]]
) -> None:
    doc = {"org_code": org_code, "name": name, "node": node, "keys": keys}
    data = json.dumps(doc, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
    _write_file(directory / PUBLIC_DOC, data, 0o644, replace=True)


def issue_node_credentials(
    ca_dir: Path,
    out_dir: Path,
    org_code: str,
    org_name: str,
    node: str,
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
) -> NodeCredentials:
    """Issue the TLS certificate and JOSE keys of one node (``node`` = its kind) into ``out_dir``.

    Idempotent: existing files are kept; only missing ones are created. Credentials of
    another organization or another node kind in ``out_dir`` are refused.
    """
    if node not in NODE_KINDS:
        raise PkiError(f"ノード種別は {', '.join(NODE_KINDS)} のいずれかです: {node!r}")
    if not (ca_dir / CA_CERT).exists() or not (ca_dir / CA_KEY).exists():
        raise PkiError(f"no CA in {ca_dir}: run create_ca first")
    _mkdir_private(out_dir)
    creds = NodeCredentials(
        directory=out_dir,
        org_code=org_code,
        node=node,
        tls_cert=out_dir / TLS_CERT,
        tls_key=out_dir / TLS_KEY,
        sig_key=out_dir / SIG_KEY,
        enc_key=out_dir / ENC_KEY,
        public=out_dir / PUBLIC_DOC,
    )

    if creds.tls_cert.exists():
        pem = creds.tls_cert.read_bytes()
        existing = (org_code_of_certificate(pem), node_of_certificate(pem))
        if existing != (org_code, node):
            raise PkiError(f"{creds.tls_cert} belongs to {existing[0]}/{existing[1]}, not {org_code}/{node}")
        if not creds.tls_key.exists():
            raise PkiError(f"{creds.tls_cert} exists but {creds.tls_key} is missing")
    else:
        if not creds.tls_key.exists():
            _write_file(creds.tls_key, _key_pem(ec.generate_private_key(ec.SECP256R1())), 0o600)
        cert = _issue_leaf(ca_dir, _load_ec_key(creds.tls_key), org_code, org_name, node, hosts)
        _write_file(creds.tls_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)

    created = _write_file(creds.sig_key, _new_jwk("Ed25519", make_kid(org_code, node, "sig", 1), "sig"), 0o600)
    created |= _write_file(creds.enc_key, _new_jwk("X25519", make_kid(org_code, node, "enc", 1), "enc"), 0o600)
    _kid_version(_read_jwk(creds.sig_key)["kid"], org_code, node, "sig", creds.sig_key)
    _kid_version(_read_jwk(creds.enc_key)["kid"], org_code, node, "enc", creds.enc_key)

    # A kept public.json may list retiring keys from a rotation: rewrite it only when
    # it is missing or a key was just created.
    if created or not creds.public.exists():
        keys = [_public_entry(creds.sig_key), _public_entry(creds.enc_key)]
        _write_public(out_dir, org_code, org_name, node, keys)
    return creds


def rotate_node_keys(out_dir: Path, org_code: str, node: str) -> tuple[str, str]:
    """Replace one node's signing and encryption keys by version n+1.

    The previous keys are kept as ``sig.<n>.jwk``/``enc.<n>.jwk`` and stay in
    ``public.json`` with ``"status": "retiring"`` so that messages signed or encrypted
    before the switch still verify/decrypt. Keys older than that are dropped from
    ``public.json``. Returns the new (sig kid, enc kid).
    """
    public_path = out_dir / PUBLIC_DOC
    doc = json.loads(public_path.read_text(encoding="utf-8"))
    if (doc.get("org_code"), doc.get("node")) != (org_code, node):
        raise PkiError(
            f"{public_path} belongs to {doc.get('org_code')!r}/{doc.get('node')!r}, not {org_code}/{node}"
        )

    new_kids: list[str] = []
    published: list[dict[str, Any]] = []
    retiring: list[dict[str, Any]] = []
    for use, crv, filename in (("sig", "Ed25519", SIG_KEY), ("enc", "X25519", ENC_KEY)):
        current_path = out_dir / filename
        current = _read_jwk(current_path)
        n = _kid_version(current["kid"], org_code, node, use, current_path)
        archived = out_dir / f"{use}.{n}.jwk"
        # The archive is written before the current key is replaced, so the old
        # private key is never lost even if we crash in between.
        _write_file(archived, current_path.read_bytes(), 0o600, replace=True)
        kid = make_kid(org_code, node, use, n + 1)
        _write_file(current_path, _new_jwk(crv, kid, use), 0o600, replace=True)
        new_kids.append(kid)
        published.append(_public_entry(current_path))
        retiring.append(_public_entry(archived, status="retiring"))

    _write_public(out_dir, org_code, str(doc.get("name", "")), node, published + retiring)
    return new_kids[0], new_kids[1]


# --- TLS ---------------------------------------------------------------------------


# TLS 1.2 suites: ECDHE key exchange (forward secrecy) with an AEAD cipher only, no CBC.
# TLS 1.3 suites are all AEAD and configured apart by OpenSSL; they stay as they are.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def _base_context(protocol: int, cert: Path, key: Path, ca: Path | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    if ca is None:
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    # Trust only our CA: no load_default_certs(), so public CAs cannot vouch for a peer.
    ctx.load_verify_locations(cafile=str(ca))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    return ctx


def server_ssl_context(cert: Path, key: Path, ca: Path | None) -> ssl.SSLContext:
    """TLS 1.2+ server context (ECDHE + AEAD only) that requires a client certificate issued
    by ``ca``; with ``ca=None`` it asks for none (the staff UI without terminal certificates)."""
    return _base_context(ssl.PROTOCOL_TLS_SERVER, cert, key, ca)


def client_ssl_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """TLS 1.2+ client context (ECDHE + AEAD only): server verified against ``ca`` only,
    hostname checked."""
    ctx = _base_context(ssl.PROTOCOL_TLS_CLIENT, cert, key, ca)
    ctx.check_hostname = True
    return ctx


def org_code_of_certificate(pem_or_der: bytes) -> str:
    """The subject CN (the organization code) of a PEM or DER certificate."""
    return _common_name(_load_cert(pem_or_der))


def node_of_certificate(pem_or_der: bytes) -> str:
    """The subject OU (the node kind: atena, chukan, hub …) of a node's certificate."""
    attrs = _load_cert(pem_or_der).subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if len(attrs) != 1:
        raise PkiError("a node certificate's subject must have exactly one OU (the node kind)")
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8")


# --- designated terminals ----------------------------------------------------------
#
# Each organization has a CA of its own for its staff terminals, separate from the
# federation CA: a terminal certificate admits a PC to the staff UI of that
# organization only, and a node's certificate (federation CA) is no terminal.

TERMINAL_CA_PREFIX = "renkei 指定端末CA "
TERMINAL_UNIT = "指定端末"
TERMINAL_VALIDITY = dt.timedelta(days=365)
TERMINAL_STEM = "terminal"
_MAX_TERMINAL_NAME = 64


@dataclass(frozen=True)
class TerminalCredentials:
    """A terminal's certificate and key (PEM), and the same as PKCS#12 for browsers.

    ``p12_password`` holds the passphrase of the PKCS#12 file (mode 0600).
    """

    cert: Path
    key: Path
    p12: Path
    p12_password: Path


def _common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(attrs) != 1:
        raise PkiError("certificate subject must have exactly one CN")
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8")


def create_terminal_ca(directory: Path, org_code: str) -> tuple[Path, Path]:
    """Create (or keep) the terminal CA of one organization in ``directory``.

    Its CN names the organization; an existing CA of another organization is refused.
    Returns (cert, key) paths.
    """
    if not (len(org_code) == 16 and org_code.isascii() and org_code.isdigit()):
        raise PkiError(f"機関コードは16桁の数字です: {org_code!r}")
    name = TERMINAL_CA_PREFIX + org_code
    cert_path = directory / CA_CERT
    if cert_path.exists():
        existing = _common_name(_load_cert(cert_path.read_bytes()))
        if existing != name:
            raise PkiError(f"{cert_path} は別のCA（{existing}）です。{org_code} の端末CAではありません")
    return create_ca(directory, name)


def issue_terminal_certificate(
    ca_dir: Path, out_dir: Path, org_code: str, name: str
) -> TerminalCredentials:
    """Issue a client certificate for one staff terminal (CN = terminal name, O = 機関コード).

    The CA must be ``org_code``'s terminal CA. Existing files in ``out_dir`` are never
    overwritten (PkiError): a terminal gets a new directory for a new certificate.
    """
    label = name.strip()
    if not label or len(label) > _MAX_TERMINAL_NAME or not label.isprintable():
        raise PkiError(f"端末名は1〜{_MAX_TERMINAL_NAME}文字の表示可能な文字で指定してください")
    ca_cert = _load_cert((ca_dir / CA_CERT).read_bytes()) if (ca_dir / CA_CERT).exists() else None
    if ca_cert is None or not (ca_dir / CA_KEY).exists():
        raise PkiError(f"{ca_dir} に端末CAがありません（先に create_terminal_ca を実行してください）")
    if _common_name(ca_cert) != TERMINAL_CA_PREFIX + org_code:
        raise PkiError(f"{ca_dir} は {org_code} の端末CAではありません")
    creds = TerminalCredentials(
        cert=out_dir / f"{TERMINAL_STEM}.crt",
        key=out_dir / f"{TERMINAL_STEM}.key",
        p12=out_dir / f"{TERMINAL_STEM}.p12",
        p12_password=out_dir / f"{TERMINAL_STEM}.p12.pass",
    )
    existing = [p for p in (creds.cert, creds.key, creds.p12, creds.p12_password) if p.exists()]
    if existing:
        raise PkiError(f"{existing[0]} が既にあります。新しい端末証明書は別のディレクトリに発行してください")
    _mkdir_private(out_dir)
    ca_key = _load_ec_key(ca_dir / CA_KEY)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, label),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, TERMINAL_UNIT),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org_code),
        ]
    )
    # Client authentication only: a terminal certificate cannot serve TLS.
    cert = _sign_end_entity(
        ca_cert, ca_key, subject, key, validity=TERMINAL_VALIDITY, usages=[ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    password = secrets.token_urlsafe(18)
    bundle = pkcs12.serialize_key_and_certificates(
        label.encode("utf-8"),
        key,
        cert,
        [ca_cert],
        serialization.BestAvailableEncryption(password.encode("ascii")),
    )
    _write_file(creds.key, _key_pem(key), 0o600)
    _write_file(creds.p12, bundle, 0o600)
    _write_file(creds.p12_password, password.encode("ascii") + b"\n", 0o600)
    _write_file(creds.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return creds
