"""The detectors: each fires on a crafted series, stays quiet on realistic noise,
and behaves identically after a state round-trip through bytes."""

from __future__ import annotations

import dataclasses
import math
import random
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.contract.record import EquipmentStatus, Reading, SensorType
from processor.core.detection import (
    STATE_VERSION,
    AnalogLimits,
    DetectorBank,
    DetectorConfig,
    DeviceState,
    load_states,
)
from processor.core.model import Anomaly, AnomalyType, Severity

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
UNIT = {SensorType.TEMPERATURE: "C", SensorType.PRESSURE: "bar"}


def analog(
    seq: int,
    seconds: float,
    value: float,
    device: str = "d1",
    sensor_type: SensorType = SensorType.TEMPERATURE,
) -> Reading:
    return Reading(
        device_id=device,
        facility="fac01",
        line="l01",
        sensor_type=sensor_type,
        unit=UNIT[sensor_type],
        ts=T0 + timedelta(seconds=seconds),
        seq=seq,
        schema_version=1,
        value=value,
    )


def status(seq: int, seconds: float, state: EquipmentStatus, device: str = "s1") -> Reading:
    return Reading(
        device_id=device,
        facility="fac01",
        line="l01",
        sensor_type=SensorType.EQUIPMENT_STATUS,
        unit="state",
        ts=T0 + timedelta(seconds=seconds),
        seq=seq,
        schema_version=1,
        status=state,
    )


def feed(bank: DetectorBank, readings: Iterable[Reading]) -> list[Anomaly]:
    out: list[Anomaly] = []
    for reading in readings:
        out.extend(bank.observe(reading))
    return out


def noisy(
    n: int,
    mean: float = 70.0,
    sd: float = 0.3,
    start: int = 1,
    period: float = 1.0,
    seed: int = 1,
    device: str = "d1",
) -> list[Reading]:
    rng = random.Random(seed)
    return [
        analog(start + i, (start + i) * period, mean + rng.gauss(0.0, sd), device) for i in range(n)
    ]


def kinds(anomalies: Iterable[Anomaly]) -> list[tuple[AnomalyType, Severity]]:
    return [(a.anomaly_type, a.severity) for a in anomalies]


# -- static limits ----------------------------------------------------------------------


def test_limit_fires_on_rise_and_escalation_once_per_episode() -> None:
    bank = DetectorBank()
    series = [
        (70.0, []),
        (135.0, [Severity.WARNING]),
        (136.0, []),
        (155.0, [Severity.CRITICAL]),
        (156.0, []),
        (70.0, []),
        (70.0, []),  # two readings over >= 5 minutes back inside end the episode
        (135.0, [Severity.WARNING]),
    ]
    for i, (value, expected) in enumerate(series, start=1):
        # 10 minutes apart: no spike, and the limit detector alone speaks
        got = [
            a
            for a in bank.observe(analog(i, i * 600, value))
            if a.anomaly_type is AnomalyType.LIMIT
        ]
        assert [a.severity for a in got] == expected, (i, value, got)
    first = feed(DetectorBank(), [analog(1, 0, 135.0)])[0]
    assert first.explanation == "temperature 135 C is above the warning limit 130 C"
    assert first.score == pytest.approx(5.0)
    assert (first.device_id, first.seq, first.ts) == ("d1", 1, T0)


def test_limit_rearms_only_outside_the_hysteresis_band() -> None:
    bank = DetectorBank()
    # hysteresis 1.0 C under 130; two readings 10 minutes apart inside the band re-arm
    values = [131.0, 129.5, 131.0, 128.0, 131.0, 128.0, 128.0, 131.0]
    fired = [
        bool(
            [a for a in bank.observe(analog(i, i * 600, v)) if a.anomaly_type is AnomalyType.LIMIT]
        )
        for i, v in enumerate(values, start=1)
    ]
    assert fired == [True, False, False, False, False, False, False, True]


def test_low_limits_fire_below() -> None:
    cfg = DetectorConfig(pressure=AnalogLimits(warning_low=3.0, critical_low=1.0, hysteresis=0.2))
    bank = DetectorBank(cfg)
    got = feed(
        bank,
        [
            analog(1, 0, 5.0, sensor_type=SensorType.PRESSURE),
            analog(2, 600, 0.5, sensor_type=SensorType.PRESSURE),
        ],
    )
    limit = [a for a in got if a.anomaly_type is AnomalyType.LIMIT]
    assert kinds(limit) == [(AnomalyType.LIMIT, Severity.CRITICAL)]
    assert "below the critical limit 1 bar" in limit[0].explanation


