"""Provision copies (副本) from a file to our chukan: `renkei atena import fukuhon`.

The file holds one business system's copies in the shape ``POST /v1/fukuhon`` takes
(`renkei.dummy.bulk.fukuhon_records`), as JSON Lines::

    {"business_atena_no": "…", "info_kind_code": "TM00000000000002", "record_key": "2024",
     "valid_from": "2025-04-01", "values": {"K001": "2024", "K002": "1", …}}

(optional: ``valid_to``, ``delete``, ``no_auto_answer``), or as CSV (UTF-8, a header row)
with the Japanese columns of `COLUMNS` and one column per layout item named by its item
code (``K001``, ``K002`` …; an empty cell is an item not set, and is left out)::

    業務宛名番号,特定個人情報名コード,レコードキー,公開開始日,K001,K002,K003
    000000000000018,TM00000000000002,2024,2025-04-01,2024,1,3500000

The atena runs in this process with its own configuration, database and keys (the
command needs the node's files, like `renkei staff`); the chukan runs as a server. Each
batch (at most 10,000 copies, one message): the business numbers translated to 統合宛名番号
in one query, the copies sent to the chukan (which checks each against its layout,
stores new versions and skips copies it already holds unchanged), then, in one atena
transaction, the import ledger advanced and the batch audited as ``cli:<os user>``.
A crash between the chukan's commit and the ledger's leaves the batch to be sent again
on the next run, which the chukan answers by adding nothing: the import resumes after
the last batch the ledger counts and is idempotent. A refused copy stops the import
with its file and line named in Japanese; nothing of its batch is stored.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from sqlalchemy import Engine

from renkei.atena import service
from renkei.atena.models import SCHEMA, Base, audit, guard, imports, kernel
from renkei.core import imports as ledger
from renkei.core.audit.log import AuditEvent
from renkei.core.config import NodeConfig
from renkei.core.db import migrate, transaction
from renkei.core.errors import Problem
from renkei.core.records import Columns, detect_format, read_records
from renkei.core.wire import contract
from renkei.core.wire.contract import FukuhonRegister, FukuhonRegistered
from renkei.core.wire.runtime import (
    NodeRuntime,
    build_runtime,
    follow_hub_registry,
    hub_registry_view,
)

__all__ = ["ACTION", "COLUMNS", "MAX_BATCH", "CopiesImported", "import_fukuhon", "kind_of"]

ACTION: Final = "fukuhon.import"
MAX_BATCH: Final = contract.MAX_BATCH  # copies in one message to the chukan
DEFAULT_BATCH: Final = 5_000

# CSV: these Japanese columns (or the field names themselves); every other column is a
# layout item named by its item code, gathered into ``values``.
COLUMNS: Final = Columns(
    names={
        "業務宛名番号": "business_atena_no",
        "特定個人情報名コード": "info_kind_code",
        "レコードキー": "record_key",
        "公開開始日": "valid_from",
        "公開終了日": "valid_to",
        "削除": "delete",
        "自動応答不可": "no_auto_answer",
    },
    nested={"": "values"},
    required=frozenset({"business_atena_no", "info_kind_code", "valid_from"}),
)
_FLAGS: Final = ("delete", "no_auto_answer")
_TRUE: Final = frozenset({"1", "true", "yes", "はい", "有"})
_FALSE: Final = frozenset({"", "0", "false", "no", "いいえ", "無"})
_FLAG_LABELS: Final = {"delete": "削除", "no_auto_answer": "自動応答不可"}

T = TypeVar("T")
# How a batch reaches the chukan, called in the import's worker thread (blocking): by
# default a message over the wire; tests hand the chukan's service in directly.
Sender = Callable[[FukuhonRegister], FukuhonRegistered]


def kind_of(system: str) -> str:
    """The ledger's kind of an import: one per business system (a file is one system's)."""
    return f"fukuhon:{system}"


def _copy(rec: dict[str, Any]) -> dict[str, Any]:
    """A record as the API takes it. CSV cells are text: 削除 and 自動応答不可 are read as
    1/0 (true/false, はい/いいえ); JSON Lines values pass unchanged."""
    for name in _FLAGS:
        value = rec.get(name)
        if isinstance(value, str):
            text = value.strip().lower()
            if text in _TRUE:
                rec[name] = True
            elif text in _FALSE:
                rec[name] = False
            else:
                raise Problem(
                    422, "bad_values", f"列「{_FLAG_LABELS[name]}」は 1（はい）か 0（いいえ）で指定してください。"
                )
    if rec.get("valid_to") == "":
        del rec["valid_to"]
    return rec


def _copies(batch: ledger.Batch) -> list[dict[str, Any]]:
    out = []
    for index, (_line, rec) in enumerate(batch):
        try:
            out.append(_copy(rec))
        except Problem as exc:
            exc.extra["index"] = index
            raise
    return out


def _refusal_at_lines(exc: Problem, batch: ledger.Batch) -> Problem:
    """The chukan's refusal of a batch (``errors`` by index in the batch) told by line:
    the first error is the title (the loop puts its file and line in front), all of them
    (up to 100) are listed with their lines."""
    errors = exc.extra.get("errors")
    if exc.code != "invalid_fukuhon" or not isinstance(errors, list) or not errors:
        return exc
    lines = []
    for err in errors:
        index = err.get("index") if isinstance(err, dict) else None
        if isinstance(index, int) and 0 <= index < len(batch):
            lines.append({**err, "line": batch[index][0]})
    if not lines:
        return exc
    first = lines[0]
    more = f"（このバッチにほか {len(errors) - 1} 件の誤りがあります）" if len(errors) > 1 else ""
    return Problem(
        exc.status, exc.code, f"{first.get('message') or exc.title}{more}", exc.detail, index=first["index"],
        errors=lines,
    )  # fmt: skip


@dataclass(frozen=True)
class CopiesImported:
    """One run: the ledger's figures (``applied`` = new versions stored by the chukan)."""

    result: ledger.ImportResult
    system: str
    unchanged: int

    def summary(self) -> str:
        r = self.result
        rate = r.read / r.seconds if r.seconds > 0 else 0.0
        resumed = f"（{r.resumed_from:,} 件目の後から再開）" if r.resumed_from else ""
        return (
            f"副本（業務「{self.system}」）の取込が完了しました{resumed}: {r.run.source} を {r.read:,} 件読込、"
            f"新しい版 {r.applied:,} 件を登録、登録済みと同じ {self.unchanged:,} 件は変更なし。"
            f"所要 {r.seconds:.1f} 秒（{rate:,.0f} 件/秒）。取込番号 {r.run.id}"
            f"（累計 {r.run.rows_read:,} 件、{r.run.batches:,} バッチ）"
        )


