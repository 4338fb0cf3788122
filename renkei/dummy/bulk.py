"""The population in the shapes the nodes' bulk paths take.

- J-LIS: (個人番号, 住民票コード, 地方公共団体コード) rows for `renkei.jlis.service.load_citizens`.
- atena ``POST /v1/residents``: batches of at most 10,000 person records (個人番号,
  基本4情報, 業務宛名番号) of everyone a ward's atena knows — its residents, and the former
  residents its business systems still hold (taxed for the year, people who left).
- atena ``POST /v1/fukuhon``: provision copies (副本) per business system, in the
  catalogue's layout items (`renkei.dummy.business.fukuhon_items`).

The shapes are those `renkei.federation.demo` sends; `renkei dummy load` posts them.

The same records as files for the streaming imports (`renkei atena import residents`,
`renkei jlis import pairs`): `write_residents` and `write_jlis_pairs` write them one
line at a time, JSON Lines or CSV by the file's suffix (the CSV columns are the importers'
Japanese ones: `RESIDENT_CSV_COLUMNS`, `PAIR_CSV_COLUMNS`). `write_fukuhon` writes one
business system's copies for `renkei atena import fukuhon`, for one or more publication
years (`fukuhon_copies`; CSV: `FUKUHON_CSV_COLUMNS`, then one column per item code).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import Any, Final

import orjson

from renkei.dummy import business
from renkei.dummy.model import RESIDENT, Person, SynthPopulation, add_years

__all__ = [
    "MAX_BATCH",
    "PAIR_CSV_COLUMNS",
    "RESIDENT_CSV_COLUMNS",
    "batches",
    "FUKUHON_CSV_COLUMNS",
    "fukuhon_copies",
    "fukuhon_records",
    "write_fukuhon",
    "jlis_identity",
    "jlis_rows",
    "person_record",
    "resident_records",
    "write_jlis_pairs",
    "write_residents",
]

MAX_BATCH: Final = 10_000  # the atena's per-request limit


def jlis_rows(pop: SynthPopulation) -> Iterator[tuple[str, str, str]]:
    """Everyone's (individual number, resident code, lg code) — J-LIS knows the whole country."""
    for p in pop.persons:
        yield p.individual_number, p.resident_code, p.lg_code


def jlis_identity(p: Person) -> dict[str, str]:
    """`p`'s 基本4情報 as J-LIS holds them (the address they live at now, as in
    `person_record`), for the identity search."""
    address = p.address
    if p.destination_lg_code and p.destination_postal_code and p.destination_address:
        address = p.destination_address
    return {
        "family_name": p.family_name,
        "given_name": p.given_name,
        "family_kana": p.family_kana,
        "given_kana": p.given_kana,
        "birth_date": p.birth_date.isoformat(),
        "sex": p.sex,
        "address": address,
    }


def person_record(p: Person, numbers: dict[str, str]) -> dict[str, Any]:
    """`p` as an atena registers them, with `numbers` ({system: 業務宛名番号})."""
    # Someone who moved out elsewhere is known at the address they moved to (転出先),
    # when it is in Japan; otherwise at the last address the ward had.
    lg_code, postal, address = p.lg_code, p.postal_code, p.address
    if p.destination_lg_code and p.destination_postal_code and p.destination_address:
        lg_code, postal, address = p.destination_lg_code, p.destination_postal_code, p.destination_address
    return {
        "individual_number": p.individual_number,
        "family_name": p.family_name,
        "given_name": p.given_name,
        "family_kana": p.family_kana,
        "given_kana": p.given_kana,
        "birth_date": p.birth_date.isoformat(),
        "sex": p.sex,
        "postal_code": postal,
        "address": address,
        "lg_code": lg_code,
        "effective_on": (p.moved_in_on or p.moved_within_on or p.resident_since or p.birth_date).isoformat(),
        "business_numbers": numbers,
    }


def resident_records(pop: SynthPopulation, lg_code: str) -> Iterator[dict[str, Any]]:
    """The person records `lg_code`'s atena registers (residents first, then the others it
    has business numbers for)."""
    for p in pop.persons:
        numbers = business.numbers_in(pop, p, lg_code)
        if (p.status == RESIDENT and p.lg_code == lg_code) or numbers:
            yield person_record(p, numbers)


def fukuhon_records(
    pop: SynthPopulation, lg_code: str, system: str, valid_from: date | None = None
) -> Iterator[dict[str, Any]]:
    """Provision copies of `system`'s records, for ``POST /v1/fukuhon``."""
    published = (valid_from or pop.reference_date).isoformat()
    key = str(pop.tax_year) if system == business.SYSTEM_TAX else pop.reference_date.isoformat()
    for r in business.records(pop, lg_code, system):
        yield {
            "business_atena_no": r.business_atena_no,
            "info_kind_code": business.INFO_KINDS[system],
            "record_key": key,
            "values": business.fukuhon_items(r),
            "valid_from": published,
        }


def batches(items: Iterator[dict[str, Any]], size: int = MAX_BATCH) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- files for the streaming imports --------------------------------------------------

