"""The Kinesis adapter against kinesalite: discovery, checkpoints, rate, shard end,
and its reaction to throttling and expired iterators."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local_pipeline.verify import make_readings, put_records
from processor.contract.environment import ProcessorSettings
from processor.core.silence import HASH_KEY_MAX, partition_hash
from processor.kinesis_source import KinesisSource, ShardReader

pytestmark = pytest.mark.integration

ARN = "arn:aws:secretsmanager:eu-west-2:123456789012:secret:unused"


def _settings(stream: str, **overrides: str) -> ProcessorSettings:
    env = {
        "TAP_STREAM_NAME": stream,
        "AWS_REGION": "eu-west-2",
        "TAP_DB_HOST": "unused",
        "TAP_DB_NAME": "unused",
        "TAP_DB_SECRET_ARN": ARN,
        "TAP_REDIS_HOST": "unused",
        "TAP_REDIS_AUTH_SECRET_ARN": ARN,
        **overrides,
    }
    return ProcessorSettings.from_environ(env)


@pytest.fixture
def source_for(
    aws_env: dict[str, str], make_stream: Callable[..., str]
) -> Callable[..., KinesisSource]:
    def make(shards: int = 1, **overrides: str) -> KinesisSource:
        settings = _settings(make_stream(shards), **overrides)
        return KinesisSource(settings)

    return make


def _drain(reader: ShardReader, until: int, timeout: float = 10) -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < until and time.monotonic() < deadline:
        result = reader.fetch()
        assert result is not None
        out += result.records
        if result.shard_end:
            break
    return out


def test_lists_shards_and_reads_from_trim_horizon(source_for: Callable[..., KinesisSource]) -> None:
    source = source_for(2)
    shards = source.list_shards()
    assert [s.shard_id for s in shards] == ["shardId-000000000000", "shardId-000000000001"]
    assert not any(s.closed or s.parent_shard_ids for s in shards)

    sent = put_records(source.client, source.stream_name, make_readings(10, 10))
    got = []
    for shard in shards:
        records = _drain(source.reader(shard.shard_id, None), sent.shards.get(shard.shard_id, 0))
        # The silence registry's split inheritance routes devices as Kinesis does.
        assert shard.hash_key_range is not None
        low, high = shard.hash_key_range
        assert all(low <= partition_hash(r.partition_key) <= high for r in records)
        got += records
    assert len(got) == 100
    ranges = sorted(s.hash_key_range for s in shards if s.hash_key_range)
    assert ranges[0][0] == 0 and ranges[-1][1] == HASH_KEY_MAX
    assert ranges[0][1] + 1 == ranges[1][0]
    assert all(
        r.arrival.tzinfo is not None and r.arrival.utcoffset() == UTC.utcoffset(None) for r in got
    )
    assert {r.partition_key for r in got} == {f"dev-{i:04d}" for i in range(10)}


def test_list_shards_follows_next_token(source_for: Callable[..., KinesisSource]) -> None:
    source = source_for(3)
    real = source.client

    class Paged:
        """ListShards one shard per page, as a large stream pages in AWS."""

        def list_shards(self, **kwargs: Any) -> dict[str, Any]:
            if "NextToken" in kwargs:
                assert "StreamName" not in kwargs  # the API refuses both
                index = int(kwargs["NextToken"])
            else:
                index = 0
            shards = real.list_shards(StreamName=source.stream_name)["Shards"]
            page: dict[str, Any] = {"Shards": shards[index : index + 1]}
            if index + 1 < len(shards):
                page["NextToken"] = str(index + 1)
            return page

    source.client = Paged()
    assert len(source.list_shards()) == 3


def test_resumes_after_the_checkpoint(source_for: Callable[..., KinesisSource]) -> None:
    source = source_for(1)
    put_records(source.client, source.stream_name, make_readings(5, 20))
    shard = source.list_shards()[0].shard_id
    first = _drain(source.reader(shard, None), 100)
    checkpoint = first[41].sequence_number
    resumed = _drain(source.reader(shard, checkpoint), 58)
    assert [r.sequence_number for r in resumed] == [r.sequence_number for r in first[42:]]


def test_limit_and_latest_position(source_for: Callable[..., KinesisSource]) -> None:
    source = source_for(1, TAP_GET_RECORDS_LIMIT="7", TAP_INITIAL_POSITION="LATEST")
    put_records(source.client, source.stream_name, make_readings(5, 4))  # before: skipped
    shard = source.list_shards()[0].shard_id
    reader = source.reader(shard, None)
    before = time.time()
    first = reader.fetch()
    assert first is not None and first.records == []
    assert first.received_at is not None and before <= first.received_at <= time.time()
    put_records(source.client, source.stream_name, make_readings(5, 4, first_seq=4))
    result = reader.fetch()
    assert result is not None and len(result.records) == 7  # the limit


def test_never_more_than_five_calls_per_second(source_for: Callable[..., KinesisSource]) -> None:
    source = source_for(1)
    reader = source.reader(source.list_shards()[0].shard_id, None)
    started = time.monotonic()
    for _ in range(6):
        reader.fetch()
    elapsed = time.monotonic() - started
    assert reader.calls == 6
    assert elapsed >= 5 * 0.2 - 0.01, f"6 calls in {elapsed:.3f} s"


def test_poll_interval_is_honoured(source_for: Callable[..., KinesisSource]) -> None:
    source = source_for(1, TAP_POLL_INTERVAL_MS="500")
    reader = source.reader(source.list_shards()[0].shard_id, None)
    started = time.monotonic()
    for _ in range(3):
        reader.fetch()
    assert time.monotonic() - started >= 2 * 0.5 - 0.01


class _Faulty:
    """Wraps the real client; raises the given error codes on the next GetRecords calls."""

    def __init__(self, real: Any, codes: list[str]) -> None:
        self.real = real
        self.codes = list(codes)
        self.iterators: list[dict[str, Any]] = []

    def get_shard_iterator(self, **kwargs: Any) -> Any:
        self.iterators.append(kwargs)
        return self.real.get_shard_iterator(**kwargs)

    def get_records(self, **kwargs: Any) -> Any:
        if self.codes:
            code = self.codes.pop(0)
            raise ClientError({"Error": {"Code": code, "Message": code}}, "GetRecords")
        return self.real.get_records(**kwargs)


def test_expired_iterator_reopens_from_the_last_checkpoint(
    source_for: Callable[..., KinesisSource],
) -> None:
    source = source_for(1, TAP_GET_RECORDS_LIMIT="30")
    put_records(source.client, source.stream_name, make_readings(10, 10))
    shard = source.list_shards()[0].shard_id
    faulty = _Faulty(source.client, [])
    reader = ShardReader(
        client=faulty, stream_name=source.stream_name, shard_id=shard, checkpoint=None, limit=30
    )
    first = reader.fetch()
    assert first is not None and len(first.records) == 30
    faulty.codes = ["ExpiredIteratorException"]
    rest = _drain(reader, 70)
    assert faulty.iterators[-1]["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER"
    assert faulty.iterators[-1]["StartingSequenceNumber"] == first.records[-1].sequence_number
    keys = [r.sequence_number for r in first.records + rest]
    assert len(keys) == len(set(keys)) == 100


def test_throttling_backs_off_with_jitter(source_for: Callable[..., KinesisSource]) -> None:
    source = source_for(1)
    put_records(source.client, source.stream_name, make_readings(2, 5))
    shard = source.list_shards()[0].shard_id
    faulty = _Faulty(source.client, ["ProvisionedThroughputExceededException"] * 2)
    reader = ShardReader(
        client=faulty, stream_name=source.stream_name, shard_id=shard, checkpoint=None
    )
    started = time.monotonic()
    result = reader.fetch()
    assert result is not None and len(result.records) == 10
    assert reader.throttled == 2
    assert time.monotonic() - started >= 2 * 0.2 - 0.01  # at least the 200 ms floor each


def test_a_closed_shard_ends_after_its_last_record(
    source_for: Callable[..., KinesisSource],
) -> None:
    source = source_for(1)
    put_records(source.client, source.stream_name, make_readings(5, 6))
    parent = source.client.describe_stream(StreamName=source.stream_name)["StreamDescription"][
        "Shards"
    ][0]
    high = int(parent["HashKeyRange"]["EndingHashKey"])
    source.client.split_shard(
        StreamName=source.stream_name,
        ShardToSplit=parent["ShardId"],
        NewStartingHashKey=str(high // 2),
    )
    deadline = time.monotonic() + 10
    while len(source.list_shards()) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    shards = {s.shard_id: s for s in source.list_shards()}
    assert shards[parent["ShardId"]].closed
    children = [s for s in shards.values() if parent["ShardId"] in s.parent_shard_ids]
    assert len(children) == 2

    reader = source.reader(parent["ShardId"], None)
    records: list[Any] = []
    for _ in range(20):
        result = reader.fetch()
        assert result is not None
        records += result.records
        if result.shard_end:
            break
    assert result.shard_end and len(records) == 30
    again = reader.fetch()
    assert again is not None and again.shard_end and not again.records
