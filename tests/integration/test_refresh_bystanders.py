"""Refresh paths must not hurt bystanders (issue 10, item 8).

* A Redis AUTH refresh (one runner's new connection refused after a token change)
  used to disconnect the whole pool, including the connection another runner was
  using: that runner's window and stream writes for its batch were lost (the cache
  went stale). Two runners, a real Redis whose token changes, moto for the secret.
* The secrets provider used to hold its lock during the network fetch, so a cached
  read of any secret queued behind a slow refresh. A real moto behind a proxy that
  black-holes the refresh's request.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.config
import pytest

from local_pipeline.services import LocalServices, RedisServer
from local_pipeline.services.blackhole_proxy import BlackHoleProxy
from processor.contract.environment import ProcessorSettings
from processor.contract.record import Reading, SensorType
from processor.contract.storage import redis_latest_key, redis_window_key
from processor.core.model import AcceptedReading, ProcessedBatch
from processor.redis_cache import RedisCache
from processor.secrets import SecretsProvider, SecretsUnavailable

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


def _reading(device: str, seq: int) -> AcceptedReading:
    reading = Reading(
        device_id=device,
        facility="fac1",
        line="l01",
        sensor_type=SensorType.TEMPERATURE,
        unit="C",
        ts=NOW + timedelta(seconds=seq),
        seq=seq,
        schema_version=1,
        value=50.0,
    )
    return AcceptedReading(reading, "shardId-000000000000", str(10_000 + seq), NOW)


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

    class NoRows:  # a first contact reconciles nothing: the test's Redis is empty
        def latest_per_device(self) -> dict[str, AcceptedReading]:
            return {}

    assert c.recover(NoRows())
    yield c
    c.close()


def test_an_auth_refresh_leaves_other_runners_connections_alone(
    cache: RedisCache,
    settings: ProcessorSettings,
    local_services: LocalServices,
    clean_redis: RedisServer,
) -> None:
    # Runner A's connection is pooled and authenticated with the old token.
    assert cache.apply(ProcessedBatch("shard-a", readings=[_reading("dev-a", 0)]))
    old = clean_redis.token
    new = old + "-rotated"
    admin = clean_redis.client()
    admin.ping()
    local_services.secrets_client().put_secret_value(
        SecretId=settings.redis_auth_secret_arn, SecretString=json.dumps({"auth_token": new})
    )
    admin.config_set("requirepass", new)  # open connections stay authenticated
    results: dict[str, bool] = {}
    try:
        # Writes wait on the server for a moment, so runner A's script is in flight
        # on its connection while runner B needs a new one (refused: old token).
        admin.execute_command("CLIENT", "PAUSE", "1500", "WRITE")
        batch_a = ProcessedBatch("shard-a", readings=[_reading("dev-a", 1)])
        batch_b = ProcessedBatch("shard-b", readings=[_reading("dev-b", 1)])
        runner_a = threading.Thread(target=lambda: results.update(a=cache.apply(batch_a)))
        runner_b = threading.Thread(target=lambda: results.update(b=cache.apply(batch_b)))
        runner_a.start()
        time.sleep(0.3)
        runner_b.start()
        runner_a.join(timeout=15)
        runner_b.join(timeout=15)
        assert results == {"a": True, "b": True}, (
            f"{results}: the refresh cut runner A's connection (cache stale: {cache.stale})"
        )
        assert not cache.stale
        check = clean_redis.client(password=new)
        try:
            assert check.hget(redis_latest_key("dev-a"), "seq") == b"1"
            assert check.zcard(redis_window_key("dev-a")) == 2
            assert check.hget(redis_latest_key("dev-b"), "seq") == b"1"
        finally:
            check.close()
    finally:
        restore = clean_redis.client(password=new)
        restore.execute_command("CLIENT", "UNPAUSE")
        restore.config_set("requirepass", old)
        restore.close()
        admin.close()
        local_services.secrets_client().put_secret_value(
            SecretId=settings.redis_auth_secret_arn, SecretString=json.dumps({"auth_token": old})
        )


#: The refresh's read timeout through the black hole (what the slow refresh costs).
SLOW_REFRESH_S = 3.0


@pytest.fixture
def moto_proxy(local_services: LocalServices) -> Iterator[BlackHoleProxy]:
    endpoint = urlsplit(local_services.moto.endpoint_url)
    assert endpoint.hostname is not None and endpoint.port is not None
    with BlackHoleProxy(endpoint.hostname, endpoint.port) as proxy:
        yield proxy


def test_cached_reads_do_not_queue_behind_a_slow_refresh(
    aws_env: dict[str, str], secrets_client: Any, moto_proxy: BlackHoleProxy
) -> None:
    arns = [
        str(
            secrets_client.create_secret(
                Name=f"bystander-{name}-{time.monotonic_ns()}",
                SecretString=json.dumps({"username": name, "password": "p"}),
            )["ARN"]
        )
        for name in ("one", "two")
    ]
    client = boto3.session.Session().client(
        "secretsmanager",
        endpoint_url=f"http://{moto_proxy.host}:{moto_proxy.port}",
        region_name=aws_env["AWS_REGION"],
        config=botocore.config.Config(
            connect_timeout=SLOW_REFRESH_S,
            read_timeout=SLOW_REFRESH_S,
            retries={"max_attempts": 1, "mode": "standard"},
        ),
    )
    provider = SecretsProvider(aws_env["AWS_REGION"], min_refresh_interval_s=0, client=client)
    for arn in arns:
        assert provider.db_credentials(arn).username in {"one", "two"}
    fetches_before = provider.fetch_count

    moto_proxy.blackhole()
    errors: list[BaseException] = []

    def refresh() -> None:
        try:
            provider.get_json(arns[0], refresh=True)
        except SecretsUnavailable as exc:
            errors.append(exc)

    refreshers = [threading.Thread(target=refresh) for _ in range(2)]
    refreshers[0].start()
    time.sleep(0.3)  # the first refresh is on the wire
    refreshers[1].start()  # a concurrent refresh of the same ARN joins it
    started = time.monotonic()
    other = provider.db_credentials(arns[1])  # another secret, cached
    same = provider.db_credentials(arns[0])  # the refreshing secret, cached value
    waited = time.monotonic() - started
    for thread in refreshers:
        thread.join(timeout=SLOW_REFRESH_S * 4)
    moto_proxy.restore()

    assert (other.username, same.username) == ("two", "one")
    assert waited < 0.5, f"cached reads waited {waited:.2f} s behind the refresh"
    assert len(errors) == 2, errors  # both refreshers saw the timeout
    assert provider.fetch_count - fetches_before == 1, "concurrent refreshes were not merged"
    print(f"cached reads took {waited * 1000:.1f} ms during a {SLOW_REFRESH_S:.0f} s refresh")
