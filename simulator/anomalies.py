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
``silent``        the device sends nothing for 120-600 s (at least 12 readings). Its
                  ``seq`` keeps counting (the sensor sampled, the uplink was down),
                  so the labelled range
                  is exactly the gap in ``seq`` that reaches the processor.
``burst``         one reading is followed, within the same reporting period, by
                  10-50 extra readings (their own ``seq``) with erratic values
                  (±10 °C, ±150 bar around the true value, kept inside the
                  physical range): a chattering sensor.
                  The label covers the extra readings only.

Plant scenarios (``Fleet(scenarios=PLANT_SCENARIOS)``, ``tap simulate --scenarios
plant``): harder and slower, the cases a plant's maintenance team cares about.

``degradation``   temperature only: a ramp of 0.5-3 °C per hour (a bearing or a
                  cooling circuit going bad) on top of the daily and shift cycles,
                  until it has added 8-20 °C (about 3 to 40 hours), then repaired
                  (an abrupt return). Labelled over the whole ramp.
``level_shift``   a sensor replacement: from this reading on, the device reads a
                  constant offset from before (±3-8 °C; +3-10 bar), for ever. The
                  label's range is the first hour after the swap (its onset) and
                  it is marked ``persists``: the offset is still there until the run
                  ends (or the next swap), so a detection of a lasting departure
                  later finds a present fault, with its delay as time to detect.
``gain_loss``     pressure only: the transducer loses 15-35 % of its span for
                  1-8 hours (reads ``(1 - g) x`` the true pressure), then is
                  recalibrated.
``dropout``       intermittent uplink loss for 10-60 minutes: each reading is lost
                  with probability 0.3, never more than 3 in a row. Labelled so that
                  a silence detector that alarms on it is scored as a false alarm
                  (:data:`simulator.scoring.QUIET_SCENARIOS`): it is not a silence.

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
    DEGRADATION = "degradation"
    LEVEL_SHIFT = "level_shift"
    GAIN_LOSS = "gain_loss"
    DROPOUT = "dropout"


ANALOG_SCENARIOS: Final[tuple[Scenario, ...]] = (
    Scenario.SPIKE,
    Scenario.DRIFT,
    Scenario.STUCK,
    Scenario.OUT_OF_RANGE,
    Scenario.SILENT,
    Scenario.BURST,
)
STATUS_SCENARIOS: Final[tuple[Scenario, ...]] = (Scenario.FAULT, Scenario.SILENT)
#: The default set (``tap simulate``'s and ``tap demo``'s): every scenario above.
CLASSIC_SCENARIOS: Final[frozenset[Scenario]] = frozenset(ANALOG_SCENARIOS + STATUS_SCENARIOS)
#: The harder plant set (see the module docstring), plus the classic fast ones.
PLANT_SCENARIOS: Final[frozenset[Scenario]] = frozenset(
    {
        Scenario.SPIKE,
        Scenario.STUCK,
        Scenario.OUT_OF_RANGE,
        Scenario.FAULT,
        Scenario.SILENT,
        Scenario.DEGRADATION,
        Scenario.LEVEL_SHIFT,
        Scenario.GAIN_LOSS,
        Scenario.DROPOUT,
    }
)
#: Scenarios whose fault stays after their labelled onset until someone acts (a
#: swapped sensor's offset, until recalibrated; the simulator never removes it):
#: their labels carry ``persists`` (see :class:`AnomalyLabel`). ``gain_loss`` and
#: ``degradation`` are labelled until their repair already, so they are not here.
PERSISTENT_SCENARIOS: Final[frozenset[Scenario]] = frozenset({Scenario.LEVEL_SHIFT})
#: The sensor types each scenario applies to.
_APPLIES_TO: Final[dict[Scenario, frozenset[SensorType]]] = {
    **{s: frozenset({SensorType.TEMPERATURE, SensorType.PRESSURE}) for s in ANALOG_SCENARIOS},
    Scenario.SILENT: frozenset(SensorType),
    Scenario.FAULT: frozenset({SensorType.EQUIPMENT_STATUS}),
    Scenario.DEGRADATION: frozenset({SensorType.TEMPERATURE}),
    Scenario.LEVEL_SHIFT: frozenset({SensorType.TEMPERATURE, SensorType.PRESSURE}),
    Scenario.GAIN_LOSS: frozenset({SensorType.PRESSURE}),
    Scenario.DROPOUT: frozenset(SensorType),
}
SCENARIO_SETS: Final[dict[str, frozenset[Scenario]]] = {
    "classic": CLASSIC_SCENARIOS,
    "plant": PLANT_SCENARIOS,
    "all": frozenset(Scenario),
}


