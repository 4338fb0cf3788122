"""`renkei atena import fukuhon` without the network: 新宿区's atena from its configuration
on the test's database, the chukan's registration handed in as the sender (the same
service the chukan's route runs, on a database of its own). Both backends.

What is checked: copies arrive under the 統合宛名番号, a second run of the file is refused
and a forced one adds nothing; an import broken off after the chukan stored a batch but
before the ledger counted it resumes there and stores nothing twice; a bad line stops
the import with its file and line in Japanese, the batches before it kept and nothing of
its own; CSV with Japanese headers gives the same copies as JSON Lines.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from renkei.atena import service as atena_service
from renkei.atena.app import field_cipher
from renkei.atena.fukuhon_import import ACTION, Sender, import_fukuhon, kind_of
from renkei.atena.models import SCHEMA, BusinessLink, audit, imports
from renkei.catalogue import load_catalogue
from renkei.chukan import service as chukan_service
from renkei.chukan.models import Fukuhon
from renkei.core import ids
from renkei.core.config import NodeConfig, load_config
from renkei.core.crypto.field import FieldCipher
from renkei.core.db import make_engine, make_sessionmaker, migrate, transaction
from renkei.core.errors import Problem
from renkei.core.wire.contract import FukuhonRegister, FukuhonRegistered
from renkei.federation.topology import SHINJUKU, Layout, write_config
from tests.api.fed import _pki_template
from tests.conftest import create_pg_database, drop_pg_database, migrated

NOW = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)
TAX = "TM00000000000002"
PEOPLE = 12


def business_no(n: int) -> str:
    return ids.make_atena_no(50_000 + n)


def person(n: int) -> dict[str, Any]:
    rng = random.Random(7_000_003 + n)
    return {
        "individual_number": ids.generate_individual_number(rng),
        "family_name": "試験", "given_name": f"花子{n}", "family_kana": "シケン", "given_kana": "ハナコ",
        "birth_date": f"19{50 + n % 40:02d}-0{1 + n % 9}-1{n % 10}", "sex": "2", "postal_code": "1600022",
        "address": f"東京都新宿区新宿一丁目{n}番", "lg_code": "131041", "effective_on": "2020-04-01",
        "business_numbers": {"tax": business_no(n)},
    }  # fmt: skip


def copy(n: int, year: int = 2024, **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "business_atena_no": business_no(n),
        "info_kind_code": TAX,
        "record_key": str(year),
        "valid_from": f"{year + 1}-04-01",
        "values": {"K001": str(year), "K002": "1", "K003": str(1_000_000 + n), "K004": "50000", "K005": "5000"},
    }
    rec.update(over)
    return rec


def copies() -> list[dict[str, Any]]:
    """Two tax years of every person: 24 copies."""
    return [copy(n, year) for year in (2023, 2024) for n in range(PEOPLE)]


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_bytes(b"".join((r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for r in records))
    return path


@dataclass
class Env:
    config: NodeConfig
    atena: sessionmaker[Session]
    chukan: sessionmaker[Session]
    tmp: Path
    sent: list[int]  # batch sizes the chukan received

    def sender(self, fail_after: int | None = None) -> Sender:
        """The chukan's registration (its route's service call, own transaction). With
        ``fail_after``: that many batches are stored, then the connection "breaks" after
        the chukan committed the next one."""
        catalogue, cipher = load_catalogue(), CHUKAN_CIPHER

        def send(body: FukuhonRegister) -> FukuhonRegistered:
            with transaction(self.chukan) as s:
                done = chukan_service.register_fukuhon(s, catalogue, body.records, NOW, cipher)
            self.sent.append(len(done))
            if fail_after is not None and len(self.sent) > fail_after:
                raise ConnectionError("the line went down after the chukan committed")
            return FukuhonRegistered(
                registered=len(done), versions=[d.version for d in done], added=sum(d.added for d in done)
            )

        return send

    def run(self, path: Path, *, batch_size: int = 5, force: bool = False, send: Sender | None = None) -> Any:
        return import_fukuhon(
            self.config, path, "tax", actor="cli:tester", batch_size=batch_size, force=force,
            send=send or self.sender(),
        )  # fmt: skip

    def chukan_rows(self) -> list[tuple[str, str, int]]:
        with self.chukan() as s:
            rows = s.execute(select(Fukuhon.atena_no, Fukuhon.record_key, Fukuhon.version))
            return sorted((str(a), str(k), int(v)) for a, k, v in rows)

    def ledger(self) -> list[tuple[str, int, int, str]]:
        with self.atena() as s:
            rows = s.execute(select(imports.c.kind, imports.c.rows_read, imports.c.rows_applied, imports.c.status)
                             .order_by(imports.c.id))  # fmt: skip
            return [(str(k), int(r), int(a), str(st)) for k, r, a, st in rows]

    def audited(self) -> list[tuple[str, str, str]]:
        with self.atena() as s:
            t = audit.entries
            rows = s.execute(select(t.c.actor, t.c.action, t.c.outcome).where(t.c.action == ACTION).order_by(t.c.seq))
            return [(str(a), str(b), str(c)) for a, b, c in rows]


CHUKAN_CIPHER = FieldCipher.generate()


@pytest.fixture
def env(db_url: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    layout = Layout(tmp_path / "fed")
    shutil.copytree(_pki_template(tmp_path_factory.getbasetemp()), layout.root / "pki")
    config = load_config(write_config(layout, SHINJUKU, "atena", db_url))
    chukan_url = f"sqlite:///{tmp_path / 'chukan.db'}" if db_url.startswith("sqlite") else create_pg_database()
    engines: list[Engine] = []
    try:
        atena_engine = make_engine(db_url)
        engines.append(atena_engine)
        migrate(atena_engine, SCHEMA.migrations, SCHEMA.metadata, {"field_cipher": field_cipher(config)})
        atena = make_sessionmaker(atena_engine)
        with transaction(atena) as s:
            atena_service.register_parsed(
                s, field_cipher(config), atena_service.parse_residents([person(n) for n in range(PEOPLE)]), NOW
            )
        chukan_engine, chukan = migrated(chukan_url, "chukan")
        engines.append(chukan_engine)
        yield Env(config, atena, chukan, tmp_path, [])
    finally:
        for engine in engines:
            engine.dispose()
        if not chukan_url.startswith("sqlite"):
            drop_pg_database(chukan_url)


def atena_nos(env: Env) -> dict[str, str]:
    with env.atena() as s:
        rows = s.execute(select(BusinessLink.business_atena_no, BusinessLink.atena_no).where(BusinessLink.system == "tax"))
        return {str(b): str(a) for b, a in rows}


def test_import_then_again(env: Env) -> None:
    path = write_jsonl(env.tmp / "tax.jsonl", copies())
    done = env.run(path)
    assert (done.result.read, done.result.applied, done.unchanged) == (24, 24, 0)
    assert env.sent == [5, 5, 5, 5, 4]
    # The chukan holds every copy once, under the 統合宛名番号 (never a business number).
    translated = atena_nos(env)
    expected = sorted((translated[business_no(n)], str(year), 1) for year in (2023, 2024) for n in range(PEOPLE))
    assert env.chukan_rows() == expected
    assert env.ledger() == [(kind_of("tax"), 24, 24, "done")]
    assert env.audited() == [("cli:tester", ACTION, "ok")] * 5
    assert "24 件読込" in done.summary() and "新しい版 24 件" in done.summary()

    with pytest.raises(Problem) as again:
        env.run(path)
    assert again.value.code == "import_finished" and "取込済み" in again.value.title
    forced = env.run(path, force=True)
    assert (forced.result.read, forced.result.applied, forced.unchanged) == (24, 0, 24)
    assert env.chukan_rows() == expected

    # A corrected file (one copy changed): a new import; only that copy gets a version.
    changed = copies()
    changed[3] = copy(3, 2023, values={**changed[3]["values"], "K003": "1"})
    fixed = env.run(write_jsonl(env.tmp / "tax-fixed.jsonl", changed), batch_size=10_000)
    assert (fixed.result.applied, fixed.unchanged) == (1, 23)
    assert len(env.chukan_rows()) == 25


def test_resume_after_a_break_stores_nothing_twice(env: Env) -> None:
    path = write_jsonl(env.tmp / "tax.jsonl", copies())
    with pytest.raises(ConnectionError):
        env.run(path, send=env.sender(fail_after=2))
    # Three batches reached the chukan; the ledger counts the two it saw answered.
    assert len(env.chukan_rows()) == 15
    assert env.ledger() == [(kind_of("tax"), 10, 10, "running")]
    env.sent.clear()
    done = env.run(path)
    assert done.result.resumed_from == 10
    assert env.sent == [5, 5, 4]  # from the third batch on
    assert (done.result.read, done.result.applied, done.unchanged) == (14, 9, 5)  # the third: already stored
    assert len(env.chukan_rows()) == 24
    assert {v for _, _, v in env.chukan_rows()} == {1}
    assert env.ledger() == [(kind_of("tax"), 24, 19, "done")]
    assert "再開" in done.summary()


@pytest.mark.parametrize(
    ("line", "bad", "words"),
    [
        (13, copy(0, 2025, values={"K001": "2025", "K002": "9"}), ["K002（課税区分）", "コード表"]),
        (12, copy(0, 2025, business_atena_no=business_no(99)), ["宛名番号", "登録されていません"]),
        (11, copy(0, 2025, business_atena_no="12345"), ["桁"]),
        (14, b"{not json", ["JSON"]),
        (12, copy(0, 2025, valid_from="2025-02-30"), ["公開開始日"]),
    ],
)
def test_bad_line_named_in_japanese(env: Env, line: int, bad: Any, words: list[str]) -> None:
    records: list[Any] = copies()[:20]
    records.insert(line - 1, bad)
    path = write_jsonl(env.tmp / "bad.jsonl", records)
    with pytest.raises(Problem) as refused:
        env.run(path)
    title = refused.value.title
    assert title.startswith(f"bad.jsonl の {line} 行目"), title
    for word in words:
        assert word in title, title
    # The batches before the bad line's are stored and counted; nothing of its own.
    before = (line - 1) // 5 * 5
    assert len(env.chukan_rows()) == before
    assert env.ledger() == [(kind_of("tax"), before, before, "running")]
    assert env.audited()[-1][2] == refused.value.code


def _csv(records: list[dict[str, Any]], extra_header: str = "", extra_cell: str = "") -> str:
    items = ["K001", "K002", "K003", "K004", "K005"]
    head = "業務宛名番号,特定個人情報名コード,レコードキー,公開開始日," + ",".join(items) + extra_header
    lines = [head]
    for r in records:
        cells = [r["business_atena_no"], r["info_kind_code"], r["record_key"], r["valid_from"]]
        cells += [r["values"].get(code, "") for code in items]
        lines.append(",".join(cells) + extra_cell)
    return "\r\n".join(lines) + "\r\n"


def test_csv_gives_the_same_copies(env: Env) -> None:
    csv_path = env.tmp / "tax.csv"
    csv_path.write_text(_csv(copies()), encoding="utf-8")
    first = env.run(csv_path)
    assert (first.result.read, first.result.applied) == (24, 24)
    # The same copies as JSON Lines: nothing new.
    again = env.run(write_jsonl(env.tmp / "tax.jsonl", copies()))
    assert (again.result.applied, again.unchanged) == (0, 24)
    with env.chukan() as s:
        assert int(s.scalar(select(func.count()).select_from(Fukuhon)) or 0) == 24


def test_csv_flags_and_unknown_columns(env: Env) -> None:
    flagged = env.tmp / "flags.csv"
    flagged.write_text(_csv(copies()[:3], ",自動応答不可", ",1"), encoding="utf-8")
    env.run(flagged)
    with env.chukan() as s:
        assert set(s.scalars(select(Fukuhon.no_auto_answer))) == {True}
    bad_flag = env.tmp / "bad-flag.csv"
    bad_flag.write_text(_csv(copies()[:3], ",削除", ",たぶん"), encoding="utf-8")
    with pytest.raises(Problem) as refused:
        env.run(bad_flag)
    assert refused.value.title.startswith("bad-flag.csv の 2 行目") and "削除" in refused.value.title
    unknown = env.tmp / "unknown.csv"
    unknown.write_text(_csv(copies()[:3], ",K999", ",1"), encoding="utf-8")
    with pytest.raises(Problem) as refused:
        env.run(unknown)
    assert refused.value.title.startswith("unknown.csv の 2 行目") and "K999" in refused.value.title


def test_translation_names_the_first_bad_number(env: Env) -> None:
    """One query for the batch's numbers; the first unknown or malformed one refuses the
    batch, naming its index, as one look-up per copy did."""
    records = [copy(n) for n in range(PEOPLE)]
    with env.atena() as s:
        out = atena_service.copies_for_chukan(s, "tax", records)
        translated = atena_nos(env)
        assert [c["atena_no"] for c in out] == [translated[business_no(n)] for n in range(PEOPLE)]
        assert all("business_atena_no" not in c for c in out)
        for bad, code in (({3: business_no(99), 5: "12345"}, "unknown_business_atena_no"),
                          ({3: "12345", 5: business_no(99)}, "invalid_business_atena_no")):  # fmt: skip
            batch = [copy(n, business_atena_no=bad.get(n, business_no(n))) for n in range(PEOPLE)]
            with pytest.raises(Problem) as refused:
                atena_service.copies_for_chukan(s, "tax", batch)
            assert (refused.value.code, refused.value.extra["index"]) == (code, 3)
        # Another system's numbers are not this system's.
        with pytest.raises(Problem) as refused:
            atena_service.copies_for_chukan(s, "nhi", records[:1])
        assert refused.value.code == "unknown_business_atena_no"
