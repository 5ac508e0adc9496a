"""The time-of-day floor (issue 9, session 6): a temperature sensor reading lastingly
*below* the coolest level the machine showed at the same hour (+-1 h) on any day of
the previous week, the mirror of the ceiling (tests/unit/test_detection_ceiling.py).

Why it is a sensor and not the process: every week holds a weekend (or any long
stand-still) at every hour of the day, so the previous week's floor at an hour is
the machine's stand-by level there (hall + 10 % of the heat rise). A machine can
run hotter than that, never lastingly colder except with its stand-by heat off
(maintenance, a fault: a few hours), while a swapped sensor's negative offset moves
every level, the stand-by level included, for ever.

False-alarm tests first, on healthy signals written here from the plant physics
(the ceiling tests' generator, plus planned maintenance with the heat off, which
cools a machine *below* its stand-by level and is the floor's worst case).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import msgspec

from processor.core.detection import STATE_VERSION, DetectorBank, DeviceState
from processor.core.model import Anomaly, AnomalyType
from tests.unit.test_detection import T0, analog
from tests.unit.test_detection_ceiling import (
    CADENCE_S,
    DAY_S,
    MONDAY,
    WEEK_S,
    ceiling_drifts,
    ramp,
    run,
    shift_load,
)


def machine_with_maintenance(
    seed: int,
    start: float,
    weeks: float,
    extra: Callable[[float], float] = lambda t: 0.0,
    maintenance: float = 0.03,
) -> list[tuple[float, float]]:
    """(epoch seconds, reading) every 5 min of one healthy machine on the three-shift
    calendar: runs of 2 h on average, stops of 15 min, and at the end of a run, with
    probability ``maintenance``, planned maintenance with the heat off (90 min on
    average; the plant model's 3 %)."""
    rng = random.Random(seed)
    heat_rise = rng.uniform(35.0, 55.0)
    tau = rng.uniform(600.0, 2400.0)
    ambient = rng.uniform(16.0, 24.0)
    swing = rng.uniform(1.5, 4.0)
    drift_amp = rng.uniform(0.0, 1.5)
    drift_period = rng.uniform(2.0, 5.0) * DAY_S
    drift_phase = rng.uniform(0.0, 2 * math.pi)
    noise = rng.uniform(0.15, 0.4)
    alpha = 1.0 - math.exp(-CADENCE_S / tau)
    state, until = "idle", start
    heat = heat_rise * 0.1
    out = []
    for i in range(int(weeks * WEEK_S / CADENCE_S)):
        t = start + i * CADENCE_S
        load = shift_load(t)
        if state == "running" and load == 0.0:
            state, until = "idle", t
        if t >= until:
            if state == "running":
                if rng.random() < maintenance:
                    state, until = "maintenance", t + rng.expovariate(1 / 5400.0)
                else:
                    state, until = "idle", t + rng.expovariate(1 / 900.0)
            elif load > 0.0:
                state, until = "running", t + rng.expovariate(1 / 7200.0)
            else:
                state, until = "idle", t + 3600.0
        target = {"running": heat_rise * load, "idle": heat_rise * 0.1, "maintenance": 0.0}[state]
        heat += (target - heat) * alpha
        hall = ambient - swing * math.cos(2 * math.pi * ((t % DAY_S) / DAY_S - 3 / 24))
        drift = drift_amp * math.sin(2 * math.pi * t / drift_period + drift_phase)
        value = hall + drift + heat + rng.gauss(0.0, noise) + extra(t - start)
        out.append((t, round(value, 1)))
    return out


def floor_drifts(anomalies: list[Anomaly]) -> list[Anomaly]:
    return [
        a for a in anomalies if a.anomaly_type is AnomalyType.DRIFT and "floor" in a.explanation
    ]


def offset_from(onset: float, offset: float) -> Callable[[float], float]:
    """A swapped sensor: ``offset`` from ``onset`` (seconds into the series) on."""
    return lambda t: offset if t >= onset else 0.0


# -- false alarms first -----------------------------------------------------------------


def test_healthy_machines_with_heavy_maintenance_raise_no_floor_anomaly() -> None:
    """Eighteen healthy machines with planned maintenance at three times the plant
    model's rate (several heat-off stops a week, the floor's worst case), started on
    a Monday, a Wednesday noon and a Saturday: five weeks at 5 minutes, no floor
    anomaly."""
    for seed in range(18):
        start = MONDAY + (seed % 3) * 2.5 * DAY_S
        got = floor_drifts(run(machine_with_maintenance(seed, start, 5.0, maintenance=0.1)))
        assert got == [], (seed, [(a.ts, a.explanation) for a in got])


def test_healthy_machines_with_maintenance_raise_no_ceiling_anomaly() -> None:
    """The same at the plant model's maintenance rate (3 % of runs end in one): no
    ceiling anomaly at its 30-minute smoothing either. (At three times that rate,
    60 machines x 5 weeks gave 2 ceiling anomalies at 30 minutes and 4 at the hour
    before: a week in which every day had a stop near the same hour holds a low
    ceiling there; 0.007 per machine-week, docs/DETECTION.md.)"""
    for seed in range(18):
        start = MONDAY + (seed % 3) * 2.5 * DAY_S
        got = ceiling_drifts(run(machine_with_maintenance(seed, start, 5.0)))
        assert got == [], (seed, [(a.ts, a.explanation) for a in got])


def test_the_ceiling_generator_raises_no_floor_anomaly() -> None:
    """The ceiling tests' healthy machines (no maintenance) stay quiet too."""
    from tests.unit.test_detection_ceiling import healthy_machine

    for seed in range(12):
        start = MONDAY + (seed % 3) * 2.5 * DAY_S
        got = floor_drifts(run(healthy_machine(seed, start, 5.0)))
        assert got == [], (seed, [(a.ts, a.explanation) for a in got])


def test_a_batch_machine_without_a_daily_schedule_raises_no_floor_anomaly() -> None:
    """Runs and stops of 0.3-3 h at any hour, no calendar: a stop at an hour the
    previous week ran through is far below that hour's floor, but for hours, not
    for the floor's hold (8 h); ten machines, three weeks, nothing."""
    from tests.unit.test_detection_shape import lagged_plant

    for seed in range(11, 21):
        bank = DetectorBank()
        out: list[Anomaly] = []
        for seq, t, value in lagged_plant(21 * 24, seed=seed):
            bank.observe_into(analog(seq, t, value), out)
        assert floor_drifts(out) == [], seed


def test_a_weekday_holiday_stands_at_the_floor_not_below_it() -> None:
    """A Wednesday of week 3 without production (the machine stands by all day): the
    previous week's weekend put the stand-by level at every hour's floor."""
    for seed in range(6):
        series = machine_with_maintenance(seed, MONDAY, 4.0)
        # Replace week 3's Wednesday 06:00 - Thursday 06:00 by the stand-by level the
        # same machine shows on the Sunday before (same hour), i.e. a day of stand-by.
        by_t = dict(series)
        wednesday = MONDAY + 16 * DAY_S
        sunday = MONDAY + 13 * DAY_S
        day_off = range(int(wednesday + 6 * 3600), int(wednesday + 30 * 3600))
        edited = [
            (t, by_t[t - (wednesday - sunday)] if int(t) in day_off else v) for t, v in series
        ]
        got = floor_drifts(run(edited))
        assert got == [], (seed, [(a.ts, a.explanation) for a in got])


# -- detection --------------------------------------------------------------------------


def test_a_negative_swap_on_a_weekday_is_found_at_the_next_stand_still() -> None:
    """A sensor swapped on Tuesday of week 2 reads 8 C low for ever. The ceiling
    and the time-of-week profile judge upwards only, so nothing found it before; the
    floor does, once the machine stands still for the floor's hold (the weekend).
    (8 C: beyond the margin plus what the slow terms move a stand-by level from one
    week to the next; a 6 C swap is found or not depending on them.)"""
    for seed in range(4):
        onset = 8 * DAY_S + 10 * 3600
        got = run(machine_with_maintenance(seed, MONDAY, 3.0, offset_from(onset, -8.0)))
        found = floor_drifts(got)
        assert len(found) == 1, (seed, [(a.ts, a.explanation) for a in got])
        delay = found[0].ts.timestamp() - (MONDAY + onset)
        assert 0 < delay <= 6 * DAY_S, (seed, delay)


def test_a_negative_swap_during_a_weekend_is_found_within_the_weekend() -> None:
    """A swap on Saturday of week 2 (-7 C): found before the Monday shift starts."""
    for seed in range(4):
        onset = 12 * DAY_S + 9 * 3600  # Saturday 09:00
        got = floor_drifts(
            run(machine_with_maintenance(seed, MONDAY, 3.0, offset_from(onset, -7.0)))
        )
        assert got, seed
        assert got[0].ts.timestamp() < MONDAY + 14 * DAY_S + 6 * 3600, (seed, got[0].ts)


def test_the_first_week_is_not_judged() -> None:
    got = floor_drifts(run(machine_with_maintenance(3, MONDAY, 1.0, offset_from(DAY_S, -8.0))))
    assert got == []


def test_a_steep_short_degradation_in_the_second_week_is_found_by_the_ceiling() -> None:
    """3 C per hour for 4 h (+12 C) from Tuesday 17:18 of week 2, the shape of seed 3's
    missed degradation (month profile, day 8.7). The smoothed level lags a ramp by
    rate x smoothing: at the profile's hour the ceiling saw 7 of these 10 machines, at
    30 minutes 8 of 10, each before the ramp's end."""
    onset = 8 * DAY_S + 17.3 * 3600
    found = 0
    for seed in range(10):
        got = ceiling_drifts(
            run(machine_with_maintenance(seed, MONDAY, 2.0, ramp(onset, 3.0, 12.0)))
        )
        if got:
            assert MONDAY + onset < got[0].ts.timestamp() <= MONDAY + onset + 4 * 3600
            found += 1
    assert found >= 8, found


def test_a_ceiling_state_saved_before_the_floor_loads_and_keeps_its_ceiling() -> None:
    """A state saved by the code before the floor (a 52-entry ``ceiling`` list) loads,
    keeps its ceiling, and grows the floor's entries at its next reading; the same
    state version (nothing new in DeviceState)."""
    series = machine_with_maintenance(2, MONDAY, 1.5)
    bank = DetectorBank()
    run(series[:2000], bank)
    state = bank.state_of("d1")
    assert state is not None
    fields = msgspec.msgpack.decode(state.to_bytes())
    old_ceiling = fields[-1][:52]
    old = msgspec.msgpack.encode([*fields[:-1], old_ceiling])
    restored = DetectorBank()
    assert restored.load_state("d1", old)
    loaded = restored.state_of("d1")
    assert loaded is not None and loaded.version == STATE_VERSION
    assert loaded.ceiling == old_ceiling
    t, value = series[2000]
    restored.observe(analog(2001, t - T0.timestamp(), value))
    grown = restored.state_of("d1")
    assert grown is not None
    assert grown.ceiling[4:28] == old_ceiling[4:28]  # the previous block's ceiling kept
    assert len(grown.ceiling) > 52
    assert DeviceState.from_bytes(grown.to_bytes()) == grown


def test_replay_from_a_saved_state_gives_the_same_floor_anomaly() -> None:
    onset = 12 * DAY_S + 9 * 3600
    series = machine_with_maintenance(1, MONDAY, 3.0, offset_from(onset, -6.0))
    whole = floor_drifts(run(series))
    assert whole
    cut = next(i for i, (t, _) in enumerate(series) if t >= MONDAY + onset)
    bank = DetectorBank()
    for seq, (t, value) in enumerate(series[:cut], start=1):
        bank.observe(analog(seq, t - T0.timestamp(), value))
    saved = bank.state_of("d1")
    assert saved is not None
    restored = DetectorBank()
    assert restored.load_state("d1", saved.to_bytes())
    again: list[Anomaly] = []
    for seq, (t, value) in enumerate(series[cut:], start=cut + 1):
        restored.observe_into(analog(seq, t - T0.timestamp(), value), again)
    assert [(a.seq, a.anomaly_type) for a in floor_drifts(again)] == [
        (a.seq, a.anomaly_type) for a in whole
    ]
