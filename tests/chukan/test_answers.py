"""The asking chukan checks the provider's answer the hub relays (issue 8, finding 1).

The hub is a stand-in here (the peer client's call returns its signed reply), so every
way an answer can be bad is tried quickly: not a JWE, a JWE with another algorithm or
an ephemeral key on another curve, tampered, for another organization, a plaintext
that is no JWS, signed by the wrong key or organization, stale, for another audience,
not the answer to this question, fields of the wrong shape, values off the layout.
Each is a 502 ``bad_answer`` problem with the serial and a reason, kept as a provision
record and an audit entry; good answers, 該当なし and 回答待ち pass as before.
Runs on SQLite and PostgreSQL. tests/e2e/test_bad_answers.py does it across processes.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from joserfc.jwk import ECKey
from sqlalchemy import select
from starlette.testclient import TestClient

from renkei.catalogue import load_catalogue
from renkei.chukan.app import create_app
from renkei.chukan.models import Base, ProvisionRecord, PseudonymBinding, audit
from renkei.core import ids
from renkei.core.crypto import envelope
from renkei.core.db import make_engine, transaction
from renkei.core.errors import Problem
from renkei.core.wire.client import PeerUnavailable
from renkei.core.wire.messaging import Message, new_message_id, seal
from renkei.federation.topology import HUB, NAKANO, NENKIN, SHINJUKU
from tests.api.fed import (
    JOSE,
    Federation,
    assert_problem,
    build_federation,
    counts,
    fresh_ed25519,
    unchanged,
)
from tests.conftest import BACKENDS, create_pg_database, drop_pg_database

LOCAL_TAX_INFO = "TM00000000000002"
PROCEDURE = "JT01010000074001"
AS_OF = "2024-06-01"
ATENA_NO = ids.make_atena_no(4321)
EDITION = load_catalogue().info_kinds[LOCAL_TAX_INFO].edition_on(date(2024, 6, 1)).edition  # type: ignore[union-attr]
VALUES = {"K001": "2024", "K002": "1", "K003": "3500000", "K004": "120000", "K005": "5000", "K006": "1"}
_SERIALS = itertools.count(20240601000000000001)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64d(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@dataclass
class Hub:
    """Stands in for the hub: replies to the inquiry with what the test put here."""

    reply: dict[str, Any] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    async def call(self, url: str, aud: str, typ: str, body: dict[str, Any], **_: Any) -> Message:
        self.calls.append(url)
        if not url.endswith("/v1/inquiries"):
            raise PeerUnavailable(url, "no hub in this test")  # e.g. a registry refresh
        return Message(new_message_id(), HUB.org_code, SHINJUKU.org_code, "inquiry.answer", 0, self.reply)


@dataclass
class Asker:
    fed: Federation
    app: FastAPI
    client: TestClient
    hub: Hub
    enc_kid: str
    enc_public: Any

    def counts(self) -> dict[str, int]:
        return counts(self.app.state.rt.engine, Base.metadata)

    def ask(self, serial: str, status: str, token: Any) -> Any:
        self.hub.reply = {"serial": serial, "status": status, "answer": token}
        body = {
            "atena_no": ATENA_NO,
            "provider_org": NAKANO.org_code,
            "procedure_code": PROCEDURE,
            "info_kind_code": LOCAL_TAX_INFO,
            "as_of": AS_OF,
        }
        sealed = self.fed.seal(SHINJUKU, SHINJUKU, "inquiry.start", body, node="atena")
        return self.client.post("/v1/inquiries", content=sealed.encode(), headers=JOSE)

    def record(self, serial: str) -> ProvisionRecord | None:
        with self.app.state.rt.sessions() as s:
            return s.scalars(select(ProvisionRecord).where(ProvisionRecord.serial == serial)).first()

    def audit_entries(self, serial: str) -> list[dict[str, Any]]:
        t = audit.entries
        with self.app.state.rt.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.ref == serial).order_by(t.c.seq)).mappings()
            return [dict(r) for r in rows]


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return build_federation(tmp_path_factory)


@pytest.fixture(scope="module", params=BACKENDS)
def asker(
    request: pytest.FixtureRequest, fed: Federation, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Asker]:
    url = (
        create_pg_database()
        if request.param == "postgresql"
        else f"sqlite:///{tmp_path_factory.mktemp('asker') / 'chukan.db'}"
    )
    engine = make_engine(url)
    try:
        app = create_app(fed.config(SHINJUKU, "chukan"), engine=engine)
        # As if the registry had been fetched from the hub: the providers' keys are known.
        for org in (NAKANO, NENKIN, SHINJUKU):
            app.state.rt.registry.directory.add(fed.public_doc(org))
        hub = Hub()
        app.state.rt.peer.call = hub.call
        with TestClient(app) as client:
            with transaction(app.state.rt.sessions) as s:
                s.add(PseudonymBinding(atena_no=ATENA_NO, pseudonym="p" * 40, bound_at=datetime.now(UTC)))
            rt = app.state.rt
            public = envelope.public_keys_from_document(fed.public_doc(SHINJUKU))
            yield Asker(fed, app, client, hub, rt.encryption_key.kid, public[rt.encryption_key.kid])
    finally:
        engine.dispose()
        if request.param == "postgresql":
            drop_pg_database(url)


# --- how a provider makes its answer, and how it can get it wrong ---------------------------------


def _payload(serial: str, status: str = "answered", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"serial": serial, "status": status, "info_kind_code": LOCAL_TAX_INFO, "as_of": AS_OF}
    if status == "answered":
        body.update(
            {"edition": EDITION, "record_key": "2024", "values": dict(VALUES), "valid_from": AS_OF, "valid_to": None}
        )
    body.update(over)
    return body


@dataclass(frozen=True)
class Make:
    """What the provider signs (inner) and how it is sealed for us (outer)."""

    asker: Asker
    serial: str

    def signed(self, payload: dict[str, Any] | None = None, *, key: envelope.SigningKey | None = None,
               iss: str = NAKANO.org_code, aud: str = SHINJUKU.org_code, typ: str = "provision.answer",
               now: datetime | None = None) -> str:
        return seal(key or self.asker.fed.key(NAKANO), iss, aud, typ,
                    payload if payload is not None else _payload(self.serial), now=now)

    def sealed(self, plaintext: bytes | str | None = None, *, to: Any = None, kid: str | None = None) -> str:
        data = plaintext if plaintext is not None else self.signed()
        raw = data.encode() if isinstance(data, str) else data
        return envelope.encrypt(raw, to or self.asker.enc_public, kid or self.asker.enc_kid)

    def header(self, **change: Any) -> str:
        parts = self.sealed().split(".")
        header = json.loads(_b64d(parts[0]))
        header.update(change)
        return ".".join([_b64(json.dumps(header).encode()), *parts[1:]])


def _tampered_tag(m: Make) -> str:
    parts = m.sealed().split(".")
    tag = bytearray(_b64d(parts[4]))
    tag[0] ^= 1
    return ".".join([*parts[:4], _b64(bytes(tag))])


def _for_nakano(m: Make) -> str:
    nakano = envelope.public_keys_from_document(m.asker.fed.public_doc(NAKANO))
    kid = next(k for k, v in nakano.items() if v.curve_name == "X25519")
    return m.sealed(to=nakano[kid], kid=kid)


def _alg_none(m: Make) -> str:
    _, payload, _ = m.signed().split(".")
    header = _b64(json.dumps({"alg": "none", "kid": m.asker.fed.key(NAKANO).kid}).encode())
    return m.sealed(f"{header}.{payload}.")


def _not_json(m: Make) -> str:
    return m.sealed(envelope.sign(b"not json", m.asker.fed.key(NAKANO)))


# name → (status the hub relays, the answer token, the reason the asker gives)
BAD: dict[str, tuple[str, Callable[[Make], Any], str]] = {
    "no-answer": ("answered", lambda m: None, "no_answer"),
    "answer-not-a-string": ("answered", lambda m: 12345, "no_answer"),
    "hub-status-error": ("error", lambda m: m.sealed(), "bad_status"),
    "hub-status-not-a-string": (["answered"], lambda m: m.sealed(), "bad_status"),  # type: ignore[dict-item]
    "not-a-jwe": ("answered", lambda m: "garbage", "malformed"),
    "a-bare-jws": ("answered", lambda m: m.signed(), "malformed"),
    "epk-on-p256": ("answered", lambda m: m.header(epk=ECKey.generate_key("P-256").as_dict(private=False)), "bad_algorithm"),
    "epk-without-x": ("answered", lambda m: m.header(epk={"kty": "OKP", "crv": "X25519"}), "malformed"),
    "alg-dir": ("answered", lambda m: m.header(alg="dir"), "bad_algorithm"),
    "zip": ("answered", lambda m: m.header(zip="DEF"), "bad_algorithm"),
    "tag-tampered": ("answered", _tampered_tag, "decrypt_failed"),
    "for-another-organization": ("answered", _for_nakano, "decrypt_failed"),
    "plaintext-not-a-jws": ("answered", lambda m: m.sealed(b'{"values": {}}'), "not_signed"),
    "plaintext-not-ascii": ("answered", lambda m: m.sealed("回答".encode()), "not_signed"),
    "signed-by-another-organization": ("answered", lambda m: m.sealed(m.signed(key=m.asker.fed.key(NENKIN), iss=NENKIN.org_code)), "wrong_signer"),
    "unknown-key-of-the-provider": ("answered", lambda m: m.sealed(m.signed(key=fresh_ed25519(f"{NAKANO.org_code}:chukan:sig:99"))), "unknown_signer"),
    "bad-signature": ("answered", lambda m: m.sealed(m.signed(key=m.asker.fed.stranger_same_code(NAKANO))), "bad_signature"),
    "alg-none": ("answered", _alg_none, "bad_algorithm"),
    "payload-not-json": ("answered", _not_json, "malformed_message"),
    "issuer-not-the-signer": ("answered", lambda m: m.sealed(m.signed(iss=NENKIN.org_code)), "issuer_mismatch"),
    "for-another-audience": ("answered", lambda m: m.sealed(m.signed(aud=NENKIN.org_code)), "wrong_audience"),
    "stale": ("answered", lambda m: m.sealed(m.signed(now=datetime.now(UTC) - timedelta(hours=1))), "stale_message"),
    "wrong-type": ("answered", lambda m: m.sealed(m.signed(typ="provision.request")), "wrong_type"),
    "other-serial": ("answered", lambda m: m.sealed(m.signed(_payload("9" * 20))), "mismatch"),
    "other-status": ("answered", lambda m: m.sealed(m.signed(_payload(m.serial, "no_data"))), "mismatch"),
    "other-info-kind": ("answered", lambda m: m.sealed(m.signed(_payload(m.serial, info_kind_code="TM00000000000001"))), "mismatch"),
    "other-date": ("answered", lambda m: m.sealed(m.signed(_payload(m.serial, as_of="2024-06-02"))), "mismatch"),
    "values-not-an-object": ("answered", lambda m: m.sealed(m.signed(_payload(m.serial, values=["K001"]))), "bad_fields"),
    "value-a-number": ("answered", lambda m: m.sealed(m.signed(_payload(m.serial, values={**VALUES, "K003": 3500000}))), "bad_fields"),
    "no-edition": ("answered", lambda m: m.sealed(m.signed(_payload(m.serial, edition=None))), "bad_fields"),
    "record-key-too-long": ("answered", lambda m: m.sealed(m.signed(_payload(m.serial, record_key="k" * 65))), "bad_fields"),
    "valid-from-not-a-date": ("answered", lambda m: m.sealed(m.signed(_payload(m.serial, valid_from="2024-02-30"))), "bad_fields"),
    "published-after-the-date": ("answered", lambda m: m.sealed(m.signed(_payload(m.serial, valid_from="2024-06-02"))), "out_of_period"),
    "ended-before-the-date": ("answered", lambda m: m.sealed(m.signed(_payload(m.serial, valid_from="2024-01-01", valid_to="2024-05-31"))), "out_of_period"),
    "code-not-in-list": ("answered", lambda m: m.sealed(m.signed(_payload(m.serial, values={**VALUES, "K002": "7"}))), "layout"),
    "unknown-item": ("answered", lambda m: m.sealed(m.signed(_payload(m.serial, values={**VALUES, "K999": "1"}))), "layout"),
    "required-item-missing": ("answered", lambda m: m.sealed(m.signed(_payload(m.serial, values={k: v for k, v in VALUES.items() if k != "K001"}))), "layout"),
    "unknown-edition": ("answered", lambda m: m.sealed(m.signed(_payload(m.serial, edition="9999"))), "layout"),
}


def _serial() -> str:
    return str(next(_SERIALS))


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_answer_is_refused_kept_and_audited(asker: Asker, name: str) -> None:
    status, make, reason = BAD[name]
    serial = _serial()
    before = asker.counts()
    problem = assert_problem(asker.ask(serial, status, make(Make(asker, serial))), 502, "bad_answer")
    assert problem["serial"] == serial and problem["reason_code"] == reason, problem
    assert "処理通番" in problem["title"] and problem.get("detail")
    # Kept under the serial, with the reason, and audited (one transaction: both or none).
    row = asker.record(serial)
    assert row is not None and (row.direction, row.outcome) == ("inquiry", "bad_answer")
    assert row.counterpart_org == NAKANO.org_code and row.atena_no == ATENA_NO
    assert row.reason is not None and row.reason.startswith(f"{reason}: ")
    [entry] = asker.audit_entries(serial)
    assert (entry["action"], entry["outcome"], entry["actor"]) == ("inquiry.send", "bad_answer", SHINJUKU.org_code)
    assert entry["detail"] == {"reason_code": reason}
    after = asker.counts()
    assert after["provision_records"] == before["provision_records"] + 1
    assert after["received_messages"] == before["received_messages"] + 1
    assert after["fukuhon"] == before["fukuhon"] and after["pseudonym_bindings"] == before["pseudonym_bindings"]


def test_nothing_the_provider_wrote_is_echoed(asker: Asker) -> None:
    # A layout problem names the issue codes, never an item the provider invented.
    serial = _serial()
    m = Make(asker, serial)
    odd = m.sealed(m.signed(_payload(serial, values={**VALUES, "X123456789018": "secret-value"})))
    problem = assert_problem(asker.ask(serial, "answered", odd), 502, "bad_answer")
    row = asker.record(serial)
    assert row is not None
    for text in (json.dumps(problem, ensure_ascii=False), row.reason or ""):
        assert "123456789018" not in text and "secret-value" not in text


@pytest.mark.parametrize("status", ["answered", "no_data", "pending"])
def test_good_answers_pass_as_before(asker: Asker, status: str) -> None:
    serial = _serial()
    m = Make(asker, serial)
    resp = asker.ask(serial, status, m.sealed(m.signed(_payload(serial, status))))
    assert resp.status_code == 200, resp.text
    result = _opened(asker, resp.text)
    assert (result["serial"], result["status"]) == (serial, status)
    if status == "answered":
        assert result["values"] == VALUES and result["edition"] == EDITION
        assert (result["valid_from"], result["valid_to"]) == (AS_OF, None)
    else:
        assert "values" not in result
    row = asker.record(serial)
    assert row is not None and row.outcome == status
    assert [e["outcome"] for e in asker.audit_entries(serial)] == [status]


def _opened(asker: Asker, token: str) -> dict[str, Any]:
    payload = orjson.loads(_b64d(token.split(".")[1]))
    assert payload["iss"] == SHINJUKU.org_code and payload["typ"] == "inquiry.result"
    body: dict[str, Any] = payload["body"]
    return body


def test_an_answer_signed_with_the_older_eddsa_name_passes(asker: Asker) -> None:
    # A provider built on another JOSE library signs Ed25519 as "EdDSA" (RFC 8037).
    serial = _serial()
    key = asker.fed.key(NAKANO)
    payload = orjson.dumps(
        {"id": new_message_id(), "iss": NAKANO.org_code, "aud": SHINJUKU.org_code,
         "typ": "provision.answer", "iat": int(datetime.now(UTC).timestamp()), "body": _payload(serial)}
    )
    message = f"{_b64(json.dumps({'alg': 'EdDSA', 'kid': key.kid}).encode())}.{_b64(payload)}"
    token = f"{message}.{_b64(key.key.private_key.sign(message.encode()))}"  # type: ignore[union-attr]
    resp = asker.ask(serial, "answered", Make(asker, serial).sealed(token))
    assert resp.status_code == 200, resp.text
    assert _opened(asker, resp.text)["values"] == VALUES


def test_a_hub_reply_without_serial_is_refused_and_audited(asker: Asker) -> None:
    before = asker.counts()
    for serial in (None, "", "12345", "x" * 20, 20240601000000000001):
        resp = asker.ask(serial, "answered", "garbage")  # type: ignore[arg-type]
        problem = assert_problem(resp, 502, "bad_peer_response")
        assert problem["reason_code"] == "bad_serial" and "serial" not in problem
    after = asker.counts()
    # Nothing but the audit entries and the remembered request ids.
    unchanged({k: v for k, v in before.items() if k != "received_messages"}, after)
    assert after["audit_entries"] == before["audit_entries"] + 5
    assert after["received_messages"] == before["received_messages"] + 5


def test_a_serial_the_hub_repeats_is_refused(asker: Asker) -> None:
    serial = _serial()
    m = Make(asker, serial)
    assert asker.ask(serial, "no_data", m.sealed(m.signed(_payload(serial, "no_data")))).status_code == 200
    before = asker.counts()
    again = asker.ask(serial, "no_data", m.sealed(m.signed(_payload(serial, "no_data"))))
    problem = assert_problem(again, 502, "bad_peer_response")
    assert problem["reason_code"] == "duplicate_serial" and problem["serial"] == serial
    assert asker.counts()["provision_records"] == before["provision_records"]
    assert [e["outcome"] for e in asker.audit_entries(serial)] == ["no_data", "duplicate_serial"]


@pytest.mark.parametrize("good_serial", [True, False], ids=["serial", "not-a-serial"])
def test_the_hubs_refusal_is_kept_as_before(asker: Asker, good_serial: bool) -> None:
    serial = _serial() if good_serial else "x" * 30

    async def refuse(url: str, aud: str, typ: str, body: dict[str, Any], **_: Any) -> Message:
        raise Problem(403, "rule_violation", "照会できる規定がありません。", "別表", serial=serial)

    rt = asker.app.state.rt
    rt.peer.call = refuse
    try:
        sealed = asker.fed.seal(SHINJUKU, SHINJUKU, "inquiry.start", {
            "atena_no": ATENA_NO, "provider_org": NAKANO.org_code, "procedure_code": PROCEDURE,
            "info_kind_code": LOCAL_TAX_INFO, "as_of": AS_OF,
        }, node="atena")
        resp = asker.client.post("/v1/inquiries", content=sealed.encode(), headers=JOSE)
    finally:
        rt.peer.call = asker.hub.call
    problem = assert_problem(resp, 403, "rule_violation")
    if not good_serial:
        # Not a serial the hub issues: nothing kept under it, and not passed on to atena
        # (whose log keeps 20 characters).
        assert "serial" not in problem and asker.record(serial) is None
        return
    assert problem["serial"] == serial
    row = asker.record(serial)
    assert row is not None and row.outcome == "refused"
    assert [e["outcome"] for e in asker.audit_entries(serial)] == ["rule_violation"]
