"""Files of the synthetic population: CSV in UTF-8 and CP932, and JSON Lines.

Layout under the output directory (one tree per format: ``utf8/``, ``cp932/``, ``jsonl/``):

    persons_truth.csv          everyone the data set knows (ground truth: key, status, ids)
    shinjuku/ and nakano/
      residents.csv            the register on the reference date (住民票)
      changes.csv              異動 of the event window
      business_<system>.csv    each business system's records (see renkei.dummy.business)
      business_links.csv       ground truth: person key ↔ system ↔ 業務宛名番号
      non_residents.csv        住登外者 records with noise (renkei.dummy.noise)
      non_residents_truth.csv  ground truth: record → person key
    manifest.json              parameters, counts and files (top level)

CSV: Japanese header, CRLF, no BOM. CP932: strict by default (`Cp932Error` names the file,
line, record, column and character); with ``substitute_cp932`` the policy of
`renkei.core.text.cp932` applies and ``cp932/cp932_substitutions.csv`` lists every change.
Files are written as streams: the business records are made while they are written.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from _csv import Writer as _CsvWriter

import orjson

from renkei.core.text import cp932
from renkei.dummy import business
from renkei.dummy.model import NAKANO, RESIDENT, SHINJUKU, Person, SynthPopulation
from renkei.dummy.noise_records import NonResidentRecord

__all__ = [
    "FORMATS",
    "WARD_DIRS",
    "OutputSet",
    "Table",
    "write_population",
    "write_population_csv",
]

FORMATS: Final = ("csv", "cp932", "jsonl")
_FORMAT_DIRS: Final = {"csv": "utf8", "cp932": "cp932", "jsonl": "jsonl"}
WARD_DIRS: Final = {SHINJUKU: "shinjuku", NAKANO: "nakano"}


@dataclasses.dataclass(frozen=True, slots=True)
class Table:
    name: str  # file stem
    columns: tuple[tuple[str, str], ...]  # (JSON key, Japanese CSV header)


def _iso(d: date | None) -> str:
    return "" if d is None else d.isoformat()


class _TableWriter:
    """One table written to every requested format at once."""

    def __init__(self, out: OutputSet, rel: str, table: Table) -> None:
        self.out = out
        self.table = table
        self.rel = rel
        self.rows = 0
        self.keys = tuple(k for k, _ in table.columns)
        self.headers = tuple(h for _, h in table.columns)
        self._files: list[IO[Any]] = []
        self._csv: _CsvWriter | None = None
        self._cp932: _CsvWriter | None = None
        self._jsonl: IO[bytes] | None = None
        self.paths: list[Path] = []
        for fmt in out.formats:
            path = out.path(fmt, rel, table.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.paths.append(path)
            if fmt == "jsonl":
                binary = path.open("wb")
                self._jsonl = binary
                self._files.append(binary)
                continue
            text = path.open("w", encoding="utf-8" if fmt == "csv" else "cp932", newline="")
            w = csv.writer(text, lineterminator="\r\n")
            w.writerow(self.headers)
            if fmt == "csv":
                self._csv = w
            else:
                self._cp932 = w
            self._files.append(text)

    def write(self, record: str, values: Sequence[str]) -> None:
        self.rows += 1
        if self._csv is not None:
            self._csv.writerow(values)
        if self._cp932 is not None:
            self._cp932.writerow(self._cp932_values(record, values))
        if self._jsonl is not None:
            self._jsonl.write(orjson.dumps(dict(zip(self.keys, values, strict=True))) + b"\n")

    def _cp932_values(self, record: str, values: Sequence[str]) -> Sequence[str]:
        if cp932.is_faithful("\x1f".join(values)):
            return values
        fixed = list(values)
        line = self.rows + 1  # the header is line 1
        for i, value in enumerate(values):
            bad = cp932.first_unfaithful(value)
            if bad < 0:
                continue
            name = f"{self.rel}/{self.table.name}.csv" if self.rel else f"{self.table.name}.csv"
            if not self.out.substitute_cp932:
                raise cp932.Cp932Error(name, line, record, self.headers[i], value[bad])
            fixed[i], changes = cp932.substitute_text(value)
            for original, replacement in changes:
                self.out.substitutions.append(
                    cp932.Substitution(name, line, record, self.headers[i], original, replacement)
                )
        return fixed

    def close(self, *, failed: bool = False) -> None:
        for f in self._files:
            f.close()
        if failed:
            for path in self.paths:
                path.unlink(missing_ok=True)
        else:
            self.out.counts[f"{self.rel}/{self.table.name}" if self.rel else self.table.name] = self.rows


class OutputSet:
    """The output directory: formats, the CP932 policy, and what was written."""

    def __init__(self, root: Path, formats: Sequence[str], *, substitute_cp932: bool = False) -> None:
        unknown = [f for f in formats if f not in FORMATS]
        if unknown or not formats:
            raise ValueError(f"formats must be some of {', '.join(FORMATS)} (got {', '.join(formats) or 'none'})")
        self.root = root
        self.formats = tuple(dict.fromkeys(formats))
        self.substitute_cp932 = substitute_cp932
        self.substitutions: list[cp932.Substitution] = []
        self.counts: dict[str, int] = {}

    def path(self, fmt: str, rel: str, name: str) -> Path:
        suffix = ".jsonl" if fmt == "jsonl" else ".csv"
        base = self.root / _FORMAT_DIRS[fmt]
        return (base / rel if rel else base) / f"{name}{suffix}"

    def table(self, rel: str, table: Table, rows: Iterable[tuple[str, Sequence[str]]]) -> None:
        """Write (record id, values) rows of `table` under `rel` in every format."""
        writer = _TableWriter(self, rel, table)
        try:
            for record, values in rows:
                writer.write(record, values)
        except BaseException:
            writer.close(failed=True)
            raise
        writer.close()

    def write_substitutions(self) -> None:
        if "cp932" not in self.formats:
            return
        path = self.root / "cp932" / "cp932_substitutions.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="") as f:  # UTF-8: it shows the originals
            w = csv.writer(f, lineterminator="\r\n")
            w.writerow(("ファイル", "行", "レコード", "項目", "元の文字", "元の文字コード", "置換後"))
            for s in self.substitutions:
                w.writerow((s.file, s.line, s.record, s.column, s.original, cp932.describe(s.original), s.replacement))

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is None:
            self.write_substitutions()


# --- tables -----------------------------------------------------------------------------

_BASIC: Final = (
    ("family_name", "氏"), ("given_name", "名"), ("family_kana", "氏カナ"), ("given_kana", "名カナ"),
    ("sex", "性別"), ("birth_date", "生年月日"),
)  # fmt: skip

RESIDENTS: Final = Table("residents", (
    ("key", "個人キー"), ("individual_number", "個人番号"), ("resident_code", "住民票コード"),
    ("household_id", "世帯番号"), ("relationship", "続柄"), *_BASIC,
    ("alpha_name", "ローマ字氏名"), ("alias_family_name", "通称"), ("alias_family_kana", "通称カナ"),
    ("nationality", "国籍"), ("postal_code", "郵便番号"), ("address", "住所"), ("lg_code", "地方公共団体コード"),
    ("resident_since", "住民となった日"), ("moved_in_on", "転入日"), ("previous_lg_code", "前住所地コード"),
    ("previous_address", "前住所"), ("moved_within_on", "転居日"),
))  # fmt: skip

CHANGES: Final = Table("changes", (
    ("change_id", "異動番号"), ("kind", "異動事由"), ("effective_on", "異動日"), ("notified_on", "届出日"),
    ("key", "個人キー"), ("individual_number", "個人番号"), ("resident_code", "住民票コード"),
    ("household_id", "世帯番号"), *_BASIC, ("postal_code", "郵便番号"), ("address", "住所"),
    ("other_lg_code", "相手方地方公共団体コード"), ("other_address", "相手方住所"),
))  # fmt: skip

LINKS: Final = Table("business_links", (("key", "個人キー"), ("system", "業務"), ("business_atena_no", "業務宛名番号")))

PERSONS_TRUTH: Final = Table("persons_truth", (
    ("key", "個人キー"), ("status", "状態"), ("lg_code", "地方公共団体コード"), ("individual_number", "個人番号"),
    ("resident_code", "住民票コード"), *_BASIC, ("alpha_name", "ローマ字氏名"), ("nationality", "国籍"),
    ("postal_code", "郵便番号"), ("address", "住所"), ("left_on", "転出・死亡日"),
    ("destination_lg_code", "転出先地方公共団体コード"), ("destination_address", "転出先住所"),
))  # fmt: skip


def _basic(p: Person) -> tuple[str, ...]:
    return (p.family_name, p.given_name, p.family_kana, p.given_kana, p.sex, p.birth_date.isoformat())


def _resident_rows(pop: SynthPopulation, lg: str) -> Iterator[tuple[str, Sequence[str]]]:
    for p in pop.persons:
        if p.status != RESIDENT or p.lg_code != lg:
            continue
        yield p.key, (
            p.key, p.individual_number, p.resident_code, p.household_id, p.relationship, *_basic(p),
            p.alpha_name or "", p.alias_family_name or "", p.alias_family_kana or "", p.nationality,
            p.postal_code, p.address, p.lg_code, _iso(p.resident_since), _iso(p.moved_in_on),
            p.previous_lg_code or "", p.previous_address or "", _iso(p.moved_within_on),
        )  # fmt: skip


def _change_rows(pop: SynthPopulation, lg: str) -> Iterator[tuple[str, Sequence[str]]]:
    for c in pop.changes:
        if c.lg_code != lg:
            continue
        p = pop.by_key[c.person_key]
        yield c.change_id, (
            c.change_id, c.kind, c.effective_on.isoformat(), c.notified_on.isoformat(), p.key,
            p.individual_number, p.resident_code, c.household_id, *_basic(p), c.postal_code, c.address,
            c.other_lg_code or "", c.other_address or "",
        )  # fmt: skip


def business_table(system: str) -> Table:
    cols = business.COLUMNS[system]
    return Table(f"business_{system}", (cols[0], *_BASIC, ("address", "住所"), *cols[1:]))


def _business_rows(pop: SynthPopulation, lg: str, system: str) -> Iterator[tuple[str, Sequence[str]]]:
    for r in business.records(pop, lg, system):
        p = pop.by_key[r.person_key]
        yield r.business_atena_no, (r.values[0], *_basic(p), p.address, *r.values[1:])


def _link_rows(pop: SynthPopulation, lg: str) -> Iterator[tuple[str, Sequence[str]]]:
    for system in business.SYSTEMS:
        for key, serial in pop.numbers.get(f"{lg}:{system}", {}).items():
            yield key, (key, system, business.atena_no(serial))


def _truth_rows(pop: SynthPopulation) -> Iterator[tuple[str, Sequence[str]]]:
    for p in pop.persons:
        yield p.key, (
            p.key, p.status, p.lg_code, p.individual_number, p.resident_code, *_basic(p), p.alpha_name or "",
            p.nationality, p.postal_code, p.address, _iso(p.left_on), p.destination_lg_code or "",
            p.destination_address or "",
        )  # fmt: skip


def _non_residents(out: OutputSet, pop: SynthPopulation, lg: str, rel: str) -> None:
    from renkei.dummy import noise

    records = list(pop.non_resident_records.get(lg, ()))
    truth = list(pop.non_resident_truth.get(lg, ()))
    if not records:
        return
    for fmt in out.formats:
        path = out.path(fmt, rel, "non_residents")
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "jsonl":
            noise.write_records_jsonl(records, path)
        elif fmt == "csv":
            noise.write_records_csv(records, path)
        else:
            rows = _cp932_records(out, records, f"{rel}/non_residents.csv") if out.substitute_cp932 else records
            noise.write_records_csv(rows, path, encoding="cp932")
        # Ground truth: always UTF-8 CSV beside the records (keys and ids are ASCII).
        noise.write_truth_csv(truth, path.with_name("non_residents_truth.csv"))
    out.counts[f"{rel}/non_residents"] = len(records)


_NOISE_TEXT_FIELDS: Final = (("family_name", "氏"), ("given_name", "名"), ("family_kana", "氏カナ"),
                             ("given_kana", "名カナ"), ("address", "住所"))  # fmt: skip


def _cp932_records(out: OutputSet, records: Sequence[NonResidentRecord], name: str) -> list[NonResidentRecord]:
    fixed = []
    for line, r in enumerate(records, 2):
        values: dict[str, str] = {}
        for attr, header in _NOISE_TEXT_FIELDS:
            new, subs = cp932.substitute_text(getattr(r, attr))
            values[attr] = new
            out.substitutions.extend(cp932.Substitution(name, line, r.record_id, header, o, n) for o, n in subs)
        fixed.append(dataclasses.replace(
            r, family_name=values["family_name"], given_name=values["given_name"],
            family_kana=values["family_kana"], given_kana=values["given_kana"], address=values["address"],
        ))  # fmt: skip
    return fixed


def write_population(
    pop: SynthPopulation,
    root: Path,
    formats: Sequence[str] = ("csv",),
    *,
    substitute_cp932: bool = False,
    progress: Callable[[str], None] | None = None,
) -> OutputSet:
    """Write every table of `pop` under `root` (see the module docstring)."""
    note = progress or (lambda _name: None)
    with OutputSet(root, formats, substitute_cp932=substitute_cp932) as out:
        for lg in pop.lg_codes:
            rel = WARD_DIRS[lg]
            note(f"{rel}/residents")
            out.table(rel, RESIDENTS, _resident_rows(pop, lg))
            note(f"{rel}/changes")
            out.table(rel, CHANGES, _change_rows(pop, lg))
            for system in business.SYSTEMS:
                note(f"{rel}/business_{system}")
                out.table(rel, business_table(system), _business_rows(pop, lg, system))
            out.table(rel, LINKS, _link_rows(pop, lg))
            note(f"{rel}/non_residents")
            _non_residents(out, pop, lg, rel)
        note("persons_truth")
        out.table("", PERSONS_TRUTH, _truth_rows(pop))
    manifest = {
        "generator": "renkei.dummy.synth",
        "synthetic": True,
        "seed": pop.seed,
        "reference_date": pop.reference_date.isoformat(),
        "window_start": pop.window_start.isoformat(),
        "tax_year": pop.tax_year,
        "formats": list(out.formats),
        "cp932_substitutions": len(out.substitutions) if "cp932" in out.formats else None,
        "rows": out.counts,
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return out


POPULATION: Final = (
    "個人番号", "住民票コード", "氏", "名", "氏カナ", "名カナ", "性別", "生年月日", "住所", "郵便番号",
    "地方公共団体コード", "世帯番号", "続柄", "前住所地コード", "転入日", "状態",
)  # fmt: skip


def write_population_csv(pop: SynthPopulation, path: Path) -> None:
    """Everyone in `pop` in one CSV (the demo's ``population.csv``): UTF-8 without BOM,
    Japanese header, CRLF. It holds the synthetic individual numbers: for checking, never
    for a node."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(POPULATION)
        for p in pop.persons:
            w.writerow((
                p.individual_number, p.resident_code, p.family_name, p.given_name, p.family_kana, p.given_kana,
                p.sex, p.birth_date.isoformat(), p.address, p.postal_code, p.lg_code, p.household_id,
                p.relationship, p.previous_lg_code or "", _iso(p.moved_in_on), p.status,
            ))  # fmt: skip
