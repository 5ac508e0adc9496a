"""The fleet generator: every device's readings, anomalies and poison, in time order.

Usage (the Locust user owns one slice; the CLI and the demo own the whole fleet)::

    fleet = Fleet(devices=10_000, seed=7, rate=1.0, anomaly_rate=0.001, poison_rate=0.0001)
    mine = fleet.slice(user_index, user_count)   # devices i, i+n, i+2n, ...
    batch = mine.generate(500)                   # the next 500 records, as fast as possible
    due = fleet.tick(now)                        # or: every record due by wall-clock ``now``
    labels = fleet.drain_labels()                # finished anomaly and poison labels

Time model. Device ``d`` reports every ``1/rate`` seconds at
``start + phase_d + k/rate`` (``phase_d`` is drawn from the device's seed, so a
fleet's traffic is spread across each period instead of arriving in lock-step).
A *round* is one report of every device; within a round devices are visited in
phase order, so records come out in non-decreasing event time.

Determinism. A device's noise, machine timeline, scenarios and poison come from
generators seeded with ``(seed, device index)`` or ``(seed, machine index)``, so
the same seed gives the same bytes, and ``fleet.slice(i, n)`` for ``i`` in
``range(n)`` together give exactly the records of the whole fleet. A slice always
starts at the fleet's ``start``, like a fresh fleet.

Speed. The hot path builds each record from pre-encoded text (the device's
constant fields) plus the timestamp, ``seq`` and value; a unit test checks the
bytes equal ``processor.contract.record.encode_reading`` of the same reading.
"""

from __future__ import annotations

import math
import random
from collections import Counter, deque
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Final

import msgspec

from processor.contract.record import SCHEMA_VERSION, UNITS, EquipmentStatus, SensorType
from simulator.anomalies import (
    CLASSIC_SCENARIOS,
    PERSISTENT_SCENARIOS,
    ActiveScenario,
    AnomalyLabel,
    Scenario,
    fault_status,
    scenarios_for,
    start_scenario,
    within_physical_range,
)
from simulator.dice import Dice, stream_key
from simulator.plant import DeviceSpec, build_devices, device_seed
from simulator.poison import (
    ALL_POISON_KINDS,
    EXPECTED_REASON,
    PoisonKind,
    PoisonLabel,
    make_poison,
)
from simulator.signals import MachineTimeline, PressureSignal, TemperatureSignal, shift_load
from simulator.timestamps import datetime_from_epoch_ms, epoch_ms, iso_from_epoch_ms

#: Above 1000 readings/s a device's period is under a millisecond, the resolution
#: of ``ts``; readings would share timestamps.
MAX_RATE_PER_DEVICE: Final = 1000.0

#: "No further event" for the per-device next-event counters.
NEVER: Final = 2**62

Label = AnomalyLabel | PoisonLabel

#: ``EquipmentStatus.value`` is a Python-level descriptor (slow on the hot path).
_STATUS_TEXT: Final[dict[EquipmentStatus, str]] = {
    status: status.value for status in EquipmentStatus
}


class SimRecord:
    """One record to send: its bytes, partition key and what it is.

    ``seq`` is the device's sequence number (for a poison record, the seq of the
    reading it was derived from, which it does not consume). ``anomaly`` names the
    scenario the reading belongs to, ``poison`` the poison kind.
    """

    __slots__ = (
        "anomaly",
        "data",
        "label",
        "partition_key",
        "poison",
        "sensor_type",
        "seq",
        "ts_ms",
    )

    def __init__(
        self,
        data: bytes,
        partition_key: str,
        sensor_type: str,
        seq: int,
        ts_ms: int,
        anomaly: str | None = None,
        poison: str | None = None,
    ) -> None:
        self.data = data
        self.partition_key = partition_key
        self.sensor_type = sensor_type
        self.seq = seq
        self.ts_ms = ts_ms
        self.anomaly = anomaly
        self.poison = poison
        #: The label this record publishes when the fleet hands it out (poison
        #: records and burst extras, the only records that can be held back).
        self.label: Label | None = None

    @property
    def device_id(self) -> str:
        return self.partition_key

    def __repr__(self) -> str:
        return (
            f"SimRecord({self.partition_key!r}, seq={self.seq}, ts_ms={self.ts_ms}, "
            f"anomaly={self.anomaly!r}, poison={self.poison!r}, {len(self.data)} bytes)"
        )