def import_fukuhon(
    config: NodeConfig,
    path: Path,
    system: str,
    *,
    actor: str,
    batch_size: int = DEFAULT_BATCH,
    force: bool = False,
    progress: ledger.Progress | None = None,
    engine: Engine | None = None,
    send: Sender | None = None,
) -> CopiesImported:
    """Send the copies of ``path`` (business ``system``'s) through the atena ``config``
    names to its chukan, in committed batches; resumes an unfinished import of the file.

    Raises `Problem`: a bad record or a copy the chukan refuses (file and line named; the
    batches before it stay stored), a file already imported (``import_finished``, unless
    ``force``), the chukan unreachable (``peer_unavailable``: run again to resume).
    """
    if not 1 <= batch_size <= MAX_BATCH:
        raise Problem(422, "bad_count", f"一度に送る件数は1〜{MAX_BATCH:,}件で指定してください。")
    if not system or len(system) > 40:
        raise Problem(422, "bad_values", "業務システムIDを40文字以内で指定してください。")
    from renkei.atena.app import field_cipher

    rt = build_runtime(config, Base.metadata, kernel, hub_registry_view(config), audit, guard=guard, engine=engine)
    follow_hub_registry(rt)
    try:
        migrate(rt.engine, SCHEMA.migrations, SCHEMA.metadata, {"field_cipher": field_cipher(config)})
        return asyncio.run(_import(rt, path, system, actor, batch_size, force, progress, send))
    finally:
        if engine is None:
            rt.engine.dispose()


async def _import(
    rt: NodeRuntime,
    path: Path,
    system: str,
    actor: str,
    batch_size: int,
    force: bool,
    progress: ledger.Progress | None,
    send: Sender | None,
) -> CopiesImported:
    """The import in worker threads (database work never on the event loop); each batch's
    message to the chukan on this loop."""
    loop = asyncio.get_running_loop()
    chukan = rt.config.peer("chukan")

    def on_loop(make: Callable[[], Awaitable[T]]) -> T:
        async def run() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(run(), loop).result()

    def to_chukan(body: FukuhonRegister) -> FukuhonRegistered:
        return on_loop(lambda: rt.peer.send(contract.FUKUHON_REGISTER, chukan, rt.org_code, body))

    with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="renkei-import") as pool:
        try:
            return await loop.run_in_executor(
                pool, _pipeline, rt, pool, path, system, actor, batch_size, force, progress, send or to_chukan
            )
        finally:
            await rt.peer.close()


