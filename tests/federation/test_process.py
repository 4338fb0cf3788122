"""Stopping a federation: wave by wave, each awaited before the next (members, hub, authority)."""

from __future__ import annotations

import http.server
import signal
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from renkei.core.crypto import pki
from renkei.federation.process import Federation, NodeProcess


class FakePopen:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log, self.returncode = name, log, None

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        assert sig == signal.SIGTERM
        self.log.append(f"term {self.name}")

    def wait(self, timeout: float | None = None) -> int:
        self.log.append(f"gone {self.name}")
        self.returncode = 0
        return 0


def test_the_authority_outlives_the_hub_which_outlives_the_members(tmp_path: Path) -> None:
    log: list[str] = []
    fed = Federation()
    for name, wave in (("tsa", 2), ("hub", 1), ("atena", 0), ("chukan", 0)):
        fed.processes.append(
            NodeProcess(name, tmp_path, "https://x", tmp_path, FakePopen(name, log), stop_wave=wave)  # type: ignore[arg-type]
        )
    fed.stop()
    assert log == [
        "term atena", "term chukan", "gone atena", "gone chukan",
        "term hub", "gone hub",
        "term tsa", "gone tsa",
    ]


class _Health(http.server.BaseHTTPRequestHandler):
    """/healthz: 503 for the first two probes (still starting), then 200."""

    probes: list[dict[str, object] | None] = []

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        assert isinstance(self.connection, ssl.SSLSocket)
        type(self).probes.append(self.connection.getpeercert())
        self.send_response(503 if len(type(self).probes) <= 2 else 200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _node_credentials(tmp_path: Path) -> tuple[Path, pki.NodeCredentials]:
    pki.create_ca(tmp_path / "ca")
    creds = pki.issue_node_credentials(tmp_path / "ca", tmp_path / "node", "1000000000000001", "テスト", "hub")
    return tmp_path / "ca" / pki.CA_CERT, creds


def test_wait_healthy_probes_over_mutual_tls_until_200(tmp_path: Path) -> None:
    ca, creds = _node_credentials(tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    context = pki.server_ssl_context(creds.tls_cert, creds.tls_key, ca)  # requires a client certificate
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Health.probes = []
    try:
        fed = Federation([NodeProcess("hub", tmp_path, f"https://127.0.0.1:{server.server_address[1]}", tmp_path)])
        fed.wait_healthy(ca, creds.tls_cert, creds.tls_key, timeout=20)
    finally:
        server.shutdown()
        server.server_close()
    assert len(_Health.probes) == 3
    assert all(cert and cert.get("subject") for cert in _Health.probes)  # our client certificate each time


def test_wait_healthy_gives_up_with_a_japanese_message(tmp_path: Path) -> None:
    ca, creds = _node_credentials(tmp_path)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fed = Federation([NodeProcess("hub", tmp_path, f"https://127.0.0.1:{port}", tmp_path / "server.log")])
    with pytest.raises(RuntimeError, match="hub が応答しません"):
        fed.wait_healthy(ca, creds.tls_cert, creds.tls_key, timeout=0.5)


def test_start_keeps_no_log_file_open_in_the_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node writes its log through its own descriptor; the demo's copy is closed (it
    was left to the garbage collector, one unclosed file per node process)."""
    logs: list[object] = []

    class Popen:
        def __init__(self, args: list[str], *, stdout: object, **_kwargs: object) -> None:
            assert args[-4:] == ["serve", "hub", "--config", str(tmp_path / "hub.toml")]
            logs.append(stdout)

    monkeypatch.setattr(subprocess, "Popen", Popen)
    Federation().start("hub", "hub", tmp_path / "hub.toml", "https://127.0.0.1:1")
    assert len(logs) == 1 and getattr(logs[0], "closed", False)
    assert (tmp_path / "server.log").exists()
