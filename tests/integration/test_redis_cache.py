"""The Redis adapter against a real Redis with TLS and an AUTH token from (emulated)
Secrets Manager: idempotent writes, bounds and TTLs, outage and reconciliation,
token rotation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme

from local_pipeline.services import LocalServices, RedisServer
from processor.contract.environment import ProcessorSettings
from processor.contract.record import Reading, SensorType
from processor.contract.storage import (
    REDIS_ANOMALY_STREAM,
    REDIS_LAST_SEEN,
    redis_detector_key,
    redis_latest_key,
    redis_line_devices_key,
    redis_silence_arrivals_key,
    redis_silence_key,
    redis_window_key,
)
from processor.core.model import AcceptedReading, Anomaly, AnomalyType, ProcessedBatch, Severity
from processor.core.silence import SilenceConfig, SilenceTracker
from processor.redis_cache import CacheLimits, RedisCache
from processor.secrets import SecretsProvider

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


def _reading(
    device: str, seq: int, value: float = 50.0, at: datetime | None = None, boot: int = 0
) -> Any:
    reading = Reading(
        device_id=device,
        facility="fac1",
        line="l01",
        sensor_type=SensorType.TEMPERATURE,
        unit="C",
        ts=at or NOW + timedelta(seconds=seq),
        seq=seq,
        schema_version=1,
        value=value,
        boot=boot,
    )
    return AcceptedReading(reading, "shardId-000000000000", str(10_000 + seq), NOW)


def _anomaly(device: str, seq: int) -> Anomaly:
    return Anomaly(
        device, seq, NOW, AnomalyType.LIMIT, Severity.WARNING, 1.5, "hot", "temperature", 95.0
    )


@pytest.fixture
def settings(
    local_services: LocalServices,
    aws_env: dict[str, str],
    db_secret_arn: str,
    redis_secret_arn: str,
) -> ProcessorSettings:
    return ProcessorSettings.from_environ(
        local_services.processor_environment("unused", db_secret_arn, redis_secret_arn)
    )


@pytest.fixture
def cache(settings: ProcessorSettings, clean_redis: RedisServer) -> Iterator[RedisCache]:
    c = RedisCache(settings, SecretsProvider.from_settings(settings, min_refresh_interval_s=0))

    class NoRows:
        def latest_per_device(self) -> dict[str, AcceptedReading]:
            return {}

    assert c.recover(NoRows())  # first contact: fresh
    yield c
    c.close()


@pytest.fixture
def raw(clean_redis: RedisServer) -> Iterator[Any]:
    client = clean_redis.client()
    yield client
    client.close()


def test_tls_and_auth_are_in_use(settings: ProcessorSettings, cache: RedisCache) -> None:
    if not settings.redis_tls:
        pytest.skip("this Redis has no TLS")
    kwargs = cache.client.connection_pool.connection_kwargs
    assert kwargs["ssl_cert_reqs"] == "required" and kwargs["ssl_check_hostname"] is True
    assert cache.ping()


def test_a_foreign_ca_is_refused(
    settings: ProcessorSettings, clean_redis: RedisServer, tmp_path: Path
) -> None:
    if not settings.redis_tls:
        pytest.skip("this Redis has no TLS")
    foreign = tmp_path / "foreign-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(foreign))
    import dataclasses

    bad = RedisCache(
        dataclasses.replace(settings, redis_ca_bundle=str(foreign)),
        SecretsProvider.from_settings(settings),
    )
    assert not bad.ping() and bad.stale
    bad.close()


def test_apply_is_idempotent_and_bounded(cache: RedisCache, raw: Any) -> None:
    readings = [_reading("d1", seq) for seq in range(150)] + [_reading("d2", 7)]
    batch = ProcessedBatch(
        "shardId-000000000000",
        readings=readings,
        anomalies=[_anomaly("d1", 120), _anomaly("d2", 7)],
    )
    assert cache.apply(batch)
    snapshot = (
        raw.hgetall(redis_latest_key("d1")),
        raw.zrange(redis_window_key("d1"), 0, -1, withscores=True),
        raw.xlen(REDIS_ANOMALY_STREAM),
        raw.zrange(REDIS_LAST_SEEN, 0, -1, withscores=True),
    )
    assert cache.apply(batch)  # a replay changes nothing
    assert snapshot == (
        raw.hgetall(redis_latest_key("d1")),
        raw.zrange(redis_window_key("d1"), 0, -1, withscores=True),
        raw.xlen(REDIS_ANOMALY_STREAM),
        raw.zrange(REDIS_LAST_SEEN, 0, -1, withscores=True),
    )
    latest, window, stream_length, _ = snapshot
    assert latest[b"seq"] == b"149" and latest[b"device_id"] == b"d1"
    assert len(window) == CacheLimits().window_size
    # Scored by event time (µs): the newest 100 by event time are seqs 50..149.
    assert [json.loads(m)["seq"] for m, _ in (window[0], window[-1])] == [50, 149]
    assert window[-1][1] - window[0][1] == 99 * 1_000_000
    assert json.loads(window[-1][0])["seq"] == 149
    assert stream_length == 2
    entry = raw.xrange(REDIS_ANOMALY_STREAM)[0][1]
    # the PostgreSQL key (migration 0007): boot 0, the UTC day of the anomaly's ts
    assert entry[b"anomaly_id"] == f"d1:120:limit:0:{NOW.date().isoformat()}".encode()
    assert entry[b"boot"] == b"0"
    for key in (redis_latest_key("d1"), redis_window_key("d1")):
        assert 0 < raw.ttl(key) <= 7 * 86_400
    assert raw.zscore(REDIS_LAST_SEEN, "d1") == int(
        (NOW + timedelta(seconds=149)).timestamp() * 1000
    )


def _redis_view(raw: Any, devices: list[str]) -> tuple[Any, ...]:
    return (
        [raw.hgetall(redis_latest_key(d)) for d in devices],
        [raw.zrange(redis_window_key(d), 0, -1, withscores=True) for d in devices],
        raw.xlen(REDIS_ANOMALY_STREAM),
        raw.zrange(REDIS_LAST_SEEN, 0, -1, withscores=True),
    )


def test_a_replayed_batch_leaves_redis_identical(cache: RedisCache, raw: Any) -> None:
    devices = ["d1", "d2", "d3"]
    older = ProcessedBatch(
        "s",
        readings=[_reading(d, seq) for seq in range(1, 6) for d in devices],
        anomalies=[_anomaly("d1", 3)],
    )
    newer = ProcessedBatch(
        "s",
        readings=[_reading(d, seq, value=60.0) for seq in range(6, 11) for d in devices],
        anomalies=[_anomaly("d2", 8), _anomaly("d3", 9)],
    )
    assert cache.apply(older) and cache.apply(newer)
    before = _redis_view(raw, devices)
    assert [latest[b"seq"] for latest in before[0]] == [b"10", b"10", b"10"]
    assert [len(window) for window in before[1]] == [10, 10, 10]
    assert before[2] == 3

    # The same batch again, then an older batch after the newer one (a lagging worker,
    # a retry after a lost reply), one older reading alone, the silence path and a
    # reconciliation with older rows: nothing moves.
    assert cache.apply(newer)
    assert cache.apply(older)
    assert cache.apply(ProcessedBatch("s", readings=[_reading("d2", 4, value=1.0)]))
    assert cache.add_anomalies(older.anomalies + newer.anomalies)
    assert cache.set_latest([_reading(d, 7) for d in devices]) == 0
    assert _redis_view(raw, devices) == before
    for d in devices:
        assert raw.pttl(redis_latest_key(d)) > 0 and raw.pttl(redis_window_key(d)) > 0


def test_a_large_batch_is_split_and_applied_whole(cache: RedisCache, raw: Any) -> None:
    from processor.redis_cache import MAX_ITEMS_PER_CALL

    devices = [f"dev{i:05d}" for i in range(MAX_ITEMS_PER_CALL + 7)]
    batch = ProcessedBatch(
        "s",
        readings=[_reading(d, 1) for d in devices],
        anomalies=[_anomaly(d, 1) for d in devices],
    )
    assert cache.apply(batch)
    assert raw.zcard(REDIS_LAST_SEEN) == len(devices)
    assert raw.hget(redis_latest_key(devices[-1]), "seq") == b"1"
    assert raw.zcard(redis_window_key(devices[-1])) == 1
    assert raw.xlen(REDIS_ANOMALY_STREAM) == len(devices)
    states = {d: b"\x00\xff" + d.encode() for d in devices}
    assert cache.save_detector_states(states)
    assert cache.load_detector_states(devices[-2:]) == {d: states[d] for d in devices[-2:]}


def test_an_older_reading_never_replaces_a_newer_one(cache: RedisCache, raw: Any) -> None:
    assert cache.apply(ProcessedBatch("s", readings=[_reading("d1", 10, value=70.0)]))
    # A replay of an older batch (another worker, a retry) arrives late.
    assert cache.apply(ProcessedBatch("s", readings=[_reading("d1", 9, value=20.0)]))
    assert raw.hget(redis_latest_key("d1"), "seq") == b"10"
    # Same timestamp, higher seq wins; a seq beyond 2**53 still compares exactly.
    same_ts = NOW + timedelta(seconds=10)
    big = 2**60 + 1
    assert cache.apply(ProcessedBatch("s", readings=[_reading("d1", big, at=same_ts)]))
    assert cache.apply(ProcessedBatch("s", readings=[_reading("d1", big - 1, at=same_ts)]))
    assert raw.hget(redis_latest_key("d1"), "seq") == str(big).encode()
    # The window keeps the first copy of an identity (like PostgreSQL's ON CONFLICT DO
    # NOTHING), and two readings of one event time are two members.
    assert cache.apply(ProcessedBatch("s", readings=[_reading("d1", 10, value=11.0)]))
    members = [json.loads(m) for m in raw.zrange(redis_window_key("d1"), 0, -1)]
    assert [m["value"] for m in members if m["seq"] == 10] == [70.0]
    at_same_ts = sorted(m["seq"] for m in members if m["ts"] == same_ts.isoformat())
    assert at_same_ts == [10, big - 1, big]  # seq 10 was read at NOW + 10 s as well


def test_after_a_device_restart_the_window_holds_its_newest_readings(
    cache: RedisCache, raw: Any
) -> None:
    """A restart (boot + 1) starts the device's seq again at 0. The window is the
    device's most recent readings, so the new boot's readings must enter it and the
    old boot's oldest must leave (it was scored by seq: the new readings, with the
    lowest scores, were trimmed at once and the window froze on the old boot)."""
    size = CacheLimits().window_size
    before = [_reading("d1", seq, boot=0) for seq in range(size)]
    assert cache.apply(ProcessedBatch("s", readings=before))
    restart = NOW + timedelta(seconds=size + 60)
    after = [
        _reading("d1", seq, value=60.0, at=restart + timedelta(seconds=seq), boot=1)
        for seq in range(10)
    ]
    assert cache.apply(ProcessedBatch("s", readings=after))
    members = [json.loads(m) for m in raw.zrange(redis_window_key("d1"), 0, -1)]
    assert len(members) == size
    assert [(m.get("boot", 0), m["seq"]) for m in members[-10:]] == [(1, seq) for seq in range(10)]
    assert [(m.get("boot", 0), m["seq"]) for m in members[:2]] == [(0, 10), (0, 11)]


def test_each_line_has_its_device_set_scored_by_last_seen(cache: RedisCache, raw: Any) -> None:
    assert cache.apply(ProcessedBatch("s", readings=[_reading("d1", 1), _reading("d1", 2)]))
    key = redis_line_devices_key("fac1", "l01")
    newest_ms = int((NOW + timedelta(seconds=2)).timestamp() * 1000)
    assert raw.zrange(key, 0, -1, withscores=True) == [(b"d1", float(newest_ms))]
    assert cache.apply(ProcessedBatch("s", readings=[_reading("d1", 1)]))  # a late replay
    assert raw.zscore(key, "d1") == float(newest_ms)  # GT: never moves back
    assert 0 < raw.pttl(key) <= CacheLimits().latest_ttl_s * 1000


def test_detector_states_round_trip_with_a_ttl(cache: RedisCache, raw: Any) -> None:
    assert cache.save_detector_states({"d1": b"\x01state", "d2": b"\x02"})
    assert cache.load_detector_states(["d1", "d2", "d3"]) == {
        "d1": b"\x01state",
        "d2": b"\x02",
        "d3": None,
    }
    assert 0 < raw.ttl(redis_detector_key("d1")) <= 7 * 86_400


def test_the_silence_registry_rides_in_the_batch_call(cache: RedisCache, raw: Any) -> None:
    shard = "shardId-000000000007"
    entries = {f"d{i}": f'[1,"temperature",{i},1.0,1.0,[],-1]' for i in range(2_500)}
    # More entries than one script call carries: every one is written, in one batch.
    assert cache.apply(ProcessedBatch(shard, readings=[_reading("d1", 1)]), entries)
    key = redis_silence_key(shard)
    assert raw.hlen(key) == 2_500
    assert 0 < raw.pttl(key) <= 7 * 86_400 * 1000
    # A batch with no reading still saves the registry (a silence check's verdict).
    assert cache.apply(ProcessedBatch(shard), {"d1": "changed"}, forgotten=["d2", "d3"])
    loaded = cache.load_silence_registry([shard, "shardId-parent"])
    assert loaded is not None
    assert loaded["shardId-parent"] == {}
    assert len(loaded[shard]) == 2_498 and loaded[shard]["d1"] == "changed"
    assert loaded[shard]["d4"] == entries["d4"]


def test_the_silence_registry_is_bounded_by_the_forget_time(cache: RedisCache, raw: Any) -> None:
    """Issue 10 item 9: 2,500 devices seen ten days ago are reported, saved and let go
    of by the tracker; Redis keeps them (a new owner must know them) until the shard
    has moved on past the forget time (two days here), then deletes them, at most
    1,000 per call. A device that reads again in time gets its saved entry back."""
    shard = "shardId-000000000009"
    key, arrivals = redis_silence_key(shard), redis_silence_arrivals_key(shard)
    tracker = SilenceTracker(SilenceConfig(forget_after_s=2 * 86_400.0))
    then = NOW.timestamp() - 10 * 86_400
    seq = 0

    def save() -> None:
        nonlocal seq
        seq += 1
        entries, forgotten = tracker.dirty_entries(), tracker.forgotten()
        assert tracker.progress is not None
        assert cache.apply(
            ProcessedBatch(shard, readings=[_reading("fresh", seq)]),
            entries,
            forgotten,
            silence_arrivals=tracker.arrivals_ms(entries),
            silence_forget_before_ms=round((tracker.progress - 2 * 86_400.0) * 1000),
        )
        tracker.clear_dirty([*entries, *forgotten])

    for i in range(2_500):
        for k in range(3):
            tracker.observe(f"old{i:04d}", k, then + k, "temperature")
    save()
    tracker.advance(then + 3_600)
    assert len(tracker.check()) == 2_500
    save()
    tracker.check()
    assert len(tracker) == 0  # out of memory ...
    assert raw.hlen(key) == 2_500 and raw.zcard(arrivals) == 2_500  # ... kept in Redis
    assert 0 < raw.pttl(arrivals) <= 7 * 86_400 * 1000
    assert raw.zscore(arrivals, "old0007") == round((then + 2) * 1000)
    assert set(cache.load_silence_entries(shard, ["old0007", "never"])) == {"old0007"}

    # Ten days on: the shard's progress passes the forget time of every old device.
    tracker.observe("fresh", 0, NOW.timestamp(), "temperature")
    remaining = []
    for _ in range(3):
        save()
        remaining.append(raw.hlen(key))
    assert remaining == [1_501, 501, 1]  # 1,000 per call, then only "fresh"
    assert raw.zrange(arrivals, 0, -1) == [b"fresh"] and raw.hkeys(key) == [b"fresh"]
    assert cache.load_silence_entries(shard, ["old0007"]) == {}


def test_outage_marks_stale_and_recovery_reconciles_latest(
    cache: RedisCache, restartable_redis_server: RedisServer
) -> None:
    assert cache.apply(ProcessedBatch("s", readings=[_reading("d1", 1), _reading("d2", 1)]))
    restartable_redis_server.stop()
    try:
        assert not cache.apply(ProcessedBatch("s", readings=[_reading("d1", 2)]))
        assert cache.stale
        assert cache.load_detector_states(["d1"]) == {}  # stale: no state, no stall
        assert cache.load_silence_registry(["s"]) is None  # unknown, not empty
        assert not cache.apply(ProcessedBatch("s"), {"d1": "entry"})

        class Store:
            def latest_per_device(self) -> dict[str, AcceptedReading]:
                return {"d1": _reading("d1", 2), "d2": _reading("d2", 1), "d3": _reading("d3", 5)}

        assert not cache.recover(Store())  # still down
    finally:
        restartable_redis_server.start()
    assert cache.recover(Store())
    assert not cache.stale
    client = restartable_redis_server.client()
    try:
        assert [client.hget(redis_latest_key(d), "seq") for d in ("d1", "d2", "d3")] == [
            b"2",
            b"1",
            b"5",
        ]
    finally:
        client.close()


def test_a_restart_between_batches_is_noticed(
    cache: RedisCache, restartable_redis_server: RedisServer
) -> None:
    assert cache.check()
    restartable_redis_server.restart()
    assert not cache.check()  # new run_id: the cache was emptied
    assert cache.stale


def test_rotated_token_is_fetched_again(
    cache: RedisCache,
    settings: ProcessorSettings,
    local_services: LocalServices,
    clean_redis: RedisServer,
    raw: Any,
) -> None:
    old = clean_redis.token
    new = old + "-rotated"
    local_services.secrets_client().put_secret_value(
        SecretId=settings.redis_auth_secret_arn, SecretString=json.dumps({"auth_token": new})
    )
    raw.config_set("requirepass", new)
    try:
        cache.client.connection_pool.disconnect()  # new connections must AUTH again
        assert cache.apply(ProcessedBatch("s", readings=[_reading("d9", 1)]))
        assert not cache.stale
    finally:
        admin = clean_redis.client(password=new)
        admin.config_set("requirepass", old)
        admin.close()
        local_services.secrets_client().put_secret_value(
            SecretId=settings.redis_auth_secret_arn, SecretString=json.dumps({"auth_token": old})
        )
