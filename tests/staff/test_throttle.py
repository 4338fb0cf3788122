"""The sign-in throttle's arithmetic and keys (its behaviour at sign-in: tests/core/test_auth.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from renkei.staff.throttle import ThrottleKey, ThrottlePolicy, keys_for


def test_delays_double_from_the_threshold_up_to_the_cap() -> None:
    policy = ThrottlePolicy(max_delay_seconds=900)
    delays = [policy.delay(n, after=5) for n in range(1, 17)]
    assert delays[:4] == [None] * 4
    assert [d.total_seconds() for d in delays[4:] if d] == [
        2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900,
    ]  # fmt: skip
    assert policy.delay(10_000, after=5) == timedelta(seconds=900)  # no overflow


def test_keys_name_account_source_and_both() -> None:
    policy = ThrottlePolicy(pair_after=5, source_after=20, account_after=50)
    assert keys_for("S0001", "10.0.0.1", policy) == [
        ThrottleKey("account:S0001", 50),
        ThrottleKey("source:10.0.0.1", 20),
        ThrottleKey("pair:S0001|10.0.0.1", 5),
    ]
    assert keys_for("S0001", None, policy) == [ThrottleKey("account:S0001", 50)]


@pytest.mark.parametrize("presented", ["", "123456789018", "A123456789018", "名前", "a|b", "x" * 65])
def test_an_id_that_cannot_be_a_staff_id_counts_against_the_source_only(presented: str) -> None:
    keys = keys_for(presented, "10.0.0.1", ThrottlePolicy())
    assert [k.key for k in keys] == ["source:10.0.0.1"]


def test_a_long_or_odd_source_is_hashed_not_stored() -> None:
    [key] = keys_for(None, "x" * 500, ThrottlePolicy())
    assert key.key.startswith("source:sha256:") and len(key.key) < 100


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        ThrottlePolicy(pair_after=0)
    with pytest.raises(ValueError):
        ThrottlePolicy(max_delay_seconds=0)
