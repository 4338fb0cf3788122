"""Sealed messages: every way a message can be wrong is refused with its own code."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import MetaData, func, select

from renkei.core.crypto import envelope, pki
from renkei.core.db import kernel_tables, make_engine, make_sessionmaker
from renkei.core.errors import Problem
from renkei.core.wire.keydir import KeyDirectory
from renkei.core.wire.messaging import open_message, remember, seal

ORG = "1310410000000000"
PEER = "1311480000000000"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[envelope.SigningKey, KeyDirectory, envelope.SigningKey]:
    tmp = tmp_path_factory.mktemp("pki")
    pki.create_ca(tmp / "ca")
    a = pki.issue_node_credentials(tmp / "ca", tmp / "a", ORG, "新宿区", "chukan")
    b = pki.issue_node_credentials(tmp / "ca", tmp / "b", PEER, "中野区", "chukan")
    kd = KeyDirectory.from_documents([json.loads(a.public.read_text()), json.loads(b.public.read_text())])
    return envelope.load_signing_key(a.sig_key), kd, envelope.load_signing_key(b.sig_key)


def _open(token: str, kd: KeyDirectory, aud: str = PEER, now: datetime | None = None) -> object:
    return open_message(
        token,
        kd.public_key(envelope.peek_kid(token)),
        expected_aud=aud,
        now=now or datetime.now(UTC),
        max_skew_seconds=300,
    )


def test_round_trip(keys: tuple[envelope.SigningKey, KeyDirectory, envelope.SigningKey]) -> None:
    key, kd, _ = keys
    msg = _open(seal(key, ORG, PEER, "t.x", {"a": "名前"}), kd)
    assert msg.iss == ORG and msg.aud == PEER and msg.body == {"a": "名前"}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda t: t[:-4] + ("AAAA" if not t.endswith("AAAA") else "BBBB"), "bad_signature"),
        (lambda t: "not-a-jws", "malformed_message"),
    ],
)
def test_tampering_refused(keys: tuple[envelope.SigningKey, KeyDirectory, envelope.SigningKey], mutate: object, code: str) -> None:
    key, kd, _ = keys
    token = mutate(seal(key, ORG, PEER, "t.x", {"a": 1}))  # type: ignore[operator]
    with pytest.raises((Problem, envelope.EnvelopeError)) as info:
        _open(token, kd)
    if isinstance(info.value, Problem):
        assert info.value.code in {code, "bad_signature", "malformed_message"}


def test_unknown_key_refused(keys: tuple[envelope.SigningKey, KeyDirectory, envelope.SigningKey]) -> None:
    key, _, _ = keys
    with pytest.raises(Problem) as info:
        open_message(seal(key, ORG, PEER, "t", {}), None, expected_aud=PEER, now=datetime.now(UTC), max_skew_seconds=300)
    assert info.value.code == "unknown_sender" and info.value.status == 401


def test_unreadable_signature_is_malformed_400_like_any_malformed_message(
    keys: tuple[envelope.SigningKey, KeyDirectory, envelope.SigningKey],
) -> None:
    # The header names a known key, but the payload segment is not base64url: the
    # envelope says "malformed", which is 400 like every other malformed_message (it
    # was 401 here and 400 elsewhere).
    key, kd, _ = keys
    header, _, signature = seal(key, ORG, PEER, "t", {}).split(".")
    with pytest.raises(Problem) as info:
        _open(f"{header}.!!!!.{signature}", kd)
    assert (info.value.code, info.value.status) == ("malformed_message", 400)


def test_issuer_must_match_key(keys: tuple[envelope.SigningKey, KeyDirectory, envelope.SigningKey]) -> None:
    key, kd, _ = keys
    with pytest.raises(Problem) as info:
        _open(seal(key, PEER, PEER, "t", {}), kd)  # signed by 新宿区, claims to be 中野区
    assert info.value.code == "issuer_mismatch"


def test_wrong_audience_and_stale(keys: tuple[envelope.SigningKey, KeyDirectory, envelope.SigningKey]) -> None:
    key, kd, _ = keys
    with pytest.raises(Problem) as info:
        _open(seal(key, ORG, PEER, "t", {}), kd, aud=ORG)
    assert info.value.code == "wrong_audience"
    old = datetime.now(UTC) - timedelta(minutes=10)
    with pytest.raises(Problem) as info:
        _open(seal(key, ORG, PEER, "t", {}, now=old), kd)
    assert info.value.code == "stale_message"
    future = datetime.now(UTC) + timedelta(minutes=10)
    with pytest.raises(Problem):
        _open(seal(key, ORG, PEER, "t", {}, now=future), kd)


def test_replay_refused_once_remembered(tmp_path: Path, keys: tuple[envelope.SigningKey, KeyDirectory, envelope.SigningKey]) -> None:
    key, kd, _ = keys
    md = MetaData()
    kernel = kernel_tables(md)
    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    md.create_all(engine)
    sessions = make_sessionmaker(engine)
    msg = _open(seal(key, ORG, PEER, "t", {}), kd)
    now = datetime.now(UTC)
    with sessions() as s:
        remember(s, kernel, msg, now)  # type: ignore[arg-type]
        s.commit()
    with sessions() as s, pytest.raises(Problem) as info:
        remember(s, kernel, msg, now)  # type: ignore[arg-type]
    assert info.value.code == "replayed_message" and info.value.status == 409
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(kernel.received_messages)) == 1


def test_message_id_shaped_like_an_individual_number_is_refused(
    keys: tuple[envelope.SigningKey, KeyDirectory, envelope.SigningKey],
) -> None:
    key, kd, _ = keys
    with pytest.raises(Problem) as info:
        _open(seal(key, ORG, PEER, "t", {}, message_id="abc123456789018x"), kd)
    assert info.value.code == "malformed_message"


def test_generated_message_ids_never_hold_a_12_digit_run() -> None:
    import re

    from renkei.core.wire.messaging import new_message_id

    ids_ = {new_message_id() for _ in range(5000)}
    assert len(ids_) == 5000 and not any(re.search(r"[0-9]{12}", i) for i in ids_)
