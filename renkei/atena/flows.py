"""atena work that calls other nodes: the three-party pseudonym acquisition (our chukan
for acquisition numbers, J-LIS with the individual numbers), the pseudonym status, provision
copies to our chukan, and inquiries through it.

A flow is asked for on atena's own API by a business system or a staff member (`Work`
names them). Its database work runs in units (`NodeRuntime.run_unit`) — each atomic, in a
worker thread, never on the event loop — with the audit entry of what it did in the unit;
other nodes are called with `PeerClient.send` and the wire contract's message types,
typed both ways (a reply that does not fit is 502 ``bad_peer_response``). The logic
itself is renkei.atena.service.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from renkei.atena import batch, feed, non_residents, service
from renkei.atena.schemas import (
    AcquireOut,
    AcquisitionStarted,
    ChangesOut,
    FukuhonOut,
    NumberingResult,
    ResidentsOut,
    StatusOut,
)
from renkei.catalogue import Catalogue
from renkei.core import ids
from renkei.core.audit.log import AuditEvent
from renkei.core.crypto.field import FieldCipher
from renkei.core.errors import Problem
from renkei.core.wire import contract
from renkei.core.wire.contract import (
    AcquisitionSubmit,
    AtenaNos,
    Body,
    ChukanInquiry,
    FukuhonRegister,
    IdentitySearch,
    MessageType,
)
from renkei.core.wire.runtime import NodeRuntime

__all__ = [
    "CHUNK",
    "AcquireProgress",
    "AcquireSummary",
    "Work",
    "acquire_all",
    "acquire_pseudonyms",
    "BATCH_CONCURRENCY",
    "BatchSummary",
    "apply_register_changes",
    "inquire_batch",
    "inquire",
    "number_persons",
    "pseudonym_status",
    "register_copies",
]

# Persons per message to chukan and J-LIS: a 5,000-person submission is about 0.5 MB signed,
# far below the 8 MiB a node accepts, and each node's work for it is one transaction.
CHUNK = 5000
STATUS_CHUNK = 10_000  # persons per status question (the contract's MAX_BATCH)
PROBE = 100  # the oldest persons waiting, asked about first while chunks are still sent
T = TypeVar("T")
Rep = TypeVar("Rep", bound=Body)


@dataclass(frozen=True)
class Work:
    """A flow's context: the node's runtime, and who asked for the work from where (the
    actor and terminal of its audit entries)."""

    rt: NodeRuntime
    actor: str
    terminal: str

    async def unit(self, fn: Callable[[Session], T]) -> T:
        """``fn`` as one unit of work, in a worker thread (`NodeRuntime.run_unit`: on
        SQLite it may commit together with other units, each in its own savepoint)."""
        return await self.rt.run_unit(fn)

    def event(self, action: str, outcome: str, **fields: Any) -> AuditEvent:
        return AuditEvent(actor=self.actor, terminal=self.terminal, action=action, outcome=outcome, **fields)

    @asynccontextmanager
    async def refusals_audited(self, action: str) -> AsyncIterator[None]:
        """A Problem raised inside (bad input, a peer's refusal or failure) is audited
        under ``action`` with its code, then raised on."""
        try:
            yield
        except Problem as exc:
            # A unit of its own: the refused work wrote nothing.
            code = exc.code
            await self.unit(lambda s: self.rt.record(s, self.event(action, code)))
            raise

    async def to_chukan(self, mt: MessageType[Any, Rep], body: Body) -> Rep:
        """A message to this organization's chukan."""
        return await self.rt.peer.send(mt, self.rt.config.peer("chukan"), self.rt.org_code, body)

    async def to_jlis(self, mt: MessageType[Any, Rep], body: Body) -> Rep:
        """A message to J-LIS (its 機関コード from the configuration)."""
        jlis_org = str(self.rt.config.extra.get("jlis_org_code", ""))
        return await self.rt.peer.send(mt, self.rt.config.peer("jlis"), jlis_org, body)


# --- numbering (団体内統合宛名番号の付番, 共通機能標準仕様書 §2.4.3) ---------------------------


async def number_persons(
    work: Work,
    cipher: FieldCipher,
    records: Sequence[Any],
    *,
    residence: str = "resident",
    action: str = "residents.register",
    start_acquisition: bool = True,
) -> ResidentsOut:
    """The standard's numbering flow for a business system's request, 機能ID
    0320001 → 0320004 → 0320002 → 0320008:

    - 0320001 付番依頼受信: each record (個人番号, the caller's 宛名番号, 基本4情報) checked;
      the first bad one refuses them all (`service.parse_residents`);
    - 0320004 検索 and 0320002 付番, in one transaction with its audit entry
      (`service.register_parsed`): a new 統合宛名番号 only where no person holds the
      individual number, else the caller's number linked to the person held;
    - 0320008 中間サーバー連携: pseudonym acquisition (`acquire_pseudonyms`) started for
      the newly numbered persons. The numbering stands if our chukan or J-LIS cannot be
      reached: ``acquisition.deferred`` says why, and the persons wait for the next
      acquisition (`renkei atena acquire-pseudonyms` or /v1/pseudonyms/acquire), as they
      do when ``start_acquisition`` is False (a bulk migration acquires afterwards, in
      chunks, with the command).

    The answer names each record by the caller's own numbers: a business system never
    sees a 統合宛名番号.
    """
    async with work.refusals_audited(action):
        if not 1 <= len(records) <= service.MAX_BATCH:
            raise Problem(422, "bad_count", f"1〜{service.MAX_BATCH}件で指定してください。")
        parsed = service.parse_residents(records)

    def register(s: Session) -> service.Registration:
        done = service.register_parsed(
            s, cipher, parsed, work.rt.clock(), source=f"api:{work.actor}", residence=residence
        )
        counts = {o: done.numbering.count(o) for o in (service.NUMBERED, service.LINKED, service.UNCHANGED)}
        work.rt.record(s, work.event(action, "ok", detail={"count": len(parsed), **counts}))
        return done

    async with work.refusals_audited(action):
        done = await work.unit(register)
    started = AcquisitionStarted(requested=0, relayed=0)
    if done.numbered and not start_acquisition:
        started = AcquisitionStarted(requested=0, relayed=0, deferred="start_acquisition=false")
    elif done.numbered:
        try:
            got = await acquire_pseudonyms(work, cipher, list(done.numbered))
            started = AcquisitionStarted(requested=got.requested, relayed=got.relayed, problems=got.problems)
        except Problem as exc:  # audited by acquire_pseudonyms; the numbering stands
            started = AcquisitionStarted(
                requested=len(done.numbered), relayed=0, deferred=f"{exc.code}: {exc.title}"
            )
    results = [
        NumberingResult(
            business_numbers=dict(r.business_numbers), outcome=o, outcome_label=service.OUTCOME_LABELS[o]
        )
        for r, o in zip(parsed, done.numbering, strict=True)
    ]
    return ResidentsOut(
        results=results,
        numbered=done.numbering.count(service.NUMBERED),
        linked=done.numbering.count(service.LINKED),
        unchanged=done.numbering.count(service.UNCHANGED),
        acquisition=started,
    )


# --- the individual number of a non-resident (J-LIS identity search) -----------------------


@dataclass(frozen=True)
class IdentityOutcome:
    """What the identity search gave: ``found`` (the number recorded), ``not_found``,
    ``multiple``, `non_residents.ALREADY_HELD` or `non_residents.HELD_BY_OTHER`, and a
    Japanese message. ``individual_number`` only for ``found`` — the caller decides who
    may see it (a number-use affair)."""

    atena_no: str
    status: str
    message: str
    matches: int
    individual_number: str | None = None


async def search_individual_number(
    work: Work, cipher: FieldCipher, catalogue: Catalogue, atena_no: str, affair_code: str
) -> IdentityOutcome:
    """The individual number of a person atena holds without one (a 住登外者), found by
    J-LIS from the person's current 基本4情報 — only for a 番号利用事務 (the caller checked
    the asker may act for ``affair_code``). Every use is audited here
    (``individual_number.search``: the affair, the person, the outcome, never the number)
    and at J-LIS (``identity.search``)."""
    action = "individual_number.search"
    async with work.refusals_audited(action):
        affair = catalogue.affairs.get(affair_code)
        if affair is None or not affair.number_use:
            name = f"事務「{affair.name}」" if affair is not None else f"事務コード「{affair_code[:20]}」"
            raise Problem(
                403,
                "affair_not_permitted",
                f"{name}は番号利用事務ではないため、個人番号を照会できません。",
            )
        target = await work.unit(lambda s: non_residents.identity_target(s, service.check_atena_no(atena_no)))

    def done(s: Session, outcome: IdentityOutcome) -> IdentityOutcome:
        work.rt.record(
            s,
            work.event(
                action, outcome.status, subject=atena_no, affair=affair_code, detail={"matches": outcome.matches}
            ),
        )
        return outcome

    if target.has_number:
        message = non_residents.IDENTITY_MESSAGES[non_residents.ALREADY_HELD]
        return await work.unit(
            lambda s: done(s, IdentityOutcome(atena_no, non_residents.ALREADY_HELD, message, 0))
        )
    ask = IdentitySearch(
        affair_code=affair_code,
        family_name=target.family_name,
        given_name=target.given_name,
        birth_date=target.birth_date,
        sex=target.sex,
        address=target.address,
    )
    async with work.refusals_audited(action):
        answer = await work.to_jlis(contract.IDENTITY_SEARCH, ask)

    def record(s: Session) -> IdentityOutcome:
        if answer.status != "found" or answer.individual_number is None:
            status = answer.status if answer.status in contract.IDENTITY_STATUSES else "not_found"
            return done(s, IdentityOutcome(atena_no, status, answer.message, answer.matches))
        number = answer.individual_number
        problem = ids.check(ids.IdKind.INDIVIDUAL_NUMBER, number)
        if problem is not None:  # J-LIS's fault: never stored
            raise Problem(502, "bad_peer_response", "J-LIS の回答を検証できません。", reason_code="bad_individual_number")
        status = non_residents.store_found_number(s, cipher, atena_no, number)
        if status != "found":
            return done(s, IdentityOutcome(atena_no, status, non_residents.IDENTITY_MESSAGES[status], 1))
        return done(s, IdentityOutcome(atena_no, "found", answer.message, 1, number))

    async with work.refusals_audited(action):
        return await work.unit(record)


# --- pseudonym acquisition -----------------------------------------------------------------


async def acquire_pseudonyms(work: Work, cipher: FieldCipher, atena_nos: Sequence[str] | None) -> AcquireOut:
    """符号取得 for the persons named (None: every person still without a pseudonym), in
    chunks: our chukan gets acquisition numbers from the hub, J-LIS gets (individual
    number, acquisition number) — never the 統合宛名番号 — and relays the resident code to
    the hub, which delivers the pseudonym to our chukan. atena never sees a pseudonym."""
    async with work.refusals_audited("pseudonym.acquire"):
        if atena_nos is None:
            targets = await work.unit(service.persons_without_pseudonym)
        else:
            targets = service.check_atena_nos(atena_nos)
        relayed = 0
        problems: dict[str, int] = {}
        for start in range(0, len(targets), CHUNK):
            chunk_relayed, chunk_problems = await _acquire_chunk(work, cipher, targets[start : start + CHUNK])
            relayed += chunk_relayed
            _add(problems, chunk_problems)
    return AcquireOut(requested=len(targets), relayed=relayed, problems=problems)


def _add(into: dict[str, int], more: dict[str, int]) -> None:
    for status, n in more.items():
        into[status] = into.get(status, 0) + n


async def _acquire_chunk(work: Work, cipher: FieldCipher, chunk: list[str]) -> tuple[int, dict[str, int]]:
    """One chunk, three units at atena: the chukan's numbers, the J-LIS submission, and
    (committed together with its audit entry) the persons J-LIS relayed marked
    ``requested``. A crash before that last unit leaves the chunk as it was: asked again,
    the chukan hands out the same numbers, J-LIS relays them again and the hub answers
    with the same pseudonyms."""
    # Step 1: our chukan gets acquisition numbers from the hub.
    acquiring = await work.to_chukan(contract.PSEUDONYM_ACQUIRE, AtenaNos(atena_nos=chunk))
    asked = frozenset(chunk)
    sub = await work.unit(lambda s: service.submission(s, cipher, asked, acquiring.items))
    # Step 2: J-LIS gets (individual number, acquisition number), never the 統合宛名番号.
    relayed: list[str] = []
    problems: dict[str, int] = {}
    if sub.items:
        answer = await work.to_jlis(contract.ACQUISITION_SUBMIT, AcquisitionSubmit(items=sub.items))
        relayed = sub.relayed(answer.results)
        _, problems = service.tally(answer.results)

    def started(s: Session) -> None:
        service.set_pseudonym_status(s, relayed, "requested")
        detail = {"count": len(sub.atena_nos), "relayed": len(relayed), **problems}
        work.rt.record(s, work.event("pseudonym.acquire", "ok", detail=detail))

    await work.unit(started)
    return len(relayed), problems


async def _bound_of(work: Work, atena_nos: Sequence[str]) -> list[str]:
    """Ask our chukan which of the persons have their pseudonym bound (never the pseudonym)."""
    bound: list[str] = []
    for start in range(0, len(atena_nos), STATUS_CHUNK):
        chunk = AtenaNos(atena_nos=list(atena_nos[start : start + STATUS_CHUNK]))
        bound.extend((await work.to_chukan(contract.PSEUDONYM_STATUS, chunk)).bound)
    return bound


async def pseudonym_status(work: Work, atena_nos: Sequence[str]) -> StatusOut:
    """Ask our chukan which of the persons have their pseudonym bound, and note it."""
    found = await bound_persons(work, atena_nos)
    return StatusOut(total=len(atena_nos), bound=len(found))


async def refresh_all_bound(work: Work) -> dict[str, int]:
    """Ask our chukan about every person whose acquisition was requested, page by page,
    note those bound, and return the persons per pseudonym status (counts only)."""
    async with work.refusals_audited("pseudonym.status"):
        page = await work.unit(service.requested_persons)
        while page:
            bound = await _bound_of(work, page)
            if bound:
                await work.unit(functools.partial(service.mark_bound, asked=frozenset(page), bound=bound))
            page = await work.unit(functools.partial(service.requested_persons, after=page[-1]))
        return await work.unit(service.pseudonym_counts)


async def bound_persons(work: Work, atena_nos: Sequence[str]) -> list[str]:
    """The persons (of those named) whose pseudonym our chukan holds, noted as bound."""
    async with work.refusals_audited("pseudonym.status"):
        targets = service.check_atena_nos(atena_nos)
        bound = await _bound_of(work, targets)
        asked = frozenset(targets)
        return await work.unit(lambda s: service.mark_bound(s, asked, bound)) if bound else []


@dataclass
class AcquireProgress:
    """Where a whole-population acquisition stands (`acquire_all`), persons counted."""

    targets: int  # asked for in this run
    goal: int  # to be bound by the end: the targets and those requested before, still waiting
    requested: int = 0  # chunks done: asked of our chukan and J-LIS
    relayed: int = 0  # relayed by J-LIS to the hub
    bound: int = 0  # bound at our chukan (as it reports), in this run
    problems: dict[str, int] = field(default_factory=dict)  # J-LIS's other answers, counted


@dataclass
class AcquireSummary:
    progress: AcquireProgress
    before: dict[str, int]  # persons per pseudonym status at the start (and ``no_number``)
    waiting: int  # requested, still not bound at the end
    seconds: float
    complete: bool  # every person with an individual number has a pseudonym


async def acquire_all(
    work: Work,
    cipher: FieldCipher,
    *,
    chunk: int = CHUNK,
    in_flight: int = 2,
    retry_requested: bool = False,
    wait_seconds: float = 600.0,
    poll_seconds: float = 0.5,
    on_progress: Callable[[AcquireProgress], None] | None = None,
) -> AcquireSummary:
    """符号取得 for every person who has an individual number and no pseudonym yet (the first
    go-live, or the rest after an interrupted run), in chunks committed one by one; then
    wait until our chukan reports them bound (or ``wait_seconds`` after the last chunk).

    Resumable: a person is marked ``requested`` in the chunk's last unit, after J-LIS relayed
    them; a re-run asks for persons not yet requested, and waits for those requested before
    (``retry_requested``: asks for them again too — idempotent all the way: the chukan hands
    out the number still awaiting its pseudonym, J-LIS relays it again, the hub answers with
    the person's one pseudonym, and the chukan finds it bound already). ``chunk`` persons go
    in one message to each node; ``in_flight`` chunks are under way at once.
    """
    if not 1 <= chunk <= contract.MAX_BATCH:
        raise Problem(422, "bad_count", f"1回の件数は1〜{contract.MAX_BATCH:,}件で指定してください。", str(chunk))
    started_at = time.monotonic()
    statuses = ("none", "requested") if retry_requested else ("none",)
    async with work.refusals_audited("pseudonym.acquire"):
        before = await work.unit(service.pseudonym_counts)
        targets = await work.unit(lambda s: service.persons_to_acquire(s, statuses))
        waiting_before = 0 if retry_requested else before["requested"]
        progress = AcquireProgress(targets=len(targets), goal=len(targets) + waiting_before)

        def report() -> None:
            if on_progress is not None:
                on_progress(progress)

        report()
        submitted = asyncio.Event()
        gate = asyncio.Semaphore(max(1, in_flight))

        async def one(part: list[str]) -> None:
            async with gate:
                relayed, problems = await _acquire_chunk(work, cipher, part)
            progress.requested += len(part)
            progress.relayed += relayed
            _add(progress.problems, problems)
            report()

        async def submit_all() -> None:
            try:
                async with asyncio.TaskGroup() as tg:
                    for start in range(0, len(targets), chunk):
                        tg.create_task(one(targets[start : start + chunk]))
            except BaseExceptionGroup as group:
                # The chunks under way are cancelled (what they committed stays); the
                # caller gets the failure itself — a refusal or an unreachable peer first.
                failures = list(group.exceptions)
                raise next((e for e in failures if isinstance(e, Problem)), failures[0]) from None
            finally:
                submitted.set()

        async def mark(page: list[str]) -> int:
            """Ask the chukan about ``page``; note the bound; return how many were."""
            bound = await _bound_of(work, page)
            if bound:
                found = await work.unit(functools.partial(service.mark_bound, asked=frozenset(page), bound=bound))
                progress.bound += len(found)
                report()
            return len(bound)

        async def watch() -> int:
            """Mark bound what the chukan reports, oldest requests first; return how many
            are still waiting when everything is bound, or the wait is over.

            The hub delivers a chunk's pseudonyms in one message, so requests are bound
            roughly in the order made: while chunks are still being sent, the oldest
            ``PROBE`` persons waiting are asked about first, and the page behind them only
            when some of them are bound — the chukan checks every 統合宛名番号 it is asked
            about, and asking about the same 10,000 every half second would cost it more
            than binding them. After the last chunk, every waiting person is asked about."""
            deadline: float | None = None
            while True:
                page = await work.unit(service.requested_persons)
                if not page:
                    if submitted.is_set():
                        return 0
                elif not submitted.is_set():
                    hit = await mark(page[:PROBE])
                    if hit and hit + await mark(page[PROBE:]) == len(page):
                        continue  # the oldest page was bound: the next one at once
                else:
                    while page:  # every waiting person, page by page
                        await mark(page)
                        page = await work.unit(functools.partial(service.requested_persons, after=page[-1]))
                    deadline = deadline or time.monotonic() + wait_seconds
                    if time.monotonic() >= deadline:
                        return int((await work.unit(service.pseudonym_counts))["requested"])
                await asyncio.sleep(poll_seconds)

        watcher = asyncio.create_task(watch())
        try:
            await submit_all()
        except BaseException:
            watcher.cancel()
            raise
        waiting = await watcher
    after = await work.unit(service.pseudonym_counts)
    summary = AcquireSummary(
        progress=progress,
        before=before,
        waiting=waiting,
        seconds=time.monotonic() - started_at,
        complete=after["none"] == 0 and after["requested"] == 0,
    )
    await work.unit(
        lambda s: work.rt.record(
            s,
            work.event(
                "pseudonym.acquire_all",
                "complete" if summary.complete else "incomplete",
                detail={
                    "targets": progress.targets,
                    "requested": progress.requested,
                    "relayed": progress.relayed,
                    "bound": progress.bound,
                    "waiting": waiting,
                    "seconds": round(summary.seconds, 1),
                    **progress.problems,
                },
            ),
        )
    )
    return summary


# --- provision copies ------------------------------------------------------------------------


async def register_copies(work: Work, system: str, records: Sequence[dict[str, Any]]) -> FukuhonOut:
    """A business system's copies (副本) to our chukan, named by 統合宛名番号 instead of the
    business 宛名番号; the chukan checks each against its layout."""
    async with work.refusals_audited("fukuhon.register"):
        copies = await work.unit(lambda s: service.copies_for_chukan(s, system, records))
        answer = await work.to_chukan(contract.FUKUHON_REGISTER, FukuhonRegister(records=copies))
    await work.unit(
        lambda s: work.rt.record(
            s, work.event("fukuhon.register", "ok", detail={"system": system, "count": answer.registered})
        )
    )
    return FukuhonOut(registered=answer.registered)


# --- inquiries -------------------------------------------------------------------------------


async def inquire(
    work: Work,
    catalogue: Catalogue,
    req: service.InquiryRequest,
    roles: frozenset[str],
    *,
    who: str = service.STAFF,
    screen: bool = True,
) -> service.InquiryResult:
    """情報照会 through our chukan, for /v1/inquiries, the inquiry screen and 一括照会 files.

    Checks the codes and the date, that the principal (``who``: a staff member, or a
    business system whose inquiry scopes are given as ``roles``) holds ``<affair>:照会``,
    finds the person and screens the request (abnormal traffic, as ``who``; ``screen``
    False for the records of a batch file, screened once as a whole), then relays it.
    Every refusal after the format checks, and every outcome, is logged (inquiry log)
    and audited under the action ``inquiry``. The request's department and user
    (照会者部署コード, 照会者ユーザーID) go to the inquiry log and on to our chukan and the hub.
    """
    as_of = service.inquiry_date(req)
    target, refusal = await work.unit(lambda s: _begin_inquiry(s, work, catalogue, req, roles, who, screen))
    if refusal is not None:
        raise refusal
    assert target is not None
    log = {
        "staff_id": work.actor,
        "affair_code": target.affair_code,
        "procedure_code": req.procedure_code,
        "info_kind_code": req.info_kind_code,
        "provider_org": req.provider_org,
        "atena_no": target.atena_no,
        "department": req.department,
        "user_id": req.user_id,
    }
    ask = ChukanInquiry(
        atena_no=target.atena_no,
        provider_org=req.provider_org,
        procedure_code=req.procedure_code,
        info_kind_code=req.info_kind_code,
        as_of=as_of,
        inquirer_department=req.department,
        inquirer_user=req.user_id,
    )

    def outcome(s: Session, serial: str | None, code: str, reason: str | None) -> None:
        service.log_inquiry(s, at=work.rt.clock(), serial=serial, outcome=code, reason=reason, **log)
        work.rt.record(
            s,
            work.event(
                "inquiry", code, subject=target.atena_no, affair=target.affair_code, ref=serial or None
            ),
        )

    try:
        answer = await work.to_chukan(contract.CHUKAN_INQUIRY, ask)
    except Problem as exc:
        serial = str(exc.extra.get("serial") or "") or None
        code, reason = exc.code, exc.detail or exc.title
        await work.unit(lambda s: outcome(s, serial, code, reason))
        raise
    await work.unit(lambda s: outcome(s, answer.serial, answer.status, None))
    return service.InquiryResult(
        serial=answer.serial,
        status=answer.status,
        values=dict(answer.values) if answer.values is not None else None,
        edition=answer.edition,
        record_key=answer.record_key,
        as_of=as_of,
        affair_code=target.affair_code,
        atena_no=target.atena_no,
    )


def _begin_inquiry(
    s: Session,
    work: Work,
    catalogue: Catalogue,
    req: service.InquiryRequest,
    roles: frozenset[str],
    who: str,
    screen: bool,
) -> tuple[service.InquiryTarget | None, Problem | None]:
    """One unit of work: authorize and find the person (reads only), then screen. A
    refusal is audited in the unit and returned, to be raised after the commit (a
    screening refusal's counts and alerts stay with its audit entry)."""
    try:
        target = service.inquiry_target(s, catalogue, req, roles, who)
    except Problem as exc:
        # Refusals are audited too: who tried what, for which affair (or procedure).
        affair = service.refused_affair(catalogue, req.procedure_code)
        work.rt.record(s, work.event("inquiry", exc.code, affair=affair))
        return None, exc
    decision = work.rt.screen_in(s, who, work.actor, target.atena_no) if screen else None
    if decision is not None and decision.problem is not None:
        work.rt.record(s, work.event("inquiry", decision.problem.code, subject=target.atena_no))
        return target, decision.problem
    return target, None


# --- 一括照会 files -------------------------------------------------------------------------

BATCH_CONCURRENCY = 8  # records in flight at once: each waits mostly on chukan, the hub and the provider
BATCH_RATE_RETRIES = 5  # a record refused by a peer's rate limit is asked again after its window
BATCH_MAX_WAIT = 60.0  # seconds, at most, before asking again


@dataclass
class BatchSummary:
    """What a batch did: the result rows in file order and their counts by outcome
    (answered, no_data, pending, or the refusal's code)."""

    rows: list[batch.ResultRow]
    counts: dict[str, int]
    seconds: float


async def inquire_batch(
    work: Work,
    catalogue: Catalogue,
    records: Sequence[batch.BatchRecord],
    roles: frozenset[str],
    *,
    who: str,
    source: str,
    show_atena_no: bool,
    concurrency: int = BATCH_CONCURRENCY,
    default_user: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> BatchSummary:
    """The records of a 一括照会 file, each through `inquire` (its own authorization by the
    principal's roles, its own log and audit entries); at most ``concurrency`` at once.

    The file is screened once as a whole, as ``who`` (rate limit and abnormal-traffic
    rules): a batch is a sanctioned bulk job, and screening each record as an interactive
    look-up would refuse any real one after a few dozen persons. A record the checks
    refused (`batch.check_record`) is never sent and is audited here with its line and
    field. A record a peer refuses for its rate limit (429 ``rate_limited``, refused on
    receipt: nothing kept) is asked again after the peer's ``retry_after``, up to
    `BATCH_RATE_RETRIES` times, so that a file of 10,000 records is paced to what the
    chukan and the hub accept instead of failing in its second minute. One row per
    record, in file order; one audit entry for the file with its counts.
    ``show_atena_no``: the rows carry the 統合宛名番号 (staff of atena), else it is blank
    (business systems never see it). ``default_user``: the 照会者ユーザーID of a record
    that leaves it empty (the staff member running the file, as real clients leave it
    empty), if it fits the field.
    """
    if default_user is not None and not fits_inquirer_field(default_user):
        default_user = None
    started = time.monotonic()
    async with work.refusals_audited("inquiry.batch"):
        await work.rt.run_db(work.rt.screen, who, work.actor, None)
    numbers: dict[tuple[str, str], str] = {}
    if show_atena_no:
        numbers = await work.unit(lambda s: _translated(s, records))

    def audit_bad(s: Session) -> None:
        for rec in records:
            if rec.error is not None:
                work.rt.record(
                    s,
                    work.event(
                        "inquiry",
                        rec.error.code,
                        affair=rec.values.get("affair_code") or None,
                        detail={"file": source[-120:], "line": rec.line, "field": rec.error.extra.get("field", "")},
                    ),
                )

    if any(rec.error is not None for rec in records):
        await work.unit(audit_bad)
    rows: list[batch.ResultRow | None] = [None] * len(records)
    counts: dict[str, int] = {}
    done = 0
    gate = asyncio.Semaphore(max(1, concurrency))

    def finish(index: int, row: batch.ResultRow, outcome: str) -> None:
        nonlocal done
        rows[index] = row
        counts[outcome] = counts.get(outcome, 0) + 1
        done += 1
        if on_progress is not None:
            on_progress(done, len(records))

    async def one(index: int, rec: batch.BatchRecord) -> None:
        req = rec.request
        if req is None:
            assert rec.error is not None
            finish(index, batch.error_row(rec.values, rec.error), rec.error.code)
            return
        known = numbers.get((req.system or "", req.business_atena_no or "")) or req.atena_no
        if req.user_id is None and default_user is not None:
            req = replace(req, user_id=default_user)
        async with gate:
            for attempt in range(BATCH_RATE_RETRIES + 1):
                try:
                    result = await inquire(work, catalogue, req, roles, who=who, screen=False)
                    break
                except Problem as exc:
                    wait = _retry_after(exc)
                    if wait is None or attempt == BATCH_RATE_RETRIES:
                        row = batch.error_row(rec.values, exc, atena_no=known if show_atena_no else None)
                        finish(index, row, exc.code)
                        return
                    # A peer's rate limit (chukan or the hub): nothing was kept for this
                    # attempt (refused on receipt, no serial); wait for its window, holding
                    # this slot, so the whole batch slows down to what the peers take.
                    await asyncio.sleep(wait)
        finish(index, batch.result_row(rec.values, result, catalogue, show_atena_no=show_atena_no), result.status)

    if on_progress is not None:
        on_progress(0, len(records))
    await asyncio.gather(*(one(i, rec) for i, rec in enumerate(records)))
    summary = BatchSummary(rows=[r for r in rows if r is not None], counts=counts, seconds=time.monotonic() - started)
    await work.unit(
        lambda s: work.rt.record(
            s,
            work.event(
                "inquiry.batch",
                "ok",
                detail={"file": source[-120:], "records": len(records), **counts},
            ),
        )
    )
    return summary


def _retry_after(exc: Problem) -> float | None:
    """Seconds to wait before asking again, for a peer's ``rate_limited`` refusal; else None."""
    if exc.code != "rate_limited":
        return None
    after = exc.extra.get("retry_after")
    seconds = float(after) if isinstance(after, int | float) and not isinstance(after, bool) else 1.0
    return min(max(seconds, 0.1), BATCH_MAX_WAIT)


def fits_inquirer_field(value: str) -> bool:
    """Whether a staff ID can stand as the 照会者ユーザーID (the wire's rule: 1–20 printable ASCII)."""
    return 0 < len(value) <= contract.MAX_INQUIRER_FIELD and value.isascii() and value.isprintable() and value.strip() == value


def _translated(session: Session, records: Sequence[batch.BatchRecord]) -> dict[tuple[str, str], str]:
    """(system, 業務宛名番号) → 統合宛名番号 of the records' persons, a query per system: what a
    refused record's row echoes in the staff's result file."""
    by_system: dict[str, list[str]] = {}
    for rec in records:
        if rec.request is not None and rec.request.system and rec.request.business_atena_no:
            by_system.setdefault(rec.request.system, []).append(rec.request.business_atena_no)
    out: dict[tuple[str, str], str] = {}
    for system, numbers in by_system.items():
        out.update(((system, n), a) for n, a in service.translate_many(session, system, numbers).items())
    return out


# --- the resident register feed, online ---------------------------------------------------


async def apply_register_changes(
    work: Work, cipher: FieldCipher, system: str, records: Sequence[Any], *, acquire: bool = True
) -> ChangesOut:
    """住民異動 from the register ``system`` (renkei.atena.feed): all checked first (any
    malformed event refuses them all, each error by position, field and reason), applied
    by effective date in one unit with its audit entry; then, for the persons of 転入 and
    出生, pseudonym acquisition. The events stay applied if the acquisition cannot start
    (a peer down): the answer says so and `renkei atena acquire-pseudonyms` catches up."""
    action = "register.changes"
    async with work.refusals_audited(action):
        events: list[feed.FeedEvent] = []
        errors: list[feed.FeedError] = []
        for index, rec in enumerate(records):
            checked = feed.parse_event(rec if isinstance(rec, dict) else {}, index + 1)
            if isinstance(checked, list):
                errors.extend(checked)
            else:
                events.append(checked)
        if errors:
            raise feed.refused(errors)

        def apply(s: Session) -> feed.FeedResult:
            now = work.rt.clock()
            result = feed.apply_events(s, cipher, events, now, system=system, source=f"api:{work.actor}")
            detail = {"count": result.read, "applied": result.applied, "duplicates": result.duplicates, **result.outcomes}
            work.rt.record(s, work.event(action, "ok", detail=detail))
            return result

        result = await work.unit(apply)
    out = ChangesOut(
        received=result.read,
        applied=result.applied,
        duplicates=result.duplicates,
        outcomes=result.outcomes,
        events=result.by_event,
    )
    if acquire and result.arrivals:
        try:
            out.acquisition = await acquire_pseudonyms(work, cipher, result.arrivals)
        except Problem as exc:  # audited by acquire_pseudonyms; the events stay applied
            out.acquisition_error = exc.code
    return out
