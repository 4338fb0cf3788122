"""atena app factory: 団体内統合宛名システム."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from sqlalchemy import Engine

from renkei.atena.api import router
from renkei.atena.models import Base, audit, kernel
from renkei.catalogue import Catalogue, load_catalogue
from renkei.core.app import node_app
from renkei.core.config import NodeConfig
from renkei.core.crypto.field import FileKms, load_or_create_keyring
from renkei.core.node import build_runtime, follow_hub_registry, hub_registry_view

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(config: NodeConfig, *, engine: Engine | None = None, catalogue: Catalogue | None = None) -> FastAPI:
    rt = build_runtime(config, Base.metadata, kernel, hub_registry_view(config), audit, engine=engine)
    follow_hub_registry(rt)
    app = node_app(
        title="renkei atena — 団体内統合宛名システム",
        description="団体内統合宛名番号の付番、業務宛名番号との紐付け、個人番号（暗号化）の保持、中間サーバー・J-LISへの中継。",
        rt=rt,
        router=router,
        migrations_dir=MIGRATIONS,
        metadata=Base.metadata,
    )
    master = config.master_key or (config.data_dir / "master.key")
    app.state.cipher = load_or_create_keyring(config.data_dir / "keyring.json", FileKms.create(master))
    app.state.catalogue = catalogue or load_catalogue()
    return app
