"""``tap.detector_overrides`` read from a real PostgreSQL and applied by the bank."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from e2e.fixtures import FreshDatabase
from local_pipeline.services import LocalServices, PostgresServer
from processor.contract.record import Reading, SensorType
from processor.core.detection import DetectorBank
from processor.core.model import AnomalyType
from processor.detector_overrides import OverridesRefresher, load_overrides
from processor.postgres import DbTarget, PgConnector, PostgresStore
from processor.secrets import SecretsProvider

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


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
    s.migrate()
    yield s
    s.close()


def reading(device: str, seq: int, value: float) -> Reading:
    return Reading(
        device_id=device,
        facility="fac01",
        line="l01",
        sensor_type=SensorType.TEMPERATURE,
        unit="C",
        ts=T0 + timedelta(minutes=10 * seq),
        seq=seq,
        schema_version=1,
        value=value,
    )


def test_rows_change_the_limits_per_device_and_prefix_and_bad_rows_are_named(
    store: PostgresStore, caplog: pytest.LogCaptureFixture
) -> None:
    connect: Callable[[], Any] = store.connector.connect
    with connect() as conn:
        conn.execute(
            "INSERT INTO tap.detector_overrides (scope, match, setting, value) VALUES"
            " ('sensor_type', 'temperature', 'warning_high', 100),"
            " ('prefix', 'fac01-l02-', 'warning_high', 90),"
            " ('device', 'fac01-l02-m01-temperature-0', 'warning_high', 80),"
            " ('device', 'fac01-l03-m01-temperature-0', 'warning_hihg', 85)"
        )
        loaded = load_overrides(conn)
    assert len(loaded.errors) == 1 and "id=4" in loaded.errors[0]
    assert "warning_hihg" in loaded.errors[0]

    refresher = OverridesRefresher(store.run_query, refresh_s=3600)
    refresher.refresh()
    assert "detector override refused" in caplog.text
    bank = DetectorBank(overrides=refresher.current)
    fired = {}
    for device in (
        "fac01-l01-m01-temperature-0",  # sensor type: 100
        "fac01-l02-m02-temperature-0",  # prefix: 90
        "fac01-l02-m01-temperature-0",  # device: 80
    ):
        got = bank.observe(reading(device, 1, 85.0)) + bank.observe(reading(device, 2, 95.0))
        fired[device] = [a.seq for a in got if a.anomaly_type is AnomalyType.LIMIT]
    assert fired == {
        "fac01-l01-m01-temperature-0": [],
        "fac01-l02-m02-temperature-0": [2],
        "fac01-l02-m01-temperature-0": [1],
    }

    # A change applies on the next refresh, without a restart.
    with connect() as conn:
        conn.execute("DELETE FROM tap.detector_overrides WHERE scope = 'sensor_type'")
        conn.execute("UPDATE tap.detector_overrides SET value = 60 WHERE scope = 'prefix'")
    refresher.refresh()
    fresh = DetectorBank(overrides=refresher.current)
    got = fresh.observe(reading("fac01-l02-m07-temperature-0", 1, 70.0))
    assert [a.anomaly_type for a in got] == [AnomalyType.LIMIT]


def test_an_unreachable_table_keeps_the_previous_set(caplog: pytest.LogCaptureFixture) -> None:
    def broken(query: Any) -> Any:
        raise OSError("database down")

    refresher = OverridesRefresher(broken, refresh_s=3600)
    refresher.refresh()
    assert refresher.current() is None
    assert "detector overrides not refreshed" in caplog.text


def test_overrides_refresh_through_the_stores_pool_and_survive_an_outage(
    local_services: LocalServices,
    private_pg_server: PostgresServer,
    aws_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The refresher borrows the store's pooled connection (no login per refresh);
    while PostgreSQL is down it keeps the previous set, and picks up a change once
    PostgreSQL is back."""
    server = private_pg_server
    target = DbTarget(
        host=server.host,
        port=server.port,
        dbname=server.database,
        secret_arn=local_services.create_db_secret(postgres=server),
        sslmode=server.sslmode,
        sslrootcert=str(server.ca_path) if server.ca_path else None,
    )
    store = PostgresStore(PgConnector(target, SecretsProvider(aws_env["AWS_REGION"])))
    try:
        store.migrate()
        store.run_query(
            lambda c: c.execute(
                "INSERT INTO tap.detector_overrides (scope, match, setting, value)"
                " VALUES ('device', 'fac01-l01-m01-temperature-0', 'warning_high', 80)"
            )
        )
        refresher = OverridesRefresher(store.run_query, refresh_s=3600)
        refresher.refresh()
        logins = store.connector.connects
        refresher.refresh()
        refresher.refresh()
        assert store.connector.connects == logins  # the pooled connection, reused
        before = refresher.current()
        assert before is not None

        server.stop()
        started = time.monotonic()
        refresher.refresh()
        assert time.monotonic() - started < 30
        assert refresher.current() is before
        assert "detector overrides not refreshed" in caplog.text

        server.start()
        store.run_query(
            lambda c: c.execute("UPDATE tap.detector_overrides SET value = 60 WHERE id = 1")
        )
        refresher.refresh()
        bank = DetectorBank(overrides=refresher.current)
        got = bank.observe(reading("fac01-l01-m01-temperature-0", 1, 70.0))
        assert [a.anomaly_type for a in got] == [AnomalyType.LIMIT]
    finally:
        store.close()
