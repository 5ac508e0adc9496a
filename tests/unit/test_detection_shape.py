"""Issue 9, slow cadences: the shape tests that judge a reading when the next ones
arrive (an isolated outlier is a SPIKE, a step that stays is a DRIFT with the profile
re-based), on synthetic signals with a fake clock (event time only).

The signals follow a first-order thermal lag (tau 10-40 min, the plant model's and a
machine body's), because that is what the shape test's physics rests on: a body's
temperature cannot jump and come back within one interval, nor jump and then stay
flat; a sensor can.
"""

from __future__ import annotations

import math
import random

import msgspec

from processor.contract.record import SensorType
from processor.core.detection import STATE_VERSION, DetectorBank, DeviceState
from processor.core.model import Anomaly, AnomalyType
from tests.unit.test_detection import T0, analog

WEEK_S = 7 * 86_400.0
PERIOD_S = 300.0


def lagged_plant(
    hours: float,
    *,
    period_s: float = PERIOD_S,
    tau_s: float = 1200.0,
    noise: float = 0.3,
    seed: int = 11,
    extra: dict[int, float] | None = None,
    offset_from: int | None = None,
    offset: float = 0.0,
) -> list[tuple[int, float, float]]:
    """A machine that starts and stops every 2-3 h (40 C of heat through a lag of
    ``tau_s``), an ambient day swing and Gaussian noise, at ``period_s``; ``extra``
    adds to single readings (by seq), ``offset`` from ``offset_from`` on (a swap)."""
    rng = random.Random(seed)
    alpha = 1.0 - math.exp(-period_s / tau_s)
    heat = 40.0
    running = True
    switch_at = rng.uniform(1.5, 3.0) * 3600
    out = []
    for i in range(int(hours * 3600 / period_s)):
        t = i * period_s
        if t >= switch_at:
            running = not running
            switch_at = t + rng.uniform(0.3, 3.0) * 3600
        heat += ((40.0 if running else 4.0) - heat) * alpha
        ambient = 20.0 - 3.0 * math.cos(2 * math.pi * (t / 3600 - 3) / 24)
        value = ambient + heat + rng.gauss(0.0, noise)
        seq = i + 1
        value += (extra or {}).get(seq, 0.0)
        if offset_from is not None and seq >= offset_from:
            value += offset
        out.append((seq, t, round(value, 1)))
    return out


def run(series: list[tuple[int, float, float]], bank: DetectorBank | None = None) -> list[Anomaly]:
    bank = DetectorBank() if bank is None else bank
    out: list[Anomaly] = []
    for seq, t, value in series:
        bank.observe_into(analog(seq, t, value), out)
    return out


def test_machine_starts_and_stops_at_5_minutes_stay_quiet_for_two_weeks() -> None:
    for tau in (600.0, 1200.0, 2400.0):
        got = run(lagged_plant(14 * 24, tau_s=tau))
        assert got == [], (tau, got)


def test_an_isolated_outlier_at_5_minutes_is_a_spike_on_its_own_reading() -> None:
    """The issue's miss: a single 15 C outlier inside the operating range looks like a
    machine start to every per-reading detector; judged when the next reading is
    back, it is a spike, reported with the outlier's own identity (replay-safe)."""
    got = run(lagged_plant(3 * 24, extra={500: 15.0, 700: -14.0}))
    spikes = [a for a in got if a.anomaly_type is AnomalyType.SPIKE]
    assert [a.seq for a in spikes] == [500, 700], got
    assert spikes[0].ts == T0 + __import__("datetime").timedelta(seconds=499 * PERIOD_S)
    assert [a for a in got if a.anomaly_type is not AnomalyType.SPIKE] == []


def test_a_three_reading_outlier_is_one_spike() -> None:
    got = run(lagged_plant(3 * 24, extra={700: 20.0, 701: 20.0, 702: 20.0}))
    assert [(a.anomaly_type, a.seq) for a in got] == [(AnomalyType.SPIKE, 700)], got


