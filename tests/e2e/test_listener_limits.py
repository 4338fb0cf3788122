"""A real `renkei serve atena` process under abuse: both of its listeners (the peers' mutual-TLS
listener and the staff UI) take their limits from the node's ``[server]`` section.

Each abuse is sent over real TLS — an 8 MB header, 100,000 header fields, headers or a body
trickled byte by byte, silence after (or instead of) the TLS handshake, more connections than
the cap, a TLS 1.2 CBC cipher suite — and is refused or closed, while a normal request keeps
getting its 200. Small limits keep it quick. Also: `renkei serve` and `renkei demo --serve`
stop cleanly on SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from renkei.core.crypto import pki
from renkei.federation import setup
from renkei.federation.process import Federation
from renkei.federation.topology import HUB, ORGS, SHINJUKU, TSA, Layout
from tests.api.fed import has_japanese

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
HANDSHAKE_TIMEOUT = 2.0
MAX_CONNECTIONS = 4
LIMITS = f"""
[server]
max_header_bytes = 8192
max_header_fields = 40
header_timeout = {HEADER_TIMEOUT}
body_timeout = {BODY_TIMEOUT}
handshake_timeout = {HANDSHAKE_TIMEOUT}
keep_alive_timeout = 30
max_connections = {MAX_CONNECTIONS}
"""
# A timeout fires after its limit, never much later: generous for a busy test machine.
LATE = 6.0


def _free_base_port() -> int:
    for _ in range(50):
        base = random.randrange(20000, 40000, 100)
        try:
            for offset in range(0, 60):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")


@dataclass
class Listener:
    name: str
    host: str
    port: int
    context: ssl.SSLContext
    ok_path: str  # answers 200 to a GET
    post_path: str  # reads its body before answering
    post_type: str

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"


@dataclass
class Node:
    layout: Layout
    pid: int
    listeners: dict[str, Listener]


def _wait_for(url: str, context: ssl.SSLContext, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(verify=context, timeout=2.0) as client:
        while True:
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{url} does not answer"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    var = tmp_path_factory.mktemp("listener-limits")
    layout = Layout(var, _free_base_port())
    setup.init_pki(layout, [HUB, TSA, SHINJUKU])
    setup.write_configs(layout)
    config = layout.config_path(SHINJUKU, "atena")
    config.write_text(config.read_text(encoding="utf-8") + LIMITS, encoding="utf-8")
    creds = layout.creds_dir(SHINJUKU, "atena")
    peer_ctx = pki.client_ssl_context(creds / "tls.crt", creds / "tls.key", layout.ca_cert)
    # The demo's staff listener asks for no terminal certificate (require_terminal_cert = false).
    staff_ctx = ssl.create_default_context(cafile=str(layout.ca_cert))
    staff_port = setup.staff_port(layout, SHINJUKU)
    listeners = {
        "peer": Listener("peer", "127.0.0.1", layout.port(SHINJUKU, "atena"), peer_ctx, "/healthz", "/v1/residents", "application/json"),
        "staff": Listener("staff", "127.0.0.1", staff_port, staff_ctx, "/login", "/login",
                          "application/x-www-form-urlencoded"),
    }
    fed = Federation()
    try:
        proc = fed.start("新宿区/atena", "atena", config, layout.url(SHINJUKU, "atena"))
        fed.wait_healthy(layout.ca_cert, creds / "tls.crt", creds / "tls.key")
        _wait_for(listeners["staff"].url + "/login", staff_ctx)
        assert proc.popen is not None
        yield Node(layout, proc.popen.pid, listeners)
    finally:
        fed.stop()


@pytest.fixture(params=["peer", "staff"])
def listener(request: pytest.FixtureRequest, node: Node) -> Listener:
    listener: Listener = node.listeners[request.param]
    return listener


# --- raw TLS helpers ---------------------------------------------------------------------------


def _connect(listener: Listener, timeout: float = 10.0) -> ssl.SSLSocket:
    raw = socket.create_connection((listener.host, listener.port), timeout=timeout)
    return listener.context.wrap_socket(raw, server_hostname=listener.host)


@dataclass
class Answer:
    status: int | None  # None: closed without an answer
    headers: dict[str, str]
    body: bytes
    closed_after: float  # seconds until the answer or the close


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    length = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    return bool(length) and len(body) >= int(length[0].split(b":")[1])


def _read_answer(sock: ssl.SSLSocket, started: float, timeout: float = 10.0, data: bytes = b"") -> Answer:
    """The server's answer on ``sock`` (``data``: what was read of it already), or None when it
    closes without one."""
    sock.settimeout(timeout)
    try:
        while not _complete(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionError, ssl.SSLError):
        pass
    elapsed = time.monotonic() - started
    if not data:
        return Answer(None, {}, b"", elapsed)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return Answer(int(lines[0].split()[1]), headers, body, elapsed)


def _send(sock: ssl.SSLSocket, data: bytes) -> bool:
    """Send all of ``data``; False when the server closed the connection first."""
    try:
        view = memoryview(data)
        for start in range(0, len(data), 256 * 1024):
            sock.sendall(view[start : start + 256 * 1024])
    except (ConnectionError, ssl.SSLError, OSError):
        return False
    return True


def _poll(sock: ssl.SSLSocket, wait: float) -> bytes | None:
    """What the server sent within ``wait`` seconds: None if nothing (still open), b"" if it closed."""
    sock.settimeout(wait)
    try:
        return sock.recv(65536)
    except TimeoutError:  # TLS 1.3 session tickets make the socket readable without data
        return None
    except (ConnectionError, ssl.SSLError):
        return b""


def _problem(answer: Answer, status: int, code: str) -> None:
    """A refusal in problem+json with the stable code and a Japanese title, then the close."""
    assert answer.status == status, answer
    assert answer.headers.get("content-type", "").startswith("application/problem+json"), answer
    assert answer.headers.get("connection") == "close", answer
    body = json.loads(answer.body)
    assert body["code"] == code and body["status"] == status, body
    assert has_japanese(body["title"]), body


def _still_serves(listener: Listener) -> None:
    with httpx.Client(verify=listener.context, timeout=10.0) as client:
        assert client.get(listener.url + listener.ok_path).status_code == 200


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _head(listener: Listener, *extra: bytes, method: bytes = b"GET", path: str | None = None) -> bytes:
    target = (path or listener.ok_path).encode()
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: " + listener.host.encode(), *extra]
    return b"\r\n".join(lines) + b"\r\n"


# --- header size and count ---------------------------------------------------------------------


def test_an_8_mb_header_gets_431_and_memory_stays_flat(node: Node, listener: Listener) -> None:
    _still_serves(listener)
    before = _rss_kib(node.pid)
    for _ in range(3):
        with _connect(listener) as sock:
            started = time.monotonic()
            _send(sock, _head(listener, b"X-Big: " + b"a" * (8 * 1024 * 1024)) + b"\r\n")
            _problem(_read_answer(sock, started), 431, "headers_too_large")
    _still_serves(listener)
    # The server never held the header: three 8 MB headers leave the process about as big.
    assert _rss_kib(node.pid) - before < 16 * 1024, (before, _rss_kib(node.pid))


def test_100000_header_fields_get_431(node: Node, listener: Listener) -> None:
    before = _rss_kib(node.pid)
    fields = [b"X-F%d: v" % i for i in range(100_000)]
    with _connect(listener) as sock:
        started = time.monotonic()
        _send(sock, _head(listener, *fields) + b"\r\n")
        answer = _read_answer(sock, started)
    assert answer.status == 431, answer
    _still_serves(listener)
    assert _rss_kib(node.pid) - before < 16 * 1024


def test_more_fields_than_allowed_get_431_even_when_small(listener: Listener) -> None:
    """41 tiny fields are far below the byte limit but above the count."""
    with _connect(listener) as sock:
        started = time.monotonic()
        _send(sock, _head(listener, *[b"X-%d: 1" % i for i in range(41)]) + b"\r\n")
        _problem(_read_answer(sock, started), 431, "too_many_headers")
    with _connect(listener) as sock:  # 38 + Host is within the count
        started = time.monotonic()
        _send(sock, _head(listener, *[b"X-%d: 1" % i for i in range(38)], b"Connection: close") + b"\r\n")
        assert _read_answer(sock, started).status == 200


def test_a_head_just_over_the_byte_limit_in_one_piece_gets_431(listener: Listener) -> None:
    """The whole head arrives at once (no trickle): the parsed size is checked as well."""
    with _connect(listener) as sock:
        started = time.monotonic()
        _send(sock, _head(listener, b"X-Pad: " + b"p" * 8200) + b"\r\n")
        _problem(_read_answer(sock, started), 431, "headers_too_large")


# --- slow clients --------------------------------------------------------------------------------


def test_trickled_headers_are_cut_off_after_the_header_timeout(listener: Listener) -> None:
    with _connect(listener) as sock:
        started = time.monotonic()
        closed = False
        for byte in _head(listener, b"X-Slow: " + b"s" * 100):
            if not _send(sock, bytes([byte])) or _poll(sock, 0.25) is not None:
                closed = True
                break
            assert time.monotonic() - started < LATE, "still open"
        elapsed = time.monotonic() - started
    assert closed and HEADER_TIMEOUT - 0.2 <= elapsed < LATE, elapsed
    _still_serves(listener)


def test_the_trickler_gets_408_in_problem_json(listener: Listener) -> None:
    with _connect(listener) as sock:
        started = time.monotonic()
        assert _send(sock, _head(listener)[:10])
        answer = _read_answer(sock, started)
    _problem(answer, 408, "header_timeout")
    assert HEADER_TIMEOUT - 0.2 <= answer.closed_after < LATE, answer


def test_silence_after_the_tls_handshake_is_closed(listener: Listener) -> None:
    with _connect(listener) as sock:
        started = time.monotonic()
        answer = _read_answer(sock, started)
    # Nothing was asked, so nothing is answered: the connection is just closed.
    assert answer.status is None and HEADER_TIMEOUT - 0.2 <= answer.closed_after < LATE, answer
    _still_serves(listener)


def test_no_tls_handshake_at_all_is_closed(listener: Listener) -> None:
    with socket.create_connection((listener.host, listener.port), timeout=LATE + 4) as raw:
        started = time.monotonic()
        try:
            data = raw.recv(1)
        except ConnectionError:
            data = b""
        elapsed = time.monotonic() - started
    assert data == b"" and HANDSHAKE_TIMEOUT - 0.2 <= elapsed < LATE, elapsed


def test_a_trickled_body_gets_408_after_the_body_timeout(listener: Listener) -> None:
    head = _head(listener, b"Content-Type: " + listener.post_type.encode(), b"Content-Length: 1000",
                 method=b"POST", path=listener.post_path) + b"\r\n"
    with _connect(listener) as sock:
        assert _send(sock, head)
        started = time.monotonic()
        got: bytes | None = None
        while time.monotonic() - started < LATE:
            if not _send(sock, b"a"):
                break
            got = _poll(sock, 0.25)
            if got is not None:
                break
        answer = _read_answer(sock, started, data=got or b"")
    assert BODY_TIMEOUT - 0.2 <= answer.closed_after < LATE, answer
    _problem(answer, 408, "body_timeout")
    _still_serves(listener)


# --- the connection cap --------------------------------------------------------------------------


def test_connections_beyond_the_cap_are_closed_at_once(listener: Listener) -> None:
    with contextlib.ExitStack() as stack:
        held = []
        for _ in range(MAX_CONNECTIONS):
            sock = stack.enter_context(_connect(listener))
            assert _send(sock, _head(listener) + b"\r\n")  # keep-alive: the connection stays
            assert _read_answer_keep_alive(sock).status == 200
            held.append(sock)
        extra = stack.enter_context(_connect(listener))
        started = time.monotonic()
        _send(extra, _head(listener) + b"\r\n")
        answer = _read_answer(extra, started)
        assert answer.status is None and answer.closed_after < 2.0, answer
        # The held connections still work.
        assert _send(held[0], _head(listener) + b"\r\n")
        assert _read_answer_keep_alive(held[0]).status == 200
    time.sleep(0.5)  # the server notices the closes
    _still_serves(listener)


def _read_answer_keep_alive(sock: ssl.SSLSocket) -> Answer:
    """One answer on a connection that stays open (Content-Length framed)."""
    started = time.monotonic()
    sock.settimeout(10.0)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed"
        body += chunk
    return Answer(int(lines[0].split()[1]), headers, body, time.monotonic() - started)


# --- TLS: ECDHE with AEAD only ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("cipher", "works"),
    [
        ("ECDHE-ECDSA-AES128-GCM-SHA256", True),
        ("ECDHE-ECDSA-CHACHA20-POLY1305", True),
        ("ECDHE-ECDSA-AES128-SHA256", False),
        ("ECDHE-ECDSA-AES256-SHA384", False),
        ("ECDHE-ECDSA-AES256-SHA", False),
    ],
)
def test_tls_1_2_offers_only_ecdhe_with_aead(node: Node, listener: Listener, cipher: str, works: bool) -> None:
    creds = node.layout.creds_dir(SHINJUKU, "atena")
    ctx = pki.client_ssl_context(creds / "tls.crt", creds / "tls.key", node.layout.ca_cert)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(cipher + ":@SECLEVEL=0")
    if works:
        with ctx.wrap_socket(socket.create_connection((listener.host, listener.port), timeout=10),
                             server_hostname=listener.host) as sock:
            assert sock.version() == "TLSv1.2" and sock.cipher()[0] == cipher
    else:
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(socket.create_connection((listener.host, listener.port), timeout=10),
                            server_hostname=listener.host).close()
    # TLS 1.3 stays as it is.
    with _connect(listener) as sock:
        assert sock.version() == "TLSv1.3"


# --- SIGTERM -------------------------------------------------------------------------------------


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_exits_0_on_sigterm(node: Node, sig: signal.Signals) -> None:
    """A hub of its own: SIGTERM (a service manager's stop) ends it cleanly and promptly, as
    Ctrl-C does."""
    layout = node.layout
    creds = layout.creds_dir(HUB, "hub")
    fed = Federation()
    try:
        proc = fed.start("hub", "hub", layout.config_path(HUB, "hub"), layout.url(HUB, "hub"))
        fed.wait_healthy(layout.ca_cert, creds / "tls.crt", creds / "tls.key")
        assert proc.popen is not None
        proc.popen.send_signal(sig)
        assert proc.popen.wait(timeout=15) == 0, proc.log.read_text(encoding="utf-8")[-2000:]
        assert not _listening(layout.port(HUB, "hub"))
    finally:
        fed.stop()


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# A whole demo federation per signal (about 20 s each): SIGTERM, what a service manager
# sends, in the suite; Ctrl-C's SIGINT with the slow checks (a single node's handling of
# both is tested above).
@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_demo_serve_stops_every_node_on_sigterm(tmp_path: Path, sig: signal.Signals) -> None:
    """`renkei demo --serve` stopped as a service manager or `kill` does, or by Ctrl-C: every
    node process it started ends (they run in sessions of their own) and no port listens."""
    base = _free_base_port()
    layout = Layout(tmp_path / "var", base)
    nodes: list[int] = []
    demo = subprocess.Popen(
        [sys.executable, "-m", "renkei.cli", "demo", "--serve", "--var", str(layout.root), "--base-port", str(base)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        text=True,
        # As started from a terminal: a suite run in the background by a shell without job
        # control inherits SIGINT ignored, and Python then keeps ignoring it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        output = []
        assert demo.stdout is not None
        for line in demo.stdout:
            output.append(line)
            if "Ctrl+C" in line:
                break
        assert demo.poll() is None, "".join(output)[-3000:]
        nodes.extend(_children(demo.pid))
        ports = [layout.port(org, node) for org in ORGS for node in org.nodes]
        ports += [setup.staff_port(layout, org) for org in ORGS if "atena" in org.nodes]
        assert len(nodes) == sum(len(org.nodes) for org in ORGS), nodes
        assert all(_listening(p) for p in ports)
        demo.send_signal(sig)
        status = demo.wait(timeout=60)
        assert [pid for pid in nodes if _alive(pid)] == []
        assert [p for p in ports if _listening(p)] == []
        assert status == 0, "".join(output)[-3000:]
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for pid in nodes:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
