"""The time-stamp authority's interface, both ends: message types, bodies, receipts.

The time-stamp authority (tsa, DESIGN.md §1) countersigns heads: "node N's sequence of
kind K has reached number ``seq`` with hash ``hash``", as signed by N's organization.
It keeps the newest head of every (node, kind), refuses a head that moves back or
forks, and answers with a receipt. Kinds: ``audit_checkpoint`` (a node's signed audit
checkpoints, renkei.core.audit.log); ``evidence_batch`` is reserved for the hub's evidence
batch roots. Everything a submitter or a verifier needs is here; the authority's
storage is renkei.tsa.

Why not RFC 3161: no well-kept Python library serves the authority's side (the
maintained ``rfc3161-client`` builds requests and verifies tokens only), and an RFC 3161
token would not carry the one thing that matters here, the forward-only head per node.
The receipt is a compact JWS (Ed25519) by the authority's organization key, the same
envelope as every message (renkei.core.crypto.envelope), over the canonical JSON
(keys sorted, no whitespace, UTF-8)::

    {"typ": "renkei.tsa.receipt", "tsa": "<機関コード of the authority>",
     "serial": <receipt number, 1, 2, 3 … at the authority>,
     "kind": "audit_checkpoint", "node": "<機関コード>/<node kind>",
     "seq": <head number>, "hash": "<64 hex>", "stamped_at": "<ISO-8601 UTC, microseconds>"}

A receipt proves that the authority saw that head at that time; ``tsa.head`` gives the
authority's newest head of a node with its receipt, and `renkei audit verify` compares
the local chain with it.

Wire (sealed messages, renkei.core.wire.messaging; only the authority answers):

- ``POST /v1/stamps`` ``tsa.stamp`` {node, kind, seq, hash, at, token} → ``tsa.stamped``
  {receipt}. ``token`` is the submitter's own JWS over {"seq", "hash", "at"} (for an
  audit checkpoint: the checkpoint's signature itself). The node's 機関コード must be
  the sender's.
- ``POST /v1/heads`` ``tsa.head`` {node, kind} → ``tsa.head.current`` {node, kind, seq,
  hash, stamped_at, receipt}; ``seq`` 0 and no receipt if nothing was stamped yet.
- ``POST /v1/stamps/list`` ``tsa.stamps`` {node, kind, after, limit ≤ 10,000} →
  ``tsa.stamps.list`` {node, kind, stamps: [[seq, hash], …] by seq, more}: every head
  ever stamped, so that a verifier finds a history rewritten and then carried past the
  newest head (forward-only alone cannot see that).

Only the node's own organization may ask about it.
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

from renkei.core import ids
from renkei.core.audit.log import Checkpoint, store_receipt
from renkei.core.config import ConfigError, NodeConfig
from renkei.core.crypto import envelope
from renkei.core.db import transaction
from renkei.core.errors import Problem
from renkei.core.wire.messaging import Message

if TYPE_CHECKING:
    from renkei.core.wire.runtime import NodeRuntime

STAMP_PATH: Final = "/v1/stamps"
HEAD_PATH: Final = "/v1/heads"
STAMPS_PATH: Final = "/v1/stamps/list"
STAMP_TYP: Final = "tsa.stamp"
STAMPED_TYP: Final = "tsa.stamped"
HEAD_TYP: Final = "tsa.head"
HEAD_REPLY_TYP: Final = "tsa.head.current"
STAMPS_TYP: Final = "tsa.stamps"
STAMPS_REPLY_TYP: Final = "tsa.stamps.list"
STAMPS_PAGE: Final = 10_000
RECEIPT_TYP: Final = "renkei.tsa.receipt"

AUDIT_CHECKPOINT: Final = "audit_checkpoint"
EVIDENCE_BATCH: Final = "evidence_batch"
KINDS: Final = frozenset((AUDIT_CHECKPOINT, EVIDENCE_BATCH))

_NODE = re.compile(r"^([0-9]{16})/([a-z]{2,16})$")
_HASH = re.compile(r"^[0-9a-f]{64}$")
_MAX_SEQ: Final = 2**62
_RECEIPT_KEYS: Final = frozenset(("typ", "tsa", "serial", "kind", "node", "seq", "hash", "stamped_at"))
_SIGNED_KEYS: Final = frozenset(("seq", "hash", "at"))


def node_id(org_code: str, kind: str) -> str:
    """How the authority names a node: ``<機関コード>/<node kind>`` (one organization runs several)."""
    return f"{org_code}/{kind}"


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _canonical(obj: Mapping[str, Any]) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def _bad(detail: str) -> Problem:
    return Problem(422, "bad_stamp_request", "タイムスタンプの依頼の内容が誤っています。", detail)


# --- requests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StampRequest:
    """A head to countersign: ``token`` is the submitter's JWS over {seq, hash, at}."""

    node: str
    kind: str
    seq: int
    hash: str
    at: str
    token: str

    @property
    def org_code(self) -> str:
        return self.node.split("/", 1)[0]

    def body(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "kind": self.kind,
            "seq": self.seq,
            "hash": self.hash,
            "at": self.at,
            "token": self.token,
        }


