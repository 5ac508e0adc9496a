"""``bench.machine_context``'s offline step-shape finder (the measurement behind
docs/DETECTION.md, "A machine-level partition key")."""

from __future__ import annotations

import random

from bench.machine_context import step_shapes


def _series(values: list[float]) -> list[tuple[int, float, float]]:
    return [(i + 1, i * 300.0, v) for i, v in enumerate(values)]


def test_a_step_that_stays_is_one_shape_on_its_first_reading() -> None:
    rng = random.Random(3)
    values = [round(50.0 + rng.gauss(0.0, 0.3), 1) for _ in range(200)]
    values += [round(56.0 + rng.gauss(0.0, 0.3), 1) for _ in range(200)]
    assert step_shapes(_series(values)) == [200]


def test_a_lag_transient_makes_no_shape() -> None:
    """A start or a stop along a 10-minute lag keeps moving after its first
    interval: not flat, so not a step shape (the sigma floor is the 0.1 C step)."""
    level, values = 50.0, []
    for i in range(600):
        target = 50.0 if (i // 100) % 2 == 0 else 30.0  # start and stop every 100 readings
        level += (target - level) * 0.39  # tau 10 min at 5 minutes
        values.append(round(level + 0.2 * ((i * 7) % 3 - 1), 1))  # a small, regular ripple
    assert step_shapes(_series(values)) == []


def test_a_gap_longer_than_the_lag_bound_is_not_judged() -> None:
    values = [50.0] * 50 + [56.0] * 50
    series = [(i + 1, i * 300.0 + (600.0 if i >= 50 else 0.0), v) for i, v in enumerate(values)]
    assert step_shapes(series) == []
