"""JSON log lines and embedded-metric-format output of processor/observability.py."""

from __future__ import annotations

import io
import json
import logging

import pytest

from processor.observability import JsonFormatter, Metrics


def test_json_formatter_puts_extra_fields_at_top_level() -> None:
    record = logging.LogRecord(
        "processor.worker", logging.INFO, "f", 1, "lease %s", ("lost",), None
    )
    record.shard_id = "shardId-000000000001"
    line = json.loads(JsonFormatter({"worker": "w1"}).format(record))
    assert line["msg"] == "lease lost"
    assert line["shard_id"] == "shardId-000000000001"
    assert line["worker"] == "w1" and line["level"] == "INFO"
    assert line["ts"].endswith("+00:00")


def test_metrics_flush_as_emf_once_per_interval(capsys: pytest.CaptureFixture[str]) -> None:
    metrics = Metrics("TapTest", "stream-a", interval_s=3600)
    for _ in range(3):
        metrics.batch_committed(
            records=10,
            readings=9,
            dead_letters=1,
            anomaly_types=["limit", "spike"],
            latencies_ms=[5.0] * 300,
            commit_ms=12.0,
        )
    metrics.millis_behind("shardId-000000000000", 40)
    metrics.millis_behind("shardId-000000000000", 10)
    metrics.leases_held(2)
    metrics.maybe_flush()
    assert capsys.readouterr().out == ""  # not per batch
    metrics.flush()
    events = [json.loads(line) for line in io.StringIO(capsys.readouterr().out)]
    main = next(e for e in events if "Records" in e)
    assert main["Records"] == 30 and main["DeadLetters"] == 3 and main["Readings"] == 27
    assert main["Anomalies"] == 6 and main["LeasesHeld"] == 2
    assert len(main["EndToEndLatency"]) == 100  # EMF's limit per metric
    assert main["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "TapTest"
    behind = next(e for e in events if "MillisBehindLatest" in e)
    assert behind["ShardId"] == "shardId-000000000000" and behind["MillisBehindLatest"] == 40
    per_type = {e["AnomalyType"]: e["Anomalies"] for e in events if "AnomalyType" in e}
    assert per_type == {"limit": 3, "spike": 3}
    assert metrics.totals["DeadLetters"] == 3
