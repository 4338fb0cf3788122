"""Every listener of a node: uvicorn with limits on what a client may send, and how slowly.

uvicorn's HTTP/1.1 protocol (httptools) limits neither the size nor the number of header
fields, nor the time a client takes to send a request: bytes trickled one a second, or none
at all after the TLS handshake, hold a connection for ever, and the TLS handshake itself may
take a minute (asyncio's and uvloop's default). `LimitedHttpProtocol` adds, per connection,
from the node's ``[server]`` section (`ServerLimits`):

- a cap on the bytes of a request's head, counted as they arrive (an endless header is cut
  after ``max_header_bytes`` and one read, never held whole) and on its fields: 431;
- a header timer from the end of the TLS handshake, or from the first byte of a further
  request on a kept-alive connection, to the end of the head: 408, or just the close when
  nothing came at all;
- a body timer from the end of the head to the end of the body: 408, or the close when the
  app has already answered (it is not the client's delay while the server is not reading);
- a cap on the open connections of its listener: one more is closed right after its TLS
  handshake, unanswered. uvicorn's ``limit_concurrency`` is not used: it still reads each
  excess request to answer 503, which is the work a cap on connections is meant to save.
  Connections still in their handshake are not counted (the protocol sees a connection
  only once TLS is up); ``handshake_timeout`` bounds how long each of them lasts.

`ListenerServer` adds the TLS handshake timeout (uvicorn passes none to ``create_server``).
A refusal is problem+json with a stable code and a Japanese title, and ``connection: close``;
the connection then lingers a moment, reading and dropping what the client still sends,
because closing a socket with unread data resets it, and the client would lose the answer.

The hot path stays uvicorn's: per request one timer for the head (one more for a body) and
a few additions.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import signal
import socket
import ssl
import sys
import time
from collections.abc import Generator
from typing import Any, Literal, NoReturn

import httptools
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from renkei.core.config import NodeConfig, ServerLimits
from renkei.core.crypto import pki
from renkei.core.errors import PROBLEM_MEDIA_TYPE, Problem

logger = logging.getLogger("uvicorn.error")

# How long a refused connection keeps reading (and dropping) before it is closed.
LINGER_SECONDS = 2.0
# Peers hold keep-alive connections to each other; a stopping node does not wait for them long.
GRACEFUL_SHUTDOWN_SECONDS = 3
# A full listener warns at most this often (an attack must not flood the log).
CAP_WARNING_INTERVAL = 10.0

_HEAD, _BODY, _IDLE = 0, 1, 2  # reading a request's head, its body, or between requests
_last_cap_warning = -CAP_WARNING_INTERVAL


def _headers_too_large(limit: int) -> Problem:
    return Problem(431, "headers_too_large", "要求ヘッダーが大きすぎます。", f"上限は {limit} バイトです。")


def _too_many_headers(limit: int) -> Problem:
    return Problem(431, "too_many_headers", "要求ヘッダーの項目が多すぎます。", f"上限は {limit} 項目です。")


def _header_timeout(seconds: float) -> Problem:
    return Problem(408, "header_timeout", "要求ヘッダーの受信が時間内に終わりませんでした。", f"{seconds:g} 秒以内に送信してください。")


def _body_timeout(seconds: float) -> Problem:
    return Problem(408, "body_timeout", "要求本文の受信が時間内に終わりませんでした。", f"{seconds:g} 秒以内に送信してください。")


INVALID_REQUEST = Problem(400, "invalid_http_request", "HTTP の要求として解釈できません。")


class _Refused(Exception):
    """Raised in a parser callback: stops parsing; the protocol answers its `_refusal`."""


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of its listener (see the module docstring)."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = config.limits if isinstance(config, ListenerConfig) else ServerLimits()
        self._phase = _HEAD
        self._head_bytes = 0  # bytes received since the last complete head
        self._head_size = 0  # parsed bytes of the current head's fields
        self._head_fields = 0
        self._timer: asyncio.TimerHandle | None = None
        self._refusal: Problem | None = None
        self._lingering = False
        self._held = False  # the server held the body back when the body timer last looked

    # --- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.connections.discard(self)
            self._lingering = True
            _warn_full(self.limits.max_connections, self.server)
            transport.close()
            return
        self._timer = self.loop.call_later(self.limits.header_timeout, self._on_header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # refused: read and drop until the close
        self._unset_keepalive_if_required()
        if self._phase != _BODY:
            self._head_bytes += len(data)
            if self._timer is None:
                self._timer = self.loop.call_later(self.limits.header_timeout, self._on_header_timeout)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            self._refuse(self._refusal or INVALID_REQUEST)
            return
        if self._phase == _BODY:
            if self._timer is None:
                self._timer = self.loop.call_later(self.limits.body_timeout, self._on_body_timeout)
        elif self._head_bytes > self.limits.max_header_bytes:
            self._refuse(_headers_too_large(self.limits.max_header_bytes))

    # --- parser callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = _HEAD
        self._head_size = self._head_fields = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_fields += 1
        self._head_size += len(name) + len(value) + 4  # ": " and CRLF, as they came
        if self._head_fields > self.limits.max_header_fields:
            self._stop(_too_many_headers(self.limits.max_header_fields))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        # A head that came whole in one read is measured here, parsed (the request line's
        # method and version and the final CRLF counted as at most 16 bytes).
        if self._head_size + len(self.url) + 16 > self.limits.max_header_bytes:
            self._stop(_headers_too_large(self.limits.max_header_bytes))
        self._cancel_timer()
        self._phase = _BODY
        self._head_bytes = 0
        self._held = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._cancel_timer()
        self._phase = _IDLE
        super().on_message_complete()

    # --- refusals -----------------------------------------------------------------------

    def _stop(self, problem: Problem) -> NoReturn:
        self._refusal = problem
        raise _Refused

    def _on_header_timeout(self) -> None:
        self._timer = None
        if self._head_bytes:
            self._refuse(_header_timeout(self.limits.header_timeout))
        elif not self.transport.is_closing():
            self.transport.close()  # nothing was asked: nothing to answer

    def _on_body_timeout(self) -> None:
        self._timer = None
        held = self.flow.read_paused or (self.cycle is not None and self.cycle.waiting_for_100_continue)
        if held or self._held:
            # The server is not reading (the app has not taken the body yet, a pipelined
            # request waits, or the client waits for "100 Continue"), or was not until
            # less than a period ago: not the client's delay. Once it reads again the
            # client gets a whole period more (it may have sent "100 Continue" just now).
            self._held = held
            self._timer = self.loop.call_later(self.limits.body_timeout, self._on_body_timeout)
            return
        self._refuse(_body_timeout(self.limits.body_timeout))

    def _refuse(self, problem: Problem) -> None:
        """Answer ``problem`` unless another answer is under way; then linger and close."""
        if self._lingering or self.transport.is_closing():
            return
        self._lingering = True
        self._cancel_timer()
        self._unset_keepalive_if_required()
        cycle = self.cycle
        if self._phase == _BODY:  # the cycle is this request's
            free = cycle is not None and not cycle.response_started and not self.pipeline
        else:  # the cycle, if any, is the previous request's
            free = cycle is None or cycle.response_complete
        if cycle is not None and not cycle.response_complete:
            # Its app must not write after (or into) our answer; it sees a disconnect.
            cycle.disconnected = True
            cycle.message_event.set()
        if not free:
            self.transport.close()
            return
        self.transport.write(self._problem_bytes(problem))
        self.flow.resume_reading()
        self._timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _problem_bytes(self, problem: Problem) -> bytes:
        body = json.dumps(problem.to_dict(), ensure_ascii=False).encode("utf-8")
        lines = [f"HTTP/1.1 {problem.status} {http.HTTPStatus(problem.status).phrase}".encode("ascii")]
        lines += [name + b": " + value for name, value in self.server_state.default_headers]
        lines += [
            b"content-type: " + PROBLEM_MEDIA_TYPE.encode("ascii"),
            b"content-length: " + str(len(body)).encode("ascii"),
            b"connection: close",
        ]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _warn_full(limit: int, where: tuple[str, int | None] | None) -> None:
    global _last_cap_warning
    now = time.monotonic()
    if now - _last_cap_warning >= CAP_WARNING_INTERVAL:
        _last_cap_warning = now
        port = where[1] if where else "?"
        logger.warning("ポート %s の接続数が上限（%d）に達したため、新しい接続を閉じています", port, limit)


class ListenerConfig(uvicorn.Config):
    """One listener: its app, address, TLS context and limits, served by `LimitedHttpProtocol`."""

    def __init__(
        self,
        app: Any,
        *,
        host: str,
        port: int,
        tls: ssl.SSLContext,
        limits: ServerLimits,
        lifespan: Literal["auto", "on", "off"] = "auto",
    ) -> None:
        self.limits = limits
        super().__init__(
            app,
            host=host,
            port=port,
            http=LimitedHttpProtocol,
            ws="none",
            lifespan=lifespan,
            ssl_context_factory=lambda _config, _default: tls,
            timeout_keep_alive=limits.keep_alive_timeout,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            log_level="warning",
            access_log=False,
            # No proxy sits in front of a node: the client's address is the TCP peer's, never
            # what an X-Forwarded-For header claims (rate limits and audit entries use it).
            proxy_headers=False,
        )


def peer_listener(app: Any, cfg: NodeConfig) -> ListenerConfig:
    """The node's listener for peers: mutual TLS with certificates of the federation CA."""
    tls = pki.server_ssl_context(cfg.tls.cert, cfg.tls.key, cfg.tls.ca)
    return ListenerConfig(app, host=cfg.host, port=cfg.port, tls=tls, limits=cfg.server)


