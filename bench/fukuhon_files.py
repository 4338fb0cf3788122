"""Write the synthetic 新宿区's provision copies (副本) once, one file per business system,
for `renkei atena import fukuhon` and bench/bench_fukuhon.py.

    python bench/fukuhon_files.py --people 343000 --years 2 --out /work/notes/fukuhon-bench

Files: fukuhon-<lg>-<system>-<people>-<seed>-<years>y.jsonl (kept: an existing file is
not written again). The population is bench/import_files.py's (same seed and reference
date), so the business numbers are those its residents file links. Two publication
years give about 1,040,000 copies for 343,000 people.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

SHINJUKU_LG = "131041"


def paths(out: Path, people: int, seed: int, years: int, lg: str = SHINJUKU_LG) -> dict[str, Path]:
    from renkei.dummy import business

    return {s: out / f"fukuhon-{lg}-{s}-{people}-{seed}-{years}y.jsonl" for s in business.SYSTEMS}


def ensure_files(out: Path, people: int, seed: int, years: int, lg: str = SHINJUKU_LG) -> dict[str, Path]:
    """Generate the population and write every system's file unless they all exist."""
    files = paths(out, people, seed, years, lg)
    if all(p.exists() for p in files.values()):
        return files
    from datetime import date

    from renkei.dummy import bulk
    from renkei.dummy.synth import SynthConfig, generate

    start = time.perf_counter()
    pop = generate(SynthConfig(seed=seed, people=people, reference_date=date(2025, 4, 1), window_years=2))
    print(f"generated {len(pop.persons):,} persons in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    for system, path in files.items():
        if path.exists():
            continue
        tmp = path.with_suffix(".part.jsonl")
        n = bulk.write_fukuhon(pop, lg, system, tmp, years)
        tmp.rename(path)
        print(f"{path}: {n:,} copies, {path.stat().st_size / 1e6:.0f} MB", file=sys.stderr)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=343_000)
    parser.add_argument("--seed", type=int, default=20240101)
    parser.add_argument("--years", type=int, default=2, help="publication years (1 or more)")
    parser.add_argument("--out", type=Path, default=Path("/work/notes/fukuhon-bench"))
    args = parser.parse_args()
    for system, path in ensure_files(args.out, args.people, args.seed, args.years).items():
        print(system, path)


if __name__ == "__main__":
    main()
