"""Issue 10 items 4 and 5, through a real processor process on real PostgreSQL and
Redis: Redis shows exactly what PostgreSQL committed, and a device that restarts its
sequence numbers loses nothing silently."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from local_pipeline.verify import (
    ProcessorCluster,
    Record,
    make_readings,
    wait_until,
    wait_until_stored,
)
from processor.contract.record import Reading, SensorType, ValidationLimits, encode_reading
from processor.contract.storage import REDIS_ANOMALY_STREAM, redis_latest_key
from processor.postgres.reads import anomalies
from processor.redis_cache import anomaly_identity

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LEASE_S = 3
DEVICE = "dev-0000"


def one_event_day_start(now: datetime, *, span: timedelta) -> datetime:
    """A start about two minutes before ``now`` whose ``[start, start + span]`` lies on
    one UTC event day; shortly before or after midnight, the early minutes of ``now``'s
    own day instead. A reading key is (device, boot, seq, event day): a test about a
    duplicate of one day must not cross midnight (it failed at 00:0x UTC once)."""
    start = now - timedelta(minutes=2)
    if start.date() == (start + span).date() == now.date():
        return start
    return now.replace(hour=0, minute=0, second=5, microsecond=0)


@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 11, 30, 23, 58, 30, tzinfo=UTC),
        datetime(2026, 12, 1, 0, 1, 0, tzinfo=UTC),
        datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC),
    ],
)
def test_a_one_day_test_span_never_crosses_midnight(now: datetime) -> None:
    """23:58:30 is when the conflicting-duplicate test once failed: `now - 2 min` put
    its newer copy on the next day, a new key that PostgreSQL rightly stored."""
    span = timedelta(minutes=4)
    start = one_event_day_start(now, span=span)
    assert start.date() == (start + span).date()
    assert start <= now
    assert start + span - now <= ValidationLimits().max_future


def _reading(seq: int, ts: datetime, value: float) -> Record:
    reading = Reading(
        device_id=DEVICE,
        facility="fac1",
        line="l00",
        sensor_type=SensorType.TEMPERATURE,
        unit="C",
        ts=ts,
        seq=seq,
        schema_version=1,
        value=value,
    )
    return Record(encode_reading(reading), DEVICE, (DEVICE, seq))


def _redis_anomaly_ids(client: object) -> set[str]:
    entries = client.xrange(REDIS_ANOMALY_STREAM)  # type: ignore[attr-defined]
    return {fields[b"anomaly_id"].decode() for _, fields in entries}


def _table_anomaly_ids(cluster: ProcessorCluster) -> set[str]:
    rows = cluster.view._run(anomalies)
    return {
        anomaly_identity(a.device_id, a.boot, a.seq, a.anomaly_type, a.event_day)  # type: ignore[arg-type]
        for a in rows
    }


@pytest.mark.timeout(120)
def test_a_conflicting_duplicate_never_reaches_redis(
    make_cluster: Callable[..., ProcessorCluster],
) -> None:
    """A record repeating a stored (device, seq) with a newer event time and a value
    that trips the limit detector: PostgreSQL keeps the first reading, so Redis's
    latest hash and anomaly stream must not show the rejected one either."""
    cluster = make_cluster(1, lease_duration_s=LEASE_S)
    cluster.start("w1")
    # The conflicting copy is 3 minutes newer than `start`; it must fall on the same
    # event day, or it is a new key, not a duplicate (migration 0005).
    start = one_event_day_start(datetime.now(UTC), span=timedelta(minutes=3))
    first = cluster.send(make_readings(1, 30, start=start))
    wait_until_stored(cluster.view, first.keys, timeout=45)

    # seq 10 again, a minute newer than anything stored, at a limit-crossing value.
    cluster.send([_reading(10, start + timedelta(minutes=3), 590.0)])
    # A normal reading after it proves the conflicting one was read and committed.
    after = _reading(30, start + timedelta(seconds=3.0), 66.0)
    cluster.send([after])
    assert after.key is not None
    wait_until_stored(cluster.view, {after.key}, timeout=30)

    latest = cluster.view.latest_per_device()[DEVICE].reading
    assert latest.seq == 30
    client = cluster.services.redis.client()
    try:

        def consistent() -> bool:
            cached = client.hgetall(redis_latest_key(DEVICE))
            return bool(cached) and int(cached[b"seq"]) == latest.seq

        assert wait_until(consistent, timeout=10), (
            f"Redis latest {client.hgetall(redis_latest_key(DEVICE))} != PostgreSQL seq "
            f"{latest.seq}\n{cluster.logs()}"
        )
        assert _redis_anomaly_ids(client) == _table_anomaly_ids(cluster)
        assert not any(i.startswith(f"{DEVICE}:10:limit:") for i in _redis_anomaly_ids(client))
    finally:
        client.close()


@pytest.mark.timeout(120)
def test_a_device_reboot_mid_stream_loses_nothing_silently(
    make_cluster: Callable[..., ProcessorCluster],
) -> None:
    """Issue 10 item 4 through a real processor: a device sends seq 0..19, reboots and
    sends seq 0..9 again the same day. Without a boot counter (schema version 1) each
    repeated seq is a seq_conflict dead letter with its payload; with one (version 2,
    boot 1) the new series is stored. Exact re-sends stay de-duplicated. Every record
    ends in exactly one place, and Redis shows what PostgreSQL holds."""
    cluster = make_cluster(1, lease_duration_s=LEASE_S)
    cluster.start("w1")
    # Mid-day, whatever the time now: all records of this test share one event day.
    start = one_event_day_start(datetime.now(UTC), span=timedelta(minutes=4))
    first = [_reading(seq, start + timedelta(seconds=seq), 65.0) for seq in range(20)]
    cluster.send(first)
    wait_until_stored(cluster.view, {r.key for r in first if r.key}, timeout=45)

    restarted_v1 = [_reading(seq, start + timedelta(seconds=60 + seq), 70.0) for seq in range(10)]
    restarted_v2 = [
        Record(
            encode_reading(
                msgspec.structs.replace(
                    msgspec.json.decode(r.data, type=Reading), schema_version=2, boot=1
                )
            ),
            DEVICE,
            r.key,
        )
        for r in restarted_v1
    ]
    # Exact re-sends of the first series (a producer retry) in the same stream.
    cluster.send(restarted_v1 + first[:5] + restarted_v2)

    def settled() -> bool:
        return (
            cluster.view.count_readings() == 30
            and cluster.view.dead_letters_by_reason().get("seq_conflict", 0) == 10
        )

    assert wait_until(settled, timeout=45, interval=0.5), (
        f"readings {cluster.view.count_readings()}, dead letters "
        f"{cluster.view.dead_letters_by_reason()}\n{cluster.logs()}"
    )
    assert cluster.view.dead_letters_by_reason() == {"seq_conflict": 10}
    assert cluster.view.duplicate_keys() == []
    latest = cluster.view.latest_per_device()[DEVICE].reading
    assert (latest.boot, latest.seq) == (1, 9)
    client = cluster.services.redis.client()
    try:
        assert wait_until(
            lambda: int(client.hgetall(redis_latest_key(DEVICE)).get(b"seq", -1)) == 9,
            timeout=10,
        )
        assert _redis_anomaly_ids(client) == _table_anomaly_ids(cluster)
    finally:
        client.close()


@pytest.mark.timeout(150)
def test_a_reboot_keeps_both_anomalies_of_a_reused_seq(
    make_cluster: Callable[..., ProcessorCluster],
) -> None:
    """Issue 10 item 4 for anomalies: a device (schema version 2) trips the limit
    detector at seq 10 of boot 0, reboots, and trips it again at seq 10 of boot 1.
    Both are anomalies of their own readings: both rows in PostgreSQL, both entries in
    the Redis stream. The identity (device_id, seq, anomaly_type) dropped the second
    one in both places (ON CONFLICT, and the stream's de-dup mark)."""
    cluster = make_cluster(1, lease_duration_s=LEASE_S)
    cluster.start("w1")
    start = datetime.now(UTC) - timedelta(minutes=25)

    def series(boot: int, t0: datetime) -> list[Record]:
        # seq 10 far above the critical limit, then 9 normal readings a minute apart
        # (longer than the limit detector's re-arm time, 300 s).
        times = [t0 + timedelta(seconds=s) for s in range(11)]
        times += [t0 + timedelta(seconds=10, minutes=m) for m in range(1, 10)]
        out = []
        for seq, ts in enumerate(times):
            r = msgspec.structs.replace(
                msgspec.json.decode(
                    _reading(seq, ts, 590.0 if seq == 10 else 65.0).data, type=Reading
                ),
                schema_version=2,
                boot=boot,
            )
            out.append(Record(encode_reading(r), DEVICE, (DEVICE, seq)))
        return out

    cluster.send(series(0, start))
    assert wait_until(lambda: cluster.view.count_readings() == 20, timeout=45), cluster.logs()
    cluster.send(series(1, start + timedelta(minutes=11)))
    assert wait_until(lambda: cluster.view.count_readings() == 40, timeout=45), cluster.logs()

    def limit_rows() -> list[int]:
        rows = cluster.view._run(anomalies)
        return [a.seq for a in rows if a.anomaly_type == "limit"]

    client = cluster.services.redis.client()
    try:

        def limit_entries() -> list[bytes]:
            entries = client.xrange(REDIS_ANOMALY_STREAM)
            return [f[b"seq"] for _, f in entries if f[b"type"] == b"limit"]

        assert wait_until(lambda: len(limit_entries()) >= 2, timeout=15), (
            f"stream {limit_entries()}, table {limit_rows()}\n{cluster.logs()}"
        )
        assert limit_rows() == [10, 10]
        assert limit_entries() == [b"10", b"10"]
        assert _redis_anomaly_ids(client) == _table_anomaly_ids(cluster)
    finally:
        client.close()