class _FleetShared:
    """State the devices of one fleet report into (only on rare events)."""

    __slots__ = (
        "anomalies_started",
        "deferred",
        "labels",
        "partial_bursts",
        "poison_kinds",
        "poison_sent",
        "resolution",
        "scenarios",
        "suppressed",
    )

    def __init__(
        self,
        poison_kinds: tuple[PoisonKind, ...],
        scenarios: frozenset[Scenario] = CLASSIC_SCENARIOS,
        resolution: float = 0.01,
    ) -> None:
        #: The scenarios devices draw from, and the temperature sensors' resolution.
        self.scenarios = scenarios
        self.resolution = resolution
        self.labels: list[Label] = []
        #: Records carrying a label to publish once they are handed out: a
        #: generate(count) call may stop in the middle of a device's burst or right
        #: before its poison record, and a label or a count must never describe a
        #: record that was not returned.
        self.deferred: list[SimRecord] = []
        #: Bursts whose extra readings were handed out in part: label -> last one out.
        self.partial_bursts: dict[int, tuple[AnomalyLabel, SimRecord]] = {}
        self.anomalies_started: Counter[str] = Counter()
        self.poison_sent: Counter[str] = Counter()
        self.poison_kinds = poison_kinds
        #: Readings a silent device sampled but did not send.
        self.suppressed = 0


