"""Non-residents (住登外者) as business systems hold them, with the noise real records have,
and the ground truth of who each record really is.

`make_non_residents` picks true people from `sources`, gives each one or more records in
one or more business systems (a person may be registered twice in one system), and
copies their 基本4情報 into each record with noise of its own: kana variants, 旧字/新字,
typos, name parts in the wrong fields, partial or outdated addresses, era mistakes,
transliteration variants of foreign names. Every noise kind is a small pure function in
the ``noise_*`` modules; `noise_kinds` wires them to a record. The shares below are the
knobs; docs/dummy-noise.md describes each kind and the shares measured.

The source people are never changed: noise goes into copies. For a seed the output is
identical on every run (one `random.Random`, no set or hash order anywhere).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

from renkei.dummy.noise_date import DATE_STYLES, format_birth_date, read_birth_date
from renkei.dummy.noise_files import (
    RECORD_CSV_HEADER,
    TRUTH_CSV_HEADER,
    NoiseFileError,
    UnencodableCharacterError,
    read_records_csv,
    read_records_jsonl,
    read_truth_csv,
    write_records_csv,
    write_records_jsonl,
    write_truth_csv,
)
from renkei.dummy.noise_kinds import APPLIERS, APPLIES_TO, GROUPS, Content, Draft
from renkei.dummy.noise_records import NonResidentRecord, SourcePerson, TruthRow

__all__ = [
    "CLEAN_SHARE",
    "COPIES_PER_PERSON",
    "KINDS_PER_NOISY_RECORD",
    "KIND_WEIGHTS",
    "OTHER_DATE_STYLE_SHARE",
    "RECORD_CSV_HEADER",
    "SAME_SYSTEM_SHARE",
    "TRUTH_CSV_HEADER",
    "NoiseFileError",
    "NonResidentRecord",
    "SourcePerson",
    "TruthRow",
    "UnencodableCharacterError",
    "make_non_residents",
    "noise_shares",
    "read_records_csv",
    "read_records_jsonl",
    "read_truth_csv",
    "write_records_csv",
    "write_records_jsonl",
    "write_truth_csv",
]

# --- shares -----------------------------------------------------------------------------

# Share of records copied without any noise. A person has at most one clean record, so
# that all records of one person differ from each other.
CLEAN_SHARE: Final = 1 / 3

# How many records one true person has across all systems (relative weights).
COPIES_PER_PERSON: Final[Mapping[int, float]] = MappingProxyType(
    {1: 0.62, 2: 0.24, 3: 0.09, 4: 0.05}
)
# A further record of a person lands in a system that already has them (a duplicate
# registration) this often; otherwise in a system that does not have them yet.
SAME_SYSTEM_SHARE: Final = 0.25

# How many noise kinds a noisy record gets (relative weights).
KINDS_PER_NOISY_RECORD: Final[Mapping[int, float]] = MappingProxyType({1: 0.55, 2: 0.30, 3: 0.15})

# Each system writes birth dates in one style (DATE_STYLES); this share of its records
# comes in another one (typed by hand, imported from elsewhere).
OTHER_DATE_STYLE_SHARE: Final = 0.08

# Relative weight of each noise kind among the kinds that apply to a person (the
# foreign-name kinds apply to foreigners only, addr_outdated to movers only).
KIND_WEIGHTS: Final[Mapping[str, float]] = MappingProxyType(
    {
        "kana_long_vowel": 8.0,
        "kana_small": 4.0,
        "kana_halfwidth": 4.0,
        "kana_hiragana": 2.0,
        "kana_ji_zu": 1.0,
        "kana_wo": 0.5,
        "kana_vu": 3.0,
        "kanji_variant": 7.0,
        "typo_similar": 4.0,
        "typo_drop": 2.5,
        "typo_double": 1.5,
        "name_swap": 2.5,
        "name_merge": 4.0,
        "name_split": 1.5,
        "name_space": 4.0,
        "addr_partial": 4.0,
        "addr_outdated": 8.0,
        "addr_notation": 9.0,
        "addr_no_building": 5.0,
        "addr_no_prefecture": 5.0,
        "addr_banchi_typo": 2.5,
        "postal_missing": 3.0,
        "date_era": 4.0,
        "date_day_month": 1.5,
        "date_unknown": 0.7,
        "foreign_translit": 10.0,
        "foreign_kana": 10.0,
        "foreign_order": 5.0,
        "foreign_middle_dropped": 4.0,
        "foreign_case": 4.0,
        "foreign_alias": 3.0,
        "foreign_alpha_name": 4.0,
    }
)


# --- plan: which person, how many records, in which system -----------------------------


def _weighted(rng: random.Random, weights: Mapping[int, float]) -> int:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _plan_people(rng: random.Random, n_sources: int, count: int) -> list[tuple[int, int]]:
    """(source index, number of records) until `count` records are planned."""
    sizes: list[int] = []
    planned = 0
    while planned < count:
        sizes.append(min(_weighted(rng, COPIES_PER_PERSON), count - planned))
        planned += sizes[-1]
    people: list[int] = []
    while len(people) < len(sizes):  # more people than sources: some come back
        people += rng.sample(range(n_sources), min(n_sources, len(sizes) - len(people)))
    return list(zip(people, sizes, strict=True))


def _plan_systems(rng: random.Random, systems: Sequence[str], copies: int) -> list[str]:
    chosen = [rng.choice(systems)]
    for _ in range(copies - 1):
        unused = [s for s in systems if s not in chosen]
        if unused and rng.random() >= SAME_SYSTEM_SHARE:
            chosen.append(rng.choice(unused))
        else:
            chosen.append(rng.choice(chosen))
    return chosen


# --- noise -------------------------------------------------------------------------------


def _cp932_faithful(text: str | None) -> bool:
    if not text:
        return True
    try:
        return text.encode("cp932").decode("cp932") == text
    except UnicodeEncodeError:
        return False


def _applicable(person: SourcePerson) -> list[str]:
    return [k for k in KIND_WEIGHTS if (test := APPLIES_TO.get(k)) is None or test(person)]


def _add_noise(
    rng: random.Random,
    draft: Draft,
    person: SourcePerson,
    wanted: int,
    seen: set[Content],
    cp932_safe: bool,
) -> list[str]:
    """Apply up to `wanted` noise kinds (more if the result matches an earlier copy)."""
    applied: list[str] = []
    candidates = _applicable(person)
    while candidates and (len(applied) < wanted or draft.content() in seen):
        kind = rng.choices(candidates, weights=[KIND_WEIGHTS[k] for k in candidates])[0]
        candidates.remove(kind)
        before = draft.content()
        APPLIERS[kind](rng, draft, person)
        after = draft.content()
        if after == before:
            continue  # the kind does not apply to this record (no ヴ, no building …)
        if cp932_safe and not all(map(_cp932_faithful, after)):
            draft.restore(before)
            continue
        applied.append(kind)
        group = GROUPS.get(kind)
        if group is not None:
            candidates = [k for k in candidates if GROUPS.get(k) != group]
    return applied


def _date_style(rng: random.Random, primary: str) -> str:
    if rng.random() < OTHER_DATE_STYLE_SHARE:
        return rng.choice([s for s in DATE_STYLES if s != primary])
    return primary


def make_non_residents(
    rng: random.Random,
    sources: Sequence[SourcePerson],
    count: int,
    systems: Sequence[str],
    *,
    id_prefix: str = "NR",
    first_number: int = 1,
    cp932_safe: bool = False,
) -> tuple[list[NonResidentRecord], list[TruthRow]]:
    """`count` business records of people from `sources`, and the truth of each.

    Records are numbered ``{id_prefix}{n:07d}`` from `first_number`, in an order that
    says nothing about who is who. `cp932_safe` keeps noise from adding characters CP932
    cannot carry (NGUYỄN, 𠮷); characters already in a source's name stay as they are.
    """
    if count <= 0:
        return [], []
    if not sources or not systems:
        raise ValueError("make_non_residents needs at least one source person and one system")
    primary_style = {system: rng.choice(DATE_STYLES) for system in systems}
    plan = _plan_people(rng, len(sources), count)
    clean_people = set(rng.sample(range(len(plan)), min(len(plan), round(CLEAN_SHARE * count))))
    slots: list[tuple[int, str, bool]] = []  # (source index, system, clean)
    for n, (index, copies) in enumerate(plan):
        clean_at = rng.randrange(copies) if n in clean_people else -1
        for i, system in enumerate(_plan_systems(rng, systems, copies)):
            slots.append((index, system, i == clean_at))
    rng.shuffle(slots)

    seen: dict[int, set[Content]] = {}
    records: list[NonResidentRecord] = []
    truth: list[TruthRow] = []
    for number, (index, system, clean) in enumerate(slots, first_number):
        person = sources[index]
        style = _date_style(rng, primary_style[system])
        draft = Draft(
            family_name=person.family_name,
            given_name=person.given_name,
            family_kana=person.family_kana,
            given_kana=person.given_kana,
            birth_date_text=format_birth_date(person.birth_date, style),
            postal_code=person.postal_code,
            address=person.address,
            date_style=style,
        )
        earlier = seen.setdefault(index, set())
        wanted = 0 if clean else _weighted(rng, KINDS_PER_NOISY_RECORD)
        noise = _add_noise(rng, draft, person, wanted, earlier, cp932_safe)
        earlier.add(draft.content())
        record_id = f"{id_prefix}{number:07d}"
        records.append(
            NonResidentRecord(
                record_id=record_id,
                system=system,
                business_atena_no=None,
                family_name=draft.family_name,
                given_name=draft.given_name,
                family_kana=draft.family_kana,
                given_kana=draft.given_kana,
                sex=person.sex,
                birth_date=read_birth_date(draft.birth_date_text),
                birth_date_text=draft.birth_date_text,
                postal_code=draft.postal_code,
                address=draft.address,
                noise=tuple(noise),
            )
        )
        truth.append(TruthRow(record_id=record_id, system=system, true_key=person.key))
    return records, truth


def noise_shares(records: Sequence[NonResidentRecord]) -> dict[str, float]:
    """Share of records with each noise kind, and of clean records (``"clean"``)."""
    if not records:
        return {}
    counts: Counter[str] = Counter()
    for record in records:
        counts.update(set(record.noise) or {"clean"})
    return {kind: counts[kind] / len(records) for kind in ["clean", *KIND_WEIGHTS] if counts[kind]}
