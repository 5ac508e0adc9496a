"""Per-device streaming anomaly detectors: pure, deterministic, cheap per reading.

One :class:`DetectorBank` holds a small :class:`DeviceState` per device and runs,
on every accepted reading, the detectors that apply to its sensor type:

========================  ===========================================================
``limit``                 static per-sensor-type warning/critical limits (with hysteresis)
``statistical``           robust z-score against the device's own EWMA baseline (after warm-up)
``spike``                 rate of change per second of *event time* above a limit; and
                          an isolated outlier, judged when the next readings arrive
                          (a machine body's thermal lag cannot jump and come back)
``stuck``                 the same value for N readings spanning >= S seconds, with the
                          tolerance learned from the sensor's resolution (flickers of one
                          step stay in the run) on a sensor whose noise normally exceeds it
``drift``                 a CUSUM of the one-step residual and, at <= 60 s, a step that
                          stays flat (a sensor swap; the profile is then re-based); a
                          time-weighted CUSUM against the device's time-of-week profile
                          (slow degradation); for pressure, the running plateau's or the
                          residual pressure's 30-minute mean off its learned level (a
                          transducer losing span or replaced)
``seasonal``              the hour-smoothed level leaves the device's usual level *at this
                          time of the week* (4-hour bins of each weekday, learned online)
``drift`` (ceiling)       temperature: the hour-smoothed level runs above the highest it
                          reached at the same hour (+-1 h) on any day of the previous week
``fault`` / ``flapping``  equipment status entering FAULT; too many status changes in a window
``silent``                not here: :mod:`processor.core.silence` (judged on shard progress)
========================  ===========================================================

docs/DETECTION.md explains each detector, its defaults and their reasoning, and the
measured precision and recall.

Why a state machine per detector rather than "fire on every reading over a
limit": a machine that runs hot for an hour must give one anomaly, not 3 600.
Each detector fires when its level *rises* (warning -> critical fires again) and
re-arms only after the signal is back inside a hysteresis band.

Replays and idempotency. A reading whose ``seq`` is not above the device's last
``seq`` (a duplicate or an out-of-order record) neither changes the state nor
emits anything — unless it is of a newer boot, or of a later UTC event day than
the last reading (a restarted sequence the store keeps as new readings). The
identity of an anomaly is ``(device_id, boot, seq, anomaly_type, event day)``, the
reading's de-duplication key plus the type: a pure function of (state, reading),
so an at-least-once replay of the same reading from the same saved state yields
the same identity, which the store de-duplicates (``ON CONFLICT DO NOTHING``).
For that to hold the adapter must
save states (:meth:`DetectorBank.dirty_states`) only *after* the batch commit,
and, when a commit fails, retry the same :class:`ProcessedBatch` (or
:meth:`DetectorBank.forget` the shard's devices and reload their saved states)
rather than re-run the detectors on advanced state — otherwise the replayed
readings are seen as duplicates and their anomalies are lost.

Nothing here reads the clock, logs or allocates more than a few floats per
reading: the processor runs it on > 20k readings/s per core.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import msgspec

from processor.contract.record import EquipmentStatus, Reading, SensorType
from processor.core.model import Anomaly, AnomalyType, Severity

if TYPE_CHECKING:
    from processor.core.overrides import DetectorOverrides

# Enum members looked up once: attribute access on an Enum class is slow in 3.11.
_PRESSURE: Final = SensorType.PRESSURE
_EQUIPMENT_STATUS: Final = SensorType.EQUIPMENT_STATUS

#: Version of the serialized :class:`DeviceState`; a state saved by a version not in
#: :data:`LOADABLE_VERSIONS` is ignored (the device re-learns its baseline) rather
#: than misread. Versions 2, 3 and 4 only appended fields, so a version-1, -2 or -3
#: state loads (its new fields take their defaults: nothing pending, noise re-learned,
#: no ceiling yet) and is saved back as the current version.
STATE_VERSION: Final = 4
LOADABLE_VERSIONS: Final = frozenset({1, 2, 3, 4})


@dataclass(frozen=True, slots=True)
class AnalogLimits:
    """Thresholds for one analog sensor type (temperature in C, pressure in bar).

    ``None`` disables a limit. The spike detector needs both a fast *and* a large
    change (``spike_min_delta``) so that fine-grained noise sampled at 10 Hz is not
    a "spike". ``min_scale`` floors the robust scale: a very quiet sensor (0.3 C of
    noise) would otherwise turn every machine start (2 C in a minute) into a 7 z
    alarm; deviations smaller than a few ``min_scale`` are of no interest.
    """

    warning_high: float | None = None
    critical_high: float | None = None
    warning_low: float | None = None
    critical_low: float | None = None
    #: A limit re-arms only once the value is this far back inside it.
    hysteresis: float = 1.0
    spike_warning_rate: float = 5.0  # units per second
    spike_critical_rate: float = 20.0
    spike_min_delta: float = 5.0  # units
    min_scale: float = 0.1  # units
    #: Stuck tolerance until the sensor's resolution is learned (its smallest step).
    stuck_epsilon: float = 1e-6  # units
    #: Run the robust statistical detector for this type.
    statistical: bool = True
    #: Run the step CUSUM (DRIFT on a lasting step) for this type. Off for a
    #: quantity whose normal operation is a step (a press line starts and stops
    #: from one reading to the next): it would flag every start and stop.
    step_cusum: bool = True
    #: The quantity switches between operating regimes (a press line: residual
    #: pressure when stopped, set-point cycles when running): the statistical
    #: detector stays quiet for values inside the device's learned operating
    #: envelope (the range of its unflagged readings, forgotten over three months:
    #: a weekend stopped must not shrink it), so a
    #: start or a stop is not an anomaly while a surge beyond it still is.
    regimes: bool = False
    #: The time-of-week detectors (SEASONAL, slow DRIFT) judge departures upwards
    #: only. For machine temperature that is the physics: wear, fouling and a
    #: failing cooling circuit make a machine run *hotter*; running colder than
    #: usual is the machine standing still, which its status sensor reports.
    profile_up_only: bool = False
    #: Judge the shape of the series (isolated outliers, steps that stay; see
    #: ``DetectorConfig.thermal_tau_min_s``). Off for a regime quantity: a press
    #: line's start is a step that stays, and a run of a few minutes is an outlier.
    shape: bool = True
    #: The time-of-day ceiling (DRIFT when the hour-smoothed level runs this far
    #: above the highest level of the same hour +-1 h on any day of the previous
    #: week; None = off). Only for a quantity judged upwards (``profile_up_only``).
    ceiling_margin: float | None = None


#: Machine temperature: a healthy machine reads 20-120 C (hall ambient plus up to
#: 55 C of machine heat); 130 C needs attention, 150 C stops the line.
DEFAULT_TEMPERATURE: Final = AnalogLimits(
    profile_up_only=True,
    # What moves a healthy machine's hourly peak above last week's at the same hour
    # (docs/DETECTION.md, "ceiling"): its sensor's ageing and the hall's weather,
    # slow terms of up to 1.5 C each way (3 C from trough to crest), plus 2 C of
    # day-to-day weather a sheltered hall sees. A degradation adds 8-20 C.
    ceiling_margin=5.0,
    warning_high=130.0,
    critical_high=150.0,
    hysteresis=1.0,
    spike_warning_rate=5.0,
    spike_critical_rate=20.0,
    spike_min_delta=5.0,
    min_scale=1.0,
)
#: Hydraulic line pressure: set-points 40-180 bar with press cycles up to 1.05 x
#: set-point, 1.5-3 bar residual when stopped (so no low limit: a stopped machine
#: is not an anomaly). The line is rated 250 bar. A start or stop moves ~180 bar
#: within one reading, which is normal; a spike has to beat that.
DEFAULT_PRESSURE: Final = AnalogLimits(
    warning_high=220.0,
    critical_high=250.0,
    hysteresis=2.0,
    spike_warning_rate=250.0,
    spike_critical_rate=400.0,
    spike_min_delta=100.0,
    min_scale=2.0,
    step_cusum=False,
    regimes=True,
    shape=False,
)


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Every knob of the detectors, with the defaults the processor runs with."""

    temperature: AnalogLimits = DEFAULT_TEMPERATURE
    pressure: AnalogLimits = DEFAULT_PRESSURE
    #: EWMA weight of a new reading once warmed up (half-life ~ 35 readings). Lower
    #: means a steadier variance estimate, hence fewer false alarms on pure noise
    #: (measured: 0.05 gave 4x the false warnings of 0.02 on Gaussian noise).
    ewma_alpha: float = 0.02
    #: Weight of the trend update relative to the level's (Holt's beta).
    trend_beta: float = 0.1
    #: Readings that build the baseline before the statistical detector may fire.
    warmup: int = 30
    #: |robust z| for a warning / critical STATISTICAL anomaly. At 5.0, Gaussian noise
    #: gives about one false warning per 100 000 readings.
    z_warning: float = 5.0
    z_critical: float = 8.0
    #: The statistical detector re-arms once |z| drops below this.
    z_reset: float = 3.0
    #: Residuals are clipped to this many scales before updating the baseline
    #: (Huber), so one outlier barely moves it while a lasting level shift is learned.
    z_clip: float = 3.0
    stuck_min_count: int = 30
    stuck_min_seconds: float = 60.0
    #: Share of a stuck run's readings that must repeat its value *exactly*: a stuck
    #: sensor repeats itself (a quantised one flickers by a step now and then), a
    #: live one quantised to a coarse step lands on the same value only by chance
    #: (at most ~40 % with noise of one step).
    stuck_exact_share: float = 0.8
    #: A limit episode ends (and the limit re-arms) only after this long *and* this
    #: many readings back inside the hysteresis band: a machine's thermal time
    #: constant is 10-40 minutes and a press cycle up to 90 s, so a value that comes
    #: back above the limit within 5 minutes is the same episode, not a new one.
    limit_rearm_seconds: float = 300.0
    limit_rearm_readings: int = 2
    #: Step CUSUM on the one-step residual in units of the device's scale: ignore
    #: |z| up to ``shift_k``, fire when the sum reaches ``shift_h``. k = 2 because a
    #: machine warming up along its thermal lag keeps the Holt residual at 1-2
    #: scales for minutes (measured on the 10 s test signal); for Gaussian noise the
    #: mean run between false alarms is then astronomically long. A lasting step of
    #: 4 scales or more fires before the baseline has absorbed it.
    shift_k: float = 2.0
    shift_h: float = 20.0
    #: Readings further apart than this see the process move between them (a
    #: machine's thermal time constant is 10-40 minutes): the one-step residual is
    #: then no evidence of a step, so the step CUSUM does not run and the
    #: statistical detector judges against the learned operating envelope (as for
    #: a regime sensor) instead of the baseline.
    fast_cadence_s: float = 60.0
    #: Time-of-week profile (42 bins: 4 hours of each weekday; level and mean
    #: absolute deviation), learned
    #: with a memory of ``profile_days`` per bin. It judges nothing before the
    #: device has been seen for ``profile_ready_days``: two full weeks, so that
    #: every bin has been visited twice and its spread holds some week-to-week
    #: variation (a holiday, a late start, another load); one visit gives none,
    #: and on the month profile most SEASONAL false alarms were a bin's second
    #: visit judged by its first.
    profile_days: float = 14.0
    profile_ready_days: float = 14.0
    #: Ceiling (DRIFT): the highest hour-smoothed level of each hour of the day over
    #: the previous block of this many days (a week: the plant's period, so every
    #: hour at which the machine ever runs has been seen, whatever day the device
    #: first reported), judged from the end of the first block on. The episode ends
    #: once the level stayed under the ceiling for ``ceiling_rearm_s``.
    ceiling_days: float = 7.0
    ceiling_rearm_s: float = 86_400.0
    #: SEASONAL: the 1-hour smoothed departure from the profile bin beyond this many
    #: deviations (1.25 x the mean absolute deviation ~ one sigma), re-armed below 1.
    seasonal_z: float = 4.0
    seasonal_smoothing_s: float = 3600.0
    #: DRIFT (slow): time-weighted CUSUM of the departure from the profile, in
    #: sigma-hours: departures within ``drift_k`` sigma are ordinary; fire at
    #: ``drift_h`` (e.g. 2 sigma above the usual for 6 hours, 4 sigma for 2 hours).
    drift_k: float = 1.0
    drift_h: float = 6.0
    #: Regime sensors: the envelope is learned for this long before the statistical
    #: detector judges (a line first seen running has not been seen stopped yet;
    #: surges meanwhile are the spike and limit detectors' job).
    envelope_learn_days: float = 1.0
    #: Shape tests (a reading judged when the next ones arrive): the shortest thermal
    #: time constant of a machine body (the plant model's and the docs' 10-40 min).
    #: A body's temperature moves along its lag: after a change of d over one
    #: interval dt it moves at least exp(-dt / tau) x d more in the same direction
    #: over the next, and it comes back from an excursion no faster. A reading that
    #: jumps and is back at the next one (an isolated outlier), or that jumps and then
    #: stays flat (a sensor swap's offset), is therefore not the process, as long as
    #: exp(-dt / tau) exceeds ``shape_ratio``: dt <= tau x ln 2 = 416 s at the
    #: defaults, which covers 1 Hz to a 5-minute cadence. Slower series are not
    #: judged by shape (a machine start could look like a step there).
    thermal_tau_min_s: float = 600.0
    #: What "back" and "flat" mean: within this share of the jump (0.5, under the
    #: lag's >= 0.61 at dt = 5 min and tau = 10 min).
    shape_ratio: float = 0.5
    #: A jump is a candidate when it is at least this many sigmas of the learned
    #: one-step noise (the lower quartile of |change|, which a 5-minute series'
    #: start and stop transients inflate about 1.5x) *and* the reading before it was
    #: flat too (within ``shape_ratio`` of the jump). Pure Gaussian noise then needs
    #: two extreme readings in a row to fake a step: about 3e-7 per reading at
    #: z = 4 (0.2 per device-week at 1 Hz), while "within half the jump" stays
    #: >= 2 sigmas of noise, so noise rarely breaks a true step's flatness.
    shape_jump_z: float = 4.0
    #: A step (judged at a fast cadence only, ``fast_cadence_s``) is confirmed after
    #: this many readings after the jump stayed flat: one more than the longest
    #: outlier a sensor glitch gives (1-3 readings), so a three-reading outlier is
    #: still told from a step.
    shape_step_readings: int = 3
    #: Steps that stay are judged only at intervals up to this (the fast cadence):
    #: at a 5-minute cadence a machine landing on a new load's equilibrium within
    #: one interval is a step that stays, from the process (docs/DETECTION.md,
    #: "Why the slow scenarios are missed"). A knob so that a back-test can measure
    #: what judging them would cost and what the machine's status would save.
    shape_step_max_interval_s: float = 60.0
    #: Regime levels (pressure): the running plateau's and the residual pressure's
    #: mean over ``regime_mean_s`` (30 min: 20-90 press cycles at 1 Hz, six
    #: readings at a 5-minute cadence) against their level learned over
    #: ``regime_memory_days``; DRIFT at ``regime_z`` learned sigmas of that mean
    #: (e.g. a 15 % span loss is about 7 of them at 5 minutes). A departure that
    #: lasts ``regime_adopt_days`` becomes the new level.
    regime_mean_s: float = 1800.0
    regime_memory_days: float = 3.0
    regime_z: float = 5.0
    regime_adopt_days: float = 1.0
    # -- session 6, pressure regimes: readiness per regime, slow-cadence mean.
    #: A regime is judged once it has been seen (both regimes known) for this many
    #: windows of its mean beyond the first: the spread of the mean is learned from
    #: about one independent value per window (the mean's |departure| decorrelates
    #: within about one window), and 8 of them put the spread within about 27 %
    #: (one standard error of a mean absolute deviation, 0.755 / sqrt(8)): 4.5 h
    #: of running at 1 Hz, instead of one day after the device's first reading.
    #: Sooner (from the second window) where the 0.5 % floor decides anyway, see
    #: ``DetectorBank._regime_levels``.
    regime_ready_windows: float = 8.0
    #: At a slow cadence the running mean spans at least this many readings: there the
    #: readings sample the press cycle (+-12 % of set-point) at scattered phases,
    #: and a mean of six (30 minutes at 5 minutes) scatters by about 2 % of the
    #: set-point: 5 sigma was about 10 % of it, which a 15-20 % span loss over a
    #: short run between stops did not reach. A mean of N readings
    #: scatters by the cycle's 7 % / sqrt(2 N); a 15 % loss (14 % of the plateau)
    #: reaches 5 of those within N readings (63 % of it) from N = 9 on; 12 is an
    #: hour at 5 minutes. At 1 Hz the 30 minutes decide (1,800 readings).
    regime_mean_readings: int = 12
    #: FLAPPING: this many status changes within the window.
    flap_changes: int = 6
    flap_window_seconds: float = 300.0
    # -- session 6, temperature at a 5-minute cadence (the time-of-day floor) ------
    #: Floor (DRIFT): the hour-smoothed level must run ``ceiling_margin`` below the
    #: lowest level of the same hour +-1 h in the previous block for this long
    #: without a break. A machine with its stand-by heat off (planned maintenance,
    #: mean 90 min in the plant model; a fault) cools below its stand-by level for
    #: hours; a swapped sensor's negative offset stays for ever, so the first
    #: stand-still long enough (a weekend: 48 h) shows it. 8 h: more than five mean
    #: maintenance stops (P(one lasts 8 h) = exp(-8 / 1.5) = 0.5 %), less than a
    #: weekend or a night without production.
    floor_hold_s: float = 8 * 3600.0
    #: Where the time-of-week profile's 4-hour bins start, seconds after midnight
    #: UTC: 2 h puts the plant's shift changes (06, 14, 22) on bin boundaries, so a
    #: bin holds one shift's load. With bins on midnight, the 04-08 bin held the
    #: night shift's end and the early shift's start (Monday: the weekend's stand-by
    #: and the first full-load hours), so its second half ran far above a level
    #: learned mostly from its first: the one false SEASONAL of the month profile,
    #: seeds 1-3 (docs/DETECTION.md, "Session 6"). A plant whose shifts change at
    #: 07, 15 and 23 sets 10800. A profile learned with another offset is started
    #: again (judged after ``profile_ready_days``).
    profile_bin_offset_s: float = 7200.0
    #: The ceiling's and the floor's level: the reading smoothed over this long (was
    #: the profile's hour, ``seasonal_smoothing_s``). A smoothed ramp lags by its
    #: rate times the smoothing: the steepest degradation the plant model makes (3 C
    #: per hour, adding 8-20 C, so over in 2.7-7 h) lost 3 C of its excess at 1 h,
    #: 1.5 C at 30 min, while 30 min at a 5-minute cadence still averages about
    #: seven readings (the level's noise about 0.3 of the sensor's, a few tenths of
    #: a degree against a 5 C margin) and keeps a lone outlier to a sixth of its
    #: size. The missed case: seed 3's 4-hour ramp at 3 C/h on day 8.7, 4.6 C over
    #: its ceiling at 1 h (docs/DETECTION.md, "Session 6").
    ceiling_smoothing_s: float = 1800.0
    # -- session 6, spikes (docs/DETECTION.md, "Session 6: spikes") ------------------
    #: A pressure surge on a stopped line: a regime quantity at rest (its two changes
    #: before within noise) that jumps up by at least half its envelope's span and
    #: is back within half the jump after 1-``shape_step_readings`` readings is a
    #: SPIKE when the excursion cannot be a run of the press:
    #: * it lasted less than the shortest press cycle (the plant model's cycles are
    #:   20-90 s; a press that starts runs at least one cycle, ramp, hold, release),
    #:   which is what tells a surge at 1 Hz;
    press_cycle_min_s: float = 20.0
    #: * or ``surge_flat_readings`` or more of its readings lie within this share of
    #:   their level of each other: readings minutes apart land on unrelated phases
    #:   of a press cycle that swings over a quarter of the set-point, with noise of
    #:   1 % of it, so a run's readings differ by that much; 0.2 % is a fifth of the
    #:   noise alone. Three readings, not two: two readings of a short run land that
    #:   close by chance (2 false SPIKEs in 16 busy line-months of the unit test
    #:   with two); three of pure noise are that flat about once in 100 (a cycle
    #:   commensurate with the interval, sampled at one phase), far less otherwise;
    surge_flat_share: float = 0.002
    surge_flat_readings: int = 3
    #: * or it reached this share above the highest pressure the line has shown (the
    #:   envelope's top, learned for ``envelope_learn_days`` first): the controller
    #:   holds a cycle's peak at its set-point (1.05 x in the plant model) and the
    #:   noise is 1 % of it, so a healthy line never reads 10 % above its own peak;
    #:   a new, higher set-point does, but it stays (a run), it does not come back
    #:   within three readings.
    surge_top_share: float = 0.10

    def limits_for(self, sensor_type: SensorType) -> AnalogLimits:
        return self.pressure if sensor_type is _PRESSURE else self.temperature


