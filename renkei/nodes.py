"""Every node of renkei, put together: the one module (with the command line and the
federation) that imports them all.

Importing it registers each node's `renkei.core.schema.NodeSchema` with the kernel, so
`renkei staff`, `renkei audit` and the demo's set-up open any node's database from its
configuration; `create_app` builds the node a configuration names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

# Each models module registers its schema with the kernel when imported.
from renkei.atena import models as _atena_models  # noqa: F401
from renkei.chukan import models as _chukan_models  # noqa: F401
from renkei.core.config import NodeConfig
from renkei.core.schema import NodeSchema, schema_of
from renkei.hub import models as _hub_models  # noqa: F401
from renkei.jlis import models as _jlis_models  # noqa: F401
from renkei.tsa import models as _tsa_models  # noqa: F401

__all__ = ["KINDS", "create_app", "schema"]

KINDS: tuple[str, ...] = ("hub", "jlis", "tsa", "chukan", "atena")


def schema(kind: str) -> NodeSchema:
    """The storage of the node kind (raises `renkei.core.schema.SchemaError` if none)."""
    return schema_of(kind)


def _factory(kind: str) -> Callable[..., FastAPI]:
    # App modules pull in FastAPI routers and the catalogue: imported only when served.
    if kind == "hub":
        from renkei.hub.app import create_app as hub_app

        return hub_app
    if kind == "jlis":
        from renkei.jlis.app import create_app as jlis_app

        return jlis_app
    if kind == "tsa":
        from renkei.tsa.app import create_app as tsa_app

        return tsa_app
    if kind == "chukan":
        from renkei.chukan.app import create_app as chukan_app

        return chukan_app
    if kind == "atena":
        from renkei.atena.app import create_app as atena_app

        return atena_app
    raise ValueError(f"未対応のノードです: {kind}")


def create_app(config: NodeConfig, **options: Any) -> FastAPI:
    """The ASGI app of the node ``config`` names."""
    return _factory(config.kind)(config, **options)
