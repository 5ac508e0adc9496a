"""Clean sensor signals: what a healthy plant reports.

Shift schedule (plant time = UTC)
    Monday to Friday three shifts: early 06-14 at load 1.0, late 14-22 at 0.85,
    night 22-06 at 0.55 (a night shift belongs to the day it starts, so Friday's
    night runs into Saturday 06:00). From then until Monday 06:00 the plant is
    idle (load 0).

Equipment status: a state machine per machine (:class:`MachineTimeline`)
    RUNNING for an exponential dwell (mean 2 h) cut short at the end of scheduled
    time; then IDLE (changeover, waiting for material: mean 15 min) or, with
    probability 0.03, planned MAINTENANCE (mean 90 min, then IDLE). Off schedule a
    machine stays IDLE until the next shift starts plus a warm-up (mean 10 min).
    FAULT is entered only by the injected ``fault`` scenario (see
    :mod:`simulator.anomalies`), so every FAULT in a stream is labelled ground
    truth and ``--anomaly-rate 0`` gives a fleet without faults. All three sensors
    of a machine replay the same timeline (seeded from the machine), so its
    temperature and pressure follow its status even when they sit in different
    slices of the fleet.

Temperature (°C) = ambient + machine heat + slow drift + noise
    ambient: the facility's hall temperature (16-24 °C) with a day/night sine
    (swing 1.5-4 °C, coolest at 03:00). Machine heat: first-order lag (time
    constant 10-40 min) towards ``heat_rise * load`` while RUNNING (heat_rise
    35-55 °C, so a machine at full load sits at 50-80 °C, the process band the
    processor's detector assumes), 10 % of heat_rise while IDLE (stand-by heaters)
    and 0 in MAINTENANCE or FAULT. Drift: a slow sine (period 2-5 days, amplitude
    up to 1.5 °C) standing for sensor ageing and weather. Noise: Gaussian, sigma
    0.15-0.4 °C (16-bit inverse-CDF table, see
    :data:`STANDARD_NORMAL_TABLE`). Values are reported to 0.01 °C.

Pressure (bar): a hydraulic press line
    While RUNNING, set-point process cycles: over a 20-90 s cycle the pressure
    ramps from 0.80 to 1.05 x set-point (70 % of the cycle), holds (15 %) and is
    released (15 %). Set-points 40-180 bar, noise sigma 1 % of the set-point.
    Otherwise (IDLE, MAINTENANCE, FAULT) the line sits at its residual pressure,
    1.5-3 bar, noise sigma 0.05 bar. A start or stop moves the reading by up to
    ~180 bar within one reading; the processor's spike detector is tuned for
    that. Values are reported to 0.001 bar.

Statistical bounds tested (``tests/unit/test_sim_signals.py``) over one simulated
week (Monday 00:00 to Sunday 24:00) at one reading per 5 minutes per device, 60
machines (60 devices of each type), seed 7 (measured: temperature means 36-47 °C,
std 12-19 °C, values 12-76 °C; pressure means 27-102 bar, std 20-82 bar, values
1.3-191 bar; RUNNING 62 %, IDLE 36 %, MAINTENANCE 1 %):

    temperature: per-device mean within [25, 60] °C, per-device std within
        [6, 25] °C, every value within [5, 90] °C: below the detector's 130 °C
        warning limit and far inside the physical range -50..600.
    pressure: per-device mean within [15, 130] bar, per-device std within
        [10, 100] bar, every value within [1, 200] bar: below the detector's
        220 bar warning limit, inside the physical range -1..400.
    equipment status: RUNNING 45-75 % of the readings, IDLE 20-50 %,
        MAINTENANCE 0.1-5 %, FAULT 0 % (faults are injected scenarios only).
"""

from __future__ import annotations

import math
import random
from statistics import NormalDist
from typing import Final

from processor.contract.record import EquipmentStatus
from simulator.dice import Dice, stream_key
from simulator.plant import MachineProfile

_HOUR_MS: Final = 3_600_000
_DAY_MS: Final = 86_400_000
_TWO_PI: Final = 2.0 * math.pi
_SLOW_TERMS_MS: Final = 60_000

#: Load of each shift on a working day.
EARLY_SHIFT_LOAD: Final = 1.0
LATE_SHIFT_LOAD: Final = 0.85
NIGHT_SHIFT_LOAD: Final = 0.55

RUNNING_MEAN_S: Final = 2 * 3600.0
IDLE_ON_SHIFT_MEAN_S: Final = 15 * 60.0
WARM_UP_MEAN_S: Final = 10 * 60.0
MAINTENANCE_MEAN_S: Final = 90 * 60.0
PLANNED_MAINTENANCE_PROBABILITY: Final = 0.03

