"""Every outbound node-to-node call lives here: aiohttp over mutual TLS, signed both ways.

One `PeerClient` per process (created in the app's lifespan), reused for all calls.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from renkei.core.crypto import envelope
from renkei.core.errors import PROBLEM_MEDIA_TYPE, Problem
from renkei.core.messaging import JOSE_MEDIA_TYPE, Message, open_message, seal
from renkei.core.wire import contract

KeyLookup = Callable[[str], Awaitable[Any | None]]


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
    ) -> None:
        self._ssl = ssl_context
        self._key = signing_key
        self._org = org_code
        self._lookup = lookup
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._skew = max_skew_seconds
        self._session: aiohttp.ClientSession | None = None

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
        """POST a sealed message; return the peer's verified answer or raise its Problem."""
        await self.start()
        assert self._session is not None
        token = seal(self._key, self._org, aud, typ, body, message_id=message_id)
        try:
            async with self._session.post(
                url, data=token.encode(), headers={"content-type": JOSE_MEDIA_TYPE}
            ) as resp:
                raw = await resp.read()
                ctype = resp.headers.get("content-type", "")
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, ssl.SSLError, OSError) as exc:
            raise PeerUnavailable(url, type(exc).__name__) from None
        if status >= 400:
            if ctype.startswith(PROBLEM_MEDIA_TYPE) or ctype.startswith("application/json"):
                try:
                    raise Problem.from_dict(status, orjson.loads(raw))
                except orjson.JSONDecodeError:
                    pass
            raise Problem(502, "peer_error", "連携先でエラーが発生しました。", f"{url}: HTTP {status}")
        answer = await self.open(raw.decode("ascii", "replace"), expected_aud=self._org)
        # A reply must be signed by the kind of node the request was addressed to.
        expected = contract.responders(typ)
        if expected and answer.node not in expected:
            raise Problem(
                502,
                "wrong_responder",
                "連携先の応答が宛先のノードから送られたものではありません。",
                f"{url}: {typ} answered by {answer.iss}:{answer.node or '?'}",
            )
        return answer

    async def open(self, token: str, *, expected_aud: str) -> Message:
        try:
            kid = envelope.peek_kid(token)
        except envelope.EnvelopeError as exc:
            raise Problem(502, "malformed_message", "連携先の応答の形式が誤っています。", exc.message) from None
        key = await self._lookup(kid)
        return open_message(
            token,
            key,
            expected_aud=expected_aud,
            now=datetime.now(UTC),
            max_skew_seconds=self._skew,
        )
