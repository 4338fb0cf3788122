from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from renkei.catalogue import DATA_DIR, Catalogue, load_catalogue


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return load_catalogue()


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    """A writable copy of the packaged catalogue data, to break in tests."""
    target = tmp_path / "catalogue"
    shutil.copytree(DATA_DIR, target, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    return target
