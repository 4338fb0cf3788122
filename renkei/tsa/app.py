"""Time-stamp authority app factory (タイムスタンプ局)."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from renkei.core.app import node_app
from renkei.core.config import NodeConfig
from renkei.core.wire.runtime import build_runtime, follow_hub_registry, hub_registry_view
from renkei.staff.routes import StaffTables, mount_staff_api
from renkei.tsa.api import router
from renkei.tsa.models import SCHEMA, Base, audit, auth, exports, guard, kernel

MIGRATIONS = SCHEMA.migrations


def create_app(config: NodeConfig, *, engine: Engine | None = None) -> FastAPI:
    # Submitters' keys come from the hub's organization registry, refreshed on an unknown kid.
    rt = build_runtime(config, Base.metadata, kernel, hub_registry_view(config), audit, guard=guard, engine=engine)
    follow_hub_registry(rt)
    app = node_app(
        title="renkei tsa — タイムスタンプ局",
        description="各ノードの監査ログのチェックポイント（将来は照会記録の束）に副署し、ノードごとに最新の先頭を保持する。"
        "個人に関する情報は保持しない。",
        rt=rt,
        router=router,
        migrations_dir=MIGRATIONS,
        metadata=Base.metadata,
    )
    # Operators: sign-in, administration, alerts (refused heads), audit and its export.
    mount_staff_api(app, StaffTables(auth=auth, exports=exports, guard=guard))
    return app
