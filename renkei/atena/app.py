"""atena app factory: 団体内統合宛名システム."""

from __future__ import annotations

from fastapi import FastAPI, Request
from sqlalchemy import Engine
from starlette.responses import Response

from renkei.atena.api import DEFAULT_RESIDENT_SYSTEM, router
from renkei.atena.chonai import ordinance_for
from renkei.atena.chonai_api import router as chonai_router
from renkei.atena.models import SCHEMA, Base, audit, guard, kernel
from renkei.atena.models import auth as auth_t
from renkei.atena.models import exports as exports_t
from renkei.atena.models import oauth as oauth_t
from renkei.atena.service import addressees_export
from renkei.catalogue import Catalogue, load_catalogue
from renkei.core.app import node_app
from renkei.core.config import NodeConfig
from renkei.core.crypto.field import FieldCipher, FileKms, load_or_create_keyring
from renkei.core.db import transaction
from renkei.core.wire.runtime import build_runtime, follow_hub_registry, hub_registry_view
from renkei.staff.auth import DEFAULT_POLICY, AuthPolicy
from renkei.staff.oauth import OAuthError, bearer_problem_response, oauth_router
from renkei.staff.routes import StaffTables, mount_staff_api

MIGRATIONS = SCHEMA.migrations
TOKEN_PATH = "/oauth/token"


def field_cipher(config: NodeConfig) -> FieldCipher:
    """The node's field cipher: individual numbers, TOTP secrets, OAuth client secrets."""
    master = config.master_key or (config.data_dir / "master.key")
    return load_or_create_keyring(config.data_dir / "keyring.json", FileKms.create(master))


def token_endpoint_url(config: NodeConfig) -> str:
    """The ``aud`` of client assertions: this atena's token endpoint, as configured.

    Taken from the configuration, never from the request's Host header, so that an
    assertion made for another server cannot be presented here.
    """
    base = str(config.extra.get("public_url") or config.base_url).rstrip("/")
    return base + TOKEN_PATH


def create_app(
    config: NodeConfig,
    *,
    engine: Engine | None = None,
    catalogue: Catalogue | None = None,
    auth_policy: AuthPolicy = DEFAULT_POLICY,
) -> FastAPI:
    rt = build_runtime(
        config, Base.metadata, kernel, hub_registry_view(config), audit, guard=guard, engine=engine
    )
    follow_hub_registry(rt)
    app = node_app(
        title="renkei atena — 団体内統合宛名システム",
        description="団体内統合宛名番号の付番、業務宛名番号との紐付け、個人番号（暗号化）の保持、中間サーバー・J-LISへの中継。"
        "職員はログイン（職員ID・パスワード・ワンタイムパスワード）または個人用APIトークンで、"
        "業務システムは OAuth 2.0 クライアントクレデンシャル（client_secret_jwt）で認証します。",
        rt=rt,
        router=router,
        migrations_dir=MIGRATIONS,
        metadata=Base.metadata,
    )
    app.state.cipher = field_cipher(config)
    app.state.catalogue = catalogue or load_catalogue()
    # 庁内連携 under the municipality's ordinance (renkei.atena.chonai): its own router.
    app.state.ordinance = ordinance_for(config, app.state.catalogue)
    app.include_router(chonai_router)
    # Authentication clock and policy: tests move the clock or shorten the timeouts here.
    app.state.clock = rt.clock
    app.state.auth_policy = auth_policy
    app.state.resident_system = str(config.extra.get("resident_system") or DEFAULT_RESIDENT_SYSTEM)
    app.state.token_url = token_endpoint_url(config)
    app.include_router(
        oauth_router(
            lambda: transaction(rt.sessions),
            oauth_t,
            lambda: app.state.cipher,
            lambda _request: str(app.state.token_url),
            clock=lambda: app.state.clock(),
        )
    )

    async def _bearer_refusal(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, OAuthError)
        return bearer_problem_response(exc)

    app.add_exception_handler(OAuthError, _bearer_refusal)
    # The kernel's staff routes: sign-in, password, API tokens, administration, alerts,
    # audit, exports (atena's own routes authenticate staff the same way, renkei.atena.api).
    mount_staff_api(
        app,
        StaffTables(auth=auth_t, exports=exports_t, guard=guard),
        parts={"session", "admin", "alerts", "audit", "exports"},
        extra_exports=[addressees_export()],
    )
    return app