class DeviceState(msgspec.Struct, array_like=True, gc=False):
    """Everything the detectors remember about one device (about 250 bytes packed;
    about 2 KB for a temperature sensor once its profile, ceiling and floor exist).

    Times are epoch seconds (floats): cheaper than datetimes on the hot path and
    compact in Redis. ``array_like`` drops the field names from the encoding.
    """

    version: int
    sensor_type: str
    last_seq: int = -1
    last_ts: float = 0.0  # event time of the last accepted reading
    #: The reading before ``last_value`` (shape tests). Version 1 and 2 kept an
    #: unused ``last_seen`` here (silence moved to processor.core.silence): the slot
    #: is reused, and :meth:`from_bytes` resets it when it upgrades an older state.
    prev_value: float = 0.0
    count: int = 0  # analog readings seen (warm-up)
    last_value: float = 0.0
    mean: float = 0.0  # baseline level
    trend: float = 0.0  # baseline change per reading
    var: float = 0.0
    limit_level: int = 0  # 0 normal, 1 warning, 2 critical (episode state)
    stat_level: int = 0
    run_value: float = 0.0
    run_count: int = 0
    run_start: float = 0.0
    stuck_reported: bool = False
    status: str = ""
    flap_count: int = 0
    flap_start: float = 0.0
    flap_reported: bool = False
    #: Unused (since silence moved); it stays so that states saved by running
    #: processors still decode as this version during a rolling deploy.
    silent_reported: bool = False
    #: The boot counter of the series being followed (schema version 2 readings).
    #: Last, with a default, so states saved before it existed still decode.
    last_boot: int = 0
    # -- version 2 (issue 9): appended, so a version-1 state decodes with these
    # defaults and is upgraded in place (learned baselines kept).
    resolution: float = 0.0  # smallest step seen between two readings (0 = unknown)
    run_exact: int = 0  # readings of the current run exactly equal to its value
    run_scale: float = 0.0  # the device's scale when the run started
    limit_clear_since: float = -1.0  # start of the current return inside the band
    limit_clear_count: int = 0
    shift_pos: float = 0.0  # step CUSUMs of the one-step residual
    shift_neg: float = 0.0
    shift_reported: bool = False
    shift_pos_seq: int = 0  # where each step CUSUM last left zero (the change point)
    shift_pos_ts: float = 0.0
    shift_neg_seq: int = 0
    shift_neg_ts: float = 0.0
    first_ts: float = 0.0  # first analog reading (profile readiness)
    profile: list[float] = msgspec.field(default_factory=list)  # 24 levels then 24 MADs
    season_level: float = 0.0  # hour-smoothed departure from the profile (sigmas)
    season_reported: bool = False
    drift_pos: float = 0.0  # time-weighted CUSUMs (sigma-hours) against the profile
    drift_neg: float = 0.0
    drift_reported: bool = False
    env_low: float = 0.0  # learned operating envelope (regime sensors)
    env_high: float = 0.0
    # -- version 3 (issue 9, slow cadences): appended.
    #: Lower quartile of |one-step change| (a robust steady-noise estimate: start
    #: and stop transients are most of the large changes, not of the small ones).
    diff_q: float = 0.0
    prev_value2: float = 0.0  # the reading before ``prev_value``
    #: The shape test's candidate reading, empty when there is none (one byte in
    #: the common case): seq, time, boot, value, the level before it, readings
    #: after it seen flat, whether it was flagged itself (1.0), sum of its values,
    #: the tolerance of "back" and "flat" (``shape_ratio`` x the one-interval jump),
    #: and the envelope (low, high) before the candidate (absent in a candidate
    #: saved by the code before them: same field, a shorter list, still read).
    pending: list[float] = msgspec.field(default_factory=list)
    #: Regime sensors only (empty otherwise, one byte): per regime (running, stopped)
    #: a 30-minute mean, its learned level (3-day memory) and the learned spread
    #: of the mean around it; which regime is reported (0 none, 1 stopped, 2
    #: running) and since when. Indexes: the ``_R_*`` constants.
    regime: list[float] = msgspec.field(default_factory=list)
    # -- version 4 (issue 9, session 5): appended.
    #: Time-of-day ceiling (temperature; empty otherwise, one byte): the block
    #: number, the hour-smoothed level, reported (1.0), since when the level is back
    #: under the ceiling (-1 = not), then the previous block's highest level per hour
    #: of the day (24) and the current block's (24); -inf = hour not seen. Indexes:
    #: the ``_C_*`` constants.
    ceiling: list[float] = msgspec.field(default_factory=list)

    def to_bytes(self) -> bytes:
        return _state_encoder.encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> DeviceState:
        """Decode a saved state; raises ``ValueError`` on bytes that are not one."""
        try:
            state = _state_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ValueError(f"not a device state: {exc}") from exc
        if state.version not in LOADABLE_VERSIONS:
            raise ValueError(f"device state version {state.version}, want {STATE_VERSION}")
        if state.version < 3:
            state.prev_value = state.prev_value2 = state.last_value
        state.version = STATE_VERSION
        return state


