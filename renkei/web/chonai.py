"""The 庁内連携 screen of atena's staff UI: a staff member reads one person's shared data
under an entry of the ordinance's table (renkei.atena.chonai.read_for_staff).

Needs ``<affair>:参照`` for the entry's affair; the person is named by 統合宛名番号 (as on
every atena staff screen). The read and its audit entries (per person and per request,
as for business systems) commit together; a refusal is audited on its own and shown.
Plain functions: FastAPI runs them in worker threads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from renkei.atena import chonai
from renkei.catalogue import Catalogue
from renkei.catalogue.ordinance import Ordinance
from renkei.core import ids
from renkei.core.db import transaction
from renkei.core.errors import Problem
from renkei.core.text.wareki import WarekiError, parse_date, to_wareki
from renkei.core.wire.runtime import NodeRuntime
from renkei.web.pages import JST, is_htmx, render
from renkei.web.site import Actor, Form, Staff, Viewer, audit, clean_text, site_of, terminal_of

router = APIRouter()

MENU_LABEL = "庁内連携"
PATH = "/atena/chonai"


def _atena_state(request: Request) -> Any:
    return request.app.state.atena.app.state


def _ordinance(request: Request) -> Ordinance | None:
    ordinance: Ordinance | None = getattr(_atena_state(request), "ordinance", None)
    return ordinance


def may_use(ordinance_of: Any) -> Any:
    """The menu's test: any entry the roles may read under."""

    def check(roles: frozenset[str]) -> bool:
        return bool(chonai.entries_for_staff(ordinance_of(), roles))

    return check


def _context(request: Request, staff: Staff, form: dict[str, str]) -> dict[str, Any]:
    ordinance = _ordinance(request)
    catalogue: Catalogue = _atena_state(request).catalogue
    entries = chonai.entries_for_staff(ordinance, staff.roles)
    now: datetime = site_of(request).clock()
    rows = []
    for e in entries:
        assert ordinance is not None
        provider = ordinance.systems[e.provider_system]
        kind = catalogue.info_kinds[e.info_kind_code]
        rows.append(
            {
                "id": e.id,
                "label": f"{ordinance.affairs[e.affair_code].name} ← {provider.label}・{kind.name}（{e.article}）",
            }
        )
    return {
        "staff": staff,
        "entries": rows,
        "form": form,
        "today": to_wareki(now.astimezone(JST).date()),
        "result": None,
        "error": None,
        "items": {},
    }


@router.get(PATH)
def chonai_form(request: Request, staff: Viewer) -> Response:
    context = _context(request, staff, {})
    if not context["entries"]:
        audit(request, staff.staff_id, chonai.READ, "affair_not_permitted")
        raise Problem(403, "affair_not_permitted", "庁内連携の権限（条例の別表にある事務の「参照」）がありません。")
    return render(request, "atena/chonai.html", context)


@router.post(PATH)
def chonai_read(request: Request, staff: Actor, form: Form) -> Response:
    context = _context(request, staff, form)
    state = _atena_state(request)
    rt: NodeRuntime = state.rt
    entry_id = clean_text(form.get("entry", "").strip(), "別表の項")
    atena_no = clean_text(form.get("atena_no", "").strip(), "統合宛名番号")
    status = 200
    try:
        try:
            on = parse_date(form.get("as_of", "") or context["today"])
        except WarekiError as exc:
            raise Problem(422, "bad_date", f"基準日: {exc}") from None
        # rate limits and "many unrelated persons": only a well-formed number counts as a person
        person = atena_no if ids.check(ids.IdKind.ATENA_NO, atena_no) is None else None
        site_of(request).screen(staff.staff_id, person)
        request_id = chonai.new_request_id()
        with transaction(rt.sessions) as s:
            req, result = chonai.read_for_staff(s, state.cipher, _ordinance(request), staff.roles, entry_id, atena_no, on)
            rt.audit.append_many(s, chonai.read_events(staff.staff_id, terminal_of(request), req, result, request_id))
        context["result"] = result.persons[0]
        context["entry"] = result.entry
        catalogue: Catalogue = state.catalogue
        kind = catalogue.info_kinds[result.entry.info_kind_code]
        context["items"] = {it.code: it.label for ed in kind.editions for it in ed.items}
        context["request_id"] = request_id
        context["as_of"] = on
    except Problem as exc:
        audit(
            request, staff.staff_id, chonai.READ, exc.code,
            detail={"entry": chonai.loggable(entry_id), "system": chonai.STAFF_SYSTEM},
        )  # fmt: skip
        context["error"] = exc
        status = exc.status
    block = "result" if is_htmx(request) else None
    return render(request, "atena/chonai.html", context, status=status, block=block)
