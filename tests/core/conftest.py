"""Fixtures shared by the kernel's tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from renkei.core.crypto import envelope, pki

ORG = "1310410000000000"


@dataclass(frozen=True)
class Keys:
    """A node's signing key and the public keys that verify it (an audit log's checkpoints)."""

    signing: envelope.SigningKey
    public: dict[str, Any]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    ca = tmp_path_factory.mktemp("ca")
    pki.create_ca(ca)
    creds = pki.issue_node_credentials(ca, tmp_path_factory.mktemp("org"), ORG, "新宿区", "chukan")
    public = envelope.public_keys_from_document(json.loads(creds.public.read_text(encoding="utf-8")))
    return Keys(envelope.load_signing_key(creds.sig_key), public)
