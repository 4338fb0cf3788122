"""The synthetic generator's register events replayed through the feed reach the
generator's final register, person by person.

新宿区's register as it stood at the start of the event window is loaded into atena with
the bulk import (`renkei atena import residents`, with 世帯番号 and 続柄); then every
change record of the window (転入, 転出, 転居, 出生, 死亡) goes through the feed as files —
one CSV file per month of notification (届出日), delivered newest month first, so that a
person's later events arrive before their earlier ones (which must become history) — and
some files are imported twice. atena's current register must then equal the generator's final one:
every resident with their name, address, status and household (世帯番号, 続柄, 世帯主),
and every person who left (転出, 死亡) a former resident, still there; and as of the day
before the window, everybody where the initial register had them.

Small in the suite (3,000 people); ``-m slow`` at full size (343,000; or
RENKEI_REPLAY_PEOPLE).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, aliased

from renkei.atena import history
from renkei.atena.feed_file import import_feed, write_feed
from renkei.atena.imports import import_residents
from renkei.atena.models import BasicFour, HouseholdMember, Person
from renkei.core.config import NodeConfig
from renkei.dummy.model import (
    BIRTH,
    DEATH,
    MOVE_IN,
    MOVE_OUT,
    MOVE_WITHIN,
    RESIDENT,
    SHINJUKU,
    SynthPopulation,
)
from renkei.dummy.synth import SynthConfig, generate
from renkei.staff.admin import node_cipher
from tests.atena.test_feed import node  # noqa: F401  (the fixture)
from tests.dummy.synth_kit import small_population

LG = SHINJUKU


def initial_register(pop: SynthPopulation, lg: str) -> dict[str, dict[str, Any]]:
    """The person records of ``lg``'s register on the day before the window (as
    tests/dummy/test_synth_events.py derives it): the final register without arrivals,
    with departures, each at the address and in the household they had then."""
    changes = [c for c in pop.changes if c.lg_code == lg]
    arrivals = {c.person_key for c in changes if c.kind in (MOVE_IN, BIRTH)}
    departures = {c.person_key: c for c in changes if c.kind in (MOVE_OUT, DEATH)}
    moved_within = {c.person_key: c for c in changes if c.kind == MOVE_WITHIN}
    keys = {p.key for p in pop.persons if p.status == RESIDENT and p.lg_code == lg} - arrivals
    keys |= set(departures) - arrivals
    before = pop.window_start - timedelta(days=1)
    out = {}
    for key in sorted(keys):
        p = pop.by_key[key]
        postal, address, household = p.postal_code, p.address, p.household_id
        if key in departures:
            c = departures[key]
            postal, address, household = c.postal_code, c.address, c.household_id
        if key in moved_within:
            postal, address = p.previous_postal_code or "", moved_within[key].other_address or ""
        out[key] = {
            "individual_number": p.individual_number,
            "family_name": p.family_name,
            "given_name": p.given_name,
            "family_kana": p.family_kana,
            "given_kana": p.given_kana,
            "birth_date": p.birth_date.isoformat(),
            "sex": p.sex,
            "postal_code": postal,
            "address": address,
            "lg_code": lg,
            "effective_on": min(p.resident_since or p.birth_date, before).isoformat(),
            "household_no": household,
            "relationship": p.relationship,
        }
    return out


def feed_records(pop: SynthPopulation, lg: str) -> Iterator[tuple[date, dict[str, Any]]]:
    """(届出日, feed record) of every change record of ``lg``."""
    for c in pop.changes:
        if c.lg_code != lg:
            continue
        p = pop.by_key[c.person_key]
        yield c.notified_on, {
            "event_id": c.change_id,
            "kind": c.kind,
            "effective_on": c.effective_on.isoformat(),
            "notified_on": c.notified_on.isoformat(),
            "individual_number": p.individual_number,
            "family_name": p.family_name,
            "given_name": p.given_name,
            "family_kana": p.family_kana,
            "given_kana": p.given_kana,
            "birth_date": p.birth_date.isoformat(),
            "sex": p.sex,
            "postal_code": c.postal_code,
            "address": c.address,
            "lg_code": c.lg_code,
            "household_no": c.household_id,
            "relationship": p.relationship if c.household_id else "",
            "other_lg_code": c.other_lg_code or "",
            "other_address": c.other_address or "",
        }


def monthly_files(pop: SynthPopulation, lg: str, into: Path) -> list[Path]:
    """One feed file per month of notification, in the order the register sends them."""
    by_month: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for notified, rec in sorted(feed_records(pop, lg), key=lambda x: (x[0], x[1]["event_id"])):
        by_month[notified.strftime("%Y%m")].append(rec)
    paths = []
    for month, records in sorted(by_month.items()):
        path = into / f"jumin-ido-{month}.csv"
        write_feed(records, path)
        paths.append(path)
    return paths


def _register_now(engine: Engine, cfg: NodeConfig) -> dict[str, tuple[Any, ...]]:
    """individual number → (names, postal code, address, status, 世帯番号, 続柄) of each
    person's current versions."""
    cipher = node_cipher(cfg)
    b, m = aliased(BasicFour), aliased(HouseholdMember)
    with Session(engine) as s:
        numbers = {
            no: cipher.decrypt(enc, ("persons", "individual_number", no))
            for no, enc in s.execute(select(Person.atena_no, Person.individual_number_enc))
        }
        current = {
            row.atena_no: row
            for row in s.scalars(select(b).where(history.current_clause(b)))
        }
        households = {
            a: (h, r)
            for a, h, r in s.execute(select(m.atena_no, m.household_no, m.relationship).where(history.current_clause(m)))
        }
    out = {}
    for atena_no, number in numbers.items():
        v = current[atena_no]
        out[number] = (
            v.family_name, v.given_name, v.family_kana, v.given_kana, v.postal_code, v.address, v.status,
            *households.get(atena_no, (None, "")),
        )  # fmt: skip
    return out


