"""Issue 10 item 6: ``TAP_INITIAL_POSITION=LATEST`` applies only to a parentless
shard the application has never read. Children of a split start at TRIM_HORIZON,
so the records written to them before their first reader exists are not skipped."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from local_pipeline.verify import ProcessorCluster, compare, make_readings, wait_until_stored

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LEASE_S = 3


@pytest.mark.timeout(150)
def test_a_split_under_latest_skips_no_record(
    make_cluster: Callable[..., ProcessorCluster],
) -> None:
    cluster = make_cluster(1, lease_duration_s=LEASE_S, initial_position="LATEST")
    worker = cluster.start("w1")
    # LATEST: only records written after the first iterator count; wait for it.
    worker.wait_for_event("shard_first_fetch", timeout=60)
    start = datetime.now(UTC)
    first = cluster.send(make_readings(20, 10, start=start))
    wait_until_stored(cluster.view, first.keys, timeout=45)

    kinesis = cluster.kinesis
    parent = kinesis.describe_stream(StreamName=cluster.stream)["StreamDescription"]["Shards"][0]
    low = int(parent["HashKeyRange"]["StartingHashKey"])
    high = int(parent["HashKeyRange"]["EndingHashKey"])
    kinesis.split_shard(
        StreamName=cluster.stream,
        ShardToSplit=parent["ShardId"],
        NewStartingHashKey=str((low + high) // 2),
    )
    cluster.services.wait_stream_active(cluster.stream)
    # Written to the children at once, before any reader of theirs exists.
    second = cluster.send(make_readings(20, 10, start=start, first_seq=10))
    children = {s for s in second.shards if s != parent["ShardId"]}
    assert len(children) == 2, second.shards

    sent = first.merge(second)
    stored = wait_until_stored(cluster.view, sent.keys, timeout=60)
    report = compare(sent.keys, cluster.view)
    assert report.ok, f"{report.summary()} ({len(stored)} stored)\n{cluster.logs()}"
