"""Fixtures of the atena API tests: Shinjuku's atena, in-process, on a throw-away federation."""

from __future__ import annotations

import pytest

from tests.api.fed import Federation, build_federation


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return build_federation(tmp_path_factory)