def check_node(node: Any) -> str:
    """A node id, or Problem 422."""
    if not isinstance(node, str) or not _NODE.match(node):
        raise _bad("node は「機関コード16桁/ノード種別」で指定してください。")
    if ids.check(ids.IdKind.ORG_CODE, node.split("/", 1)[0]) is not None:
        raise _bad("node の機関コードが誤っています。")
    return node


def check_kind(kind: Any) -> str:
    if not isinstance(kind, str) or kind not in KINDS:  # a list or an object is not hashable
        raise _bad(f"kind は {', '.join(sorted(KINDS))} のいずれかです。")
    return str(kind)


def parse_stamp(body: Mapping[str, Any]) -> StampRequest:
    """The fields of a ``tsa.stamp`` body, checked for form only (not the signature)."""
    node = check_node(body.get("node"))
    kind = check_kind(body.get("kind"))
    seq = body.get("seq")
    if type(seq) is not int or not 0 < seq < _MAX_SEQ:
        raise _bad("seq は正の整数で指定してください。")
    hash_ = body.get("hash")
    if not isinstance(hash_, str) or not _HASH.match(hash_):
        raise _bad("hash は SHA-256（16進64文字）で指定してください。")
    at, token = body.get("at"), body.get("token")
    if not isinstance(at, str) or not at or len(at) > 40:
        raise _bad("at（署名時刻）を指定してください。")
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise _bad("token（依頼元の署名）を指定してください。")
    return StampRequest(node, kind, seq, hash_, at, token)


def signed_payload(seq: int, hash_: str, at: str) -> bytes:
    """What a submitter signs (an audit checkpoint's own payload): {"at", "hash", "seq"}."""
    return _canonical({"seq": seq, "hash": hash_, "at": at})


def token_matches(req: StampRequest, resolve_key: Callable[[str], Any | None]) -> bool:
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


def head_body(head: AuthorityHead) -> dict[str, Any]:
    return {
        "node": head.node,
        "kind": head.kind,
        "seq": head.seq,
        "hash": head.hash,
        "stamped_at": head.stamped_at,
        "receipt": head.receipt.token if head.receipt else None,
    }


def parse_head(
    body: Mapping[str, Any], resolve_key: Callable[[str], Any | None], *, tsa: str, node: str, kind: str
) -> AuthorityHead:
    """The authority's answer to ``tsa.head``, believed only as far as its receipt proves it."""
    seq = body.get("seq")
    if type(seq) is not int or seq < 0 or body.get("node") != node or body.get("kind") != kind:
        raise ReceiptError("タイムスタンプ局の応答の形式が誤っています。")
    if seq == 0:
        return AuthorityHead(node, kind, 0, None, None, None)
    receipt = open_receipt(body.get("receipt"), resolve_key, tsa=tsa)
    if (receipt.node, receipt.kind, receipt.seq, receipt.hash) != (node, kind, seq, body.get("hash")):
        raise ReceiptError("タイムスタンプ局の応答が受領証と一致しません。")
    return AuthorityHead(node, kind, seq, receipt.hash, receipt.stamped_at, receipt)


# --- a node's side: submit every checkpoint, keep the receipts, ask for the head -----------


