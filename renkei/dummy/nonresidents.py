"""住登外者 in each ward's business systems: who they are, and their noisy records.

Sources of a ward's non-residents are people that ward's register does not hold now:
for 新宿区, those who moved out (to 中野区 or elsewhere) or died in the window, 中野区's
residents, and the invented outsiders (property-tax payers and the like who live
elsewhere); for 中野区, 新宿区's residents and the outsiders. `renkei.dummy.noise` makes
the records (several per person at times, each with its own noise) and the ground truth;
this module gives each record a 宛名番号 from its system's range, after the residents'.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from typing import Final

from renkei.dummy import business
from renkei.dummy.model import OUTSIDER, RESIDENT, Person, SynthPopulation

__all__ = ["NON_RESIDENT_SYSTEMS", "make", "sources_for"]

# Systems that hold 住登外者, repeated by weight: mostly tax (固定資産税 payers, people
# taxed for the year they left), then care and health insurance (住所地特例), a few others.
NON_RESIDENT_SYSTEMS: Final = (
    business.SYSTEM_TAX, business.SYSTEM_TAX, business.SYSTEM_TAX, business.SYSTEM_TAX,
    business.SYSTEM_CARE, business.SYSTEM_CARE, business.SYSTEM_NHI,
    business.SYSTEM_WELFARE, business.SYSTEM_DISABILITY,
)  # fmt: skip


def sources_for(pop: SynthPopulation, lg_code: str) -> list[Person]:
    """People who may appear as non-residents in `lg_code`'s systems (see the docstring)."""
    return [
        p
        for p in pop.persons
        if p.status == OUTSIDER
        or (p.lg_code == lg_code and p.status != RESIDENT)
        or (p.lg_code != lg_code and p.status == RESIDENT)
    ]


def make(pop: SynthPopulation, rng: random.Random, counts: Mapping[str, int]) -> None:
    """Fill `pop.non_resident_records` and `pop.non_resident_truth`: `counts[lg_code]`
    records for each ward."""
    # Imported here: the noise modules need joyokanji and kanjize, which only this stage uses.
    from renkei.dummy import noise

    for lg in pop.lg_codes:
        sources = sources_for(pop, lg)
        if counts.get(lg, 0) <= 0 or not sources:
            continue
        records, truth = noise.make_non_residents(
            rng, sources, counts[lg], NON_RESIDENT_SYSTEMS, id_prefix=f"{lg}N"
        )
        next_serial: dict[str, int] = {}
        numbered = []
        for r in records:
            if r.system not in next_serial:
                taken = len(pop.numbers.get(f"{lg}:{r.system}", {}))
                next_serial[r.system] = business.business_serial_base(lg, r.system, pop.serial_offset) + taken
            next_serial[r.system] += 1
            numbered.append(dataclasses.replace(r, business_atena_no=business.atena_no(next_serial[r.system])))
        pop.non_resident_records[lg] = numbered
        pop.non_resident_truth[lg] = truth