class _DeviceStream:
    """Generates one device's records. Subclasses implement the sensor type."""

    __slots__ = (
        "_anomaly_dice",
        "_anomaly_rate",
        "_device_id",
        "_head",
        "_load",
        "_load_until",
        "_next_anomaly_seq",
        "_next_poison_seq",
        "_poison_dice",
        "_poison_rate",
        "_rate",
        "_scenario",
        "_shared",
        "_timeline",
        "phase_ms",
        "seq",
        "spec",
    )

    def __init__(
        self,
        spec: DeviceSpec,
        seed: int,
        start_ms: int,
        rate: float,
        anomaly_rate: float,
        poison_rate: float,
        shared: _FleetShared,
        rng: random.Random,
    ) -> None:
        self.spec = spec
        self._device_id = spec.device_id
        self.seq = 0
        self._rate = rate
        self._shared = shared
        self.phase_ms = int(rng.random() * (1000.0 / rate))
        self._timeline = MachineTimeline(seed, spec.machine.index, start_ms)
        self._load, self._load_until = shift_load(start_ms)
        self._anomaly_rate = anomaly_rate
        self._anomaly_dice = Dice(stream_key("anomaly", seed, spec.index))
        gap = self._anomaly_dice.geometric_gap(anomaly_rate)
        self._next_anomaly_seq = NEVER if gap < 0 else gap
        self._scenario: ActiveScenario | None = None
        self._poison_rate = poison_rate
        self._poison_dice = Dice(stream_key("poison", seed, spec.index))
        gap = self._poison_dice.geometric_gap(poison_rate)
        self._next_poison_seq = NEVER if gap < 0 else gap
        # Everything up to the timestamp is constant for the device: encode it once.
        # The field order is the contract's wire order (Reading's field order).
        self._head = (
            f'{{"device_id":"{spec.device_id}","facility":"{spec.facility}",'
            f'"line":"{spec.line}","sensor_type":"{spec.sensor_type.value}",'
            f'"unit":"{UNITS[spec.sensor_type]}","ts":"'
        )

    def emit(
        self, ts_ms: int, ts_text: str, out: list[SimRecord]
    ) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- rare events ---------------------------------------------------------------

    def _start_scenario(self, seq: int, ts_ms: int) -> ActiveScenario:
        """Start a scenario at reading ``seq`` (the drawn start of the next one)."""
        dice = self._anomaly_dice
        scenario = dice.choice(scenarios_for(self.spec.sensor_type, self._shared.scenarios))
        active = start_scenario(scenario, self.spec.sensor_type, self._rate, dice)
        if self.spec.sensor_type is SensorType.TEMPERATURE and self._shared.resolution >= 0.1:
            # A coarse sensor stuck on the edge of a step flickers by one step.
            active.step = self._shared.resolution
        self._scenario = active
        # While a scenario runs every reading takes the slow path: one comparison
        # in the hot path covers both "scenario running" and "scenario due".
        self._next_anomaly_seq = 0
        self._shared.anomalies_started[scenario.value] += 1
        return active

    def _close_scenario(
        self,
        active: ActiveScenario,
        carriers: list[SimRecord] | None = None,
        *,
        truncated: bool = False,
    ) -> None:
        """Publish the scenario's label, or with ``carriers`` (a burst's extra
        readings) attach it to them so it is published as they are handed out."""
        spec = self.spec
        if active.end_seq >= 0:  # a scenario cut off before its first reading has no label
            label = AnomalyLabel(
                device_id=spec.device_id,
                sensor_type=spec.sensor_type.value,
                anomaly=active.scenario.value,
                start_seq=active.start_seq,
                end_seq=active.end_seq,
                start_ts=iso_from_epoch_ms(active.start_ts_ms),
                end_ts=iso_from_epoch_ms(active.end_ts_ms),
                truncated=truncated,
                persists=active.scenario in PERSISTENT_SCENARIOS,
            )
            if carriers:
                for record in carriers:
                    record.label = label
                self._shared.deferred.extend(carriers)
            else:
                self._shared.labels.append(label)
        self._scenario = None
        # The next scenario may start from the reading after this one.
        gap = self._anomaly_dice.geometric_gap(self._anomaly_rate)
        self._next_anomaly_seq = NEVER if gap < 0 else self.seq + gap

    def _mark(self, active: ActiveScenario, seq: int, ts_ms: int) -> None:
        """Record that reading ``seq`` belongs to the scenario's labelled range."""
        if active.end_seq < 0:
            active.start_seq, active.start_ts_ms = seq, ts_ms
        active.end_seq, active.end_ts_ms = seq, ts_ms

    def _emit_poison(self, seq: int, ts_ms: int, out: list[SimRecord]) -> None:
        shared = self._shared
        dice = self._poison_dice
        kind = dice.choice(shared.poison_kinds)
        spec = self.spec
        data = make_poison(
            kind,
            device_id=spec.device_id,
            facility=spec.facility,
            line=spec.line,
            sensor_type=spec.sensor_type,
            ts_ms=ts_ms,
            seq=seq,
        )
        record = SimRecord(
            data, spec.device_id, spec.sensor_type.value, seq, ts_ms, None, kind.value
        )
        record.label = PoisonLabel(
            device_id=spec.device_id,
            partition_key=spec.device_id,
            kind=kind.value,
            expected_reason=EXPECTED_REASON[kind].value,
            seq=seq,
            ts=iso_from_epoch_ms(ts_ms),
        )
        out.append(record)
        shared.deferred.append(record)
        gap = dice.geometric_gap(self._poison_rate)
        self._next_poison_seq = NEVER if gap < 0 else seq + 1 + gap

    def finish(self) -> None:
        """Close a scenario still running when generation stops (its label ends at
        the last reading generated)."""
        if self._scenario is not None:
            self._close_scenario(self._scenario, truncated=True)


