"""Write the synthetic population's import files once: 新宿区's atena person records and
J-LIS's number pairs, for bench/bench_import.py (and anyone loading by hand).

    python bench/import_files.py --people 343000 --out /work/notes/residents-bench

Files: residents-<lg>-<people>-<seed>.jsonl and jlis-pairs-<people>-<seed>.jsonl (kept:
an existing file is not written again).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

SHINJUKU_LG = "131041"


def paths(out: Path, people: int, seed: int, lg: str = SHINJUKU_LG) -> tuple[Path, Path]:
    return out / f"residents-{lg}-{people}-{seed}.jsonl", out / f"jlis-pairs-{people}-{seed}.jsonl"


def ensure_files(out: Path, people: int, seed: int, lg: str = SHINJUKU_LG) -> tuple[Path, Path]:
    """Generate the population and write both files unless they exist."""
    residents, pairs = paths(out, people, seed, lg)
    if residents.exists() and pairs.exists():
        return residents, pairs
    from datetime import date

    from renkei.dummy import bulk
    from renkei.dummy.synth import SynthConfig, generate

    start = time.perf_counter()
    pop = generate(SynthConfig(seed=seed, people=people, reference_date=date(2025, 4, 1), window_years=2))
    print(f"generated {len(pop.persons):,} persons in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    for path, write in ((residents, lambda p: bulk.write_residents(pop, lg, p)), (pairs, lambda p: bulk.write_jlis_pairs(pop, p))):
        tmp = path.with_suffix(".part.jsonl")
        n = write(tmp)
        tmp.rename(path)
        print(f"{path}: {n:,} records, {path.stat().st_size / 1e6:.0f} MB", file=sys.stderr)
    return residents, pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=343_000)
    parser.add_argument("--seed", type=int, default=20240101)
    parser.add_argument("--out", type=Path, default=Path("/work/notes/residents-bench"))
    args = parser.parse_args()
    for path in ensure_files(args.out, args.people, args.seed):
        print(path)


if __name__ == "__main__":
    main()
