"""Load shapes: the users each tick asks for (pure arithmetic, no Locust)."""

from __future__ import annotations

import pytest

from simulator.load.shapes import ShapeName, ShapePlan, parse_duration


def users(plan: ShapePlan, t: float) -> int | None:
    tick = plan.tick(t)
    return None if tick is None else tick[0]


def test_ramp_rises_linearly_then_holds_and_drains() -> None:
    plan = ShapePlan(ShapeName.RAMP, users=10, duration_s=100, drain_s=10)
    assert users(plan, 0) == 1
    assert users(plan, 40) == 5  # half of the 80 s ramp
    assert users(plan, 79.9) == 10
    assert users(plan, 80) == 10
    assert users(plan, 99.9) == 10
    assert users(plan, 100) == 0  # drain
    assert users(plan, 109.9) == 0
    assert plan.tick(110) is None
    counts = [users(plan, t) or 0 for t in range(100)]
    assert counts == sorted(counts)  # never goes down while ramping


def test_step_has_equal_plateaus() -> None:
    plan = ShapePlan(ShapeName.STEP, users=10, duration_s=50, steps=5)
    assert [users(plan, t) for t in (0, 9.9, 10, 25, 49.9)] == [2, 2, 4, 6, 10]
    assert plan.step_bounds() == [
        (0.0, 10.0, 2),
        (10.0, 20.0, 4),
        (20.0, 30.0, 6),
        (30.0, 40.0, 8),
        (40.0, 50.0, 10),
    ]


def test_spike_bursts_in_the_middle() -> None:
    plan = ShapePlan(ShapeName.SPIKE, users=10, duration_s=100)
    assert [users(plan, t) for t in (0, 39.9, 40, 59.9, 60, 99)] == [2, 2, 10, 10, 2, 2]


def test_soak_warms_up_then_holds() -> None:
    plan = ShapePlan(ShapeName.SOAK, users=20, duration_s=600)
    assert users(plan, 0) == 1
    assert users(plan, 15) == 10  # warm-up is min(30 s, 10 %)
    assert users(plan, 30) == 20
    assert users(plan, 599) == 20
    short = ShapePlan(ShapeName.SOAK, users=4, duration_s=20)
    assert users(short, 1) == 2  # 2 s warm-up for a 20 s soak


def test_spawn_rate_stays_under_locusts_warning() -> None:
    tick = ShapePlan(ShapeName.RAMP, users=5, duration_s=10).tick(3)
    assert tick is not None and 0 < tick[1] <= 100


@pytest.mark.parametrize(
    "bad",
    [
        {"users": 0, "duration_s": 10},
        {"users": 1, "duration_s": 0},
        {"users": 1, "duration_s": 10, "drain_s": -1},
        {"users": 1, "duration_s": 10, "steps": 0},
    ],
)
def test_invalid_plans_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ShapePlan(ShapeName.RAMP, **bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("5m", 300), ("1m30s", 90), ("1h", 3600), ("2.5s", 2.5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m", "1m30"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