# -- statistical ----------------------------------------------------------------------


def test_statistical_quiet_on_noise_then_fires_with_explanation() -> None:
    bank = DetectorBank()
    assert feed(bank, noisy(2000, sd=0.5, period=60.0)) == []
    got = bank.observe(analog(2001, 2001 * 60, 80.0))
    assert kinds(got) == [(AnomalyType.STATISTICAL, Severity.CRITICAL)]
    (a,) = got
    assert a.score == pytest.approx(10.0, rel=0.1)  # 10 C over the 1 C scale floor
    assert re.fullmatch(
        r"temperature 80 C is \d+\.\d robust z above the device baseline (69\.[89]|70\.[012]) C"
        r" \(scale 1 C\)",
        a.explanation,
    ), a.explanation


def test_statistical_warning_band_and_below() -> None:
    bank = DetectorBank()
    feed(bank, noisy(500, sd=1.5, period=60.0))
    state = bank.state_of("d1")
    assert state is not None
    expected, scale = state.mean + state.trend, math.sqrt(state.var)
    assert scale > 1.0  # above the floor: the device's own noise sets the scale
    got = bank.observe(analog(501, 501 * 60, expected - 6.0 * scale))
    assert kinds(got) == [(AnomalyType.STATISTICAL, Severity.WARNING)]
    assert "below the device baseline" in got[0].explanation


def test_statistical_waits_for_warm_up() -> None:
    cfg = DetectorConfig(warmup=30)
    # Readings a minute apart so that the jump is no spike.
    base = noisy(20, period=60.0, sd=0.3)
    bank = DetectorBank(cfg)
    feed(bank, base)
    assert bank.observe(analog(21, 21 * 60, 90.0)) == []  # 21st reading: still warming up
    bank = DetectorBank(cfg)
    feed(bank, noisy(30, period=60.0, sd=0.3))
    assert kinds(bank.observe(analog(31, 31 * 60, 90.0))) == [
        (AnomalyType.STATISTICAL, Severity.CRITICAL)
    ]


def test_one_outlier_barely_moves_the_baseline_but_a_level_shift_is_learned() -> None:
    bank = DetectorBank()
    feed(bank, noisy(500, sd=0.3))
    before = bank.state_of("d1").mean  # type: ignore[union-attr]
    bank.observe(analog(501, 501 * 60, 120.0))
    after = bank.state_of("d1").mean  # type: ignore[union-attr]
    assert abs(after - before) < 0.1  # Huber clipping: at most alpha * 3 scales
    # After the outlier, normal readings give no new anomaly.
    assert feed(bank, noisy(100, start=502, period=60.0, seed=3)) == []
    # A lasting shift of +5 C fires once (the jump), is reported once as a step
    # that stays (the shape test, on the same reading), then becomes the baseline.
    shifted = noisy(1500, mean=75.0, start=602, period=60.0, seed=4)
    got = feed(bank, shifted)
    assert [(a.anomaly_type, a.seq) for a in got] == [
        (AnomalyType.STATISTICAL, 602),
        (AnomalyType.DRIFT, 602),
    ]
    assert bank.state_of("d1").mean == pytest.approx(75.0, abs=0.3)  # type: ignore[union-attr]


def test_statistical_can_be_disabled_per_type() -> None:
    cfg = DetectorConfig(
        temperature=dataclasses.replace(DetectorConfig().temperature, statistical=False)
    )
    bank = DetectorBank(cfg)
    feed(bank, noisy(200, period=60.0))
    assert bank.observe(analog(201, 201 * 60, 100.0)) == []


# -- spike ----------------------------------------------------------------------------


def test_spike_fires_on_fast_large_change_only() -> None:
    bank = DetectorBank()
    assert feed(bank, [analog(1, 0.0, 70.0), analog(2, 1.0, 70.2)]) == []
    got = [a for a in bank.observe(analog(3, 2.0, 95.0)) if a.anomaly_type is AnomalyType.SPIKE]
    assert kinds(got) == [(AnomalyType.SPIKE, Severity.CRITICAL)]
    assert got[0].score == pytest.approx(24.8)
    assert got[0].explanation.startswith("temperature rose 24.8 C in 1 s (24.8 C/s")
    # the same rise over 10 s is 2.5 C/s: no spike
    bank = DetectorBank()
    assert feed(bank, [analog(1, 0.0, 70.0), analog(2, 10.0, 95.0)]) == []
    # fast but small (noise sampled at 10 Hz): no spike
    bank = DetectorBank()
    assert feed(bank, [analog(1, 0.0, 70.0), analog(2, 0.1, 73.0)]) == []
    # a fall at 6 C/s is a warning
    bank = DetectorBank()
    got = feed(bank, [analog(1, 0.0, 70.0), analog(2, 1.0, 64.0)])
    assert kinds(got) == [(AnomalyType.SPIKE, Severity.WARNING)]
    assert "fell 6.0 C" in got[0].explanation