class _AnalogStream(_DeviceStream):
    """Temperature or pressure."""

    __slots__ = ("_digits", "_offset", "_signal", "_tail", "_type_value")

    def __init__(
        self,
        spec: DeviceSpec,
        seed: int,
        start_ms: int,
        rate: float,
        anomaly_rate: float,
        poison_rate: float,
        shared: _FleetShared,
        rng: random.Random,
    ) -> None:
        super().__init__(spec, seed, start_ms, rate, anomaly_rate, poison_rate, shared, rng)
        self._signal: TemperatureSignal | PressureSignal
        if spec.sensor_type is SensorType.TEMPERATURE:
            self._signal = TemperatureSignal(spec.machine, rng, 1.0 / rate, start_ms)
            # Reported to the sensor's resolution (a power of ten: 0.01 or 0.1 °C).
            self._digits = max(0, round(-math.log10(shared.resolution)))
        else:
            self._signal = PressureSignal(spec.machine, rng)
            self._digits = 3
        self._type_value = spec.sensor_type.value
        #: A replaced sensor's calibration offset (``level_shift``), kept for ever.
        self._offset = 0.0
        self._tail = f',"schema_version":{SCHEMA_VERSION},"value":'

    def emit(self, ts_ms: int, ts_text: str, out: list[SimRecord]) -> None:
        if ts_ms >= self._load_until:
            self._load, self._load_until = shift_load(ts_ms)
        timeline = self._timeline
        state = timeline.state if ts_ms < timeline.until_ms else timeline.state_at(ts_ms)
        value = self._signal.sample(ts_ms, state, self._load) + self._offset
        seq = self.seq
        self.seq = seq + 1
        if seq >= self._next_anomaly_seq:
            self._emit_anomalous(seq, ts_ms, value, out)
        else:
            out.append(
                SimRecord(
                    f'{self._head}{ts_text}","seq":{seq}{self._tail}'
                    f'{round(value, self._digits)!r},"status":null}}'.encode(),
                    self._device_id,
                    self._type_value,
                    seq,
                    ts_ms,
                )
            )
        # >= rather than ==: burst extras consume seqs the check never sees.
        if seq >= self._next_poison_seq:
            if self._scenario is not None and self._scenario.scenario is Scenario.SILENT:
                # A silent device sends nothing, not even garbage; try again later.
                self._next_poison_seq = seq + 1
            else:
                self._emit_poison(seq, ts_ms, out)

    def _record(self, seq: int, ts_ms: int, value: float, anomaly: str | None) -> SimRecord:
        return SimRecord(
            f'{self._head}{iso_from_epoch_ms(ts_ms)}","seq":{seq}{self._tail}'
            f'{round(value, self._digits)!r},"status":null}}'.encode(),
            self.spec.device_id,
            self._type_value,
            seq,
            ts_ms,
            anomaly,
        )

    def _emit_anomalous(self, seq: int, ts_ms: int, clean: float, out: list[SimRecord]) -> None:
        active = self._scenario
        if active is None:
            active = self._start_scenario(seq, ts_ms)
        scenario = active.scenario
        if scenario is Scenario.BURST:
            # The regular reading goes out clean; the extra readings are the anomaly.
            out.append(self._record(seq, ts_ms, clean, None))
            period_ms = 1000.0 / self._rate
            spacing = max(1, int(period_ms / (active.extra_readings + 1)))
            dice = self._anomaly_dice
            extras: list[SimRecord] = []
            for extra in range(1, active.extra_readings + 1):
                extra_seq = self.seq
                self.seq = extra_seq + 1
                extra_ts = ts_ms + extra * spacing
                value = within_physical_range(
                    clean + dice.uniform(-active.magnitude, active.magnitude),
                    self.spec.sensor_type,
                )
                self._mark(active, extra_seq, extra_ts)
                extras.append(self._record(extra_seq, extra_ts, value, scenario.value))
            out.extend(extras)
            self._close_scenario(active, extras)
            return
        self._mark(active, seq, ts_ms)
        if scenario is Scenario.LEVEL_SHIFT and active.position == 0:
            self._offset += active.magnitude
            clean += active.magnitude
        if scenario is Scenario.SILENT or (
            scenario is Scenario.DROPOUT and _drops(active, self._anomaly_dice)
        ):
            self._shared.suppressed += 1
        elif scenario is Scenario.DROPOUT:
            out.append(self._record(seq, ts_ms, clean, None))
        else:
            value = active.analog_value(clean, self.spec.sensor_type, self._anomaly_dice)
            out.append(self._record(seq, ts_ms, value, scenario.value))
        active.position += 1
        active.remaining -= 1
        if active.remaining <= 0:
            self._close_scenario(active)


def _drops(active: ActiveScenario, dice: Dice) -> bool:
    """Dropout: is this reading lost? (probability ``magnitude``, at most 3 in a row)."""
    if active.dropped_run < 3 and dice.random() < active.magnitude:
        active.dropped_run += 1
        return True
    active.dropped_run = 0
    return False


