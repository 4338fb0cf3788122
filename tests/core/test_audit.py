"""The audit log: a hash chain with signed checkpoints that finds every kind of tampering."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from joserfc.jwk import OKPKey
from sqlalchemy import Engine, MetaData, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from renkei.core import ids
from renkei.core.audit.log import (
    GENESIS_HASH,
    AuditEvent,
    AuditLog,
    AuditTables,
    audit_tables,
    defer_appends,
    deferred_mark,
    drop_deferred,
    entry_hash,
    export_jsonl,
    flush_deferred,
    verify,
    verify_jsonl,
)
from renkei.core.crypto import envelope
from renkei.core.db import make_engine, make_sessionmaker, transaction
from tests.core.conftest import Keys

ORG = "1310410000000000"
JST = timezone(timedelta(hours=9))
NUMBER = ids.make_individual_number("12345678901")




class Clock:
    """Starts in JST with microseconds and moves on a little at every reading."""

    def __init__(
        self, start: datetime, step: timedelta = timedelta(seconds=1, microseconds=7)
    ) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> datetime:
        value = self.now
        self.now += self.step
        return value


@dataclass
class Env:
    engine: Engine
    sessions: sessionmaker[Session]
    tables: AuditTables
    log: AuditLog
    clock: Clock
    keys: Keys

    def verify(self) -> Any:
        with self.sessions() as s:
            return verify(s, self.tables, self.keys.public.get)

    def append(self, *events: AuditEvent) -> list[int]:
        with transaction(self.sessions) as s:
            return self.log.append_many(s, events)

    def rows(self) -> list[dict[str, Any]]:
        t = self.tables.entries
        with self.sessions() as s:
            return [
                {str(k): v for k, v in r.items()}
                for r in s.execute(select(t).order_by(t.c.seq)).mappings()
            ]

    def sql(self, statement: Any, params: dict[str, Any] | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(statement) if isinstance(statement, str) else statement, params or {})


@pytest.fixture
def make_env(db_url: str, keys: Keys) -> Iterator[Callable[..., Env]]:
    engines: list[Engine] = []

    def factory(every: int = 5, seconds: float = 3600.0) -> Env:
        # PostgreSQL hands timestamps back in the session's zone: make it not UTC.
        kwargs: dict[str, Any] = {}
        if db_url.startswith("postgresql"):
            kwargs["connect_args"] = {"options": "-c TimeZone=Asia/Tokyo"}
        engine = make_engine(db_url, **kwargs)
        engines.append(engine)
        md = MetaData()
        tables = audit_tables(md)
        md.drop_all(engine)  # fresh tables for every call, also within one test
        md.create_all(engine)
        clock = Clock(datetime(2026, 4, 1, 9, 30, 0, 123456, tzinfo=JST))
        log = AuditLog(
            tables, keys.signing, checkpoint_every=every, checkpoint_seconds=seconds, clock=clock
        )
        return Env(engine, make_sessionmaker(engine), tables, log, clock, keys)

    yield factory
    for engine in engines:
        engine.dispose()


def event(i: int, **kw: Any) -> AuditEvent:
    base: dict[str, Any] = {
        "actor": f"staff{i % 3}",
        "terminal": "pc-01",
        "action": "atena.view",
        "outcome": "ok",
        "subject": ids.make_atena_no(i + 1),
        "affair": "JM00000000000101",
        "ref": f"req-{i}",
        "detail": {"reason": "窓口", "n": i, "z": [1, {"b": None, "a": "é"}]},
    }
    base.update(kw)
    return AuditEvent(**base)


def _obj(row: dict[str, Any]) -> dict[str, Any]:
    obj = {k: v for k, v in row.items() if k != "hash"}
    obj["at"] = row["at"].astimezone(UTC).isoformat(timespec="microseconds")
    return obj


def _filled(make_env: Callable[..., Env], n: int = 12) -> Env:
    env = make_env(every=5)
    for i in range(1, n + 1):
        env.append(event(i, outcome="denied" if i == 7 else "ok"))
    return env


# --- appending ------------------------------------------------------------------------


def test_append_and_verify(make_env: Callable[..., Env]) -> None:
    env = make_env(every=5)
    assert env.verify().ok and env.verify().entries == 0
    assert env.append(event(1)) == [1]
    assert env.append(*(event(i) for i in range(2, 8))) == list(range(2, 8))
    report = env.verify()
    assert report.ok and report.entries == 7 and report.checkpoints == 1
    assert report.problem == "unsigned_tail" and report.first_broken_seq is None
    assert report.message.endswith(
        "最後のチェックポイント（5 番）より後の 2 件はまだ署名されていません。"
    )
    rows = env.rows()
    assert rows[0]["prev_hash"] == GENESIS_HASH
    assert all(r["prev_hash"] == p["hash"] for p, r in zip(rows, rows[1:], strict=False))
    with transaction(env.sessions) as s:
        assert env.log.checkpoint(s) == 7
    report = env.verify()
    assert (report.ok, report.problem, report.checkpoints) == (True, None, 2)
    assert "改ざんは見つかりませんでした" in report.message


def test_values_read_back_hash_as_appended(make_env: Callable[..., Env]) -> None:
    env = make_env()
    env.clock.step = timedelta(0)
    env.clock.now = datetime(2026, 4, 1, 0, 0, 0, 0, tzinfo=JST)  # no microseconds, other zone
    detail: dict[str, Any] = {
        "z": 1,
        "a": {"y": [1, 2.5, (3, 4)], "x": None},
        "日本語": "値",
        "nan": float("nan"),
    }
    env.append(
        event(1, detail=detail),
        event(2, subject=None, affair=None, ref=None, detail=None, terminal=""),
    )
    env.clock.now = datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    env.append(
        event(3, actor="職員 山田", detail={"b": {"d": 1, "c": 2}, "a": True}),
        event(
            4, terminal="pc\t01\\N\n", detail={"q": "tab\there \\ back\\N", "e": "\x1b"}
        ),  # COPY escapes
    )
    rows = env.rows()
    for row in rows:
        assert entry_hash(_obj(row)) == row["hash"]
    assert rows[0]["detail"] == {
        "z": 1,
        "a": {"y": [1, 2.5, [3, 4]], "x": None},
        "日本語": "値",
        "nan": None,
    }
    assert rows[0]["at"] == datetime(2026, 3, 31, 15, 0, tzinfo=UTC)
    assert rows[1]["subject"] is None and rows[1]["detail"] is None and rows[1]["terminal"] == ""
    assert rows[2]["at"].microsecond == 999999
    assert rows[3]["terminal"] == "pc\t01\\N\n" and rows[3]["detail"]["q"] == "tab\there \\ back\\N"
    assert env.verify().ok


def test_rollback_leaves_no_entry_and_no_gap(make_env: Callable[..., Env]) -> None:
    env = make_env()
    env.append(event(1))
    with pytest.raises(RuntimeError), transaction(env.sessions) as s:
        assert env.log.append(s, event(2)) == 2
        raise RuntimeError("the audited change failed")
    assert [r["seq"] for r in env.rows()] == [1]
    assert env.append(event(3)) == [2]
    assert env.verify().ok


def test_deferred_appends_are_written_once_at_the_end_in_order(make_env: Callable[..., Env]) -> None:
    """A transaction of several units queues its entries and writes them in one append
    before the commit: the same chain as appending one by one, refusals still at once."""
    env = make_env(every=4)
    env.append(event(1))
    with transaction(env.sessions) as s:
        defer_appends(s)
        assert env.log.append(s, event(2)) is None
        assert env.log.append_many(s, [event(3), event(4)]) == []
        mark = deferred_mark(s)
        env.log.append(s, event(5))  # a unit that is then rolled back to its savepoint
        drop_deferred(s, mark)
        with pytest.raises(ValueError, match="個人番号"):  # refused in the unit, not at the end
            env.log.append(s, event(6, detail={"note": NUMBER}))
        env.log.append(s, event(7))
        assert [r["seq"] for r in env.rows()] == [1]  # nothing written yet (another session reads)
        assert flush_deferred(s) == 4
        assert env.log.append(s, event(8)) == 6  # deferring ended with the flush
    rows = env.rows()
    assert [r["ref"] for r in rows] == ["req-1", "req-2", "req-3", "req-4", "req-7", "req-8"]
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5, 6]
    report = env.verify()
    assert report.ok and report.entries == 6 and report.checkpoints == 1  # the 4th was signed


def test_deferred_appends_roll_back_with_their_transaction(make_env: Callable[..., Env]) -> None:
    env = make_env()
    env.append(event(1))
    with pytest.raises(RuntimeError), transaction(env.sessions) as s:
        defer_appends(s)
        env.log.append(s, event(2))
        flush_deferred(s)
        raise RuntimeError("the commit never came")
    assert [r["seq"] for r in env.rows()] == [1]
    assert env.append(event(3)) == [2] and env.verify().ok


def test_concurrent_appends_keep_one_chain(make_env: Callable[..., Env]) -> None:
    env = make_env(every=7)
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(15):
                env.append(event(100 * k + i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    report = env.verify()
    assert report.ok and report.entries == 60 and report.checkpoints == 8


def test_checkpoints_every_n_entries_and_every_m_seconds(make_env: Callable[..., Env]) -> None:
    env = make_env(every=3, seconds=60)
    with transaction(env.sessions) as s:
        assert env.log.checkpoint(s) is None  # empty log
    for i in range(10):
        env.append(event(i))
    env.append(*(event(i) for i in range(7)))  # 11..17 in one batch
    cps = env.tables.checkpoints
    with env.sessions() as s:
        assert list(s.scalars(select(cps.c.seq).order_by(cps.c.seq))) == [3, 6, 9, 12, 15]
        assert s.execute(select(env.tables.head.c.last_checkpoint_seq)).scalar() == 15
    with transaction(env.sessions) as s:
        assert env.log.checkpoint(s) == 17
        assert env.log.checkpoint(s) is None
    env.append(event(1))  # 18: neither 3 entries nor 60 s since 17
    env.clock.now += timedelta(seconds=61)
    env.append(event(2))  # 19: 60 s have passed
    with env.sessions() as s:
        assert list(s.scalars(select(cps.c.seq).order_by(cps.c.seq)))[-2:] == [17, 19]
    report = env.verify()
    assert (report.ok, report.problem, report.checkpoints) == (True, None, 7)


def test_individual_number_is_refused(make_env: Callable[..., Env]) -> None:
    env = make_env()
    spaced = f"{NUMBER[:4]} {NUMBER[4:8]} {NUMBER[8:]}"
    full_width = NUMBER.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    bad = [
        event(1, subject=NUMBER),
        event(1, ref=f"x{NUMBER}"),
        event(1, terminal=spaced),
        event(1, actor=full_width),
        event(1, detail={"note": f"番号{NUMBER}の照会"}),
        event(1, detail={"n": int(NUMBER)}),
        event(1, detail={"list": [{"deep": f"{NUMBER[:4]}-{NUMBER[4:8]}-{NUMBER[8:]}"}]}),
        event(1, detail={NUMBER: "as a key"}),
        event(1, detail={"after a control character": "\x07" + NUMBER}),
        event(1, detail={"f": float(NUMBER)}),
    ]
    for ev in bad:
        with pytest.raises(ValueError) as info:
            env.append(event(2), ev)  # the whole batch is refused
        assert NUMBER not in str(info.value) and "個人番号" in str(info.value)
    wrong_check = NUMBER[:-1] + str((int(NUMBER[-1]) + 1) % 10)
    assert ids.check(ids.IdKind.INDIVIDUAL_NUMBER, wrong_check) is not None
    env.append(
        event(1, subject=ids.make_atena_no(123456789012)),  # 15 digits: the node's own id
        event(2, ref="20260401000000000123", detail={"n": int(wrong_check), "long": NUMBER + "5"}),
    )
    assert [r["seq"] for r in env.rows()] == [1, 2]


def test_other_bad_events_are_refused(make_env: Callable[..., Env]) -> None:
    env = make_env()
    for ev in (
        AuditEvent(actor="", action="a", outcome="ok"),
        AuditEvent(actor="a", action="a", outcome="ok", subject=123),  # type: ignore[arg-type]
        AuditEvent(actor="a" * 129, action="a", outcome="ok"),
        AuditEvent(actor="a\x00", action="a", outcome="ok"),
        AuditEvent(actor="a", action="a", outcome="ok", detail={1: "non-str key"}),  # type: ignore[dict-item]
        AuditEvent(actor="a", action="a", outcome="ok", detail={"big": "x" * 5000}),
        AuditEvent(actor="a", action="a", outcome="ok", detail={"nul": "a\x00b"}),
        AuditEvent(actor="a", action="a", outcome="ok", detail=["not", "a", "mapping"]),  # type: ignore[arg-type]
        AuditEvent(actor="a", action="a", outcome="ok", terminal=None),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValueError):
            env.append(ev)
    assert env.rows() == []


def test_other_engines_take_the_core_path(
    make_env: Callable[..., Env], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_env(every=4)
    monkeypatch.setattr(env.engine.dialect, "name", "other")
    env.append(event(1))
    env.append(*(event(i, detail={"i": i, "t": (i, "x")}) for i in range(9)))
    monkeypatch.undo()
    env.append(event(2))
    report = env.verify()
    assert (report.ok, report.entries, report.checkpoints) == (True, 11, 2)


# --- tampering ------------------------------------------------------------------------


def _rewrite_from(env: Env, start: int, change: Callable[[dict[str, Any]], None]) -> None:
    """Edit entry `start` and recompute every hash after it, like a careful forger."""
    t = env.tables.entries
    rows = env.rows()
    prev = rows[start - 2]["hash"] if start > 1 else GENESIS_HASH
    with env.engine.begin() as conn:
        for row in rows[start - 1 :]:
            if row["seq"] == start:
                change(row)
            row["prev_hash"] = prev
            row["hash"] = prev = entry_hash(_obj(row))
            conn.execute(update(t).where(t.c.seq == row["seq"]).values(**row))
        conn.execute(update(env.tables.head).values(hash=prev))


def _insert_forged(env: Env, at: int) -> None:
    t = env.tables.entries
    env.sql("UPDATE audit_entries SET seq = -seq WHERE seq >= :n", {"n": at})
    env.sql("UPDATE audit_entries SET seq = 1 - seq WHERE seq < 0")
    env.sql("UPDATE audit_head SET seq = seq + 1")
    prev = env.rows()[at - 2]["hash"]
    row = {**env.rows()[at - 2], "seq": at, "actor": "forger", "prev_hash": prev}
    row["hash"] = entry_hash(_obj(row))
    env.sql(insert(t).values(**row))


def _append_forged(env: Env) -> None:
    last = env.rows()[-1]
    row = {**last, "seq": last["seq"] + 1, "actor": "forger", "prev_hash": last["hash"]}
    row["hash"] = entry_hash(_obj(row))
    env.sql(insert(env.tables.entries).values(**row))


def _swap(env: Env, a: int, b: int) -> None:
    t = env.tables.entries
    rows = {r["seq"]: r for r in env.rows()}
    with env.engine.begin() as conn:
        for x, y in ((a, b), (b, a)):
            values = {k: v for k, v in rows[y].items() if k != "seq"}
            conn.execute(update(t).where(t.c.seq == x).values(**values))


def _forge_checkpoint(env: Env, seq: int, key: envelope.SigningKey) -> None:
    c = env.tables.checkpoints
    with env.engine.begin() as conn:
        at, hash_ = conn.execute(select(c.c.at, c.c.hash).where(c.c.seq == seq)).one()
        payload = orjson.dumps(
            {
                "seq": seq,
                "hash": hash_,
                "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
            },
            option=orjson.OPT_SORT_KEYS,
        )
        conn.execute(
            update(c)
            .where(c.c.seq == seq)
            .values(signature=envelope.sign(payload, key), kid=key.kid)
        )


_OTHER_KEY = OKPKey.generate_key("Ed25519", parameters={"kid": f"{ORG}:chukan:sig:1"})

TAMPERING: dict[str, tuple[Callable[[Env], None], str, int]] = {
    "edit a field": (
        lambda e: e.sql("UPDATE audit_entries SET outcome = 'ok' WHERE seq = 7"),
        "hash_mismatch",
        7,
    ),
    "edit the time": (
        lambda e: e.sql(
            update(e.tables.entries)
            .where(e.tables.entries.c.seq == 4)
            .values(at=e.rows()[3]["at"] + timedelta(microseconds=1))
        ),
        "hash_mismatch",
        4,
    ),
    "edit detail": (
        lambda e: e.sql(
            update(e.tables.entries).where(e.tables.entries.c.seq == 9).values(detail={"n": 0})
        ),
        "hash_mismatch",
        9,
    ),
    "edit detail text": (
        lambda e: e.sql(
            "UPDATE audit_entries SET detail = :d WHERE seq = 8",
            {"d": "{broken" if e.engine.dialect.name == "sqlite" else '{"n": 8, "reason": "窓口"}'},
        ),
        "hash_mismatch",
        8,
    ),
    "edit the first entry": (
        lambda e: e.sql("UPDATE audit_entries SET actor = 'x' WHERE seq = 1"),
        "hash_mismatch",
        1,
    ),
    "delete a middle row": (lambda e: e.sql("DELETE FROM audit_entries WHERE seq = 6"), "gap", 6),
    "delete the first row": (lambda e: e.sql("DELETE FROM audit_entries WHERE seq = 1"), "gap", 1),
    "delete rows a checkpoint covers": (
        lambda e: e.sql("DELETE FROM audit_entries WHERE seq > 7"),
        "missing_tail",
        8,
    ),
    "delete rows after the last checkpoint": (
        lambda e: e.sql("DELETE FROM audit_entries WHERE seq > 10"),
        "missing_tail",
        11,
    ),
    "delete everything": (lambda e: e.sql("DELETE FROM audit_entries"), "missing_tail", 1),
    "insert a forged row": (lambda e: _insert_forged(e, 6), "prev_mismatch", 7),
    "append a forged row": (_append_forged, "head_mismatch", 13),
    "swap two rows": (lambda e: _swap(e, 3, 8), "prev_mismatch", 3),
    "swap neighbours": (lambda e: _swap(e, 6, 7), "prev_mismatch", 6),
    "rewrite the chain": (
        lambda e: _rewrite_from(e, 2, lambda r: r.update(outcome="error")),
        "checkpoint_mismatch",
        5,
    ),
    "rewrite after the last checkpoint": (
        lambda e: _rewrite_from(e, 11, lambda r: r.update(outcome="error")),
        "ok",
        0,
    ),
    "forge a checkpoint signature": (
        lambda e: _forge_checkpoint(e, 10, envelope.SigningKey(_OTHER_KEY, f"{ORG}:chukan:sig:1")),
        "bad_checkpoint_signature",
        10,
    ),
    "sign with an unknown key": (
        lambda e: _forge_checkpoint(e, 5, envelope.SigningKey(_OTHER_KEY, f"{ORG}:chukan:sig:9")),
        "bad_checkpoint_signature",
        5,
    ),
    "move a checkpoint": (
        lambda e: e.sql("UPDATE audit_checkpoints SET seq = 4 WHERE seq = 5"),
        "bad_checkpoint_signature",
        4,
    ),
    "delete the last checkpoint": (
        lambda e: e.sql("DELETE FROM audit_checkpoints WHERE seq = 10"),
        "head_mismatch",
        10,
    ),
}


def test_every_tampering_is_found(make_env: Callable[..., Env]) -> None:
    for name, (tamper, code, seq) in TAMPERING.items():
        env = _filled(make_env)
        before = env.verify()
        assert before.ok and before.checkpoints == 2, name
        tamper(env)
        report = env.verify()
        if code == "ok":  # nothing signs the tail yet: only the warning remains
            assert report.ok and report.problem == "unsigned_tail", name
            continue
        assert (report.ok, report.problem, report.first_broken_seq) == (False, code, seq), (
            name,
            report,
        )
        assert f"{seq} 番" in report.message, (name, report.message)


def test_verify_in_small_batches(make_env: Callable[..., Env]) -> None:
    env = _filled(make_env)
    with env.sessions() as s:
        assert verify(s, env.tables, env.keys.public.get, batch=2).ok
    env.sql("UPDATE audit_entries SET ref = 'r' WHERE seq = 5")
    with env.sessions() as s:
        report = verify(s, env.tables, env.keys.public.get, batch=3)
    assert (report.problem, report.first_broken_seq, report.entries) == ("hash_mismatch", 5, 4)
    assert report.message == "監査ログの連鎖が 5 番で壊れています（内容の改ざん）。"


# --- export ---------------------------------------------------------------------------


def test_export_and_check_offline(make_env: Callable[..., Env]) -> None:
    env = _filled(make_env)
    out = io.StringIO()
    with env.sessions() as s:
        assert export_jsonl(s, env.tables, out, start=None, end=None) == 12
    lines = out.getvalue().splitlines()
    assert "窓口" in lines[0]  # UTF-8 text, not \\u escapes
    first = json.loads(lines[0])
    assert first["seq"] == 1 and first["prev_hash"] == GENESIS_HASH and "hash" in first
    assert [json.loads(line).get("checkpoint") is not None for line in lines].count(True) == 2
    # An auditor's recomputation with the standard library alone.
    plain = {k: v for k, v in first.items() if k not in ("hash", "checkpoint")}
    canonical = json.dumps(
        plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    assert __import__("hashlib").sha256(canonical).hexdigest() == first["hash"]

    report = verify_jsonl(lines, env.keys.public.get)
    assert (
        report.ok
        and report.entries == 12
        and report.checkpoints == 2
        and report.problem == "unsigned_tail"
    )
    assert verify_jsonl(lines).ok

    edited = list(lines)
    edited[4] = edited[4].replace('"outcome":"ok"', '"outcome":"error"')
    assert edited[4] != lines[4]
    r = verify_jsonl(edited)
    assert (r.ok, r.problem, r.first_broken_seq) == (False, "hash_mismatch", 5)
    r = verify_jsonl(lines[:5] + lines[6:])
    assert (r.problem, r.first_broken_seq) == ("gap", 6)
    r = verify_jsonl(lines[:3] + [lines[4], lines[3]] + lines[5:])
    assert (r.problem, r.first_broken_seq) == ("gap", 4)
    r = verify_jsonl(lines[:2] + ["{not json"] + lines[3:])
    assert (r.problem, r.message) == ("malformed", "監査ログの書き出しの 3 行目を読み取れません。")
    forged = json.loads(lines[9])
    forged["checkpoint"]["signature"] = json.loads(lines[4])["checkpoint"]["signature"]
    tampered = lines[:9] + [json.dumps(forged, ensure_ascii=False)] + lines[10:]
    assert verify_jsonl(tampered).ok  # without keys only the chain is checked
    r = verify_jsonl(tampered, env.keys.public.get)
    assert (r.problem, r.first_broken_seq) == ("bad_checkpoint_signature", 10)
    # A careful forger recomputes every hash after the edit: only the signatures tell.
    rewritten, prev = [], None
    for line in lines:
        obj = json.loads(line)
        if obj["seq"] == 2:
            obj["outcome"] = "error"
        if prev is not None:
            obj["prev_hash"] = prev
        plain = {k: v for k, v in obj.items() if k not in ("hash", "checkpoint")}
        obj["hash"] = prev = entry_hash(plain)
        rewritten.append(json.dumps(obj, ensure_ascii=False))
    assert verify_jsonl(rewritten).ok
    r = verify_jsonl(rewritten, env.keys.public.get)
    assert (r.problem, r.first_broken_seq) == ("checkpoint_mismatch", 5)


def test_export_a_time_range(make_env: Callable[..., Env]) -> None:
    env = _filled(make_env)
    rows = env.rows()
    out = io.StringIO()
    with env.sessions() as s:
        n = export_jsonl(s, env.tables, out, start=rows[3]["at"].astimezone(JST), end=rows[8]["at"])
    lines = out.getvalue().splitlines()
    assert n == 5 and [json.loads(line)["seq"] for line in lines] == [4, 5, 6, 7, 8]
    report = verify_jsonl(lines, env.keys.public.get)
    assert report.ok and report.checkpoints == 1 and report.entries == 5
    with env.sessions() as s:
        assert (
            export_jsonl(
                s, env.tables, io.StringIO(), start=rows[-1]["at"] + timedelta(1), end=None
            )
            == 0
        )