def test_spike_ignores_non_positive_event_time_delta() -> None:
    bank = DetectorBank()
    assert feed(bank, [analog(1, 5.0, 70.0), analog(2, 5.0, 100.0), analog(3, 4.0, 70.0)]) == []


# -- stuck ----------------------------------------------------------------------------


def test_stuck_fires_once_per_run_after_count_and_duration() -> None:
    bank = DetectorBank()
    feed(bank, noisy(50))
    flat = [analog(100 + i, 100 + i, 71.25) for i in range(120)]
    got = feed(bank, flat)
    assert kinds(got) == [(AnomalyType.STUCK, Severity.WARNING)]
    (a,) = got
    assert a.seq == 160  # the 61st reading: 30 readings and 60 s both reached
    assert a.explanation == "temperature stuck at 71.25 C for 61 readings over 60 s"
    # moving again re-arms; a second flat run fires again
    feed(bank, noisy(5, start=300, seed=9))
    again = feed(bank, [analog(400 + i, 400 + i, 72.5) for i in range(70)])
    assert [x.anomaly_type for x in again] == [AnomalyType.STUCK]


def test_stuck_needs_both_count_and_duration() -> None:
    bank = DetectorBank()
    # 100 identical readings within 10 s (10 Hz): count reached, duration not
    assert feed(bank, [analog(i, i * 0.1, 50.0) for i in range(1, 101)]) == []
    bank = DetectorBank()
    # 10 identical readings over 10 minutes: duration reached, count not
    assert feed(bank, [analog(i, i * 60.0, 50.0) for i in range(1, 11)]) == []


def test_stuck_sensor_does_not_shrink_the_baseline() -> None:
    bank = DetectorBank()
    feed(bank, noisy(200, sd=0.5))
    var_before = bank.state_of("d1").var  # type: ignore[union-attr]
    feed(bank, [analog(300 + i, 300 + i, 70.0) for i in range(500)])
    assert bank.state_of("d1").var > 0.5 * var_before  # type: ignore[union-attr]


# -- equipment status -----------------------------------------------------------------


def test_fault_fires_on_entering_fault() -> None:
    bank = DetectorBank()
    seq = [
        EquipmentStatus.RUNNING,
        EquipmentStatus.RUNNING,
        EquipmentStatus.FAULT,
        EquipmentStatus.FAULT,
        EquipmentStatus.IDLE,
        EquipmentStatus.FAULT,
    ]
    results = [bank.observe(status(i, i * 600, s)) for i, s in enumerate(seq, start=1)]
    assert [len(r) for r in results] == [0, 0, 1, 0, 0, 1]
    first = results[2][0]
    assert (first.anomaly_type, first.severity, first.seq) == (
        AnomalyType.FAULT,
        Severity.CRITICAL,
        3,
    )
    assert first.explanation == "equipment entered FAULT (was RUNNING)"
    assert first.sensor_type == "equipment_status" and first.value is None
    assert "(was IDLE)" in results[5][0].explanation
    # a device whose first reading is FAULT
    assert kinds(DetectorBank().observe(status(1, 0, EquipmentStatus.FAULT))) == [
        (AnomalyType.FAULT, Severity.CRITICAL)
    ]


def test_flapping_fires_once_per_window() -> None:
    bank = DetectorBank()
    cycle = [EquipmentStatus.RUNNING, EquipmentStatus.IDLE] * 10
    got = feed(bank, [status(i, i * 10.0, s) for i, s in enumerate(cycle, start=1)])
    assert [a.anomaly_type for a in got] == [AnomalyType.FLAPPING]
    assert got[0].seq == 7  # the sixth change
    # the same number of changes spread over an hour is not flapping
    bank = DetectorBank()
    assert feed(bank, [status(i, i * 600.0, s) for i, s in enumerate(cycle, start=1)]) == []


# -- duplicates, order, determinism, state ---------------------------------------------


def test_duplicates_and_out_of_order_readings_are_ignored() -> None:
    bank = DetectorBank()
    feed(bank, noisy(100))
    snapshot = bank.state_of("d1").to_bytes()  # type: ignore[union-attr]
    # seq 100 again (a replay) and seq 50 (late) with values that would fire everything
    assert bank.observe(analog(100, 100, 500.0)) == []
    assert bank.observe(analog(50, 101, 500.0)) == []
    assert bank.state_of("d1").to_bytes() == snapshot  # type: ignore[union-attr]
    assert bank.ignored == 2
    # the next new reading is judged against the untouched state
    assert kinds(bank.observe(analog(101, 101, 135.0)))[0] == (AnomalyType.LIMIT, Severity.WARNING)


