"""`make bench`: figures printed, each against a baseline measured in the same run.

1. Message envelope: seal+open (JOSE, Ed25519, replay fields) vs a bare Ed25519 sign+verify.
2. Inquiry path (issue 9): staff → atena → chukan → hub → provider chukan and back (mutual
   TLS, JWS, JWE, provision records, audit), driven by the asynchronous load client
   (bench/loadgen.py, in a process of its own) in a closed loop at concurrency 16, then in
   an open loop at half the throughput it measured; baseline: the echo chain
   (bench/echo_chain.py, four mutual-TLS uvicorn hops that only forward and echo) driven by
   the same client at the same concurrency. Each goal is printed MET or NOT MET.
3. Audit log (bench_audit.py) and 4. synthetic population (bench_dummy.py), each with its own.
5. Bootstrap of the ward (bench_bootstrap.py): 343,000 people into atena, pseudonyms for all
   of them, about 1,000,000 copies into chukan, on SQLite and PostgreSQL, beside a raw
   insert of the same rows into the same engine.
6. Addressee search (bench_search.py): p50/p95 per kind of query at 343,000 people on SQLite
   and PostgreSQL, beside a primary-key read in the same run (goal p95 ≤ 50 ms).

Usage: .venv/bin/python bench/run.py [--only PART[,PART...]] [--concurrency 16]
       [--duration 10] [--open-duration 10] [--people 343000]
Parts: envelope, echo, inquiry (measures the echo chain too: a goal is a ratio to the same
run's baseline), audit, dummy, bootstrap, search. The machine is shared: each figure says the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import loadgen
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from echo_chain import EchoChain

from renkei.core.config import dump_config
from renkei.core.crypto import envelope, pki
from renkei.core.wire.messaging import open_message, seal
from renkei.federation import demo
from renkei.federation.process import Federation, sigterm_as_interrupt
from renkei.federation.topology import NAKANO, ORGS, SHINJUKU, Layout


def rate(fn: object, seconds: float = 1.5) -> float:
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()  # type: ignore[operator]
        n += 1
    return n / (time.perf_counter() - start)


def bench_envelope(tmp: Path) -> None:
    pki.create_ca(tmp / "ca")
    creds = pki.issue_node_credentials(tmp / "ca", tmp / "org", "1310410000000000", "新宿区", "chukan")
    key = envelope.load_signing_key(creds.sig_key)
    public = envelope.public_keys_from_document(__import__("json").loads(creds.public.read_text()))
    pub = public["1310410000000000:chukan:sig:1"]
    body = {"atena_no": "000000000000019", "procedure_code": "JT01010000074001", "info_kind_code": "TM00000000000002",
            "provider_org": "1311480000000000", "as_of": "2025-04-01"}
    raw = Ed25519PrivateKey.generate()
    rpub = raw.public_key()
    payload = b"x" * 300

    def baseline() -> None:
        rpub.verify(raw.sign(payload), payload)

    def jose() -> None:
        token = seal(key, "1310410000000000", "1310410000000000", "inquiry.request", body)
        open_message(token, pub, expected_aud="1310410000000000", now=datetime.now(UTC), max_skew_seconds=300)

    b = rate(baseline)
    j = rate(jose)
    print(f"envelope: bare Ed25519 sign+verify {b:,.0f}/s; seal+open (JWS + checks) {j:,.0f}/s; ratio {j / b:.2f}")


# Issue 9's goals for the inquiry path.
GOAL_RATE = 300.0  # inquiries/s in a closed loop
GOAL_P99_MS = 50.0  # p99 in an open loop at half GOAL_RATE
GOAL_RATIO = 1 / 3  # of the echo chain's throughput
CONCURRENCY = 16
WARMUP_S = 2.0
# The bench sends one staff member's inquiries at hundreds a second, past the demo's staff
# limit and the default peer limit (3,000 a minute, which the hub's count of 新宿区's chukan
# would pass within the run). The guard still counts every request (same work per request);
# only the ceiling is raised, and only in this run's configs.
BENCH_GUARD_LIMIT = 10_000_000
RERUN = ".venv/bin/python bench/run.py --only"


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def node_cpu(fed: Federation) -> dict[str, float]:
    return {p.name: process_cpu_seconds(p.popen.pid) for p in fed.processes if p.popen is not None}


def print_cpu_per_inquiry(before: dict[str, float], after: dict[str, float], answered: int) -> None:
    """CPU per answered inquiry, node by node: the figure that a loaded machine disturbs least
    (a slower wall clock stretches waits, not the work done)."""
    per = {name: (after[name] - before[name]) * 1000 / max(answered, 1) for name in before}
    busy = ", ".join(f"{name} {ms:.1f}" for name, ms in sorted(per.items(), key=lambda kv: -kv[1]) if ms >= 0.5)
    print(f"  CPU per inquiry: {sum(per.values()):.1f} ms in all nodes ({busy} ms)")


def machine_load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def verdict(met: bool, figure: str) -> str:
    return f"MET ({figure})" if met else f"NOT MET ({figure})"


def closed_plan(args: argparse.Namespace) -> loadgen.Plan:
    return loadgen.Plan("closed", concurrency=args.concurrency, duration=args.duration, warmup=WARMUP_S)


def bench_echo_chain(tmp: Path, args: argparse.Namespace, body: bytes) -> loadgen.Result:
    """The baseline: four mutual-TLS hops that only forward and echo, at the same concurrency."""
    print(f"echo chain: starting 4 hop processes ({machine_load()})", flush=True)
    with EchoChain(tmp / "echo") as chain:
        assert chain.client is not None
        request = loadgen.Request("POST", chain.url + "/echo", {"content-type": "application/json"}, body)
        spec = loadgen.spec_dict(
            [request],
            closed_plan(args),
            check=loadgen.Check(200, body),
            tls=loadgen.Tls(chain.client.tls_cert, chain.client.tls_key, chain.ca),
            label="echo chain (4 mutual-TLS hops)",
        )
        result = loadgen.spawn(spec)
    print(f"{result.line()}; {machine_load()}")
    print(f"  rerun: {RERUN} echo   (or keep a chain up: .venv/bin/python bench/echo_chain.py serve)")
    return result


def lift_guard_limits(layout: Layout) -> None:
    """Raise the staff and peer rate limits in every node config of this run (see BENCH_GUARD_LIMIT)."""
    for org in ORGS:
        for node in org.nodes:
            path = layout.config_path(org, node)
            cfg = tomllib.loads(path.read_text(encoding="utf-8"))
            limits = cfg.setdefault("guard", {}).setdefault("limits", {})
            limits.update(staff=BENCH_GUARD_LIMIT, peer=BENCH_GUARD_LIMIT)
            path.write_text(dump_config(cfg), encoding="utf-8")


def bench_inquiry_path(tmp: Path, args: argparse.Namespace, echo: loadgen.Result | None) -> None:
    layout = Layout(tmp / "var", 18800 + random.randrange(0, 50) * 10)
    pop = demo.generate_population(seed=11, shinjuku=150, nakano=100)
    fed = Federation()
    clients: dict[str, demo.AtenaClient] = {}
    try:
        demo.prepare(layout, pop)
        lift_guard_limits(layout)
        demo.start(layout, fed)
        clients = demo.open_clients(layout)
        scenarios = demo.play(layout, pop, clients)
        request = next(sc.request for sc in scenarios if sc.name == "a_move_in_tax")
        # Staff S0001 is signed in (password + TOTP from set-up's credentials file); the load
        # client sends the session cookie and CSRF token, nothing else of the demo client.
        headers = {**clients["shinjuku"].staff_headers("S0001"), "content-type": "application/json"}
        body = json.dumps(request, ensure_ascii=False).encode()
        url = layout.url(SHINJUKU, "atena") + "/v1/inquiries"
        answered = b'"status":"answered"'
        status, first = clients["shinjuku"].inquire("S0001", request)
        if status != 200 or first.get("status") != "answered":
            raise SystemExit(f"inquiry path: the first inquiry was not answered: {status} {first}")
        creds = layout.creds_dir(SHINJUKU, "atena")
        tls = loadgen.Tls(creds / "tls.crt", creds / "tls.key", layout.ca_cert)
        requests = [loadgen.Request("POST", url, headers, body)]
        check = loadgen.Check(200, answered)

        print(f"inquiry path: closed loop ({machine_load()})", flush=True)
        cpu_before = node_cpu(fed)
        closed = loadgen.spawn(
            loadgen.spec_dict(requests, closed_plan(args), check=check, tls=tls, label="inquiry path")
        )
        cpu_after = node_cpu(fed)
        print(f"{closed.line()}; {machine_load()}")
        # The warm-up's inquiries are answered too: count them in (the client reports only
        # the measured ones), so the CPU figure is not inflated.
        print_cpu_per_inquiry(cpu_before, cpu_after, closed.ok + closed.warmup_sent)
        client_ms = closed.client_cpu_s * 1000 / max(closed.ok + closed.warmup_sent, 1)
        print(f"  CPU per inquiry in the load client (same cores): {client_ms:.1f} ms")
        open_rate = closed.throughput / 2
        opened: loadgen.Result | None = None
        if open_rate > 0:
            plan = loadgen.Plan("open", rate=open_rate, duration=args.open_duration, warmup=WARMUP_S)
            opened = loadgen.spawn(
                loadgen.spec_dict(requests, plan, check=check, tls=tls, label="inquiry path, half its throughput")
            )
            print(f"{opened.line()}; {machine_load()}")
        for result in (closed, opened):
            for kind, sample in (result.samples if result else {}).items():
                print(f"  first {kind} answer: {sample}")
    finally:
        for client in clients.values():
            client.close()
        fed.stop()

    print("inquiry path goals (issue 9):")
    clean = "" if not closed.errors else f", with {sum(closed.errors.values()):,} errors"
    print(f"  ≥ {GOAL_RATE:,.0f} inquiries/s: "
          + verdict(closed.throughput >= GOAL_RATE and not closed.errors,
                    f"{closed.throughput:,.1f}/s at concurrency {closed.concurrency}{clean}"))
    if opened is None:
        print(f"  p99 ≤ {GOAL_P99_MS:.0f} ms at {GOAL_RATE / 2:,.0f}/s: NOT MET (no inquiry was answered)")
    else:
        at = f"p99 {opened.p99_ms:.1f} ms in an open loop at {opened.rate:,.1f}/s, half the measured throughput"
        if opened.errors:
            at += f", with {sum(opened.errors.values()):,} errors"
        met = opened.p99_ms <= GOAL_P99_MS and opened.rate >= GOAL_RATE / 2 and not opened.errors
        print(f"  p99 ≤ {GOAL_P99_MS:.0f} ms at {GOAL_RATE / 2:,.0f}/s: " + verdict(met, at))
    if echo is None:
        print("  ≥ 1/3 of the echo chain's throughput: not measured (run with the echo chain)")
    else:
        ratio = closed.throughput / echo.throughput if echo.throughput else 0.0
        print("  ≥ 1/3 of the echo chain's throughput: "
              + verdict(ratio >= GOAL_RATIO and not closed.errors,
                        f"{closed.throughput:,.1f} / {echo.throughput:,.1f} = {ratio:.3f}"))
    print(f"  rerun: {RERUN} inquiry   (the echo chain, then the inquiry path)")


def echo_body() -> bytes:
    """A body the size and shape of the inquiry request (synthetic values)."""
    return json.dumps({
        "system": "child_allowance",
        "business_atena_no": "000000000000019",
        "procedure_code": demo.CHILD_ALLOWANCE_PROCEDURE,
        "info_kind_code": demo.LOCAL_TAX_INFO,
        "provider_org": NAKANO.org_code,
        "as_of": "2026-04-01",
    }, ensure_ascii=False).encode()



PARTS = ("envelope", "echo", "inquiry", "audit", "dummy", "bootstrap", "search")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="make bench: figures beside same-run baselines")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {', '.join(PARTS)}")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="closed loops (echo chain, inquiry path)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each closed loop")
    parser.add_argument("--open-duration", type=float, default=10.0, help="seconds of the open loop")
    parser.add_argument("--people", type=int, default=343_000, help="persons of the bootstrap and the search")
    args = parser.parse_args(argv)
    args.parts = {p.strip() for p in args.only.split(",") if p.strip()}
    unknown = args.parts - set(PARTS)
    if unknown:
        parser.error(f"unknown part {sorted(unknown)[0]!r}: choose from {', '.join(PARTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    with sigterm_as_interrupt(), tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print(f"== renkei bench (synthetic data; this machine, {machine_load()}) ==")
        if "envelope" in args.parts:
            bench_envelope(tmp)
            print(f"  rerun: {RERUN} envelope")
        echo = None
        if args.parts & {"echo", "inquiry"}:
            echo = bench_echo_chain(tmp, args, echo_body())
        if "inquiry" in args.parts:
            bench_inquiry_path(tmp, args, echo)
    # Audit log: batch append rate and verification of 1,000,000 entries (issue 3 goals).
    if "audit" in args.parts:
        import bench_audit

        bench_audit.main([])
        print(f"  rerun: {RERUN} audit   (or .venv/bin/python bench/bench_audit.py --help)")
    # Synthetic population: 343,000 people with all business data (issue 4 goals).
    if "dummy" in args.parts:
        import bench_dummy

        bench_dummy.main([])
        print(f"  rerun: {RERUN} dummy   (or .venv/bin/python bench/bench_dummy.py --help)")
    # Bootstrap of the ward: 343,000 people, pseudonyms, ~1,000,000 copies (issue 9 goals).
    if "bootstrap" in args.parts:
        import bench_bootstrap

        bench_bootstrap.main(["--people", str(args.people)])
    # Addressee search at 343,000 people, SQLite and PostgreSQL (issue 10 goal: p95 ≤ 50 ms).
    if "search" in args.parts:
        import bench_search

        bench_search.main(["--people", str(args.people)])
        print(f"  rerun: {RERUN} search   (or .venv/bin/python bench/bench_search.py --help)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
