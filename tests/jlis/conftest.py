"""J-LIS storage fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.orm import Session

NOW = datetime(2025, 4, 1, 0, 30, tzinfo=UTC)


@pytest.fixture
def session(node_db: Callable[[str], Any]) -> Iterator[Session]:
    s = node_db("jlis")()
    try:
        yield s
    finally:
        s.rollback()
        s.close()
