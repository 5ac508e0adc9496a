"""Score detected anomalies against ground-truth labels: one scorer for ``tap detect
--labels``, ``tap demo`` and the detection benchmark.

A detection is ``(device_id, seq, anomaly_type)`` plus, when known, its event time
``ts`` (epoch seconds): what the processor stores for each anomaly (for ``silent``,
``seq`` is the last reading seen before the gap).

Labels come in two shapes:

* the simulator's :class:`~simulator.anomalies.AnomalyLabel` (``tap simulate
  --labels``): a scenario on one device over an inclusive ``seq`` range;
* a :class:`WindowLabel`: a time window ``start, end[, type]`` from a CSV (a
  maintenance log of a real recording), on one device or on every device.

Window slack (where a detection still counts as a hit):

* seq labels: ``[start_seq - 1, end_seq + grace]`` with ``grace`` =
  :data:`DEFAULT_GRACE` readings. One reading early because a ``silent``
  detection carries the last seq *before* the gap; ``grace`` readings late
  because some detectors fire when a window fills or when a value comes back.
* time windows: ``[start - 1 period, end + grace periods]`` where a period is the
  device's median reporting interval (``tap detect`` measures it per device), so
  the slack is the same number of readings as for seq labels at any cadence.

Persistent faults (labels marked ``persists``: a swapped sensor's offset, which
stays until someone recalibrates): the labelled range is the fault's *onset*; after
its slack the fault is still present until the run ends or the device's next label
of the same scenario starts (the next swap replaces the offset). A maintenance
team's view: a detection of a fault that is still there is a true detection, found
late, so inside that tail a detection of a *lasting departure*
(:data:`PERSISTENT_EVIDENCE`: ``drift``, ``seasonal``) is a hit and its delay is
the time to detect (the p90 shows how late). Other types in the tail (a spike, a
limit) say nothing about the offset and are scored as if the tail were not there.
``score(..., persistent=False)`` scores the onset range only, as before this rule
(docs/DETECTION.md, "Scoring", keeps both figures).

A detection hits a label when it is on the label's device, inside its slack, and
of a type the scenario is expected to raise (:data:`EXPECTED_DETECTIONS`; a time
window without a known scenario type accepts every type). A detection inside a
label whose type the scenario does not list (a ``spike`` at the recalibration
that ends a ``drift``) is *incidental*: reported, neither a hit nor a false alarm.
Scenarios in :data:`QUIET_SCENARIOS` (intermittent ``dropout``) must raise
nothing: every detection inside them is a false alarm and they have no recall.

Figures:

* per scenario: **recall** = labels hit / labels, where a label cut off by the end
  of the run (``truncated``) and not hit is left out (the run ended before the
  detector could have seen enough of it; the count is reported); **time to
  detect** = first hit's ``ts`` - label start (median, p90, max seconds);
* per detector type: **precision** = hits / (hits + false alarms);
* on healthy devices (no label at all; needs the observed span per device):
  false alarms per device-day and per device-week.
"""

from __future__ import annotations

import bisect
import csv
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import msgspec

from processor.contract.anomaly import AnomalyType
from simulator.anomalies import AnomalyLabel, Scenario
from simulator.poison import PoisonLabel