_state_encoder: Final = msgspec.msgpack.Encoder()
_state_decoder: Final = msgspec.msgpack.Decoder(DeviceState)
_STATUS_FAULT: Final = EquipmentStatus.FAULT.value
#: Seconds per UTC day: the event day of the de-duplication key is ``ts // _DAY_S``.
_DAY_S: Final = 86_400.0
#: The profile's bins: four hours of each day of the week (a plant's shifts start
#: at 06, 14 and 22, on the bins' boundaries since session 6: see
#: ``DetectorConfig.profile_bin_offset_s``; and its Saturday is not its Tuesday).
_PROFILE_BINS: Final = 42
_BIN_SECONDS: Final = 4 * 3600.0
_WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
#: An empty profile: the levels, then the deviations (-1 = bin not seeded: a
#: deviation is never negative, and NaN would make equal states compare unequal).
_EMPTY_PROFILE: Final = (0.0,) * _PROFILE_BINS + (-1.0,) * _PROFILE_BINS
#: Appended to the profile (session 6): the bin offset it was learned with and since
#: when it learns (a profile saved before them, 84 entries, had its bins on
#: midnight: it is started again, and judged after ``profile_ready_days``).
_P_OFFSET: Final = 2 * _PROFILE_BINS
_P_SINCE: Final = _P_OFFSET + 1
_PROFILE_LEN: Final = _P_SINCE + 1
#: The lower quartile of |N(0, s)| is 0.3186 s: turns the tracked quartile of the
#: one-step change into the change's sigma.
_QUARTILE_OF_ABS_NORMAL_DIFF: Final = 0.3186
#: Indexes into ``DeviceState.regime``: running (mean, level, spread), stopped
#: (the same), the reported regime, since when; then (session 6, appended: a list
#: of 8 saved by the code before is extended on load, see ``_regime_levels``) the
#: time seen in each regime, running then stopped (seconds).
_R_RUN: Final = 0
_R_IDLE: Final = 3
_R_REPORTED: Final = 6
_R_SINCE: Final = 7
_R_SEEN: Final = 8
#: The slot's offset of its time seen (running: 8, stopped: 9).
_R_SEEN_OF: Final = {_R_RUN: 8, _R_IDLE: 9}
#: Session 7, appended (a list of 10 saved by session 6's code is extended on
#: load): per regime, running then stopped, the sum of the squared weights of the
#: readings in its mean (the mean's variance in units of one reading's), the
#: mean |departure| of a single reading from its level (its scatter: the press
#: cycle at a random phase, or the residual pressure's noise) and the time it was
#: last seen.
_R_SQUARES: Final = 10
_R_SCATTER: Final = 12
_R_LAST: Final = 14
_R_LEN: Final = 16
#: The slot's offset of those three (running: 10, 12, 14; stopped: 11, 13, 15).
_R_MORE_OF: Final = {_R_RUN: 0, _R_IDLE: 1}
#: A regime list saved by session 6's code (before the three above).
_R_LEN_SESSION_6: Final = 10
#: "Flat" before a shape candidate: each of the two changes before it within this
#: many sigmas of the one-step noise (a Gaussian change passes 99.7 % of the time).
_FLAT_SIGMAS: Final = 3.0
#: Indexes into ``DeviceState.pending`` of the envelope before the candidate (a
#: pending list saved by the code before them has 9 entries: the current envelope
#: is used then).
_P_ENV_LOW: Final = 9
_P_ENV_HIGH: Final = 10
#: Session 6: indexes into a pressure surge's ``pending`` (appended after the
#: envelope): the time of the reading before the surge, the lowest and the highest
#: reading of the excursion. Pressure had no pending candidate before.
_P_BEFORE: Final = 11
_P_LOW: Final = 12
_P_TOP: Final = 13
#: Session 7: index into a temperature candidate's ``pending`` (appended after the
#: envelope): 1.0 when it jumped from a moving body (:meth:`DetectorBank._candidate`).
#: A list saved before it has 11 entries: a candidate from a flat level.
_P_MOVING: Final = 11
#: Indexes into ``DeviceState.ceiling``.
_C_BLOCK: Final = 0
_C_LEVEL: Final = 1
_C_REPORTED: Final = 2
_C_BELOW: Final = 3
_C_PREV: Final = 4
_C_CUR: Final = 28
_C_EMPTY: Final = (-math.inf,) * 48
#: The floor's entries, appended to ``DeviceState.ceiling`` (session 6; a list saved
#: by the code before them has 52 entries and grows at its next reading): reported
#: (1.0), since when the level runs the margin below the floor (-1 = not), since
#: when it is back at or above it (-1 = not), then the previous block's lowest level
#: per hour of the day (24) and the current block's (24); +inf = hour not seen.
_C_F_REPORTED: Final = 52
_C_F_SINCE: Final = 53
_C_F_ABOVE: Final = 54
_C_F_PREV: Final = 55
_C_F_CUR: Final = 79
_C_F_EMPTY: Final = (0.0, -1.0, -1.0) + (math.inf,) * 48
#: Anomalies that already report a reading itself (the shape test then does not
#: report it again as an outlier).
_FLAGS_A_READING: Final = frozenset({AnomalyType.SPIKE, AnomalyType.LIMIT, AnomalyType.STATISTICAL})


