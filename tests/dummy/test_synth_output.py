"""Files: deterministic for a seed, CP932 round trip, the clear CP932 error, JSON Lines, CLI."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from renkei.core.text import cp932
from renkei.dummy.model import RESIDENT, SHINJUKU, SynthPopulation
from renkei.dummy.output import write_population
from renkei.dummy.synth import SynthConfig, generate

TINY = SynthConfig(seed=11, people=600)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _read_csv(path: Path, encoding: str) -> list[list[str]]:
    with path.open(encoding=encoding, newline="") as f:
        return list(csv.reader(f))


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    write_population(generate(TINY), tmp_path / "a", ("csv", "jsonl"))
    write_population(generate(TINY), tmp_path / "b", ("csv", "jsonl"))
    write_population(generate(dataclasses.replace(TINY, seed=12)), tmp_path / "c", ("csv",))
    a, b, c = _tree(tmp_path / "a"), _tree(tmp_path / "b"), _tree(tmp_path / "c")
    assert a == b
    assert len(a) > 20
    assert a["utf8/shinjuku/residents.csv"] != c["utf8/shinjuku/residents.csv"]


def test_every_table_is_written_and_counted(tmp_path: Path) -> None:
    pop = generate(TINY)
    out = write_population(pop, tmp_path, ("csv", "jsonl"))
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["synthetic"] is True and manifest["seed"] == TINY.seed
    assert manifest["rows"]["shinjuku/residents"] == TINY.people
    for name, rows in out.counts.items():
        csv_rows = _read_csv(tmp_path / "utf8" / f"{name}.csv", "utf-8")
        assert len(csv_rows) == rows + 1, name  # header + rows
        if name.endswith("non_residents"):
            continue
        lines = (tmp_path / "jsonl" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == rows
        if lines:
            first = json.loads(lines[0])
            assert list(first.values()) == csv_rows[1], name


def test_cp932_round_trip(tmp_path: Path) -> None:
    pop = generate(TINY)
    out = write_population(pop, tmp_path, ("csv", "cp932"), substitute_cp932=True)
    substituted = {(s.file, s.line) for s in out.substitutions}
    for utf8 in sorted((tmp_path / "utf8").rglob("*.csv")):
        rel = utf8.relative_to(tmp_path / "utf8")
        if rel.name == "non_residents_truth.csv":
            continue
        original = _read_csv(utf8, "utf-8")
        back = _read_csv(tmp_path / "cp932" / rel, "cp932")
        assert len(back) == len(original)
        for line, (a, b) in enumerate(zip(original, back, strict=True), 1):
            if (str(rel), line) not in substituted:
                assert a == b, (rel, line)


def _with_name(pop: SynthPopulation, family_name: str) -> SynthPopulation:
    person = next(p for p in pop.persons if p.status == RESIDENT and p.lg_code == SHINJUKU and not p.is_foreign)
    person.family_name = family_name
    return pop


def test_cp932_error_names_the_record_and_the_character(tmp_path: Path) -> None:
    pop = _with_name(generate(TINY), "𠮷田")
    person = next(p for p in pop.persons if p.family_name == "𠮷田")
    with pytest.raises(cp932.Cp932Error) as caught:
        write_population(pop, tmp_path, ("csv", "cp932"))
    err = caught.value
    assert err.code == "cp932_unencodable"
    assert err.extra["record"] == person.key and err.extra["character"] == "U+20BB7"
    assert err.extra["file"] == "shinjuku/residents.csv" and err.extra["column"] == "氏"
    assert "U+20BB7" in err.detail and person.key in err.detail and "--cp932-substitute" in err.detail
    assert not (tmp_path / "cp932" / "shinjuku" / "residents.csv").exists()  # no half file


def test_cp932_substitution_is_recorded(tmp_path: Path) -> None:
    pop = _with_name(generate(TINY), "𠮷田")
    key = next(p.key for p in pop.persons if p.family_name == "𠮷田")
    write_population(pop, tmp_path, ("csv", "cp932"), substitute_cp932=True)
    rows = _read_csv(tmp_path / "cp932" / "shinjuku" / "residents.csv", "cp932")
    row = next(r for r in rows if r[0] == key)
    assert row[5] == "吉田"
    side = _read_csv(tmp_path / "cp932" / "cp932_substitutions.csv", "utf-8")
    assert any(r[2] == key and r[4] == "𠮷" and r[6] == "吉" and r[5].startswith("U+20BB7") for r in side[1:])
    utf8 = _read_csv(tmp_path / "utf8" / "shinjuku" / "residents.csv", "utf-8")
    assert next(r for r in utf8 if r[0] == key)[5] == "𠮷田"  # UTF-8 keeps the name as registered


def test_substitution_policy() -> None:
    assert cp932.substitute_text("髙橋﨑邉德") == ("髙橋﨑邉德", [])  # CP932 has them: untouched
    assert cp932.substitute_text("〜−") == ("～－", [("〜", "～"), ("−", "－")])  # not silently
    assert cp932.substitute_text("NGUYỄN Đức")[0] == "NGUYEN Duc"
    assert cp932.substitute_text("𩸽")[0] == cp932.GETA
    assert not cp932.is_faithful("〜")  # Python's codec would turn it into ～ without a word
    assert cp932.first_unfaithful("山田𠮷") == 2


def test_cli_generate_and_bad_options(tmp_path: Path) -> None:
    from renkei.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["dummy", "generate", "--people", "300", "--out", str(tmp_path), "--format", "csv,jsonl"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "utf8" / "shinjuku" / "residents.csv").exists()
    assert "residents/s" in result.output
    bad = runner.invoke(app, ["dummy", "generate", "--people", "300", "--out", str(tmp_path), "--format", "xml"])
    assert bad.exit_code == 2 and "形式" in bad.output
    small = runner.invoke(app, ["dummy", "generate", "--people", "5", "--out", str(tmp_path)])
    assert small.exit_code == 2
    date_bad = runner.invoke(app, ["dummy", "generate", "--people", "300", "--reference-date", "2025/4/1",
                                   "--out", str(tmp_path)])  # fmt: skip
    assert date_bad.exit_code == 2 and "基準日" in date_bad.output


def test_cli_stats_writes_the_picture_and_report(tmp_path: Path) -> None:
    from renkei.cli import app

    result = CliRunner().invoke(app, ["dummy", "stats", "--people", "2000", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    png = (tmp_path / "dummy-age-pyramid.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "外国人の割合" in (tmp_path / "dummy-stats.md").read_text(encoding="utf-8")
