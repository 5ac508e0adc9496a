"""The one Kinesis producer (simulator/kinesis_producer.py) against an in-process
stub of PutRecords responses: only refused entries are re-sent, what stays refused
is reported per entry and never as stored, a refused stream stops at once, limits
hold; and the harness's put_records built on it raises when records stay refused."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from simulator.backoff import Backoff
from simulator.kinesis_producer import (
    MAX_RECORDS_PER_CALL,
    RECORD_TOO_LARGE,
    KinesisProducer,
    PutRecordsCall,
    StreamRefused,
)

THROTTLED = "ProvisionedThroughputExceededException"


@dataclass(frozen=True)
class Item:
    data: bytes
    partition_key: str


def items(n: int, size: int = 10) -> list[Item]:
    return [Item(bytes([65 + i % 26]) * size + str(i).encode(), f"d{i}") for i in range(n)]


class Stub:
    """Answers each call from a script: a set of refused indexes, or an exception."""

    def __init__(self, *script: set[int] | Exception) -> None:
        self.script = list(script)
        self.calls: list[list[bytes]] = []

    def put_records(self, **kwargs: Any) -> dict[str, Any]:
        entries = kwargs["Records"]
        self.calls.append([e["Data"] for e in entries])
        step = self.script.pop(0) if self.script else set()
        if isinstance(step, Exception):
            raise step
        results = [
            {"ErrorCode": THROTTLED, "ErrorMessage": "slow down"}
            if i in step
            else {"ShardId": f"shardId-{i % 2:012d}", "SequenceNumber": str(i)}
            for i in range(len(entries))
        ]
        return {"FailedRecordCount": len(step), "Records": results}


def producer(stub: Stub, attempts: int = 5, **kwargs: Any) -> KinesisProducer:
    return KinesisProducer(
        "sensors", stub, backoff=Backoff(max_attempts=attempts), sleep=lambda _: None, **kwargs
    )


def test_only_refused_entries_are_resent_and_every_entry_is_accounted_for() -> None:
    sent = items(6)
    stub = Stub({1, 4}, {0})  # second call: the first of the two re-sent refused again
    calls: list[PutRecordsCall] = []
    outcome = producer(stub, on_call=calls.append).put(sent)
    assert stub.calls == [
        [e.data for e in sent],
        [sent[1].data, sent[4].data],
        [sent[1].data],
    ]
    assert sorted(e.partition_key for e, _ in outcome.accepted) == [f"d{i}" for i in range(6)]
    assert all(shard.startswith("shardId-") for _, shard in outcome.accepted)
    assert outcome.failed == [] and outcome.retried == 3 and outcome.calls == 3
    assert [c.refused_codes for c in calls] == [(THROTTLED, THROTTLED), (THROTTLED,), ()]


def test_entries_still_refused_after_the_last_attempt_are_failed_not_sent() -> None:
    sent = items(3)
    outcome = producer(Stub({2}, {0}, {0}), attempts=3).put(sent)
    assert [e for e, _ in outcome.accepted] == sent[:2]
    assert outcome.failed == [(sent[2], THROTTLED)]
    assert outcome.retried == 2


def test_a_call_that_fails_as_a_whole_is_retried() -> None:
    throttled = ClientError({"Error": {"Code": THROTTLED, "Message": "x"}}, "PutRecords")
    unreachable = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    outcome = producer(Stub(throttled, unreachable, set())).put(items(4))
    assert len(outcome.accepted) == 4 and outcome.retried == 8 and outcome.calls == 1


def test_a_refused_stream_stops_at_once_with_what_was_stored() -> None:
    missing = ClientError(
        {"Error": {"Code": "ResourceNotFoundException", "Message": "no"}}, "PutRecords"
    )
    stub = Stub({0}, missing)
    with pytest.raises(StreamRefused, match="ResourceNotFoundException") as caught:
        producer(stub).put(items(3))
    assert caught.value.code == "ResourceNotFoundException"
    assert caught.value.refused == 1
    assert len(caught.value.outcome.accepted) == 2
    assert len(stub.calls) == 2


def test_calls_respect_the_record_and_byte_limits_and_big_records_fail_alone() -> None:
    stub = Stub()
    big = Item(b"x" * (1024 * 1024 + 1), "big")
    outcome = producer(stub).put([*items(1_100), big, *[Item(b"y" * 400_000, "m")] * 30])
    sizes = [len(call) for call in stub.calls]
    # 5 MiB holds 13 records of 400 kB: the third call is 100 small ones and 13 of them.
    assert sizes == [MAX_RECORDS_PER_CALL, MAX_RECORDS_PER_CALL, 113, 13, 4]
    assert all(sum(len(d) + 1 for d in call) <= 5 * 1024 * 1024 for call in stub.calls)
    assert outcome.failed == [(big, RECORD_TOO_LARGE)]
    assert len(outcome.accepted) == 1_130


def test_a_stream_arn_goes_in_stream_arn() -> None:
    seen: list[dict[str, Any]] = []

    class Recorder(Stub):
        def put_records(self, **kwargs: Any) -> dict[str, Any]:
            seen.append({k: v for k, v in kwargs.items() if k != "Records"})
            return super().put_records(**kwargs)

    arn = "arn:aws:kinesis:eu-west-2:123456789012:stream/sensors"
    KinesisProducer(arn, Recorder()).put(items(1))
    assert seen == [{"StreamARN": arn}]


def test_harness_put_records_raises_when_records_stay_refused() -> None:
    from local_pipeline.verify import Record, put_records

    records = [Record(b"r%d" % i, f"d{i}", (f"d{i}", i)) for i in range(4)]
    with pytest.raises(RuntimeError, match="kept refusing 1 records"):
        put_records(Stub({3}, {0}), "sensors", records, max_attempts=2)
    sent = put_records(Stub({3}), "sensors", records, max_attempts=2)
    assert sent.keys == {(f"d{i}", i) for i in range(4)} and sent.records == 4
    assert sum(sent.shards.values()) == 4
