"""The plant scenarios (``--scenarios plant``) do what their labels say."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from simulator.anomalies import PLANT_SCENARIOS, AnomalyLabel, Scenario
from simulator.fleet import Fleet, SimRecord

START = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)  # Tuesday, early shift
PERIOD_S = 300  # 5-minute cadence
DAYS = 4


def _run(anomaly_rate: float, resolution: float = 0.1) -> tuple[list[SimRecord], list[Any]]:
    fleet = Fleet(
        60,
        5,
        rate=1 / PERIOD_S,
        start=START,
        anomaly_rate=anomaly_rate,
        scenarios=PLANT_SCENARIOS,
        temperature_resolution=resolution,
    )
    records = fleet.tick(fleet.start_ms + DAYS * 86_400_000 - 1)
    return records, fleet.finish()


@pytest.fixture(scope="module")
def runs() -> dict[str, Any]:
    clean, none = _run(0.0)
    dirty, labels = _run(0.004)
    assert none == []
    return {"clean": clean, "dirty": dirty, "labels": labels}


def _values(records: list[SimRecord]) -> dict[tuple[str, int], Any]:
    out = {}
    for record in records:
        if record.poison is None:
            decoded = msgspec.json.decode(record.data)
            out[(record.partition_key, record.seq)] = decoded["value"] or decoded["status"]
    return out


def test_every_plant_scenario_is_injected_and_labelled(runs: dict[str, Any]) -> None:
    kinds = {label.anomaly for label in runs["labels"] if isinstance(label, AnomalyLabel)}
    assert kinds == {s.value for s in PLANT_SCENARIOS}


def test_temperatures_are_reported_to_the_resolution(runs: dict[str, Any]) -> None:
    for key, value in _values(runs["clean"]).items():
        if "temperature" in key[0]:
            assert round(value, 1) == value


def test_scenarios_change_what_their_labels_say(runs: dict[str, Any]) -> None:
    clean, dirty = _values(runs["clean"]), _values(runs["dirty"])
    by_kind: dict[str, list[AnomalyLabel]] = defaultdict(list)
    for label in runs["labels"]:
        by_kind[label.anomaly].append(label)
    for label in by_kind[Scenario.DEGRADATION]:
        assert "temperature" in label.device_id
        seqs = range(label.start_seq, label.end_seq + 1)
        if len(seqs) < 3:
            continue  # cut off by the end of the run
        offsets = [dirty[(label.device_id, s)] - clean[(label.device_id, s)] for s in seqs]
        rate_per_h = (offsets[-1] - offsets[0]) / max(1, len(offsets) - 1) * 3600 / PERIOD_S
        assert 0.4 <= rate_per_h <= 3.1, label
        assert all(b >= a - 0.11 for a, b in itertools.pairwise(offsets))
    for label in by_kind[Scenario.GAIN_LOSS]:
        assert "pressure" in label.device_id
        key = (label.device_id, label.start_seq)
        if clean[key] > 10:
            assert 0.64 <= dirty[key] / clean[key] <= 0.86
    for label in by_kind[Scenario.DROPOUT]:
        if label.truncated:
            continue  # cut off by the end of the run
        seqs = range(label.start_seq, label.end_seq + 1)
        sent = [(label.device_id, s) in dirty for s in seqs]
        assert any(sent), label  # intermittent, not a silence
        # P(nothing lost in 12 readings) = 0.7 ** 12 = 1.4 %.
        assert len(sent) < 12 or not all(sent), label
        run = longest = 0
        for ok in sent:
            run = 0 if ok else run + 1
            longest = max(longest, run)
        assert longest <= 3
    for label in by_kind[Scenario.LEVEL_SHIFT]:
        # For ever after the swap the device reads a constant offset from the clean run.
        after = [
            dirty[(label.device_id, s)] - clean[(label.device_id, s)]
            for s in range(label.start_seq, label.end_seq + 1)
            if (label.device_id, s) in dirty and (label.device_id, s) in clean
        ]
        assert after and max(after) - min(after) < 0.25
        earlier = [
            dirty[(label.device_id, s)] - clean[(label.device_id, s)]
            for s in range(max(0, label.start_seq - 20), label.start_seq)
            if (label.device_id, s) in dirty and (label.device_id, s) in clean
        ]
        # An earlier swap's offset stays too (the median skips a scenario just before).
        before = sorted(earlier)[len(earlier) // 2] if earlier else 0.0
        assert 2.9 <= abs(after[0] - before) <= 10.1
    assert by_kind[Scenario.DEGRADATION] and by_kind[Scenario.DROPOUT]


def test_a_quantised_stuck_sensor_flickers_by_one_step() -> None:
    records, labels = _run(0.004)
    values = _values(records)
    flickers = 0
    for label in labels:
        if label.anomaly == "stuck" and "temperature" in label.device_id:
            seen = [values[(label.device_id, s)] for s in range(label.start_seq, label.end_seq + 1)]
            assert max(seen) - min(seen) <= 0.2 + 1e-9
            flickers += len(set(seen)) > 1
    assert flickers
