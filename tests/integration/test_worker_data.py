"""What the stream carries, processed by a real processor process: a shard split in
the middle of the stream (children only after the parent), 1% poison records (each
dead-lettered with its reason, none stalls a shard), and producer retries that
repeat readings (stored once)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from local_pipeline.verify import (
    ProcessorCluster,
    compare,
    fleet_records,
    make_readings,
    redis_latest_mismatches,
    wait_until,
    wait_until_stored,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


#: Short leases keep the failure scenarios of this module quick.
LEASE_S = 3


@pytest.mark.timeout(120)
def test_shard_split_mid_stream_reads_children_after_the_parent(
    make_cluster: Callable[..., ProcessorCluster],
) -> None:
    cluster = make_cluster(2, lease_duration_s=LEASE_S)
    cluster.start("w1")
    cluster.start("w2")
    start = datetime.now(UTC)
    first = cluster.send(make_readings(50, 20, start=start))
    wait_until_stored(cluster.view, first.keys, timeout=30)

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
    second = cluster.send(make_readings(50, 20, start=start, first_seq=20))
    children = {s for s in second.shards if s not in first.shards}
    assert len(children) == 2, second.shards

    sent = first.merge(second)
    wait_until_stored(cluster.view, sent.keys, timeout=45)
    report = compare(sent.keys, cluster.view)
    assert report.ok, report.summary() + "\n" + cluster.logs()

    leases = {row[0]: row for row in cluster.view.leases()}
    assert leases[parent["ShardId"]][3] is True, "parent checkpointed at SHARD_END"
    windows = cluster.view.shard_processing_windows()
    parent_done = windows[parent["ShardId"]][1]
    for child in children:
        assert windows[child][0] >= parent_done, (
            f"child {child} read at {windows[child][0]} before parent finished {parent_done}"
        )


@pytest.mark.timeout(90)
def test_one_percent_poison_goes_to_dead_letters_with_its_reason(
    make_cluster: Callable[..., ProcessorCluster],
) -> None:
    from simulator.fleet import Fleet

    cluster = make_cluster(2, lease_duration_s=LEASE_S)
    cluster.start("w1")
    fleet = Fleet(devices=100, seed=11, rate=10.0, poison_rate=0.01, start=datetime.now(UTC))
    records = fleet_records(fleet.generate(3000))
    sent = cluster.send(records)
    expected = Counter(sent.poison_reasons)
    assert sum(expected.values()) >= 10, "the fleet should send some poison"

    wait_until_stored(cluster.view, sent.keys, timeout=45)
    assert wait_until(
        lambda: sum(cluster.view.dead_letters_by_reason().values()) >= sum(expected.values()),
        timeout=20,
    )
    report = compare(sent.keys, cluster.view)
    assert report.ok, report.summary()
    assert Counter(cluster.view.dead_letters_by_reason()) == expected
    print(f"\ndead letters by reason: {dict(sorted(expected.items()))}")


@pytest.mark.timeout(90)
def test_producer_duplicates_are_stored_once(
    make_cluster: Callable[..., ProcessorCluster],
) -> None:
    cluster = make_cluster(2, lease_duration_s=LEASE_S)
    cluster.start("w1")
    records = make_readings(50, 30)
    # A retried PutRecords repeats records: within the same batch...
    with_repeats = []
    for i, record in enumerate(records):
        with_repeats.append(record)
        if i % 5 == 0:
            with_repeats.append(record)
    first = cluster.send(with_repeats)
    wait_until_stored(cluster.view, first.keys, timeout=30)
    # ...and in a later batch, after the originals were committed.
    again = cluster.send(records[::3])
    assert again.keys <= first.keys
    time.sleep(1.5)  # let the repeats be read and committed (as no-ops)
    assert wait_until(
        lambda: cluster.view.count_readings() == len(first.keys), timeout=5, interval=0.5
    )
    report = compare(first.keys, cluster.view)
    assert report.ok, report.summary()
    assert cluster.view.count_readings() == len(first.keys)
    redis_client = cluster.services.redis.client()
    try:
        assert wait_until(
            lambda: not redis_latest_mismatches(redis_client, cluster.view.latest_per_device()),
            timeout=10,
        )
    finally:
        redis_client.close()