#: Which detector types each injected scenario may legitimately raise.
EXPECTED_DETECTIONS: Final[dict[Scenario, frozenset[AnomalyType]]] = {
    # A spike is a fast, large change; big ones also cross the static limits.
    Scenario.SPIKE: frozenset({AnomalyType.SPIKE, AnomalyType.STATISTICAL, AnomalyType.LIMIT}),
    # A drift leaves the learned baseline; a long one crosses a static limit.
    Scenario.DRIFT: frozenset(
        {AnomalyType.STATISTICAL, AnomalyType.LIMIT, AnomalyType.DRIFT, AnomalyType.SEASONAL}
    ),
    Scenario.STUCK: frozenset({AnomalyType.STUCK}),
    # Beyond the static limits by construction; the jump there is also fast and far.
    Scenario.OUT_OF_RANGE: frozenset(
        {AnomalyType.LIMIT, AnomalyType.SPIKE, AnomalyType.STATISTICAL}
    ),
    Scenario.FAULT: frozenset({AnomalyType.FAULT}),
    Scenario.SILENT: frozenset({AnomalyType.SILENT}),
    # Erratic extra readings: fast changes and outliers.
    Scenario.BURST: frozenset({AnomalyType.SPIKE, AnomalyType.STATISTICAL}),
    # Slow degradation: too slow for the fast baseline, found by the slow detectors.
    Scenario.DEGRADATION: frozenset(
        {AnomalyType.DRIFT, AnomalyType.SEASONAL, AnomalyType.STATISTICAL, AnomalyType.LIMIT}
    ),
    # A new sensor reads a constant offset from the old one: a lasting step.
    Scenario.LEVEL_SHIFT: frozenset(
        {AnomalyType.DRIFT, AnomalyType.STATISTICAL, AnomalyType.SEASONAL, AnomalyType.SPIKE}
    ),
    # A transducer losing span reads low under load: a lasting departure.
    Scenario.GAIN_LOSS: frozenset(
        {AnomalyType.DRIFT, AnomalyType.STATISTICAL, AnomalyType.SEASONAL}
    ),
    Scenario.DROPOUT: frozenset(),
}

#: Detections that say "the level is lastingly off": the only ones that find a
#: persistent fault after its onset (a spike hours after a sensor swap does not).
PERSISTENT_EVIDENCE: Final = frozenset({AnomalyType.DRIFT, AnomalyType.SEASONAL})

#: Scenarios that must raise nothing: a detection inside one is a false alarm.
QUIET_SCENARIOS: Final = frozenset({Scenario.DROPOUT})

DEFAULT_GRACE: Final = 5

_label_decoder: Final = msgspec.json.Decoder(AnomalyLabel | PoisonLabel)


@dataclass(frozen=True, slots=True)
class Detection:
    device_id: str
    seq: int
    anomaly_type: AnomalyType
    #: Event time (epoch seconds), for time windows and time to detect.
    ts: float | None = None


@dataclass(frozen=True, slots=True)
class WindowLabel:
    """A labelled time window (epoch seconds, inclusive); ``device_id`` ``None``
    means every device; ``kind`` a scenario name, or free text (any type hits)."""

    start: float
    end: float
    kind: str = "window"
    device_id: str | None = None


Label = AnomalyLabel | WindowLabel


@dataclass(slots=True)
class ScenarioScore:
    labels: int = 0
    detected: int = 0
    #: Labels cut off by the end of the run and not detected (left out of recall).
    truncated_missed: int = 0
    #: Quiet scenarios: labels with at least one detection inside (false alarms).
    alarmed: int = 0
    quiet: bool = False
    delays_s: list[float] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        judged = self.labels - self.truncated_missed
        if self.quiet or judged <= 0:
            return None
        return self.detected / judged

    def delay(self, q: float) -> float | None:
        if not self.delays_s:
            return None
        ordered = sorted(self.delays_s)
        return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 1)


@dataclass(slots=True)
class DetectorScore:
    detections: int = 0
    true_positives: int = 0
    false_positives: int = 0
    incidental: int = 0

    @property
    def precision(self) -> float | None:
        judged = self.true_positives + self.false_positives
        return self.true_positives / judged if judged else None


@dataclass(slots=True)
class HealthyScore:
    """False alarms on devices without any label."""

    devices: int = 0
    device_days: float = 0.0
    false_alarms: int = 0

    @property
    def per_device_day(self) -> float | None:
        return self.false_alarms / self.device_days if self.device_days > 0 else None

    @property
    def per_device_week(self) -> float | None:
        day = self.per_device_day
        return None if day is None else day * 7


