"""`make bench`: figures printed, each against a baseline measured in the same run.

1. Message envelope: seal+open (JOSE, Ed25519, replay fields) vs a bare Ed25519 sign+verify.
2. Inquiry round trip through the whole federation (atena → chukan → hub → provider
   chukan and back, mutual TLS, signed and encrypted) vs a bare mTLS GET /healthz on atena.
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from renkei.core.crypto import envelope, pki
from renkei.core.messaging import open_message, seal
from renkei.dummy.population import generate_population
from renkei.federation import demo
from renkei.federation.process import Federation
from renkei.federation.topology import SHINJUKU, Layout


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


def bench_inquiries(tmp: Path, count: int = 300, concurrency: int = 8) -> None:
    import httpx

    layout = Layout(tmp / "var", 18800 + random.randrange(0, 50) * 10)
    pop = generate_population(seed=11, shinjuku=150, nakano=100)
    fed = Federation()
    try:
        demo.prepare(layout, pop)
        demo.start(layout, fed)
        clients = demo.open_clients(layout)
        scenarios = demo.play(layout, pop, clients)
        request = next(sc.request for sc in scenarios if sc.name == "a_move_in_tax")
        creds = layout.creds_dir(SHINJUKU, "atena")
        ctx = pki.client_ssl_context(creds / "tls.crt", creds / "tls.key", layout.ca_cert)
        base = layout.url(SHINJUKU, "atena")
        # Staff S0001 signs in (password + TOTP from set-up's credentials file).
        staff_headers = clients["shinjuku"].staff_headers("S0001")
        with httpx.Client(verify=ctx, timeout=30) as client:

            def health() -> float:
                t = time.perf_counter()
                client.get(base + "/healthz").raise_for_status()
                return (time.perf_counter() - t) * 1000

            def inquire() -> float:
                t = time.perf_counter()
                r = client.post(base + "/v1/inquiries", json=request, headers=staff_headers)
                assert r.status_code == 200 and r.json()["status"] == "answered", r.text
                return (time.perf_counter() - t) * 1000

            for label, fn in (("baseline mTLS GET /healthz", health), ("inquiry round trip", inquire)):
                fn()
                start = time.perf_counter()
                with ThreadPoolExecutor(concurrency) as pool:
                    lat = list(pool.map(lambda _, f=fn: f(), range(count)))
                wall = time.perf_counter() - start
                q = statistics.quantiles(lat, n=100)
                print(f"{label}: {count / wall:,.0f}/s at concurrency {concurrency}; p50 {q[49]:.1f} ms, p95 {q[94]:.1f} ms")
                if label.startswith("baseline"):
                    baseline_rate = count / wall
                else:
                    print(f"inquiry/baseline throughput ratio {count / wall / baseline_rate:.3f}")
    finally:
        fed.stop()


def main() -> int:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print("== renkei bench (synthetic data; this machine) ==")
        bench_envelope(tmp)
        bench_inquiries(tmp)
    # Audit log: batch append rate and verification of 1,000,000 entries (issue 3 goals).
    import bench_audit

    bench_audit.main([])
    # Synthetic population: 343,000 people with all business data (issue 4 goals).
    import bench_dummy

    bench_dummy.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
