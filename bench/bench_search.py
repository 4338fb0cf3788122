"""Addressee search at 新宿区 scale (issue 10): p50/p95 per kind of query, SQLite and PostgreSQL.

    python bench/bench_search.py                        # 343,000 people, both engines
    python bench/bench_search.py --people 5000 --backends sqlite --queries 50

For each backend, on a fresh atena database: the ward's person records (the synthetic
population's, as `renkei atena import residents` takes them; written once by
bench/import_files.py into --files) are registered through `service.register_parsed` in
batches of 10,000 — the bulk path, which also builds the search keys — and the engine's
statistics are gathered (ANALYZE). Then each kind of query runs ``--queries`` times,
built from persons drawn at random and typed as staff type (hiragana or half-width kana,
旧字 or 新字, 和暦, 全角 digits, any notation of 丁目・番地・号), each in its own session
as a screen runs it (parse the input, search, first page of 20 and the capped count).

Baseline, same run, same engine: a primary-key read of one person in its own session.
Goal: p95 ≤ 50 ms for every kind.

PostgreSQL: --pg-url or $RENKEI_TEST_POSTGRES_URL (a server where databases can be created).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jaconv
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from import_files import ensure_files  # noqa: E402  (bench/, on the path above)

from renkei.atena import search, service  # noqa: E402
from renkei.atena.models import SCHEMA, BasicFour, BusinessLink, Person, PersonSearchKey  # noqa: E402
from renkei.core.crypto.field import FieldCipher  # noqa: E402
from renkei.core.db import make_engine, make_sessionmaker, migrate, utcnow  # noqa: E402
from renkei.core.text.normalize import kana_key  # noqa: E402
from renkei.core.text.wareki import to_wareki  # noqa: E402

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
GOAL_P95_MS = 50.0
BATCH = 10_000
WIDE = str.maketrans("0123456789-", "０１２３４５６７８９－")


# --- loading ------------------------------------------------------------------------------


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def load(
    sessions: sessionmaker[Session], records: Iterable[dict[str, Any]], cipher: FieldCipher
) -> tuple[int, float, float]:
    """Register the records 10,000 at a time (one transaction each); (persons, seconds,
    seconds of those spent building the search keys)."""
    in_keys = [0.0]
    refresh = service.refresh_search_keys

    def timed_refresh(session: Session, atena_nos: Iterable[str]) -> int:
        began = time.perf_counter()
        try:
            return refresh(session, atena_nos)
        finally:
            in_keys[0] += time.perf_counter() - began

    service.refresh_search_keys = timed_refresh  # type: ignore[assignment]
    start = time.perf_counter()
    batch: list[dict[str, Any]] = []
    n = 0

    def flush() -> None:
        with sessions() as s:
            service.register_parsed(s, cipher, service.parse_residents(batch), utcnow())
            s.commit()

    for rec in records:
        batch.append(rec)
        if len(batch) == BATCH:
            flush()
            n += len(batch)
            batch = []
    if batch:
        flush()
        n += len(batch)
    service.refresh_search_keys = refresh  # type: ignore[assignment]
    return n, time.perf_counter() - start, in_keys[0]


def analyze(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))


# --- the queries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    atena_no: str
    family_name: str
    given_name: str
    family_kana: str
    given_kana: str
    birth_date: Any
    address: str
    business: tuple[str, str] | None
    individual_number: str


def draw(sessions: sessionmaker[Session], cipher: FieldCipher, n: int, rng: random.Random) -> list[Sample]:
    """``n`` persons at random, with their current facts, a business number and their
    individual number (decrypted, as a clerk holding the card would type it)."""
    with sessions() as s:
        top = int(s.scalar(select(func.max(BasicFour.id))) or 0)
        out: list[Sample] = []
        while len(out) < n:
            bf = s.get(BasicFour, rng.randint(1, top))
            if bf is None:
                continue
            link = s.execute(
                select(BusinessLink.system, BusinessLink.business_atena_no).where(BusinessLink.atena_no == bf.atena_no).limit(1)
            ).first()
            number = service.individual_number_of(s, cipher, bf.atena_no) or ""
            out.append(
                Sample(
                    bf.atena_no, bf.family_name, bf.given_name, bf.family_kana, bf.given_kana, bf.birth_date,
                    bf.address, (link[0], link[1]) if link else None, number,
                )
            )  # fmt: skip
        return out


def _kana_typed(kana: str, rng: random.Random) -> str:
    form = rng.choice(("katakana", "hiragana", "halfwidth"))
    if form == "hiragana":
        return str(jaconv.kata2hira(kana))
    if form == "halfwidth":
        return str(jaconv.z2h(kana, kana=True, ascii=False, digit=False))
    return kana


def _address_prefix(address: str, rng: random.Random) -> str:
    """What staff type of an address: the town and 丁目, or down to the 番, with or without
    the prefecture and ward, sometimes in 全角."""
    cut = address.split(" ")[0]
    for mark in ("丁目", "番"):
        at = cut.find(mark)
        if at > 0 and rng.random() < 0.7:
            cut = cut[: at + len(mark)]
            break
    if rng.random() < 0.5:
        cut = cut.replace("東京都", "", 1)
    if rng.random() < 0.3:
        cut = cut.translate(WIDE)
    return cut


Query = Callable[[Session], object]


def kinds(sample: Sample, rng: random.Random, cipher: FieldCipher) -> dict[str, Query]:
    """One query of each kind about this person."""

    def people(fields: dict[str, str]) -> Query:
        return lambda s: search.search(s, search.parse_criteria(fields))

    wareki = to_wareki(sample.birth_date) if rng.random() < 0.7 else sample.birth_date.isoformat().translate(WIDE)
    # A prefix of 2 to 4 characters of the key (ヴァ is one: バ), as a kana prefix alone needs.
    full = sample.family_kana + sample.given_kana
    n = rng.randint(2, 4)
    while n < len(full) and len(kana_key(full[:n])) < 2:
        n += 1
    out: dict[str, Query] = {
        "kana prefix": people({"kana": _kana_typed(full[:n], rng)}),
        "kana full name": people({"kana": _kana_typed(f"{sample.family_kana} {sample.given_kana}", rng)}),
        "kanji name": people({"name": f"{sample.family_name} {sample.given_name}"}),
        "name + birth date": people({"kana": _kana_typed(sample.family_kana, rng), "birth_date": wareki}),
        "kanji surname + address": people({"name": sample.family_name, "address": _address_prefix(sample.address, rng)}),
        "address prefix": people({"address": _address_prefix(sample.address, rng)}),
        "birth date only": people({"birth_date": wareki}),
        "統合宛名番号": lambda s: search.find_by_atena_no(s, sample.atena_no.translate(WIDE)),
        "個人番号 (blind index)": lambda s: search.find_by_individual_number(s, cipher, sample.individual_number),
    }
    if sample.business is not None:
        system, number = sample.business
        out["業務宛名番号"] = lambda s: search.find_by_business_no(s, system, number.translate(WIDE))
    return out


def timed(sessions: sessionmaker[Session], query: Query) -> float:
    start = time.perf_counter()
    with sessions() as s:
        query(s)
    return (time.perf_counter() - start) * 1000


@dataclass
class Figures:
    kind: str
    ms: list[float]

    def pct(self, q: float) -> float:
        ordered = sorted(self.ms)
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    def line(self) -> str:
        return (
            f"  {self.kind:<26} n={len(self.ms):<4} p50 {self.pct(0.5):6.2f} ms  p95 {self.pct(0.95):6.2f} ms"
            f"  max {max(self.ms):7.2f} ms"
        )


def measure(sessions: sessionmaker[Session], cipher: FieldCipher, queries: int, seed: int) -> list[Figures]:
    rng = random.Random(seed)
    samples = draw(sessions, cipher, queries, rng)
    baseline = Figures("baseline: primary-key read", [])
    by_kind: dict[str, Figures] = {}
    for warm in samples[:10]:  # caches, prepared plans
        for q in kinds(warm, rng, cipher).values():
            timed(sessions, q)
    for sample in samples:
        baseline.ms.append(timed(sessions, lambda s, no=sample.atena_no: s.get(Person, no)))
        for kind, q in kinds(sample, rng, cipher).items():
            by_kind.setdefault(kind, Figures(kind, [])).ms.append(timed(sessions, q))
    return [baseline, *by_kind.values()]


# --- one engine --------------------------------------------------------------------------------


def _pg_database(base: str) -> str:
    import psycopg

    name = f"renkei_bench_search_{uuid.uuid4().hex[:8]}"
    admin = make_url(base).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(base).set(database=name).render_as_string(hide_password=False)


def _drop_pg(url: str) -> None:
    import psycopg

    name = make_url(url).database
    admin = make_url(url).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Result:
    backend: str
    persons: int
    key_rows: int
    load_s: float
    keys_s: float
    figures: list[Figures]

    @property
    def worst_p95(self) -> float:
        return max(f.pct(0.95) for f in self.figures[1:])


def run_backend(
    backend: str, records: Iterable[dict[str, Any]], queries: int, seed: int, pg_url: str, tmp: Path,
    *, statistics: bool = True,
) -> Result:
    url = f"sqlite:///{tmp / f'atena-{uuid.uuid4().hex[:6]}.db'}" if backend == "sqlite" else _pg_database(pg_url)
    engine = make_engine(url)
    try:
        migrate(engine, SCHEMA.migrations, SCHEMA.metadata)
        sessions = make_sessionmaker(engine)
        cipher = FieldCipher.generate()
        persons, load_s, keys_s = load(sessions, records, cipher)
        if statistics:
            analyze(engine)
        with sessions() as s:
            key_rows = int(s.scalar(select(func.count()).select_from(PersonSearchKey)) or 0)
        figures = measure(sessions, cipher, queries, seed)
        return Result(backend, persons, key_rows, load_s, keys_s, figures)
    finally:
        engine.dispose()
        if backend == "postgresql":
            _drop_pg(url)


def report(r: Result) -> None:
    one, five, _ = os.getloadavg()
    print(
        f"search [{r.backend}]: {r.persons:,} persons registered in {r.load_s:.1f} s, of which "
        f"{r.keys_s:.1f} s building their {r.key_rows:,} search-key rows; load average {one:.2f} {five:.2f}",
        flush=True,
    )
    for f in r.figures:
        print(f.line(), flush=True)
    met = r.worst_p95 <= GOAL_P95_MS
    verdict = "MET" if met else "NOT MET"
    print(f"  goal p95 ≤ {GOAL_P95_MS:.0f} ms for every kind: {verdict} (worst p95 {r.worst_p95:.2f} ms)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=343_000)
    parser.add_argument("--seed", type=int, default=20240101)
    parser.add_argument("--queries", type=int, default=200, help="queries of each kind")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--files", type=Path, default=Path(__file__).resolve().parent / ".files")
    parser.add_argument("--pg-url", default=os.environ.get("RENKEI_TEST_POSTGRES_URL", PG_DEFAULT))
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    parser.add_argument("--no-analyze", action="store_true", help="search without the engine's statistics")
    args = parser.parse_args(argv)
    residents, _ = ensure_files(args.files, args.people, args.seed)
    results = []
    with tempfile.TemporaryDirectory(prefix="renkei-bench-search-") as tmp:
        for backend in args.backends.split(","):
            r = run_backend(
                backend, read_records(residents), args.queries, args.seed, args.pg_url, Path(tmp),
                statistics=not args.no_analyze,
            )
            report(r)
            results.append(r)
    if args.json:
        print(json.dumps({r.backend: {"persons": r.persons, "worst_p95_ms": r.worst_p95,
                                      **{f.kind: {"p50": f.pct(0.5), "p95": f.pct(0.95)} for f in r.figures}}
                          for r in results}, ensure_ascii=False))  # fmt: skip
    return 0 if all(r.worst_p95 <= GOAL_P95_MS for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
