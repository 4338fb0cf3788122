"""The inquiry path's baseline: a chain of mutual-TLS uvicorn hops that only forward and echo.

Each hop is a process of its own, served exactly as a node is: renkei.core.wire.serving's
listener machinery (`ListenerConfig`, `serve_together`: uvicorn with httptools, uvloop, the
default ``[server]`` limits, the TLS handshake timeout) and `pki.server_ssl_context` (mutual
TLS, certificates of a private CA made for the run). The app is a minimal ASGI callable: a
request to hop i is forwarded, body and path, to hop i+1 with aiohttp (PeerClient's
connector: ``limit=100, keepalive_timeout=4``, one session per process, the hop's own client
certificate) and hop i's answer is hop i+1's; the last hop echoes the body. ``GET /healthz``
answers at once.

The four hops stand where the inquiry path's nodes stand (新宿区 atena → its chukan → hub
→ 中野区 chukan), each with its own certificate, so the two differ only in the work the
nodes do: signing, encrypting, checking, storing, auditing.

Usage::

    .venv/bin/python bench/echo_chain.py serve [--hops 4]    # keep a chain up; prints a loadgen command
    .venv/bin/python bench/echo_chain.py hop --port P --cert C --key K --ca CA [--next URL]
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from renkei.core.config import ServerLimits
from renkei.core.crypto import pki
from renkei.core.wire.serving import ListenerConfig, serve_together
from renkei.federation.process import Federation, NodeProcess, sigterm_as_interrupt

# Where each hop stands in the inquiry path: (機関コード, name, node kind). Synthetic codes
# of the demo federation (renkei/federation/topology.py).
HOPS = (
    ("1310410000000000", "新宿区", "atena"),
    ("1310410000000000", "新宿区", "chukan"),
    ("9000000000000001", "情報提供ネットワークシステム", "hub"),
    ("1311480000000000", "中野区", "chukan"),
)
# PeerClient's (renkei/core/http.py).
CONNECTOR_LIMIT = 100
KEEPALIVE_TIMEOUT = 4.0
TIMEOUT_SECONDS = 30.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class EchoHop:
    """The ASGI app of one hop: forward to ``next_url`` (if any) and answer with what came back."""

    def __init__(self, next_url: str | None, client_tls: ssl.SSLContext | None) -> None:
        self.next_url = next_url
        self.client_tls = client_tls
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["method"] == "GET" and scope["path"] == "/healthz":
            await _respond(send, 200, b"text/plain", b"ok")
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        ctype = dict(scope["headers"]).get(b"content-type", b"application/octet-stream")
        if self.next_url is None or self.session is None:
            await _respond(send, 200, ctype, body)
            return
        try:
            async with self.session.post(
                self.next_url + scope["path"], data=body, headers={"content-type": ctype.decode("latin-1")}
            ) as resp:
                answer = await resp.read()
                status = resp.status
                answer_type = resp.headers.get("content-type", "application/octet-stream").encode("latin-1")
        except (TimeoutError, aiohttp.ClientError, ssl.SSLError, OSError) as exc:
            await _respond(send, 502, b"text/plain", f"next hop unavailable: {type(exc).__name__}".encode())
            return
        await _respond(send, status, answer_type, answer)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.next_url is not None:
                    connector = aiohttp.TCPConnector(
                        ssl=self.client_tls if self.client_tls is not None else True,
                        limit=CONNECTOR_LIMIT,
                        keepalive_timeout=KEEPALIVE_TIMEOUT,
                    )
                    self.session = aiohttp.ClientSession(
                        connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
                    )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _respond(send: Send, status: int, ctype: bytes, body: bytes) -> None:
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve_hop(port: int, cert: Path, key: Path, ca: Path, next_url: str | None) -> None:
    """Serve one hop as a node's peer listener is served (`renkei.core.wire.serving.peer_listener`)."""
    app = EchoHop(next_url, pki.client_ssl_context(cert, key, ca) if next_url else None)
    listener = ListenerConfig(
        app,
        host="127.0.0.1",
        port=port,
        tls=pki.server_ssl_context(cert, key, ca),
        limits=ServerLimits(),
        lifespan="on",
    )
    serve_together(listener)


def free_ports(n: int) -> list[int]:
    """``n`` ports free on loopback now (the OS picks them; they are released for the hops)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class EchoChain:
    """``hops`` hop processes with certificates made in ``directory``; the client speaks
    to the first hop with the first hop's own certificate, as the bench speaks to atena."""

    directory: Path
    hops: int = 4
    fed: Federation = field(default_factory=Federation)
    urls: list[str] = field(default_factory=list)
    client: pki.NodeCredentials | None = None

    @property
    def ca(self) -> Path:
        return self.directory / "ca" / "ca.crt"

    @property
    def url(self) -> str:
        return self.urls[0]

    def start(self) -> EchoChain:
        pki.create_ca(self.directory / "ca")
        creds = [
            pki.issue_node_credentials(self.directory / "ca", self.directory / f"hop{i}", *HOPS[i % len(HOPS)])
            for i in range(self.hops)
        ]
        self.client = creds[0]
        self.urls = [f"https://127.0.0.1:{port}" for port in free_ports(self.hops)]
        for i, c in enumerate(creds):
            command = [
                sys.executable, str(Path(__file__).resolve()), "hop",
                "--port", self.urls[i].rsplit(":", 1)[1],
                "--cert", str(c.tls_cert), "--key", str(c.tls_key), "--ca", str(self.ca),
            ]
            if i + 1 < self.hops:
                command += ["--next", self.urls[i + 1]]
            log = c.directory / "server.log"
            with log.open("ab") as fh:
                popen = subprocess.Popen(
                    command, stdout=fh, stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
                )
            self.fed.processes.append(NodeProcess(f"echo hop {i}", c.directory, self.urls[i], log, popen))
        try:
            self.fed.wait_healthy(self.ca, creds[0].tls_cert, creds[0].tls_key, timeout=60.0)
        except BaseException:
            self.fed.stop()
            raise
        return self

    def stop(self) -> None:
        self.fed.stop()

    def __enter__(self) -> EchoChain:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    hop = sub.add_parser("hop", help="serve one hop (the chain starts these)")
    hop.add_argument("--port", type=int, required=True)
    hop.add_argument("--cert", type=Path, required=True)
    hop.add_argument("--key", type=Path, required=True)
    hop.add_argument("--ca", type=Path, required=True)
    hop.add_argument("--next", dest="next_url")
    serve = sub.add_parser("serve", help="keep a chain up until Ctrl-C")
    serve.add_argument("--hops", type=int, default=len(HOPS))
    args = parser.parse_args(argv)
    if args.command == "hop":
        serve_hop(args.port, args.cert, args.key, args.ca, args.next_url)
        return 0
    with tempfile.TemporaryDirectory(prefix="renkei-echo-") as d, EchoChain(Path(d), args.hops) as chain:
        assert chain.client is not None
        print(f"echo chain of {args.hops} mutual-TLS hops: {chain.url}/echo (Ctrl-C stops it)")
        print(
            f"  .venv/bin/python bench/loadgen.py {chain.url}/echo --method POST --body '{{\"ping\": 1}}' "
            f"--cert {chain.client.tls_cert} --key {chain.client.tls_key} --ca {chain.ca} "
            f"--expect-body ping --concurrency 16 --duration 10",
            flush=True,
        )
        try:
            with sigterm_as_interrupt():
                while True:
                    time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
