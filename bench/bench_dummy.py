"""Synthetic population figures: people per second, wall time, peak memory, file sizes.

Goal (issue 4): 343,000 people with all business data in at most 60 s on this 2-core
machine, in at most 1 GB of memory. Measured here: generation (people, households,
moves, identifiers, non-residents with noise, change records) plus every business
system's records, then — separately — writing the files.

Usage: .venv/bin/python bench/bench_dummy.py [--people N] [--formats csv,cp932,jsonl]
       [--json]   (runs in its own process so that the peak RSS is this job's alone)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def faker_pairs_per_s(n: int = 30_000) -> float:
    """Baseline in the same run: bare Faker ja_JP name pairs (surname + given name) per second."""
    from faker import Faker

    fake = Faker("ja_JP")
    fake.seed_instance(1)
    t = time.perf_counter()
    for i in range(n):
        fake.last_name_pair()
        (fake.first_name_male_pair if i % 2 else fake.first_name_female_pair)()
    return n / (time.perf_counter() - t)


def measure(people: int, formats: list[str]) -> dict[str, Any]:
    from renkei.dummy import business
    from renkei.dummy.output import write_population
    from renkei.dummy.synth import SynthConfig, generate

    config = SynthConfig(people=people)
    baseline = faker_pairs_per_s()
    start = time.perf_counter()
    pop = generate(config)
    generated = time.perf_counter() - start
    records = {
        f"{lg}:{system}": sum(1 for _ in business.records(pop, lg, system))
        for lg in pop.lg_codes
        for system in business.SYSTEMS
    }
    with_business = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        out = write_population(pop, Path(d), formats, substitute_cp932=True)
        files = time.perf_counter() - t
        sizes = {f: sum(p.stat().st_size for p in (Path(d) / ("utf8" if f == "csv" else f)).rglob("*") if p.is_file())
                 for f in formats}  # fmt: skip
    residents = config.people + config.nakano
    return {
        "people": config.people,
        "nakano_people": config.nakano,
        "persons_total": len(pop.persons),
        "households": len(pop.households),
        "changes": len(pop.changes),
        "business_records": sum(records.values()),
        "non_residents": sum(len(v) for v in pop.non_resident_records.values()),
        "generate_s": round(generated, 2),
        "with_business_s": round(with_business, 2),
        "residents_per_s": round(residents / with_business),
        "faker_pairs_per_s": round(baseline),
        "files_s": round(files, 2),
        "formats": formats,
        "bytes": sizes,
        "cp932_substitutions": len(out.substitutions),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def run_isolated(people: int, formats: list[str]) -> dict[str, Any]:
    """`measure` in a fresh interpreter (clean peak RSS)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--people", str(people),
           "--formats", ",".join(formats), "--json", "--here"]  # fmt: skip
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=343_000)
    parser.add_argument("--formats", default="csv")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--here", action="store_true", help="measure in this process")
    args = parser.parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]
    r = measure(args.people, formats) if args.here else run_isolated(args.people, formats)
    if args.json:
        print(json.dumps(r))
        return 0
    mb = {f: f"{b / 1e6:,.0f} MB" for f, b in r["bytes"].items()}
    print(
        f"dummy: {r['people']:,} 新宿区 + {r['nakano_people']:,} 中野区 residents "
        f"({r['persons_total']:,} persons incl. movers, the dead and outsiders) with "
        f"{r['business_records']:,} business records, {r['changes']:,} change records and "
        f"{r['non_residents']:,} non-resident records in {r['with_business_s']:.1f} s "
        f"= {r['residents_per_s']:,} residents/s (goal: 343,000 in 60 s); "
        f"files {', '.join(formats)} {r['files_s']:.1f} s ({', '.join(mb.values())}); "
        f"peak RSS {r['peak_rss_mb']:,} MB (goal ≤ 1,024)"
    )
    print(
        f"dummy: baseline bare Faker ja_JP name pairs {r['faker_pairs_per_s']:,}/s; "
        f"whole residents with everything / bare name pairs = "
        f"{r['residents_per_s'] / r['faker_pairs_per_s']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
