"""住登外者 records: from the right people, numbered in their system, with the truth beside."""

from __future__ import annotations

from collections import Counter

import pytest

from renkei.dummy.model import MOVED_OUT, NAKANO, OUTSIDER, RESIDENT, SHINJUKU, SynthPopulation
from renkei.dummy.nonresidents import NON_RESIDENT_SYSTEMS
from tests.dummy.synth_kit import SMALL, small_population


@pytest.fixture(scope="module")
def pop() -> SynthPopulation:
    return small_population()


def test_every_record_has_exactly_one_truth_row(pop: SynthPopulation) -> None:
    for lg in pop.lg_codes:
        records = pop.non_resident_records[lg]
        truth = pop.non_resident_truth[lg]
        assert [r.record_id for r in records] == [t.record_id for t in truth]
        assert len({r.record_id for r in records}) == len(records)
        assert all(t.true_key in pop.by_key for t in truth)
    assert len(pop.non_resident_records[SHINJUKU]) == SMALL.people // 20


def test_non_residents_are_not_on_the_wards_register(pop: SynthPopulation) -> None:
    kinds: Counter[str] = Counter()
    for lg in pop.lg_codes:
        for t in pop.non_resident_truth[lg]:
            p = pop.by_key[t.true_key]
            assert not (p.status == RESIDENT and p.lg_code == lg)
            if lg == SHINJUKU:
                kinds["moved_out" if p.status == MOVED_OUT else "outsider" if p.status == OUTSIDER
                      else "nakano" if p.lg_code == NAKANO else "other"] += 1  # fmt: skip
    assert kinds["moved_out"] and kinds["outsider"] and kinds["nakano"]


def test_records_go_to_systems_that_hold_non_residents(pop: SynthPopulation) -> None:
    systems = Counter(r.system for r in pop.non_resident_records[SHINJUKU])
    assert set(systems) <= set(NON_RESIDENT_SYSTEMS)
    assert systems.most_common(1)[0][0] == "tax"


def test_noise_makes_records_differ_from_the_truth(pop: SynthPopulation) -> None:
    differ = 0
    records = pop.non_resident_records[SHINJUKU]
    for r, t in zip(records, pop.non_resident_truth[SHINJUKU], strict=True):
        p = pop.by_key[t.true_key]
        same = (r.family_name, r.given_name, r.family_kana, r.address) == (
            p.family_name, p.given_name, p.family_kana, p.address)  # fmt: skip
        differ += not same
    assert 0.4 < differ / len(records) < 0.95  # about a third are clean copies