def _bin_name(b: int, offset_s: float = 0.0) -> str:
    day, block = divmod(b, 6)
    first = (block * 4 + int(offset_s // 3600.0)) % 24
    return f"{_WEEKDAYS[day]} {first:02d}-{(first + 4) % 24:02d} UTC"


def _epoch_to_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _other_regime(x: float, level: float, min_scale: float) -> bool:
    """Whether ``x`` is a different operating regime from one whose level is
    ``level``: off by more than three quarters of the larger of the two and by
    more than four scale floors. A press line's cycle (0.80-1.05 x set-point) and a
    span loss (down to 0.65 x) stay within half of the level, its residual pressure
    (1.5-3 bar) is under a tenth of its running plateau (set-points 40-180 bar,
    simulator/signals.py): the regimes are an order of magnitude apart, and the
    factor of four sits between (geometrically). The scale floors keep a flat line
    near zero bar from splitting on its noise."""
    gap = x - level if x >= level else level - x
    larger = abs(x) if abs(x) >= abs(level) else abs(level)
    return gap > 0.75 * larger and gap > 4.0 * min_scale


def _level(x: float, lim: AnalogLimits, inset: float) -> tuple[int, float | None]:
    """Severity level of ``x`` against the limits moved ``inset`` inwards, and the
    crossed threshold (unmoved) for the explanation."""
    if lim.critical_high is not None and x >= lim.critical_high - inset:
        return 2, lim.critical_high
    if lim.critical_low is not None and x <= lim.critical_low + inset:
        return 2, lim.critical_low
    if lim.warning_high is not None and x >= lim.warning_high - inset:
        return 1, lim.warning_high
    if lim.warning_low is not None and x <= lim.warning_low + inset:
        return 1, lim.warning_low
    return 0, None


def _inside(lim: AnalogLimits) -> tuple[float, float]:
    """The open interval in which :func:`_level` (inset 0) says 0: above every low
    limit and below every high one."""
    highs = [v for v in (lim.critical_high, lim.warning_high) if v is not None]
    lows = [v for v in (lim.critical_low, lim.warning_low) if v is not None]
    return (max(lows) if lows else -math.inf), (min(highs) if highs else math.inf)


#: How many configs' derived values the bank keeps (overrides in use at once).
_DERIVED_CACHE_SIZE: Final = 64


class _Derived:
    """What the per-reading path derives from one :class:`DetectorConfig`, computed
    once per config instead of once per reading (session 8: the bank's cost, issue
    9). Each value is the expression the detectors evaluated per reading before, so
    every comparison gives the same answer bit for bit. The ``*_dt`` / ``*_w`` pairs
    remember ``1 - exp(-dt / tau)`` for the last interval seen: a device's cadence
    is nearly constant (1 Hz, 5 minutes), so most readings reuse it; NaN never
    equals an interval, so the first reading computes it."""

    __slots__ = (
        "ceiling_dt",
        "ceiling_w",
        "config",
        "pressure_high",
        "pressure_low",
        "regime_span",
        "regime_w",
        "regime_window",
        "season_dt",
        "season_w",
        "shape_max_dt",
        "temperature_high",
        "temperature_low",
        "z_quiet",
    )

    def __init__(self, cfg: DetectorConfig) -> None:
        self.config = cfg
        #: The longest interval the shape tests judge (DetectorConfig.thermal_tau_min_s).
        self.shape_max_dt = cfg.thermal_tau_min_s * (-math.log(cfg.shape_ratio))
        #: Under this |z| the statistical detector finds no level (the lower threshold).
        self.z_quiet = cfg.z_warning if cfg.z_warning < cfg.z_critical else cfg.z_critical
        self.temperature_low, self.temperature_high = _inside(cfg.temperature)
        self.pressure_low, self.pressure_high = _inside(cfg.pressure)
        self.season_dt = self.season_w = math.nan
        self.ceiling_dt = self.ceiling_w = math.nan
        self.regime_span = self.regime_window = self.regime_w = math.nan


@dataclass(slots=True)
class DetectorBank:
    """The detector states of every device this worker currently owns.

    ``observe`` is the per-reading hot path.
    States changed since the last :meth:`clear_dirty` are listed by
    :meth:`dirty_devices` so the adapter saves only those (after the commit).
    """

    config: DetectorConfig = field(default_factory=DetectorConfig)
    _states: dict[str, DeviceState] = field(default_factory=dict)
    _dirty: set[str] = field(default_factory=set)
    _shard_of: dict[str, str] = field(default_factory=dict)
    #: Readings ignored as duplicates or out of order (seq <= last seq).
    ignored: int = 0
    #: Per-device and per-type overrides (the current set, e.g. refreshed from
    #: PostgreSQL by :mod:`processor.detector_overrides`); ``None``: none.
    overrides: Callable[[], DetectorOverrides | None] | None = None
    #: The config of the reading being judged (``config`` or its override).
    _active: DetectorConfig = field(default_factory=DetectorConfig)
    #: What the detectors derive from ``_active``.
    _derived: _Derived = field(default_factory=lambda: _Derived(DetectorConfig()))
    #: The derived values of every config judged by lately, by ``id`` (each entry
    #: holds its config, so the id stays its own): devices with overrides and
    #: without alternate in a batch, and must not rebuild them per reading.
    _derived_by_config: dict[int, _Derived] = field(default_factory=dict)

    # -- state management -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._states)

    def devices(self) -> list[str]:
        return list(self._states)

    def state_of(self, device_id: str) -> DeviceState | None:
        return self._states.get(device_id)

    def load_state(self, device_id: str, data: bytes) -> bool:
        """Install a state saved by another worker. Returns False (and keeps no
        state) when the bytes are not a valid state of this version: a corrupt or
        old entry costs a re-learned baseline, never a crash."""
        try:
            self._states[device_id] = DeviceState.from_bytes(data)
        except ValueError:
            return False
        self._dirty.discard(device_id)
        return True

    def missing(self, device_ids: Iterable[str]) -> list[str]:
        """The devices among ``device_ids`` with no state yet (to fetch from Redis)."""
        states = self._states
        return sorted({d for d in device_ids if d not in states})

    def dirty_devices(self) -> list[str]:
        return sorted(self._dirty)

    def dirty_states(self) -> dict[str, bytes]:
        """Serialized states of the devices changed since the last ``clear_dirty``."""
        return {d: self._states[d].to_bytes() for d in sorted(self._dirty) if d in self._states}

    def clear_dirty(self, device_ids: Iterable[str] | None = None) -> None:
        if device_ids is None:
            self._dirty.clear()
        else:
            self._dirty.difference_update(device_ids)

    def forget(self, device_ids: Iterable[str]) -> None:
        """Drop states (a shard was handed over, or a commit failed and the saved
        states must be reloaded before the replay)."""
        for device_id in device_ids:
            self._states.pop(device_id, None)
            self._dirty.discard(device_id)
            self._shard_of.pop(device_id, None)

    def forget_shard(self, shard_id: str) -> list[str]:
        """Drop the states of the devices last seen on ``shard_id``; returns them."""
        gone = [d for d, s in self._shard_of.items() if s == shard_id]
        self.forget(gone)
        return gone

    def evict_idle(self, idle_after_s: float) -> list[str]:
        """Forget devices whose last reading is more than ``idle_after_s`` older (event
        time) than the newest reading the bank holds, and whose state is saved; returns
        them, sorted.

        Why: device ids churn (replacements, renames, test rigs), and a bank that keeps
        every device ever seen grows without bound. An evicted device that reports
        again gets its saved state back through the adapter's state loader (Redis), so
        nothing is re-learned; a device still dirty (not saved) is kept, so eviction
        never loses a state change. The clock is the bank's own newest reading, not
        the wall (as silence is judged on the shard's progress): a consumer catching
        up after an outage reads old event times and must not evict the devices it is
        reading. Silence does not need these states: :mod:`processor.core.silence`
        keeps its own per-shard registry, so an evicted device that went quiet is
        still reported.
        """
        states = self._states
        if not states:
            return []
        horizon = max(st.last_ts for st in states.values()) - idle_after_s
        dirty = self._dirty
        gone = sorted(
            device_id
            for device_id, st in states.items()
            if st.last_ts < horizon and device_id not in dirty
        )
        self.forget(gone)
        return gone

    # -- detection --------------------------------------------------------------------

    def observe(
        self, reading: Reading, *, arrival: datetime | None = None, shard_id: str = ""
    ) -> list[Anomaly]:
        """Run the detectors on one reading; returns its anomalies (usually none)."""
        out: list[Anomaly] = []
        self.observe_into(reading, out, arrival=arrival, shard_id=shard_id)
        return out

    def observe_into(
        self,
        reading: Reading,
        out: list[Anomaly],
        *,
        arrival: datetime | None = None,
        shard_id: str = "",
    ) -> None:
        """:meth:`observe` appending to ``out``: the batch path, one list per batch.
        ``arrival`` is accepted for the callers' sake; silence (the one detector that
        used it) lives in :mod:`processor.core.silence`."""
        device_id = reading.device_id
        st = self._states.get(device_id)
        sensor_type = reading.sensor_type
        boot = reading.boot
        # Once per reading: datetime.timestamp() is one of the dearer calls here.
        t = reading.ts.timestamp()
        if st is None or st.sensor_type != sensor_type:
            # A device that changed its sensor type is a new device for the detectors.
            st = DeviceState(STATE_VERSION, sensor_type.value)
            self._states[device_id] = st
            if boot is not None:
                st.last_boot = boot
        elif boot is not None and boot != st.last_boot:
            if boot < st.last_boot:  # a late reading of an earlier series
                self.ignored += 1
                return
            # The device restarted (issue 10 item 4): its seq starts again, and the
            # baseline carries on (same machine, same sensor).
            st.last_boot = boot
        elif reading.seq <= st.last_seq and t // _DAY_S <= st.last_ts // _DAY_S:
            self.ignored += 1
            return
        # else a seq that went back on a later UTC event day: a restarted sequence
        # (no boot counter, or one left unchanged). The store keeps it (its key,
        # (device_id, boot, seq, event day), is new), so the detectors judge it too; a
        # re-send or a late record carries its original, earlier time and is ignored,
        # and a same-day restart is a seq_conflict dead letter, ignored here as well.
        if shard_id and self._shard_of.get(device_id) != shard_id:
            self._shard_of[device_id] = shard_id
        if self.overrides is None:
            cfg = self.config
        else:
            current = self.overrides()
            cfg = current.config_for(device_id, st.sensor_type) if current else self.config
        self._active = cfg
        if self._derived.config is not cfg:
            derived = self._derived_by_config.get(id(cfg))
            if derived is None:
                if len(self._derived_by_config) >= _DERIVED_CACHE_SIZE:
                    self._derived_by_config.clear()  # overrides reloaded: new objects
                derived = self._derived_by_config[id(cfg)] = _Derived(cfg)
            self._derived = derived
        self._dirty.add(device_id)
        if sensor_type is _EQUIPMENT_STATUS:
            if reading.status is not None:
                self._status(reading, st, t, out)
        elif reading.value is not None:
            self._analog(reading, reading.value, st, t, out)
        st.last_seq = reading.seq
        st.last_ts = t

    # -- the detectors ----------------------------------------------------------------

    def _analog(
        self, reading: Reading, x: float, st: DeviceState, t: float, out: list[Anomaly]
    ) -> None:
        # Session 8, the per-reading cost (issue 9): the interval and the derived
        # constants are computed once here, and a detector whose common case is
        # "nothing to do" (a value inside every limit outside an episode, |z| under
        # both thresholds) is not called for it: the test is cheaper than the call.
        # What each detector decides is unchanged.
        cfg = self._active
        derived = self._derived
        if reading.sensor_type is _PRESSURE:
            lim = cfg.pressure
            inside_low, inside_high = derived.pressure_low, derived.pressure_high
        else:
            lim = cfg.temperature
            inside_low, inside_high = derived.temperature_low, derived.temperature_high
        mark = len(out)
        # The envelope before this reading: an outlier must not widen the range the
        # shape test's lag bound judges it by (see _beyond_lag).
        env_low, env_high = st.env_low, st.env_high
        if st.limit_level or not inside_low < x < inside_high:
            self._limit(reading, x, st, t, lim, out)

        n = st.count
        stuck = False
        delta = step = 0.0
        dt = t - st.last_ts
        # The shape tests judge series whose interval is short against a machine
        # body's thermal lag (see DetectorConfig.thermal_tau_min_s).
        shaped = (lim.shape or lim.regimes) and n > 0 and 0.0 < dt <= derived.shape_max_dt
        returned = False  # this reading ended an outlier: its jump is the way back
        if st.pending:
            if shaped:
                returned = self._judge_pending(reading, x, st, dt, out)
            else:
                st.pending = []
        if n:
            delta = x - st.last_value
            step = delta if delta >= 0.0 else -delta
            # Rate of change over event time; dt <= 0 (same or earlier ts) says nothing.
            if dt > 0.0 and step >= lim.spike_min_delta:
                self._spike(reading, delta, dt, st, lim, out)
            # The sensor's resolution: its smallest step (1e-9 absorbs float noise).
            if step > 1e-9 and (st.resolution == 0.0 or step < st.resolution):
                st.resolution = step
            stuck = self._stuck(reading, x, st, t, lim, out)
        else:
            st.first_ts = t
            st.env_low = st.env_high = x
            self._start_run(st, x, t)

        # Robust statistical detector against the baseline *before* this reading. The
        # baseline is a Holt level + trend, so a machine warming up along its thermal
        # lag is followed without lag; a jump or a level shift is not.
        if n >= cfg.warmup:
            scale = math.sqrt(st.var)
            if scale < lim.min_scale:
                scale = lim.min_scale
            expected = st.mean + st.trend
            residual = x - expected
            if lim.statistical:
                z = residual / scale
                slow = dt > cfg.fast_cadence_s
                if lim.regimes or slow:
                    z = self._envelope(x, z, scale, st, dt)
                elif x > st.env_high:  # the span the shape test's lag bound needs
                    st.env_high = x
                elif x < st.env_low:
                    st.env_low = x
                z_quiet = derived.z_quiet
                if st.stat_level or not -z_quiet < z < z_quiet:
                    self._statistical(reading, x, z, expected, scale, st, out)
                # Levels learn from readings no other detector flagged, outside
                # a limit episode (an out-of-range surge must not become the
                # running plateau).
                # Session 7: nor a frozen value (stuck): it is not the line's level.
                regime = lim.regimes and not stuck
                if regime and dt > 0.0 and len(out) == mark and not st.limit_level:
                    self._regime_levels(reading, x, st, t, dt, out, env_low, env_high, lim)
                if lim.step_cusum and not slow:
                    self._shift(reading, x, z, expected, scale, st, t, out)
            # A flat-lined sensor tells nothing about the process: keep the baseline.
            if not stuck:
                bound_r = cfg.z_clip * scale
                if residual > bound_r:
                    residual = bound_r
                elif residual < -bound_r:
                    residual = -bound_r
                a = cfg.ewma_alpha
                st.mean = expected + a * residual
                st.trend += a * cfg.trend_beta * residual
                st.var = (1.0 - a) * (st.var + a * residual * residual)
        else:
            # Warm-up: a = 1/n gives the exact mean and population variance.
            a = 1.0 / (n + 1)
            residual = x - st.mean
            st.mean += a * residual
            st.var = (1.0 - a) * (st.var + a * residual * residual)
        if lim.statistical and not lim.regimes and not stuck and n:
            # A regime sensor's level at an hour is bimodal (running or stopped):
            # a profile of it would say nothing.
            self._seasonal(reading, x, st, t, dt, lim, out)
            if lim.ceiling_margin is not None and not st.limit_level:
                # A reading another detector already flagged (a spike, an
                # out-of-range value) must not lift the level the ceiling learns.
                flagged = False
                if len(out) > mark:
                    for earlier in out[mark:]:
                        if earlier.anomaly_type in _FLAGS_A_READING:
                            flagged = True
                if not flagged:
                    self._ceiling(reading, x, st, t, dt, lim.ceiling_margin, out)
        if n:
            if shaped and not stuck and not returned and not st.pending and n >= cfg.warmup:
                if lim.regimes:
                    # _surge_start's first test written out, as in _regime_levels.
                    if not delta < 0.5 * (env_high - env_low):
                        self._surge_candidate(reading, x, st, t, out, mark, env_low, env_high, lim)
                else:
                    self._candidate(reading, x, st, t, step, out, mark, env_low, env_high)
            # Track the lower quartile of |change| (multiplicative steps, up 1 %,
            # down 3 %: the equilibrium is P(|change| <= q) = 1/4).
            q = st.diff_q
            if q <= 0.0:
                st.diff_q = step
            elif step > q:
                st.diff_q = q * 1.01
            else:
                st.diff_q = q * 0.97
                if st.diff_q < 0.5 * st.resolution:
                    st.diff_q = 0.5 * st.resolution
        st.count = n + 1
        st.prev_value2 = st.prev_value
        st.prev_value = st.last_value
        st.last_value = x

    def _candidate(
        self,
        reading: Reading,
        x: float,
        st: DeviceState,
        t: float,
        step: float,
        out: list[Anomaly],
        mark: int,
        env_low: float,
        env_high: float,
    ) -> None:
        """Remember this reading for the shape test when it jumps by ``shape_jump_z``
        sigmas of the learned one-step noise from a flat level: the two changes
        before it within 3 sigmas of noise each (a machine along its lag transient
        is not flat; the lag argument holds from a steady level only). A regime
        quantity (pressure) takes the surge test instead (:meth:`_surge_candidate`,
        called by :meth:`_analog`). ``out[mark:]``: this reading's anomalies so far."""
        cfg = self._active
        sigma = st.diff_q / _QUARTILE_OF_ABS_NORMAL_DIFF
        if sigma < st.resolution:
            sigma = st.resolution
        if sigma <= 0.0 or step < cfg.shape_jump_z * sigma:
            return
        a, b, c = st.last_value, st.prev_value, st.prev_value2
        calm = _FLAT_SIGMAS * sigma
        base = (a + b + c) / 3.0
        moving = False
        if not (-calm <= a - b <= calm and -calm <= b - c <= calm):
            # Session 7: a body that is moving (just stopped, warming up) at a slow
            # cadence. A first-order body moves at most 1 - exp(-dt / tau_min) of its
            # gap to where its heat input drives it in one interval *from any state*,
            # so the lag bound (:meth:`_beyond_lag`, one leg beyond it, judged at the
            # return) needs no flat level before: the candidate is judged from the
            # last reading. At a fast cadence the flat level is asked for as before
            # (the step test shares this path; a moving body's step is not judged).
            # Only once a week has been seen (``ceiling_days``, the ceiling's
            # argument: a week of any calendar holds the machine's running and its
            # stopped levels): before, the envelope may lack the running level, and
            # a first warm-up that stops is "beyond the lag" to it.
            if (
                t - st.last_ts <= cfg.fast_cadence_s
                or t - st.first_ts < cfg.ceiling_days * 86_400.0
            ):
                return
            base = a
            moving = True
        # The departure from the level (three readings), not only the change from
        # the last one, must be ``shape_jump_z`` sigmas: one noisy reading before
        # must not make an ordinary one look like a jump.
        reach = cfg.shape_jump_z * sigma
        if -reach < x - base < reach:
            return
        tolerance = cfg.shape_ratio * step
        flagged = any(f.anomaly_type in _FLAGS_A_READING for f in out[mark:])
        st.pending = [
            float(reading.seq),
            t,
            float(reading.series),
            x,
            base,
            0.0,
            1.0 if flagged else 0.0,
            x,
            tolerance,
            env_low,
            env_high,
        ]
        if moving:
            st.pending.append(1.0)

    def _judge_pending(
        self, reading: Reading, x: float, st: DeviceState, dt: float, out: list[Anomaly]
    ) -> bool:
        """Judge the candidate jump with this reading. An isolated outlier: back near
        the level before it in one interval, then steady there for one more reading
        (SPIKE). A lasting step, at a fast cadence only: flat near it for
        ``shape_step_readings`` readings, their mean ``shape_jump_z`` noise sigmas
        off the level before (DRIFT, then re-base). Neither: the process moving
        along its lag, or noise (forgotten). Both are reported on the candidate
        reading (its seq, time and boot): a pure function of the saved state, so a
        replay gives the same identity. Returns whether this reading came back.

        Session 6: once the envelope has been learned for ``envelope_learn_days``,
        an outlier with a leg beyond the lag is reported when it comes back, without
        waiting for a steady level after it (a machine that stops right after the
        outlier cools, and the lag bound already says the excursion was not the
        body's). In the first day the envelope may not span the machine's levels
        yet, and the steady level after the return is still asked for. A regime
        quantity (pressure) takes the surge test (:meth:`_judge_surge`)."""
        cfg = self._active
        if cfg.limits_for(reading.sensor_type).regimes:
            return self._judge_surge(reading, x, st, dt, out)
        pending = st.pending
        value, base = pending[3], pending[4]
        jump = value - base
        size = jump if jump >= 0.0 else -jump
        tolerance = pending[8]
        sigma = st.diff_q / _QUARTILE_OF_ABS_NORMAL_DIFF
        if sigma < st.resolution:
            sigma = st.resolution
        unit = reading.unit
        if pending[5] < 0.0:
            # Came back at the previous reading: an outlier if the level is steady
            # after it too (a body recovering along its lag keeps moving).
            st.pending = []
            calm = _FLAT_SIGMAS * sigma
            if not -calm <= x - pending[7] <= calm:
                return False
            self._outlier_spike(reading, st, pending, out)
            return False
        back = x - base
        flat = x - value
        # Back: near the level before, *in one interval* (the last change at least
        # the tolerance): a body recovering along its lag from a short stop moves
        # (1 - exp(-dt / tau)) <= 39 % of its gap per interval, so it gets back
        # only gradually.
        returned = x - st.last_value
        if -tolerance <= back <= tolerance and not -tolerance < returned < tolerance:
            if pending[6] or not self._beyond_lag(st, base, jump, returned, dt, sigma):
                st.pending = []
            else:
                pending[5] = -(pending[5] + 1.0)
                pending[7] = x
                if st.last_ts + dt - st.first_ts >= cfg.envelope_learn_days * 86_400.0:
                    st.pending = []
                    self._outlier_spike(reading, st, pending, out)
            return True
        # Flat: within the tolerance and within noise of the candidate (a body
        # along its lag keeps moving; a sensor's offset or glitch does not).
        calm = _FLAT_SIGMAS * sigma
        if calm > tolerance or len(pending) > _P_MOVING:
            # From a moving body the excursion moves with it (a sensor's offset
            # rides on the body's path): it must stay out, within half its jump.
            calm = tolerance
        if not -calm <= flat <= calm:
            st.pending = []
            return False
        pending[5] += 1.0
        pending[7] += x
        after = int(pending[5])
        if after < cfg.shape_step_readings:
            return False
        st.pending = []
        if dt > cfg.shape_step_max_interval_s:
            # At a slow cadence a machine stopping briefly at a shift's load change
            # lands on its new equilibrium within one interval: a step that stays,
            # from the process. Only an outlier is judged there.
            return False
        level = pending[7] / (after + 1)
        if x == value and pending[7] == value * (after + 1):
            return False  # not a single change: a frozen sensor (the stuck detector's)
        offset = level - base
        magnitude = offset if offset >= 0.0 else -offset
        if magnitude < cfg.shape_jump_z * sigma:
            return False
        # More than the process can move in one interval: a body's lag moves at
        # most (1 - exp(-dt / tau_min)) of the span it has been seen to cover
        # (0.17 % at 1 Hz, 9.5 % at 60 s).
        if magnitude <= (1.0 - math.exp(-dt / cfg.thermal_tau_min_s)) * (st.env_high - st.env_low):
            return False
        seq = int(pending[0])
        # Reported even when the jump itself was flagged (STATISTICAL says "an
        # outlier", this says "it stays": a replaced sensor), then re-based.
        out.append(
            self._pending_anomaly(
                reading,
                st,
                pending,
                AnomalyType.DRIFT,
                size,
                f"{st.sensor_type} stays {'above' if offset > 0 else 'below'} the device baseline "
                f"since seq {seq}: a step of {offset:+.1f} {unit} within one reading, "
                f"faster than a machine's thermal lag allows (a replaced or recalibrated "
                f"sensor?); now {x:g} {unit}",
            )
        )
        self._rebase(st, offset, x)
        return False

    def _beyond_lag(
        self,
        st: DeviceState,
        base: float,
        jump: float,
        returned: float,
        dt: float,
        sigma: float,
    ) -> bool:
        """Whether an excursion that came back (out by ``jump`` from ``base``, back by
        ``returned`` from the last outlier reading) is more than the process can do.

        Within one interval ``dt`` a body moves at most ``1 - exp(-dt / tau_min)`` of
        its gap to where its heat input drives it, and no heat input drives it beyond
        the levels the device has shown (its envelope: running at full load, stopped).
        So it can dip by at most that share of (level - coldest) and come back by at
        most that share of (hottest - dip), and the mirror for a rise. An outlier is
        a sensor's when one leg beats its bound by more than noise can add. This
        replaces the fixed ``spike_min_delta`` (5 C) of the shape test, which cannot
        say that: a machine warming up that stops for one reading dips and comes back
        by 4-5 C at a 5-minute cadence, while at a steady level a 12 C outlier is
        plainly not the lag, and at 1 Hz the lag's share is 0.17 %."""
        reach = 1.0 - math.exp(-dt / self._active.thermal_tau_min_s)
        last = st.last_value
        low, high = st.env_low, st.env_high
        if len(st.pending) > _P_ENV_HIGH:  # the envelope before the outlier widened it
            low, high = st.pending[_P_ENV_LOW], st.pending[_P_ENV_HIGH]
        if jump < 0.0:
            out_room, back_room = base - low, high - last
        else:
            out_room, back_room = high - base, last - low
        # What noise can add to a leg: a leg is a change between readings, so
        # ``z_critical`` sigmas of the one-step change (one sigma of a reading / sqrt 2
        # was too little: at 1 Hz with 0.1 C resolution the quartile estimate runs
        # low, and a 1.6 C dip of a noisy sensor passed); at 1 Hz, where the lag moves
        # 0.17 % of a gap per interval, this term decides.
        margin = self._active.z_critical * sigma
        size = jump if jump >= 0.0 else -jump
        back = returned if returned >= 0.0 else -returned
        return (
            size > reach * (out_room if out_room > 0.0 else 0.0) + margin
            or back > reach * (back_room if back_room > 0.0 else 0.0) + margin
        )

    def _outlier_spike(
        self, reading: Reading, st: DeviceState, pending: list[float], out: list[Anomaly]
    ) -> None:
        """Report the candidate (which came back: ``pending[5]`` is minus its length,
        ``pending[7]`` the reading back) as an isolated outlier, and keep it out of
        the envelope."""
        value, base = pending[3], pending[4]
        jump = value - base
        length = int(-pending[5])
        unit = reading.unit
        if len(pending) > _P_ENV_HIGH:  # the outlier must not stay in the envelope
            if st.env_low < pending[_P_ENV_LOW]:
                st.env_low = pending[_P_ENV_LOW]
            if st.env_high > pending[_P_ENV_HIGH]:
                st.env_high = pending[_P_ENV_HIGH]
        out.append(
            self._pending_anomaly(
                reading,
                st,
                pending,
                AnomalyType.SPIKE,
                jump if jump >= 0.0 else -jump,
                f"{st.sensor_type} {value:g} {unit} was an isolated outlier "
                f"({jump:+.1f} {unit} for {length} reading"
                f"{'s' if length > 1 else ''}, back to {pending[7]:g} {unit} at the next)",
            )
        )

    def _surge_candidate(
        self,
        reading: Reading,
        x: float,
        st: DeviceState,
        t: float,
        out: list[Anomaly],
        mark: int,
        env_low: float,
        env_high: float,
        lim: AnalogLimits,
    ) -> None:
        """Session 6: remember a reading of a regime quantity (a press line's
        pressure) that leaves a steady level (its two changes before within 3 sigmas
        of the one-step noise: the line at rest, or at 1 Hz a cycle's slow ramp)
        upwards by at least half the envelope's span (a jump to the running level,
        not a disturbance at rest) and ``z_critical`` minimum scales, for
        :meth:`_judge_surge`. Every start is such a candidate; a run
        is told from a surge when the line is back (``DetectorConfig.press_cycle_min_s``)."""
        cfg = self._active
        if not self._surge_start(x, st, lim, env_low, env_high):
            return
        base = (st.last_value + st.prev_value + st.prev_value2) / 3.0
        flagged = any(f.anomaly_type in _FLAGS_A_READING for f in out[mark:])
        st.pending = [
            float(reading.seq),
            t,
            float(reading.series),
            x,
            base,
            0.0,
            1.0 if flagged else 0.0,
            x,
            cfg.shape_ratio * (x - base),
            env_low,
            env_high,
            st.last_ts,
            x,
            x,
        ]

    def _surge_start(
        self, x: float, st: DeviceState, lim: AnalogLimits, env_low: float, env_high: float
    ) -> bool:
        """Whether ``x`` leaves a steady level upwards as a surge candidate does
        (:meth:`_surge_candidate`; session 7: the regime levels do not learn it,
        see :meth:`_regime_levels`)."""
        a, b, c = st.last_value, st.prev_value, st.prev_value2
        jump = x - a
        if jump < 0.5 * (env_high - env_low):
            return False
        if jump < self._active.z_critical * lim.min_scale:
            return False
        sigma = st.diff_q / _QUARTILE_OF_ABS_NORMAL_DIFF
        if sigma < st.resolution:
            sigma = st.resolution
        calm = _FLAT_SIGMAS * sigma
        # Session 8: or within ``shape_ratio`` of the jump ("flat" as the shape test
        # means it). The one-step sigma is learned from the residual pressure's
        # noise (0.05 bar), but a running line at 1 Hz moves by its cycle (up to
        # 0.08 x the set-point per second on the release) and its noise (1 % of
        # it), so a surge on a running line never left a "steady" level (day seed
        # 9's fac01-l05-m03, fac01-l01-m11). Any candidate's jump is half the
        # envelope's span, about half the set-point, so a running line's own
        # changes stay within half of it; a start from rest is calm either way.
        relative = self._active.shape_ratio * jump
        if calm < relative:
            calm = relative
        return -calm <= a - b <= calm and -calm <= b - c <= calm

    def _judge_surge(
        self, reading: Reading, x: float, st: DeviceState, dt: float, out: list[Anomaly]
    ) -> bool:
        """Session 6: judge a pressure surge candidate with this reading. Still up
        (above half the jump): one more reading of the excursion, forgotten after
        ``shape_step_readings`` (a run). Back: a SPIKE on the candidate's reading
        (its identity: replay-safe) when the excursion cannot have been a run of the
        press (``DetectorConfig.press_cycle_min_s``: shorter than a press cycle,
        flat, or above the line's peak), unless the limit or statistical detector
        already reported it. Returns whether this reading came back."""
        cfg = self._active
        pending = st.pending
        if len(pending) <= _P_TOP:  # not a surge candidate: nothing to judge
            st.pending = []
            return False
        base = pending[4]
        if x - base > pending[8]:
            pending[5] += 1.0
            if pending[5] >= cfg.shape_step_readings:  # longer than a glitch: a run
                st.pending = []
            elif x < pending[_P_LOW]:
                pending[_P_LOW] = x
            elif x > pending[_P_TOP]:
                pending[_P_TOP] = x
            return False
        st.pending = []
        t = st.last_ts + dt
        readings = int(pending[5]) + 1
        low, top = pending[_P_LOW], pending[_P_TOP]
        peak = pending[_P_ENV_HIGH]
        unit = reading.unit
        lasted = t - pending[_P_BEFORE]
        if lasted < cfg.press_cycle_min_s:
            why = (
                f"over within {lasted:.3g} s, shorter than a press cycle "
                f"({cfg.press_cycle_min_s:g} s at least)"
            )
        elif readings >= cfg.surge_flat_readings and top - low <= cfg.surge_flat_share * low:
            why = (
                f"flat within {top - low:.3g} {unit}, which a press cycling over a "
                f"quarter of its set-point is not"
            )
        elif (
            t - st.first_ts >= cfg.envelope_learn_days * 86_400.0
            and peak > base
            and top > peak * (1.0 + cfg.surge_top_share)
        ):
            why = (
                f"{100.0 * (top / peak - 1.0):.0f} % above the highest pressure the line "
                f"has shown ({peak:.1f} {unit})"
            )
        else:
            return True  # a short run
        if st.env_low < pending[_P_ENV_LOW]:  # the surge must not stay in the envelope
            st.env_low = pending[_P_ENV_LOW]
        if st.env_high > peak:
            st.env_high = peak
        # Session 8: a surge the limit or the rate detector already reported is not
        # reported twice, but leaves the envelope all the same (day seed 9's
        # fac01-l03-m09: one left in it at 243 bar let an out-of-range episode widen
        # it to 374 bar, and a later surge was under half its span).
        if pending[6]:
            return True
        value = pending[3]
        out.append(
            self._pending_anomaly(
                reading,
                st,
                pending,
                AnomalyType.SPIKE,
                top - base,
                f"{st.sensor_type} {value:g} {unit} was a surge from a steady "
                f"{base:.1f} {unit} for {readings} reading{'s' if readings > 1 else ''}, "
                f"back to {x:g} {unit}: {why}",
            )
        )
        return True

    @staticmethod
    def _rebase(st: DeviceState, jump: float, x: float) -> None:
        """After a lasting step, one anomaly per change: move everything learned in
        the sensor's units by the step (the profile's levels, the envelope, the
        baseline) and clear the CUSUMs, so the old level is not judged again."""
        profile = st.profile
        for b in range(_PROFILE_BINS if profile else 0):
            if profile[b + _PROFILE_BINS] >= 0.0:
                profile[b] += jump
        st.env_low += jump
        st.env_high += jump
        st.mean = x
        st.shift_pos = st.shift_neg = 0.0
        st.shift_reported = False
        st.season_level = 0.0
        st.season_reported = False
        st.drift_pos = st.drift_neg = 0.0
        st.drift_reported = False

    @staticmethod
    def _pending_anomaly(
        reading: Reading,
        st: DeviceState,
        pending: list[float],
        kind: AnomalyType,
        score: float,
        why: str,
    ) -> Anomaly:
        return Anomaly(
            device_id=reading.device_id,
            seq=int(pending[0]),
            ts=_epoch_to_datetime(pending[1]),
            anomaly_type=kind,
            severity=Severity.WARNING,
            score=round(score, 3),
            explanation=why,
            sensor_type=st.sensor_type,
            value=pending[3],
            boot=int(pending[2]),
        )

    def _regime_levels(
        self,
        reading: Reading,
        x: float,
        st: DeviceState,
        t: float,
        dt: float,
        out: list[Anomaly],
        env_low: float,
        env_high: float,
        lim: AnalogLimits,
    ) -> None:
        """DRIFT when the mean of a regime (the line running, or stopped) over
        ``regime_mean_s`` (at least ``regime_mean_readings`` readings) leaves its
        learned level by ``regime_z`` of its learned spread: a transducer losing span
        reads its running plateau low (its residual pressure barely moves), a
        replaced one reads both with an offset. Regimes are told apart by the signal
        itself, so no status sensor is needed: a reading belongs to the first level
        seen until it is a different regime (``_other_regime``: a running press line
        and its residual pressure are an order of magnitude apart, its cycle and
        noise are not); from then on to the nearer of the two levels. Each regime
        is judged once both have been seen (which is the running one is known) and
        it has been seen itself for ``regime_ready_windows`` windows of its mean
        beyond the first (its spread estimated from that many independent means),
        not at a fixed time after the device's first reading. One anomaly per
        change: the level is not learned while the departure is reported, and a
        departure that lasts ``regime_adopt_days`` is adopted as the new level (a
        replaced sensor, a new product's set-point).

        Session 7: a reading that leaves a steady level as a surge candidate does,
        and the readings after it while that candidate is judged, are not learned:
        a surge (the spike detector's, reported only when it is back) must not
        become the "other regime" of a line seen only running so far, nor move a
        running mean that then stands still over a weekend and is adopted. A
        press start is such a candidate too: a run loses its first
        1-``shape_step_readings`` readings, its ramp, which say nothing of its
        plateau."""
        cfg = self._active
        if len(st.pending) > _P_TOP:
            return
        # _surge_start's first test written out (most readings do not jump by half
        # the envelope), so that the call is made only when it can say yes.
        if not x - st.last_value < 0.5 * (env_high - env_low) and self._surge_start(
            x, st, lim, env_low, env_high
        ):
            return
        r = st.regime
        if len(r) < _R_LEN:
            self._upgrade_regimes(st)
        seen_run, seen_idle = r[_R_SEEN], r[_R_SEEN + 1]
        if seen_idle > 0.0:  # both regimes seen: the nearer level
            running = x > 0.5 * (r[_R_IDLE + 1] + r[_R_RUN + 1])
        elif seen_run > 0.0 and _other_regime(x, r[_R_RUN + 1], lim.min_scale):
            # The second regime: the lower of the two is the stopped line. The first
            # one was learned in the running slot, so it moves if it is the lower.
            running = x > r[_R_RUN + 1]
            if running:
                r[_R_IDLE : _R_IDLE + 3] = r[_R_RUN : _R_RUN + 3]
                r[_R_SEEN + 1] = seen_run
                r[_R_RUN : _R_RUN + 3] = (0.0, 0.0, 0.0)
                r[_R_SEEN] = 0.0
                for j in (_R_SQUARES, _R_SCATTER, _R_LAST):
                    r[j + 1], r[j] = r[j], 0.0
        else:
            running = True  # the first regime seen, whichever it is
        i = _R_RUN if running else _R_IDLE
        k = _R_SEEN if running else _R_SEEN + 1  # _R_SEEN_OF[i], without a dict lookup
        span = dt if dt < 3600.0 else 3600.0
        seen = r[k] + span
        r[k] = seen
        # The mean's window: regime_mean_s, or for the running line
        # regime_mean_readings readings at a slow cadence (they sample its press
        # cycle; a stopped line's residual pressure has no cycle to average);
        # equal weight over the regime's first window.
        window = cfg.regime_mean_s
        if running and cfg.regime_mean_readings * span > window:
            window = cfg.regime_mean_readings * span
        derived = self._derived  # 1 - exp(-span / window), remembered (see _Derived)
        if span == derived.regime_span and window == derived.regime_window:
            w_short = derived.regime_w
        else:
            w_short = 1.0 - math.exp(-span / window)
            derived.regime_span, derived.regime_window, derived.regime_w = span, window, w_short
        if span / seen > w_short:
            w_short = span / seen
        # Session 7: a stopped line back after an absence longer than its window
        # starts a fresh mean: it must not carry the residual pressure of a stop
        # hours ago (during a span loss since repaired: day seed 1's false DRIFTs).
        # Its readings are independent (noise of 0.05 bar, no cycle), so a fresh
        # mean is judged at once, by their scatter (below). Not the running line:
        # at 1 Hz its readings within a press cycle are not independent, and a
        # fresh mean of a part of a cycle would be judged as if they were. A fresh
        # mean weighs its readings equally (the weight that keeps the sum of
        # squared weights at 1/n).
        m = 0 if running else 1  # _R_MORE_OF[i]
        squares = r[_R_SQUARES + m]
        if not running and t - r[_R_LAST + m] > window:
            w_short = 1.0
        elif squares / (1.0 + squares) > w_short:
            w_short = squares / (1.0 + squares)
        r[_R_LAST + m] = t
        squares = (1.0 - w_short) * (1.0 - w_short) * squares + w_short * w_short
        r[_R_SQUARES + m] = squares
        # The level: equal weight over the time seen in the regime, then a memory
        # of regime_memory_days (of that regime's time).
        memory = cfg.regime_memory_days * 86_400.0
        w_long = span / (seen if seen < memory else memory)
        # The spread: from the end of the first window on (before it, the mean and
        # the level are the same average), equal weight, then the same memory.
        learned = seen - window
        w_spread = 0.0
        if learned > 0.0:
            w_spread = span / (learned if learned < memory else memory)
            if w_spread > 1.0:
                w_spread = 1.0
        short, level, spread = r[i], r[i + 1], r[i + 2]
        short += w_short * (x - short)
        departure = short - level
        size = departure if departure >= 0.0 else -departure
        which = 2.0 if running else 1.0
        # The floor: a departure under 0.5 % of the working (running) pressure is
        # within a 0.5 %-class transducer's accuracy: of no interest.
        floor = 0.005 * abs(r[_R_RUN + 1])
        threshold = cfg.regime_z * 1.25 * spread
        if threshold < floor:
            threshold = floor
        # Session 7: nor under regime_z sigmas of what the readings in the mean
        # scatter at random phases of the press cycle (the scatter times the root
        # of the sum of their squared weights). The learned spread is the mean's
        # usual scatter; a mean of a few readings (a fresh one, one reading after a
        # gap weighing 1/12, short runs at 5 minutes that sample the cycle at
        # random phases while long runs alias it) scatters more.
        scatter = r[_R_SCATTER + m]
        sampled = cfg.regime_z * 1.25 * scatter * math.sqrt(squares)
        if threshold < sampled:
            threshold = sampled
        # Ready once both regimes are known and this one's spread has been learned
        # from regime_ready_windows windows; or sooner, from its second window,
        # where the floor decides: the floor is above the threshold even with the
        # spread one standard error of its estimate higher (a mean absolute
        # deviation of n independent values: 0.755 / sqrt(n) of it). A stopped
        # line's mean scatters by hundredths of a bar, the floor is tenths: a swap
        # is judged at the next stop.
        windows = learned / window
        # Session 7: the running line is known without a stop when its readings
        # scatter by more than the scale floor: a press cycles over 0.80-1.05 x its
        # set-point (a mean |departure| of about 7 % of it, 2.8 bar at the lowest
        # 40 bar), a stopped line's residual pressure only by the transducer's noise
        # (hundredths of a bar). A line first seen running is judged from its
        # second window (where the floor decides) instead of from its first stop.
        known = r[_R_SEEN + 1] > 0.0 or r[_R_SCATTER] > lim.min_scale
        ready = known and spread > 0.0 and windows >= 1.0
        if ready and windows < cfg.regime_ready_windows:
            ready = cfg.regime_z * 1.25 * spread < floor * (1.0 - 0.755 / math.sqrt(windows))
        reported = r[_R_REPORTED] == which
        if ready and size >= threshold:
            if not reported and r[_R_REPORTED] == 0.0:
                r[_R_REPORTED], r[_R_SINCE] = which, t
                name = "running" if running else "stopped"
                unit = reading.unit
                minutes = window / 60.0
                out.append(
                    self._anomaly(
                        reading,
                        AnomalyType.DRIFT,
                        Severity.WARNING,
                        size / (1.25 * spread),
                        f"{st.sensor_type} {name} level {short:.1f} {unit} ({minutes:.0f}-minute "
                        f"mean) is {100.0 * departure / level if level else 0.0:+.0f} % off its "
                        f"learned {level:.1f} {unit} ({size / (1.25 * spread):.1f} sigma, "
                        f"limit {cfg.regime_z:g}): a transducer losing span or offset?",
                    )
                )
            elif reported and t - r[_R_SINCE] >= cfg.regime_adopt_days * 86_400.0:
                level = short  # a lasting change: the new normal
                r[_R_REPORTED] = 0.0
        else:
            if reported and size < 0.5 * threshold:
                r[_R_REPORTED] = 0.0
            # Judged early (the floor decides), a departure beyond half the
            # threshold is not learned either: the young level (equal weight over
            # a few windows) would follow a swap that shows over a short stop as
            # fast as the mean does, and never let it reach the threshold. Not
            # after regime_ready_windows: the spread must learn the mean's rare
            # large departures (a run restarting off its cycle's phase at 5 min).
            early = ready and windows < cfg.regime_ready_windows
            if not reported and (not early or size < 0.5 * threshold):
                apart = x - level
                off = apart if apart >= 0.0 else -apart
                r[_R_SCATTER + m] = scatter + w_long * (off - scatter)
                level += w_long * apart
                # A fresh mean (more than twice its steady squared weights) is
                # judged by its sampling scatter, not learned as the mean's usual
                # departure.
                if w_spread > 0.0 and squares * (2.0 * window - span) <= 2.0 * span:
                    spread += w_spread * (size - spread)
        r[i], r[i + 1], r[i + 2] = short, level, spread

    @staticmethod
    def _upgrade_regimes(st: DeviceState) -> None:
        """A regime list saved by the code before session 6 (8 entries, or empty):
        append the time seen per regime. A regime that code learned counts as seen
        since the device's first reading (so it is judged as it was after its day of
        learning); the old code put the first regime seen in the stopped slot, which
        moves to the running slot when it is the only one (its identity unknown)."""
        r = st.regime
        if not r:
            r.extend((0.0,) * _R_LEN)
            return
        if len(r) == _R_LEN_SESSION_6:
            # Session 6's list: its means are whole (the steady squared weights
            # come with the next readings), the scatter learns from the next
            # reading on (until then the learned spread judges, as it did).
            last = st.last_ts
            r.extend((0.0, 0.0, 0.0, 0.0, last, last))
            return
        elapsed = st.last_ts - st.first_ts
        if elapsed <= 0.0:
            elapsed = 1.0
        run = elapsed if any(r[_R_RUN : _R_RUN + 3]) else 0.0
        idle = elapsed if any(r[_R_IDLE : _R_IDLE + 3]) else 0.0
        if idle and not run:
            r[_R_RUN : _R_RUN + 3] = r[_R_IDLE : _R_IDLE + 3]
            r[_R_IDLE : _R_IDLE + 3] = (0.0, 0.0, 0.0)
            run, idle = idle, 0.0
        del r[_R_SEEN:]
        r.extend((run, idle))
        last = st.last_ts
        r.extend((0.0, 0.0, 0.0, 0.0, last, last))

    def _envelope(self, x: float, z: float, scale: float, st: DeviceState, dt: float) -> float:
        """Regime sensors: the z to judge (0 inside the learned envelope widened by
        ``z_warning`` scales); learn the envelope from readings the baseline does not
        flag, and let it shrink towards the baseline with a memory of three months."""
        cfg = self._active
        z_warning = cfg.z_warning
        margin = z_warning * scale
        inside = st.env_low - margin <= x <= st.env_high + margin
        learning = st.last_ts - st.first_ts < cfg.envelope_learn_days * 86_400.0
        reach = margin  # the same product: z_warning scales
        # Learn from readings the baseline does not flag, or that extend the envelope
        # by less than a flag's worth (a cycle's peaks); a surge beyond both is not.
        if -z_warning < z < z_warning or st.env_low - reach <= x <= st.env_high + reach:
            if x > st.env_high:
                st.env_high = x
            elif x < st.env_low:
                st.env_low = x
        if dt > 0.0:
            w = (dt if dt < 3600.0 else 3600.0) / (90 * 86_400.0)
            st.env_high -= (st.env_high - st.mean) * w
            st.env_low += (st.mean - st.env_low) * w
        return 0.0 if inside or learning else z

    # -- limit: hysteresis and a minimum dwell -----------------------------------------

    def _limit(
        self,
        reading: Reading,
        x: float,
        st: DeviceState,
        t: float,
        lim: AnalogLimits,
        out: list[Anomaly],
    ) -> None:
        """Static limits, fired when the level rises; the episode's level comes down
        only after ``limit_rearm_readings`` readings over ``limit_rearm_seconds``
        inside the hysteresis band, so noise around a limit gives one anomaly."""
        level, bound = _level(x, lim, 0.0)
        if level > st.limit_level:
            st.limit_level = level
            st.limit_clear_since, st.limit_clear_count = -1.0, 0
            assert bound is not None
            side = "above" if x >= bound else "below"
            kind = "critical" if level == 2 else "warning"
            unit = reading.unit
            out.append(
                self._anomaly(
                    reading,
                    AnomalyType.LIMIT,
                    Severity.CRITICAL if level == 2 else Severity.WARNING,
                    abs(x - bound),
                    f"{st.sensor_type} {x:g} {unit} is {side} the {kind} limit {bound:g} {unit}",
                )
            )
            return
        if st.limit_level == 0:
            return
        inner, _ = _level(x, lim, lim.hysteresis)
        target = max(level, inner)
        if target >= st.limit_level:
            st.limit_clear_since, st.limit_clear_count = -1.0, 0
            return
        if st.limit_clear_since < 0.0:
            st.limit_clear_since, st.limit_clear_count = t, 1
        else:
            st.limit_clear_count += 1
        cfg = self._active
        if (
            st.limit_clear_count >= cfg.limit_rearm_readings
            and t - st.limit_clear_since >= cfg.limit_rearm_seconds
        ):
            st.limit_level = target
            st.limit_clear_since, st.limit_clear_count = -1.0, 0

    def _spike(
        self,
        reading: Reading,
        delta: float,
        dt: float,
        st: DeviceState,
        lim: AnalogLimits,
        out: list[Anomaly],
    ) -> None:
        rate = abs(delta) / dt
        if rate < lim.spike_warning_rate:
            return
        critical = rate >= lim.spike_critical_rate
        verb = "rose" if delta > 0 else "fell"
        unit = reading.unit
        out.append(
            self._anomaly(
                reading,
                AnomalyType.SPIKE,
                Severity.CRITICAL if critical else Severity.WARNING,
                rate,
                f"{st.sensor_type} {verb} {abs(delta):.1f} {unit} in {dt:.3g} s "
                f"({rate:.1f} {unit}/s, limit "
                f"{lim.spike_critical_rate if critical else lim.spike_warning_rate:g}"
                f" {unit}/s)",
            )
        )

    # -- stuck: tolerance from the learned resolution -----------------------------------

    @staticmethod
    def _start_run(st: DeviceState, x: float, t: float) -> None:
        st.run_value, st.run_count, st.run_exact, st.run_start = x, 1, 1, t
        st.stuck_reported = False
        st.run_scale = math.sqrt(st.var)

    def _stuck(
        self,
        reading: Reading,
        x: float,
        st: DeviceState,
        t: float,
        lim: AnalogLimits,
        out: list[Anomaly],
    ) -> bool:
        """A run of readings within one resolution step of its first value, mostly
        repeating it exactly, long in count and time, on a sensor whose scale when the
        run began was at least one step (a sensor whose noise is under its resolution
        reads the same value when healthy: it cannot be judged stuck). Returns whether
        the run is long enough to count as stuck (the baseline then stays put)."""
        resolution = st.resolution
        tolerance = 1.5 * resolution if resolution > 0.0 else lim.stuck_epsilon
        if abs(x - st.run_value) > tolerance:
            prev = st.last_value
            if abs(x - prev) <= tolerance:
                # A stuck quantised sensor flickers one step either side of its
                # value; a run anchored on a flicker (or on the live reading just
                # before the fault) breaks at each opposite flicker, and restarting
                # on that flicker keeps it off-centre for ever (measured: 11 of 20
                # synthetic stuck sensors missed at 1 Hz). Restart on the reading
                # before, which the break shows is the centre more often than not.
                self._start_run(st, prev, st.last_ts)
                st.run_count = 2
                if x == prev:
                    st.run_exact = 2
                return False
            # A new run on this reading (_start_run, written out: a live sensor
            # takes this branch at nearly every reading).
            st.run_value = x
            st.run_count = st.run_exact = 1
            st.run_start = t
            st.stuck_reported = False
            st.run_scale = math.sqrt(st.var)
            return False
        st.run_count += 1
        if x == st.run_value:
            st.run_exact += 1
        elif (
            x == st.last_value == st.prev_value
            and not st.stuck_reported
            and st.run_exact < self._active.stuck_exact_share * st.run_count
        ):
            # Three equal readings of another value than the run's, in a run that
            # is not repeating its own: a sensor that froze one step off the live
            # reading the run began on (the reading before the fault, within
            # tolerance of the frozen value) would never repeat the run's value and
            # never count as stuck (month profile, seed 1, fac01-l03-m01-temperature-0:
            # 40 frozen readings missed). The run restarts on the repeated value,
            # three readings long (from the one before this; the first of the three
            # is not timed, so the run's duration is under-, never over-stated).
            self._start_run(st, x, st.last_ts)
            st.run_count = st.run_exact = 3
        cfg = self._active
        if (
            st.run_count < cfg.stuck_min_count
            or st.run_exact < cfg.stuck_exact_share * st.run_count
        ):
            return False
        if st.run_scale < resolution:
            return False
        duration = t - st.run_start
        if not st.stuck_reported and duration >= cfg.stuck_min_seconds:
            st.stuck_reported = True
            out.append(
                self._anomaly(
                    reading,
                    AnomalyType.STUCK,
                    Severity.WARNING,
                    duration,
                    f"{st.sensor_type} stuck at {st.run_value:g} {reading.unit} for "
                    f"{st.run_count} readings over {duration:.0f} s",
                )
            )
        return True

    # -- drift: a step CUSUM on the residual, a slow CUSUM against the profile -----------

    def _shift(
        self,
        reading: Reading,
        x: float,
        z: float,
        expected: float,
        scale: float,
        st: DeviceState,
        t: float,
        out: list[Anomaly],
    ) -> None:
        """Two-sided CUSUM of the robust z of the one-step residual: a lasting step
        (a replaced sensor's offset) keeps the residual on one side while the
        baseline catches up; noise and single outliers (|z| clipped at 4) do not."""
        cfg = self._active
        u = 4.0 if z > 4.0 else -4.0 if z < -4.0 else z
        k = cfg.shift_k
        pos = st.shift_pos + u - k
        neg = st.shift_neg - u - k
        # The classic CUSUM change-point estimate: where the sum last left zero.
        if pos > 0.0 and st.shift_pos == 0.0:
            st.shift_pos_seq, st.shift_pos_ts = reading.seq, t
        if neg > 0.0 and st.shift_neg == 0.0:
            st.shift_neg_seq, st.shift_neg_ts = reading.seq, t
        st.shift_pos = pos if pos > 0.0 else 0.0
        st.shift_neg = neg if neg > 0.0 else 0.0
        up = st.shift_pos >= st.shift_neg
        top = st.shift_pos if up else st.shift_neg
        if top < cfg.shift_h:
            if top == 0.0:
                st.shift_reported = False
            return
        if st.shift_reported:
            return
        st.shift_reported = True
        st.shift_pos = st.shift_neg = 0.0
        side = "above" if up else "below"
        # Reported on the reading where the step began (a pure function of the
        # state, so a replay gives the same identity), which is what a maintenance
        # log says: the sensor was swapped *then*, not ten readings later.
        change_seq = st.shift_pos_seq if up else st.shift_neg_seq
        change_ts = st.shift_pos_ts if up else st.shift_neg_ts
        out.append(
            Anomaly(
                device_id=reading.device_id,
                seq=change_seq,
                ts=_epoch_to_datetime(change_ts),
                anomaly_type=AnomalyType.DRIFT,
                severity=Severity.WARNING,
                score=round(top, 3),
                explanation=(
                    f"{st.sensor_type} stays {side} the device baseline since seq "
                    f"{change_seq}: {x:g} {reading.unit} now, baseline {expected:.1f} "
                    f"{reading.unit} (step CUSUM {top:.0f} scales of {scale:.2g} "
                    f"{reading.unit}, limit {cfg.shift_h:g}, reading seq {reading.seq})"
                ),
                sensor_type=st.sensor_type,
                value=x,
            )
        )

    def _seasonal(
        self,
        reading: Reading,
        x: float,
        st: DeviceState,
        t: float,
        dt: float,
        lim: AnalogLimits,
        out: list[Anomaly],
    ) -> None:
        """Learn the time-of-week profile; once ready, SEASONAL on the hour-smoothed
        departure and DRIFT on its time-weighted CUSUM (sigma-hours)."""
        if dt <= 0.0:
            return
        cfg = self._active
        profile = st.profile
        offset = cfg.profile_bin_offset_s
        # A bin belongs to the day it starts on (as a night shift does); 1970-01-01
        # was a Thursday: +3 makes Monday day 0.
        shifted = t - offset
        day = (int(shifted // 86_400.0) + 3) % 7
        b = day * 6 + int(shifted % 86_400.0 // _BIN_SECONDS)
        if len(profile) != _PROFILE_LEN or profile[_P_OFFSET] != offset:
            # New, saved before the bins moved off midnight, or learned with another
            # offset: its bins are other hours, so it is learned again.
            profile[:] = _EMPTY_PROFILE
            profile.extend((offset, t))
            st.season_level = st.drift_pos = st.drift_neg = 0.0
            st.season_reported = st.drift_reported = False
        born = profile[_P_SINCE]
        level = profile[b]
        mad = profile[b + _PROFILE_BINS]
        if mad < 0.0:  # the first reading of this bin seeds it
            profile[b] = x
            profile[b + _PROFILE_BINS] = math.sqrt(st.var) if st.var > 0.0 else lim.min_scale
            return
        residual = x - level
        sigma = 1.25 * mad
        if sigma < lim.min_scale:
            sigma = lim.min_scale
        # Learn: an equal-weight mean of the weeks seen, then a memory of
        # profile_days (a bin is visited 4 hours a week; gaps count at most 1 hour).
        weeks = (t - born) / (7 * 86_400.0)
        memory = cfg.profile_days / 7.0
        if weeks < 1.0:
            weeks = 1.0
        w = (dt if dt < 3600.0 else 3600.0) / (_BIN_SECONDS * (weeks if weeks < memory else memory))
        if w > 0.5:
            w = 0.5
        bound = 4.0 * sigma
        clipped = bound if residual > bound else -bound if residual < -bound else residual
        profile[b] = level + w * clipped
        profile[b + _PROFILE_BINS] = mad + w * ((clipped if clipped >= 0.0 else -clipped) - mad)
        if t - born < cfg.profile_ready_days * 86_400.0:
            return
        # SEASONAL: the departure in sigmas of its own bin, smoothed over an hour
        # (smoothing z, not the residual, so a bin boundary does not judge one
        # bin's departure by the next bin's spread).
        z = residual / sigma
        z = 8.0 if z > 8.0 else -8.0 if z < -8.0 else z
        if lim.profile_up_only and z < 0.0:
            z = 0.0
        derived = self._derived  # 1 - exp(-dt / smoothing), remembered (see _Derived)
        if dt == derived.season_dt:
            ws = derived.season_w
        else:
            ws = derived.season_w = 1.0 - math.exp(-dt / cfg.seasonal_smoothing_s)
            derived.season_dt = dt
        st.season_level += ws * (z - st.season_level)
        zs = st.season_level
        azs = zs if zs >= 0.0 else -zs
        if azs >= cfg.seasonal_z and not st.season_reported:
            st.season_reported = True
            side = "above" if zs > 0 else "below"
            out.append(
                self._anomaly(
                    reading,
                    AnomalyType.SEASONAL,
                    Severity.WARNING,
                    azs,
                    f"{st.sensor_type} has run {azs:.1f} sigma {side} its usual level for "
                    f"{_bin_name(b, offset)} over the last hour (now {x:g} {reading.unit}, usual "
                    f"{level:.1f} {reading.unit}, sigma {sigma:.2g}; limit {cfg.seasonal_z:g})",
                )
            )
        elif azs < 1.0:
            st.season_reported = False
        # DRIFT: CUSUM in sigma-hours (time-weighted, so the cadence does not matter).
        z = 4.0 if z > 4.0 else -4.0 if z < -4.0 else z
        hours = (dt if dt < 3600.0 else 3600.0) / 3600.0
        k = cfg.drift_k
        pos = st.drift_pos + (z - k) * hours
        neg = st.drift_neg + (-z - k) * hours
        st.drift_pos = pos if pos > 0.0 else 0.0
        st.drift_neg = neg if neg > 0.0 else 0.0
        top = st.drift_pos if st.drift_pos >= st.drift_neg else st.drift_neg
        if top < cfg.drift_h:
            if top == 0.0:
                st.drift_reported = False
            return
        if st.drift_reported:
            return
        st.drift_reported = True
        side = "above" if st.drift_pos >= st.drift_neg else "below"
        st.drift_pos = st.drift_neg = 0.0
        out.append(
            self._anomaly(
                reading,
                AnomalyType.DRIFT,
                Severity.WARNING,
                top,
                f"{st.sensor_type} has drifted {side} its usual level for the time of week "
                f"(CUSUM {top:.1f} sigma-hours, limit {cfg.drift_h:g}; now {x:g} "
                f"{reading.unit}, usual {level:.1f} {reading.unit} for {_bin_name(b, offset)})",
            )
        )

    def _ceiling(
        self,
        reading: Reading,
        x: float,
        st: DeviceState,
        t: float,
        dt: float,
        margin: float,
        out: list[Anomaly],
    ) -> None:
        """DRIFT when the hour-smoothed level runs ``margin`` above the highest level
        of this hour (or the hour before or after) on any day of the previous block.

        Why it needs no weekly profile: a machine's hottest hour of the day is its
        full-load hour, seen on every working day, and a night or a late shift
        peaks at its own level every working day too, so a week of any plant's
        calendar shows each hour's ceiling; stops, weekends and Mondays after a
        cold weekend are colder, never hotter. A wear or cooling fault adds heat
        on top (docs/DETECTION.md, "ceiling"). The neighbouring hours make a shift
        that starts an hour early, or a daylight-saving change, no departure.
        """
        if dt <= 0.0:
            return
        cfg = self._active
        c = st.ceiling
        block_s = cfg.ceiling_days * 86_400.0
        block = float((t - st.first_ts) // block_s)
        if not c:
            c.extend((block, x, 0.0, -1.0))
            c.extend(_C_EMPTY)
        if len(c) == _C_F_REPORTED:  # new, or saved before the floor: it grows here
            c.extend(_C_F_EMPTY)
        if block != c[_C_BLOCK]:
            # The current block becomes the previous one; a gap of more than a block
            # leaves nothing recent to judge by.
            follows = block == c[_C_BLOCK] + 1.0
            c[_C_PREV:_C_CUR] = c[_C_CUR:_C_F_REPORTED] if follows else _C_EMPTY[:24]
            c[_C_CUR:_C_F_REPORTED] = _C_EMPTY[:24]
            c[_C_F_PREV:_C_F_CUR] = c[_C_F_CUR:] if follows else _C_F_EMPTY[3:27]
            c[_C_F_CUR:] = _C_F_EMPTY[3:27]
            c[_C_BLOCK] = block
        level = c[_C_LEVEL]
        derived = self._derived  # 1 - exp(-dt / smoothing), remembered (see _Derived)
        if dt == derived.ceiling_dt:
            w = derived.ceiling_w
        else:
            w = derived.ceiling_w = 1.0 - math.exp(-dt / cfg.ceiling_smoothing_s)
            derived.ceiling_dt = dt
        level += w * (x - level)
        c[_C_LEVEL] = level
        hour = int(t % 86_400.0 // 3600.0)
        a, b, d = c[_C_PREV + (hour - 1) % 24], c[_C_PREV + hour], c[_C_PREV + (hour + 1) % 24]
        ceiling = a if a > b else b
        if d > ceiling:
            ceiling = d
        learned = level
        if ceiling != -math.inf:
            excess = level - ceiling
            # Learn at most the margin above the ceiling: a fault found this week
            # does not blind next week's judgement, while a lasting new level (a
            # new product, a swapped sensor) is adopted within a few weeks.
            if learned > ceiling + margin:
                learned = ceiling + margin
            if excess <= 0.0:
                if c[_C_BELOW] < 0.0:
                    c[_C_BELOW] = t
                elif t - c[_C_BELOW] >= cfg.ceiling_rearm_s:
                    c[_C_REPORTED] = 0.0
            else:
                c[_C_BELOW] = -1.0
                if excess >= margin and not c[_C_REPORTED]:
                    c[_C_REPORTED] = 1.0
                    out.append(
                        self._anomaly(
                            reading,
                            AnomalyType.DRIFT,
                            Severity.WARNING,
                            excess,
                            f"{st.sensor_type} has run {excess:.1f} {reading.unit} above its "
                            f"ceiling: {level:.1f} {reading.unit} over the last "
                            f"{cfg.ceiling_smoothing_s / 60.0:g} min, the "
                            f"highest at {hour:02d}:00 UTC (+-1 h) on any day of the previous "
                            f"{cfg.ceiling_days:g} days was {ceiling:.1f} {reading.unit} "
                            f"(margin {margin:g}; reading {x:g} {reading.unit})",
                        )
                    )
        i = _C_CUR + hour
        if learned > c[i]:
            c[i] = learned
        self._floor(reading, x, st, t, level, hour, margin, out)

    def _floor(
        self,
        reading: Reading,
        x: float,
        st: DeviceState,
        t: float,
        level: float,
        hour: int,
        margin: float,
        out: list[Anomaly],
    ) -> None:
        """DRIFT when the hour-smoothed ``level`` runs ``margin`` below the lowest level
        of this hour (or the hour before or after) on any day of the previous block,
        without a break for ``floor_hold_s``: the mirror of the ceiling, for a
        sensor that reads lastingly low (a swap's negative offset).

        Why the process cannot do it: a week holds a stand-still at every hour of
        the day (a weekend, a night without production), so the previous block's
        floor at an hour is the machine's stand-by level there (the hall plus its
        stand-by heat) or lower; running only makes it hotter. Below it a machine
        goes only with its stand-by heat off (maintenance, a fault), for hours,
        not for the hold. A swap moves every level, the stand-by level included,
        for ever, so the next long stand-still shows it. The slow terms (sensor
        ageing, the hall's weather) move the stand-by level as they move the peak:
        the same margin as the ceiling (docs/DETECTION.md, "Session 6").
        """
        cfg = self._active
        c = st.ceiling
        a, b, d = (
            c[_C_F_PREV + (hour - 1) % 24],
            c[_C_F_PREV + hour],
            c[_C_F_PREV + (hour + 1) % 24],
        )
        floor = a if a < b else b
        if d < floor:
            floor = d
        learned = level
        if floor != math.inf:
            shortfall = floor - level
            # Learn at most the margin below the floor: a found offset does not hide
            # next week's, and a lasting new level is adopted within weeks.
            if learned < floor - margin:
                learned = floor - margin
            if shortfall <= 0.0:
                c[_C_F_SINCE] = -1.0
                if c[_C_F_ABOVE] < 0.0:
                    c[_C_F_ABOVE] = t
                elif t - c[_C_F_ABOVE] >= cfg.ceiling_rearm_s:
                    c[_C_F_REPORTED] = 0.0
            else:
                c[_C_F_ABOVE] = -1.0
                if shortfall < margin:
                    c[_C_F_SINCE] = -1.0
                elif c[_C_F_SINCE] < 0.0:
                    c[_C_F_SINCE] = t
                elif t - c[_C_F_SINCE] >= cfg.floor_hold_s and not c[_C_F_REPORTED]:
                    c[_C_F_REPORTED] = 1.0
                    hours = (t - c[_C_F_SINCE]) / 3600.0
                    out.append(
                        self._anomaly(
                            reading,
                            AnomalyType.DRIFT,
                            Severity.WARNING,
                            shortfall,
                            f"{st.sensor_type} has run {shortfall:.1f} {reading.unit} below "
                            f"its floor for {hours:.1f} h: {level:.1f} {reading.unit} over the "
                            f"last {cfg.ceiling_smoothing_s / 60.0:g} min, the lowest at "
                            f"{hour:02d}:00 UTC (+-1 h) on any day of the previous "
                            f"{cfg.ceiling_days:g} days was {floor:.1f} "
                            f"{reading.unit} (margin {margin:g}; reading {x:g} {reading.unit}); "
                            "a machine standing still sits at its floor, a sensor reading "
                            "low stays under it",
                        )
                    )
        i = _C_F_CUR + hour
        if learned < c[i]:
            c[i] = learned

    def _statistical(
        self,
        reading: Reading,
        x: float,
        z: float,
        expected: float,
        scale: float,
        st: DeviceState,
        out: list[Anomaly],
    ) -> None:
        cfg = self._active
        az = abs(z)
        stat = 2 if az >= cfg.z_critical else 1 if az >= cfg.z_warning else 0
        if stat > st.stat_level:
            st.stat_level = stat
            side = "above" if z > 0 else "below"
            unit = reading.unit
            out.append(
                self._anomaly(
                    reading,
                    AnomalyType.STATISTICAL,
                    Severity.CRITICAL if stat == 2 else Severity.WARNING,
                    az,
                    f"{st.sensor_type} {x:g} {unit} is {az:.1f} robust z {side} the device "
                    f"baseline {expected:.1f} {unit} (scale {scale:.2g} {unit})",
                )
            )
        elif stat < st.stat_level and az < cfg.z_reset:
            st.stat_level = stat

    def _status(self, reading: Reading, st: DeviceState, t: float, out: list[Anomaly]) -> None:
        member = reading.status
        assert member is not None
        previous = st.status
        # A StrEnum member equals its value: the common case (no change) is told
        # without ``.value``, an Enum property that costs more than the rest here.
        if member == previous:
            return
        status = member.value
        cfg = self._active
        if previous:
            if st.flap_count == 0 or t - st.flap_start > cfg.flap_window_seconds:
                st.flap_start, st.flap_count, st.flap_reported = t, 1, False
            else:
                st.flap_count += 1
            if st.flap_count >= cfg.flap_changes and not st.flap_reported:
                st.flap_reported = True
                out.append(
                    self._anomaly(
                        reading,
                        AnomalyType.FLAPPING,
                        Severity.WARNING,
                        float(st.flap_count),
                        f"equipment status changed {st.flap_count} times in "
                        f"{t - st.flap_start:.0f} s (limit {cfg.flap_changes} in "
                        f"{cfg.flap_window_seconds:g} s), now {status}",
                    )
                )
        if status == _STATUS_FAULT:
            out.append(
                self._anomaly(
                    reading,
                    AnomalyType.FAULT,
                    Severity.CRITICAL,
                    1.0,
                    f"equipment entered FAULT (was {previous or 'unknown'})",
                )
            )
        st.status = status

    @staticmethod
    def _anomaly(
        reading: Reading, kind: AnomalyType, severity: Severity, score: float, why: str
    ) -> Anomaly:
        return Anomaly(
            device_id=reading.device_id,
            seq=reading.seq,
            ts=reading.ts,
            anomaly_type=kind,
            severity=severity,
            score=round(score, 3),
            explanation=why,
            sensor_type=reading.sensor_type.value,
            value=reading.value,
            boot=reading.series,
        )


def load_states(bank: DetectorBank, saved: Mapping[str, bytes | None]) -> list[str]:
    """Install the saved states that exist (e.g. a Redis MGET result); returns the
    devices whose entry was corrupt or of another version (they start afresh)."""
    bad = []
    for device_id, data in saved.items():
        if data is not None and not bank.load_state(device_id, data):
            bad.append(device_id)
    return bad