@dataclass(slots=True)
class ScoreReport:
    by_scenario: dict[str, ScenarioScore] = field(default_factory=dict)
    by_detector: dict[str, DetectorScore] = field(default_factory=dict)
    healthy: HealthyScore = field(default_factory=HealthyScore)
    #: The labels no expected detection hit (truncated ones included, marked), and
    #: the detections scored as false alarms: what a back-test looks at next. Not in
    #: :meth:`as_dict` (a month of a fleet can hold thousands); see :meth:`details`.
    missed_labels: list[Label] = field(default_factory=list)
    false_alarms: list[Detection] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "by_scenario": {
                name: {
                    "labels": s.labels,
                    "detected": s.detected,
                    "truncated_missed": s.truncated_missed,
                    "recall": s.recall,
                    "time_to_detect_s": {
                        "median": s.delay(0.5),
                        "p90": s.delay(0.9),
                        "max": s.delay(1.0),
                    },
                }
                | ({"quiet": True, "alarmed": s.alarmed} if s.quiet else {})
                for name, s in sorted(self.by_scenario.items())
            },
            "by_detector": {
                name: {
                    "detections": d.detections,
                    "true_positives": d.true_positives,
                    "false_positives": d.false_positives,
                    "incidental": d.incidental,
                    "precision": d.precision,
                }
                for name, d in sorted(self.by_detector.items())
            },
            "healthy": {
                "devices": self.healthy.devices,
                "device_days": round(self.healthy.device_days, 3),
                "false_alarms": self.healthy.false_alarms,
                "per_device_day": _round(self.healthy.per_device_day),
                "per_device_week": _round(self.healthy.per_device_week),
            },
        }

    def details(self) -> dict[str, list[dict[str, Any]]]:
        """The missed labels and the false alarms, one JSON object each."""
        return {
            "missed_labels": [_label_dict(label) for label in self.missed_labels],
            "false_alarms": [
                {
                    "device_id": d.device_id,
                    "seq": d.seq,
                    "anomaly_type": d.anomaly_type.value,
                    "ts": None
                    if d.ts is None
                    else datetime.fromtimestamp(d.ts, UTC).isoformat(timespec="seconds"),
                }
                for d in self.false_alarms
            ],
        }

    def misses(
        self,
        floor: float,
        *,
        scenarios: Iterable[str] | None = None,
        detectors: Iterable[str] | None = None,
    ) -> list[str]:
        """Recalls and precisions below ``floor`` (each as a sentence naming it),
        for the given scenarios/detectors or all that have a figure."""
        names = set(scenarios) if scenarios is not None else None
        kinds = set(detectors) if detectors is not None else None
        out: list[str] = []
        for name, s in sorted(self.by_scenario.items()):
            recall = s.recall
            if recall is not None and recall < floor and (names is None or name in names):
                out.append(
                    f"recall of {name} {recall:.2f} < {floor:g} ({s.detected}/"
                    f"{s.labels - s.truncated_missed})"
                )
        for name, d in sorted(self.by_detector.items()):
            precision = d.precision
            if precision is not None and precision < floor and (kinds is None or name in kinds):
                out.append(
                    f"precision of {name} {precision:.2f} < {floor:g} ({d.true_positives}/"
                    f"{d.true_positives + d.false_positives})"
                )
        return out