def scenario() -> list[Reading]:
    """Every detector fires at least once on this series."""
    rs = noisy(300, sd=0.4)
    rs += [analog(301, 301, 140.0), analog(302, 302, 70.0)]  # limit, statistical, spike
    rs += [analog(303 + i, 303 + i, 70.5) for i in range(80)]  # stuck
    rs += noisy(200, start=400, seed=5)
    return rs


def test_state_round_trip_gives_the_same_future_decisions() -> None:
    rs = scenario()
    whole = DetectorBank()
    expected = feed(whole, rs)
    assert {a.anomaly_type for a in expected} >= {
        AnomalyType.LIMIT,
        AnomalyType.STATISTICAL,
        AnomalyType.SPIKE,
        AnomalyType.STUCK,
    }
    for cut in (10, 150, 301, 330, 420):
        first = DetectorBank()
        got = feed(first, rs[:cut])
        second = DetectorBank()
        assert second.load_state("d1", first.state_of("d1").to_bytes())  # type: ignore[union-attr]
        got += feed(second, rs[cut:])
        assert got == expected, cut
        assert second.state_of("d1") == whole.state_of("d1")


def test_replay_yields_the_same_anomaly_identities() -> None:
    rs = scenario()
    a = feed(DetectorBank(), rs)
    b = feed(DetectorBank(), rs)
    assert [(x.device_id, x.seq, x.anomaly_type) for x in a] == [
        (x.device_id, x.seq, x.anomaly_type) for x in b
    ]
    assert len({(x.device_id, x.seq, x.anomaly_type) for x in a}) == len(a)


def test_state_is_small_and_rejects_garbage() -> None:
    bank = DetectorBank()
    feed(bank, scenario())
    feed(bank, [status(i, i, EquipmentStatus.RUNNING) for i in range(1, 5)])
    for device in bank.devices():
        data = bank.state_of(device).to_bytes()  # type: ignore[union-attr]
        # About 1.5 KB once the time-of-week profile (84 floats) and the
        # time-of-day ceiling (52 floats, state version 4) exist; about 2 KB
        # with the time-of-day floor (51 more in the ceiling's list, session 6).
        assert len(data) < 2100
        assert DeviceState.from_bytes(data) == bank.state_of(device)
    for garbage in (b"", b"\x00\x01", b"not msgpack at all", b"\x93\x01\x02\x03"):
        with pytest.raises(ValueError):
            DeviceState.from_bytes(garbage)
        assert bank.load_state("x", garbage) is False
        assert bank.state_of("x") is None
    old = DeviceState(STATE_VERSION + 1, "temperature").to_bytes()
    with pytest.raises(ValueError, match="version"):
        DeviceState.from_bytes(old)


def test_dirty_tracking_missing_and_forget() -> None:
    bank = DetectorBank()
    bank.observe(analog(1, 0, 70.0, device="a"), shard_id="shard-1")
    bank.observe(analog(1, 0, 70.0, device="b"), shard_id="shard-2")
    assert bank.dirty_devices() == ["a", "b"]
    assert set(bank.dirty_states()) == {"a", "b"}
    bank.clear_dirty(["a"])
    assert bank.dirty_devices() == ["b"]
    bank.clear_dirty()
    assert bank.dirty_devices() == []
    assert bank.missing(["a", "c", "c", "b"]) == ["c"]
    assert bank.forget_shard("shard-1") == ["a"]
    assert bank.devices() == ["b"]
    bank.observe(analog(1, 0, 70.0, device="a"))
    assert load_states(bank, {"a": b"junk", "z": None, "c": bank.state_of("b").to_bytes()}) == ["a"]  # type: ignore[union-attr]
    assert sorted(bank.devices()) == ["a", "b", "c"]


def test_a_device_changing_sensor_type_starts_afresh() -> None:
    bank = DetectorBank()
    feed(bank, noisy(100))
    bank.observe(analog(101, 101, 5.0, sensor_type=SensorType.PRESSURE))
    state = bank.state_of("d1")
    assert state is not None and state.sensor_type == "pressure" and state.count == 1


