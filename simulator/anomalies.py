"""Injected anomaly scenarios and their ground-truth labels.

``--anomaly-rate p`` is the probability, for each reading of a device that is not
already in a scenario, that a scenario starts on that device with this reading.
The scenario is drawn uniformly from those that apply to the sensor type. Its
randomness comes from the device's own event dice, not from the noise generator,
so the clean signal underneath is the same with or without anomalies: outside
the labelled ranges an anomalous fleet is byte-for-byte the clean fleet.

Scenarios (``seq`` ranges are inclusive and refer to the device's own counter):

``spike``         1-3 readings offset by 12-30 °C (either sign) or a pressure surge
                  of +120..+200 bar (the detector ignores jumps under 100 bar,
                  which a machine start makes).
``drift``         a ramp away from the true value: +10..+25 °C, or a pressure
                  transducer losing 30-60 % of its span (gain drift), over
                  5-15 minutes (at least 60 readings), then an abrupt
                  recalibration back.
``stuck``         the reading repeats its first value exactly for 90-600 s (at
                  least 40 readings: the detector needs 30 over 60 s).
``out_of_range``  1-5 readings beyond the detector's *critical static limits* but
                  inside the contract's PHYSICAL_RANGE: 160-590 °C; 260-390 bar.
                  A value beyond PHYSICAL_RANGE would be
                  dead-lettered by the processor, never detected, so that case is a
                  poison kind instead (:mod:`simulator.poison`).
``fault``         equipment status FAULT for an exponential dwell (mean 20 min),
                  then MAINTENANCE for the repair (mean 45 min, not labelled).
``silent``        the device sends nothing for 120-600 s. Its ``seq`` keeps counting
                  (the sensor sampled, the uplink was down), so the labelled range
                  is exactly the gap in ``seq`` that reaches the processor.
``burst``         one reading is followed, within the same reporting period, by
                  10-50 extra readings (their own ``seq``) with erratic values
                  (±10 °C, ±150 bar around the true value, kept inside the
                  physical range): a chattering sensor.
                  The label covers the extra readings only.

Detector limits. :data:`DETECTOR_LIMITS` mirrors the processor's default static
limits (``processor/core/detection.py``: temperature critical above 150 °C,
pressure critical above 250 bar, no low limits). The simulator may not import the
processor's internals, so a unit test compares the two.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Final

import msgspec

from processor.contract.record import PHYSICAL_RANGE, EquipmentStatus, SensorType
from simulator.dice import Dice


class Scenario(enum.StrEnum):
    SPIKE = "spike"
    DRIFT = "drift"
    STUCK = "stuck"
    OUT_OF_RANGE = "out_of_range"
    FAULT = "fault"
    SILENT = "silent"
    BURST = "burst"


ANALOG_SCENARIOS: Final[tuple[Scenario, ...]] = (
    Scenario.SPIKE,
    Scenario.DRIFT,
    Scenario.STUCK,
    Scenario.OUT_OF_RANGE,
    Scenario.SILENT,
    Scenario.BURST,
)
STATUS_SCENARIOS: Final[tuple[Scenario, ...]] = (Scenario.FAULT, Scenario.SILENT)


def scenarios_for(sensor_type: SensorType) -> tuple[Scenario, ...]:
    if sensor_type is SensorType.EQUIPMENT_STATUS:
        return STATUS_SCENARIOS
    return ANALOG_SCENARIOS


@dataclass(frozen=True, slots=True)
class DetectorLimits:
    """The processor detector's default critical limits, as the simulator assumes them."""

    critical_low: float | None
    critical_high: float


DETECTOR_LIMITS: Final[dict[SensorType, DetectorLimits]] = {
    SensorType.TEMPERATURE: DetectorLimits(critical_low=None, critical_high=150.0),
    SensorType.PRESSURE: DetectorLimits(critical_low=None, critical_high=250.0),
}

FAULT_MEAN_S: Final = 20 * 60.0
REPAIR_MEAN_S: Final = 45 * 60.0


class AnomalyLabel(msgspec.Struct, tag_field="label", tag="anomaly"):
    """Ground truth for one injected scenario (one JSON line of the labels file)."""

    device_id: str
    sensor_type: str
    anomaly: str
    start_seq: int
    end_seq: int
    start_ts: str
    end_ts: str