def test_an_outlier_during_a_warm_up_is_not_judged() -> None:
    """The lag argument holds from a steady level only: an outlier on a machine
    warming up (seq 600 of this series) is left to the other detectors."""
    got = run(lagged_plant(3 * 24, extra={600: 20.0}))
    assert [a for a in got if a.anomaly_type is AnomalyType.SPIKE and a.seq != 600] == []


def test_a_sensor_swap_at_1_hz_is_one_drift_on_the_swap_reading() -> None:
    """A 3.5 C offset that stays: one DRIFT on the first reading of the new sensor,
    then (the baseline and the CUSUMs re-based) nothing more."""
    got = run(lagged_plant(6, period_s=1.0, offset_from=9000, offset=3.5))
    assert [(a.anomaly_type, a.seq) for a in got] == [(AnomalyType.DRIFT, 9000)], got
    assert "since seq 9000" in got[0].explanation


def test_a_step_that_stays_at_5_minutes_is_not_judged() -> None:
    """At a 5-minute cadence a machine that stops briefly at a shift's load change
    can land on its new equilibrium within one reading: a step that stays, from the
    process. The shape test does not judge steps there (docs/DETECTION.md)."""
    got = run(lagged_plant(9 * 24, offset_from=900, offset=3.5))
    # From day 7 the time-of-day ceiling may report the +3.5 C offset (a present
    # fault; test_detection_ceiling.py); what is asserted here is the shape test.
    steps = [
        a for a in got if a.anomaly_type is AnomalyType.DRIFT and "ceiling" not in a.explanation
    ]
    assert steps == [], got


def test_a_small_sensor_swap_at_1_hz_is_found() -> None:
    """At 1 Hz the step CUSUM finds steps of 5 scales or more only; the shape test
    finds a 3 C swap (noise 0.3 C) within seconds."""
    got = run(lagged_plant(2, period_s=1.0, offset_from=3000, offset=-3.0))
    drift = [a for a in got if a.anomaly_type is AnomalyType.DRIFT]
    assert [a.seq for a in drift] == [3000], got


def test_a_replay_from_the_saved_state_gives_the_same_anomaly() -> None:
    series = lagged_plant(3 * 24, extra={500: 15.0})
    bank = DetectorBank()
    run(series[:499], bank)
    saved = bank.dirty_states()["d1"]
    first = run(series[499:503], bank)
    again = DetectorBank()
    assert again.load_state("d1", saved)
    assert run(series[499:503], again) == first
    assert [a.seq for a in first] == [500]


class _V2State(msgspec.Struct, array_like=True):
    """Version 2's layout (the fields up to ``env_high``)."""

    version: int
    sensor_type: str
    last_seq: int = -1
    last_ts: float = 0.0
    last_seen: float = 0.0
    count: int = 0
    last_value: float = 0.0
    mean: float = 0.0


def test_a_version_2_state_loads_and_saves_as_the_current_version() -> None:
    old = msgspec.msgpack.encode(
        _V2State(2, "temperature", last_seq=9, last_ts=T0.timestamp(), count=10, mean=50.0)
    )
    bank = DetectorBank()
    assert bank.load_state("d1", old)
    state = bank.state_of("d1")
    assert state is not None and state.version == STATE_VERSION == 4
    assert state.mean == 50.0 and state.pending == []
    assert DeviceState.from_bytes(state.to_bytes()) == state
    assert SensorType.TEMPERATURE.value == state.sensor_type


# -- regime levels (pressure): the running plateau and the residual pressure -----------


