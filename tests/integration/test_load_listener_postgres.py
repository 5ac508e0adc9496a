"""The e2e listener's arrival query against a real, migrated PostgreSQL: the table
name composed as an identifier (``psycopg.sql``) finds the processor's row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from e2e.fixtures import FreshDatabase
from e2e.plant_writer import PlantWriter
from local_pipeline.services import LocalServices, RedisServer
from processor.contract.environment import ProcessorSettings
from simulator.load.e2e_listener import E2EListener

pytestmark = pytest.mark.integration


class Events:
    def __init__(self) -> None:
        self.fired: list[dict[str, Any]] = []

    def fire(self, **kwargs: Any) -> None:
        self.fired.append(kwargs)


def test_a_written_reading_is_seen_in_postgres_with_its_latency(
    local_services: LocalServices,
    fresh_database: FreshDatabase,
    clean_redis: RedisServer,
    db_secret_arn: str,
    redis_secret_arn: str,
    aws_env: dict[str, str],
) -> None:
    env = local_services.processor_environment(
        "unused", db_secret_arn, redis_secret_arn, db_name=fresh_database.name
    )
    event_ts = datetime.now(UTC).replace(microsecond=0)
    with PlantWriter(ProcessorSettings.from_environ(env)) as writer:
        writer.write([PlantWriter.reading("d1", 7, event_ts, 20.0)])
    events = Events()
    listener = E2EListener(
        events, pg_dsn=fresh_database.dsn(), redis_url=clean_redis.url(), timeout_s=60
    )
    try:
        listener.follow("d1", 7, int(event_ts.timestamp() * 1000))
        listener.follow("d1", 8, int(event_ts.timestamp() * 1000))  # never written
        listener.poll_postgres()
    finally:
        if listener._pg is not None:
            listener._pg.close()
    (seen,) = events.fired
    assert seen["name"] == "event->postgres"
    assert seen["exception"] is None
    assert 0 <= seen["response_time"] < 60_000
    assert len(listener.postgres) == 1  # seq 8 still pending
