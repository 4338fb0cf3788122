"""The echo chain is what the inquiry path's baseline claims: hop processes served over
mutual TLS, each forwarding to the next, the last echoing."""

from __future__ import annotations

import signal
import ssl
from pathlib import Path

import httpx
import pytest

from bench import loadgen
from bench.echo_chain import EchoChain

pytestmark = pytest.mark.e2e


def test_two_hops_forward_echo_and_need_a_client_certificate(tmp_path: Path) -> None:
    with EchoChain(tmp_path, hops=2) as chain:
        assert chain.client is not None
        tls = loadgen.Tls(chain.client.tls_cert, chain.client.tls_key, chain.ca)
        body = b'{"ping": 1}'
        request = loadgen.Request("POST", chain.url + "/echo", {"content-type": "application/json"}, body)
        plan = loadgen.Plan("closed", concurrency=2, requests=20, warmup=0)
        r = loadgen.run(loadgen.Cycle((request,)), plan, check=loadgen.Check(200, body), tls=tls)
        assert (r.sent, r.ok, r.errors) == (20, 20, {})

        # Without a client certificate of the chain's CA the handshake fails.
        anonymous = ssl.create_default_context(cafile=str(chain.ca))
        with pytest.raises(httpx.HTTPError), httpx.Client(verify=anonymous) as client:
            client.post(chain.url + "/echo", content=body)

        # Hop 0 forwards: with hop 1 gone it can only answer 502.
        last = chain.fed.processes[1].popen
        assert last is not None
        last.send_signal(signal.SIGTERM)
        last.wait(timeout=15)
        r = loadgen.run(loadgen.Cycle((request,)), plan, check=loadgen.Check(200, body), tls=tls)
        assert r.ok == 0 and r.errors == {"502": 20}
        assert r.samples["502"].startswith("next hop unavailable")
