"""Each node's Alembic migrations produce exactly its models' schema, on both backends."""

from __future__ import annotations

import importlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tests.conftest import migrated


@pytest.mark.parametrize("node", ["hub", "jlis", "chukan", "atena", "tsa"])
def test_migrations_match_models(db_url: str, node: str) -> None:
    engine, _ = migrated(db_url, node)
    models = importlib.import_module(f"renkei.{node}.models")
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, models.Base.metadata)
        assert diff == []
        # A second run is a no-op.
        migrated(db_url, node)[0].dispose()
    finally:
        engine.dispose()
