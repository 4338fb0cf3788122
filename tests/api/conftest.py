"""Fixtures of the in-process API tests: one throw-away federation per test module."""

from __future__ import annotations

import pytest

from tests.api.fed import Federation, build_federation


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return build_federation(tmp_path_factory)