# (CSV column, record field), in the order written; business numbers follow as
# 業務宛名番号:<system>, one column per system.
RESIDENT_CSV_COLUMNS: Final = (
    ("個人番号", "individual_number"),
    ("氏", "family_name"),
    ("名", "given_name"),
    ("氏（カナ）", "family_kana"),
    ("名（カナ）", "given_kana"),
    ("生年月日", "birth_date"),
    ("性別", "sex"),
    ("郵便番号", "postal_code"),
    ("住所", "address"),
    ("地方公共団体コード", "lg_code"),
    ("異動日", "effective_on"),
)
PAIR_CSV_COLUMNS: Final = (
    ("個人番号", "individual_number"),
    ("住民票コード", "resident_code"),
    ("地方公共団体コード", "lg_code"),
    ("氏", "family_name"),
    ("名", "given_name"),
    ("氏（カナ）", "family_kana"),
    ("名（カナ）", "given_kana"),
    ("生年月日", "birth_date"),
    ("性別", "sex"),
    ("住所", "address"),
)
_EVERY: Final = 5_000  # records between progress calls

WriteProgress = Callable[[int], None]


def _write(
    path: Path,
    records: Iterable[dict[str, Any]],
    columns: tuple[tuple[str, str], ...],
    nested: tuple[str, str, tuple[str, ...]] | None,
    progress: WriteProgress | None,
) -> int:
    """Write records one a line: JSON Lines, or CSV (UTF-8, header) for a .csv path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    if path.suffix.lower() == ".csv":
        with path.open("w", encoding="utf-8", newline="") as text:
            writer = csv.writer(text, lineterminator="\r\n")
            header = [name for name, _ in columns]
            if nested is not None:
                header += [nested[0] + key for key in nested[2]]
            writer.writerow(header)
            for rec in records:
                row = [rec.get(field, "") for _, field in columns]
                if nested is not None:
                    inner = rec.get(nested[1]) or {}
                    row += [inner.get(key, "") for key in nested[2]]
                writer.writerow(row)
                n += 1
                if progress is not None and n % _EVERY == 0:
                    progress(n)
    else:
        with path.open("wb") as fh:
            for rec in records:
                fh.write(orjson.dumps(rec) + b"\n")
                n += 1
                if progress is not None and n % _EVERY == 0:
                    progress(n)
    if progress is not None:
        progress(n)
    return n


def write_residents(pop: SynthPopulation, lg_code: str, path: Path, progress: WriteProgress | None = None) -> int:
    """The person records `lg_code`'s atena registers (`resident_records`) as a file for
    `renkei atena import residents`; the number of records written."""
    nested = ("業務宛名番号:", "business_numbers", tuple(business.SYSTEMS))
    return _write(path, resident_records(pop, lg_code), RESIDENT_CSV_COLUMNS, nested, progress)


def write_jlis_pairs(pop: SynthPopulation, path: Path, progress: WriteProgress | None = None) -> int:
    """Everyone's (個人番号, 住民票コード, 地方公共団体コード) with their 基本4情報 as a
    file for `renkei jlis import pairs`; the number of records written."""
    by_code = {p.resident_code: p for p in pop.persons}
    records = (
        {"individual_number": number, "resident_code": code, "lg_code": lg,
         **(jlis_identity(by_code[code]) if code in by_code else {})}
        for number, code, lg in jlis_rows(pop)
    )  # fmt: skip
    return _write(path, records, PAIR_CSV_COLUMNS, None, progress)


# --- provision copies (副本) as files --------------------------------------------------

FUKUHON_CSV_COLUMNS: Final = (
    ("業務宛名番号", "business_atena_no"),
    ("特定個人情報名コード", "info_kind_code"),
    ("レコードキー", "record_key"),
    ("公開開始日", "valid_from"),
)


def fukuhon_copies(pop: SynthPopulation, lg_code: str, system: str, years: int = 1) -> Iterator[dict[str, Any]]:
    """`system`'s copies for ``years`` publication years, the oldest first: the current
    year's (`fukuhon_records`) and, for each year before, the same records published a
    year earlier under their own record key — the tax year before (課税年度 K001 with it)
    for tax, the earlier publication date for the others. Synthetic: the earlier years
    repeat the current values. Streamed; nothing is held."""
    if years < 1:
        raise ValueError("years must be at least 1")
    for back in range(years - 1, -1, -1):
        published = add_years(pop.reference_date, -back)
        for rec in fukuhon_records(pop, lg_code, system, published):
            if back:
                if system == business.SYSTEM_TAX:
                    year = str(pop.tax_year - back)
                    rec["record_key"] = year
                    rec["values"]["K001"] = year
                else:
                    rec["record_key"] = published.isoformat()
            yield rec


def write_fukuhon(
    pop: SynthPopulation,
    lg_code: str,
    system: str,
    path: Path,
    years: int = 1,
    progress: WriteProgress | None = None,
) -> int:
    """`fukuhon_copies` as a file for `renkei atena import fukuhon --system <system>`:
    JSON Lines, or CSV for a .csv path (`FUKUHON_CSV_COLUMNS`, then the system's item
    codes; an item not set is an empty cell). The number of copies written."""
    nested = ("", "values", business.fukuhon_item_codes(system))
    return _write(path, fukuhon_copies(pop, lg_code, system, years), FUKUHON_CSV_COLUMNS, nested, progress)
