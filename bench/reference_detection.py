"""FROZEN REFERENCE for ``python -m bench.detection``: the detector bank as it was
before issue 9 (commit 4a578b2), kept only so the benchmark can state the new
bank's cost per reading as a ratio to the old one measured in the same run.
Never imported by the processor. Below, its original docstring.

Per-device streaming anomaly detectors: pure, deterministic, cheap per reading.

One :class:`DetectorBank` holds a small :class:`DeviceState` per device and runs,
on every accepted reading, the detectors that apply to its sensor type:

========================  ===========================================================
``limit``                 static per-sensor-type warning/critical limits (with hysteresis)
``statistical``           robust z-score against the device's own EWMA baseline (after warm-up)
``spike``                 rate of change per second of *event time* above a limit
``stuck``                 the same value (within epsilon) for N readings spanning >= S seconds
``fault`` / ``flapping``  equipment status entering FAULT; too many status changes in a window
``silent``                no reading for a while (``check_silence(now)``, on a timer)
========================  ===========================================================

Why a state machine per detector rather than "fire on every reading over a
limit": a machine that runs hot for an hour must give one anomaly, not 3 600.
Each detector fires when its level *rises* (warning -> critical fires again) and
re-arms only after the signal is back inside a hysteresis band.

Replays and idempotency. A reading whose ``seq`` is not above the device's last
``seq`` (a duplicate or an out-of-order record) neither changes the state nor
emits anything. The identity of an anomaly is ``(device_id, seq, anomaly_type)``,
a pure function of (state, reading), so an at-least-once replay of the same
reading from the same saved state yields the same identity, which the store
de-duplicates (``ON CONFLICT DO NOTHING``). For that to hold the adapter must
save states (:meth:`DetectorBank.dirty_states`) only *after* the batch commit,
and, when a commit fails, retry the same :class:`ProcessedBatch` (or
:meth:`DetectorBank.forget` the shard's devices and reload their saved states)
rather than re-run the detectors on advanced state — otherwise the replayed
readings are seen as duplicates and their anomalies are lost. A SILENT anomaly
carries the device's last ``seq``, so there is at most one per silence episode
even across workers.

Nothing here reads the clock, logs or allocates more than a few floats per
reading: the processor runs it on > 20k readings/s per core.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import msgspec

from processor.contract.record import EquipmentStatus, Reading, SensorType
from processor.core.model import Anomaly, AnomalyType, Severity

# Enum members looked up once: attribute access on an Enum class is slow in 3.11.
_PRESSURE: Final = SensorType.PRESSURE
_EQUIPMENT_STATUS: Final = SensorType.EQUIPMENT_STATUS

#: Version of the serialized :class:`DeviceState`; a state saved by another version
#: is ignored (the device re-learns its baseline) rather than misread.
STATE_VERSION: Final = 1


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
    stuck_epsilon: float = 1e-6  # units: "near-identical"
    #: Run the robust statistical detector for this type.
    statistical: bool = True


#: Machine temperature: a healthy machine reads 20-120 C (hall ambient plus up to
#: 55 C of machine heat); 130 C needs attention, 150 C stops the line.
DEFAULT_TEMPERATURE: Final = AnalogLimits(
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
    #: FLAPPING: this many status changes within the window.
    flap_changes: int = 6
    flap_window_seconds: float = 300.0
    #: SILENT: no reading for longer than this (compared with the last arrival time).
    silence_after_seconds: float = 60.0

    def limits_for(self, sensor_type: SensorType) -> AnalogLimits:
        return self.pressure if sensor_type is _PRESSURE else self.temperature


class DeviceState(msgspec.Struct, array_like=True, gc=False):
    """Everything the detectors remember about one device (about 80 bytes packed).

    Times are epoch seconds (floats): cheaper than datetimes on the hot path and
    compact in Redis. ``array_like`` drops the field names from the encoding.
    """

    version: int
    sensor_type: str
    last_seq: int = -1
    last_ts: float = 0.0  # event time of the last accepted reading
    last_seen: float = 0.0  # arrival time (or event time offline) for silence
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
    silent_reported: bool = False

    def to_bytes(self) -> bytes:
        return _state_encoder.encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> DeviceState:
        """Decode a saved state; raises ``ValueError`` on bytes that are not one."""
        try:
            state = _state_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ValueError(f"not a device state: {exc}") from exc
        if state.version != STATE_VERSION:
            raise ValueError(f"device state version {state.version}, want {STATE_VERSION}")
        return state


_state_encoder: Final = msgspec.msgpack.Encoder()
_state_decoder: Final = msgspec.msgpack.Decoder(DeviceState)
_STATUS_FAULT: Final = EquipmentStatus.FAULT.value


def _epoch_to_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


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


@dataclass(slots=True)
class DetectorBank:
    """The detector states of every device this worker currently owns.

    ``observe`` is the per-reading hot path; ``check_silence`` runs on a timer.
    States changed since the last :meth:`clear_dirty` are listed by
    :meth:`dirty_devices` so the adapter saves only those (after the commit).
    """

    config: DetectorConfig = field(default_factory=DetectorConfig)
    _states: dict[str, DeviceState] = field(default_factory=dict)
    _dirty: set[str] = field(default_factory=set)
    _shard_of: dict[str, str] = field(default_factory=dict)
    #: Readings ignored as duplicates or out of order (seq <= last seq).
    ignored: int = 0

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
        """:meth:`observe` appending to ``out``: the batch path, one list per batch."""
        device_id = reading.device_id
        st = self._states.get(device_id)
        sensor_type = reading.sensor_type
        if st is None or st.sensor_type != sensor_type:
            # A device that changed its sensor type is a new device for the detectors.
            st = DeviceState(STATE_VERSION, sensor_type.value)
            self._states[device_id] = st
        elif reading.seq <= st.last_seq:
            self.ignored += 1
            return
        if shard_id and self._shard_of.get(device_id) != shard_id:
            self._shard_of[device_id] = shard_id
        self._dirty.add(device_id)
        t = reading.ts.timestamp()
        if sensor_type is _EQUIPMENT_STATUS:
            if reading.status is not None:
                self._status(reading, st, t, out)
        elif reading.value is not None:
            self._analog(reading, reading.value, st, t, out)
        st.last_seq = reading.seq
        st.last_ts = t
        seen = t if arrival is None else arrival.timestamp()
        if seen > st.last_seen:
            st.last_seen = seen
        st.silent_reported = False

    def check_silence(self, now: datetime) -> list[Anomaly]:
        """One SILENT anomaly per device per silence episode: a device is silent
        when its last reading arrived more than ``silence_after_seconds`` before
        ``now``; the episode ends with its next reading."""
        now_s = now.timestamp()
        limit = self.config.silence_after_seconds
        out: list[Anomaly] = []
        for device_id, st in self._states.items():
            if st.silent_reported or st.last_seq < 0:
                continue
            gap = now_s - st.last_seen
            if gap <= limit:
                continue
            st.silent_reported = True
            self._dirty.add(device_id)
            last = _epoch_to_datetime(st.last_seen).isoformat()
            out.append(
                Anomaly(
                    device_id=device_id,
                    seq=st.last_seq,
                    ts=now,
                    anomaly_type=AnomalyType.SILENT,
                    severity=Severity.WARNING,
                    score=round(gap, 3),
                    explanation=(
                        f"{st.sensor_type} device silent for {gap:.0f} s "
                        f"(last reading seq {st.last_seq} at {last}, limit {limit:g} s)"
                    ),
                    sensor_type=st.sensor_type,
                    value=st.last_value if st.count else None,
                )
            )
        return out

    # -- the detectors ----------------------------------------------------------------

    def _analog(
        self, reading: Reading, x: float, st: DeviceState, t: float, out: list[Anomaly]
    ) -> None:
        cfg = self.config
        lim = cfg.limits_for(reading.sensor_type)
        unit = reading.unit
        name = st.sensor_type

        # Static limits, fired when the level rises, re-armed with hysteresis.
        level, bound = _level(x, lim, 0.0)
        if level > st.limit_level:
            st.limit_level = level
            assert bound is not None
            side = "above" if x >= bound else "below"
            kind = "critical" if level == 2 else "warning"
            out.append(
                self._anomaly(
                    reading,
                    AnomalyType.LIMIT,
                    Severity.CRITICAL if level == 2 else Severity.WARNING,
                    abs(x - bound),
                    f"{name} {x:g} {unit} is {side} the {kind} limit {bound:g} {unit}",
                )
            )
        elif level < st.limit_level:
            inner, _ = _level(x, lim, lim.hysteresis)
            st.limit_level = max(level, min(st.limit_level, inner))

        n = st.count
        stuck = False
        if n:
            # Rate of change over event time; dt <= 0 (same or earlier ts) says nothing.
            dt = t - st.last_ts
            delta = x - st.last_value
            if dt > 0.0 and abs(delta) >= lim.spike_min_delta:
                rate = abs(delta) / dt
                if rate >= lim.spike_warning_rate:
                    critical = rate >= lim.spike_critical_rate
                    verb = "rose" if delta > 0 else "fell"
                    out.append(
                        self._anomaly(
                            reading,
                            AnomalyType.SPIKE,
                            Severity.CRITICAL if critical else Severity.WARNING,
                            rate,
                            f"{name} {verb} {abs(delta):.1f} {unit} in {dt:.3g} s "
                            f"({rate:.1f} {unit}/s, limit "
                            f"{lim.spike_critical_rate if critical else lim.spike_warning_rate:g}"
                            f" {unit}/s)",
                        )
                    )
            # Stuck: a run of near-identical values long in both count and time.
            if abs(x - st.run_value) <= lim.stuck_epsilon:
                st.run_count += 1
                stuck = st.run_count >= cfg.stuck_min_count
                duration = t - st.run_start
                if stuck and not st.stuck_reported and duration >= cfg.stuck_min_seconds:
                    st.stuck_reported = True
                    out.append(
                        self._anomaly(
                            reading,
                            AnomalyType.STUCK,
                            Severity.WARNING,
                            duration,
                            f"{name} stuck at {st.run_value:g} {unit} for {st.run_count} "
                            f"readings over {duration:.0f} s",
                        )
                    )
            else:
                st.run_value, st.run_count, st.run_start, st.stuck_reported = x, 1, t, False
        else:
            st.run_value, st.run_count, st.run_start, st.stuck_reported = x, 1, t, False

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
                self._statistical(reading, x, residual / scale, expected, scale, st, out)
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
        st.count = n + 1
        st.last_value = x

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
        cfg = self.config
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
        assert reading.status is not None
        status = reading.status.value
        previous = st.status
        if status == previous:
            return
        cfg = self.config
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
        )


def load_states(bank: DetectorBank, saved: Mapping[str, bytes | None]) -> list[str]:
    """Install the saved states that exist (e.g. a Redis MGET result); returns the
    devices whose entry was corrupt or of another version (they start afresh)."""
    bad = []
    for device_id, data in saved.items():
        if data is not None and not bank.load_state(device_id, data):
            bad.append(device_id)
    return bad