def replay(pop: SynthPopulation, cfg: NodeConfig, engine: Engine, tmp: Path) -> dict[str, float]:
    figures: dict[str, float] = {}
    start = initial_register(pop, LG)
    residents = tmp / "register-at-window-start.jsonl"
    residents.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in start.values()))
    t0 = time.perf_counter()
    loaded = import_residents(cfg, residents, actor="cli:replay", engine=engine)
    figures["initial_s"] = time.perf_counter() - t0
    assert loaded.persons == len(start) and loaded.memberships == len(start)
    files = monthly_files(pop, LG, tmp)
    events = sum(1 for c in pop.changes if c.lg_code == LG)
    t0 = time.perf_counter()
    applied = history_outcomes = 0
    for path in reversed(files):
        done = import_feed(cfg, path, system="jumin01", actor="cli:replay", engine=engine)
        assert done.result.duplicates == 0, path
        applied += done.result.applied
        history_outcomes += done.result.outcomes.get("history", 0)
    figures["events"] = events
    figures["events_s"] = time.perf_counter() - t0
    assert applied == events
    figures["late"] = history_outcomes
    # Every file again: nothing new.
    for path in files[:3]:
        again = import_feed(cfg, path, system="jumin01", actor="cli:replay", engine=engine)
        assert again.result.applied == 0 and again.result.duplicates == again.result.read
    return figures


def check_final_register(pop: SynthPopulation, cfg: NodeConfig, engine: Engine) -> None:
    held = _register_now(engine, cfg)
    final = [p for p in pop.persons if p.status == RESIDENT and p.lg_code == LG]
    changes = [c for c in pop.changes if c.lg_code == LG]
    gone = {c.person_key for c in changes if c.kind in (MOVE_OUT, DEATH)}
    expected = {
        p.individual_number: (
            p.family_name, p.given_name, p.family_kana, p.given_kana, p.postal_code, p.address, "resident",
            p.household_id, p.relationship,
        )  # fmt: skip
        for p in final
    }
    residents_held = {n: v for n, v in held.items() if v[6] == "resident"}
    mismatched = {n: (residents_held.get(n), want) for n, want in expected.items() if residents_held.get(n) != want}
    assert not mismatched, f"{len(mismatched)} persons differ, e.g. {next(iter(mismatched.items()))}"
    assert set(residents_held) == set(expected)
    # Those who left are former residents, in no household, still held.
    for key in gone:
        number = pop.by_key[key].individual_number
        assert held[number][6] == "former" and held[number][7] is None, key
    assert len(held) == len(expected) + len(gone - {p.key for p in final})


def check_window_start(pop: SynthPopulation, cfg: NodeConfig, engine: Engine, sample: int | None = None) -> None:
    """As of the day before the window, everybody where the initial register had them."""
    cipher = node_cipher(cfg)
    start = initial_register(pop, LG)
    day = pop.window_start - timedelta(days=1)
    with Session(engine) as s:
        by_index = dict(s.execute(select(Person.individual_number_index, Person.atena_no)).tuples().all())
        for n, rec in enumerate(start.values()):
            if sample is not None and n % sample:
                continue
            atena_no = by_index[cipher.blind_index(rec["individual_number"])]
            got = history.as_of(s, atena_no, day)
            assert got.version is not None and got.status == "resident"
            assert (got.version.address, got.version.family_name) == (rec["address"], rec["family_name"])
            assert got.household is not None and (got.household.household_no, got.household.relationship) == (
                rec["household_no"], rec["relationship"]
            )  # fmt: skip


def test_replaying_the_generators_events_gives_its_final_register(
    node: tuple[Path, NodeConfig, Engine],  # noqa: F811
    tmp_path: Path,
) -> None:
    _, cfg, engine = node
    pop = small_population()
    figures = replay(pop, cfg, engine, tmp_path)
    assert figures["late"] > 0  # some events arrived after a later one of the same person
    check_final_register(pop, cfg, engine)
    check_window_start(pop, cfg, engine, sample=3)


@pytest.mark.slow
def test_replay_at_full_size(node: tuple[Path, NodeConfig, Engine], tmp_path: Path) -> None:  # noqa: F811
    _, cfg, engine = node
    people = int(os.environ.get("RENKEI_REPLAY_PEOPLE", "343000"))
    t0 = time.perf_counter()
    pop = generate(SynthConfig(people=people))
    generated = time.perf_counter() - t0
    figures = replay(pop, cfg, engine, tmp_path)
    print(
        f"\nreplay {people:,} people on {engine.dialect.name}: generated in {generated:.0f} s; "
        f"initial register {figures['initial_s']:.1f} s; {figures['events']:,.0f} events in "
        f"{figures['events_s']:.1f} s ({figures['events'] / figures['events_s']:,.0f}/s), "
        f"{figures['late']:,.0f} arrived late and became history",
        flush=True,
    )
    t0 = time.perf_counter()
    check_final_register(pop, cfg, engine)
    check_window_start(pop, cfg, engine, sample=97)
    print(f"checks {time.perf_counter() - t0:.1f} s")