#: Share of heat_rise a machine keeps while IDLE (stand-by heaters).
IDLE_HEAT_SHARE: Final = 0.10

#: Standard-normal noise by inverse-CDF sampling at 16-bit resolution: the
#: quantiles of 65,536 equal-probability cells. ``table[rng.getrandbits(16)]`` is
#: one C call and an index, about 5x cheaper than ``Random.gauss`` (pure Python),
#: and that is most of a reading's budget at 200k readings/s. Tails stop at
#: about 4.3 sigma, which sensor noise never needs.
_NOISE_BITS: Final = 16
STANDARD_NORMAL_TABLE: Final[tuple[float, ...]] = tuple(
    NormalDist().inv_cdf((cell + 0.5) / (1 << _NOISE_BITS)) for cell in range(1 << _NOISE_BITS)
)


def shift_load(ts_ms: int) -> tuple[float, int]:
    """Plant load at ``ts_ms`` (epoch ms, UTC) and the epoch ms until which it holds.

    Loads change only on the hour, so callers cache the answer until then instead
    of recomputing calendar arithmetic for every reading.
    """
    hour = ts_ms // _HOUR_MS
    day, hour_of_day = divmod(hour, 24)
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    if hour_of_day < 6:
        shift_day, load = (weekday - 1) % 7, NIGHT_SHIFT_LOAD
    elif hour_of_day < 14:
        shift_day, load = weekday, EARLY_SHIFT_LOAD
    elif hour_of_day < 22:
        shift_day, load = weekday, LATE_SHIFT_LOAD
    else:
        shift_day, load = weekday, NIGHT_SHIFT_LOAD
    if shift_day >= 5:  # Saturday and Sunday shifts do not run
        load = 0.0
    return load, (hour + 1) * _HOUR_MS


