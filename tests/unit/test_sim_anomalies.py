"""Injected scenarios do what their labels say, and nothing else changes."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from processor.contract.record import PHYSICAL_RANGE, SensorType
from processor.core.model import AnomalyType
from simulator.anomalies import CLASSIC_SCENARIOS, DETECTOR_LIMITS, AnomalyLabel, Scenario
from simulator.fleet import Fleet, SimRecord
from simulator.scoring import EXPECTED_DETECTIONS, Detection, read_labels, score

START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # Tuesday, early shift
HORIZON_MS = 3_600_000


def _run(anomaly_rate: float) -> tuple[list[SimRecord], list[Any]]:
    fleet = Fleet(60, 11, start=START, anomaly_rate=anomaly_rate)
    records = fleet.tick(fleet.start_ms + HORIZON_MS - 1)
    return records, fleet.finish()


@pytest.fixture(scope="module")
def runs() -> dict[str, Any]:
    clean, clean_labels = _run(0.0)
    dirty, labels = _run(0.001)
    assert clean_labels == []
    return {"clean": clean, "dirty": dirty, "labels": labels}


def _reading(record: SimRecord) -> Any:
    decoded = msgspec.json.decode(record.data)
    return decoded["value"] if decoded["value"] is not None else decoded["status"]


def test_every_scenario_is_injected(runs: dict[str, Any]) -> None:
    kinds = {label.anomaly for label in runs["labels"]}
    # The default set; the plant set is tested in test_sim_plant_scenarios.py.
    assert kinds == {scenario.value for scenario in CLASSIC_SCENARIOS}


def test_readings_outside_labels_equal_the_clean_fleet(runs: dict[str, Any]) -> None:
    clean = {(r.partition_key, r.ts_ms): r.data for r in runs["clean"]}
    labelled: set[tuple[str, int]] = set()
    for label in runs["labels"]:
        labelled.update((label.device_id, seq) for seq in range(label.start_seq, label.end_seq + 1))
    outside = 0
    for record in runs["dirty"]:
        key = (record.partition_key, record.seq)
        if key in labelled:
            assert record.anomaly is not None
            continue
        assert record.anomaly is None
        if record.sensor_type == "equipment_status" and b'"MAINTENANCE"' in record.data:
            continue  # the repair after a fault (not labelled) may differ from the clean run
        # The seq may have moved on (burst extras, silent gaps): compare by event time.
        clean_data = clean[(record.partition_key, record.ts_ms)]
        assert _reading_value(clean_data) == _reading_value(record.data)
        outside += 1
    # Scenarios last minutes (a fault and its repair about an hour), so even at
    # 0.001 per reading a good share of the hour is labelled.
    assert outside > 0.5 * len(runs["clean"])


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _reading_value(data: bytes) -> Any:
    decoded = msgspec.json.decode(data)
    return decoded["value"], decoded["status"]


def test_labelled_ranges_hold_what_was_injected(runs: dict[str, Any]) -> None:
    clean_by_time = {(r.partition_key, r.ts_ms): _reading(r) for r in runs["clean"]}
    dirty_by_seq: dict[tuple[str, int], SimRecord] = {
        (r.partition_key, r.seq): r for r in runs["dirty"]
    }
    seen: dict[str, int] = defaultdict(int)
    for label in runs["labels"]:
        assert isinstance(label, AnomalyLabel)
        assert label.start_seq <= label.end_seq
        assert _parse(label.start_ts) <= _parse(label.end_ts)
        sensor_type = SensorType(label.sensor_type)
        seqs = range(label.start_seq, label.end_seq + 1)
        records = [dirty_by_seq.get((label.device_id, seq)) for seq in seqs]
        scenario = Scenario(label.anomaly)
        seen[scenario] += 1
        if scenario is Scenario.SILENT:
            assert all(record is None for record in records), label
            continue
        assert all(record is not None and record.anomaly == scenario.value for record in records)
        present = [record for record in records if record is not None]
        values = [_reading(record) for record in present]
        if scenario is Scenario.BURST:
            regular_ts = present[0].ts_ms - (present[1].ts_ms - present[0].ts_ms)
            assert all(regular_ts < r.ts_ms < regular_ts + 1000 for r in present)
            continue
        cleans = [clean_by_time[(label.device_id, record.ts_ms)] for record in present]
        if scenario is Scenario.FAULT:
            assert set(values) == {"FAULT"}
            assert "FAULT" not in cleans
        elif scenario is Scenario.SPIKE:
            floor = 12.0 if sensor_type is SensorType.TEMPERATURE else 100.0
            assert all(abs(v - c) >= floor - 0.01 for v, c in zip(values, cleans, strict=True))
        elif scenario is Scenario.DRIFT:
            # A ramp away from the truth: upwards for temperature, downwards (a leak)
            # for pressure, growing reading by reading (a run may cut it short).
            sign = 1.0 if sensor_type is SensorType.TEMPERATURE else -1.0
            offsets = [sign * (v - c) for v, c in zip(values, cleans, strict=True)]
            low = PHYSICAL_RANGE[sensor_type][0]
            assert all(o > 0 or v == low for o, v in zip(offsets, values, strict=True))
            assert len(values) >= 60 or label.end_ts >= "2026-11-24T09:45"
            assert offsets[len(offsets) // 2] <= offsets[-1] + 0.01
        elif scenario is Scenario.STUCK:
            assert len(set(values)) == 1 and len(values) >= 40
        elif scenario is Scenario.OUT_OF_RANGE:
            low, high = PHYSICAL_RANGE[sensor_type]
            limit = DETECTOR_LIMITS[sensor_type].critical_high
            assert all(limit < v <= high and v >= low for v in values)
    assert set(seen) == set(CLASSIC_SCENARIOS)


def test_scoring_a_perfect_detector(runs: dict[str, Any]) -> None:
    labels = runs["labels"]
    detections = []
    for label in labels:
        expected = sorted(EXPECTED_DETECTIONS[Scenario(label.anomaly)])[0]
        seq = label.start_seq - 1 if label.anomaly == "silent" else label.start_seq
        detections.append((label.device_id, seq, expected))
    report = score(detections, labels)
    for name, scenario_score in report.by_scenario.items():
        assert scenario_score.recall == 1.0, name
    for detector_score in report.by_detector.values():
        assert detector_score.false_positives == 0
        assert detector_score.precision in (1.0, None)


def test_scoring_counts_misses_false_alarms_and_incidentals() -> None:
    labels = [
        AnomalyLabel("d1", "temperature", "spike", 10, 10, "t", "t"),
        AnomalyLabel("d1", "temperature", "drift", 100, 200, "t", "t"),
        AnomalyLabel("d2", "pressure", "stuck", 5, 60, "t", "t"),
    ]
    detections = [
        Detection("d1", 11, AnomalyType.SPIKE),  # hit, one reading late
        Detection("d1", 203, AnomalyType.SPIKE),  # drift's recalibration: incidental
        Detection("d1", 500, AnomalyType.STATISTICAL),  # false alarm
        ("d3", 1, "limit"),  # false alarm on an unlabelled device
    ]
    report = score(detections, labels)
    assert report.by_scenario["spike"].recall == 1.0
    assert report.by_scenario["drift"].recall == 0.0
    assert report.by_scenario["stuck"].recall == 0.0
    assert report.by_detector["spike"].true_positives == 1
    assert report.by_detector["spike"].incidental == 1
    assert report.by_detector["spike"].precision == 1.0
    assert report.by_detector["statistical"].precision == 0.0
    assert report.by_detector["limit"].false_positives == 1
    assert report.as_dict()["by_scenario"]["spike"]["labels"] == 1


def test_labels_file_round_trip(tmp_path: Any) -> None:
    fleet = Fleet(30, 3, start=START, anomaly_rate=0.01, poison_rate=0.01)
    fleet.tick(fleet.start_ms + 600_000)
    labels = fleet.finish()
    path = tmp_path / "labels.jsonl"
    path.write_bytes(b"".join(msgspec.json.encode(label) + b"\n" for label in labels))
    assert read_labels(path) == labels


def test_only_a_level_shift_label_persists() -> None:
    """A swapped sensor's offset stays for the rest of the run: its label says so
    (``persists``), so the scorer counts a later lasting-departure detection as
    finding it; scenarios that end (a gain loss, a degradation) are labelled until
    their repair and do not persist."""
    from simulator.anomalies import PLANT_SCENARIOS

    fleet = Fleet(30, 5, start=START, rate=1 / 300, anomaly_rate=0.003, scenarios=PLANT_SCENARIOS)
    fleet.tick(fleet.start_ms + 10 * 86_400_000 - 1)
    labels = [x for x in fleet.finish() + fleet.drain_labels() if isinstance(x, AnomalyLabel)]
    kinds = {x.anomaly for x in labels}
    assert {"level_shift", "gain_loss"} <= kinds, kinds
    assert {x.anomaly for x in labels if x.persists} == {"level_shift"}
    line = msgspec.json.encode(next(x for x in labels if x.anomaly == "spike" or not x.persists))
    assert b"persists" not in line  # label files of other scenarios keep their bytes
