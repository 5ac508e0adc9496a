"""The simulator against a real (emulated) Kinesis: every record sent arrives once,
byte for byte, keyed by its device; poison arrives too and is rejected as labelled."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from processor.contract.record import Reading, Rejection, decode_reading
from simulator.cli import main
from simulator.fleet import Fleet
from simulator.scoring import read_labels
from simulator.sinks import KinesisSink

pytestmark = pytest.mark.integration


def _read_stream(client: Any, stream: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    shards = client.list_shards(StreamName=stream)["Shards"]
    for shard in shards:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = client.get_records(ShardIterator=iterator, Limit=10_000)
            records += response["Records"]
            if not response["Records"] and response.get("MillisBehindLatest", 0) == 0:
                break
            iterator = response.get("NextShardIterator")
    return records


def test_sink_delivers_every_record_once(
    aws_env: dict[str, str], make_stream: Any, kinesis_client: Any
) -> None:
    stream = make_stream(shard_count=2)
    fleet = Fleet(60, 7, anomaly_rate=0.01, poison_rate=0.01)
    records = fleet.generate(1_500)
    sink = KinesisSink(stream)  # client from the standard environment (aws_env)
    sink.send(records)
    sink.close()
    assert (sink.stats.sent, sink.stats.failed) == (1_500, 0)
    assert sink.stats.calls >= 3  # 500 records per call at most
    arrived = _read_stream(kinesis_client, stream)
    assert Counter((r["PartitionKey"], r["Data"]) for r in arrived) == Counter(
        (r.partition_key, r.data) for r in records
    )


def test_cli_to_kinesis_with_poison(
    aws_env: dict[str, str],
    make_stream: Any,
    kinesis_client: Any,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = make_stream(shard_count=1)
    labels_path = tmp_path / "labels.jsonl"
    argv = [
        "--devices", "30", "--records", "1200", "--poison-rate", "0.02", "--sink", "kinesis",
        "--stream", stream, "--no-realtime", "--labels", str(labels_path), "--json",
    ]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sent"] == 1200 and summary["failed"] == 0
    arrived = _read_stream(kinesis_client, stream)
    assert len(arrived) == 1200
    verdicts = [
        decode_reading(r["Data"], arrival=r["ApproximateArrivalTimestamp"]) for r in arrived
    ]
    assert sum(isinstance(v, Reading) for v in verdicts) == summary["readings"]
    rejected = Counter(v.reason.value for v in verdicts if isinstance(v, Rejection))
    poison = [
        label for label in read_labels(labels_path) if label.__struct_config__.tag == "poison"
    ]
    assert rejected == Counter(label.expected_reason for label in poison)
    assert sum(rejected.values()) == summary["poison_records"] > 0
