"""An asynchronous load client: aiohttp over mutual TLS, one session, keep-alive.

Two modes, each preceded by a warm-up at the same load that is not counted:

- **closed loop**: ``concurrency`` workers, each sending its next request when its last one
  has been answered, for ``requests`` requests or ``duration`` seconds. Reports throughput
  (answered as expected per second of wall time), p50/p90/p99/max latency from the moment a
  request was sent, and errors by status (or by exception when there was no answer).
- **open loop**: arrivals at a fixed ``rate`` (evenly spaced), whatever the answers do.
  Latency is measured from each request's *scheduled* send time, so a stall of the server
  (or of this client) counts for every request that should have gone out meanwhile — no
  coordinated omission. ``lag_max_ms`` says how late this client itself sent at worst.

Requests come from a factory ``i -> Request(method, url, headers, body)``, so the same
client drives the echo chain and the real inquiry path. The connector is PeerClient's
(renkei/core/http.py): ``TCPConnector(ssl=<mTLS context>, limit=100, keepalive_timeout=4)``;
cookies are not kept (the headers say everything that is sent).

A benchmark runs the client in its own process (`spawn`), so that it shares neither the
event loop nor the GIL with a node; it prints one line per run::

    .venv/bin/python -m bench.loadgen https://127.0.0.1:9443/echo --method POST --body '{}' \\
        --cert tls.crt --key tls.key --ca ca.crt --concurrency 16 --duration 10
    .venv/bin/python -m bench.loadgen URL ... --rate 200 --duration 10        # open loop
    .venv/bin/python bench/loadgen.py --spec spec.json --json                # as `spawn` does

A spec file (JSON, see `spec_dict`) keeps session cookies off the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import resource
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp

from renkei.core.crypto import pki

# PeerClient's connector settings (renkei/core/http.py): uvicorn drops idle keep-alive
# connections after 5 s, so a connection idle for 4 s is not reused.
CONNECTOR_LIMIT = 100
KEEPALIVE_TIMEOUT = 4.0
REQUEST_TIMEOUT = 30.0
SAMPLE_CHARS = 300  # of the first answer of each error kind, to say what went wrong


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None


RequestFactory = Callable[[int], Request]


@dataclass(frozen=True)
class Cycle:
    """A factory that sends the given requests in turn (request ``i`` is ``requests[i % n]``)."""

    requests: tuple[Request, ...]

    def __call__(self, i: int) -> Request:
        return self.requests[i % len(self.requests)]


@dataclass(frozen=True)
class Tls:
    """The client certificate, its key and the CA that the servers' certificates must chain to."""

    cert: Path
    key: Path
    ca: Path

    def context(self) -> ssl.SSLContext:
        return pki.client_ssl_context(self.cert, self.key, self.ca)


@dataclass(frozen=True)
class Check:
    """What an expected answer looks like; anything else is counted as an error."""

    status: int = 200
    body_contains: bytes | None = None


@dataclass(frozen=True)
class Plan:
    """One run: closed loop at ``concurrency`` or open loop at ``rate`` requests per second,
    stopping after ``requests`` (sent requests or arrivals) or ``duration`` seconds."""

    mode: Literal["closed", "open"]
    concurrency: int = 16
    rate: float = 0.0
    requests: int | None = None
    duration: float | None = None
    warmup: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in ("closed", "open"):
            raise ValueError(f"mode must be 'closed' or 'open', not {self.mode!r}")
        if self.requests is None and self.duration is None:
            raise ValueError("give requests or duration")
        if self.mode == "closed" and self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.mode == "open" and not self.rate > 0:
            raise ValueError("rate must be positive")


