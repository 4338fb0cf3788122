"""Who may send which message to whom: the node-to-node routes, written down once.

Every node has keys of its own, and a message's signing key names the sending
organization *and node* (``<機関コード>:<node kind>:sig:<n>``). This table says, for each
message type a node accepts, which kinds of node may send it and from where:

- ``SAME_ORG``: only a node of the receiver's own organization (atena → its chukan);
- ``HUB_ORG``: only the network system itself (the hub's 機関コード in the config);
- ``ANY_ORG``: any registered organization, provided the sending node is of a listed
  kind (the hub additionally checks the organization's registered role where a route
  needs one, e.g. J-LIS for ``acquisition.resolve``).

`NodeRuntime.receive` refuses, before any work, a message type the receiving node does
not take (400 ``wrong_message_type``) and a sender outside the route's kinds or scope
(403 ``sender_not_allowed``), and `PeerClient.call` accepts a reply only from the kind
of node the request was addressed to. So the organization key that used to let an
atena speak to the hub as if it were the chukan is gone: an inquiry signed by an atena
never reaches the hub's rule check.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from renkei.core.errors import Problem

__all__ = ["ROUTES", "Route", "Scope", "authorize", "responders", "route_for"]


class Scope(Enum):
    SAME_ORG = "same_org"
    HUB_ORG = "hub_org"
    ANY_ORG = "any_org"


@dataclass(frozen=True)
class Route:
    receiver: str  # node kind that serves the route
    typ: str  # message type of the request
    path: str
    senders: frozenset[str]  # node kinds allowed to send it
    scope: Scope
    title: str  # Japanese name, for refusals and documentation


_ALL_NODES = frozenset({"atena", "chukan", "hub", "jlis", "portal", "tsa"})


def _r(receiver: str, typ: str, path: str, senders: set[str] | frozenset[str], scope: Scope, title: str) -> Route:
    return Route(receiver, typ, path, frozenset(senders), scope, title)


ROUTES: tuple[Route, ...] = (
    # hub — 情報提供ネットワークシステム
    _r("hub", "registry.query", "/v1/registry", _ALL_NODES, Scope.ANY_ORG, "機関登録簿の照会"),
    _r("hub", "acquisition.create", "/v1/acquisitions", {"chukan"}, Scope.ANY_ORG, "取得番号の払出し"),
    _r("hub", "acquisition.resolve", "/v1/acquisitions/resolve", {"jlis"}, Scope.ANY_ORG, "符号生成依頼"),
    _r("hub", "inquiry.request", "/v1/inquiries", {"chukan"}, Scope.ANY_ORG, "情報照会"),
    # chukan — 自治体中間サーバー
    _r("chukan", "pseudonym.acquire", "/v1/acquisitions", {"atena"}, Scope.SAME_ORG, "符号取得の開始"),
    _r("chukan", "pseudonym.deliver", "/v1/acquisitions/deliver", {"hub"}, Scope.HUB_ORG, "符号の通知"),
    _r("chukan", "pseudonym.status", "/v1/acquisitions/status", {"atena"}, Scope.SAME_ORG, "符号取得状況"),
    _r("chukan", "fukuhon.register", "/v1/fukuhon", {"atena"}, Scope.SAME_ORG, "副本登録"),
    _r("chukan", "inquiry.request", "/v1/inquiries", {"atena"}, Scope.SAME_ORG, "情報照会の依頼"),
    _r("chukan", "provision.request", "/v1/provisions", {"hub"}, Scope.HUB_ORG, "情報提供の依頼"),
    # jlis — J-LIS
    _r("jlis", "acquisition.submit", "/v1/acquisitions", {"atena"}, Scope.ANY_ORG, "符号取得の依頼"),
    # tsa — the time-stamp authority: every node stamps and asks about its own heads
    # (the authority then checks the head named is the sending node's own).
    _r("tsa", "tsa.stamp", "/v1/stamps", _ALL_NODES - {"tsa"}, Scope.ANY_ORG, "タイムスタンプの付与"),
    _r("tsa", "tsa.head", "/v1/heads", _ALL_NODES - {"tsa"}, Scope.ANY_ORG, "最新の記録の先頭の照会"),
    _r("tsa", "tsa.stamps", "/v1/stamps/list", _ALL_NODES - {"tsa"}, Scope.ANY_ORG, "記録の先頭の一覧"),
)

_BY_KEY: dict[tuple[str, str], Route] = {(r.receiver, r.typ): r for r in ROUTES}
if len(_BY_KEY) != len(ROUTES):  # pragma: no cover - a table error, caught at import
    raise RuntimeError("contract: a (receiver, typ) pair is listed twice")

_NODE_NAMES = {
    "atena": "団体内統合宛名システム",
    "chukan": "中間サーバー",
    "hub": "情報提供ネットワークシステム",
    "jlis": "J-LIS",
    "portal": "ポータル",
    "tsa": "タイムスタンプ局",
}


def route_for(receiver: str, typ: str) -> Route | None:
    return _BY_KEY.get((receiver, typ))


def responders(typ: str) -> frozenset[str]:
    """The node kinds that serve requests of type ``typ``: a reply must be signed by one."""
    return frozenset(r.receiver for r in ROUTES if r.typ == typ)


def authorize(
    *,
    receiver: str,
    receiver_org: str,
    hub_org: str,
    typ: str,
    sender_org: str,
    sender_node: str,
) -> Route:
    """The route a verified message may take, or a Problem saying why it may not.

    Refuses in this order: a type the receiving node does not take; a sending node of
    a kind the route does not admit; a sender outside the route's organizations.
    """
    route = route_for(receiver, typ)
    if route is None:
        raise Problem(400, "wrong_message_type", "この窓口では受け付けない電文種別です。", typ)
    if sender_node not in route.senders:
        allowed = "、".join(_NODE_NAMES.get(k, k) for k in sorted(route.senders))
        raise Problem(
            403,
            "sender_not_allowed",
            f"「{route.title}」は{allowed}からのみ受け付けます"
            f"（送信元: {_NODE_NAMES.get(sender_node, sender_node or '不明')}）。",
            f"{sender_org}:{sender_node} → {receiver}:{typ}",
        )
    if route.scope is Scope.SAME_ORG and sender_org != receiver_org:
        raise Problem(
            403,
            "sender_not_allowed",
            f"「{route.title}」は同じ機関のノードからのみ受け付けます。",
            f"{sender_org}:{sender_node} → {receiver_org}:{receiver}:{typ}",
        )
    if route.scope is Scope.HUB_ORG and sender_org != hub_org:
        raise Problem(
            403,
            "sender_not_allowed",
            f"「{route.title}」は情報提供ネットワークシステムからのみ受け付けます。",
            f"{sender_org}:{sender_node} → {receiver}:{typ}",
        )
    return route
