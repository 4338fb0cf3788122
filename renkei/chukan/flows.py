"""Intermediate-server work that needs other nodes: opening a provider's answer.

(DESIGN.md §8: flows.py holds work that calls other nodes. Opening an answer may
fetch the hub's registry to learn the provider's signing key.)
"""

from __future__ import annotations

from typing import Any

from renkei.chukan.service import BadAnswer
from renkei.core.crypto import envelope
from renkei.core.errors import Problem
from renkei.core.wire.messaging import Message, open_message
from renkei.core.wire.runtime import NodeRuntime

# What the receiver's checks of a signed message say, as a bad-answer reason.
_ENVELOPE_REASONS = {
    "malformed": "malformed",
    "bad_algorithm": "bad_algorithm",
    "decrypt_failed": "decrypt_failed",
}
_MESSAGE_REASONS = {
    "bad_signature": "bad_signature",
    "bad_algorithm": "bad_algorithm",
    "unknown_sender": "unknown_signer",
    "malformed_message": "malformed_message",
    "issuer_mismatch": "issuer_mismatch",
    "wrong_audience": "wrong_audience",
    "stale_message": "stale_message",
}


async def open_answer(rt: NodeRuntime, token: Any, *, provider_org: str) -> Message:
    """Decrypt the relayed answer (JWE for us) and verify the provider's signature (JWS).

    The signer must be ``provider_org``, the provider the hub named; its key comes
    from the registry (refreshed from the hub for a key id we do not know yet).
    Raises BadAnswer; the content is checked afterwards by `service.check_answer`.
    """
    if not isinstance(token, str) or not token:
        raise BadAnswer("no_answer")
    try:
        plaintext = envelope.decrypt(token, rt.encryption_key)
    except envelope.EnvelopeError as exc:
        raise BadAnswer(_ENVELOPE_REASONS.get(exc.code, "decrypt_failed")) from None
    try:
        inner = plaintext.decode("ascii")
        kid = envelope.peek_kid(inner)
    except (UnicodeDecodeError, envelope.EnvelopeError):
        raise BadAnswer("not_signed") from None
    signer = envelope.parse_kid(kid)
    if signer is None or signer.org_code != provider_org or signer.node != "chukan":
        # Checked before the registry is asked: another organization's key, or another
        # node's of the provider (its atena), never vouches for the provider's answer.
        raise BadAnswer("wrong_signer")
    try:
        key = await rt.registry.lookup(kid)
    except Problem:
        key = None  # the registry could not be fetched: we cannot tell who signed
    if key is None:
        raise BadAnswer("unknown_signer")
    try:
        return open_message(
            inner,
            key,
            expected_aud=rt.org_code,
            now=rt.clock(),
            max_skew_seconds=rt.config.max_clock_skew_seconds,
        )
    except Problem as exc:
        raise BadAnswer(_MESSAGE_REASONS.get(exc.code, "bad_signature")) from None
