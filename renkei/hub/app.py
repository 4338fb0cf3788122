"""Hub app factory: 情報提供ネットワークシステム."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine

from renkei.catalogue import Catalogue, load_catalogue
from renkei.core.app import node_app
from renkei.core.config import NodeConfig
from renkei.core.wire.keydir import KeyDirectory
from renkei.core.wire.runtime import RegistryView, build_runtime
from renkei.hub import service
from renkei.hub.api import router
from renkei.hub.models import SCHEMA, Base, audit, auth, exports, guard, kernel
from renkei.staff.routes import StaffTables, mount_staff_api

MIGRATIONS = SCHEMA.migrations


class DbRegistryView(RegistryView):
    """The hub reads keys from its own registry tables on every lookup: no process-local state."""

    sessions: Any = None

    async def lookup(self, kid: str) -> Any | None:
        with self.sessions() as s:
            doc = service.key_document(s, kid)
        if doc is None:
            return None
        return KeyDirectory.from_documents([{"org_code": kid.split(":")[0], "keys": [doc]}]).public_key(kid)


def create_app(config: NodeConfig, *, engine: Engine | None = None, catalogue: Catalogue | None = None) -> FastAPI:
    view = DbRegistryView(KeyDirectory())
    rt = build_runtime(config, Base.metadata, kernel, view, audit, guard=guard, engine=engine)
    view.sessions = rt.sessions
    app = node_app(
        title="renkei hub — 情報提供ネットワークシステム",
        description="機関登録簿、符号の生成、処理通番、別表第二等による照会可否の判定、符号変換、中継、情報提供等の記録。"
        "個人番号と回答内容は保持しない。",
        rt=rt,
        router=router,
        migrations_dir=MIGRATIONS,
        metadata=Base.metadata,
    )
    app.state.catalogue = catalogue or load_catalogue()
    app.state.secret = service.load_or_create_secret(config.data_dir / "hub-secret.key")
    # Operators: sign-in, administration, alerts, audit and its export (JSON routes).
    mount_staff_api(app, StaffTables(auth=auth, exports=exports, guard=guard))
    return app

