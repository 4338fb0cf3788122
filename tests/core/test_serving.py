"""The listener protocol's limits in-process, over real TLS on loopback, with a tiny app:
the cases between the abuses of tests/e2e/test_listener_limits.py — keep-alive, pipelining,
an app that answers before reading the body, a head just within the limit, a large body at
full speed, bytes that are not HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from renkei.core.config import ServerLimits
from renkei.core.crypto import pki
from renkei.core.wire.serving import LINGER_SECONDS, ListenerConfig, ListenerServer

LIMITS = ServerLimits(
    max_header_bytes=4096,
    max_header_fields=20,
    header_timeout=0.6,
    body_timeout=0.6,
    handshake_timeout=0.6,
    keep_alive_timeout=5,
    max_connections=8,
)


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/early`` answers 403 without reading the body; ``/slow`` reads it only after a while
    longer than the body timeout; anything else echoes the body's size."""
    assert scope["type"] == "http"
    if scope["path"] == "/slow":
        await asyncio.sleep(LIMITS.body_timeout * 2)
    body = b""
    if scope["path"] != "/early":
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
    status = 403 if scope["path"] == "/early" else 200
    text = str(len(body)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(text)).encode())]})
    await send({"type": "http.response.body", "body": text})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, ssl.SSLContext]]:
    root = tmp_path_factory.mktemp("serving")
    pki.create_ca(root / "ca")
    creds = pki.issue_node_credentials(root / "ca", root / "org", "1310410000000000", "新宿区", "atena")
    ca = root / "ca" / pki.CA_CERT
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    tls = pki.server_ssl_context(creds.tls_cert, creds.tls_key, ca)
    listener = ListenerServer(ListenerConfig(_app, host="127.0.0.1", port=port, tls=tls, limits=LIMITS, lifespan="off"))
    thread = threading.Thread(target=listener.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not listener.started:
        assert time.monotonic() < deadline and thread.is_alive(), "listener did not start"
        time.sleep(0.05)
    yield port, pki.client_ssl_context(creds.tls_cert, creds.tls_key, ca)
    listener.should_exit = True
    thread.join(timeout=10)


def _connect(server: tuple[int, ssl.SSLContext]) -> ssl.SSLSocket:
    port, ctx = server
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="127.0.0.1")


