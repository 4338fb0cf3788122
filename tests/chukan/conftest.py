"""Chukan storage fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.orm import Session

from renkei.catalogue import Catalogue, load_catalogue
from renkei.core.crypto.field import FieldCipher

NOW = datetime(2025, 4, 1, 0, 30, tzinfo=UTC)


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return load_catalogue()


@pytest.fixture(scope="session")
def cipher() -> FieldCipher:
    return FieldCipher.generate()


@pytest.fixture
def session(node_db: Callable[[str], Any]) -> Iterator[Session]:
    s = node_db("chukan")()
    try:
        yield s
    finally:
        s.rollback()
        s.close()