def countersign_checkpoints(rt: NodeRuntime) -> None:
    """Queue each new audit checkpoint of this node for the authority; keep its receipts.

    The request goes into the outbox in the transaction that writes the checkpoint, so
    it is sent even if the authority is down when the checkpoint is made. Needs
    ``[peers] tsa`` and ``[node] tsa_org_code``.
    """
    from renkei.core.wire.outbox import enqueue

    cfg = rt.config
    url = cfg.peer("tsa") + STAMP_PATH
    if not cfg.tsa_org_code:
        raise ConfigError("[peers] tsa には [node] tsa_org_code（タイムスタンプ局の機関コード）が必要です")
    me = node_id(cfg.org_code, cfg.kind)

    def queue(session: Session, cp: Checkpoint) -> None:
        body = StampRequest(me, AUDIT_CHECKPOINT, cp.seq, cp.hash, cp.at, cp.signature).body()
        enqueue(session, rt.kernel, destination=url, audience=cfg.tsa_org_code, typ=STAMP_TYP, body=body,
                now=rt.clock())

    async def keep(answer: Message) -> None:
        token = answer.body.get("receipt")
        try:
            kid = envelope.peek_kid(token) if isinstance(token, str) else ""
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
    rt.answer_handlers[STAMP_TYP] = keep


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
    url = cfg.peer("tsa") + HEAD_PATH
    docs = [_load_json(cfg.keys.public)]
    docs += [_load_json(p) for p in (cfg.keys.hub_public, cfg.keys.tsa_public) if p is not None]
    directory = KeyDirectory.from_documents(docs)
    signing_key = envelope.load_signing_key(cfg.keys.sig)
    ssl_ctx = pki.client_ssl_context(cfg.tls.cert, cfg.tls.key, cfg.tls.ca)
    peer: PeerClient | None = None

    async def lookup(kid: str) -> Any | None:
        key = directory.public_key(kid)
        if key is None and peer is not None and "hub" in cfg.peers and kid.split(":", 1)[0] == cfg.tsa_org_code:
            msg = await peer.call(cfg.peer("hub") + "/v1/registry", cfg.hub_org_code, "registry.query", {})
            for doc in msg.body.get("organizations", []):
                if doc.get("org_code") == cfg.tsa_org_code:
                    directory.add(doc)
            key = directory.public_key(kid)
        return key

    peer = PeerClient(ssl_ctx, signing_key, cfg.org_code, lookup, timeout_seconds=timeout_seconds,
                      max_skew_seconds=cfg.max_clock_skew_seconds)
    node = node_id(cfg.org_code, cfg.kind)
    ask = {"node": node, "kind": AUDIT_CHECKPOINT}
    stamps: list[tuple[int, str]] = []
    try:
        answer = await peer.call(url, cfg.tsa_org_code, HEAD_TYP, ask)
        if answer.iss != cfg.tsa_org_code or answer.typ != HEAD_REPLY_TYP:
            raise ReceiptError("タイムスタンプ局以外からの応答です。")
        head = parse_head(answer.body, directory.public_key, tsa=cfg.tsa_org_code, node=node, kind=AUDIT_CHECKPOINT)
        more = head.seq > 0
        while more:
            after = stamps[-1][0] if stamps else 0
            page = await peer.call(cfg.peer("tsa") + STAMPS_PATH, cfg.tsa_org_code, STAMPS_TYP,
                                   {**ask, "after": after, "limit": STAMPS_PAGE})
            if page.iss != cfg.tsa_org_code or page.typ != STAMPS_REPLY_TYP:
                raise ReceiptError("タイムスタンプ局以外からの応答です。")
            got, more = parse_stamps(page.body, after=after, node=node, kind=AUDIT_CHECKPOINT)
            stamps += got
    finally:
        await peer.close()
    return dataclasses.replace(head, stamps=tuple(stamps))


def stamps_body(node: str, kind: str, stamps: list[tuple[int, str]], more: bool) -> dict[str, Any]:
    return {"node": node, "kind": kind, "stamps": [[seq, h] for seq, h in stamps], "more": more}


def parse_stamps(
    body: Mapping[str, Any], *, after: int, node: str, kind: str
) -> tuple[list[tuple[int, str]], bool]:
    """One page of ``tsa.stamps.list``: (seq, hash) pairs, increasing, all after ``after``."""
    items, more = body.get("stamps"), body.get("more")
    if body.get("node") != node or body.get("kind") != kind or not isinstance(items, list) or type(more) is not bool:
        raise ReceiptError("タイムスタンプ局の応答の形式が誤っています。")
    out: list[tuple[int, str]] = []
    last = after
    for item in items:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or type(item[0]) is not int
            or item[0] <= last
            or not isinstance(item[1], str)
            or not _HASH.match(item[1])
        ):
            raise ReceiptError("タイムスタンプ局の応答の形式が誤っています。")
        out.append((item[0], item[1]))
        last = item[0]
    if more and not out:
        raise ReceiptError("タイムスタンプ局の応答の形式が誤っています。")
    return out, more


def _load_json(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    return doc