def press_line(
    hours: float,
    *,
    period_s: float = PERIOD_S,
    seed: int = 12,
    gain: tuple[float, float, float] | None = None,
    offset_from_h: float | None = None,
    offset: float = 0.0,
) -> list[tuple[int, float, float]]:
    """A press line (set-point 120 bar, press cycles 0.80-1.05 x set-point over 60 s,
    2 bar residual when stopped), running 2-3 h, stopped 0.2-1 h; ``gain`` = (from h,
    to h, share lost), ``offset`` bar from ``offset_from_h`` on."""
    rng = random.Random(seed)
    running, switch_at = True, rng.uniform(2.0, 3.0) * 3600
    out = []
    for i in range(int(hours * 3600 / period_s)):
        t = i * period_s
        if t >= switch_at:
            running = not running
            switch_at = t + (rng.uniform(2.0, 3.0) if running else rng.uniform(0.2, 1.0)) * 3600
        if running:
            phase = (t % 60.0) / 60.0 if period_s < 60 else rng.random()
            factor = 0.80 + 0.25 * phase / 0.7 if phase < 0.7 else 1.05
            value = 120.0 * factor + rng.gauss(0.0, 1.2)
        else:
            value = 2.0 + rng.gauss(0.0, 0.05)
        if gain is not None and gain[0] * 3600 <= t < gain[1] * 3600:
            value *= 1.0 - gain[2]
        if offset_from_h is not None and t >= offset_from_h * 3600:
            value += offset
        out.append((i + 1, t, round(value, 2)))
    return out


def run_pressure(series: list[tuple[int, float, float]]) -> list[Anomaly]:
    bank = DetectorBank()
    out: list[Anomaly] = []
    for seq, t, value in series:
        bank.observe_into(analog(seq, t, value, sensor_type=SensorType.PRESSURE), out)
    return out


def test_a_press_line_at_5_minutes_stays_quiet_for_two_weeks() -> None:
    assert run_pressure(press_line(14 * 24)) == []


def test_a_transducer_losing_span_is_a_drift_of_the_running_level() -> None:
    """Issue 9's miss: reading 80 % under load stays inside the learned envelope."""
    got = run_pressure(press_line(4 * 24, gain=(60.0, 66.0, 0.2)))
    assert [a.anomaly_type for a in got] == [AnomalyType.DRIFT], got
    assert 60 * 3600 <= got[0].ts.timestamp() - T0.timestamp() <= 66 * 3600
    assert "running level" in got[0].explanation


def test_a_pressure_sensor_swap_is_one_drift_then_the_new_level_is_adopted() -> None:
    got = run_pressure(press_line(6 * 24, offset_from_h=50.0, offset=4.0))
    assert [a.anomaly_type for a in got] == [AnomalyType.DRIFT], got
    assert 50 * 3600 <= got[0].ts.timestamp() - T0.timestamp() <= 54 * 3600


def test_judging_steps_at_5_minutes_is_a_setting_for_back_tests() -> None:
    """``shape_step_max_interval_s`` (default: the fast cadence, 60 s) lets a
    back-test measure what judging 5-minute steps would find and cost: raised to
    the lag bound (416 s) a swap larger than the lag can move in one interval
    (25 C against 39 % of a 46 C span) is one DRIFT on its first reading."""
    import dataclasses

    from processor.core.detection import DetectorConfig

    config = dataclasses.replace(DetectorConfig(), shape_step_max_interval_s=416.0)
    got = run(lagged_plant(9 * 24, offset_from=900, offset=25.0), DetectorBank(config))
    steps = [
        a for a in got if a.anomaly_type is AnomalyType.DRIFT and "ceiling" not in a.explanation
    ]
    assert [(a.anomaly_type, a.seq) for a in steps] == [(AnomalyType.DRIFT, 900)], got


def steady_plant(
    days: float, *, extra: dict[int, float] | None = None
) -> list[tuple[int, float, float]]:
    """A machine that runs 6 h and stops 2 h, through a lag of 25 min, noise 0.4 C,
    at 5 minutes; ``extra`` adds to single readings (by seq)."""
    rng = random.Random(5)
    alpha = 1.0 - math.exp(-PERIOD_S / 1500.0)
    heat, out = 4.0, []
    for i in range(int(days * 288)):
        heat += ((40.0 if i % 96 < 72 else 4.0) - heat) * alpha
        value = 20.0 + heat + rng.gauss(0.0, 0.4) + (extra or {}).get(i + 1, 0.0)
        out.append((i + 1, i * PERIOD_S, round(value, 1)))
    return out