class ActiveScenario:
    """A scenario in progress on one device.

    ``length`` is the number of labelled readings (for ``burst``: extra readings).
    The device calls :meth:`analog_value` / :meth:`status_value` once per reading
    and closes the label when ``remaining`` reaches zero.
    """

    __slots__ = (
        "end_seq",
        "end_ts_ms",
        "extra_readings",
        "frozen",
        "magnitude",
        "position",
        "remaining",
        "repair_readings",
        "scenario",
        "start_seq",
        "start_ts_ms",
    )

    def __init__(self, scenario: Scenario, length: int, magnitude: float) -> None:
        self.scenario = scenario
        self.remaining = length
        self.position = 0
        self.magnitude = magnitude
        self.frozen: float | None = None
        self.extra_readings = 0
        self.repair_readings = 0
        self.start_seq = -1
        self.end_seq = -1
        self.start_ts_ms = 0
        self.end_ts_ms = 0

    def analog_value(self, clean: float, sensor_type: SensorType, dice: Dice) -> float:
        """The reported value for a reading inside the scenario (not SILENT/BURST)."""
        scenario = self.scenario
        if scenario is Scenario.SPIKE:
            value = clean + self.magnitude
        elif scenario is Scenario.DRIFT:
            # magnitude is the drift reached on the last reading of the ramp: an
            # offset in °C for temperature, a loss of gain (a fraction) for pressure,
            # whose transducers drift in span, and which must not go negative.
            progress = (self.position + 1) / (self.position + self.remaining)
            if sensor_type is SensorType.TEMPERATURE:
                value = clean + self.magnitude * progress
            else:
                value = clean * (1.0 + self.magnitude * progress)
        elif scenario is Scenario.STUCK:
            if self.frozen is None:
                self.frozen = clean
            value = self.frozen
        elif scenario is Scenario.OUT_OF_RANGE:
            value = out_of_range_value(sensor_type, dice)
        else:  # pragma: no cover - SILENT and BURST are handled by the device
            value = clean
        return within_physical_range(value, sensor_type)


def within_physical_range(value: float, sensor_type: SensorType) -> float:
    """Anomalies stay inside PHYSICAL_RANGE: beyond it the processor dead-letters
    the record instead of detecting anything (that case is poison)."""
    low, high = PHYSICAL_RANGE[sensor_type]
    return min(max(value, low), high)


def out_of_range_value(sensor_type: SensorType, dice: Dice) -> float:
    """A value beyond the detector's critical limits, inside PHYSICAL_RANGE."""
    limits = DETECTOR_LIMITS[sensor_type]
    _, physical_high = PHYSICAL_RANGE[sensor_type]
    # At least 10 units beyond the critical limit, at least 10 inside the physical one.
    return dice.uniform(limits.critical_high + 10.0, physical_high - 10.0)


def start_scenario(
    scenario: Scenario, sensor_type: SensorType, rate_hz: float, dice: Dice
) -> ActiveScenario:
    """Draw the parameters of a new scenario (length in readings at ``rate_hz``)."""
    temperature = sensor_type is SensorType.TEMPERATURE
    sign = 1.0 if dice.random() < 0.5 else -1.0

    def readings(seconds: float, minimum: int) -> int:
        return max(minimum, math.ceil(seconds * rate_hz))

    if scenario is Scenario.SPIKE:
        magnitude = sign * dice.uniform(12.0, 30.0) if temperature else dice.uniform(120.0, 200.0)
        return ActiveScenario(scenario, dice.randint(1, 3), magnitude)
    if scenario is Scenario.DRIFT:
        magnitude = dice.uniform(10.0, 25.0) if temperature else -dice.uniform(0.3, 0.6)
        return ActiveScenario(scenario, readings(dice.uniform(300.0, 900.0), 60), magnitude)
    if scenario is Scenario.STUCK:
        return ActiveScenario(scenario, readings(dice.uniform(90.0, 600.0), 40), 0.0)
    if scenario is Scenario.OUT_OF_RANGE:
        return ActiveScenario(scenario, dice.randint(1, 5), 0.0)
    if scenario is Scenario.SILENT:
        return ActiveScenario(scenario, readings(dice.uniform(120.0, 600.0), 3), 0.0)
    if scenario is Scenario.BURST:
        active = ActiveScenario(scenario, 0, 10.0 if temperature else 150.0)
        active.extra_readings = dice.randint(10, 50)
        return active
    if scenario is Scenario.FAULT:
        active = ActiveScenario(scenario, readings(dice.expovariate_mean(FAULT_MEAN_S), 1), 0.0)
        active.repair_readings = readings(dice.expovariate_mean(REPAIR_MEAN_S), 1)
        return active
    raise ValueError(f"unknown scenario {scenario!r}")  # pragma: no cover


def fault_status(active: ActiveScenario) -> EquipmentStatus:
    """The status reported while a fault scenario runs (FAULT, then MAINTENANCE)."""
    return EquipmentStatus.FAULT if active.remaining > 0 else EquipmentStatus.MAINTENANCE
