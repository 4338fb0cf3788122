"""Register change records (異動) of the event window, consistent with the final state.

Each ward's records are derived from the people, so that replaying them on the register
as it stood at the window's start gives exactly the register on the reference date
(tests/dummy/test_synth_events.py replays them):

- 転入 — people whose `moved_in_on` falls in the window (from `previous_lg_code`);
- 転出 — people who left: to the other ward of the two (they are that ward's residents,
  with `previous_lg_code` pointing back) or elsewhere (`status` moved_out);
- 転居 — moves within the ward (`moved_within_on`, old address in `previous_address`);
- 出生 — births in the window of people registered in the ward at birth;
- 死亡 — deaths in the window (`status` deceased).

届出日 (notification) follows the 異動日 by up to 14 days (death: 7), never after the day
before the reference date; a 転出 is notified up to 14 days before the move.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Final

from renkei.dummy.model import (
    BIRTH,
    CHANGE_KINDS,
    DEATH,
    DECEASED,
    MOVE_IN,
    MOVE_OUT,
    MOVE_WITHIN,
    MOVED_OUT,
    OUTSIDER,
    ChangeRecord,
    Person,
    SynthPopulation,
    stage_rng,
)

__all__ = ["change_records"]

_ORDER: Final = {kind: i for i, kind in enumerate(CHANGE_KINDS)}


def _address_on(p: Person, lg_code: str, day: date) -> tuple[str, str]:
    """(postal code, address) `p` had in `lg_code` on `day`."""
    if p.lg_code == lg_code and p.status != OUTSIDER:
        if p.moved_within_on is not None and day < p.moved_within_on and p.previous_address:
            return p.previous_postal_code or "", p.previous_address
        return p.postal_code, p.address
    return p.previous_postal_code or "", p.previous_address or ""


class _Collector:
    """Appends draft records of one ward (numbered and dated after sorting)."""

    def __init__(self, lg_code: str, into: list[ChangeRecord]) -> None:
        self.lg_code = lg_code
        self.into = into

    def __call__(self, kind: str, day: date, p: Person, household: str, postal: str, address: str,
                 other_lg: str | None = None, other_address: str | None = None) -> None:  # fmt: skip
        self.into.append(
            ChangeRecord(0, self.lg_code, kind, day, day, p.key, household, postal, address, other_lg, other_address)
        )


def change_records(pop: SynthPopulation) -> list[ChangeRecord]:
    """Every ward's change records of the window, in date order per ward."""
    rng = stage_rng(pop.seed, "changes")
    w0, last_day = pop.window_start, pop.reference_date - timedelta(days=1)
    out: list[ChangeRecord] = []
    for lg in pop.lg_codes:
        ward: list[ChangeRecord] = []
        add = _Collector(lg, ward)
        for p in pop.persons:
            if p.status == OUTSIDER:
                continue
            here = p.lg_code == lg
            if w0 <= p.birth_date <= last_day and p.lived_in(lg, p.birth_date):
                postal, address = _address_on(p, lg, p.birth_date)
                add(BIRTH, p.birth_date, p, p.household_id if here else (p.previous_household_id or ""), postal, address)
            if here:
                if p.moved_in_on is not None:
                    add(MOVE_IN, p.moved_in_on, p, p.household_id, p.postal_code, p.address,
                        p.previous_lg_code, p.previous_address)  # fmt: skip
                if p.moved_within_on is not None:
                    add(MOVE_WITHIN, p.moved_within_on, p, p.household_id, p.postal_code, p.address,
                        lg, p.previous_address)  # fmt: skip
                if p.left_on is not None and p.status == MOVED_OUT:
                    add(MOVE_OUT, p.left_on, p, p.household_id, p.postal_code, p.address,
                        p.destination_lg_code, p.destination_address)  # fmt: skip
                if p.left_on is not None and p.status == DECEASED:
                    add(DEATH, p.left_on, p, p.household_id, p.postal_code, p.address)
            elif p.previous_lg_code == lg and p.moved_in_on is not None:
                add(MOVE_OUT, p.moved_in_on, p, p.previous_household_id or "", p.previous_postal_code or "",
                    p.previous_address or "", p.lg_code, p.address)  # fmt: skip
        ward.sort(key=lambda c: (c.effective_on, _ORDER[c.kind], c.person_key))
        for n, c in enumerate(ward, 1):
            c.seq = n
            if c.kind == MOVE_OUT:
                c.notified_on = c.effective_on - timedelta(days=rng.randint(0, 14))
            else:
                slack = max(0, min(7 if c.kind == DEATH else 14, (last_day - c.effective_on).days))
                c.notified_on = c.effective_on + timedelta(days=rng.randint(0, slack))
        out.extend(ward)
    return out
