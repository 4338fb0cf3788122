"""Time-stamp authority routes: thin wrappers over `service`; every body is a sealed message."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from renkei.core.audit import timestamping
from renkei.core.audit.log import AuditEvent
from renkei.core.crypto import envelope
from renkei.core.db import transaction
from renkei.core.errors import Problem
from renkei.core.wire.guard import Alert, alert_event, record_alert
from renkei.core.wire.messaging import Message, remember
from renkei.core.wire.runtime import SEALED_BODY, NodeRuntime, expect_typ
from renkei.tsa import service
from renkei.tsa.models import guard

router = APIRouter()


def _rt(request: Request) -> NodeRuntime:
    rt: NodeRuntime = request.app.state.rt
    return rt


@router.get("/healthz", tags=["運用"])
async def healthz() -> dict[str, str]:
    return {"status": "ok", "node": "tsa"}


@router.post(
    timestamping.STAMP_PATH,
    openapi_extra=SEALED_BODY,
    tags=["タイムスタンプ"],
    summary="記録の先頭（監査ログのチェックポイント等）へのタイムスタンプの付与",
)
async def stamp(request: Request) -> Response:
    rt = _rt(request)
    msg = await rt.receive(request)
    expect_typ(msg, timestamping.STAMP_TYP)
    req = timestamping.parse_stamp(msg.body)
    try:
        signer = envelope.peek_kid(req.token)
    except envelope.EnvelopeError:
        raise Problem(422, "bad_stamp_signature", "依頼元の署名の形式が誤っています。") from None
    signer_key = await rt.registry.lookup(signer)
    service.check_request(
        req, sender_node=timestamping.node_id(msg.iss, msg.node), resolve_key=lambda kid: signer_key if kid == signer else None
    )
    now = rt.clock()
    with transaction(rt.sessions) as s:
        remember(s, rt.kernel, msg, now)
        result = service.stamp(s, req, sender=msg.iss, key=rt.signing_key, tsa=rt.org_code, now=now)
        if result.alert is not None:
            rule, detail = result.alert

            def audit(alert: Alert) -> None:
                rt.record(s, alert_event(alert))

            record_alert(
                s, guard, rule=rule, kind="peer", subject=msg.iss, detail=detail, action="block", now=now, audit=audit
            )
        rt.record(
            s,
            AuditEvent(
                actor=msg.iss,
                action="tsa.stamp",
                outcome=result.refusal.code if result.refusal else ("ok" if result.new else "repeated"),
                ref=msg.id,
                detail={"node": req.node, "kind": req.kind, "seq": req.seq},
            ),
        )
    # The refusal is raised after the commit: the alert and the audit entry stay.
    if result.refusal is not None:
        raise result.refusal
    assert result.receipt is not None
    return rt.reply(msg, timestamping.STAMPED_TYP, {"receipt": result.receipt.token})


def _own_node(msg: Message) -> tuple[str, str]:
    node = timestamping.check_node(msg.body.get("node"))
    kind = timestamping.check_kind(msg.body.get("kind"))
    # A node asks about its own records only (its own key signs the question).
    if node != timestamping.node_id(msg.iss, msg.node):
        raise Problem(403, "node_not_yours", "他のノードの記録は照会できません。", f"node={node}")
    return node, kind


@router.post(
    timestamping.HEAD_PATH,
    openapi_extra=SEALED_BODY,
    tags=["タイムスタンプ"],
    summary="ノードの最新の記録の先頭（受領証付き）の照会",
)
async def head(request: Request) -> Response:
    rt = _rt(request)
    msg = await rt.receive(request)
    expect_typ(msg, timestamping.HEAD_TYP)
    node, kind = _own_node(msg)
    with transaction(rt.sessions) as s:
        remember(s, rt.kernel, msg, rt.clock())
        current = service.current_head(s, node, kind, tsa=rt.org_code)
        rt.record(
            s,
            AuditEvent(actor=msg.iss, action="tsa.head", outcome="ok", ref=msg.id,
                       detail={"node": node, "kind": kind, "seq": current.seq}),
        )
    return rt.reply(msg, timestamping.HEAD_REPLY_TYP, timestamping.head_body(current))


@router.post(
    timestamping.STAMPS_PATH,
    openapi_extra=SEALED_BODY,
    tags=["タイムスタンプ"],
    summary="ノードについて付与したすべての記録の先頭（番号とハッシュ）の照会",
)
async def stamps(request: Request) -> Response:
    rt = _rt(request)
    msg = await rt.receive(request)
    expect_typ(msg, timestamping.STAMPS_TYP)
    node, kind = _own_node(msg)
    after, limit = msg.body.get("after", 0), msg.body.get("limit", timestamping.STAMPS_PAGE)
    if type(after) is not int or after < 0 or type(limit) is not int or not 0 < limit <= timestamping.STAMPS_PAGE:
        raise Problem(
            422, "bad_page", f"after は0以上、limit は1〜{timestamping.STAMPS_PAGE:,}の整数で指定してください。"
        )
    with transaction(rt.sessions) as s:
        remember(s, rt.kernel, msg, rt.clock())
        pairs, more = service.stamped(s, node, kind, after=after, limit=limit)
    return rt.reply(msg, timestamping.STAMPS_REPLY_TYP, timestamping.stamps_body(node, kind, pairs, more))