_END: Final = object()


def _pipeline(
    rt: NodeRuntime,
    pool: concurrent.futures.ThreadPoolExecutor,
    path: Path,
    system: str,
    actor: str,
    batch_size: int,
    force: bool,
    progress: ledger.Progress | None,
    deliver: Sender,
) -> CopiesImported:
    """The ledger's loop, one batch ahead: while the chukan stores batch N, the next one is
    read and translated in a second thread. Batches are sent and counted strictly in file
    order, the ledger advanced only after the chukan's answer, so a crash anywhere leaves
    the ledger at a batch the chukan holds (a batch it also holds is sent again and adds
    nothing). A bad line ahead is raised only after every batch before it is counted."""
    started = time.perf_counter()
    fmt = detect_format(path)
    source = path.name
    digest, lines = ledger.scan_file(path)
    estimate = max(0, lines - 1) if fmt == "csv" else lines
    with transaction(rt.sessions) as s:
        run = ledger.begin(s, imports, kind=kind_of(system), source=source, digest=digest, actor=actor,
                           now=rt.clock(), force=force)  # fmt: skip
    resumed_from = run.rows_read
    ahead: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def prepare() -> None:
        """Read and translate batch after batch into ``ahead`` (a refusal too, in its place)."""
        try:
            batch: ledger.Batch = []
            records = read_records(path, COLUMNS, skip=run.rows_read, source=source)
            for item in itertools.chain(records, [None]):
                if item is not None:
                    batch.append(item)
                    if len(batch) < batch_size:
                        continue
                if not batch:
                    break
                try:
                    with transaction(rt.sessions) as s:
                        copies = service.copies_for_chukan(s, system, _copies(batch))
                except Problem as exc:
                    index = exc.extra.get("index")
                    if isinstance(index, int) and 0 <= index < len(batch):
                        raise ledger.at_line(exc, source, batch[index][0]) from None
                    raise
                if not _offer(ahead, (batch, FukuhonRegister(records=copies)), stop):
                    return
                batch = []
            _offer(ahead, _END, stop)
        except BaseException as exc:  # handed over in order; raised by the loop below
            _offer(ahead, exc, stop)

    reader = pool.submit(prepare)
    read = applied = unchanged = 0
    if progress is not None:
        progress(run.rows_read, estimate)
    try:
        while (item := ahead.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            batch, body = item
            try:
                answer = deliver(body)
            except Problem as exc:
                raise _refusal_at_lines(exc, batch) from None

            with transaction(rt.sessions) as s:
                run = ledger.advance(s, imports, run, read=len(batch), applied=answer.added, now=rt.clock())
                rt.record(s, AuditEvent(actor=actor, terminal="cli", action=ACTION, outcome="ok", ref=f"import:{run.id}",
                                        detail={"system": system, "import": run.id, "batch": run.batches,
                                                "count": len(batch), "added": answer.added}))  # fmt: skip
            read += len(batch)
            applied += answer.added
            unchanged += answer.registered - answer.added
            if progress is not None:
                progress(run.rows_read, estimate)
        with transaction(rt.sessions) as s:
            run = ledger.finish(s, imports, run, rt.clock())
    except Problem as exc:
        refusal = exc
        index = exc.extra.get("index")
        if isinstance(index, int) and isinstance(item, tuple) and 0 <= index < len(item[0]):
            refusal = ledger.at_line(exc, source, item[0][index][0])
        # A refusal is audited too (in a transaction of its own: its batch wrote nothing).
        with transaction(rt.sessions) as s:
            rt.record(s, AuditEvent(actor=actor, terminal="cli", action=ACTION, outcome=refusal.code,
                                    detail={"system": system, "import": run.id}))  # fmt: skip
        raise refusal from None
    finally:
        stop.set()
        reader.result()
    result = ledger.ImportResult(run=run, read=read, applied=applied, resumed_from=resumed_from,
                                 seconds=time.perf_counter() - started)  # fmt: skip
    return CopiesImported(result, system, unchanged)


def _offer(ahead: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put ``item`` for the loop unless it has stopped (then False)."""
    while not stop.is_set():
        try:
            ahead.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False
