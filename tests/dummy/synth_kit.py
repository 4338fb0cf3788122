"""A small synthetic population shared by the synth tests (generated once per process)."""

from __future__ import annotations

from functools import cache

from renkei.dummy.model import SynthPopulation
from renkei.dummy.synth import SynthConfig, generate

SMALL = SynthConfig(seed=7, people=3000)


@cache
def small_population() -> SynthPopulation:
    return generate(SMALL)
