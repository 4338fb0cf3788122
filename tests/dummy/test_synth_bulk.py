"""The bulk payloads are what the nodes accept (checked with the nodes' own parsers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from renkei.atena.service import parse_resident
from renkei.core.ids import IdKind, check
from renkei.dummy import bulk, business
from renkei.dummy.model import NAKANO, RESIDENT, SHINJUKU, SynthPopulation
from tests.dummy.synth_kit import small_population


@pytest.fixture(scope="module")
def pop() -> SynthPopulation:
    return small_population()


@pytest.mark.parametrize("lg", [SHINJUKU, NAKANO])
def test_every_resident_record_passes_the_atena_parser(pop: SynthPopulation, lg: str) -> None:
    records = list(bulk.resident_records(pop, lg))
    residents = sum(1 for p in pop.persons if p.status == RESIDENT and p.lg_code == lg)
    assert len(records) > residents  # plus the former residents it still holds
    numbers = set()
    for rec in records:
        parsed = parse_resident(rec)
        assert parsed.individual_number == rec["individual_number"]
        for system, no in parsed.business_numbers.items():
            assert system in business.SYSTEMS
            numbers.add((system, no))
    assert len(numbers) == sum(len(v) for k, v in pop.numbers.items() if k.startswith(lg))


def test_batches_respect_the_atena_limit(pop: SynthPopulation) -> None:
    sizes = [len(b) for b in bulk.batches(bulk.resident_records(pop, SHINJUKU), 1000)]
    assert sizes[:-1] == [1000] * (len(sizes) - 1) and 0 < sizes[-1] <= 1000


def test_jlis_rows_are_valid_pairs(pop: SynthPopulation) -> None:
    rows = list(bulk.jlis_rows(pop))
    assert len(rows) == len(pop.persons)
    for number, code, lg in rows:
        assert check(IdKind.INDIVIDUAL_NUMBER, number) is None
        assert check(IdKind.RESIDENT_CODE, code) is None
        assert check(IdKind.LG_CODE, lg) is None


def test_fukuhon_records_carry_known_numbers_and_layout_items(pop: SynthPopulation) -> None:
    known = {business.atena_no(s) for s in pop.numbers[f"{SHINJUKU}:{business.SYSTEM_TAX}"].values()}
    copies = list(bulk.fukuhon_records(pop, SHINJUKU, business.SYSTEM_TAX))
    assert copies and all(c["business_atena_no"] in known for c in copies)
    assert all(c["values"]["K001"] == str(pop.tax_year) and c["info_kind_code"] == "TM00000000000002" for c in copies)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_written_files_read_back_as_the_records(pop: SynthPopulation, tmp_path: Path, suffix: str) -> None:
    """The import files (JSON Lines and CSV) hold exactly the records, in order, as the
    importers read them (their column tables)."""
    from renkei.atena.service import RESIDENT_COLUMNS
    from renkei.core.records import read_records
    from renkei.jlis.service import PAIR_COLUMNS

    seen: list[int] = []
    path = tmp_path / f"residents{suffix}"
    n = bulk.write_residents(pop, SHINJUKU, path, seen.append)
    records = list(bulk.resident_records(pop, SHINJUKU))
    assert n == len(records) and seen[-1] == n
    read = [rec for _, rec in read_records(path, RESIDENT_COLUMNS)]
    assert [parse_resident(r) for r in read] == [parse_resident(r) for r in records]
    pairs = tmp_path / f"pairs{suffix}"
    assert bulk.write_jlis_pairs(pop, pairs) == len(list(bulk.jlis_rows(pop)))
    got = [(r["individual_number"], r["resident_code"], r["lg_code"]) for _, r in read_records(pairs, PAIR_COLUMNS)]
    assert got == list(bulk.jlis_rows(pop))
