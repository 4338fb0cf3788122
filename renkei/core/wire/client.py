"""Every outbound node-to-node call lives here: aiohttp over mutual TLS, signed both ways.

One `PeerClient` per process (created in the app's lifespan), reused for all calls.
"""

from __future__ import annotations

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
from renkei.core.wire.messaging import JOSE_MEDIA_TYPE, Message, open_message, seal

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

    async def send(self, mt: MessageType[Any, Rep], base_url: str, aud: str, body: Body) -> Rep:
        """Send a message of type ``mt`` to the node at ``base_url`` (its path is the
        contract's); the verified reply as the contract's reply model. A reply of another
        type or shape is the peer's fault: 502 ``bad_peer_response``."""
        url = base_url.rstrip("/") + mt.path
        answer = await self.call(url, aud, mt.typ, body.dump())
        if answer.typ != mt.reply_typ:
            raise Problem(
                502,
                "bad_peer_response",
                "連携先の応答を検証できません。",
                f"{url}: {answer.typ} instead of {mt.reply_typ}",
                reason_code="wrong_reply_type",
            )
        return contract.parse_reply(mt.reply, answer.body, url)

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
