"""The simulator's and harness's one back-off policy (simulator/backoff.py): waits
within the full-jitter ceiling, at most max_attempts tries, the last result back when
they run out, errors through untouched."""

from __future__ import annotations

import pytest

from simulator.backoff import Backoff


def test_waits_stay_under_the_jittered_ceiling_and_attempts_are_counted() -> None:
    policy = Backoff(max_attempts=6, base_s=0.05, cap_s=0.3)
    sleeps: list[float] = []
    tries: list[int] = []

    def always_refused() -> list[int]:
        tries.append(1)
        return [1]

    last = policy.retrying(again=bool, sleep=sleeps.append)(always_refused)
    assert last == [1]  # exhausted: the last result, for the caller to judge
    assert len(tries) == 6 and len(sleeps) == 5
    for attempt, slept in enumerate(sleeps, start=1):
        assert 0.0 <= slept <= policy.ceiling_s(attempt)
    assert [policy.ceiling_s(a) for a in (1, 2, 3)] == [0.1, 0.2, 0.3]


def test_stops_as_soon_as_nothing_is_left() -> None:
    results = iter([[3, 4], [4], []])
    sleeps: list[float] = []
    seen: list[object] = []
    policy = Backoff(max_attempts=5)
    out = policy.retrying(
        again=bool,
        sleep=sleeps.append,
        before_sleep=lambda state: seen.append(state.outcome.result()),
    )(lambda: next(results))
    assert out == [] and len(sleeps) == 2
    assert seen == [[3, 4], [4]]


def test_errors_are_not_retried() -> None:
    calls = []

    def boom() -> list[int]:
        calls.append(1)
        raise KeyError("no such stream")

    with pytest.raises(KeyError):
        Backoff().retrying(again=bool, sleep=lambda _: None)(boom)
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"base_s": 0.0}, "base_s"),
        ({"base_s": 3.0, "cap_s": 2.0}, "cap_s"),
    ],
)
def test_bad_values_are_refused_by_name(kwargs: dict[str, float], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Backoff(**kwargs)  # type: ignore[arg-type]