class _StatusStream(_DeviceStream):
    """Equipment status: the machine's timeline, overridden by a fault scenario."""

    __slots__ = ("_encoded_status", "_tail")

    def __init__(
        self,
        spec: DeviceSpec,
        seed: int,
        start_ms: int,
        rate: float,
        anomaly_rate: float,
        poison_rate: float,
        shared: _FleetShared,
        rng: random.Random,
    ) -> None:
        super().__init__(spec, seed, start_ms, rate, anomaly_rate, poison_rate, shared, rng)
        self._tail = f',"schema_version":{SCHEMA_VERSION},"value":null,"status":"'
        self._encoded_status = spec.sensor_type.value

    def _record(
        self, seq: int, ts_ms: int, status: EquipmentStatus, anomaly: str | None
    ) -> SimRecord:
        return SimRecord(
            f'{self._head}{iso_from_epoch_ms(ts_ms)}","seq":{seq}{self._tail}{_STATUS_TEXT[status]}"}}'.encode(),
            self.spec.device_id,
            self._encoded_status,
            seq,
            ts_ms,
            anomaly,
        )

    def emit(self, ts_ms: int, ts_text: str, out: list[SimRecord]) -> None:
        timeline = self._timeline
        state = timeline.state if ts_ms < timeline.until_ms else timeline.state_at(ts_ms)
        seq = self.seq
        self.seq = seq + 1
        if seq < self._next_anomaly_seq:
            out.append(
                SimRecord(
                    f'{self._head}{ts_text}","seq":{seq}{self._tail}{_STATUS_TEXT[state]}"}}'.encode(),
                    self._device_id,
                    self._encoded_status,
                    seq,
                    ts_ms,
                )
            )
        else:
            self._emit_anomalous(seq, ts_ms, state, out)
        if seq >= self._next_poison_seq:
            if self._scenario is not None and self._scenario.scenario is Scenario.SILENT:
                self._next_poison_seq = seq + 1
            else:
                self._emit_poison(seq, ts_ms, out)

    def _emit_anomalous(
        self, seq: int, ts_ms: int, state: EquipmentStatus, out: list[SimRecord]
    ) -> None:
        active = self._scenario
        if active is None:
            active = self._start_scenario(seq, ts_ms)
        if active.scenario is Scenario.SILENT or active.scenario is Scenario.DROPOUT:
            self._mark(active, seq, ts_ms)
            if active.scenario is Scenario.SILENT or _drops(active, self._anomaly_dice):
                self._shared.suppressed += 1
            else:
                out.append(self._record(seq, ts_ms, state, None))
            active.remaining -= 1
            if active.remaining <= 0:
                self._close_scenario(active)
            return
        # FAULT, then the repair (MAINTENANCE) that follows it.
        status = fault_status(active)
        if active.remaining > 0:
            self._mark(active, seq, ts_ms)
            active.remaining -= 1
            out.append(self._record(seq, ts_ms, status, active.scenario.value))
        else:
            active.repair_readings -= 1
            out.append(self._record(seq, ts_ms, status, None))
        if active.remaining <= 0 and active.repair_readings <= 0:
            self._close_scenario(active)


