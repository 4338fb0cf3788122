"""The load client's figures are right: against a tiny mutual-TLS server with a known delay,
p50 is that delay, errors are counted by status or exception, an open loop measures from
the scheduled send time, and a spawned client process reports the same way."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from aiohttp import web

from bench import loadgen
from renkei.core.crypto import pki

DELAY = 0.05  # seconds every answer of the test server takes
T = TypeVar("T")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[pki.NodeCredentials, pki.NodeCredentials, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca_cert, _ = pki.create_ca(d / "ca")
    server = pki.issue_node_credentials(d / "ca", d / "server", "9000000000000001", "テスト", "hub")
    client = pki.issue_node_credentials(d / "ca", d / "client", "1310410000000000", "テスト", "atena")
    return server, client, ca_cert


@asynccontextmanager
async def delay_server(server: pki.NodeCredentials, ca: Path, delay: float) -> AsyncIterator[str]:
    """An mTLS server that answers after ``delay``: /fail with 503, /wrong with another body,
    anything else by echoing the request body."""

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.sleep(delay)
        if request.path == "/fail":
            return web.Response(status=503, text="busy")
        if request.path == "/wrong":
            return web.Response(body=b"something else")
        return web.Response(body=body)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock, ssl_context=pki.server_ssl_context(server.tls_cert, server.tls_key, ca))
    await site.start()
    try:
        yield f"https://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()


def with_server(certs: tuple[pki.NodeCredentials, pki.NodeCredentials, Path], delay: float,
                body: Callable[[str, loadgen.Tls], Awaitable[T]]) -> T:
    server, client, ca = certs

    async def go() -> T:
        async with delay_server(server, ca, delay) as base:
            return await body(base, loadgen.Tls(client.tls_cert, client.tls_key, ca))

    return asyncio.run(go())


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert loadgen.percentile(values, 50) == 50.0
    assert loadgen.percentile(values, 99) == 99.0
    assert loadgen.percentile(values, 100) == 100.0
    assert loadgen.percentile([7.0], 99) == 7.0
    assert loadgen.percentile([], 50) == 0.0


def test_closed_loop_p50_is_the_delay_and_errors_are_counted(certs: tuple[pki.NodeCredentials, pki.NodeCredentials, Path]) -> None:
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    dead = f"https://127.0.0.1:{refused.getsockname()[1]}/x"

    async def body(base: str, tls: loadgen.Tls) -> loadgen.Result:
        def factory(i: int) -> loadgen.Request:
            path = {4: "/fail", 9: "/wrong"}.get(i % 10, "/echo")
            return loadgen.Request("POST", dead if i == 13 else base + path, {"content-type": "text/plain"}, b"ping")

        plan = loadgen.Plan("closed", concurrency=4, requests=40, warmup=0)
        return await loadgen.arun(factory, plan, check=loadgen.Check(200, b"ping"), tls=tls, label="t")

    try:
        r = with_server(certs, DELAY, body)
    finally:
        refused.close()
    assert r.sent == 40
    assert r.errors == {"503": 4, "200 unexpected body": 4, "ClientConnectorError": 1}
    assert r.ok == 31
    assert r.samples["503"] == "busy"
    # Every answer takes DELAY: the quantiles sit at it (a loaded machine adds a little).
    assert DELAY * 1000 <= r.p50_ms < DELAY * 1000 + 50
    assert r.p50_ms <= r.p90_ms <= r.p99_ms <= r.max_ms
    # Four workers, each answer DELAY long: at most 4 / DELAY requests a second.
    assert 0.25 * 4 / DELAY < r.throughput * 40 / 31 <= 4 / DELAY
    assert r.concurrency == 4 and r.mode == "closed"


def test_open_loop_counts_from_the_scheduled_time(certs: tuple[pki.NodeCredentials, pki.NodeCredentials, Path]) -> None:
    async def body(base: str, tls: loadgen.Tls) -> tuple[loadgen.Result, loadgen.Result]:
        def steady(i: int) -> loadgen.Request:
            return loadgen.Request("GET", base + "/echo")

        def stalled(i: int) -> loadgen.Request:
            if i == 0:
                time.sleep(0.25)  # the client stalls: 25 arrivals fall due meanwhile
            return steady(i)

        plan = loadgen.Plan("open", rate=100, requests=40, warmup=0)
        return (await loadgen.arun(steady, plan, tls=tls), await loadgen.arun(stalled, plan, tls=tls))

    steady, stalled = with_server(certs, DELAY / 2, body)
    assert steady.sent == steady.ok == 40 and not steady.errors
    assert steady.rate == 100 and steady.mode == "open"
    assert DELAY / 2 * 1000 <= steady.p50_ms < DELAY / 2 * 1000 + 50
    # Arrivals due during the stall went out late: their latency counts from when they were
    # due (a client timing from its actual send would report about 25 ms for each).
    assert stalled.ok == 40
    assert stalled.lag_max_ms >= 240
    assert stalled.max_ms >= 250 + DELAY / 2 * 1000
    assert stalled.p50_ms >= 100


def test_spawned_client_reports_the_same(certs: tuple[pki.NodeCredentials, pki.NodeCredentials, Path]) -> None:
    async def body(base: str, tls: loadgen.Tls) -> loadgen.Result:
        requests = [loadgen.Request("POST", base + "/echo", {}, b"ping"), loadgen.Request("POST", base + "/fail", {}, b"")]
        spec = loadgen.spec_dict(
            requests, loadgen.Plan("closed", concurrency=2, requests=20, warmup=0),
            check=loadgen.Check(200, b"ping"), tls=tls, label="spawned",
        )
        return await asyncio.to_thread(loadgen.spawn, spec)

    r = with_server(certs, DELAY, body)
    assert (r.label, r.sent, r.ok, r.errors) == ("spawned", 20, 10, {"503": 10})
    assert DELAY * 1000 <= r.p50_ms < DELAY * 1000 + 50
    assert "spawned: " in r.line() and "errors 503: 10" in r.line()
