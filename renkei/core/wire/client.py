"""Every outbound node-to-node call lives here: aiohttp over mutual TLS, signed both ways.

One `PeerClient` per process (created in the app's lifespan), reused for all calls.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
import orjson

from renkei.core.crypto import envelope
from renkei.core.errors import PROBLEM_MEDIA_TYPE, Problem
from renkei.core.wire import contract
from renkei.core.wire.contract import Body, MessageType
from renkei.core.wire.messaging import JOSE_MEDIA_TYPE, Message, new_message_id, open_message, seal

KeyLookup = Callable[[str], Awaitable[Any | None]]
Rep = TypeVar("Rep", bound=Body)


class PeerUnavailable(Problem):
    """The peer could not be reached (network, TLS, timeout): the caller may retry."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(503, "peer_unavailable", "連携先に接続できません。", f"{url}: {reason}")


class PeerClient:
    """Signs requests as this organization, verifies the signed responses."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        signing_key: envelope.SigningKey,
        org_code: str,
        lookup: KeyLookup,
        *,
        timeout_seconds: float = 30.0,
        max_skew_seconds: int = 300,
        batch_in_flight: int = 0,
        batch_max: int = contract.MAX_BATCH_MESSAGES,
    ) -> None:
        self._ssl = ssl_context
        self._key = signing_key
        self._org = org_code
        self._lookup = lookup
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._skew = max_skew_seconds
        self._session: aiohttp.ClientSession | None = None
        # Batching (contract, "batches"): at most ``batch_in_flight`` requests of batchable
        # types under way to one node; messages that come while they are travel together
        # in the next envelope. 0: every message goes alone.
        self._batch_in_flight = batch_in_flight
        self._batch_max = max(1, min(batch_max, contract.MAX_BATCH_MESSAGES))
        self._batchers: dict[tuple[str, str, str], _Batcher] = {}

    async def start(self) -> None:
        if self._session is None:
            # uvicorn drops idle keep-alive connections after 5 s: never reuse one that old
            # (a POST on a connection the peer is closing fails as peer_unavailable).
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=100, keepalive_timeout=4.0)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self,
        url: str,
        aud: str,
        typ: str,
        body: dict[str, Any],
        *,
        message_id: str | None = None,
    ) -> Message:
        """POST a sealed message; return the peer's verified answer or raise its Problem.

        The answer must be signed by ``aud``, the organization we addressed. A refusal
        is relayed as `Problem.from_dict` reads it; an answer we cannot verify is
        ``bad_peer_response`` (502).
        """
        await self.start()
        assert self._session is not None
        token = seal(self._key, self._org, aud, typ, body, message_id=message_id)
        try:
            # No redirects: a node answers at the address the registry names, or not at all.
            async with self._session.post(
                url,
                data=token.encode(),
                headers={"content-type": JOSE_MEDIA_TYPE},
                allow_redirects=False,
            ) as resp:
                raw = await resp.read()
                ctype = resp.headers.get("content-type", "")
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, ssl.SSLError, OSError) as exc:
            raise PeerUnavailable(url, type(exc).__name__) from None
        if status >= 400:
            problem: Any = None
            if ctype.startswith(PROBLEM_MEDIA_TYPE) or ctype.startswith("application/json"):
                try:
                    problem = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    problem = None
            raise Problem.from_dict(status, problem, url)
        answer = await self.open(raw.decode("ascii", "replace"), expected_aud=self._org, expected_iss=aud)
        # A reply must be signed by the kind of node the request was addressed to (a batch
        # is answered by the node that serves its messages' types: checked per item's type
        # by `_Batcher`, which only batches messages to one node).
        expected = contract.responders(typ)
        if expected and answer.node not in expected:
            raise Problem(
                502,
                "wrong_responder",
                "連携先の応答が宛先のノードから送られたものではありません。",
                f"{url}: {typ} answered by {answer.iss}:{answer.node or '?'}",
            )
        return answer

    async def send(self, mt: MessageType[Any, Rep], base_url: str, aud: str, body: Body) -> Rep:
        """Send a message of type ``mt`` to the node at ``base_url`` (its path is the
        contract's); the verified reply as the contract's reply model. A reply of another
        type or shape is the peer's fault: 502 ``bad_peer_response``.

        A message of a batchable type may travel in one envelope with others under way to
        the same node at the same moment (see ``batch_in_flight``); its reply or refusal
        is the same either way."""
        if self._batch_in_flight > 0 and mt.batchable:
            group = str(getattr(body, mt.batch_by, "")) if mt.batch_by else ""
            key = (base_url, aud, group)
            batcher = self._batchers.get(key)
            if batcher is None:
                batcher = self._batchers[key] = _Batcher(self, base_url, aud, self._batch_in_flight, self._batch_max)
            return await batcher.submit(mt, body)
        return await self._send_one(mt, base_url, aud, body)

    async def _send_one(self, mt: MessageType[Any, Rep], base_url: str, aud: str, body: Body) -> Rep:
        url = base_url.rstrip("/") + mt.path
        answer = await self.call(url, aud, mt.typ, body.dump())
        return _reply_of(mt, answer.typ, answer.body, url)

    async def _send_batch(
        self, base_url: str, aud: str, items: list[tuple[MessageType[Any, Any], Body]]
    ) -> list[Body | Problem]:
        """Several messages in one envelope; each one's reply model or refusal, in order.
        A failure of the envelope itself (the peer unreachable, the batch refused, a reply
        we cannot verify) is raised for all of them."""
        url = base_url.rstrip("/") + contract.BATCH_PATH
        ids = [new_message_id() for _ in items]
        messages = [
            {"id": mid, "typ": mt.typ, "body": body.dump()} for mid, (mt, body) in zip(ids, items, strict=True)
        ]
        answer = await self.call(url, aud, contract.BATCH_TYP, {"messages": messages})
        if answer.typ != contract.BATCH_REPLY_TYP:
            raise _wrong_reply_type(url, answer.typ, contract.BATCH_REPLY_TYP)
        for mt, _body in items:  # signed by the kind of node that serves each message's type
            if answer.node not in contract.responders(mt.typ):
                raise Problem(
                    502,
                    "wrong_responder",
                    "連携先の応答が宛先のノードから送られたものではありません。",
                    f"{url}: {mt.typ} answered by {answer.iss}:{answer.node or '?'}",
                )
        replies = contract.parse_batch_replies(answer.body, ids, url)
        out: list[Body | Problem] = []
        for (mt, _body), reply in zip(items, replies, strict=True):
            where = url + "#" + mt.typ
            try:
                if reply["status"] >= 400:
                    raise Problem.from_dict(reply["status"], reply.get("problem"), where)
                out.append(_reply_of(mt, reply.get("typ"), reply.get("body"), where))
            except Problem as exc:
                out.append(exc)
        return out

    async def open(self, token: str, *, expected_aud: str, expected_iss: str | None = None) -> Message:
        """Verify a peer's signed answer; every failure is ``bad_peer_response`` (502).

        The receiver's own codes (malformed_message 400, bad_signature 401, …) would say
        that *our* request was wrong; here the peer is, so the code is one 502 and the
        receiver's code goes into ``reason_code``.
        """
        try:
            kid = envelope.peek_kid(token)
        except envelope.EnvelopeError as exc:
            raise _bad_response("malformed_message", exc.message) from None
        key = await self._lookup(kid)
        try:
            msg = open_message(
                token,
                key,
                expected_aud=expected_aud,
                now=datetime.now(UTC),
                max_skew_seconds=self._skew,
            )
        except Problem as exc:
            raise _bad_response(exc.code, exc.title) from None
        if expected_iss is not None and msg.iss != expected_iss:
            raise _bad_response("issuer_mismatch", "応答の署名者が呼び出した機関ではありません。")
        return msg


def _bad_response(reason_code: str, why: str) -> Problem:
    # Only our own wording: nothing the peer wrote is echoed to staff or logs.
    return Problem(
        502, "bad_peer_response", "連携先の応答を検証できません。", why, reason_code=reason_code
    )


def _wrong_reply_type(url: str, got: Any, expected: str) -> Problem:
    return Problem(
        502,
        "bad_peer_response",
        "連携先の応答を検証できません。",
        f"{url}: {got} instead of {expected}",
        reason_code="wrong_reply_type",
    )


def _reply_of(mt: MessageType[Any, Rep], typ: Any, body: Any, url: str) -> Rep:
    if typ != mt.reply_typ:
        raise _wrong_reply_type(url, typ, mt.reply_typ)
    return contract.parse_reply(mt.reply, body, url)


class _Batcher:
    """Messages of batchable types under way to one node (one ``base_url`` and ``aud``).

    A message goes at once, alone, while fewer than ``in_flight`` requests are under way;
    otherwise it waits for one of them to come back and then leaves with every message
    that waited (up to ``max_items``) in one envelope. So a quiet node sends each message
    as it comes, without delay, and a busy one sends fewer, larger envelopes: the batch
    grows with the load (no timer, nothing held back while the line is free).
    """

    def __init__(self, client: PeerClient, base_url: str, aud: str, in_flight: int, max_items: int) -> None:
        self.client = client
        self.base_url = base_url
        self.aud = aud
        self.in_flight = in_flight
        self.max_items = max_items
        self.busy = 0
        self.waiting: list[tuple[MessageType[Any, Any], Body, asyncio.Future[Any]]] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def submit(self, mt: MessageType[Any, Rep], body: Body) -> Rep:
        if self.busy < self.in_flight and not self.waiting:
            self.busy += 1  # the line is free: this message goes now, in the caller's task
            try:
                return await self.client._send_one(mt, self.base_url, self.aud, body)
            finally:
                self._done()
        future: asyncio.Future[Rep] = asyncio.get_running_loop().create_future()
        self.waiting.append((mt, body, future))
        if self.busy < self.in_flight:
            self._launch()
        return await future

    def _done(self) -> None:
        self.busy -= 1
        if self.waiting and self.busy < self.in_flight:
            self._launch()

    def _launch(self) -> None:
        # Messages whose caller gave up (cancelled) are not sent.
        pending = [w for w in self.waiting if not w[2].done()]
        batch, self.waiting = pending[: self.max_items], pending[self.max_items :]
        if not batch:
            return
        self.busy += 1
        task = asyncio.create_task(self._fly(batch))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _fly(self, batch: list[tuple[MessageType[Any, Any], Body, asyncio.Future[Any]]]) -> None:
        try:
            results: list[Any]
            try:
                if len(batch) == 1:
                    mt, body, _ = batch[0]
                    results = [await self.client._send_one(mt, self.base_url, self.aud, body)]
                else:
                    results = list(
                        await self.client._send_batch(self.base_url, self.aud, [(mt, body) for mt, body, _ in batch])
                    )
            except Exception as exc:  # the envelope failed: every message of it did
                results = [exc] * len(batch)
            for (_mt, _body, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        finally:
            self._done()
