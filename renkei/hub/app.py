"""Hub app factory: 情報提供ネットワークシステム."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

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


@dataclass
class DbRegistryView(RegistryView):
    """The hub's keys come from its own registry tables, looked up in a worker thread and
    kept for ``ttl_seconds``: a registry change reaches every hub process within that
    time, and a key not found is looked up again on the next message."""

    sessions: Any = None
    ttl_seconds: float = 30.0
    _cache: dict[str, tuple[float, Any]] = field(default_factory=dict)

    def _load(self, kid: str) -> Any | None:
        with self.sessions() as s:
            doc = service.key_document(s, kid)
        if doc is None:
            return None
        return KeyDirectory.from_documents([{"org_code": kid.split(":")[0], "keys": [doc]}]).public_key(kid)

    async def lookup(self, kid: str) -> Any | None:
        hit = self._cache.get(kid)
        if hit is not None and time.monotonic() - hit[0] < self.ttl_seconds:
            return hit[1]
        key = await run_in_threadpool(self._load, kid)
        if key is not None:
            self._cache[kid] = (time.monotonic(), key)
        return key


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

