"""Identifiers of the synthetic population: check digits, uniqueness, ranges."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from renkei.core.ids import IdKind, check, make_atena_no
from renkei.dummy import business
from renkei.dummy.model import SynthPopulation
from tests.dummy.synth_kit import small_population

RANGE = 10**10


@pytest.fixture(scope="module")
def pop() -> SynthPopulation:
    return small_population()


def test_individual_numbers_and_resident_codes_are_valid_and_unique(pop: SynthPopulation) -> None:
    numbers = [p.individual_number for p in pop.persons]
    codes = [p.resident_code for p in pop.persons]
    assert all(check(IdKind.INDIVIDUAL_NUMBER, n) is None for n in numbers)
    assert all(check(IdKind.RESIDENT_CODE, c) is None for c in codes)
    assert len(set(numbers)) == len(numbers) == len(pop.persons)
    assert len(set(codes)) == len(codes)


def test_keys_and_household_ids_are_unique(pop: SynthPopulation) -> None:
    assert len({p.key for p in pop.persons}) == len(pop.persons)
    ids = [h.id for h in pop.households]
    assert len(set(ids)) == len(ids)
    assert all(check(IdKind.ATENA_NO, i) is None for i in ids)


def test_fast_atena_no_equals_the_kernel_one() -> None:
    rng = random.Random(3)
    for serial in [1, 9, 10, 99999999999999] + [rng.randrange(1, 10**14) for _ in range(2000)]:
        assert business.atena_no(serial) == make_atena_no(serial)


def test_business_numbers_are_valid_unique_and_in_their_system_range(pop: SynthPopulation) -> None:
    seen: Counter[str] = Counter()
    for lg in pop.lg_codes:
        for system in business.SYSTEMS:
            base = business.business_serial_base(lg, system)
            for serial in pop.numbers[f"{lg}:{system}"].values():
                assert base < serial <= base + RANGE
                no = business.atena_no(serial)
                assert check(IdKind.ATENA_NO, no) is None
                seen[no] += 1
        for record in pop.non_resident_records.get(lg, ()):
            no = record.business_atena_no
            base = business.business_serial_base(lg, record.system)
            assert check(IdKind.ATENA_NO, no) is None
            assert base < int(no[:-1]) <= base + RANGE
            seen[no] += 1
    duplicates = [no for no, n in seen.items() if n > 1]
    assert duplicates == []
    assert sum(seen.values()) > 3000


def test_a_person_has_one_number_per_system_and_ward(pop: SynthPopulation) -> None:
    for key, serials in pop.numbers.items():
        assert len(serials) == len(set(serials.values())), key
