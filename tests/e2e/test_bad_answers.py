"""End to end: a provider's bad answer does not crash the asking side (issue 8, finding 1).

The federation runs as real processes over mutual TLS (the demo, on SQLite and on
PostgreSQL). After the demo scenarios, 中野区's chukan is replaced by a fake: a small
ASGI app served by uvicorn over mutual TLS with 中野区's credentials, on the port the
hub's registry names for it. It answers the hub's provision requests in the protocol,
signed by 中野区, but with an answer chosen by the test. Staff at 新宿区 ask through
atena's API. A good answer from the fake passes (so the fake speaks the protocol);
each bad one is a 502 problem with a stable code, a Japanese title and the serial,
kept by the asking chukan as a provision record and an audit entry. Nothing is 500.
"""

from __future__ import annotations

import base64
import json
import random
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
import uvicorn
from joserfc.jwk import ECKey
from sqlalchemy import create_engine, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from renkei.catalogue import load_catalogue
from renkei.core.crypto import envelope
from renkei.core.wire import contract
from renkei.core.wire.messaging import JOSE_MEDIA_TYPE, seal
from renkei.dummy import business
from renkei.dummy.model import NAKANO as NAKANO_LG
from renkei.dummy.model import SHINJUKU as SHINJUKU_LG
from renkei.dummy.model import SynthPopulation
from renkei.federation import demo
from renkei.federation.process import Federation
from renkei.federation.topology import HUB, NAKANO, NENKIN, ORGS, SHINJUKU, Layout
from tests.api.fed import has_japanese
from tests.conftest import BACKENDS, create_pg_database, drop_pg_database

pytestmark = pytest.mark.e2e


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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64d(segment: str | bytes) -> bytes:
    text_ = segment.decode() if isinstance(segment, bytes) else segment
    return base64.urlsafe_b64decode(text_ + "=" * (-len(text_) % 4))


class FakeProvider:
    """中野区's chukan as a peer that answers what the test sets in ``mode``."""

    def __init__(self, layout: Layout, values: dict[str, str]) -> None:
        self.layout = layout
        self.mode = "good"
        self.values = values
        self.nakano = envelope.load_signing_key(layout.creds_dir(NAKANO, "chukan") / "sig.jwk")
        self.nenkin = envelope.load_signing_key(layout.creds_dir(NENKIN, "chukan") / "sig.jwk")
        doc = json.loads((layout.creds_dir(SHINJUKU, "chukan") / "public.json").read_text(encoding="utf-8"))
        keys = envelope.public_keys_from_document(doc)
        self.enc_kid, self.enc_public = next((k, v) for k, v in keys.items() if v.curve_name == "X25519")
        self.edition = load_catalogue().info_kinds[demo.LOCAL_TAX_INFO].edition_on(  # type: ignore[union-attr]
            date.fromisoformat(demo.TAX_COPY_PUBLISHED)
        ).edition
        self.asked: list[str] = []
        app = Starlette(
            routes=[
                Route("/healthz", lambda _: JSONResponse({"status": "ok"})),
                Route("/v1/provisions", self.provisions, methods=["POST"]),
            ]
        )
        creds = layout.creds_dir(NAKANO, "chukan")
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=layout.port(NAKANO, "chukan"),
            ssl_certfile=str(creds / "tls.crt"),
            ssl_keyfile=str(creds / "tls.key"),
            ssl_ca_certs=str(layout.ca_cert),
            ssl_cert_reqs=ssl.CERT_REQUIRED,
            log_level="warning",
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the fake provider did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def answer(self, request: dict[str, Any]) -> Any:
        """The inner answer (a JWE for the inquirer) for the current mode."""
        payload = {
            "serial": request["serial"],
            "status": "answered",
            "info_kind_code": request["info_kind_code"],
            "as_of": request["as_of"],
            "edition": self.edition,
            "record_key": self.values["K001"],
            "values": dict(self.values),
            "valid_from": demo.TAX_COPY_PUBLISHED,
            "valid_to": None,
        }
        if self.mode == "layout":
            payload["values"] = {**self.values, "K002": "7"}  # not in the code list
        key, iss = (self.nenkin, NENKIN.org_code) if self.mode == "wrong_signer" else (self.nakano, NAKANO.org_code)
        inner = seal(key, iss, request["inquirer_org"], "provision.answer", payload)
        plaintext = b"this is not a JWS" if self.mode == "not_jws" else inner.encode()
        token = envelope.encrypt(plaintext, self.enc_public, self.enc_kid)
        if self.mode == "p256_epk":
            # The probe's answer: the ephemeral key on P-256 instead of X25519.
            parts = token.split(".")
            header = json.loads(_b64d(parts[0]))
            header["epk"] = ECKey.generate_key("P-256").as_dict(private=False)
            token = ".".join([_b64(json.dumps(header).encode()), *parts[1:]])
        return token

    async def provisions(self, request: Request) -> Response:
        raw = await request.body()
        message = json.loads(_b64d(raw.split(b".")[1]))  # the hub's request; a fake need not check it
        body = message["body"]
        self.asked.append(body["serial"])
        if self.mode == "garbage_reply":
            return PlainTextResponse("<html>not a signed answer</html>")
        if self.mode == "internal_error":
            return JSONResponse(
                {"type": "urn:renkei:problem:internal_error", "title": "内部エラー", "status": 500, "code": "internal_error"},
                status_code=500,
                media_type="application/problem+json",
            )
        reply = seal(
            self.nakano,
            NAKANO.org_code,
            HUB.org_code,
            contract.PROVISION_REQUEST.reply_typ,  # the protocol's reply to the hub
            {"serial": body["serial"], "status": "answered", "answer": self.answer(body)},
        )
        return Response(reply, media_type=JOSE_MEDIA_TYPE)


