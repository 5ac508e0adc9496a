"""Clean signals stay within the bounds documented in simulator/signals.py."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime

import msgspec
import pytest

from processor.contract.record import PHYSICAL_RANGE, SensorType
from processor.core import detection
from simulator.anomalies import DETECTOR_LIMITS
from simulator.fleet import Fleet
from simulator.signals import MachineTimeline, shift_load

MONDAY = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
WEEK_MS = 7 * 86_400_000


@pytest.fixture(scope="module")
def week() -> tuple[dict[tuple[str, str], list[float]], Counter[str]]:
    fleet = Fleet(180, 7, rate=1 / 300, start=MONDAY)
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    statuses: Counter[str] = Counter()
    for record in fleet.tick(fleet.start_ms + WEEK_MS - 1):
        reading = msgspec.json.decode(record.data)
        if reading["sensor_type"] == "equipment_status":
            statuses[reading["status"]] += 1
        else:
            values[(reading["sensor_type"], reading["device_id"])].append(reading["value"])
    return values, statuses


def _per_device(values: dict[tuple[str, str], list[float]], sensor_type: str) -> list[list[float]]:
    series = [v for (kind, _), v in values.items() if kind == sensor_type]
    assert len(series) == 60
    return series


def test_temperature_within_documented_bounds(week) -> None:  # type: ignore[no-untyped-def]
    for series in _per_device(week[0], "temperature"):
        assert 25.0 <= statistics.fmean(series) <= 60.0
        assert 6.0 <= statistics.pstdev(series) <= 25.0
        assert min(series) >= 5.0 and max(series) <= 90.0


def test_pressure_within_documented_bounds(week) -> None:  # type: ignore[no-untyped-def]
    for series in _per_device(week[0], "pressure"):
        assert 15.0 <= statistics.fmean(series) <= 130.0
        assert 10.0 <= statistics.pstdev(series) <= 100.0
        assert min(series) >= 1.0 and max(series) <= 200.0


def test_status_shares_within_documented_bounds(week) -> None:  # type: ignore[no-untyped-def]
    statuses = week[1]
    total = sum(statuses.values())
    assert 0.45 <= statuses["RUNNING"] / total <= 0.75
    assert 0.20 <= statuses["IDLE"] / total <= 0.50
    assert 0.001 <= statuses["MAINTENANCE"] / total <= 0.05
    assert statuses["FAULT"] == 0


def test_clean_values_sit_inside_the_detector_warning_limits(week) -> None:  # type: ignore[no-untyped-def]
    temperature = detection.DEFAULT_TEMPERATURE
    pressure = detection.DEFAULT_PRESSURE
    for (kind, _), series in week[0].items():
        if kind == "temperature":
            assert temperature.warning_high is not None
            assert max(series) < temperature.warning_high
        else:
            assert pressure.warning_high is not None
            assert max(series) < pressure.warning_high
            if pressure.warning_low is not None:
                assert pressure.warning_low < min(series)


def test_assumed_detector_limits_match_the_processor_defaults() -> None:
    """The simulator may not import the processor's detectors; this keeps its copy honest."""
    temperature = DETECTOR_LIMITS[SensorType.TEMPERATURE]
    pressure = DETECTOR_LIMITS[SensorType.PRESSURE]
    assert temperature.critical_high == detection.DEFAULT_TEMPERATURE.critical_high
    assert temperature.critical_low == detection.DEFAULT_TEMPERATURE.critical_low
    assert pressure.critical_high == detection.DEFAULT_PRESSURE.critical_high
    assert pressure.critical_low == detection.DEFAULT_PRESSURE.critical_low
    for sensor_type, limits in DETECTOR_LIMITS.items():
        low, high = PHYSICAL_RANGE[sensor_type]
        assert low < (limits.critical_low or low + 1) and limits.critical_high < high


def test_shift_schedule() -> None:
    hour = 3_600_000
    monday = int(MONDAY.timestamp() * 1000)
    assert shift_load(monday + 3 * hour)[0] == 0.0  # Sunday night: no shift
    assert shift_load(monday + 7 * hour) == (1.0, monday + 8 * hour)
    assert shift_load(monday + 15 * hour)[0] == 0.85
    assert shift_load(monday + 23 * hour)[0] == 0.55
    saturday = monday + 5 * 24 * hour
    assert shift_load(saturday + 3 * hour)[0] == 0.55  # Friday's night shift
    assert shift_load(saturday + 7 * hour)[0] == 0.0


def test_machine_idles_through_the_weekend() -> None:
    monday = int(MONDAY.timestamp() * 1000)
    timeline = MachineTimeline(7, 0, monday)
    saturday_noon = monday + (5 * 24 + 12) * 3_600_000
    for minute in range(0, 24 * 60, 10):
        assert timeline.state_at(saturday_noon + minute * 60_000).value == "IDLE"
