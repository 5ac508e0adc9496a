"""ListShards replies become the core's ShardInfo (issue 12 item 4: one ShardInfo for
the Kinesis edge and the lease planner, no mapping in between).

A unit test of response handling: the client is an in-process stand-in that returns
ListShards pages as the API documents them; the integration tests read kinesalite.
"""

from __future__ import annotations

from typing import Any

from processor.contract.environment import ProcessorSettings
from processor.core.leases import ShardInfo
from processor.kinesis_source import KinesisSource

ENV = {
    "TAP_STREAM_NAME": "stream",
    "TAP_DB_HOST": "db",
    "TAP_DB_NAME": "tap",
    "TAP_DB_SECRET_ARN": "arn:aws:secretsmanager:eu-west-2:123456789012:secret:db",
    "TAP_REDIS_HOST": "redis",
    "TAP_REDIS_AUTH_SECRET_ARN": "arn:aws:secretsmanager:eu-west-2:123456789012:secret:r",
}


class _Pages:
    """ListShards pages: the first answers StreamName, the next NextToken."""

    def __init__(self, *pages: dict[str, Any]) -> None:
        self.pages = list(pages)
        self.calls: list[dict[str, Any]] = []

    def list_shards(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return self.pages[len(self.calls) - 1]


def _shard(shard_id: str, ending: str | None = None, **extra: Any) -> dict[str, Any]:
    seq: dict[str, str] = {"StartingSequenceNumber": "100"}
    if ending is not None:
        seq["EndingSequenceNumber"] = ending
    hashes = {"StartingHashKey": "0", "EndingHashKey": "340282366920938463463374607431768211455"}
    return {"ShardId": shard_id, "SequenceNumberRange": seq, "HashKeyRange": hashes, **extra}


def test_split_and_merged_shards_carry_their_parents_in_kinesis_order() -> None:
    client = _Pages(
        {
            "Shards": [
                _shard("p", ending="200"),
                _shard("q", ending="300"),
                _shard("split-child", ParentShardId="p"),
            ],
            "NextToken": "t1",
        },
        {"Shards": [_shard("merged", ParentShardId="p", AdjacentParentShardId="q")]},
    )
    source = KinesisSource(ProcessorSettings.from_environ(ENV), client=client)
    shards = {s.shard_id: s for s in source.list_shards()}

    assert client.calls == [{"StreamName": "stream"}, {"NextToken": "t1"}]
    assert all(isinstance(s, ShardInfo) for s in shards.values())
    assert shards["p"].closed and shards["p"].parent_shard_ids == ()
    assert shards["split-child"].parent_shard_ids == ("p",)
    assert shards["split-child"].adjacent_parent_shard_id is None
    assert shards["merged"].parent_shard_ids == ("p", "q")
    assert shards["merged"].adjacent_parent_shard_id == "q"
    assert not shards["merged"].closed
    assert shards["merged"].hash_key_range == (0, 2**128 - 1)
    assert shards["merged"].starting_sequence_number == "100"
