"""Private CA, organization credentials and mutual TLS between two real sockets."""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from renkei.core.crypto.envelope import EnvelopeError, public_keys_from_document
from renkei.core.crypto.pki import (
    NodeCredentials,
    PkiError,
    client_ssl_context,
    create_ca,
    issue_node_credentials,
    node_of_certificate,
    org_code_of_certificate,
    rotate_node_keys,
    server_ssl_context,
)

SHINJUKU = "1310410000000001"
NAKANO = "1311480000000001"


@dataclass
class World:
    ca: Path
    other_ca: Path
    shinjuku: NodeCredentials
    nakano: NodeCredentials
    rogue: NodeCredentials  # issued by a different CA


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("pki")
    create_ca(root / "ca")
    # Same CA name, different key: trust must follow the key, not the name.
    create_ca(root / "other-ca")
    return World(
        ca=root / "ca",
        other_ca=root / "other-ca",
        shinjuku=issue_node_credentials(root / "ca", root / "shinjuku", SHINJUKU, "新宿区", "chukan"),
        nakano=issue_node_credentials(root / "ca", root / "nakano", NAKANO, "中野区", "chukan"),
        rogue=issue_node_credentials(root / "other-ca", root / "rogue", NAKANO, "中野区", "chukan"),
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# --- files and certificate contents ---------------------------------------------------


def test_ca_files_and_idempotence(world: World) -> None:
    cert, key = world.ca / "ca.crt", world.ca / "ca.key"
    assert _mode(key) == 0o600
    before = (cert.read_bytes(), key.read_bytes())
    assert create_ca(world.ca) == (cert, key)
    assert (cert.read_bytes(), key.read_bytes()) == before
    ca = _cert(cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert lifetime.days >= 3650


def test_private_files_are_0600(world: World) -> None:
    creds = world.shinjuku
    for path in (creds.tls_key, creds.sig_key, creds.enc_key):
        assert _mode(path) == 0o600, path
    assert not _mode(creds.public) & 0o022


def test_leaf_certificate_names_the_organization(world: World) -> None:
    cert = _cert(world.shinjuku.tls_cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SHINJUKU
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "新宿区"
    assert cert.issuer == _cert(world.ca / "ca.crt").subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert 729 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 731
    pem = world.shinjuku.tls_cert.read_bytes()
    assert org_code_of_certificate(pem) == SHINJUKU
    assert org_code_of_certificate(ssl.PEM_cert_to_DER_cert(pem.decode())) == SHINJUKU


def test_org_code_of_certificate_rejects_garbage() -> None:
    with pytest.raises(PkiError):
        org_code_of_certificate(b"not a certificate")


def test_public_document(world: World) -> None:
    doc = json.loads(world.shinjuku.public.read_text(encoding="utf-8"))
    assert doc["org_code"] == SHINJUKU and doc["name"] == "新宿区"
    by_use = {k["use"]: k for k in doc["keys"]}
    assert by_use["sig"]["kid"] == f"{SHINJUKU}:chukan:sig:1" and by_use["sig"]["crv"] == "Ed25519"
    assert by_use["enc"]["kid"] == f"{SHINJUKU}:chukan:enc:1" and by_use["enc"]["crv"] == "X25519"
    assert all("d" not in k for k in doc["keys"])
    sig = json.loads(world.shinjuku.sig_key.read_text())
    assert sig["kid"] == f"{SHINJUKU}:chukan:sig:1" and "d" in sig


def test_issue_is_idempotent(world: World) -> None:
    creds = world.nakano
    paths = (creds.tls_cert, creds.tls_key, creds.sig_key, creds.enc_key, creds.public)
    before = [p.read_bytes() for p in paths]
    again = issue_node_credentials(world.ca, creds.directory, NAKANO, "中野区", "chukan")
    assert again == creds
    assert [p.read_bytes() for p in paths] == before


def test_issue_refuses_another_organizations_directory(world: World) -> None:
    with pytest.raises(PkiError):
        issue_node_credentials(world.ca, world.nakano.directory, SHINJUKU, "新宿区", "chukan")


def test_rotation_publishes_new_and_retiring_keys(tmp_path: Path, world: World) -> None:
    creds = issue_node_credentials(world.ca, tmp_path / "org", SHINJUKU, "新宿区", "chukan")
    old_sig = json.loads(creds.sig_key.read_text())
    assert rotate_node_keys(creds.directory, SHINJUKU, "chukan") == (f"{SHINJUKU}:chukan:sig:2", f"{SHINJUKU}:chukan:enc:2")
    assert json.loads((creds.directory / "sig.1.jwk").read_text()) == old_sig
    for name in ("sig.jwk", "enc.jwk", "sig.1.jwk", "enc.1.jwk"):
        assert _mode(creds.directory / name) == 0o600
    keys = {k["kid"]: k for k in json.loads(creds.public.read_text())["keys"]}
    assert set(keys) == {f"{SHINJUKU}:chukan:{u}:{n}" for u in ("sig", "enc") for n in (1, 2)}
    assert keys[f"{SHINJUKU}:chukan:sig:1"]["status"] == "retiring"
    assert "status" not in keys[f"{SHINJUKU}:chukan:sig:2"]
    # re-running issue must not drop the retiring keys from public.json
    issue_node_credentials(world.ca, creds.directory, SHINJUKU, "新宿区", "chukan")
    assert len(json.loads(creds.public.read_text())["keys"]) == 4
    # a second rotation keeps only the previous generation
    rotate_node_keys(creds.directory, SHINJUKU, "chukan")
    kids = {k["kid"] for k in json.loads(creds.public.read_text())["keys"]}
    assert kids == {f"{SHINJUKU}:chukan:{u}:{n}" for u in ("sig", "enc") for n in (2, 3)}
    with pytest.raises(PkiError):
        rotate_node_keys(creds.directory, NAKANO, "chukan")
    with pytest.raises(PkiError):
        rotate_node_keys(creds.directory, SHINJUKU, "atena")


def test_every_node_has_its_own_certificate_and_keys(tmp_path: Path, world: World) -> None:
    """atena and chukan of one organization: different TLS keys, different JOSE keys,
    certificates that name the organization and the node kind; rotation of one node
    leaves the other alone."""
    atena = issue_node_credentials(world.ca, tmp_path / "atena", SHINJUKU, "新宿区", "atena")
    chukan = issue_node_credentials(world.ca, tmp_path / "chukan", SHINJUKU, "新宿区", "chukan")
    assert atena.tls_key.read_bytes() != chukan.tls_key.read_bytes()
    for creds, node in ((atena, "atena"), (chukan, "chukan")):
        pem = creds.tls_cert.read_bytes()
        assert (org_code_of_certificate(pem), node_of_certificate(pem)) == (SHINJUKU, node)
        doc = json.loads(creds.public.read_text())
        assert doc["node"] == node
        assert {k["kid"] for k in doc["keys"]} == {f"{SHINJUKU}:{node}:sig:1", f"{SHINJUKU}:{node}:enc:1"}
    before = chukan.sig_key.read_bytes()
    rotate_node_keys(atena.directory, SHINJUKU, "atena")
    assert chukan.sig_key.read_bytes() == before
    # A node's directory is never re-issued as another node of the same organization.
    with pytest.raises(PkiError):
        issue_node_credentials(world.ca, atena.directory, SHINJUKU, "新宿区", "chukan")
    with pytest.raises(PkiError):
        issue_node_credentials(world.ca, tmp_path / "x", SHINJUKU, "新宿区", "gateway")


def test_a_public_document_cannot_speak_for_another_node(world: World) -> None:
    doc = json.loads(world.shinjuku.public.read_text())
    doc["node"] = "atena"  # chukan's keys presented as atena's
    with pytest.raises(EnvelopeError):
        public_keys_from_document(doc)
    old_style = {"org_code": SHINJUKU, "keys": [{**doc["keys"][0], "kid": f"{SHINJUKU}:sig:1"}]}
    with pytest.raises(EnvelopeError):
        public_keys_from_document(old_style)


# --- mutual TLS ---------------------------------------------------------------------


@dataclass
class Outcome:
    server_error: BaseException | None = None
    client_error: BaseException | None = None
    peer_org: str | None = None
    reply: bytes = b""


def _handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str = "127.0.0.1"
) -> Outcome:
    """One TLS connection on 127.0.0.1: client sends ping, server answers pong."""
    out = Outcome()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    port = listener.getsockname()[1]

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(5)
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                der = tls.getpeercert(binary_form=True)
                assert der is not None
                out.peer_org = org_code_of_certificate(der)
                if tls.recv(4) == b"ping":
                    tls.sendall(b"pong")
        except BaseException as err:  # recorded for the assertions of the main thread
            out.server_error = err

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
                tls.sendall(b"ping")
                out.reply = tls.recv(4)
    except (OSError, ssl.SSLError) as err:
        out.client_error = err
    finally:
        thread.join(10)
        listener.close()
    return out


def _server(creds: NodeCredentials, ca: Path) -> ssl.SSLContext:
    return server_ssl_context(creds.tls_cert, creds.tls_key, ca / "ca.crt")


def _client(creds: NodeCredentials, ca: Path) -> ssl.SSLContext:
    return client_ssl_context(creds.tls_cert, creds.tls_key, ca / "ca.crt")


def test_contexts_are_strict(world: World) -> None:
    server = _server(world.shinjuku, world.ca)
    client = _client(world.nakano, world.ca)
    assert server.verify_mode == ssl.CERT_REQUIRED
    assert client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname
    assert server.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert client.minimum_version >= ssl.TLSVersion.TLSv1_2
    # only our CA, no system roots
    assert len(client.get_ca_certs()) == 1 and len(server.get_ca_certs()) == 1


def test_mutual_tls_between_two_organizations(world: World) -> None:
    out = _handshake(_server(world.shinjuku, world.ca), _client(world.nakano, world.ca))
    assert out.server_error is None and out.client_error is None
    assert out.reply == b"pong"
    assert out.peer_org == NAKANO


def test_client_certificate_from_another_ca_is_refused(world: World) -> None:
    # The rogue client trusts our CA (so it accepts the server) but its own cert is foreign.
    rogue = client_ssl_context(world.rogue.tls_cert, world.rogue.tls_key, world.ca / "ca.crt")
    out = _handshake(_server(world.shinjuku, world.ca), rogue)
    assert isinstance(out.server_error, ssl.SSLCertVerificationError)
    assert out.reply != b"pong" and out.peer_org is None


def test_client_without_certificate_is_refused(world: World) -> None:
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.load_verify_locations(cafile=str(world.ca / "ca.crt"))
    out = _handshake(_server(world.shinjuku, world.ca), anonymous)
    assert isinstance(out.server_error, ssl.SSLError)
    assert "CERTIFICATE" in str(out.server_error).upper()
    assert out.reply != b"pong" and out.peer_org is None


def test_client_refuses_server_from_another_ca(world: World) -> None:
    out = _handshake(_server(world.rogue, world.other_ca), _client(world.shinjuku, world.ca))
    assert isinstance(out.client_error, ssl.SSLCertVerificationError)
    assert out.reply != b"pong"


def test_client_checks_the_hostname(world: World) -> None:
    out = _handshake(
        _server(world.shinjuku, world.ca),
        _client(world.nakano, world.ca),
        server_hostname="atena.example.jp",
    )
    assert isinstance(out.client_error, ssl.SSLCertVerificationError)
    assert out.reply != b"pong"


# --- cipher suites ------------------------------------------------------------------


def _tls12_client(world: World, cipher: str) -> ssl.SSLContext:
    """A client that offers TLS 1.2 with one suite only (a peer stuck on old settings)."""
    ctx = _client(world.nakano, world.ca)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(cipher)
    return ctx


@pytest.mark.parametrize("cipher", ["ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA384"])
def test_tls_1_2_refuses_cbc_suites(world: World, cipher: str) -> None:
    out = _handshake(_server(world.shinjuku, world.ca), _tls12_client(world, cipher))
    assert isinstance(out.server_error, ssl.SSLError) and isinstance(out.client_error, ssl.SSLError)
    assert out.reply != b"pong"


@pytest.mark.parametrize("cipher", ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"])
def test_tls_1_2_with_ecdhe_and_aead_works(world: World, cipher: str) -> None:
    out = _handshake(_server(world.shinjuku, world.ca), _tls12_client(world, cipher))
    assert out.server_error is None and out.client_error is None and out.reply == b"pong"


def test_every_context_offers_only_ecdhe_with_aead_below_tls_1_3(world: World) -> None:
    contexts = [
        _server(world.shinjuku, world.ca),
        _client(world.nakano, world.ca),
        server_ssl_context(world.shinjuku.tls_cert, world.shinjuku.tls_key, None),
    ]
    for ctx in contexts:
        tls12 = [c for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
        assert tls12 and all(c["kea"] == "kx-ecdhe" and c["aead"] for c in tls12), tls12
        # TLS 1.3 suites (all AEAD) stay as OpenSSL offers them.
        assert {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.3"}


def test_a_server_context_without_a_ca_asks_for_no_certificate(world: World) -> None:
    ctx = server_ssl_context(world.shinjuku.tls_cert, world.shinjuku.tls_key, None)
    assert ctx.verify_mode == ssl.CERT_NONE and ctx.get_ca_certs() == []
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