class ListenerServer(uvicorn.Server):
    """A uvicorn server with its listener's TLS handshake timeout; `serve_together` handles
    the signals."""

    def __init__(self, config: ListenerConfig) -> None:
        super().__init__(config)
        self.limits = config.limits

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's start-up on a host and port, with ``ssl_handshake_timeout`` added."""
        assert sockets is None, "a listener binds its own host and port"
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)
        config = self.config
        state = self.lifespan.state

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return LimitedHttpProtocol(config=config, server_state=self.server_state, app_state=state, _loop=_loop)

        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                create_protocol,
                host=config.host,
                port=config.port,
                ssl=config.ssl,
                backlog=config.backlog,
                ssl_handshake_timeout=self.limits.handshake_timeout,
            )
        except OSError as exc:
            logger.error(exc)
            await self.lifespan.shutdown()
            sys.exit(STARTUP_FAILURE)
        self.servers = [server]
        self._log_started_message(list(server.sockets))
        self.started = True


async def _serve_all(servers: list[ListenerServer]) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    def on_signal() -> None:
        # A second SIGINT or SIGTERM while stopping: stop without waiting for connections.
        for server in servers:
            server.force_exit = server.should_exit
        stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    main = asyncio.create_task(servers[0].serve())
    # The other listeners open once the node is up (migrations run, workers started).
    while not servers[0].started and not main.done():
        await asyncio.sleep(0.05)
    tasks = [main] + [asyncio.create_task(s.serve()) for s in servers[1:]] if not main.done() else [main]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    stop()  # one listener ended (signal or failure): end the others too
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def serve_together(main: ListenerConfig, *others: ListenerConfig) -> None:
    """Run ``main`` and, once it has started, ``others`` in one event loop; return when all
    have stopped. SIGINT and SIGTERM stop them all (the process then exits normally)."""
    servers = [ListenerServer(main), *(ListenerServer(c) for c in others)]
    with asyncio.Runner(loop_factory=main.get_loop_factory()) as runner:
        runner.run(_serve_all(servers))
