"""J-LIS routes."""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter, Request
from fastapi.responses import Response

from renkei.core.audit.log import AuditEvent
from renkei.core.db import transaction
from renkei.core.errors import Problem
from renkei.core.wire.messaging import remember
from renkei.core.wire.runtime import SEALED_BODY, NodeRuntime, expect_typ
from renkei.jlis import service

router = APIRouter()


@router.get("/healthz", tags=["運用"])
async def healthz() -> dict[str, str]:
    return {"status": "ok", "node": "jlis"}


@router.post(
    "/v1/acquisitions",
    openapi_extra=SEALED_BODY,
    tags=["符号取得"],
    summary="符号取得依頼の中継（個人番号→住民票コード）",
)
async def submit(request: Request) -> Response:
    rt: NodeRuntime = request.app.state.rt
    msg = await rt.receive(request)
    expect_typ(msg, "acquisition.submit")
    items = msg.body.get("items")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise Problem(422, "bad_items", "items を配列で指定してください。")
    with transaction(rt.sessions) as s:
        remember(s, rt.kernel, msg, rt.clock())
        results = service.submit_acquisitions(
            s,
            rt.kernel,
            request.app.state.cipher,
            org_code=msg.iss,
            items=items,
            hub_url=rt.config.peer("hub"),
            hub_org=rt.config.hub_org_code,
            now=rt.clock(),
        )
        tally = dict(Counter(r.status for r in results))
        rt.record(
            s,
            AuditEvent(
                actor=msg.iss, action="acquisition.relay", outcome="ok", ref=msg.id, detail=tally
            ),
        )
    return rt.reply(
        msg,
        "acquisition.submitted",
        {"results": [{"acquisition_no": r.acquisition_no, "status": r.status} for r in results]},
    )