@dataclass
class Run:
    layout: Layout
    pop: SynthPopulation
    urls: dict[str, str]
    clients: dict[str, demo.AtenaClient]
    request: dict[str, Any]
    fake: FakeProvider

    def inquire(self, mode: str) -> tuple[int, dict[str, Any]]:
        self.fake.mode = mode
        return self.clients["shinjuku"].inquire("S0001", self.request)

    def rows(self, org_slug: str, node: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        org = next(o for o in ORGS if o.slug == org_slug)
        url = self.urls.get(f"{org_slug}/{node}") or f"sqlite:///{self.layout.node_dir(org, node) / f'{node}.db'}"
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(sql), params)]
        finally:
            engine.dispose()


def _stop(fed: Federation, name: str) -> None:
    proc = next(p for p in fed.processes if p.name == name)
    assert proc.popen is not None
    proc.popen.send_signal(signal.SIGTERM)
    proc.popen.wait(timeout=20)


@pytest.fixture(scope="module", params=BACKENDS)
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    var = tmp_path_factory.mktemp(f"bad-answers-{request.param}")
    layout = Layout(var, _free_base_port())
    urls: dict[str, str] = {}
    if request.param == "postgresql":
        for org in ORGS:
            for node in org.nodes:
                urls[f"{org.slug}/{node}"] = create_pg_database()
    pop = demo.generate_population(seed=7, shinjuku=150, nakano=100)
    fed = Federation()
    fake: FakeProvider | None = None
    clients: dict[str, demo.AtenaClient] = {}
    try:
        demo.prepare(layout, pop, urls)
        demo.start(layout, fed)
        clients = demo.open_clients(layout)
        scenarios = demo.play(layout, pop, clients)
        assert all(sc.result["ok"] for sc in scenarios)
        asked = next(sc for sc in scenarios if sc.name == "a_move_in_tax")
        head = next(
            p for p in pop.persons
            if business.number(pop, p, SHINJUKU_LG, business.SYSTEM_CHILD_ALLOWANCE) == asked.request["business_atena_no"]
        )
        values = demo.tax_copy_values(pop, head, NAKANO_LG)
        assert values
        _stop(fed, f"{NAKANO.name}/chukan")
        fake = FakeProvider(layout, values)
        fake.start()
        # The hub's pooled connections to the real chukan are dropped after 4 s idle.
        time.sleep(4.5)
        yield Run(layout, pop, urls, clients, asked.request, fake)
    finally:
        if fake is not None:
            fake.stop()
        for client in clients.values():
            client.close()
        fed.stop()
        for url in urls.values():
            drop_pg_database(url)


