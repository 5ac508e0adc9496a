"""Every edge's client is built with the bounds of processor/client_timeouts.py (one
source of truth, issue 10 item 3), and the PostgreSQL call deadline ends a call that
cannot finish, against a real server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.fixtures import FreshDatabase
from local_pipeline.services import LocalServices
from processor import client_timeouts as bounds
from processor.contract.environment import ProcessorSettings
from processor.kinesis_source import make_kinesis_client
from processor.postgres import (
    DbTarget,
    PgConnector,
    PostgresStore,
    StoreUnavailable,
)
from processor.redis_cache import RedisCache
from processor.secrets import SecretsProvider

pytestmark = pytest.mark.integration


@pytest.fixture
def store(
    fresh_database: FreshDatabase, db_secret_arn: str, aws_env: dict[str, str]
) -> Iterator[PostgresStore]:
    server = fresh_database.server
    target = DbTarget(
        host=server.host,
        port=server.port,
        dbname=fresh_database.name,
        secret_arn=db_secret_arn,
        sslmode=server.sslmode,
        sslrootcert=str(server.ca_path) if server.ca_path else None,
    )
    s = PostgresStore(PgConnector(target, SecretsProvider(aws_env["AWS_REGION"])))
    yield s
    s.close()


def test_postgres_connections_carry_the_bounds(store: PostgresStore) -> None:
    def settings(conn: Any) -> dict[str, str]:
        params = conn.info.get_parameters()
        timeout = conn.execute("SHOW statement_timeout").fetchone()[0]
        return {**params, "statement_timeout": timeout}

    seen = store.run_query(settings)
    assert seen["connect_timeout"] == str(bounds.PG_CONNECT_TIMEOUT_S)
    assert seen["tcp_user_timeout"] == str(bounds.PG_TCP_USER_TIMEOUT_MS)
    assert seen["keepalives_idle"] == str(bounds.PG_KEEPALIVES_IDLE_S)
    assert seen["keepalives_interval"] == str(bounds.PG_KEEPALIVES_INTERVAL_S)
    assert seen["keepalives_count"] == str(bounds.PG_KEEPALIVES_COUNT)
    assert seen["statement_timeout"] == f"{bounds.PG_STATEMENT_TIMEOUT_MS // 1000}s"


def test_a_call_past_its_deadline_fails_as_unavailable_and_the_store_recovers(
    store: PostgresStore,
) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable), store.call_deadline(1.0):
        store.run_query(lambda c: c.execute("SELECT pg_sleep(30)"))
    elapsed = time.monotonic() - started
    # The query would hold its connection 30 s; the deadline cut it (nominally after
    # 1 s plus a watchdog tick; the slack absorbs a loaded machine: 4.1 s was seen
    # with other suites beside it).
    assert elapsed < 10.0, elapsed
    assert store.deadline_hits == 1
    assert store.ping()  # a new connection; the cut one was never pooled again


def test_redis_kinesis_and_secrets_clients_carry_the_bounds(
    local_services: LocalServices,
    aws_env: dict[str, str],
    db_secret_arn: str,
    redis_secret_arn: str,
) -> None:
    settings = ProcessorSettings.from_environ(
        local_services.processor_environment("unused", db_secret_arn, redis_secret_arn)
    )
    cache = RedisCache(settings, SecretsProvider.from_settings(settings))
    kwargs = cache.client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == bounds.REDIS_SOCKET_TIMEOUT_S
    assert kwargs["socket_connect_timeout"] == bounds.REDIS_CONNECT_TIMEOUT_S
    assert kwargs["health_check_interval"] == bounds.REDIS_HEALTH_CHECK_INTERVAL_S
    cache.close()

    kinesis = make_kinesis_client(settings.aws_region).meta.config
    assert kinesis.connect_timeout == bounds.AWS_CONNECT_TIMEOUT_S
    assert kinesis.read_timeout == bounds.KINESIS_READ_TIMEOUT_S
    assert kinesis.retries["total_max_attempts"] == bounds.AWS_MAX_ATTEMPTS

    secrets = SecretsProvider(settings.aws_region)._secretsmanager().meta.config
    assert secrets.connect_timeout == bounds.AWS_CONNECT_TIMEOUT_S
    assert secrets.read_timeout == bounds.SECRETS_READ_TIMEOUT_S
    assert secrets.retries["total_max_attempts"] == bounds.AWS_MAX_ATTEMPTS
