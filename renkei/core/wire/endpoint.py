"""One shape for every sealed route: receive, check, one unit of work, reply.

A node's route is declared with its `MessageType` (`renkei.core.wire.contract`) and a
function of the node's service:

- `sealed` — the work needs no other node: ``def work(unit, body) -> Done[reply]``.
  The route verifies the message (signature, freshness, audience, who may send it),
  parses the body into the contract's model (a misfit is refused with its stable code),
  then, in a worker thread, screens the sender (rate limits, abnormal traffic: a
  refusal is committed) and runs ONE transaction: the replay record, the work, and the
  audit entry the work returns. It replies with the contract's reply type.
- `sealed_flow` — the work calls other nodes: ``async def flow(flow, body) -> reply``.
  The flow runs its units of work with `Flow.unit` (each one transaction in a worker
  thread; the first also screens and keeps the replay record) and calls peers with
  `Flow.send` on the event loop.

No database call runs on the event loop (`renkei.core.db.forbid_event_loop_io`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from renkei.core.audit.log import AuditEvent
from renkei.core.errors import Problem, unexpected
from renkei.core.wire import contract
from renkei.core.wire.contract import Body, MessageType
from renkei.core.wire.guard import Decision
from renkei.core.wire.messaging import Message, check_message_id, remember
from renkei.core.wire.runtime import SEALED_BODY, NodeRuntime

__all__ = ["Done", "Flow", "SealedHandler", "Unit", "mount_batch_route", "sealed", "sealed_flow", "sealed_handlers"]

Req = TypeVar("Req", bound=Body)
Rep = TypeVar("Rep", bound=Body)
T = TypeVar("T")


@dataclass
class Done(Generic[Rep]):
    """What a unit of work returns: the reply, and the audit entry of what it did
    (appended in the same transaction, so it commits or rolls back with the work)."""

    reply: Rep
    audit: AuditEvent | None = None


@dataclass
class Unit:
    """What a unit of work sees: its session (one transaction), the verified message,
    the node's runtime and app state, and the time of the request."""

    session: Session
    msg: Message
    rt: NodeRuntime
    state: Any
    now: datetime

    def record(self, event: AuditEvent) -> None:
        """An audit entry in this unit's transaction."""
        self.rt.record(self.session, event)


async def _run(rt: NodeRuntime, msg: Message, state: Any, fn: Callable[[Unit], T], first: bool) -> T:
    """ONE unit of work in a worker thread (`NodeRuntime.run_unit`): (the sender screened
    and the replay record kept, for a message's first unit, then) ``fn``. A screening
    refusal commits its counts and alerts, does no work, and is raised after the commit."""

    def unit(s: Session) -> tuple[Decision | None, T | None]:
        now = rt.clock()
        decision = None
        if first:
            # Only a verified sender is counted: nobody can spend another peer's allowance.
            decision = rt.screen_in(s, "peer", msg.iss)
        if decision is not None and not decision.allowed:
            return decision, None
        if first:
            remember(s, rt.kernel, msg, now)
        return decision, fn(Unit(s, msg, rt, state, now))

    decision, result = await rt.run_unit(unit)
    if decision is not None:
        decision.raise_for_refusal()
    return cast(T, result)


@dataclass
class Flow:
    """A route's work that calls other nodes (see the module docstring)."""

    rt: NodeRuntime
    msg: Message
    state: Any
    _first: bool = field(default=True, repr=False)

    async def unit(self, fn: Callable[[Unit], T]) -> T:
        """``fn`` as one unit of work in a worker thread (`NodeRuntime.run_unit`); the first
        unit of a flow also screens the sender and keeps the replay record (so it is the
        flow's first step)."""
        first, self._first = self._first, False
        return await _run(self.rt, self.msg, self.state, fn, first)

    async def send(self, mt: MessageType[Any, Rep], base_url: str, aud: str, body: Body) -> Rep:
        """Call the peer at ``base_url``; its reply as the contract's model. Never before
        the message was screened and its id kept (a replay must not reach another node)."""
        if self._first:
            await self.unit(lambda _unit: None)
        return await self.rt.peer.send(mt, base_url, aud, body)


# A route's handler, by itself: the verified message in, the reply model out. Both the
# route and the batch route (one message of a batch) call it.
Handler = Callable[[NodeRuntime, Message, Any], Awaitable[Body]]


@dataclass(frozen=True)
class SealedHandler:
    mt: MessageType[Any, Any]
    handle: Handler


def _route_decorator(
    router: APIRouter, mt: MessageType[Any, Any], tags: list[str], summary: str | None
) -> Callable[[Callable[..., Any]], Any]:
    return router.post(mt.path, openapi_extra=SEALED_BODY, tags=list(tags), summary=summary or mt.title)


