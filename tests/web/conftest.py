"""Fixtures of the staff UI tests: Shinjuku's atena staff app on a fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.fed import Federation, build_federation
from tests.web.kit import Web, open_web


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return build_federation(tmp_path_factory)


@pytest.fixture
def web(fed: Federation, db_url: str) -> Iterator[Web]:
    with open_web(fed, db_url) as w:
        yield w
