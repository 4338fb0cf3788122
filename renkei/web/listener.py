"""A node's two listeners in one process: mutual TLS for peers, and the staff UI.

The staff listener checks terminal certificates at the TLS handshake (uvicorn's
``ssl_ca_certs`` + ``ssl_cert_reqs=CERT_REQUIRED`` against the organization's terminal
CA): a browser without a certificate of that CA never reaches the app. Both servers
share one event loop, so the staff app uses the node's runtime (its peer client is
bound to that loop), and one pair of signal handlers stops both.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from collections.abc import Generator
from typing import Any

import uvicorn

from renkei.core.config import ConfigError, NodeConfig, StaffConfig


def peer_tls_options(cfg: NodeConfig) -> dict[str, Any]:
    """uvicorn TLS options of the node's listener: client certificates of the federation CA."""
    return {
        "ssl_certfile": str(cfg.tls.cert),
        "ssl_keyfile": str(cfg.tls.key),
        "ssl_ca_certs": str(cfg.tls.ca),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
    }


def staff_tls_options(cfg: NodeConfig, staff: StaffConfig) -> dict[str, Any]:
    """uvicorn TLS options of the staff listener: terminal certificates when required."""
    options: dict[str, Any] = {
        "ssl_certfile": str(staff.cert or cfg.tls.cert),
        "ssl_keyfile": str(staff.key or cfg.tls.key),
    }
    if not staff.require_terminal_cert:
        options["ssl_cert_reqs"] = ssl.CERT_NONE
        return options
    if staff.terminal_ca is None or not staff.terminal_ca.is_file():
        raise ConfigError(f"[staff] terminal_ca の証明書がありません: {staff.terminal_ca}")
    options["ssl_ca_certs"] = str(staff.terminal_ca)
    options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return options


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `serve_together`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _serve_all(servers: list[_Server]) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    main = asyncio.create_task(servers[0].serve())
    # The other listeners open once the node is up (migrations run, workers started).
    while not servers[0].started and not main.done():
        await asyncio.sleep(0.05)
    tasks = [main] + [asyncio.create_task(s.serve()) for s in servers[1:]] if not main.done() else [main]
    _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    stop()  # one listener ended (signal or failure): end the others too
    results = await asyncio.gather(*tasks, return_exceptions=True)
    del pending
    for result in results:
        if isinstance(result, BaseException):
            raise result


def serve_together(main: uvicorn.Config, *others: uvicorn.Config) -> None:
    """Run ``main`` and, once it has started, ``others``; return when all have stopped."""
    servers = [_Server(main), *(_Server(c) for c in others)]
    with asyncio.Runner(loop_factory=main.get_loop_factory()) as runner:
        runner.run(_serve_all(servers))