def test_a_good_answer_from_the_fake_passes(run: Run) -> None:
    status, body = run.inquire("good")
    assert status == 200 and body["status"] == "answered", body
    assert body["values"] == run.fake.values
    assert run.fake.asked and run.fake.asked[-1] == body["serial"]


def _problem(status: int, body: dict[str, Any], code: str) -> str:
    assert status == 502, (status, body)
    assert body["code"] == code and body["status"] == 502, body
    assert isinstance(body.get("title"), str) and has_japanese(body["title"]), body
    serial = body.get("serial")
    assert isinstance(serial, str) and len(serial) == 20 and serial.isdigit(), body
    return serial


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("p256_epk", "bad_algorithm"),
        ("not_jws", "not_signed"),
        ("wrong_signer", "wrong_signer"),
        ("layout", "layout"),
    ],
)
def test_a_bad_answer_is_a_502_kept_and_audited_under_its_serial(run: Run, mode: str, reason: str) -> None:
    status, body = run.inquire(mode)
    serial = _problem(status, body, "bad_answer")
    assert body["reason_code"] == reason and "処理通番" in body["title"], body
    assert run.fake.asked[-1] == serial  # the hub did forward it to the (fake) provider
    # The asking chukan keeps the outcome under the serial and audits it.
    records = run.rows(
        "shinjuku", "chukan",
        "select direction, outcome, counterpart_org, reason from provision_records where serial = :s",
        s=serial,
    )
    assert len(records) == 1 and records[0][:3] == ("inquiry", "bad_answer", NAKANO.org_code), records
    assert str(records[0][3]).startswith(f"{reason}: ")
    audit = run.rows(
        "shinjuku", "chukan",
        "select action, outcome, actor from audit_entries where ref = :s", s=serial,
    )
    assert audit == [("inquiry.send", "bad_answer", SHINJUKU.org_code)]
    # atena logs and audits what staff were told.
    logged = run.rows("shinjuku", "atena", "select staff_id, outcome from inquiry_log where serial = :s", s=serial)
    assert logged == [("S0001", "bad_answer")]
    atena_audit = run.rows("shinjuku", "atena", "select actor, outcome from audit_entries where ref = :s", s=serial)
    assert atena_audit == [("S0001", "bad_answer")]
    # The hub relayed an answer it cannot read: it has it as answered.
    hub = run.rows("hub", "hub", "select outcome from provision_records where serial = :s", s=serial)
    assert hub == [("answered",)]


@pytest.mark.parametrize(("mode", "code"), [("garbage_reply", "bad_peer_response"), ("internal_error", "peer_error")])
def test_a_bad_reply_to_the_hub_is_a_502_kept_under_its_serial(run: Run, mode: str, code: str) -> None:
    status, body = run.inquire(mode)
    serial = _problem(status, body, code)
    records = run.rows(
        "shinjuku", "chukan", "select outcome from provision_records where serial = :s", s=serial
    )
    assert records == [("error",)]
    audit = run.rows("shinjuku", "chukan", "select outcome from audit_entries where ref = :s", s=serial)
    assert audit == [(code,)]
    hub = run.rows("hub", "hub", "select outcome, reason_code from provision_records where serial = :s", s=serial)
    assert hub == [("error", code)]


def test_no_node_answered_500(run: Run) -> None:
    logs = {
        f"{org.slug}/{node}": (run.layout.node_dir(org, node) / "server.log")
        for org in ORGS
        for node in org.nodes
    }
    found = {name: path.read_text(encoding="utf-8", errors="replace") for name, path in logs.items() if path.exists()}
    assert "shinjuku/chukan" in found and "hub/hub" in found
    assert not [name for name, log in found.items() if "unexpected_error" in log], {
        name: log[-2000:] for name, log in found.items() if "unexpected_error" in log
    }