def _register(
    router: APIRouter, mt: MessageType[Any, Any], tags: list[str], summary: str | None, name: str, doc: str | None,
    handle: Handler,
) -> None:
    """The route of ``mt``: receive and verify, check the type, ``handle``, reply."""

    async def route(request: Request) -> Response:
        rt: NodeRuntime = request.app.state.rt
        msg = await rt.receive_verified(request)
        if msg.typ != mt.typ:
            # Another type the node takes, posted to this route.
            raise contract.wrong_type(msg.typ)
        reply = await handle(rt, msg, request.app.state)
        return rt.reply(msg, mt.reply_typ, reply.dump())

    route.__name__ = name
    route.__doc__ = doc
    route.sealed_handler = SealedHandler(mt, handle)  # type: ignore[attr-defined]
    _route_decorator(router, mt, tags, summary)(route)


def sealed(
    router: APIRouter,
    mt: MessageType[Req, Rep],
    *,
    tags: list[str],
    summary: str | None = None,
) -> Callable[[Callable[[Unit, Req], Done[Rep]]], Callable[[Unit, Req], Done[Rep]]]:
    """Declare the route of ``mt`` served by ``work(unit, body) -> Done[reply]``."""

    def decorate(work: Callable[[Unit, Req], Done[Rep]]) -> Callable[[Unit, Req], Done[Rep]]:
        async def handle(rt: NodeRuntime, msg: Message, state: Any) -> Body:
            body = contract.parse(mt.request, msg.body)
            done: Done[Rep] = await _run(rt, msg, state, lambda unit: _finish(unit, work(unit, body)), True)
            return done.reply

        _register(router, mt, tags, summary, work.__name__, work.__doc__, handle)
        return work

    return decorate


def _finish(unit: Unit, done: Done[Rep]) -> Done[Rep]:
    if done.audit is not None:
        unit.record(done.audit)
    return done


def sealed_flow(
    router: APIRouter,
    mt: MessageType[Req, Rep],
    *,
    tags: list[str],
    summary: str | None = None,
) -> Callable[[Callable[[Flow, Req], Awaitable[Rep]]], Callable[[Flow, Req], Awaitable[Rep]]]:
    """Declare the route of ``mt`` served by ``async flow(flow, body) -> reply``."""

    def decorate(fn: Callable[[Flow, Req], Awaitable[Rep]]) -> Callable[[Flow, Req], Awaitable[Rep]]:
        async def handle(rt: NodeRuntime, msg: Message, state: Any) -> Body:
            body = contract.parse(mt.request, msg.body)
            flow = Flow(rt, msg, state)
            reply = await fn(flow, body)
            if flow._first:  # the flow ran no unit: still screened and its id kept
                await flow.unit(lambda _unit: None)
            return reply

        _register(router, mt, tags, summary, fn.__name__, fn.__doc__, handle)
        return fn

    return decorate


# --- batches (renkei.core.wire.contract, "batches") -------------------------------------


def sealed_handlers(app: FastAPI) -> dict[str, SealedHandler]:
    """The sealed routes an app serves, by message type."""
    out: dict[str, SealedHandler] = {}

    def walk(routes: list[Any]) -> None:
        for r in routes:
            inner = getattr(r, "original_router", None)  # FastAPI keeps an included router whole
            if inner is not None:
                walk(inner.routes)
                continue
            found = getattr(getattr(r, "endpoint", None), "sealed_handler", None)
            if isinstance(found, SealedHandler):
                out[found.mt.typ] = found

    walk(list(app.routes))
    return out


def mount_batch_route(app: FastAPI) -> None:
    """Serve ``contract.BATCH_PATH`` on an app with sealed routes: each message of a batch
    is handled by its type's route as if it had come alone (authorized, screened, kept
    against replay, one unit of work …), all of them at once; one signed reply carries
    each message's reply or refusal, in order."""
    table = sealed_handlers(app)
    if not table:
        return

    async def batch(request: Request) -> Response:
        rt: NodeRuntime = request.app.state.rt
        msg = await rt.receive_verified(request, batch=True)
        items = contract.parse_batch(msg.body)
        state = request.app.state
        replies = await asyncio.gather(*(_one(rt, msg, state, table, item) for item in items))
        return rt.reply(msg, contract.BATCH_REPLY_TYP, {"replies": list(replies)})

    app.add_api_route(
        contract.BATCH_PATH,
        batch,
        methods=["POST"],
        openapi_extra=SEALED_BODY,
        tags=["電文"],
        summary="一括電文（同じノード宛ての複数の電文を一つの署名付き電文で）",
    )


async def _one(
    rt: NodeRuntime, batch: Message, state: Any, table: dict[str, SealedHandler], item: contract.BatchItem
) -> dict[str, Any]:
    """One message of a batch: its reply, or its refusal as problem+json (never raised:
    one refused message must not fail the others)."""
    try:
        check_message_id(item.id)
        msg = replace(batch, id=item.id, typ=item.typ, body=item.body)
        rt.authorize(msg)
        found = table.get(msg.typ)
        if found is None:  # in the contract for this kind of node, but not served here
            raise contract.wrong_type(msg.typ)
        reply = await found.handle(rt, msg, state)
        return {"id": item.id, "status": 200, "typ": found.mt.reply_typ, "body": reply.dump()}
    except Problem as exc:
        return {"id": item.id, "status": exc.status, "problem": exc.to_dict()}
    except Exception as exc:  # as CatchUnexpected does for a route
        return {"id": item.id, "status": 500, "problem": unexpected(exc, typ=item.typ).to_dict()}
