"""Issue 10 items 4 and 5, through a real processor process on real PostgreSQL and
Redis: Redis shows exactly what PostgreSQL committed, and a device that restarts its
sequence numbers loses nothing silently."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from e2e.verify import ProcessorCluster, Record, make_readings, wait_until, wait_until_stored
from processor.contract.record import Reading, SensorType, encode_reading
from processor.contract.storage import REDIS_ANOMALY_STREAM, redis_latest_key
from processor.postgres_queries import anomalies

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LEASE_S = 3
DEVICE = "dev-0000"


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
    return {f"{a.device_id}:{a.seq}:{a.anomaly_type}" for a in rows}


@pytest.mark.timeout(120)
def test_a_conflicting_duplicate_never_reaches_redis(
    make_cluster: Callable[..., ProcessorCluster],
) -> None:
    """A record repeating a stored (device, seq) with a newer event time and a value
    that trips the limit detector: PostgreSQL keeps the first reading, so Redis's
    latest hash and anomaly stream must not show the rejected one either."""
    cluster = make_cluster(1, lease_duration_s=LEASE_S)
    cluster.start("w1")
    start = datetime.now(UTC) - timedelta(minutes=2)
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
        assert f"{DEVICE}:10:limit" not in _redis_anomaly_ids(client)
    finally:
        client.close()