def _label_dict(label: Label) -> dict[str, Any]:
    if isinstance(label, AnomalyLabel):
        return msgspec.to_builtins(label)
    return {
        "kind": label.kind,
        "device_id": label.device_id,
        "start": datetime.fromtimestamp(label.start, UTC).isoformat(timespec="seconds"),
        "end": datetime.fromtimestamp(label.end, UTC).isoformat(timespec="seconds"),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def read_labels(path: str | Path) -> list[AnomalyLabel | PoisonLabel]:
    """All labels of a labels file written by ``tap simulate --labels``."""
    with open(path, "rb") as handle:
        return [_label_decoder.decode(line) for line in handle if line.strip()]


def _epoch(text: str) -> float:
    """ISO-8601 (``Z`` or an offset; none means UTC) or epoch seconds -> epoch seconds."""
    raw = text.strip()
    try:
        return float(raw)
    except ValueError:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _epoch_or_none(text: str) -> float | None:
    try:
        return _epoch(text)
    except ValueError:
        return None


def read_window_labels(path: str | Path) -> list[WindowLabel]:
    """Windows from a CSV of ``start,end[,type[,device_id]]`` rows (a header row
    is skipped when its first field is not a time). Raises ``ValueError`` naming
    the line of a row that is not one."""
    out: list[WindowLabel] = []
    with open(path, newline="", encoding="utf-8") as handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            try:
                start, end = _epoch(row[0]), _epoch(row[1])
            except (ValueError, IndexError) as exc:
                if line_no == 1:
                    continue  # a header row
                raise ValueError(
                    f"{path}: line {line_no}: expected start,end[,type]: {exc}"
                ) from None
            if end < start:
                raise ValueError(f"{path}: line {line_no}: end {row[1]!r} before start {row[0]!r}")
            kind = row[2].strip() if len(row) > 2 and row[2].strip() else "window"
            device = row[3].strip() if len(row) > 3 and row[3].strip() else None
            out.append(WindowLabel(start, end, kind, device))
    return out


def _as_detection(item: Detection | tuple[Any, ...] | Any) -> Detection:
    if isinstance(item, Detection):
        return item
    if isinstance(item, tuple):
        device_id, seq, anomaly_type, *rest = item
        ts = rest[0] if rest else None
        return Detection(device_id, int(seq), AnomalyType(anomaly_type), _ts_of(ts))
    # Anything shaped like processor.core.model.Anomaly.
    return Detection(
        item.device_id,
        int(item.seq),
        AnomalyType(item.anomaly_type),
        _ts_of(getattr(item, "ts", None)),
    )


def _ts_of(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def _expected(kind: str) -> tuple[frozenset[AnomalyType] | None, bool]:
    """(accepted types or None for "any", quiet) for a label's scenario name."""
    try:
        scenario = Scenario(kind)
    except ValueError:
        return None, False
    return EXPECTED_DETECTIONS[scenario], scenario in QUIET_SCENARIOS


def score(
    detections: Iterable[Detection | tuple[Any, ...] | Any],
    labels: Iterable[AnomalyLabel | PoisonLabel | WindowLabel],
    *,
    grace: int = DEFAULT_GRACE,
    period_s: Mapping[str, float] | float = 1.0,
    observed_s: Mapping[str, float] | None = None,
    persistent: bool = True,
) -> ScoreReport:
    """Score ``detections`` against ``labels`` (see the module docstring).

    ``detections`` may be :class:`Detection`, ``(device_id, seq, type[, ts])``
    tuples or ``processor.core.model.Anomaly`` objects. Poison labels are ignored
    (poison is scored against dead letters). ``period_s``: reporting interval per
    device (or one for all) for the slack of time windows. ``observed_s``: seconds
    each device was observed; gives the healthy-device false-alarm rate.
    ``persistent``: a ``persists`` label's fault is present after its onset (the
    default); ``False`` scores the onset range only (the figures before that rule).
    """
    kept = [label for label in labels if isinstance(label, AnomalyLabel | WindowLabel)]
    # Scenarios appear once they have a label; every detector type always appears.
    report = ScoreReport()
    for anomaly_type in AnomalyType:
        report.by_detector[anomaly_type.value] = DetectorScore()

    def period_of(device_id: str) -> float:
        return period_s if isinstance(period_s, float | int) else period_s.get(device_id, 1.0)

    # Per device: seq windows sorted by start, for a bisect per detection; time
    # windows (few: a maintenance log) are scanned.
    seq_windows: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    time_windows: list[tuple[int, WindowLabel]] = []
    starts_s: list[float | None] = []
    expected: list[tuple[frozenset[AnomalyType] | None, bool]] = []
    for index, label in enumerate(kept):
        kind = label.anomaly if isinstance(label, AnomalyLabel) else label.kind
        expected.append(_expected(kind))
        report.by_scenario.setdefault(kind, ScenarioScore(quiet=expected[-1][1]))
        report.by_scenario[kind].labels += 1
        if isinstance(label, AnomalyLabel):
            seq_windows[label.device_id].append((label.start_seq - 1, label.end_seq + grace, index))
            starts_s.append(_epoch_or_none(label.start_ts))
        else:
            time_windows.append((index, label))
            starts_s.append(label.start)
    # Persistent faults: after the onset's slack until the device's next label of
    # the same scenario (or for ever), for PERSISTENT_EVIDENCE detections only.
    tails: dict[str, list[tuple[int, float, int]]] = defaultdict(list)
    if persistent:
        onsets: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
        for index, label in enumerate(kept):
            if isinstance(label, AnomalyLabel) and label.persists:
                onsets[(label.device_id, label.anomaly)].append((label.start_seq, index))
        for (device_id, _), found in onsets.items():
            found.sort()
            for position, (_, index) in enumerate(found):
                persisting = kept[index]
                assert isinstance(persisting, AnomalyLabel)
                until = found[position + 1][0] - 1 if position + 1 < len(found) else math.inf
                tails[device_id].append((persisting.end_seq + grace + 1, until, index))
    starts: dict[str, list[int]] = {}
    for device_id, device_windows in seq_windows.items():
        device_windows.sort()
        starts[device_id] = [window[0] for window in device_windows]
    labelled_devices = set(seq_windows) | {w.device_id for _, w in time_windows if w.device_id}
    every_device_labelled = any(w.device_id is None for _, w in time_windows)

    first_hit: list[float | None] = [None] * len(kept)
    hit = [False] * len(kept)
    alarmed = [False] * len(kept)
    healthy_alarms = 0
    for item in detections:
        detection = _as_detection(item)
        detector = report.by_detector[detection.anomaly_type.value]
        detector.detections += 1
        inside: list[int] = []
        position = bisect.bisect_right(starts.get(detection.device_id, []), detection.seq)
        for low, high, index in seq_windows.get(detection.device_id, [])[:position]:
            if low <= detection.seq <= high:
                inside.append(index)
        if detection.anomaly_type in PERSISTENT_EVIDENCE:
            for low, high_tail, index in tails.get(detection.device_id, ()):
                if low <= detection.seq <= high_tail:
                    inside.append(index)
        if time_windows and detection.ts is not None:
            period = period_of(detection.device_id)
            for index, window in time_windows:
                if window.device_id is not None and window.device_id != detection.device_id:
                    continue
                if window.start - period <= detection.ts <= window.end + grace * period:
                    inside.append(index)
        matched = incidental = false_alarm = False
        for index in inside:
            accepted, quiet = expected[index]
            if quiet:
                alarmed[index] = false_alarm = True
            elif accepted is None or detection.anomaly_type in accepted:
                matched = hit[index] = True
                start_s = starts_s[index]
                if detection.ts is not None and start_s is not None:
                    delay = max(0.0, detection.ts - start_s)
                    previous = first_hit[index]
                    first_hit[index] = delay if previous is None else min(previous, delay)
            else:
                incidental = True
        if matched:
            detector.true_positives += 1
        elif incidental and not false_alarm:
            detector.incidental += 1
        else:
            detector.false_positives += 1
            report.false_alarms.append(detection)
            if not inside and detection.device_id not in labelled_devices:
                healthy_alarms += 1
    for index, label in enumerate(kept):
        kind = label.anomaly if isinstance(label, AnomalyLabel) else label.kind
        scenario_score = report.by_scenario[kind]
        if hit[index]:
            scenario_score.detected += 1
            first = first_hit[index]
            if first is not None:
                scenario_score.delays_s.append(first)
        else:
            if not scenario_score.quiet:
                report.missed_labels.append(label)
            if isinstance(label, AnomalyLabel) and label.truncated:
                scenario_score.truncated_missed += 1
        if alarmed[index]:
            scenario_score.alarmed += 1
    if observed_s is not None and not every_device_labelled:
        healthy = [d for d in observed_s if d not in labelled_devices]
        report.healthy = HealthyScore(
            devices=len(healthy),
            device_days=sum(observed_s[d] for d in healthy) / 86_400.0,
            false_alarms=healthy_alarms,
        )
    return report
