"""What every node process has: config, database, keys, the peer client, the registry view.

A `NodeRuntime` is built by each node's app factory and kept on `app.state.rt`;
nothing here is module-global.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import Engine, MetaData
from sqlalchemy.orm import Session, sessionmaker

from renkei.core.audit.log import AuditEvent, AuditLog, AuditTables
from renkei.core.config import NodeConfig
from renkei.core.crypto import envelope, pki
from renkei.core.db import KernelTables, make_engine, make_sessionmaker
from renkei.core.errors import Problem
from renkei.core.units import UnitRunner
from renkei.core.wire import contract
from renkei.core.wire.client import PeerClient
from renkei.core.wire.guard import (
    Decision,
    GuardPolicy,
    GuardTables,
    MemoryCounters,
    alert_event,
    check,
)
from renkei.core.wire.keydir import KeyDirectory
from renkei.core.wire.messaging import JOSE_MEDIA_TYPE, Message, open_message, seal

MAX_BODY_BYTES = 8 * 1024 * 1024
MEMORY_COUNTED = frozenset({"peer", "staff", "client"})
DB_THREADS = 8  # PostgreSQL: threads for units of work (each holds a pooled connection)
T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RegistryView:
    """This node's copy of the hub's organization registry, refreshed on an unknown key id."""

    directory: KeyDirectory
    refresh: Callable[[], Any] | None = None
    min_interval_seconds: float = 2.0
    _last: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def lookup(self, kid: str) -> Any | None:
        key = self.directory.public_key(kid)
        if key is not None or self.refresh is None:
            return key
        async with self._lock:
            key = self.directory.public_key(kid)
            if key is None and time.monotonic() - self._last >= self.min_interval_seconds:
                self._last = time.monotonic()
                await self.refresh()
                key = self.directory.public_key(kid)
        return key

    async def encryption_key(self, org_code: str) -> tuple[str, Any] | None:
        found = self.directory.encryption_key(org_code)
        if found is None and self.refresh is not None:
            async with self._lock:
                await self.refresh()
            found = self.directory.encryption_key(org_code)
        return found


@dataclass
class NodeRuntime:
    config: NodeConfig
    engine: Engine
    sessions: sessionmaker[Session]
    kernel: KernelTables
    signing_key: envelope.SigningKey
    encryption_key: envelope.EncryptionKey
    registry: RegistryView
    peer: PeerClient
    audit: AuditLog
    clock: Callable[[], datetime] = utc_now
    guard: GuardTables | None = None
    guard_policy: GuardPolicy = field(default_factory=GuardPolicy)
    # What to do with a peer's answer to an outbox message, by the message's typ
    # (e.g. keep the time-stamp authority's receipt); run after delivery.
    answer_handlers: dict[str, Callable[[Message], Awaitable[None]]] = field(default_factory=dict)
    peer_counters: MemoryCounters = field(default_factory=MemoryCounters)
    db_executor: ThreadPoolExecutor | None = None
    units: UnitRunner | None = None

    def _executor(self) -> ThreadPoolExecutor:
        """The node's database threads. SQLite takes one writer at a time, so a node on
        SQLite has ONE: work queues there instead of contending for the lock (a busy
        handler that sleeps, threads switching under the GIL), and units of work queued
        together commit together (`renkei.core.units`); PostgreSQL gets as many threads
        as its connection pool."""
        if self.db_executor is None:
            workers = 1 if self.engine.dialect.name == "sqlite" else DB_THREADS
            self.db_executor = ThreadPoolExecutor(workers, thread_name_prefix=f"renkei-db-{self.config.kind}")
        return self.db_executor

    async def run_db(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the node's database threads, never on the event loop; ``fn``
        opens and ends its own transactions (never grouped with others)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor(), functools.partial(fn, *args))

    async def run_unit(self, fn: Callable[[Session], T]) -> T:
        """``fn(session)`` as ONE unit of work in the node's database threads; its value
        once its writes are committed. ``fn`` never commits or rolls back the session:
        on SQLite it may share one transaction with the other units queued at the same
        moment, inside a savepoint of its own (`renkei.core.units`)."""
        executor = self._executor()
        if self.units is None or self.units.executor is not executor:  # new threads after a restart
            self.units = UnitRunner(self.sessions, executor, grouped=self.engine.dialect.name == "sqlite")
        return await self.units.run(fn)

    def screen(self, kind: str, subject: str, person: str | None = None) -> None:
        """Rate limits and abnormal-traffic rules, in a short transaction of their own.

        A refusal is committed (counts and alerts stay) before it is raised.
        """
        with self.sessions() as s:
            decision = self.screen_in(s, kind, subject, person)
            s.commit()
        if decision is not None:
            decision.raise_for_refusal()

    def screen_in(
        self, session: Session, kind: str, subject: str, person: str | None = None
    ) -> Decision | None:
        """Rate limits and abnormal-traffic rules in the caller's transaction; the caller
        commits (alerts stay) and raises a refusal afterwards. Rate counts of peers,
        staff and business clients are kept in memory (`MemoryCounters`): no write per
        request; the many-unrelated-persons rule keeps its lookups in the database."""
        if self.guard is None:
            return None

        def audit(alert: Any) -> None:
            self.audit.append(session, alert_event(alert))

        return check(
            session,
            self.guard,
            self.guard_policy,
            kind=kind,  # type: ignore[arg-type]
            subject=subject,
            person=person,
            now=self.clock(),
            audit=audit,
            counters=self.peer_counters if kind in MEMORY_COUNTED else None,
        )

    def record(self, session: Session, event: AuditEvent) -> int:
        """Append an audit entry in the caller's transaction: it commits or rolls back with the change."""
        return self.audit.append(session, event)

    @property
    def org_code(self) -> str:
        return self.config.org_code

    async def receive_verified(self, request: Request, *, batch: bool = False) -> Message:
        """Read and verify a sealed request body: signature, audience, freshness, and who
        may send this type to this node (the wire contract). Nothing touches the database
        here: the sender is screened and the replay record kept in the unit of work
        (`renkei.core.wire.endpoint`), so that a failed handling can be retried.
        ``batch``: the message must be a batch (`contract.BATCH_TYP`), whose messages the
        caller authorizes one by one.
        """
        if not request.headers.get("content-type", "").startswith(JOSE_MEDIA_TYPE):
            raise Problem(415, "unsupported_media_type", "電文は署名付き形式（application/jose）で送信してください。")
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise Problem(413, "body_too_large", "電文が大きすぎます。")
        try:
            token = raw.decode("ascii")
            kid = envelope.peek_kid(token)
        except (UnicodeDecodeError, envelope.EnvelopeError):
            raise Problem(400, "malformed_message", "電文の形式が誤っています。") from None
        key = await self.registry.lookup(kid)
        if key is None:
            raise Problem(401, "unknown_sender", "登録されていない機関からの電文です。", kid)
        msg = open_message(
            token,
            key,
            expected_aud=self.org_code,
            now=self.clock(),
            max_skew_seconds=self.config.max_clock_skew_seconds,
        )
        if batch:
            if msg.typ != contract.BATCH_TYP:
                raise contract.wrong_type(msg.typ)
            return msg  # each message of the batch is authorized on its own
        self.authorize(msg)
        return msg

    def authorize(self, msg: Message) -> contract.MessageType[Any, Any]:
        """Which node may send what to whom (the wire contract), before any work is done."""
        return contract.authorize(
            receiver=self.config.kind,
            receiver_org=self.org_code,
            hub_org=self.config.hub_org_code,
            typ=msg.typ,
            sender_org=msg.iss,
            sender_node=msg.node,
        )

    def reply(self, to: Message, typ: str, body: dict[str, Any], status: int = 200) -> Response:
        token = seal(self.signing_key, self.org_code, to.iss, typ, body, now=self.clock())
        return Response(token, status_code=status, media_type=JOSE_MEDIA_TYPE)


