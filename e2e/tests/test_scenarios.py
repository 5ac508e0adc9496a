"""End-to-end scenarios: records in through Kinesis, out in PostgreSQL and Redis,
while the pipeline is disturbed. Each asserts zero loss and zero duplicates by
(device, seq) for the devices it sent, and its latency or recovery target.

Volumes are small and waits bounded (the whole suite is budgeted at ~6 minutes on
2 cores): 20-50 devices at 2-5 readings/s, a few seconds each. Targets:

* steady, poison: p99 event -> PostgreSQL <= 1 s (``TAP_E2E_P99_MS``)
* burst (10x the steady rate at once): drained within :data:`BURST_DRAIN_S`
* kill -9: the dead worker's shards are read again within lease + 5 s
* SIGTERM scale-in: handoff (SIGTERM -> peer owns the shards) within 2 s, exit 0
* PostgreSQL / Redis restart, secret rotation, shard split: exact delivery within
  :data:`RECOVERY_S` of the last record, processors alive, Redis == PostgreSQL
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Final

import pytest

from e2e.scenarios import RealTimeSender, readings_now
from e2e.tests.checks import (
    assert_exact,
    assert_latency,
    dead_letters_of,
    delivery,
)
from e2e.tests.targets import Capability, Target, wait_shards_reowned
from local_pipeline.verify import Record, put_records, redis_latest_mismatches, wait_until

#: Bounded wait for the last records after a disturbance.
RECOVERY_S: Final = 45.0
#: A 10x burst must be stored this long after PutRecords returned.
BURST_DRAIN_S: Final = 10.0
#: SIGTERM handoff target (1 s) with slack for a loaded 2-core CI machine.
HANDOFF_TARGET_S: Final = 2.0


def _sender(target: Target, prefix: str, *, devices: int = 30, period_s: float = 0.5,
            seconds: float = 6.0) -> RealTimeSender:  # fmt: skip
    sender = RealTimeSender(
        target.kinesis_client(),
        target.stream_name,
        prefix,
        devices=devices,
        period_s=period_s,
        seconds=seconds,
    )
    sender.start()
    return sender


def _busiest(target: Target) -> str:
    """The live worker holding the most shards (the one whose loss matters)."""
    owners = target.view.owners()
    return max(target.workers(), key=lambda w: (sum(o == w for o in owners.values()), w))


def _owned_by(target: Target, worker: str) -> set[str]:
    return {shard for shard, owner in target.view.owners().items() if owner == worker}


def _redis_matches(target: Target, device_ids: list[str], *, timeout: float = 15) -> list[str]:
    client = target.redis_client()
    mismatches: list[str] = []
    try:
        latest = {
            device: reading
            for device, reading in target.view.latest_per_device().items()
            if device in set(device_ids)
        }

        def consistent() -> bool:
            nonlocal mismatches
            mismatches = redis_latest_mismatches(client, latest)
            return not mismatches

        wait_until(consistent, timeout=timeout)
    finally:
        client.close()
    return mismatches


@pytest.mark.timeout(90)
def test_steady_flow(pipeline: Target, prefix: str) -> None:
    sender = _sender(pipeline, prefix, devices=50, period_s=0.5, seconds=8)
    sent = sender.finish()
    result = delivery(pipeline.view, sent, sender.device_ids, timeout=30)
    print(f"\nsteady: {result.summary()}")
    assert_exact(result, pipeline.logs())
    assert_latency(result)
    assert not _redis_matches(pipeline, sender.device_ids)


@pytest.mark.timeout(120)
@pytest.mark.needs(Capability.KILL_PROCESSOR)
def test_processor_kill_minus_nine(pipeline: Target, prefix: str) -> None:
    victim = _busiest(pipeline)
    sender = _sender(pipeline, prefix, seconds=8)
    time.sleep(2)
    shards = _owned_by(pipeline, victim)
    lease_s = pipeline.lease_duration_s()
    killed_at = pipeline.kill(victim)  # no handoff: the lease must expire
    takeover = wait_shards_reowned(pipeline.view, victim, shards, timeout=lease_s + 10)
    sent = sender.finish()
    result = delivery(pipeline.view, sent, sender.device_ids, timeout=RECOVERY_S)
    print(
        f"\nkill -9: takeover {takeover} s after the kill (lease {lease_s:g} s); {result.summary()}"
    )
    assert_exact(result, pipeline.logs())
    assert takeover is not None and takeover <= lease_s + 5, (takeover, killed_at)


@pytest.mark.timeout(120)
@pytest.mark.needs(Capability.SIGTERM_PROCESSOR)
def test_sigterm_scale_in_hands_over(pipeline: Target, prefix: str) -> None:
    victim = _busiest(pipeline)
    sender = _sender(pipeline, prefix, seconds=8)
    time.sleep(2)
    shards = _owned_by(pipeline, victim)
    assert shards, f"{victim} holds no shard: {pipeline.view.owners()}"
    pipeline.terminate(victim)
    handoff = wait_shards_reowned(pipeline.view, victim, shards, timeout=15)
    sent = sender.finish()
    result = delivery(pipeline.view, sent, sender.device_ids, timeout=RECOVERY_S)
    print(f"\nSIGTERM scale-in: handoff {handoff} s for {len(shards)} shard(s); {result.summary()}")
    assert_exact(result, pipeline.logs())
    assert handoff is not None and handoff <= HANDOFF_TARGET_S, handoff
    from e2e.tests.targets import LocalTarget

    if isinstance(pipeline, LocalTarget):
        assert pipeline.pipeline.processors[victim].wait(timeout=30) == 0, "graceful exit"


@pytest.mark.timeout(120)
@pytest.mark.needs(Capability.RESTART_POSTGRES)
def test_postgres_restart(pipeline: Target, prefix: str) -> None:
    sender = _sender(pipeline, prefix, seconds=8)
    time.sleep(2)
    pipeline.restart_postgres()
    sent = sender.finish()
    result = delivery(pipeline.view, sent, sender.device_ids, timeout=RECOVERY_S)
    print(f"\nPostgreSQL restart: {result.summary()}")
    assert_exact(result, pipeline.logs())
    assert len(pipeline.workers()) >= 2, "processors must ride out the restart"


@pytest.mark.timeout(120)
@pytest.mark.needs(Capability.RESTART_REDIS)
def test_redis_restart_is_reconciled(pipeline: Target, prefix: str) -> None:
    sender = _sender(pipeline, prefix, seconds=8)
    time.sleep(2)
    pipeline.restart_redis()  # comes back empty, like a replaced node
    sent = sender.finish()
    result = delivery(pipeline.view, sent, sender.device_ids, timeout=RECOVERY_S)
    print(f"\nRedis restart: {result.summary()}")
    assert_exact(result, pipeline.logs())
    mismatches = _redis_matches(pipeline, sender.device_ids, timeout=30)
    assert not mismatches, mismatches[:5]


@pytest.mark.timeout(120)
@pytest.mark.needs(Capability.ROTATE_DB_SECRET)
def test_db_secret_rotated_mid_stream(pipeline: Target, prefix: str) -> None:
    # Past the processor's secret refresh rate limit (5 s after its first fetch).
    sender = _sender(pipeline, prefix, seconds=9)
    time.sleep(3)
    pipeline.rotate_db_secret()
    sent = sender.finish()
    result = delivery(pipeline.view, sent, sender.device_ids, timeout=RECOVERY_S)
    print(f"\nDB secret rotated: {result.summary()}")
    assert_exact(result, pipeline.logs())
    assert len(pipeline.workers()) >= 2


@pytest.mark.timeout(120)
@pytest.mark.needs(Capability.SPLIT_SHARD)
def test_shard_split_mid_stream(pipeline: Target, prefix: str) -> None:
    kinesis = pipeline.kinesis_client()
    sender = _sender(pipeline, prefix, devices=40, seconds=8)
    time.sleep(2)
    shards = kinesis.list_shards(StreamName=pipeline.stream_name)["Shards"]
    parent = next(s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"])
    low = int(parent["HashKeyRange"]["StartingHashKey"])
    high = int(parent["HashKeyRange"]["EndingHashKey"])
    kinesis.split_shard(
        StreamName=pipeline.stream_name,
        ShardToSplit=parent["ShardId"],
        NewStartingHashKey=str((low + high) // 2),
    )
    sent = sender.finish()
    result = delivery(pipeline.view, sent, sender.device_ids, timeout=RECOVERY_S)
    children = {s for s in sent.shards if s not in {x["ShardId"] for x in shards}}
    print(f"\nshard split of {parent['ShardId']}: children {sorted(children)}; {result.summary()}")
    assert_exact(result, pipeline.logs())
    assert children, f"no record routed to a child shard: {sent.shards}"
    assert wait_until(
        lambda: any(r[0] == parent["ShardId"] and r[3] for r in pipeline.view.leases()),
        timeout=20,
    ), "the parent's lease should be finished (checkpointed at SHARD_END)"


@pytest.mark.timeout(90)
def test_poison_records_are_dead_lettered(pipeline: Target, prefix: str) -> None:
    from datetime import UTC, datetime

    from processor.contract.record import SensorType
    from simulator.poison import ALL_POISON_KINDS, EXPECTED_REASON, make_poison

    sender = _sender(pipeline, prefix, devices=30, seconds=6)
    poison: list[Record] = []
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    for i, kind in enumerate(ALL_POISON_KINDS * 2):
        device_id = f"{prefix}-{i % 30:04d}"
        data = make_poison(
            kind,
            device_id=device_id,
            facility="e2e",
            line="l00",
            sensor_type=SensorType.TEMPERATURE,
            ts_ms=now_ms,
            seq=0,
        )
        poison.append(Record(data, device_id, None, EXPECTED_REASON[kind].value))
    time.sleep(1)
    sender.add(poison)
    sent = sender.finish()
    result = delivery(pipeline.view, sent, sender.device_ids, timeout=30)
    expected = Counter(sent.poison_reasons)
    assert wait_until(
        lambda: Counter(dead_letters_of(pipeline.view, sender.device_ids)) == expected,
        timeout=20,
    ), (dead_letters_of(pipeline.view, sender.device_ids), expected)
    print(f"\npoison: {sum(expected.values())} dead-lettered by reason; {result.summary()}")
    assert_exact(result, pipeline.logs())
    assert_latency(result)  # a poison record must not stall its shard


@pytest.mark.timeout(120)
def test_burst_above_steady_rate(pipeline: Target, prefix: str) -> None:
    # Steady 80 readings/s from 40 devices; then 10x that rate's 3 s worth (2,400
    # readings of 40 more devices) at once, in the middle of the flow.
    sender = _sender(pipeline, prefix, devices=40, period_s=0.5, seconds=8)
    time.sleep(2)
    burst_devices = [f"{prefix}-b-{i:04d}" for i in range(40)]
    burst: list[Record] = []
    for seq in range(60):
        burst += readings_now(f"{prefix}-b", len(burst_devices), seq)
    burst_sent = put_records(pipeline.kinesis_client(), pipeline.stream_name, burst)
    sent_at = time.monotonic()
    burst_result = delivery(pipeline.view, burst_sent, burst_devices, timeout=BURST_DRAIN_S)
    drain_s = time.monotonic() - sent_at
    steady = sender.finish()
    result = delivery(pipeline.view, steady, sender.device_ids, timeout=RECOVERY_S)
    print(
        f"\nburst: {len(burst)} readings at once drained {drain_s:.1f} s after the send "
        f"(burst {burst_result.summary()}); steady {result.summary()}"
    )
    assert_exact(burst_result, pipeline.logs())
    assert_exact(result, pipeline.logs())
    assert drain_s <= BURST_DRAIN_S, drain_s
