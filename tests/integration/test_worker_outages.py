"""A processor process rides out its dependencies failing: the application secret
rotated (alternating users) mid-stream, PostgreSQL restarted, Redis down and back
empty (reconciled from PostgreSQL). Each ends with zero lost and zero duplicated readings."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from local_pipeline.services import PostgresServer, RedisServer
from local_pipeline.verify import (
    ProcessorCluster,
    SendResult,
    compare,
    make_readings,
    redis_latest_mismatches,
    send_paced,
    wait_until,
    wait_until_stored,
)
from processor.contract.storage import APP_ROLE
from processor.migrate_command import CLONE_SUFFIX

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def cluster(make_cluster: Callable[..., ProcessorCluster]) -> ProcessorCluster:
    return make_cluster(2, lease_duration_s=3)


def _send_in_background(
    cluster: ProcessorCluster, records: list[Any], seconds: float
) -> tuple[threading.Thread, SendResult]:
    result = SendResult()

    def run() -> None:
        result.merge(
            send_paced(cluster.services.kinesis_client(), cluster.stream, records, seconds=seconds)
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def _assert_exact(cluster: ProcessorCluster, sent: SendResult, timeout: float = 45) -> None:
    wait_until_stored(cluster.view, sent.keys, timeout=timeout)
    report = compare(sent.keys, cluster.view)
    assert report.ok, report.summary() + "\n" + cluster.logs()


def _end_sessions_of(server: PostgresServer, database: str, logins: tuple[str, ...]) -> None:
    # Open sessions survive a password change; end them so every new login needs it.
    with server.admin_connection(database) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE usename = ANY(%s) AND pid <> pg_backend_pid()",
            (list(logins),),
        )


@pytest.mark.timeout(150)
def test_db_password_rotated_mid_stream(
    cluster: ProcessorCluster, restartable_pg_server: PostgresServer
) -> None:
    """The application secret rotated twice by alternating users (as the AWS
    multi-user rotation function does every 30 days) while records flow: the first
    rotation leaves the cached login valid, the second changes its password, so the
    worker must log in again with the refreshed secret. Nothing lost or doubled."""
    w1 = cluster.start("w1")
    w1.wait_for_event("shard_first_fetch", timeout=20)
    thread, sent = _send_in_background(cluster, make_readings(40, 90), seconds=9)
    logins = (APP_ROLE, APP_ROLE + CLONE_SUFFIX)
    time.sleep(3)
    cluster.services.app_logins.rotate(cluster.app_secret_arn, restartable_pg_server)
    _end_sessions_of(restartable_pg_server, cluster.database, logins)
    time.sleep(3)  # past the secret's refresh rate limit (5 s after the first fetch)
    cluster.services.app_logins.rotate(cluster.app_secret_arn, restartable_pg_server)
    _end_sessions_of(restartable_pg_server, cluster.database, logins)
    thread.join(timeout=60)
    _assert_exact(cluster, sent)
    relogins = [e for e in w1.events() if "refreshed secret" in e.get("msg", "")]
    assert relogins, "the worker should have logged in again with the rotated secret\n" + w1.tail()
    assert w1.alive()


@pytest.mark.timeout(120)
def test_postgres_restart_mid_stream(
    cluster: ProcessorCluster, restartable_pg_server: PostgresServer
) -> None:
    w1 = cluster.start("w1")
    w1.wait_for_event("shard_first_fetch", timeout=20)
    thread, sent = _send_in_background(cluster, make_readings(40, 60), seconds=6)
    time.sleep(2)
    restartable_pg_server.restart()
    thread.join(timeout=60)
    _assert_exact(cluster, sent)
    assert w1.alive()
    assert wait_until(lambda: w1.health()[0] == 200, timeout=10), w1.health()


@pytest.mark.timeout(120)
def test_redis_restart_is_reconciled_from_postgres(
    cluster: ProcessorCluster, restartable_redis_server: RedisServer
) -> None:
    w1 = cluster.start("w1")
    start = datetime.now(UTC)
    sent = cluster.send(make_readings(40, 10, start=start))
    _assert_exact(cluster, sent, timeout=30)

    restartable_redis_server.stop()
    # PostgreSQL writes go on while Redis is away.
    during = cluster.send(make_readings(40, 10, start=start, first_seq=10))
    _assert_exact(cluster, sent.merge(during), timeout=30)
    assert w1.wait_for_event("redis_stale", timeout=10), w1.tail()
    status, body = w1.health()
    assert status == 503 and body["redis"] is False, body

    restartable_redis_server.start()  # empty: a restart loses the cache
    # Only half the devices send again; the others' latest must come from PostgreSQL.
    after = cluster.send(make_readings(20, 5, start=start, first_seq=20))
    _assert_exact(cluster, sent.merge(after), timeout=30)
    assert w1.wait_for_event("redis_reconciled", timeout=15, count=2), w1.tail()

    client = restartable_redis_server.client()
    try:
        mismatches: list[str] = []

        def consistent() -> bool:
            nonlocal mismatches
            mismatches = redis_latest_mismatches(client, cluster.view.latest_per_device())
            return not mismatches

        assert wait_until(consistent, timeout=15), mismatches[:10]
        assert len(cluster.view.latest_per_device()) == 40
    finally:
        client.close()
    assert wait_until(lambda: w1.health()[0] == 200, timeout=10)
