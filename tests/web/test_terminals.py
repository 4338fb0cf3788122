"""Designated terminals: the staff listener admits only certificates of the organization's
terminal CA, at the TLS handshake (real TLS, uvicorn on loopback)."""

from __future__ import annotations

import dataclasses
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from starlette.testclient import TestClient
from typer.testing import CliRunner

from renkei.atena.app import MIGRATIONS, create_app
from renkei.atena.models import Base
from renkei.cli import app as cli
from renkei.core.config import ConfigError, StaffConfig, load_config
from renkei.core.crypto import pki
from renkei.core.db import make_engine, migrate
from renkei.core.wire.serving import ListenerServer
from renkei.federation import setup
from renkei.federation.topology import NAKANO, SHINJUKU, Layout
from renkei.web.atena import create_staff_app
from renkei.web.listener import staff_listener, staff_ssl_context
from renkei.web.pages import TERMINAL_WARNING
from tests.api.fed import Federation
from tests.atena.kit import CHEAP_POLICY


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- pki -----------------------------------------------------------------------------------


def test_terminal_certificates_are_client_only_and_name_the_organization(tmp_path: Path) -> None:
    ca_cert, _ = pki.create_terminal_ca(tmp_path / "ca", SHINJUKU.org_code)
    creds = pki.issue_terminal_certificate(tmp_path / "ca", tmp_path / "t1", SHINJUKU.org_code, "窓口端末01")
    cert = x509.load_pem_x509_certificate(creds.cert.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "窓口端末01"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == SHINJUKU.org_code
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    for private in (creds.key, creds.p12, creds.p12_password):
        assert private.stat().st_mode & 0o077 == 0
    from cryptography.hazmat.primitives.serialization import pkcs12

    bundle = pkcs12.load_pkcs12(creds.p12.read_bytes(), creds.p12_password.read_text().strip().encode())
    assert bundle.cert is not None and bundle.cert.certificate == cert


def test_terminal_ca_refuses_another_organization_and_never_overwrites(tmp_path: Path) -> None:
    pki.create_terminal_ca(tmp_path / "ca", SHINJUKU.org_code)
    assert pki.create_terminal_ca(tmp_path / "ca", SHINJUKU.org_code)  # idempotent
    with pytest.raises(pki.PkiError, match="別のCA"):
        pki.create_terminal_ca(tmp_path / "ca", NAKANO.org_code)
    with pytest.raises(pki.PkiError, match="端末CAではありません"):
        pki.issue_terminal_certificate(tmp_path / "ca", tmp_path / "t", NAKANO.org_code, "端末")
    with pytest.raises(pki.PkiError, match="16桁"):
        pki.create_terminal_ca(tmp_path / "x", "1234")
    pki.issue_terminal_certificate(tmp_path / "ca", tmp_path / "t", SHINJUKU.org_code, "端末")
    with pytest.raises(pki.PkiError, match="既にあります"):
        pki.issue_terminal_certificate(tmp_path / "ca", tmp_path / "t", SHINJUKU.org_code, "端末")
    with pytest.raises(pki.PkiError, match="端末名"):
        pki.issue_terminal_certificate(tmp_path / "ca", tmp_path / "u", SHINJUKU.org_code, "")


def test_cli_issues_a_terminal_certificate(tmp_path: Path) -> None:
    args = ["pki", "terminal", "--data-dir", str(tmp_path / "atena"), "--org", SHINJUKU.org_code]
    result = CliRunner().invoke(cli, [*args, "--name", "窓口端末01", "--out", str(tmp_path / "t1")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "atena" / "terminal-ca" / "ca.crt").exists() and (tmp_path / "t1" / "terminal.p12").exists()
    again = CliRunner().invoke(cli, [*args, "--name", "窓口端末01", "--out", str(tmp_path / "t1")])
    assert again.exit_code == 2 and "既にあります" in again.output


# --- config --------------------------------------------------------------------------------


def test_staff_section_requires_terminal_certificates_by_default(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "var", 21000)
    setup.init_pki(layout, [SHINJUKU])
    setup.write_configs(layout)
    path = layout.config_path(SHINJUKU, "atena")
    demo = load_config(path, environ={})
    assert demo.staff is not None and demo.staff.require_terminal_cert is False  # the demo says so
    assert demo.staff.port == layout.port(SHINJUKU, "atena") + 5
    on = load_config(path, environ={"RENKEI_STAFF_REQUIRE_TERMINAL_CERT": "true"})
    assert on.staff is not None and on.staff.require_terminal_cert is True
    assert on.staff.terminal_ca == setup.terminal_ca_dir(layout, SHINJUKU) / "ca.crt"

    text = path.read_text(encoding="utf-8")
    start = text.index("[staff]")
    bare = text[:start] + "[staff]\nport = 9999\n"
    path.write_text(bare, encoding="utf-8")
    with pytest.raises(ConfigError, match="terminal_ca"):
        load_config(path, environ={})  # production default: true, so the CA must be named
    path.write_text(bare + 'require_terminal_cert = "maybe"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="true または false"):
        load_config(path, environ={})


# --- the listener over real TLS --------------------------------------------------------------


@pytest.fixture(scope="module")
def listener(fed: Federation, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path | int]]:
    root = tmp_path_factory.mktemp("terminals")
    ours = root / "shinjuku-ca"
    pki.create_terminal_ca(ours, SHINJUKU.org_code)
    good = pki.issue_terminal_certificate(ours, root / "good", SHINJUKU.org_code, "窓口端末01")
    pki.create_terminal_ca(root / "nakano-ca", NAKANO.org_code)
    foreign = pki.issue_terminal_certificate(root / "nakano-ca", root / "foreign", NAKANO.org_code, "中野の端末")

    cfg = fed.config(SHINJUKU, "atena")
    port = _free_port()
    staff = StaffConfig(port=port, require_terminal_cert=True, terminal_ca=ours / "ca.crt")
    cfg = dataclasses.replace(cfg, staff=staff)
    engine = make_engine(f"sqlite:///{root / 'atena.db'}")
    migrate(engine, MIGRATIONS, Base.metadata)
    atena = create_app(cfg, engine=engine, auth_policy=CHEAP_POLICY)
    ui = create_staff_app(atena, terminal_check=True)
    server = ListenerServer(staff_listener(ui, cfg, staff))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "staff listener did not start"
        time.sleep(0.05)
    creds = fed.layout.creds_dir(SHINJUKU, "atena")
    yield {
        "port": port,
        "ca": fed.layout.ca_cert,
        "good_cert": good.cert,
        "good_key": good.key,
        "foreign_cert": foreign.cert,
        "foreign_key": foreign.key,
        "node_cert": creds / "tls.crt",
        "node_key": creds / "tls.key",
    }
    server.should_exit = True
    thread.join(timeout=10)
    engine.dispose()


def _client(info: dict[str, Path | int], cert: str | None) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(info["ca"]))
    if cert is not None:
        ctx.load_cert_chain(str(info[f"{cert}_cert"]), str(info[f"{cert}_key"]))
    return httpx.Client(verify=ctx, timeout=5.0)


@pytest.mark.parametrize("cert", [None, "foreign", "node"])
def test_without_our_terminal_certificate_the_handshake_is_refused(listener: dict[str, Path | int], cert: str | None) -> None:
    """No certificate, another organization's terminal, or a node's federation certificate."""
    with _client(listener, cert) as client, pytest.raises((httpx.TransportError, ssl.SSLError)):
        client.get(f"https://127.0.0.1:{listener['port']}/login")


def test_our_terminal_certificate_opens_the_sign_in_page_without_the_warning(listener: dict[str, Path | int]) -> None:
    with _client(listener, "good") as client:
        resp = client.get(f"https://127.0.0.1:{listener['port']}/login")
    assert resp.status_code == 200 and "職員ログイン" in resp.text
    assert TERMINAL_WARNING not in resp.text
    assert resp.headers["content-security-policy"].startswith("default-src 'self'")


def test_a_required_check_without_a_ca_file_does_not_start(fed: Federation, tmp_path: Path) -> None:
    cfg = fed.config(SHINJUKU, "atena")
    staff = StaffConfig(port=1, require_terminal_cert=True, terminal_ca=tmp_path / "missing.crt")
    with pytest.raises(ConfigError, match="terminal_ca"):
        staff_ssl_context(cfg, staff)
    off = staff_ssl_context(cfg, dataclasses.replace(staff, require_terminal_cert=False))
    assert off.verify_mode == ssl.CERT_NONE and off.get_ca_certs() == []


def test_the_ui_and_the_api_answer_on_their_own_listeners_only(fed: Federation, tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    migrate(engine, MIGRATIONS, Base.metadata)
    atena = create_app(fed.config(SHINJUKU, "atena"), engine=engine, auth_policy=CHEAP_POLICY)
    ui = create_staff_app(atena, terminal_check=True)
    with TestClient(ui, base_url="https://testserver") as staff_port:
        assert staff_port.get("/login").status_code == 200
        for path in ("/v1/session", "/healthz", "/openapi.json", "/docs"):
            assert staff_port.get(path).status_code == 404, path
    with TestClient(atena, base_url="https://testserver") as peer_port:
        assert peer_port.get("/healthz").status_code == 200
        for path in ("/login", "/atena/search", "/static/htmx.min.js"):
            assert peer_port.get(path).status_code == 404, path
    engine.dispose()