def test_clean_realistic_signals_stay_quiet() -> None:
    """A day of a machine at one reading per 10 s: daily swing, a slow warm-up after
    a start (first-order lag), pressure cycles, sensor noise. No anomaly of any kind."""
    rng = random.Random(42)
    bank = DetectorBank()
    got: list[Anomaly] = []
    heat = 0.0
    for i in range(1, 8640):
        t = i * 10.0
        running = 6 * 3600 <= t < 22 * 3600
        heat += ((40.0 if running else 4.0) - heat) * (1 - math.exp(-10.0 / 1200.0))
        ambient = 20.0 - 3.0 * math.cos(2 * math.pi * (t / 86400 - 3 / 24))
        temp = ambient + heat + rng.gauss(0.0, 0.3)
        got += bank.observe(analog(i, t, round(temp, 2), device="t"))
        cycle = (t % 40.0) / 40.0
        press = (100.0 * (0.8 + 0.25 * min(cycle / 0.7, 1.0)) if running else 2.0) + rng.gauss(
            0.0, 1.0 if running else 0.05
        )
        got += bank.observe(analog(i, t, press, device="p", sensor_type=SensorType.PRESSURE))
    assert [a for a in got if a.device_id == "t"] == []
    # the pressure device may flag its start and stop (a level change of 100 bar in
    # one reading is what the statistical detector is for) and nothing else
    assert all(a.anomaly_type is AnomalyType.STATISTICAL for a in got), got
    assert len(got) <= 4


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=-3, max_value=40),  # seq step: repeats and going back too
            st.integers(min_value=-5_000_000, max_value=120_000_000),  # event-time step, µs
            st.floats(min_value=-1.0, max_value=400.0),
        ),
        max_size=200,
    )
)
def test_any_sequence_is_handled_and_the_state_stays_small(
    steps: list[tuple[int, int, float]],
) -> None:
    bank = DetectorBank()
    seq, micros, highest = 0, 0, -1
    for seq_step, time_step, value in steps:
        seq, micros = max(0, seq + seq_step), micros + time_step
        reading = analog(seq, micros / 1e6, value, sensor_type=SensorType.PRESSURE)
        for anomaly in bank.observe(reading):
            assert math.isfinite(anomaly.score) and anomaly.score >= 0
            assert anomaly.seq == seq and anomaly.explanation
        state = bank.state_of("d1")
        assert state is not None and len(state.to_bytes()) < 1024
        highest = max(highest, seq)
        assert state.last_seq == highest  # late and repeated readings changed nothing


def booted(reading: Reading, boot: int) -> Reading:
    return msgspec.structs.replace(reading, schema_version=2, boot=boot)


def test_a_restarted_sequence_with_a_new_boot_is_observed() -> None:
    """Issue 10 item 4: after a reboot (boot counter up, schema version 2) seq starts
    again; the detectors judge those readings instead of ignoring them as replays,
    and a late reading of the earlier boot is still ignored."""
    bank = DetectorBank()
    feed(bank, noisy(100))
    assert feed(bank, [booted(analog(i, 200 + i, 70.0), 1) for i in range(3)]) == []
    fired = bank.observe(booted(analog(3, 203, 135.0), 1))
    assert (AnomalyType.LIMIT, Severity.WARNING) in kinds(fired)
    state = bank.state_of("d1")
    assert state is not None and (state.last_boot, state.last_seq) == (1, 3)
    ignored = bank.ignored
    assert bank.observe(booted(analog(150, 150, 135.0), 0)) == []
    assert bank.ignored == ignored + 1


def test_a_v1_sequence_restarted_on_a_later_day_is_observed() -> None:
    """Issue 10 item 4 without a boot counter: a version 1 device restarts its seq on
    a later event day. The store keeps those readings (their key's day is new), so
    the detectors must judge them; before, they were ignored until seq passed the old
    value. A re-send (its original time) and a same-day restart (a seq_conflict dead
    letter in the store) are still ignored."""
    bank = DetectorBank()
    feed(bank, noisy(100))  # seq 1..100 on T0's day
    ignored = bank.ignored
    assert bank.observe(analog(50, 50, 135.0)) == []  # a re-send
    assert bank.observe(analog(1, 3600, 135.0)) == []  # restarted the same day
    assert bank.ignored == ignored + 2
    next_day = 86_400 + 600
    assert feed(bank, [analog(i, next_day + i, 70.0) for i in range(3)]) == []
    fired = bank.observe(analog(3, next_day + 3, 135.0))
    assert (AnomalyType.LIMIT, Severity.WARNING) in kinds(fired)
    assert next((a.boot, a.seq, a.event_day) for a in fired) == (
        0,
        3,
        (T0 + timedelta(seconds=next_day)).date(),
    )
    state = bank.state_of("d1")
    assert state is not None and state.last_seq == 3