def test_a_one_reading_stop_during_a_warm_up_is_not_a_spike() -> None:
    """The false SPIKEs of the month profile (e.g. seed 2, fac01-l02-m01-temperature-0,
    2026-10-19 12:06): a machine still warming up after a stop (about 10 C below its
    running level) stops for one reading (-4 C) and is back at the next (+3.5 C).
    The lag allows both legs: in 5 minutes a body moves up to 39 % (tau 10 min) of
    its gap to where its heat input drives it, and the running level is 11 C above
    the dip. The warm-up's readings are the simulator's. Failed before the lag
    bound (a SPIKE on the dip: -5.2 C from the level, over the fixed 5 C)."""
    series = steady_plant(3)
    seq, t, _ = series[-1]
    warm_up = [43.9, 46.3, 50.3, 52.0, 55.2, 55.7, 53.7, 49.7, 53.2, 54.7, 56.6, 57.8]
    warm_up += [59.3, 60.7, 61.2, 62.6, 62.0, 62.4, 62.1]
    tail = [(seq + 1 + i, t + (i + 1) * PERIOD_S, v) for i, v in enumerate(warm_up)]
    got = run(series + tail)
    assert [a for a in got if a.anomaly_type is AnomalyType.SPIKE] == [], got


def test_an_outlier_the_lag_cannot_make_is_a_spike_at_any_level() -> None:
    """A 12 C dip at the running level and a 12 C rise at the stopped level (the
    simulator's smallest spikes): for each, coming back within one interval is more
    than a body can move towards the furthest level the device has shown."""
    running, stopped = 2 * 288 + 60, 2 * 288 + 92  # 5 h into a run, 1.7 h into a stop
    got = run(steady_plant(3, extra={running: -12.0, stopped: 12.0}))
    assert [(a.anomaly_type, a.seq) for a in got] == [
        (AnomalyType.SPIKE, running),
        (AnomalyType.SPIKE, stopped),
    ], got


def test_a_candidate_saved_by_the_code_before_the_lag_bound_is_still_judged() -> None:
    """A state saved mid-candidate by the previous code holds a 9-entry pending
    list (no envelope before the outlier): it loads, and the outlier is judged
    with the current envelope instead."""
    series = lagged_plant(3 * 24, extra={500: 15.0})
    bank = DetectorBank()
    run(series[:500], bank)
    state = bank.state_of("d1")
    assert state is not None and len(state.pending) == 11
    state.pending = state.pending[:9]
    old = DetectorBank()
    assert old.load_state("d1", state.to_bytes())
    assert [(a.anomaly_type, a.seq) for a in run(series[500:503], old)] == [
        (AnomalyType.SPIKE, 500)
    ]


def test_a_noisy_quantised_sensor_at_1_hz_gives_no_spike_for_a_noise_sized_dip() -> None:
    """At 1 Hz the lag moves 0.17 % of a gap per interval, so the noise term alone
    decides: a leg is a change between readings, and its noise is the one-step
    change's sigma. A guard, not a reproduction: it passes with the previous noise
    term too (the day profile's false 1.6 C SPIKE, 201 devices x 6 h, seed 1, was
    not reproduced on synthetic noise; docs/DETECTION.md)."""
    rng = random.Random(9)
    series = [(i + 1, float(i), round(40.0 + rng.gauss(0.0, 0.4), 1)) for i in range(20_000)]
    seq, t, _ = series[15_000]
    series[15_000] = (seq, t, round(series[14_999][2] - 1.6, 1))
    got = run(series)
    assert [a for a in got if a.anomaly_type is AnomalyType.SPIKE] == [], got