class Reader:
    """HTTP/1.1 answers read off one connection (Content-Length framed)."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionError, ssl.SSLError):
            chunk = b""
        self.buffer += chunk
        return bool(chunk)

    def answer(self, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes] | None:
        """The next answer, or None when the server closes first."""
        self.sock.settimeout(timeout)
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                return None
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            if not self._fill():
                return None
            rest = self.buffer.partition(b"\r\n\r\n")[2]
        self.buffer = rest[length:]
        return int(lines[0].split()[1]), headers, rest[:length]

    def closed(self, timeout: float) -> bool:
        """True when the server closes within ``timeout`` seconds without sending anything."""
        self.sock.settimeout(timeout)
        try:
            return not self._fill()
        except TimeoutError:
            return False


def _get(path: str = "/", *extra: bytes) -> bytes:
    return b"\r\n".join([b"GET " + path.encode() + b" HTTP/1.1", b"Host: x", *extra]) + b"\r\n\r\n"


def test_requests_within_the_limits_are_served_and_kept_alive(server: tuple[int, ssl.SSLContext]) -> None:
    with _connect(server) as sock:
        reader = Reader(sock)
        # A head just within the byte limit, the most fields allowed, a 2 MB body at full speed.
        pad = b"X-Pad: " + b"p" * (4096 - 200)
        sock.sendall(_get("/", pad))
        answer = reader.answer()
        assert answer is not None and answer[0] == 200
        fields = [b"X-%d: 1" % i for i in range(19)]
        sock.sendall(_get("/", *fields))
        answer = reader.answer()
        assert answer is not None and answer[0] == 200
        body = b"b" * (2 * 1024 * 1024)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        answer = reader.answer()
        assert answer is not None and answer[0] == 200 and answer[2] == str(len(body)).encode()
        # Idle between requests longer than the header timeout: the keep-alive timeout rules.
        time.sleep(LIMITS.header_timeout * 2)
        sock.sendall(_get())
        answer = reader.answer()
        assert answer is not None and answer[0] == 200


def test_pipelined_requests_are_all_answered(server: tuple[int, ssl.SSLContext]) -> None:
    with _connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(_get() + b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" + _get())
        answers = [reader.answer() for _ in range(3)]
    assert [a[0] if a else None for a in answers] == [200, 200, 200]
    assert [a[2] if a else None for a in answers] == [b"0", b"3", b"0"]


def test_a_further_request_trickled_on_a_kept_alive_connection_gets_408(server: tuple[int, ssl.SSLContext]) -> None:
    with _connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(_get())
        assert reader.answer() is not None
        started = time.monotonic()
        sock.sendall(b"GET / HT")  # the header timer runs from this first byte
        answer = reader.answer()
    assert answer is not None and answer[0] == 408 and json.loads(answer[2])["code"] == "header_timeout"
    assert LIMITS.header_timeout - 0.1 <= time.monotonic() - started < 3


def test_empty_lines_between_requests_do_not_keep_a_connection(server: tuple[int, ssl.SSLContext]) -> None:
    with _connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(_get())
        assert reader.answer() is not None
        started = time.monotonic()
        while time.monotonic() - started < 8:
            try:
                sock.sendall(b"\r\n")
            except (ConnectionError, ssl.SSLError):
                break
            if reader.closed(0.1):
                break
        # The header timer ran from the first empty line; the 408 is followed by the close.
        assert time.monotonic() - started < LIMITS.header_timeout + LINGER_SECONDS + 1.5
        assert reader.buffer.startswith(b"HTTP/1.1 408 ")


def test_a_body_trickled_after_the_app_answered_is_cut_without_a_second_answer(
    server: tuple[int, ssl.SSLContext],
) -> None:
    with _connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
        answer = reader.answer()
        assert answer is not None and answer[0] == 403
        started = time.monotonic()
        while time.monotonic() - started < 4:
            try:
                sock.sendall(b"c")
            except (ConnectionError, ssl.SSLError):
                break
            if reader.closed(0.1):
                break
        assert time.monotonic() - started < LIMITS.body_timeout + 1.5
        assert reader.buffer == b""  # no 408 after the 403: it would read as the next answer


def test_bytes_that_are_not_http_get_400_in_problem_json(server: tuple[int, ssl.SSLContext]) -> None:
    with _connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(b"\x16\x03\x01 hello\r\n\r\n")
        answer = reader.answer()
    assert answer is not None and answer[0] == 400
    assert answer[1]["content-type"] == "application/problem+json" and answer[1]["connection"] == "close"
    assert json.loads(answer[2])["code"] == "invalid_http_request"


def test_the_cap_counts_open_connections_and_frees_them_on_close(server: tuple[int, ssl.SSLContext]) -> None:
    held = [_connect(server) for _ in range(LIMITS.max_connections)]
    try:
        for sock in held:
            sock.sendall(_get())
            assert Reader(sock).answer() is not None
        with _connect(server) as extra:
            extra.sendall(_get())
            assert Reader(extra).answer() is None
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    with _connect(server) as sock:
        sock.sendall(_get())
        answer = Reader(sock).answer()
    assert answer is not None and answer[0] == 200


def test_the_body_timer_does_not_count_the_servers_own_delay(server: tuple[int, ssl.SSLContext]) -> None:
    """The app takes its time before reading: a body held back by flow control, or by a client
    waiting for "100 Continue", is not late."""
    with _connect(server) as sock:
        reader = Reader(sock)
        body = b"b" * (1024 * 1024)  # far above uvicorn's 64 KiB read buffer: reading pauses
        sock.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        answer = reader.answer()
        assert answer is not None and answer[:1] == (200,) and answer[2] == str(len(body)).encode()
    with _connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        answer = reader.answer()
        assert answer is not None and answer[0] == 100
        sock.sendall(b"hello")
        answer = reader.answer()
        assert answer is not None and answer[0] == 200 and answer[2] == b"5"


def test_a_node_believes_no_forwarded_for_header() -> None:
    """No proxy sits in front of a node: X-Forwarded-For must not change who the client is."""
    from renkei.core.config import ServerLimits
    from renkei.core.wire.serving import ListenerConfig

    cfg = ListenerConfig(object(), host="127.0.0.1", port=1, tls=ssl.create_default_context(), limits=ServerLimits())
    assert cfg.proxy_headers is False
