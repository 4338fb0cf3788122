"""The search bench (bench/bench_search.py) at a small size in the suite, at 新宿区's size
under `-m slow` (make bench runs it through bench/run.py --only search)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import bench_search


def _backends() -> str:
    return "sqlite,postgresql" if os.environ.get("RENKEI_TEST_POSTGRES_URL") else "sqlite"


def test_a_small_ward_is_searched_by_every_kind_within_the_goal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = bench_search.main(
        ["--people", "1500", "--queries", "20", "--backends", _backends(), "--files", str(tmp_path), "--json"]
    )
    out = capsys.readouterr().out
    figures = json.loads(out.strip().splitlines()[-1])
    for backend in _backends().split(","):
        kinds = figures[backend]
        assert kinds["persons"] > 1000
        for kind in ("kana prefix", "kanji name", "name + birth date", "address prefix", "birth date only",
                     "個人番号 (blind index)", "baseline: primary-key read"):  # fmt: skip
            assert 0 < kinds[kind]["p50"] <= kinds[kind]["p95"], kind
        assert f"search [{backend}]" in out
    assert code == 0, out  # every p95 ≤ 50 ms


@pytest.mark.slow
def test_343000_people_p95_within_50_ms_on_both_engines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = Path(bench_search.__file__).parent / ".files"
    code = bench_search.main(["--people", "343000", "--backends", "sqlite,postgresql", "--files", str(files)])
    assert code == 0, capsys.readouterr().out
