"""The demo's and the suite's arithmetic, on plain values (no servers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2e.report import latency_summary, per_second, percentile
from e2e.tests.targets import stack_outputs


def test_nearest_rank_percentiles_report_observed_values() -> None:
    values = sorted(float(v) for v in range(1, 101))
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    summary = latency_summary([3.0, 1.0, 2.0])
    assert (summary["count"], summary["p50"], summary["max"]) == (3, 2.0, 3.0)
    assert latency_summary([])["p99"] is None


def test_per_second_counts_from_the_origin() -> None:
    assert per_second([10.1, 10.9, 12.5], origin=10.0) == [2, 0, 1]
    assert per_second([], origin=0.0) == []


def test_stack_outputs_read_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = {"stream_name": {"value": "kinesis-readings-dev-x", "type": "string", "sensitive": False}}
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(raw))
    monkeypatch.setenv("TAP_STACK_OUTPUTS", str(path))
    assert stack_outputs() == {"stream_name": "kinesis-readings-dev-x"}
