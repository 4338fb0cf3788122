"""atena's staff screens and the staff listener's ASGI app.

The staff UI is a separate ASGI app (`create_staff_app`) sharing the atena app's
runtime (database, keys, audit log, peer client, catalogue, clock), served by its own
listener: `renkei serve atena` runs it on ``[staff] port``, where the TLS handshake can
demand a terminal certificate of the organization's terminal CA, while the mTLS
listener for peers and business systems keeps the JSON API. A peer's certificate thus
never opens a staff page, and no staff page exists on the peers' port.

Screens: resident search (統合宛名番号; business system + 業務宛名番号; 個人番号 for
who may use it, audited with the affair; カナ氏名, 氏名, 生年月日, 住所 alone or combined,
paginated: renkei.atena.search), resident detail (基本4情報 in 和暦 with history,
business links), the individual number masked with an audited 「表示」 (reveal) that
needs `can_see_individual_number` for the affair chosen on screen, and the inquiry
form (the same `flows.inquire` as /v1/inquiries). Viewing needs ``宛名:参照``; every
search, view, reveal and refusal is audited.

Every page is a plain function (FastAPI runs it in a worker thread), but the inquiry,
which calls the chukan: a coroutine whose database work the flow runs in worker threads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from renkei.atena import flows, history, non_residents, service
from renkei.atena import search as person_search
from renkei.atena.models import audit as audit_t
from renkei.atena.models import auth as auth_t
from renkei.catalogue import Catalogue
from renkei.catalogue.models import Affair
from renkei.core.audit.log import AuditEvent
from renkei.core.db import transaction
from renkei.core.errors import Problem
from renkei.core.ids import mask_individual_number
from renkei.core.text.wareki import WarekiError, parse_date, to_wareki
from renkei.core.wire.runtime import NodeRuntime
from renkei.staff.roles import (
    ADMIN,
    AUDIT,
    can_see_individual_number,
    has_role,
    may_read_audit,
    parse_role,
)
from renkei.web import admin, site
from renkei.web import chonai as chonai_screen
from renkei.web.pages import (
    JST,
    STATIC_DIR,
    SecurityHeaders,
    install_page_handlers,
    is_htmx,
    redirect,
    render,
)
from renkei.web.site import (
    Actor,
    Form,
    MenuItem,
    PasswordRules,
    Staff,
    StaffSite,
    Viewer,
    audit,
    clean_text,
    require_role,
    site_of,
    terminal_of,
)

VIEW_ROLE: Final = "宛名:参照"
REGISTER_ROLE: Final = "宛名:更新"  # 住登外者の登録
INQUIRY: Final = "照会"
NODE_TITLE: Final = "団体内統合宛名システム"
MAX_PAGE: Final = 10_000

router = APIRouter()


@dataclass(frozen=True)
class AtenaState:
    """What the screens read from the atena app (per request: tests replace the clock)."""

    app: FastAPI

    @property
    def rt(self) -> NodeRuntime:
        rt: NodeRuntime = self.app.state.rt
        return rt

    @property
    def catalogue(self) -> Catalogue:
        catalogue: Catalogue = self.app.state.catalogue
        return catalogue


def _atena(request: Request) -> AtenaState:
    state: AtenaState = request.app.state.atena
    return state


def _affairs_held(catalogue: Catalogue, roles: frozenset[str]) -> list[Affair]:
    """Affairs the staff member works for (any role but 監査 in the affair)."""
    codes = set()
    for r in roles:
        try:
            role = parse_role(r)
        except ValueError:
            continue
        if role.affair is not None and role.operation != AUDIT:
            codes.add(role.affair)
    return [catalogue.affairs[c] for c in sorted(codes) if c in catalogue.affairs]


def _inquiry_affairs(catalogue: Catalogue, roles: frozenset[str]) -> list[Affair]:
    return [a for a in catalogue.affairs.values() if has_role(roles, INQUIRY, affair=a.code)]


def _number_use(catalogue: Catalogue) -> Callable[[str], bool]:
    def is_number_use(code: str) -> bool:
        affair = catalogue.affairs.get(code)
        return affair is not None and affair.number_use

    return is_number_use


def _screen(request: Request, staff: Staff, action: str, person: str | None) -> None:
    """The abnormal-traffic guard (rate limits, many unrelated persons); refusals audited."""
    try:
        site_of(request).screen(staff.staff_id, person)
    except Problem as exc:
        audit(request, staff.staff_id, action, exc.code, subject=person)
        raise


# --- search -----------------------------------------------------------------------------

_CRITERIA: Final = ("kana", "name", "birth_date", "address", "residence", "history")


@dataclass(frozen=True)
class SearchQuery:
    mode: str
    atena_no: str
    system: str
    business_atena_no: str
    fields: dict[str, str]  # the person's facts as typed (_CRITERIA)
    page: int

    def __getattr__(self, name: str) -> str:
        if name in _CRITERIA:  # query.kana … in the template
            return self.fields.get(name, "")
        raise AttributeError(name)

    def page_url(self, page: int) -> str:
        terms = "".join(f"&{k}={quote(v)}" for k, v in self.fields.items() if v)
        return f"/atena/search?mode=person{terms}&page={page}"


@router.get("/atena/search")
def search(
    request: Request,
    staff: Viewer,
    mode: str = "",
    atena_no: str = "",
    system: str = "",
    business_atena_no: str = "",
    kana: str = "",
    name: str = "",
    birth_date: str = "",
    address: str = "",
    residence: str = "",
    history: str = "",
    page: int = 1,
) -> Response:
    """By 統合宛名番号, by 業務宛名番号, or by the person's facts (カナ氏名, 氏名, 生年月日,
    住所; alone or combined; ``mode=kana`` is the older name of ``mode=person``). The
    search by 個人番号 is a POST (`search_by_number`): a number never goes into a URL."""
    require_role(request, staff, VIEW_ROLE, "resident.search")
    typed = {"kana": kana, "name": name, "birth_date": birth_date, "address": address,
             "residence": residence, "history": history}  # fmt: skip
    query = SearchQuery(
        mode="person" if mode == "kana" else mode,
        atena_no=clean_text(atena_no.strip()[:32], "統合宛名番号"),
        system=clean_text(system.strip()[:64], "業務システム"),
        business_atena_no=clean_text(business_atena_no.strip()[:32], "業務宛名番号"),
        fields={k: clean_text(v.strip()[:80], _LABELS[k]) for k, v in typed.items()},
        page=min(max(page, 1), MAX_PAGE),
    )
    context = _search_context(request, staff, query)
    if query.mode in {"atena_no", "business", "person"}:
        try:
            found = _run_search(request, staff, query, context)
        except Problem as exc:
            audit(request, staff.staff_id, "resident.search", exc.code, detail={"mode": query.mode})
            context["error"] = exc
            return _search_page(request, context, status=exc.status)
        if found is not None:
            return redirect(request, f"/atena/persons/{found}")
    return _search_page(request, context)


_LABELS: Final = {"kana": "カナ氏名", "name": "氏名", "birth_date": "生年月日", "address": "住所",
                  "residence": "住民区分", "history": "履歴"}  # fmt: skip


def _number_affairs(request: Request, staff: Staff) -> list[Affair]:
    """Affairs for which this staff member may use an individual number (search, reveal)."""
    catalogue = _atena(request).catalogue
    use = _number_use(catalogue)
    return [a for a in _affairs_held(catalogue, staff.roles) if can_see_individual_number(staff.roles, use, affair=a.code)]


def _search_context(request: Request, staff: Staff, query: SearchQuery) -> dict[str, Any]:
    return {
        "staff": staff,
        "query": query,
        "results": None,
        "error": None,
        "number_affairs": _number_affairs(request, staff),
        "residences": history.STATUS_LABELS,
    }


def _search_page(request: Request, context: dict[str, Any], *, status: int = 200) -> Response:
    block = "results" if is_htmx(request) else None
    return render(request, "atena/search.html", context, status=status, block=block)


def _run_search(
    request: Request, staff: Staff, query: SearchQuery, context: dict[str, Any]
) -> str | None:
    """The person to open (number searches), or None after filling in the result list."""
    rt = _atena(request).rt
    if query.mode == "person":
        criteria = person_search.parse_criteria(query.fields)
        _screen(request, staff, "resident.search", None)
        with rt.sessions() as s:
            found = person_search.search(s, criteria, page=query.page)
        # The terms typed are personal data: the entry names which were used, not their values.
        audit(
            request,
            staff.staff_id,
            "resident.search",
            "ok",
            detail={"mode": "person", "terms": criteria.terms(), "count": found.total, "page": found.page},
        )
        context.update(results=found.rows, found=found, total=found.total, pages=found.pages, born=criteria.birth_date)
        return None
    with rt.sessions() as s:
        if query.mode == "atena_no":
            atena_no = person_search.find_by_atena_no(s, query.atena_no)
        else:
            atena_no = person_search.find_by_business_no(s, service.check_system(query.system), query.business_atena_no)
    audit(request, staff.staff_id, "resident.search", "ok", subject=atena_no, detail={"mode": query.mode})
    return atena_no


@router.post("/atena/search/number")
def search_by_number(request: Request, staff: Actor, form: Form) -> Response:
    """By 個人番号, for an affair chosen on screen: only who may see the number for that
    affair (`can_see_individual_number`), each use audited with the affair."""
    require_role(request, staff, VIEW_ROLE, "resident.search")
    state = _atena(request)
    affair = form.get("affair", "").strip()[:32]
    known = state.catalogue.affairs.get(affair)
    if known is None or not can_see_individual_number(staff.roles, _number_use(state.catalogue), affair=affair):
        audit(request, staff.staff_id, "resident.search", "denied", affair=affair if known else None,
              detail={"mode": "individual_number"})  # fmt: skip
        name = f"事務「{known.name}」" if known is not None else "選択した事務"
        raise Problem(
            403,
            "number_search_denied",
            f"個人番号で検索する権限がありません。{name}の番号利用事務の権限と「個人番号:表示」の権限が必要です。",
        )
    _screen(request, staff, "resident.search", None)
    try:
        with state.rt.sessions() as s:
            atena_no = person_search.find_by_individual_number(s, site_of(request).cipher(), form.get("number", ""))
    except Problem as exc:
        audit(request, staff.staff_id, "resident.search", exc.code, affair=affair, detail={"mode": "individual_number"})
        context = _search_context(request, staff, SearchQuery("number", "", "", "", {}, 1))
        context["error"] = exc
        return _search_page(request, context, status=exc.status)
    audit(request, staff.staff_id, "resident.search", "ok", subject=atena_no, affair=affair,
          detail={"mode": "individual_number"})  # fmt: skip
    return redirect(request, f"/atena/persons/{atena_no}")


# --- resident detail and the individual number ---------------------------------------------


@router.get("/atena/persons/{atena_no}")
def person(request: Request, atena_no: str, staff: Viewer, on: str = "") -> Response:
    """A person's page; ``on`` (和暦 or 西暦) adds the person as they stood that day: name,
    address, status and household (history.as_of)."""
    require_role(request, staff, VIEW_ROLE, "resident.view")
    state = _atena(request)
    atena_no = service.check_atena_no(clean_text(atena_no[:32]))
    _screen(request, staff, "resident.view", atena_no)
    typed_on = clean_text(on[:40]).strip()
    day: date | None = None
    on_error: str | None = None
    if typed_on:
        try:
            day = parse_date(typed_on)
        except WarekiError as exc:
            on_error = f"基準日: {exc}"
    try:
        with state.rt.sessions() as s:
            detail = service.resident_detail(s, atena_no)
            number = service.individual_number_of(s, site_of(request).cipher(), atena_no)
            then = history.as_of(s, atena_no, day) if day is not None else None
    except Problem as exc:
        audit(request, staff.staff_id, "resident.view", exc.code, subject=atena_no)
        raise
    audit(request, staff.staff_id, "resident.view", "ok", subject=atena_no)
    return render(
        request,
        "atena/person.html",
        {
            "as_of": then,
            "on": typed_on,
            "on_error": on_error,
            "staff": staff,
            "person": detail,
            "atena_no": detail.atena_no,
            "masked": mask_individual_number(number) if number else None,
            "affairs": _affairs_held(state.catalogue, staff.roles),
            "residence": service.RESIDENCE_LABELS.get(detail.residence, detail.residence),
            "may_search_number": detail.residence == "non_resident" and not number,
        },
        status=422 if on_error else 200,
    )


def _group(number: str) -> str:
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))


@router.post("/atena/persons/{atena_no}/number")
def reveal_number(request: Request, atena_no: str, staff: Actor, form: Form) -> Response:
    """Show the individual number in clear, for the affair chosen on screen (audited)."""
    require_role(request, staff, VIEW_ROLE, "individual_number.reveal")
    state = _atena(request)
    atena_no = service.check_atena_no(clean_text(atena_no[:32]))
    affair = form.get("affair", "").strip()[:32]
    known = state.catalogue.affairs.get(affair)
    if not can_see_individual_number(staff.roles, _number_use(state.catalogue), affair=affair or None) or (
        known is None
    ):
        audit(
            request,
            staff.staff_id,
            "individual_number.reveal",
            "denied",
            subject=atena_no,
            affair=affair if known is not None else None,
        )
        name = f"事務「{known.name}」" if known is not None else "選択した事務"
        raise Problem(
            403,
            "reveal_denied",
            f"個人番号を表示する権限がありません。{name}の番号利用事務の権限と「個人番号:表示」の権限が必要です。",
        )
    _screen(request, staff, "individual_number.reveal", atena_no)
    with state.rt.sessions() as s:
        number = service.individual_number_of(s, site_of(request).cipher(), atena_no)
        state.rt.record(
            s,
            AuditEvent(
                actor=staff.staff_id,
                terminal=terminal_of(request),
                action="individual_number.reveal",
                outcome="ok" if number else "no_number",
                subject=atena_no,
                affair=affair,
            ),
        )
        s.commit()
    return render(
        request,
        "atena/person.html",
        {"atena_no": atena_no, "revealed": _group(number) if number else None, "affair": known},
        block="number",
    )


@router.get("/atena/persons/{atena_no}/number")
def masked_number(request: Request, atena_no: str, staff: Viewer) -> Response:
    """The masked number again (「隠す」)."""
    require_role(request, staff, VIEW_ROLE, "resident.view")
    atena_no = service.check_atena_no(clean_text(atena_no[:32]))
    with _atena(request).rt.sessions() as s:
        number = service.individual_number_of(s, site_of(request).cipher(), atena_no)
    return render(
        request,
        "atena/person.html",
        {
            "atena_no": atena_no,
            "masked": mask_individual_number(number) if number else None,
            "affairs": _affairs_held(_atena(request).catalogue, staff.roles),
            "staff": staff,
        },
        block="number",
    )


# --- non-residents (住登外者): candidates first, then a number ------------------------------

_BASIC_FOUR_FIELDS: Final = (
    "family_name", "given_name", "family_kana", "given_kana", "birth_date", "sex", "postal_code", "address", "lg_code",
)  # fmt: skip


def _basic_four_form(form: dict[str, str]) -> dict[str, str]:
    return {k: form.get(k, "").strip()[:300] for k in _BASIC_FOUR_FIELDS}


def _parse_basic_four_form(typed: dict[str, str]) -> non_residents.BasicFourInput:
    """The 基本4情報 typed on screen (birth date in 和暦 or 西暦), checked."""
    try:
        born = parse_date(typed["birth_date"]) if typed["birth_date"] else None
    except WarekiError as exc:
        raise Problem(422, "bad_date", f"生年月日: {exc}") from None
    return non_residents.parse_basic_four({**typed, "birth_date": born.isoformat() if born else ""})


@router.get("/atena/non-residents")
def non_resident_form(request: Request, staff: Viewer) -> Response:
    require_role(request, staff, REGISTER_ROLE, "non_resident.search")
    return render(
        request, "atena/non_residents.html", {"staff": staff, "typed": {"lg_code": "", "sex": ""}, "shown": None}
    )


@router.post("/atena/non-residents/candidates")
def non_resident_candidates(request: Request, staff: Actor, form: Form) -> Response:
    """0310007 → 0310005: the candidates for the 基本4情報 typed, with the acknowledgement
    the registration form carries (staff register only after seeing them)."""
    require_role(request, staff, REGISTER_ROLE, "non_resident.search")
    typed = _basic_four_form(form)
    context: dict[str, Any] = {"staff": staff, "typed": typed, "shown": None, "error": None}
    try:
        basic4 = _parse_basic_four_form(typed)
    except Problem as exc:
        context["error"] = exc
        return render(request, "atena/non_residents.html", context, status=exc.status)
    _screen(request, staff, "non_resident.search", None)
    with _atena(request).rt.sessions() as s:
        found = non_residents.candidates(s, basic4)
    audit(request, staff.staff_id, "non_resident.search", "ok", detail={"count": len(found)})
    context.update(
        shown=found,
        ack=non_residents.acknowledgement(site_of(request).cipher(), basic4, found),
        basic4=basic4,
    )
    return render(request, "atena/non_residents.html", context)


@router.post("/atena/non-residents/register")
def non_resident_register(request: Request, staff: Actor, form: Form) -> Response:
    """0310004 → 0310001: a new number, or the person chosen among the candidates shown;
    refused (nothing written) without the acknowledgement, or if the candidates changed."""
    require_role(request, staff, REGISTER_ROLE, "non_resident.register")
    typed = _basic_four_form(form)
    system = form.get("system", "").strip()
    business_no = form.get("business_atena_no", "").strip()
    state = _atena(request)
    try:
        basic4 = _parse_basic_four_form(typed)
        if bool(system) != bool(business_no):
            raise Problem(422, "bad_business_system", "業務システムIDと業務宛名番号は両方入力してください（紐付けない場合は両方空欄）。")
        with transaction(state.rt.sessions) as s:
            done = non_residents.register(
                s, site_of(request).cipher(), basic4, ack=form.get("acknowledgement", ""),
                choice=form.get("choice", "").strip(), now=state.rt.clock(),
                system=service.check_system(system) if system else None, business_atena_no=business_no or None,
                source=f"staff:{staff.staff_id}",
            )  # fmt: skip
            state.rt.record(
                s,
                AuditEvent(
                    actor=staff.staff_id, terminal=terminal_of(request), action="non_resident.register",
                    outcome="ok", subject=done.atena_no, detail={"outcome": done.outcome, "candidates": done.candidates},
                ),
            )  # fmt: skip
    except Problem as exc:
        audit(request, staff.staff_id, "non_resident.register", exc.code)
        context = {"staff": staff, "typed": typed, "shown": None, "error": exc}
        return render(request, "atena/non_residents.html", context, status=exc.status)
    return redirect(request, f"/atena/persons/{done.atena_no}")


@router.post("/atena/persons/{atena_no}/identity-search")
async def identity_search(request: Request, atena_no: str, staff: Actor, form: Form) -> Response:
    """J-LIS's identity search for a person without an individual number, for the number-use
    affair chosen on screen (the staff member may see numbers for it); the number is
    recorded, shown masked, and revealed only through 「表示」."""
    state = _atena(request)
    atena_no = service.check_atena_no(clean_text(atena_no[:32]))
    affair = form.get("affair", "").strip()[:32]
    known = state.catalogue.affairs.get(affair)
    if known is None or not can_see_individual_number(staff.roles, _number_use(state.catalogue), affair=affair):
        await state.rt.run_db(
            functools.partial(
                audit, request, staff.staff_id, "individual_number.search", "denied", subject=atena_no,
                affair=affair if known is not None else None,
            )
        )  # fmt: skip
        raise Problem(
            403,
            "reveal_denied",
            "個人番号を照会する権限がありません。番号利用事務の権限と「個人番号:表示」の権限が必要です。",
        )
    outcome = await flows.search_individual_number(
        flows.Work(state.rt, staff.staff_id, terminal_of(request)), site_of(request).cipher(), state.catalogue,
        atena_no, affair,
    )  # fmt: skip
    masked = mask_individual_number(outcome.individual_number) if outcome.individual_number else None
    return render(
        request,
        "atena/identity_result.html",
        {"staff": staff, "atena_no": atena_no, "outcome": outcome, "masked": masked, "affair": known},
    )


# --- inquiry ------------------------------------------------------------------------------


def _inquiry_context(request: Request, staff: Staff, form: dict[str, str]) -> dict[str, Any]:
    state = _atena(request)
    catalogue = state.catalogue
    affairs = _inquiry_affairs(catalogue, staff.roles)
    orgs = sorted(
        (o for o in state.rt.registry.directory.orgs.values() if o.org_code != state.rt.org_code),
        key=lambda o: o.org_code,
    )
    return {
        "staff": staff,
        "affairs": affairs,
        "info_kinds": sorted(catalogue.info_kinds.values(), key=lambda k: k.code),
        "orgs": orgs,
        "form": form,
        "today": to_wareki(_today(request)),
        "result": None,
        "error": None,
    }


def _today(request: Request) -> date:
    now: datetime = site_of(request).clock()
    return now.astimezone(JST).date()


@router.get("/atena/inquiry")
def inquiry_form(request: Request, staff: Viewer) -> Response:
    context = _inquiry_context(request, staff, {})
    if not context["affairs"]:
        audit(request, staff.staff_id, "inquiry", "affair_not_permitted")
        raise Problem(403, "affair_not_permitted", "情報照会の権限（いずれかの事務の「照会」）がありません。")
    return render(request, "atena/inquiry.html", context)


@router.post("/atena/inquiry")
async def inquiry(request: Request, staff: Actor, form: Form) -> Response:
    state = _atena(request)
    context = _inquiry_context(request, staff, form)
    by_atena_no = form.get("person_by") != "business"
    req = service.InquiryRequest(
        procedure_code=form.get("procedure_code", "").strip(),
        info_kind_code=form.get("info_kind_code", "").strip(),
        provider_org=form.get("provider_org", "").strip(),
        as_of=form.get("as_of", ""),
        atena_no=form.get("atena_no", "").strip() if by_atena_no else None,
        system=None if by_atena_no else form.get("system", "").strip(),
        business_atena_no=None if by_atena_no else form.get("business_atena_no", "").strip(),
        # the staff member is the 照会者ユーザーID of the provision records, as on /v1/inquiries
        user_id=staff.staff_id if flows.fits_inquirer_field(staff.staff_id) else None,
    )
    status = 200
    try:
        context["result"] = await flows.inquire(
            flows.Work(state.rt, staff.staff_id, terminal_of(request)), state.catalogue, req, staff.roles
        )
    except Problem as exc:
        context["error"] = exc
        status = exc.status
    block = "result" if is_htmx(request) else None
    return render(request, "atena/inquiry.html", context, status=status, block=block)


# --- the app --------------------------------------------------------------------------------


def describe_role(catalogue: Catalogue) -> Callable[[str], str]:
    def describe(role: str) -> str:
        parsed = parse_role(role)
        if parsed.affair is not None:
            affair = catalogue.affairs.get(parsed.affair)
            name = affair.name if affair is not None else parsed.affair
            return f"{name}：{parsed.operation}"
        return site.describe_named_role(role)

    return describe


def create_staff_app(
    atena: FastAPI,
    *,
    terminal_check: bool,
    passwords: PasswordRules | None = None,
) -> FastAPI:
    """The staff UI of one atena, sharing its runtime. ``terminal_check`` says whether the
    listener demands terminal certificates (False shows the warning on every page)."""
    rt: NodeRuntime = atena.state.rt
    catalogue: Catalogue = atena.state.catalogue

    def screen(staff_id: str, person: str | None) -> None:
        rt.screen("staff", staff_id, person)

    staff_site = StaffSite(
        title=NODE_TITLE,
        org_name=rt.config.org_name,
        tables=auth_t,
        audit_tables=audit_t,
        sessions=rt.sessions,
        cipher=lambda: atena.state.cipher,
        record=lambda s, e: atena.state.rt.record(s, e),
        clock=lambda: atena.state.clock(),
        policy=lambda: atena.state.auth_policy,
        screen=screen,
        terminal_check=terminal_check,
        passwords=passwords or PasswordRules(),
        menu=(
            MenuItem("宛名検索", "/atena/search", lambda roles: has_role(roles, VIEW_ROLE)),
            MenuItem("住登外者の登録", "/atena/non-residents", lambda roles: has_role(roles, REGISTER_ROLE)),
            MenuItem("情報照会", "/atena/inquiry", lambda roles: bool(_inquiry_affairs(catalogue, roles))),
            MenuItem(chonai_screen.MENU_LABEL, chonai_screen.PATH, chonai_screen.may_use(lambda: atena.state.ordinance)),
            MenuItem("職員管理", "/admin/staff", lambda roles: has_role(roles, ADMIN)),
            MenuItem("監査ログ", "/audit", lambda roles: may_read_audit(roles)),
        ),
        describe_role=describe_role(catalogue),
        role_policy=lambda: atena.state.role_policy,
    )
    app = FastAPI(
        title=f"renkei atena — {NODE_TITLE}（職員用画面）",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.site = staff_site
    app.state.atena = AtenaState(atena)
    install_page_handlers(app)
    app.include_router(site.router)
    app.include_router(admin.router)
    app.include_router(router)
    app.include_router(chonai_screen.router)  # 庁内連携 (renkei.web.chonai)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.add_middleware(SecurityHeaders)  # outermost: error pages get the headers too
    return app