def build_runtime(
    config: NodeConfig,
    metadata: MetaData,
    kernel: KernelTables,
    registry: RegistryView,
    audit_tables: AuditTables,
    *,
    guard: GuardTables | None = None,
    engine: Engine | None = None,
) -> NodeRuntime:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    eng = engine or make_engine(config.database_url)
    signing_key = envelope.load_signing_key(config.keys.sig)
    encryption_key = envelope.load_encryption_key(config.keys.enc)
    ssl_ctx = pki.client_ssl_context(config.tls.cert, config.tls.key, config.tls.ca)
    peer = PeerClient(
        ssl_ctx,
        signing_key,
        config.org_code,
        registry.lookup,
        max_skew_seconds=config.max_clock_skew_seconds,
        batch_in_flight=config.wire.batch_in_flight,
        batch_max=config.wire.batch_max,
    )
    return NodeRuntime(
        config=config,
        engine=eng,
        sessions=make_sessionmaker(eng),
        kernel=kernel,
        signing_key=signing_key,
        encryption_key=encryption_key,
        registry=registry,
        peer=peer,
        audit=AuditLog(audit_tables, signing_key),
        guard=guard,
        guard_policy=GuardPolicy.from_dict(config.guard),
    )


def load_public_document(path: Any) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        doc: dict[str, Any] = json.load(fh)
    return doc


def hub_registry_view(config: NodeConfig) -> RegistryView:
    """Registry view of a non-hub node: its own keys and the hub's and the time-stamp
    authority's pinned keys to start with."""
    docs = [load_public_document(config.keys.public)]
    for pinned in (config.keys.hub_public, config.keys.tsa_public):
        if pinned is not None:
            docs.append(load_public_document(pinned))
    return RegistryView(KeyDirectory.from_documents(docs))


def follow_hub_registry(rt: NodeRuntime) -> None:
    """Refresh the view from the hub's registry on an unknown key id (new peer, rotated key)."""

    async def refresh() -> None:
        hub_url, hub_org = rt.config.peer("hub"), rt.config.hub_org_code
        listed = await rt.peer.send(contract.REGISTRY_QUERY, hub_url, hub_org, contract.Empty())
        for doc in listed.organizations:
            rt.registry.directory.add(doc)

    rt.registry.refresh = refresh

SEALED_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "署名付き電文（compact JWS, Ed25519）。payload = {id, iss, aud, typ, iat, body}",
        "content": {JOSE_MEDIA_TYPE: {"schema": {"type": "string"}}},
    },
    "responses": {
        "200": {"description": "署名付き応答電文", "content": {JOSE_MEDIA_TYPE: {"schema": {"type": "string"}}}},
        "4XX": {"description": "RFC 9457 problem+json", "content": {"application/problem+json": {}}},
    },
}
