"""The shape every node's ASGI app shares: problem handlers, migrations, outbox worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI
from sqlalchemy import MetaData
from starlette.concurrency import run_in_threadpool

from renkei.core.audit.timestamping import countersign_checkpoints
from renkei.core.db import migrate, transaction
from renkei.core.errors import install_problem_handlers
from renkei.core.wire.endpoint import mount_batch_route
from renkei.core.wire.outbox import deliver_due, run_worker
from renkei.core.wire.runtime import NodeRuntime

# How long a stopping node keeps trying to deliver its last messages (the shutdown
# checkpoint's countersignature among them) before it exits.
SHUTDOWN_DELIVERY_SECONDS = 5.0


def _checkpoint(rt: NodeRuntime) -> None:
    with transaction(rt.sessions) as s:
        rt.audit.checkpoint(s)


async def _checkpoint_loop(rt: NodeRuntime, stop: asyncio.Event) -> None:
    """Sign the audit head periodically, so that quiet periods end signed too."""
    interval = rt.audit.checkpoint_interval.total_seconds()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            try:
                await rt.run_db(_checkpoint, rt)
            except Exception as exc:  # keep serving; the next round retries
                structlog.get_logger("renkei.audit").error("checkpoint_failed", error_type=type(exc).__name__)


def node_app(
    *,
    title: str,
    description: str,
    rt: NodeRuntime,
    router: APIRouter,
    migrations_dir: Path,
    metadata: MetaData,
    run_migrations: bool = True,
    outbox_worker: bool = True,
    on_startup: Callable[[], None] | None = None,
    migration_attributes: Mapping[str, Any] | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Database work at start and stop runs in a worker thread too: never on the loop.
        if run_migrations:
            await run_in_threadpool(migrate, rt.engine, migrations_dir, metadata, migration_attributes)
        if on_startup is not None:
            await run_in_threadpool(on_startup)
        await rt.peer.start()
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(rt, stop)) if outbox_worker else None
        checkpoints = asyncio.create_task(_checkpoint_loop(rt, stop))
        try:
            yield
        finally:
            stop.set()
            if worker is not None:
                await worker
            await checkpoints
            await rt.run_db(_checkpoint, rt)
            if worker is not None:
                try:  # the shutdown checkpoint reaches the time-stamp authority now, not at the next start
                    await asyncio.wait_for(deliver_due(rt), timeout=SHUTDOWN_DELIVERY_SECONDS)
                except Exception as exc:  # the outbox keeps it for the next start
                    structlog.get_logger("renkei.outbox").warning("shutdown_delivery_incomplete",
                                                                  error_type=type(exc).__name__)
            await rt.peer.close()
            if rt.db_executor is not None:  # made again on next use (a test app restarted)
                executor, rt.db_executor = rt.db_executor, None
                executor.shutdown(wait=True)

    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
    )
    # Every node but the authority itself has its audit checkpoints countersigned.
    if rt.config.kind != "tsa" and "tsa" in rt.config.peers:
        countersign_checkpoints(rt)
    app.state.rt = rt
    install_problem_handlers(app)
    app.include_router(router)
    mount_batch_route(app)
    return app
