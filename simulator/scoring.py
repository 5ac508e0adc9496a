"""Score detected anomalies against the simulator's ground-truth labels.

A detection is ``(device_id, seq, anomaly_type)``: what the processor stores for
each anomaly (for ``silent``, ``seq`` is the last reading seen before the gap).

Matching. A detection *hits* a label when it is on the same device, its ``seq``
lies in ``[start_seq - 1, end_seq + grace]`` (one reading early for ``silent``,
``grace`` readings late for detectors that fire when a window fills or when a
value comes back), and its type is one the scenario is expected to produce
(:data:`EXPECTED_DETECTIONS`).

Per scenario, **recall** = labels hit by at least one detection / labels.
Per detector type, **precision** = detections that hit a label / (those +
detections outside every label). A detection inside a label's window whose type
the scenario does not list (a ``spike`` at the end of a ``drift``'s recalibration)
is *incidental*: reported, but neither a hit nor a false alarm.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec

from processor.core.model import AnomalyType
from simulator.anomalies import AnomalyLabel, Scenario
from simulator.poison import PoisonLabel

#: Which detector types each injected scenario may legitimately raise.
EXPECTED_DETECTIONS: Final[dict[Scenario, frozenset[AnomalyType]]] = {
    # A spike is a fast, large change; big ones also cross the static limits.
    Scenario.SPIKE: frozenset({AnomalyType.SPIKE, AnomalyType.STATISTICAL, AnomalyType.LIMIT}),
    # A drift leaves the learned baseline; a long one crosses a static limit.
    Scenario.DRIFT: frozenset({AnomalyType.STATISTICAL, AnomalyType.LIMIT}),
    Scenario.STUCK: frozenset({AnomalyType.STUCK}),
    # Beyond the static limits by construction; the jump there is also fast and far.
    Scenario.OUT_OF_RANGE: frozenset(
        {AnomalyType.LIMIT, AnomalyType.SPIKE, AnomalyType.STATISTICAL}
    ),
    Scenario.FAULT: frozenset({AnomalyType.FAULT}),
    Scenario.SILENT: frozenset({AnomalyType.SILENT}),
    # Erratic extra readings: fast changes and outliers.
    Scenario.BURST: frozenset({AnomalyType.SPIKE, AnomalyType.STATISTICAL}),
}

DEFAULT_GRACE: Final = 5

_label_decoder: Final = msgspec.json.Decoder(AnomalyLabel | PoisonLabel)


@dataclass(frozen=True, slots=True)
class Detection:
    device_id: str
    seq: int
    anomaly_type: AnomalyType


@dataclass(slots=True)
class ScenarioScore:
    labels: int = 0
    detected: int = 0

    @property
    def recall(self) -> float | None:
        return self.detected / self.labels if self.labels else None


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
class ScoreReport:
    by_scenario: dict[str, ScenarioScore] = field(default_factory=dict)
    by_detector: dict[str, DetectorScore] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "by_scenario": {
                name: {"labels": s.labels, "detected": s.detected, "recall": s.recall}
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
        }


def read_labels(path: str | Path) -> list[AnomalyLabel | PoisonLabel]:
    """All labels of a labels file written by ``tap simulate --labels``."""
    with open(path, "rb") as handle:
        return [_label_decoder.decode(line) for line in handle if line.strip()]


def _as_detection(item: Detection | tuple[str, int, str | AnomalyType] | Any) -> Detection:
    if isinstance(item, Detection):
        return item
    if isinstance(item, tuple):
        device_id, seq, anomaly_type = item
        return Detection(device_id, int(seq), AnomalyType(anomaly_type))
    # Anything shaped like processor.core.model.Anomaly.
    return Detection(item.device_id, int(item.seq), AnomalyType(item.anomaly_type))


def score(
    detections: Iterable[Detection | tuple[str, int, str | AnomalyType] | Any],
    labels: Iterable[AnomalyLabel | PoisonLabel],
    *,
    grace: int = DEFAULT_GRACE,
) -> ScoreReport:
    """Precision by detector type and recall by scenario (see the module docstring).

    ``detections`` may be :class:`Detection`, ``(device_id, seq, type)`` tuples or
    ``processor.core.model.Anomaly`` objects. Poison labels are ignored (poison is
    scored against dead letters, not detections).
    """
    anomaly_labels = [label for label in labels if isinstance(label, AnomalyLabel)]
    report = ScoreReport()
    for scenario in Scenario:
        report.by_scenario[scenario.value] = ScenarioScore()
    for anomaly_type in AnomalyType:
        report.by_detector[anomaly_type.value] = DetectorScore()

    # Per device: label windows sorted by start, for a bisect per detection.
    windows: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for index, label in enumerate(anomaly_labels):
        report.by_scenario[label.anomaly].labels += 1
        windows[label.device_id].append((label.start_seq - 1, label.end_seq + grace, index))
    starts: dict[str, list[int]] = {}
    for device_id, device_windows in windows.items():
        device_windows.sort()
        starts[device_id] = [window[0] for window in device_windows]

    hit = [False] * len(anomaly_labels)
    for item in detections:
        detection = _as_detection(item)
        detector = report.by_detector[detection.anomaly_type.value]
        detector.detections += 1
        device_windows = windows.get(detection.device_id, [])
        # Only windows starting at or before the detection can hold it; a device
        # has a handful of labels, so scanning those is cheap.
        position = bisect.bisect_right(starts.get(detection.device_id, []), detection.seq)
        matched = incidental = False
        for low, high, index in device_windows[:position]:
            if low <= detection.seq <= high:
                scenario = Scenario(anomaly_labels[index].anomaly)
                if detection.anomaly_type in EXPECTED_DETECTIONS[scenario]:
                    matched = True
                    hit[index] = True
                else:
                    incidental = True
        if matched:
            detector.true_positives += 1
        elif incidental:
            detector.incidental += 1
        else:
            detector.false_positives += 1
    for index, label in enumerate(anomaly_labels):
        if hit[index]:
            report.by_scenario[label.anomaly].detected += 1
    return report
