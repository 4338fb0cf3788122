"""The full-size check (slow): 343,000 people with all business data in ≤ 60 s and ≤ 1 GB.

Runs bench/bench_dummy.py in its own process, so that the peak memory is the job's own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_dummy.py"


@pytest.mark.slow
def test_343000_people_with_business_data_in_60_seconds_and_1_gb() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--people", "343000", "--formats", "csv", "--json", "--here"],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    r = json.loads(done.stdout.strip().splitlines()[-1])
    assert r["people"] == 343_000
    assert r["business_records"] > 450_000 and r["changes"] > 100_000 and r["non_residents"] > 15_000
    assert r["with_business_s"] <= 60, r
    assert r["peak_rss_mb"] <= 1024, r
