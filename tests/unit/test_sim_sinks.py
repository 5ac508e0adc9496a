"""The Kinesis sink re-sends only failed entries and counts honestly; batching
respects 500 records and 5 MiB; the other sinks write what they are given."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from simulator.aws_client import kinesis_client
from simulator.fleet import Fleet, SimRecord
from simulator.kinesis_producer import MAX_BYTES_PER_CALL, plan_batches
from simulator.sinks import (
    JsonlSink,
    KinesisSink,
    MemorySink,
    SinkError,
    TokenBucket,
)

START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _records(count: int) -> list[SimRecord]:
    return Fleet(20, 7, start=START).generate(count)


def _client() -> Any:
    return boto3.client(
        "kinesis",
        region_name="eu-west-2",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def _entries(records: list[SimRecord]) -> list[dict[str, Any]]:
    return [{"Data": r.data, "PartitionKey": r.partition_key} for r in records]


def _ok(count: int) -> list[dict[str, str]]:
    return [
        {"SequenceNumber": str(100 + i), "ShardId": "shardId-000000000000"} for i in range(count)
    ]


def _failed() -> dict[str, str]:
    return {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"}


def _sink(client: Any, **kwargs: Any) -> tuple[KinesisSink, list[float]]:
    sleeps: list[float] = []
    sink = KinesisSink("sensors", client=client, sleep=sleeps.append, **kwargs)
    return sink, sleeps


def test_only_the_failed_entries_are_resent() -> None:
    records = _records(10)
    client = _client()
    first = _ok(10)
    first[3] = _failed()
    first[7] = _failed()
    with Stubber(client) as stub:
        stub.add_response(
            "put_records",
            {"FailedRecordCount": 2, "Records": first},
            {"StreamName": "sensors", "Records": _entries(records)},
        )
        stub.add_response(
            "put_records",
            {"Records": _ok(2)},  # botocore's model wants FailedRecordCount >= 1
            {"StreamName": "sensors", "Records": _entries([records[3], records[7]])},
        )
        sink, sleeps = _sink(client)
        sink.send(records)
        sink.flush()
        stub.assert_no_pending_responses()
    assert (sink.stats.sent, sink.stats.failed, sink.stats.retried) == (10, 0, 2)
    assert sink.stats.calls == 2
    assert len(sleeps) == 1 and 0.0 <= sleeps[0] <= sink.producer.backoff.ceiling_s(1)


def test_exhausted_retries_count_as_failed_never_as_sent() -> None:
    records = _records(3)
    client = _client()
    with Stubber(client) as stub:
        stub.add_response(
            "put_records",
            {"FailedRecordCount": 1, "Records": [*_ok(2), _failed()]},
            {"StreamName": "sensors", "Records": _entries(records)},
        )
        for _ in range(2):
            stub.add_response(
                "put_records",
                {"FailedRecordCount": 1, "Records": [_failed()]},
                {"StreamName": "sensors", "Records": _entries(records[2:])},
            )
        sink, sleeps = _sink(client, max_attempts=3)
        sink.send(records)
        sink.flush()
        stub.assert_no_pending_responses()
    assert (sink.stats.sent, sink.stats.failed, sink.stats.retried) == (2, 1, 2)
    assert sink.stats.failed_by_code == {"ProvisionedThroughputExceededException": 1}
    assert len(sleeps) == 2


def test_a_missing_stream_stops_the_run() -> None:
    client = _client()
    with Stubber(client) as stub:
        stub.add_client_error("put_records", "ResourceNotFoundException", "no such stream")
        sink, _ = _sink(client)
        sink.send(_records(5))
        with pytest.raises(SinkError, match="ResourceNotFoundException"):
            sink.flush()
    assert sink.stats.sent == 0 and sink.stats.failed == 5


def test_a_stream_arn_goes_in_stream_arn() -> None:
    records = _records(2)
    arn = "arn:aws:kinesis:eu-west-2:123456789012:stream/sensors"
    client = _client()
    with Stubber(client) as stub:
        stub.add_response(
            "put_records",
            {"Records": _ok(2)},  # botocore's model wants FailedRecordCount >= 1
            {"StreamARN": arn, "Records": _entries(records)},
        )
        sink = KinesisSink(arn, client=client)
        sink.send(records)
        sink.close()
    assert sink.stats.sent == 2


class _RecordingClient:
    """Accepts every entry and remembers each call's size."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def put_records(self, *, Records: list[dict[str, Any]], **_: Any) -> dict[str, Any]:
        size = sum(len(e["Data"]) + len(e["PartitionKey"].encode()) for e in Records)
        self.calls.append((len(Records), size))
        return {"FailedRecordCount": 0, "Records": _ok(len(Records))}


def test_batches_hold_at_most_500_records() -> None:
    client = _RecordingClient()
    sink, _ = _sink(client)
    sink.send(_records(1_234))
    sink.flush()
    assert [count for count, _ in client.calls] == [500, 500, 234]
    assert sink.stats.sent == 1_234


def _big(index: int, size: int) -> SimRecord:
    return SimRecord(b"x" * size, f"device-{index}", "temperature", index, 0)


def test_batches_hold_at_most_5_mib() -> None:
    client = _RecordingClient()
    sink, _ = _sink(client)
    records = [_big(i, 100_000) for i in range(120)]  # ~12 MB in 100 kB records
    sink.send(records)
    sink.flush()
    assert all(size <= MAX_BYTES_PER_CALL for _, size in client.calls)
    assert sum(count for count, _ in client.calls) == 120
    assert len(client.calls) == 3
    planned = list(plan_batches(records))
    assert [len(batch) for batch in planned] == [count for count, _ in client.calls]


def test_record_over_1_mib_fails_alone() -> None:
    client = _RecordingClient()
    sink, _ = _sink(client)
    sink.send([_big(0, 1_100_000), _big(1, 10)])
    sink.flush()
    assert (sink.stats.sent, sink.stats.failed) == (1, 1)


def test_token_bucket_paces_to_the_target_rate() -> None:
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(1000.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(10):
        bucket.acquire(500)
    # 5000 tokens at 1000/s with a 1000-token start: 4 s of waiting in total.
    assert sum(sleeps) == pytest.approx(4.0)


def test_client_uses_region_and_standard_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:4567")
    client = kinesis_client()
    assert client.meta.region_name == "eu-west-2"
    assert client.meta.endpoint_url == "http://127.0.0.1:4567"
    assert client.meta.config.retries["mode"] == "standard"
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert kinesis_client().meta.region_name == "eu-west-1"


def test_jsonl_and_memory_sinks(tmp_path: Any) -> None:
    records = _records(50)
    path = tmp_path / "out.jsonl"
    sink = JsonlSink(path)
    sink.send(records[:20])
    sink.send(records[20:])
    sink.close()
    assert path.read_bytes().splitlines() == [r.data for r in records]
    assert sink.stats.sent == 50
    memory = MemorySink()
    memory.send(records)
    assert list(memory) == records and memory.stats.sent == 50
    counting = MemorySink(keep=False)
    counting.send(records)
    assert len(counting) == 0 and counting.stats.sent == 50
