"""The processor's one back-off policy (:mod:`processor.core.backoff`), used by the
Kinesis reader, the shard runner's commit retry and :func:`with_pg_retry`.

The delays are those the loops computed before they shared the policy (same shape,
same bounds, the same random draws for the same seed), and a wait that goes on for
hours stays bounded: ``with_pg_retry`` (the processor's start-up wait for the schema
retries until stopped) computed ``initial * 2 ** (attempt - 1)`` unbounded, which
raises OverflowError at attempt 1,025, about 45 minutes into an outage.
"""

from __future__ import annotations

import random

import pytest

from processor.core.backoff import Backoff, Jitter
from processor.kinesis_source import BACKOFF_BASE_S, BACKOFF_MAX_S, backoff_delay
from processor.postgres import RetryPolicy, StoreUnavailable, with_pg_retry


def _old_kinesis(attempt: int, rng: random.Random) -> float:
    ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * (2 ** min(attempt, 10)))
    return rng.uniform(ceiling / 4, ceiling)


def _old_pg(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    ceiling = min(policy.max_delay_s, policy.initial_delay_s * 2 ** (attempt - 1))
    return rng.uniform(0, ceiling)


def test_the_kinesis_delays_are_unchanged() -> None:
    old, new = random.Random(3), random.Random(3)
    for attempt in range(40):
        assert backoff_delay(attempt, new) == _old_kinesis(attempt, old)


def test_the_pg_retry_delays_are_unchanged_below_the_old_overflow() -> None:
    policy = RetryPolicy(initial_delay_s=0.05, max_delay_s=2.0, max_attempts=60)
    old = random.Random(5)
    expected = [_old_pg(attempt, policy, old) for attempt in range(1, 60)]
    seen: list[float] = []
    random.seed(5)
    with pytest.raises(StoreUnavailable):
        with_pg_retry(
            _always_down,
            policy=RetryPolicy(0.05, 2.0, 60, sleep=lambda _: None),
            on_retry=lambda _attempt, _exc, delay: seen.append(delay),
        )
    assert seen == expected


def test_a_wait_of_hours_keeps_retrying_within_the_bound() -> None:
    """Failed before the shared policy: OverflowError at attempt 1,025 (1,024 retries)."""
    delays: list[float] = []
    with pytest.raises(StoreUnavailable):
        with_pg_retry(
            _always_down,
            policy=RetryPolicy(max_attempts=3000, sleep=lambda _: None),
            on_retry=lambda _attempt, _exc, delay: delays.append(delay),
        )
    assert len(delays) == 2999
    assert all(0 <= d <= RetryPolicy().max_delay_s for d in delays)


@pytest.mark.parametrize("jitter", list(Jitter))
def test_delays_stay_within_the_shape(jitter: Jitter) -> None:
    policy = Backoff(base_s=0.2, max_s=5.0, jitter=jitter)
    rng = random.Random(1)
    for attempt in (0, 1, 5, 30, 10_000):
        ceiling = policy.ceiling(attempt)
        assert ceiling == min(5.0, 0.2 * 2 ** min(attempt, policy.max_doublings))
        delay = policy.delay(attempt, rng)
        floor = ceiling / 4 if jitter is Jitter.UPPER_THREE_QUARTERS else 0.0
        assert floor <= delay <= ceiling


def _always_down() -> None:
    raise StoreUnavailable("down")