def _next_schedule_change(ts_ms: int) -> int:
    """First hour boundary after ``ts_ms`` where the plant switches on or off."""
    scheduled = shift_load(ts_ms)[0] > 0.0
    boundary = (ts_ms // _HOUR_MS + 1) * _HOUR_MS
    for _ in range(24 * 8):
        if (shift_load(boundary)[0] > 0.0) != scheduled:
            return boundary
        boundary += _HOUR_MS
    return boundary  # pragma: no cover - the week always switches


class MachineTimeline:
    """The operating state of one machine over time (see the module docstring).

    Deterministic for ``(seed, machine index, start)``: every sensor of the machine
    builds its own copy and they all agree.
    """

    __slots__ = ("_dice", "state", "until_ms")

    def __init__(self, seed: int, machine_index: int, start_ms: int) -> None:
        self._dice = Dice(stream_key("timeline", seed, machine_index))
        if shift_load(start_ms)[0] > 0.0:
            # Start mid-way through a RUNNING period (memoryless: the remaining
            # dwell has the same distribution as a fresh one).
            self.state = EquipmentStatus.RUNNING
            self.until_ms = min(
                start_ms + int(self._dice.expovariate_mean(RUNNING_MEAN_S) * 1000),
                _next_schedule_change(start_ms),
            )
        else:
            self.state = EquipmentStatus.IDLE
            self.until_ms = _next_schedule_change(start_ms) + int(
                self._dice.expovariate_mean(WARM_UP_MEAN_S) * 1000
            )

    def state_at(self, ts_ms: int) -> EquipmentStatus:
        """The state at ``ts_ms``; time must not go backwards between calls."""
        while ts_ms >= self.until_ms:
            self._transition()
        return self.state

    def _transition(self) -> None:
        now = self.until_ms
        dice = self._dice
        scheduled = shift_load(now)[0] > 0.0
        if self.state is EquipmentStatus.RUNNING:
            if scheduled and dice.random() < PLANNED_MAINTENANCE_PROBABILITY:
                self.state = EquipmentStatus.MAINTENANCE
                self.until_ms = now + int(dice.expovariate_mean(MAINTENANCE_MEAN_S) * 1000)
                return
            self.state = EquipmentStatus.IDLE
        elif self.state is EquipmentStatus.MAINTENANCE:
            self.state = EquipmentStatus.IDLE
        elif scheduled:  # IDLE during a shift: back to work
            self.state = EquipmentStatus.RUNNING
            self.until_ms = min(
                now + max(1000, int(dice.expovariate_mean(RUNNING_MEAN_S) * 1000)),
                _next_schedule_change(now),
            )
            return
        # IDLE: a short stop during the shift, or until the next shift starts.
        if scheduled:
            self.until_ms = now + max(1000, int(dice.expovariate_mean(IDLE_ON_SHIFT_MEAN_S) * 1000))
        else:
            self.until_ms = _next_schedule_change(now) + int(
                dice.expovariate_mean(WARM_UP_MEAN_S) * 1000
            )


class TemperatureSignal:
    """Ambient + machine heat + drift + noise (see the module docstring)."""

    __slots__ = (
        "_alpha",
        "_ambient",
        "_drift_amp",
        "_drift_omega",
        "_drift_phase",
        "_heat",
        "_heat_rise",
        "_noise",
        "_rng",
        "_slow",
        "_slow_until",
        "_swing",
    )

    def __init__(
        self, machine: MachineProfile, rng: random.Random, period_s: float, start_ms: int
    ) -> None:
        self._rng = rng
        self._ambient = machine.ambient_c
        self._swing = machine.ambient_swing_c
        self._heat_rise = machine.heat_rise_c
        # Exact discretisation of the first-order lag for a fixed sampling period.
        self._alpha = 1.0 - math.exp(-period_s / machine.thermal_tau_s)
        self._drift_amp = rng.uniform(0.0, 1.5)
        self._drift_omega = _TWO_PI / (rng.uniform(2.0, 5.0) * _DAY_MS)
        self._drift_phase = rng.uniform(0.0, _TWO_PI)
        self._noise = rng.uniform(0.15, 0.4)
        # Start at the equilibrium of the machine's initial state: no warm-up transient.
        load = shift_load(start_ms)[0]
        self._heat = self._heat_rise * load if load > 0.0 else self._heat_rise * IDLE_HEAT_SHARE
        self._slow = 0.0
        self._slow_until = -1

    def sample(self, ts_ms: int, state: EquipmentStatus, load: float) -> float:
        if state is EquipmentStatus.RUNNING:
            target = self._heat_rise * load
        elif state is EquipmentStatus.IDLE:
            target = self._heat_rise * IDLE_HEAT_SHARE
        else:
            target = 0.0
        self._heat += (target - self._heat) * self._alpha
        if ts_ms >= self._slow_until:
            self._update_slow_terms(ts_ms)
        # No clamp to PHYSICAL_RANGE: by construction the clean value stays within
        # about 0..95 °C (tested), far inside -50..600.
        return (
            self._slow
            + self._heat
            + self._noise * STANDARD_NORMAL_TABLE[self._rng.getrandbits(_NOISE_BITS)]
        )

    def _update_slow_terms(self, ts_ms: int) -> None:
        """Ambient and drift move by hundredths of a degree per minute: evaluate
        them once a minute rather than two trigonometric calls per reading."""
        # Coolest at 03:00: the cosine's peak is shifted to 03:00 and negated.
        day_phase = (ts_ms % _DAY_MS) * (_TWO_PI / _DAY_MS)
        ambient = self._ambient - self._swing * math.cos(day_phase - _TWO_PI * 3 / 24)
        drift = self._drift_amp * math.sin(ts_ms * self._drift_omega + self._drift_phase)
        self._slow = ambient + drift
        self._slow_until = (ts_ms // _SLOW_TERMS_MS + 1) * _SLOW_TERMS_MS


class PressureSignal:
    """Set-point process cycles while RUNNING, residual pressure otherwise."""

    __slots__ = ("_cycle_ms", "_idle", "_noise_run", "_offset_ms", "_rng", "_setpoint")

    def __init__(self, machine: MachineProfile, rng: random.Random) -> None:
        self._rng = rng
        self._setpoint = machine.pressure_setpoint_bar
        self._idle = machine.pressure_idle_bar
        self._cycle_ms = machine.cycle_s * 1000.0
        self._offset_ms = rng.uniform(0.0, self._cycle_ms)
        self._noise_run = 0.01 * self._setpoint

    def sample(self, ts_ms: int, state: EquipmentStatus, load: float) -> float:
        noise = STANDARD_NORMAL_TABLE[self._rng.getrandbits(_NOISE_BITS)]
        if state is not EquipmentStatus.RUNNING:
            # Residual pressure: at least 1.5 - 4.3 x 0.05 bar, inside -1..400.
            return self._idle + 0.05 * noise
        phase = ((ts_ms + self._offset_ms) % self._cycle_ms) / self._cycle_ms
        if phase < 0.70:  # pressing: ramp up
            factor = 0.80 + 0.25 * (phase / 0.70)
        elif phase < 0.85:  # holding
            factor = 1.05
        else:  # releasing
            factor = 1.05 - 0.25 * ((phase - 0.85) / 0.15)
        # At most 1.05 x 180 + 4.3 sigma = 197 bar: no clamp needed.
        return self._setpoint * factor + self._noise_run * noise