class Fleet:
    """A deterministic fleet of simulated sensors (see the module docstring).

    ``devices``: fleet size (device indices ``0..devices-1``); ``seed``: everything
    random derives from it; ``rate``: readings per second per device;
    ``anomaly_rate``: probability per reading that a scenario starts on that
    device; ``poison_rate``: probability per reading that the device also sends a
    poison record; ``start``: event time of round 0 (default: now, UTC);
    ``device_indices``: build only these devices of the fleet (what :meth:`slice`
    does; a Locust user builds its slice this way without building the whole fleet).
    """

    def __init__(
        self,
        devices: int,
        seed: int = 7,
        *,
        rate: float = 1.0,
        anomaly_rate: float = 0.0,
        poison_rate: float = 0.0,
        start: datetime | None = None,
        poison_kinds: tuple[PoisonKind, ...] = ALL_POISON_KINDS,
        device_indices: range | None = None,
        scenarios: frozenset[Scenario] = CLASSIC_SCENARIOS,
        temperature_resolution: float = 0.01,
    ) -> None:
        if devices < 1:
            raise ValueError(f"devices must be at least 1, got {devices}")
        if not 0.0 < rate <= MAX_RATE_PER_DEVICE:
            raise ValueError(f"rate must be in (0, {MAX_RATE_PER_DEVICE:g}], got {rate}")
        for name, probability in (("anomaly_rate", anomaly_rate), ("poison_rate", poison_rate)):
            if not 0.0 <= probability <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {probability}")
        if not poison_kinds:
            raise ValueError("poison_kinds must not be empty")
        if temperature_resolution not in (1.0, 0.1, 0.01, 0.001):
            raise ValueError(
                "temperature_resolution must be 1, 0.1, 0.01 or 0.001, "
                f"got {temperature_resolution}"
            )
        if not scenarios:
            raise ValueError("scenarios must not be empty")
        self.devices = devices
        self.seed = seed
        self.rate = rate
        self.anomaly_rate = anomaly_rate
        self.poison_rate = poison_rate
        self.poison_kinds = poison_kinds
        self.scenarios = scenarios
        self.temperature_resolution = temperature_resolution
        moment = start if start is not None else datetime.now(UTC)
        self.start_ms = epoch_ms(moment)
        self.start = datetime_from_epoch_ms(self.start_ms)
        self.indices = device_indices if device_indices is not None else range(devices)
        self.period_ms = 1000.0 / rate
        self._shared = _FleetShared(poison_kinds, scenarios, temperature_resolution)
        self._streams = [self._stream_for(spec) for spec in build_devices(seed, self.indices)]
        # Visit devices in phase order so each round comes out in event-time order;
        # ties break on the device index to stay deterministic.
        self._ordered = sorted(self._streams, key=lambda s: (s.phase_ms, s.spec.index))
        self._round = 0
        self._position = 0
        self._pending: deque[SimRecord] = deque()
        self.records_emitted = 0

    def _stream_for(self, spec: DeviceSpec) -> _DeviceStream:
        rng = random.Random(device_seed(self.seed, spec.index))
        cls = _StatusStream if spec.sensor_type is SensorType.EQUIPMENT_STATUS else _AnalogStream
        return cls(
            spec,
            self.seed,
            self.start_ms,
            self.rate,
            self.anomaly_rate,
            self.poison_rate,
            self._shared,
            rng,
        )

    # -- identity --------------------------------------------------------------------

    @property
    def device_specs(self) -> list[DeviceSpec]:
        return [stream.spec for stream in self._streams]

    @property
    def device_ids(self) -> list[str]:
        return [stream.spec.device_id for stream in self._streams]

    def __len__(self) -> int:
        return len(self._streams)

    def slice(self, index: int, count: int) -> Fleet:
        """Devices ``index, index + count, ...`` of this fleet, as a fresh fleet with
        the same seed, rate, rates and start. ``slice(i, n)`` for all ``i`` partition
        the fleet, and each device's stream is the one it has in the whole fleet."""
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"slice index must be in [0, {count}), got {index} of {count}")
        return Fleet(
            self.devices,
            self.seed,
            rate=self.rate,
            anomaly_rate=self.anomaly_rate,
            poison_rate=self.poison_rate,
            start=self.start,
            poison_kinds=self.poison_kinds,
            device_indices=self.indices[index::count],
            scenarios=self.scenarios,
            temperature_resolution=self.temperature_resolution,
        )

    # -- generation ------------------------------------------------------------------

    @property
    def next_due_ms(self) -> int:
        """Event time (epoch ms) of the next reading this fleet will generate."""
        if not self._ordered:
            return 2**62
        base = self.start_ms + int(self._round * self.period_ms)
        return base + self._ordered[self._position].phase_ms

    def generate(self, count: int) -> list[SimRecord]:
        """The next ``count`` records (readings, burst extras and poison), exactly."""
        return self._take(count, NEVER)

    def tick(self, now: datetime | int, limit: int | None = None) -> list[SimRecord]:
        """Every record whose event time is at or before ``now`` (a datetime or
        epoch ms) not generated yet, at most ``limit`` of them (the rest stay due):
        call it on a timer to generate in real time, or with a fixed horizon to
        backfill a time window in chunks."""
        now_ms = now if isinstance(now, int) else epoch_ms(now)
        return self._take(limit, now_ms)

    def _take(self, limit: int | None, until_ms: int) -> list[SimRecord]:
        out: list[SimRecord] = []
        pending = self._pending
        while pending and (limit is None or len(out) < limit):
            out.append(pending.popleft())
        if self._ordered and (limit is None or len(out) < limit):
            self._run(limit, until_ms, out)
        overflow: list[SimRecord] = []
        if limit is not None and len(out) > limit:
            # The last device emitted more than fit (burst extras, a poison record):
            # hold the rest back for the next call.
            overflow = out[limit:]
            del out[limit:]
            pending.extendleft(reversed(overflow))
        if self._shared.deferred:
            self._publish_handed_out(overflow)
        self.records_emitted += len(out)
        return out

    def _publish_handed_out(self, held_back: list[SimRecord]) -> None:
        shared = self._shared
        held = {id(record) for record in held_back}
        still_deferred: list[SimRecord] = []
        for record in shared.deferred:
            if id(record) in held:
                still_deferred.append(record)
                continue
            label = record.label
            if isinstance(label, PoisonLabel):
                shared.labels.append(label)
                shared.poison_sent[label.kind] += 1
            elif isinstance(label, AnomalyLabel):
                if record.seq == label.end_seq:
                    shared.partial_bursts.pop(id(label), None)
                    shared.labels.append(label)
                else:
                    shared.partial_bursts[id(label)] = (label, record)
        shared.deferred = still_deferred

    @property
    def has_pending(self) -> bool:
        """Records already generated (the rest of a device's burst) not yet returned."""
        return bool(self._pending)

    def __iter__(self) -> Iterator[SimRecord]:
        """Endless: records in event-time order, 500 at a time under the hood."""
        while True:
            yield from self.generate(500)

    def _run(self, count: int | None, until_ms: int | None, out: list[SimRecord]) -> None:
        ordered = self._ordered
        size = len(ordered)
        position = self._position
        round_index = self._round
        start_ms = self.start_ms
        period_ms = self.period_ms
        limit = count if count is not None else -1
        horizon = until_ms if until_ms is not None else NEVER
        # Devices of a round share timestamps (phases are whole milliseconds): format
        # each distinct one once.
        last_ts_ms = -1
        ts_text = ""
        while True:
            base = start_ms + int(round_index * period_ms)
            while position < size:
                stream = ordered[position]
                ts_ms = base + stream.phase_ms
                if ts_ms > horizon:
                    self._position, self._round = position, round_index
                    return
                if ts_ms != last_ts_ms:
                    ts_text = iso_from_epoch_ms(ts_ms)
                    last_ts_ms = ts_ms
                stream.emit(ts_ms, ts_text, out)
                position += 1
                if len(out) >= limit >= 0:
                    if position == size:
                        position, round_index = 0, round_index + 1
                    self._position, self._round = position, round_index
                    return
            position = 0
            round_index += 1

    # -- labels and counters ---------------------------------------------------------

    def drain_labels(self) -> list[Label]:
        """Labels finished since the last call (anomalies when they end, poison at once)."""
        labels = self._shared.labels
        self._shared.labels = []
        return labels

    def finish(self) -> list[Label]:
        """Close every scenario still running and return the remaining labels."""
        for stream in self._streams:
            stream.finish()
        shared = self._shared
        # A burst cut by the end of the run: its label covers what was handed out.
        for label, last in shared.partial_bursts.values():
            shared.labels.append(
                msgspec.structs.replace(
                    label, end_seq=last.seq, end_ts=iso_from_epoch_ms(last.ts_ms)
                )
            )
        shared.partial_bursts.clear()
        return self.drain_labels()

    @property
    def anomalies_started(self) -> dict[str, int]:
        return dict(self._shared.anomalies_started)

    @property
    def poison_sent(self) -> dict[str, int]:
        return dict(self._shared.poison_sent)

    @property
    def readings_suppressed(self) -> int:
        """Readings sampled by silent devices and not sent (their seqs are skipped)."""
        return self._shared.suppressed