def scenarios_for(
    sensor_type: SensorType, allowed: frozenset[Scenario] = CLASSIC_SCENARIOS
) -> tuple[Scenario, ...]:
    """The scenarios of ``allowed`` that apply to ``sensor_type``, in a fixed order
    (the enum's), so a seed draws the same scenario on every run."""
    return tuple(s for s in Scenario if s in allowed and sensor_type in _APPLIES_TO[s])


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


class AnomalyLabel(msgspec.Struct, tag_field="label", tag="anomaly", omit_defaults=True):
    """Ground truth for one injected scenario (one JSON line of the labels file)."""

    device_id: str
    sensor_type: str
    anomaly: str
    start_seq: int
    end_seq: int
    start_ts: str
    end_ts: str
    #: The run ended before the scenario did (the scorer leaves it out of recall
    #: when it was not detected; see :mod:`simulator.scoring`).
    truncated: bool = False
    #: The fault stays after ``end_seq`` until the run ends or the device's next
    #: label of the same scenario (a swapped sensor's offset stays until someone
    #: recalibrates): the range above is its onset, and a later detection of a
    #: lasting departure still finds a present fault (see :mod:`simulator.scoring`).
    persists: bool = False


class ActiveScenario:
    """A scenario in progress on one device.

    ``length`` is the number of labelled readings (for ``burst``: extra readings).
    The device calls :meth:`analog_value` / :meth:`status_value` once per reading
    and closes the label when ``remaining`` reaches zero.
    """

    __slots__ = (
        "dropped_run",
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
        "step",
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
        #: The sensor's resolution (stuck: a quantised sensor flickers by one step).
        self.step = 0.0
        #: Dropout: readings lost in a row so far.
        self.dropped_run = 0

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
            if self.step and dice.random() < 0.1:
                # A quantised reading on the edge of a step flickers by one step.
                value += self.step if dice.random() < 0.5 else -self.step
        elif scenario is Scenario.DEGRADATION:
            # magnitude: °C per reading; position counts readings since the start.
            value = clean + self.magnitude * (self.position + 1)
        elif scenario is Scenario.GAIN_LOSS:
            value = clean * (1.0 - self.magnitude)
        elif scenario is Scenario.OUT_OF_RANGE:
            value = out_of_range_value(sensor_type, dice)
        else:  # LEVEL_SHIFT (the device adds the offset); SILENT, BURST, DROPOUT never get here
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
        # At least 12 readings: at a slow cadence a silence must stay distinguishable
        # from a dropout (never more than 3 readings lost in a row).
        return ActiveScenario(scenario, readings(dice.uniform(120.0, 600.0), 12), 0.0)
    if scenario is Scenario.DEGRADATION:
        per_hour = dice.uniform(0.5, 3.0)
        hours = dice.uniform(8.0, 20.0) / per_hour
        length = readings(hours * 3600.0, 3)
        return ActiveScenario(scenario, length, per_hour * hours / length)
    if scenario is Scenario.LEVEL_SHIFT:
        # A pressure offset is upwards only: a stopped line sits at 1.5 bar, and a
        # reading under -1 bar would be dead-lettered for the rest of the run.
        offset = sign * dice.uniform(3.0, 8.0) if temperature else dice.uniform(3.0, 10.0)
        return ActiveScenario(scenario, readings(3600.0, 3), offset)
    if scenario is Scenario.GAIN_LOSS:
        return ActiveScenario(
            scenario, readings(dice.uniform(3600.0, 8 * 3600.0), 3), dice.uniform(0.15, 0.35)
        )
    if scenario is Scenario.DROPOUT:
        return ActiveScenario(scenario, readings(dice.uniform(600.0, 3600.0), 6), 0.3)
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
