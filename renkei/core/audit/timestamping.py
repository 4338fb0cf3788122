"""The time-stamp authority's interface, both ends: message types, bodies, receipts.

The time-stamp authority (tsa, DESIGN.md §1) countersigns heads: "node N's sequence of
kind K has reached number ``seq`` with hash ``hash``", as signed by N's organization.
It keeps the newest head of every (node, kind), refuses a head that moves back or
forks, and answers with a receipt. Kinds: ``audit_checkpoint`` (a node's signed audit
checkpoints, renkei.core.audit.log); ``evidence_batch`` is reserved for the hub's evidence
batch roots. Everything a submitter or a verifier needs is here; the authority's
storage belongs to the authority node itself, which the kernel never imports.

Why not RFC 3161: no well-kept Python library serves the authority's side (the
maintained ``rfc3161-client`` builds requests and verifies tokens only), and an RFC 3161
token would not carry the one thing that matters here, the forward-only head per node.
The receipt is a compact JWS (Ed25519) by the authority's organization key, the same
envelope as every message (renkei.core.crypto.envelope), over the canonical JSON
(keys sorted, no whitespace, UTF-8)::

    {"typ": "tsa.receipt", "tsa": "<機関コード of the authority>",
     "serial": <receipt number, 1, 2, 3 … at the authority>,
     "kind": "audit_checkpoint", "node": "<機関コード>/<node kind>",
     "seq": <head number>, "hash": "<64 hex>", "stamped_at": "<ISO-8601 UTC, microseconds>"}

A receipt proves that the authority saw that head at that time; ``tsa.head`` gives the
authority's newest head of a node with its receipt, and `renkei audit verify` compares
the local chain with it.

Wire (sealed messages; the message types and their bodies are the contract's,
renkei.core.wire.contract, used by the authority and by every node; only the authority
answers):

- ``POST /v1/stamps`` ``tsa.stamp`` `TsaStamp` {node, kind, seq, hash, at, token} →
  ``tsa.stamped`` `TsaStamped` {receipt}. ``token`` is the submitter's own JWS over
  {"seq", "hash", "at"} (for an audit checkpoint: the checkpoint's signature itself).
  The node must be the sending node.
- ``POST /v1/heads`` ``tsa.head`` `TsaHeadQuery` {node, kind} → ``tsa.head.current``
  `TsaHead` {node, kind, seq, hash, stamped_at, receipt}; ``seq`` 0 and no receipt if
  nothing was stamped yet.
- ``POST /v1/stamps/list`` ``tsa.stamps`` `TsaStampsQuery` {node, kind, after, limit ≤
  10,000} → ``tsa.stamps.list`` `TsaStampsList` {node, kind, stamps: [[seq, hash], …] by
  seq, more}: every head ever stamped, so that a verifier finds a history rewritten and
  then carried past the newest head (forward-only alone cannot see that).

Only the node itself may ask about it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from renkei.core.audit.log import Checkpoint, store_receipt
from renkei.core.config import ConfigError, NodeConfig
from renkei.core.crypto import envelope
from renkei.core.db import transaction
from renkei.core.wire import contract
from renkei.core.wire.contract import (
    TsaHead,
    TsaHeadQuery,
    TsaStamp,
    TsaStamped,
    TsaStampsList,
    TsaStampsQuery,
)
from renkei.core.wire.messaging import Message

if TYPE_CHECKING:
    from renkei.core.wire.runtime import NodeRuntime

# The message types are the contract's; these names are kept for readers of this module.
STAMP_PATH: Final = contract.TSA_STAMP.path
HEAD_PATH: Final = contract.TSA_HEAD.path
STAMPS_PATH: Final = contract.TSA_STAMPS.path
STAMP_TYP: Final = contract.TSA_STAMP.typ
STAMPED_TYP: Final = contract.TSA_STAMP.reply_typ
HEAD_TYP: Final = contract.TSA_HEAD.typ
HEAD_REPLY_TYP: Final = contract.TSA_HEAD.reply_typ
STAMPS_TYP: Final = contract.TSA_STAMPS.typ
STAMPS_REPLY_TYP: Final = contract.TSA_STAMPS.reply_typ
STAMPS_PAGE: Final = contract.STAMPS_PAGE
RECEIPT_TYP: Final = "tsa.receipt"

AUDIT_CHECKPOINT: Final = "audit_checkpoint"
EVIDENCE_BATCH: Final = "evidence_batch"
KINDS: Final = contract.STAMP_KINDS
if KINDS != {AUDIT_CHECKPOINT, EVIDENCE_BATCH}:  # pragma: no cover
    raise RuntimeError("timestamping: the kinds differ from the contract's")

_HASH = re.compile(r"[0-9a-f]{64}")
_RECEIPT_KEYS: Final = frozenset(("typ", "tsa", "serial", "kind", "node", "seq", "hash", "stamped_at"))
_SIGNED_KEYS: Final = frozenset(("seq", "hash", "at"))


def node_id(org_code: str, kind: str) -> str:
    """How the authority names a node: ``<機関コード>/<node kind>`` (one organization runs several)."""
    return f"{org_code}/{kind}"


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _canonical(obj: Mapping[str, Any]) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


# --- requests ---------------------------------------------------------------------------
# A ``tsa.stamp`` body is `contract.TsaStamp`: its fields are checked for form by the
# contract (``bad_stamp_request``), its signature here.


def signed_payload(seq: int, hash_: str, at: str) -> bytes:
    """What a submitter signs (an audit checkpoint's own payload): {"at", "hash", "seq"}."""
    return _canonical({"seq": seq, "hash": hash_, "at": at})


def token_matches(req: TsaStamp, resolve_key: Callable[[str], Any | None]) -> bool:
    """True if ``token`` is a valid JWS by the node itself (its own key) over exactly this head."""
    try:
        kid, payload = envelope.verify(req.token, resolve_key)
        data = orjson.loads(payload)
    except (envelope.EnvelopeError, orjson.JSONDecodeError):
        return False
    signer = envelope.parse_kid(kid)
    return (
        signer is not None
        and node_id(signer.org_code, signer.node) == req.node
        and isinstance(data, dict)
        and data.keys() == _SIGNED_KEYS
        and type(data["seq"]) is int
        and data["seq"] == req.seq
        and data["hash"] == req.hash
        and data["at"] == req.at
    )


# --- receipts ---------------------------------------------------------------------------


class ReceiptError(Exception):
    """A receipt that is not a valid statement of the authority; the message is Japanese."""


@dataclass(frozen=True)
class Receipt:
    tsa: str
    serial: int
    kind: str
    node: str
    seq: int
    hash: str
    stamped_at: str
    token: str


def sign_receipt(
    key: envelope.SigningKey,
    *,
    tsa: str,
    serial: int,
    kind: str,
    node: str,
    seq: int,
    hash_: str,
    stamped_at: datetime,
) -> Receipt:
    """The authority's receipt for one head (see the module docstring for the format)."""
    at = iso(stamped_at)
    payload = {
        "typ": RECEIPT_TYP,
        "tsa": tsa,
        "serial": serial,
        "kind": kind,
        "node": node,
        "seq": seq,
        "hash": hash_,
        "stamped_at": at,
    }
    token = envelope.sign(_canonical(payload), key)
    return Receipt(tsa, serial, kind, node, seq, hash_, at, token)


def open_receipt(token: Any, resolve_key: Callable[[str], Any | None], *, tsa: str) -> Receipt:
    """Verify a receipt: signed by a key of organization ``tsa``, in the documented form."""
    if not isinstance(token, str):
        raise ReceiptError("タイムスタンプ局の受領証がありません。")
    try:
        kid, payload = envelope.verify(token, resolve_key)
        data = orjson.loads(payload)
    except envelope.EnvelopeError as exc:
        raise ReceiptError(f"タイムスタンプ局の受領証の署名を検証できません（{exc.code}）。") from None
    except orjson.JSONDecodeError:
        raise ReceiptError("タイムスタンプ局の受領証の形式が誤っています。") from None
    if kid.split(":", 1)[0] != tsa:
        raise ReceiptError("受領証がタイムスタンプ局の鍵で署名されていません。")
    if (
        not isinstance(data, dict)
        or data.keys() != _RECEIPT_KEYS
        or data["typ"] != RECEIPT_TYP
        or data["tsa"] != tsa
        or type(data["serial"]) is not int
        or type(data["seq"]) is not int
        or not all(isinstance(data[k], str) for k in ("kind", "node", "hash", "stamped_at"))
    ):
        raise ReceiptError("タイムスタンプ局の受領証の形式が誤っています。")
    return Receipt(
        tsa, data["serial"], data["kind"], data["node"], data["seq"], data["hash"], data["stamped_at"], token
    )


# --- the authority's head of one node -----------------------------------------------------


@dataclass(frozen=True)
class AuthorityHead:
    """The newest head the authority stamped for (node, kind); seq 0 = none yet."""

    node: str
    kind: str
    seq: int
    hash: str | None
    stamped_at: str | None
    receipt: Receipt | None
    # Every (seq, hash) the authority ever stamped for the node, by seq (`query_head`).
    stamps: tuple[tuple[int, str], ...] = ()


def head_body(head: AuthorityHead) -> TsaHead:
    """The authority's answer to ``tsa.head``."""
    return TsaHead(
        node=head.node,
        kind=head.kind,
        seq=head.seq,
        hash=head.hash,
        stamped_at=head.stamped_at,
        receipt=head.receipt.token if head.receipt else None,
    )


def parse_head(
    body: TsaHead, resolve_key: Callable[[str], Any | None], *, tsa: str, node: str, kind: str
) -> AuthorityHead:
    """The authority's answer to ``tsa.head``, believed only as far as its receipt proves it."""
    if body.seq < 0 or body.node != node or body.kind != kind:
        raise ReceiptError("タイムスタンプ局の応答の形式が誤っています。")
    if body.seq == 0:
        return AuthorityHead(node, kind, 0, None, None, None)
    receipt = open_receipt(body.receipt, resolve_key, tsa=tsa)
    if (receipt.node, receipt.kind, receipt.seq, receipt.hash) != (node, kind, body.seq, body.hash):
        raise ReceiptError("タイムスタンプ局の応答が受領証と一致しません。")
    return AuthorityHead(node, kind, body.seq, receipt.hash, receipt.stamped_at, receipt)


# --- a node's side: submit every checkpoint, keep the receipts, ask for the head -----------


def countersign_checkpoints(rt: NodeRuntime) -> None:
    """Queue each new audit checkpoint of this node for the authority; keep its receipts.

    The request goes into the outbox in the transaction that writes the checkpoint, so
    it is sent even if the authority is down when the checkpoint is made. Needs
    ``[peers] tsa`` and ``[node] tsa_org_code``.
    """
    from renkei.core.wire.outbox import enqueue

    cfg = rt.config
    url = cfg.peer("tsa").rstrip("/") + contract.TSA_STAMP.path
    if not cfg.tsa_org_code:
        raise ConfigError("[peers] tsa には [node] tsa_org_code（タイムスタンプ局の機関コード）が必要です")
    me = node_id(cfg.org_code, cfg.kind)

    def queue(session: Session, cp: Checkpoint) -> None:
        body = TsaStamp(node=me, kind=AUDIT_CHECKPOINT, seq=cp.seq, hash=cp.hash, at=cp.at, token=cp.signature)
        enqueue(session, rt.kernel, destination=url, audience=cfg.tsa_org_code, typ=contract.TSA_STAMP.typ,
                body=body.dump(), now=rt.clock())

    async def keep(answer: Message) -> None:
        if answer.typ != contract.TSA_STAMP.reply_typ:
            raise ReceiptError("タイムスタンプ局の応答の種別が誤っています。")
        token = contract.parse_reply(TsaStamped, answer.body, url).receipt
        try:
            kid = envelope.peek_kid(token)
        except envelope.EnvelopeError:
            kid = ""
        key = await rt.registry.lookup(kid) if kid else None
        receipt = open_receipt(token, lambda k: key if k == kid else None, tsa=cfg.tsa_org_code)
        if receipt.node != me or receipt.kind != AUDIT_CHECKPOINT:
            raise ReceiptError("受領証が当ノードのものではありません。")
        def store() -> None:
            with transaction(rt.sessions) as s:
                store_receipt(s, rt.audit.tables, receipt)

        await run_in_threadpool(store)  # never on the event loop

    rt.audit.on_checkpoint = queue
    rt.answer_handlers[contract.TSA_STAMP.typ] = keep


async def query_head(cfg: NodeConfig, *, timeout_seconds: float = 15.0) -> AuthorityHead:
    """Ask the authority (mutual TLS with the node's credentials, a signed request) for its
    newest head of this node's audit log. The answer is believed through its receipt,
    checked with the authority's pinned key (``[keys] tsa_public``) or, failing that,
    the key the hub's registry publishes."""
    from renkei.core.crypto import pki
    from renkei.core.wire.client import PeerClient
    from renkei.core.wire.keydir import KeyDirectory

    if not cfg.tsa_org_code:
        raise ConfigError("[node] tsa_org_code（タイムスタンプ局の機関コード）が設定されていません")
    tsa_url = cfg.peer("tsa")
    docs = [_load_json(cfg.keys.public)]
    docs += [_load_json(p) for p in (cfg.keys.hub_public, cfg.keys.tsa_public) if p is not None]
    directory = KeyDirectory.from_documents(docs)
    signing_key = envelope.load_signing_key(cfg.keys.sig)
    ssl_ctx = pki.client_ssl_context(cfg.tls.cert, cfg.tls.key, cfg.tls.ca)
    peer: PeerClient | None = None

    async def lookup(kid: str) -> Any | None:
        key = directory.public_key(kid)
        if key is None and peer is not None and "hub" in cfg.peers and kid.split(":", 1)[0] == cfg.tsa_org_code:
            listed = await peer.send(contract.REGISTRY_QUERY, cfg.peer("hub"), cfg.hub_org_code, contract.Empty())
            for doc in listed.organizations:
                if doc.get("org_code") == cfg.tsa_org_code:
                    directory.add(doc)
            key = directory.public_key(kid)
        return key

    peer = PeerClient(ssl_ctx, signing_key, cfg.org_code, lookup, timeout_seconds=timeout_seconds,
                      max_skew_seconds=cfg.max_clock_skew_seconds)
    node = node_id(cfg.org_code, cfg.kind)
    stamps: list[tuple[int, str]] = []
    # PeerClient.send: the answer must be signed by the authority, of the reply type,
    # in the reply's form (else 502 bad_peer_response).
    try:
        answer = await peer.send(
            contract.TSA_HEAD, tsa_url, cfg.tsa_org_code, TsaHeadQuery(node=node, kind=AUDIT_CHECKPOINT)
        )
        head = parse_head(answer, directory.public_key, tsa=cfg.tsa_org_code, node=node, kind=AUDIT_CHECKPOINT)
        more = head.seq > 0
        while more:
            after = stamps[-1][0] if stamps else 0
            ask = TsaStampsQuery(node=node, kind=AUDIT_CHECKPOINT, after=after, limit=STAMPS_PAGE)
            page = await peer.send(contract.TSA_STAMPS, tsa_url, cfg.tsa_org_code, ask)
            got, more = parse_stamps(page, after=after, node=node, kind=AUDIT_CHECKPOINT)
            stamps += got
    finally:
        await peer.close()
    return dataclasses.replace(head, stamps=tuple(stamps))


def stamps_body(node: str, kind: str, stamps: list[tuple[int, str]], more: bool) -> TsaStampsList:
    """One page of the authority's answer to ``tsa.stamps``."""
    return TsaStampsList(node=node, kind=kind, stamps=stamps, more=more)


def parse_stamps(body: TsaStampsList, *, after: int, node: str, kind: str) -> tuple[list[tuple[int, str]], bool]:
    """One page of ``tsa.stamps.list``: (seq, hash) pairs, increasing, all after ``after``."""
    if body.node != node or body.kind != kind:
        raise ReceiptError("タイムスタンプ局の応答の形式が誤っています。")
    out: list[tuple[int, str]] = []
    last = after
    for seq, hash_ in body.stamps:
        if seq <= last or not _HASH.fullmatch(hash_):
            raise ReceiptError("タイムスタンプ局の応答の形式が誤っています。")
        out.append((seq, hash_))
        last = seq
    if body.more and not out:
        raise ReceiptError("タイムスタンプ局の応答の形式が誤っています。")
    return out, body.more


def _load_json(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    return doc
