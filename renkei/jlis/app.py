"""J-LIS app factory."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from renkei.core.app import node_app
from renkei.core.config import NodeConfig
from renkei.core.wire.runtime import build_runtime, follow_hub_registry, hub_registry_view
from renkei.jlis.api import router
from renkei.jlis.models import SCHEMA, Base, audit, auth, exports, guard, kernel
from renkei.staff.admin import node_cipher
from renkei.staff.routes import StaffTables, mount_staff_api

MIGRATIONS = SCHEMA.migrations


def create_app(config: NodeConfig, *, engine: Engine | None = None) -> FastAPI:
    rt = build_runtime(config, Base.metadata, kernel, hub_registry_view(config), audit, guard=guard, engine=engine)
    follow_hub_registry(rt)
    # Individual numbers at rest are sealed with the node's keyring (also TOTP secrets).
    cipher = node_cipher(config)
    app = node_app(
        title="renkei jlis — 地方公共団体情報システム機構",
        description="個人番号と住民票コードの対応、符号取得の中継。",
        rt=rt,
        router=router,
        migrations_dir=MIGRATIONS,
        metadata=Base.metadata,
        migration_attributes={"field_cipher": cipher},
    )
    # Operators: sign-in, administration, alerts, audit and its export (JSON routes).
    mount_staff_api(app, StaffTables(auth=auth, exports=exports, guard=guard), cipher=cipher)
    return app
