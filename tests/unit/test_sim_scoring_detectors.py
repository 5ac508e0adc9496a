"""The simulator's scenarios against the processor's own detectors, scored.

A smoke test of the whole labelling contract (labels, seq ranges, the scenario ->
AnomalyType mapping): the bounds are loose on purpose, so that retuning a detector
does not break it, but a scenario nobody can detect or a flood of false alarms on a
clean fleet does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from processor.contract.record import Reading, decode_reading
from processor.core.detection import DetectorBank
from processor.core.silence import SilenceTracker
from simulator.fleet import Fleet
from simulator.scoring import score
from simulator.timestamps import datetime_from_epoch_ms

START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
HOURS = 2


def _detect(anomaly_rate: float) -> tuple[list[Any], list[Any], int]:
    fleet = Fleet(30, 11, start=START, anomaly_rate=anomaly_rate)
    bank = DetectorBank()
    silence = SilenceTracker()
    detections: list[Any] = []
    records = fleet.tick(fleet.start_ms + HOURS * 3_600_000 - 1)
    next_silence_check = 0
    for record in records:
        arrival = datetime_from_epoch_ms(record.ts_ms)
        reading = decode_reading(record.data, arrival=arrival)
        assert isinstance(reading, Reading)
        bank.observe_into(reading, detections, arrival=arrival)
        silence.observe(reading.device_id, reading.seq, arrival.timestamp(), "t")
        if record.ts_ms >= next_silence_check:  # the processor's timer, every 10 s
            detections += silence.check()
            next_silence_check = record.ts_ms + 10_000
    return detections, fleet.finish(), len(records)


def test_clean_fleet_raises_few_false_alarms() -> None:
    detections, labels, readings = _detect(0.0)
    assert labels == []
    assert len(detections) < readings * 1e-3


def test_detectors_find_the_injected_scenarios() -> None:
    detections, labels, _ = _detect(0.001)
    report = score(detections, labels)
    for name, scenario in report.by_scenario.items():
        assert scenario.labels > 0, name
        # Slow drifts on idle machines are below any detector's resolution.
        assert (scenario.recall or 0.0) >= (0.3 if name == "drift" else 0.6), (name, scenario)
    judged = [d for d in report.by_detector.values() if d.precision is not None]
    assert judged and all((d.precision or 0.0) >= 0.5 for d in judged), report.as_dict()
