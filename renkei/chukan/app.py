"""Intermediate-server app factory: 自治体中間サーバー."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from renkei.catalogue import Catalogue, load_catalogue
from renkei.chukan.api import router
from renkei.chukan.models import SCHEMA, Base, audit, auth, exports, guard, kernel
from renkei.chukan.staff_routes import provision_records_export, staff_routes
from renkei.core.app import node_app
from renkei.core.config import NodeConfig
from renkei.core.wire.runtime import build_runtime, follow_hub_registry, hub_registry_view
from renkei.staff.routes import StaffTables, mount_staff_api

MIGRATIONS = SCHEMA.migrations


def create_app(config: NodeConfig, *, engine: Engine | None = None, catalogue: Catalogue | None = None) -> FastAPI:
    rt = build_runtime(config, Base.metadata, kernel, hub_registry_view(config), audit, guard=guard, engine=engine)
    follow_hub_registry(rt)
    app = node_app(
        title="renkei chukan — 自治体中間サーバー",
        description="副本の保持、符号の管理、自動応答、情報照会の中継、情報提供等の記録。個人番号は保持しない。",
        rt=rt,
        router=router,
        migrations_dir=MIGRATIONS,
        metadata=Base.metadata,
    )
    app.state.catalogue = catalogue or load_catalogue()
    # Staff: sign-in, administration, alerts, audit, exports, and the provision records
    # of the affairs each clerk holds.
    access = mount_staff_api(
        app,
        StaffTables(auth=auth, exports=exports, guard=guard),
        extra_exports=[provision_records_export()],
    )
    app.include_router(staff_routes(access))
    return app