@dataclass
class Result:
    label: str
    mode: str
    concurrency: int  # closed loop; the most requests in flight at once in an open loop
    rate: float  # open loop: offered arrivals per second; 0 for a closed loop
    sent: int
    ok: int
    errors: dict[str, int]
    wall_s: float
    throughput: float  # answers as expected per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    lag_max_ms: float = 0.0  # open loop: how late this client sent at worst
    samples: dict[str, str] = field(default_factory=dict)
    warmup_sent: int = 0  # requests of the warm-up, before the measured run
    client_cpu_s: float = 0.0  # CPU seconds of the client process (set by `spawn`)

    def line(self) -> str:
        """One line per run."""
        how = (
            f"closed loop at concurrency {self.concurrency}"
            if self.mode == "closed"
            else f"open loop at {self.rate:,.1f}/s, at most {self.concurrency} in flight, "
            f"client late by at most {self.lag_max_ms:.1f} ms"
        )
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())) or "none"
        return (
            f"{self.label}: {self.throughput:,.1f}/s ({self.ok:,} of {self.sent:,} in {self.wall_s:.1f} s; {how}); "
            f"p50 {self.p50_ms:.1f} ms, p90 {self.p90_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, "
            f"max {self.max_ms:.1f} ms; errors {errors}"
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Result:
        return cls(**data)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when there are none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(
    label: str,
    plan: Plan,
    latencies_ms: list[float],
    errors: Counter[str],
    wall_s: float,
    *,
    in_flight_max: int = 0,
    lag_max_ms: float = 0.0,
    samples: dict[str, str] | None = None,
    warmup_sent: int = 0,
) -> Result:
    lat = sorted(latencies_ms)
    return Result(
        label=label,
        mode=plan.mode,
        concurrency=plan.concurrency if plan.mode == "closed" else in_flight_max,
        rate=plan.rate if plan.mode == "open" else 0.0,
        sent=len(lat) + sum(errors.values()),
        ok=len(lat),
        errors=dict(errors),
        wall_s=wall_s,
        throughput=len(lat) / wall_s if wall_s > 0 else 0.0,
        p50_ms=percentile(lat, 50),
        p90_ms=percentile(lat, 90),
        p99_ms=percentile(lat, 99),
        max_ms=lat[-1] if lat else 0.0,
        lag_max_ms=lag_max_ms,
        samples=samples or {},
        warmup_sent=warmup_sent,
    )


class _Tally:
    """What one phase saw: latencies of expected answers, errors by kind, a sample of each."""

    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.errors: Counter[str] = Counter()
        self.samples: dict[str, str] = {}
        self.in_flight = 0
        self.in_flight_max = 0

    def error(self, kind: str, sample: str) -> None:
        self.errors[kind] += 1
        self.samples.setdefault(kind, sample[:SAMPLE_CHARS])


async def _send(session: aiohttp.ClientSession, req: Request, check: Check, tally: _Tally, since: float) -> None:
    """Send one request; count its latency from ``since`` (perf_counter) if it is as expected."""
    tally.in_flight += 1
    tally.in_flight_max = max(tally.in_flight_max, tally.in_flight)
    try:
        async with session.request(req.method, req.url, headers=dict(req.headers), data=req.body) as resp:
            body = await resp.read()
            status = resp.status
    except (TimeoutError, aiohttp.ClientError, ssl.SSLError, OSError) as exc:
        tally.error(type(exc).__name__, str(exc))
        return
    finally:
        tally.in_flight -= 1
    elapsed_ms = (time.perf_counter() - since) * 1000
    if status != check.status:
        tally.error(str(status), body.decode("utf-8", "replace"))
    elif check.body_contains is not None and check.body_contains not in body:
        tally.error(f"{status} unexpected body", body.decode("utf-8", "replace"))
    else:
        tally.latencies_ms.append(elapsed_ms)


async def _closed(
    session: aiohttp.ClientSession,
    factory: RequestFactory,
    check: Check,
    concurrency: int,
    requests: int | None,
    duration: float | None,
    first: int,
) -> tuple[_Tally, float, int]:
    tally = _Tally()
    issued = 0
    start = time.perf_counter()
    stop_at = start + duration if duration is not None else math.inf

    async def worker() -> None:
        nonlocal issued
        while (requests is None or issued < requests) and time.perf_counter() < stop_at:
            req = factory(first + issued)
            issued += 1
            await _send(session, req, check, tally, time.perf_counter())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally, time.perf_counter() - start, issued


async def _open(
    session: aiohttp.ClientSession,
    factory: RequestFactory,
    check: Check,
    rate: float,
    requests: int | None,
    duration: float | None,
    first: int,
) -> tuple[_Tally, float, int, float]:
    tally = _Tally()
    count = requests if requests is not None else max(1, round((duration or 0.0) * rate))
    interval = 1.0 / rate
    tasks: set[asyncio.Task[None]] = set()
    lag_max = 0.0
    start = time.perf_counter()
    for i in range(count):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        # Sleep until the scheduled time; when late, still yield once so that the requests
        # already created start instead of all waiting for the schedule to catch up.
        await asyncio.sleep(max(delay, 0.0))
        req = factory(first + i)
        lag_max = max(lag_max, time.perf_counter() - scheduled)
        # The latency runs from the scheduled time: a late send is the system's delay too.
        task = asyncio.create_task(_send(session, req, check, tally, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*tasks)
    return tally, time.perf_counter() - start, count, lag_max * 1000


def _session(tls: Tls | None, concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        ssl=tls.context() if tls is not None else True,
        limit=max(CONNECTOR_LIMIT, concurrency),
        keepalive_timeout=KEEPALIVE_TIMEOUT,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


async def arun(
    factory: RequestFactory,
    plan: Plan,
    *,
    check: Check = Check(),
    tls: Tls | None = None,
    label: str = "load",
) -> Result:
    """Warm up, then measure one run of ``plan`` (in this event loop: tests use it directly)."""
    async with _session(tls, plan.concurrency) as session:
        if plan.mode == "closed":
            if plan.warmup > 0:
                _, _, warmed = await _closed(session, factory, check, plan.concurrency, None, plan.warmup, 0)
            else:
                warmed = 0
            tally, wall, _ = await _closed(
                session, factory, check, plan.concurrency, plan.requests, plan.duration, warmed
            )
            return summarize(
                label, plan, tally.latencies_ms, tally.errors, wall, samples=tally.samples, warmup_sent=warmed
            )
        warmed = 0
        if plan.warmup > 0:
            _, _, warmed, _ = await _open(session, factory, check, plan.rate, None, plan.warmup, 0)
        tally, wall, _, lag_ms = await _open(session, factory, check, plan.rate, plan.requests, plan.duration, warmed)
        return summarize(
            label,
            plan,
            tally.latencies_ms,
            tally.errors,
            wall,
            in_flight_max=tally.in_flight_max,
            lag_max_ms=lag_ms,
            samples=tally.samples,
            warmup_sent=warmed,
        )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop  # uvicorn[standard] brings it; the client must not be the bottleneck
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(
    factory: RequestFactory,
    plan: Plan,
    *,
    check: Check = Check(),
    tls: Tls | None = None,
    label: str = "load",
) -> Result:
    """`arun` in a fresh event loop of this process (uvloop when installed)."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(arun(factory, plan, check=check, tls=tls, label=label))


# --- the spec: one run described in JSON, for a process of its own -------------------------


def spec_dict(
    requests: Sequence[Request],
    plan: Plan,
    *,
    check: Check = Check(),
    tls: Tls | None = None,
    label: str = "load",
) -> dict[str, Any]:
    """A run as JSON: the requests are sent in turn (a `Cycle`)."""
    return {
        "label": label,
        "plan": asdict(plan),
        "check": {
            "status": check.status,
            "body_contains": None if check.body_contains is None else base64.b64encode(check.body_contains).decode(),
        },
        "tls": None if tls is None else {"cert": str(tls.cert), "key": str(tls.key), "ca": str(tls.ca)},
        "requests": [
            {
                "method": r.method,
                "url": r.url,
                "headers": dict(r.headers),
                "body": None if r.body is None else base64.b64encode(r.body).decode(),
            }
            for r in requests
        ],
    }


def _from_spec(spec: Mapping[str, Any]) -> tuple[Cycle, Plan, Check, Tls | None, str]:
    def b64(value: str | None) -> bytes | None:
        return None if value is None else base64.b64decode(value)

    requests = tuple(Request(r["method"], r["url"], r.get("headers", {}), b64(r.get("body"))) for r in spec["requests"])
    if not requests:
        raise ValueError("the spec has no requests")
    check = Check(spec.get("check", {}).get("status", 200), b64(spec.get("check", {}).get("body_contains")))
    tls_raw = spec.get("tls")
    tls = None if tls_raw is None else Tls(Path(tls_raw["cert"]), Path(tls_raw["key"]), Path(tls_raw["ca"]))
    return Cycle(requests), Plan(**spec["plan"]), check, tls, str(spec.get("label", "load"))


def spawn(spec: Mapping[str, Any], *, timeout: float | None = None) -> Result:
    """Run the spec in a new process (own event loop, own GIL) and return its result.

    The spec goes through a file readable by this user only: it may hold a session cookie.
    """
    with tempfile.TemporaryDirectory(prefix="renkei-loadgen-") as d:
        path = Path(d) / "spec.json"
        path.write_text(json.dumps(spec), encoding="utf-8")
        os.chmod(path, 0o600)
        budget = timeout
        if budget is None:
            plan = spec["plan"]
            budget = (plan.get("duration") or 60.0) + (plan.get("warmup") or 0.0) + REQUEST_TIMEOUT + 30.0
            if plan.get("requests") is not None:
                budget = max(budget, 600.0)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--spec", str(path), "--json"],
            capture_output=True,
            text=True,
            timeout=budget,
            check=False,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"load client failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    result = Result.from_dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    # The client shares the machine's cores with the nodes: its CPU is part of the budget.
    result.client_cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return result


# --- command line ---------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Asynchronous load client (aiohttp over mutual TLS).")
    p.add_argument("url", nargs="?", help="URL to send to (or --spec)")
    p.add_argument("--spec", type=Path, help="a JSON spec (see spec_dict); the other options are ignored")
    p.add_argument("--method", default="GET")
    p.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'")
    p.add_argument("--body", help="request body (UTF-8)")
    p.add_argument("--body-file", type=Path)
    p.add_argument("--cert", type=Path)
    p.add_argument("--key", type=Path)
    p.add_argument("--ca", type=Path)
    p.add_argument("--concurrency", type=int, default=16, help="closed loop (the default mode)")
    p.add_argument("--rate", type=float, help="open loop: arrivals per second")
    p.add_argument("--requests", type=int)
    p.add_argument("--duration", type=float)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--expect-status", type=int, default=200)
    p.add_argument("--expect-body", help="a substring every expected answer contains")
    p.add_argument("--label", default="load")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = p.parse_args(argv)
    if args.spec is None and args.url is None:
        p.error("give a URL or --spec")
    if args.spec is None and (args.cert is None) != (args.key is None):
        p.error("give --cert and --key together")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.spec is not None:
        factory, plan, check, tls, label = _from_spec(json.loads(args.spec.read_text(encoding="utf-8")))
    else:
        headers = dict(h.split(":", 1) for h in args.header)
        body = args.body_file.read_bytes() if args.body_file else (args.body.encode() if args.body is not None else None)
        factory = Cycle((Request(args.method, args.url, {k.strip(): v.strip() for k, v in headers.items()}, body),))
        duration = args.duration if args.duration is not None or args.requests is not None else 10.0
        if args.rate is not None:
            plan = Plan("open", rate=args.rate, requests=args.requests, duration=duration, warmup=args.warmup)
        else:
            plan = Plan("closed", concurrency=args.concurrency, requests=args.requests, duration=duration, warmup=args.warmup)
        check = Check(args.expect_status, args.expect_body.encode() if args.expect_body else None)
        tls = None
        if args.cert is not None:
            if args.ca is None:
                raise SystemExit("--ca is required with --cert")
            tls = Tls(args.cert, args.key, args.ca)
        label = args.label
    result = run(factory, plan, check=check, tls=tls, label=label)
    print(json.dumps(asdict(result), ensure_ascii=False) if args.json else result.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
