"""PostgresStore against a real PostgreSQL (TLS verify-full, role tap_app) and moto's
Secrets Manager, from the e2e fixtures.

Each test gets a fresh database, so it can count rows exactly. What is asserted is
what the processor relies on: migrations that are safe to run from every worker at
once, partitions that are there before readings need them, exactly one row per
(device_id, seq) whatever replays and producer duplicates happen, append-only
compliance tables, a fencing check that rejects a stale owner's commit with nothing
of it visible, and a store that survives a password rotation and a server restart.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from psycopg import sql

from e2e.fixtures import FreshDatabase
from local_pipeline.services import LocalServices, PostgresServer
from processor.contract import storage
from processor.contract.record import (
    EquipmentStatus,
    Reading,
    RejectReason,
    SensorType,
    decode_reading,
)
from processor.core.model import (
    AcceptedReading,
    Anomaly,
    AnomalyType,
    DeadLetter,
    LeaseToken,
    ProcessedBatch,
    Severity,
)
from processor.postgres import (
    AuthenticationFailed,
    DbTarget,
    LeaseLost,
    MigrationError,
    PgConnector,
    PostgresStore,
    RetryPolicy,
    StoreUnavailable,
    load_migrations,
    partitions,
    reads,
    with_pg_retry,
)
from processor.postgres.identifiers import table_identifier
from processor.secrets import SecretsProvider

pytestmark = pytest.mark.integration

#: Every shipped migration version, derived (never a hard-coded count: branches add
#: migrations that the integrator renumbers).
ALL_VERSIONS = [m.version for m in load_migrations()]

NOW = datetime.now(UTC).replace(microsecond=0)


# --- helpers --------------------------------------------------------------------------

StoreFactory = Callable[..., PostgresStore]


@pytest.fixture
def make_store(
    fresh_database: FreshDatabase, db_secret_arn: str, aws_env: dict[str, str]
) -> Iterator[StoreFactory]:
    """``make_store(**target_overrides) -> PostgresStore`` on the test's database,
    credentials from the moto secret (as in production: only the ARN is configured)."""
    server = fresh_database.server
    stores: list[PostgresStore] = []

    def make(*, min_refresh_interval_s: float = 0.0, **overrides: Any) -> PostgresStore:
        fields: dict[str, Any] = {
            "host": server.host,
            "port": server.port,
            "dbname": fresh_database.name,
            "secret_arn": db_secret_arn,
            "sslmode": server.sslmode,
            "sslrootcert": str(server.ca_path) if server.ca_path else None,
        }
        target = DbTarget(**(fields | overrides))
        secrets = SecretsProvider(
            aws_env["AWS_REGION"], min_refresh_interval_s=min_refresh_interval_s
        )
        store = PostgresStore(PgConnector(target, secrets))
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> PostgresStore:
    """A migrated store with today's partitions."""
    s = make_store()
    s.migrate()
    s.ensure_partitions()
    return s


@pytest.fixture
def admin(fresh_database: FreshDatabase) -> Iterator[psycopg.Connection[Any]]:
    with fresh_database.admin_connection() as conn:
        yield conn


def reading(
    device: str,
    seq: int,
    *,
    shard: str = "shard-0",
    sequence_number: str | None = None,
    ts: datetime | None = None,
    value: float | None = None,
) -> AcceptedReading:
    r = Reading(
        device_id=device,
        facility="fac1",
        line="l01",
        sensor_type=SensorType.TEMPERATURE,
        unit="C",
        ts=ts or NOW - timedelta(seconds=10_000 - seq),
        seq=seq,
        schema_version=1,
        value=20.0 + seq % 50 if value is None else value,
    )
    return AcceptedReading(r, shard, sequence_number or f"4960{seq:020d}", NOW)


def status_reading(device: str, seq: int) -> AcceptedReading:
    r = Reading(
        device_id=device,
        facility="fac1",
        line="l01",
        sensor_type=SensorType.EQUIPMENT_STATUS,
        unit="state",
        ts=NOW - timedelta(seconds=5),
        seq=seq,
        schema_version=1,
        status=EquipmentStatus.FAULT,
    )
    return AcceptedReading(r, "shard-0", f"5000{seq:020d}", NOW)


def anomaly(device: str, seq: int, kind: AnomalyType = AnomalyType.SPIKE) -> Anomaly:
    return Anomaly(
        device_id=device,
        seq=seq,
        ts=NOW - timedelta(seconds=10_000 - seq),
        anomaly_type=kind,
        severity=Severity.WARNING,
        score=4.2,
        explanation=f"{kind} on {device}#{seq}",
        sensor_type="temperature",
        value=99.0,
    )


def dead_letter(sequence_number: str, data: bytes, shard: str = "shard-0") -> DeadLetter:
    return DeadLetter(
        shard_id=shard,
        sequence_number=sequence_number,
        partition_key="dev-x",
        data=data,
        reason=RejectReason.NOT_JSON,
        detail="expected JSON at byte 0",
        arrival=NOW,
    )


def batch_of(
    readings: list[AcceptedReading],
    *,
    shard: str = "shard-0",
    anomalies: list[Anomaly] | None = None,
    dead_letters: list[DeadLetter] | None = None,
    checkpoint: str | None = None,
    shard_end: bool = False,
) -> ProcessedBatch:
    last = checkpoint or (readings[-1].sequence_number if readings else None)
    return ProcessedBatch(
        shard_id=shard,
        readings=readings,
        anomalies=anomalies or [],
        dead_letters=dead_letters or [],
        checkpoint=last,
        shard_end=shard_end,
    )


def acquire(
    store: PostgresStore, shard: str = "shard-0", owner: str = "w1", duration: float = 30
) -> LeaseToken:
    token = store.try_acquire(shard, owner, duration)
    assert token is not None
    return token


def count(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(table_identifier(table))
    ).fetchone()
    assert row is not None
    return int(row[0])


# --- names and migrations -------------------------------------------------------------


def test_the_contract_names_every_table_the_migrations_create(
    store: PostgresStore, admin: psycopg.Connection[Any]
) -> None:
    """processor.contract.storage against the migrated schema (not against a literal):
    every table of PG_SCHEMA is in storage.TABLES and every name there exists, the
    default partition hangs off the readings, the partition function is there."""
    schema = storage.PG_SCHEMA
    created = {
        f"{schema}.{name}"
        for (name,) in admin.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
            (schema,),
        )
    }
    assert created == set(storage.TABLES)
    assert storage.MIGRATIONS_TABLE in created
    parent = admin.execute(
        "SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = %s::regclass",
        (storage.READINGS_DEFAULT_PARTITION,),
    ).fetchone()
    assert parent == (storage.READINGS_TABLE,)
    function = admin.execute(
        "SELECT to_regprocedure(%s)", (storage.APP_ROLE_DEFINER_FUNCTIONS[0],)
    ).fetchone()
    assert function is not None and function[0] is not None
    assert storage.APP_ROLE_DEFINER_FUNCTIONS[0].startswith(storage.ENSURE_PARTITIONS_FUNCTION)
    versions = [m.version for m in load_migrations()]
    assert versions == list(range(1, len(versions) + 1)) and len(versions) >= 3


def test_tables_have_exactly_the_copy_columns(
    store: PostgresStore, admin: psycopg.Connection[Any]
) -> None:
    for table, columns in (
        (storage.READINGS_TABLE, storage.READINGS_COPY_COLUMNS),
        (storage.ANOMALIES_TABLE, storage.ANOMALIES_COPY_COLUMNS),
        (storage.DEAD_LETTERS_TABLE, storage.DEAD_LETTERS_COPY_COLUMNS),
    ):
        schema, name = storage.split_qualified(table)
        actual = [
            r[0]
            for r in admin.execute(
                "SELECT column_name FROM information_schema.columns"
                # generated columns (tap.anomalies.event_day, 0007) are never written
                " WHERE table_schema = %s AND table_name = %s AND is_generated = 'NEVER'"
                " ORDER BY ordinal_position",
                (schema, name),
            )
        ]
        assert actual == list(columns), table


def test_migrate_is_idempotent_and_recorded(
    make_store: StoreFactory, admin: psycopg.Connection[Any]
) -> None:
    store = make_store()
    shipped = [m.version for m in load_migrations()]
    assert store.migrate() == shipped
    assert store.migrate() == []
    assert store.applied_migrations() == shipped
    rows = admin.execute(
        sql.SQL("SELECT version, name, checksum FROM {} ORDER BY version").format(
            table_identifier(storage.MIGRATIONS_TABLE)
        )
    ).fetchall()
    assert [(v, n) for v, n, _ in rows] == [(m.version, m.name) for m in load_migrations()]
    assert [c for _, _, c in rows] == [m.checksum for m in load_migrations()]


def test_migrate_concurrently_from_threads(
    make_store: StoreFactory, admin: psycopg.Connection[Any]
) -> None:
    stores = [make_store() for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run(s: PostgresStore) -> None:
        try:
            barrier.wait()
            results.append(s.migrate())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    # Exactly one of them applied everything; the others found nothing to do.
    shipped = [m.version for m in load_migrations()]
    assert sorted(results) == [[], [], [], shipped]
    assert count(admin, storage.MIGRATIONS_TABLE) == len(shipped)


def test_migrate_concurrently_from_processes(
    fresh_database: FreshDatabase,
    db_secret_arn: str,
    aws_env: dict[str, str],
    admin: psycopg.Connection[Any],
) -> None:
    server = fresh_database.server
    script = (
        "import sys\n"
        "from processor.postgres import DbTarget, PgConnector, PostgresStore\n"
        "from processor.secrets import SecretsProvider\n"
        "t = DbTarget(host=sys.argv[1], port=int(sys.argv[2]), dbname=sys.argv[3],"
        " secret_arn=sys.argv[4], sslmode=sys.argv[5], sslrootcert=sys.argv[6] or None)\n"
        "s = PostgresStore(PgConnector(t, SecretsProvider(sys.argv[7])))\n"
        "print(s.migrate())\n"
    )
    args = [
        server.host,
        str(server.port),
        fresh_database.name,
        db_secret_arn,
        server.sslmode,
        str(server.ca_path or ""),
        aws_env["AWS_REGION"],
    ]
    env = {**os.environ, **aws_env}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=Path(__file__).resolve().parents[2],
        )
        for _ in range(3)
    ]
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outputs.append(out.strip())
    shipped = [m.version for m in load_migrations()]
    assert sorted(outputs) == sorted([str(shipped), "[]", "[]"])
    assert count(admin, storage.MIGRATIONS_TABLE) == len(shipped)


def test_changed_migration_is_refused(store: PostgresStore, admin: psycopg.Connection[Any]) -> None:
    admin.execute(
        sql.SQL("UPDATE {} SET checksum = 'edited' WHERE version = 2").format(
            table_identifier(storage.MIGRATIONS_TABLE)
        )
    )
    with pytest.raises(MigrationError, match="0002_append_only changed after it was applied"):
        store.migrate()


# --- partitions -----------------------------------------------------------------------


def _partition_of(conn: psycopg.Connection[Any], device: str, seq: int) -> str:
    row = conn.execute(
        "SELECT tableoid::regclass::text FROM tap.readings WHERE device_id = %s AND seq = %s",
        (device, seq),
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_partitions_are_created_ahead_and_default_catches_the_rest(
    make_store: StoreFactory, admin: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store()
    store.migrate()
    day = datetime(2026, 11, 26, 23, 59, tzinfo=UTC)
    assert store.ensure_partitions(day, days_back=2, days_ahead=3) == 6
    # Idempotent, and an overlapping window creates only the new days.
    assert store.ensure_partitions(day, days_back=2, days_ahead=3) == 0
    assert store.ensure_partitions(day + timedelta(days=1), days_back=2, days_ahead=3) == 1
    names = store.run_query(partitions.reading_partitions)
    assert names == [
        "readings_default",
        "readings_p20261124",
        "readings_p20261125",
        "readings_p20261126",
        "readings_p20261127",
        "readings_p20261128",
        "readings_p20261129",
        "readings_p20261130",
    ]
    # Bounds are UTC days whatever the session time zone.
    admin.execute("SET TimeZone = 'America/New_York'")
    bound = admin.execute(
        "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c"
        " WHERE c.relname = 'readings_p20261126'"
    ).fetchone()
    assert bound is not None
    assert "2026-11-25 19:00:00-05" in bound[0] and "2026-11-26 19:00:00-05" in bound[0]

    token = acquire(store)
    store.commit_batch(
        batch_of(
            [
                reading("d1", 1, ts=datetime(2026, 11, 26, 0, 0, tzinfo=UTC)),
                reading("d1", 2, ts=datetime(2026, 11, 26, 23, 59, 59, 999999, tzinfo=UTC)),
                reading("d1", 3, ts=datetime(2026, 11, 27, 0, 0, tzinfo=UTC)),
                # Far outside every partition: still stored, in the default partition.
                reading("d1", 4, ts=datetime(2031, 1, 1, tzinfo=UTC)),
            ]
        ),
        token,
    )
    assert _partition_of(admin, "d1", 1) == "tap.readings_p20261126"
    assert _partition_of(admin, "d1", 2) == "tap.readings_p20261126"
    assert _partition_of(admin, "d1", 3) == "tap.readings_p20261127"
    assert _partition_of(admin, "d1", 4) == "tap.readings_default"

    # A day whose rows already sit in the default partition is skipped (moving them
    # would delete from an append-only table), without failing the other days.
    with caplog.at_level(logging.WARNING, logger="processor.postgres.connection"):
        created = store.ensure_partitions(
            datetime(2031, 1, 1, tzinfo=UTC), days_back=1, days_ahead=1
        )
    assert "tap.readings_default holds rows of 2031-01-01" in caplog.text
    assert created == 2
    names = store.run_query(partitions.reading_partitions)
    assert "readings_p20301231" in names and "readings_p20310102" in names
    assert "readings_p20310101" not in names
    assert store.run_query(partitions.rows_in_default_partition) == 1


def test_default_window_covers_what_validation_accepts(store: PostgresStore) -> None:
    """Validation accepts event times from 7 days before arrival to a few minutes
    after; the default window (8 back, 7 ahead) gives each of them a daily partition."""
    names = store.run_query(partitions.reading_partitions)
    today = store.db_now().astimezone(UTC).date()
    for offset in range(-8, 8):
        day = today + timedelta(days=offset)
        assert f"readings_p{day:%Y%m%d}" in names


# --- commit_batch: exactly once -------------------------------------------------------


def test_commit_batch_twice_stores_once(
    store: PostgresStore, admin: psycopg.Connection[Any]
) -> None:
    token = acquire(store)
    readings = [reading(f"d{i % 5}", i) for i in range(500)]
    batch = batch_of(
        readings,
        anomalies=[anomaly("d1", 1), anomaly("d1", 1, AnomalyType.LIMIT)],
        dead_letters=[dead_letter("49609999", b"{oops")],
    )
    first = store.commit_batch(batch, token, NOW)
    assert (first.inserted, first.duplicates, first.anomalies, first.dead_letters) == (500, 0, 2, 1)
    assert first.devices == ("d0", "d1", "d2", "d3", "d4")
    assert first.inserted_keys == {(f"d{i % 5}", i) for i in range(500)}

    again = store.commit_batch(batch, token, NOW + timedelta(seconds=1))
    assert (again.inserted, again.duplicates, again.anomalies, again.dead_letters) == (0, 500, 0, 0)
    assert again.devices == ()

    assert count(admin, "tap.readings") == 500
    assert count(admin, "tap.reading_keys") == 500
    assert count(admin, "tap.anomalies") == 2
    assert count(admin, "tap.dead_letters") == 1
    assert store.stored_keys() == {(f"d{i % 5}", i) for i in range(500)}
    assert store.run_query(reads.duplicate_keys) == []
    assert store.checkpoint_of("shard-0") == readings[-1].sequence_number
    # The first commit's processing time stays (nothing is rewritten).
    row = admin.execute("SELECT DISTINCT processed_at FROM tap.readings").fetchall()
    assert row == [(NOW,)]


def test_stored_row_keeps_every_field_and_time(
    store: PostgresStore, admin: psycopg.Connection[Any]
) -> None:
    token = acquire(store)
    r = reading(
        "dev-7", 42, sequence_number="49654321098765432109876543210987654321098765432109876543"
    )
    s = status_reading("dev-8", 3)
    store.commit_batch(batch_of([r, s]), token, NOW + timedelta(seconds=2))
    row = admin.execute(
        "SELECT device_id, seq, facility, line, sensor_type, value, status, unit, event_ts,"
        " arrival_ts, processed_at, shard_id, sequence_number, schema_version"
        " FROM tap.readings WHERE device_id = 'dev-7'"
    ).fetchone()
    assert row == (
        "dev-7",
        42,
        "fac1",
        "l01",
        "temperature",
        r.reading.value,
        None,
        "C",
        r.reading.ts,
        NOW,
        NOW + timedelta(seconds=2),
        "shard-0",
        r.sequence_number,
        1,
    )
    assert admin.execute(
        "SELECT status, value FROM tap.readings WHERE device_id = 'dev-8'"
    ).fetchone() == (
        "FAULT",
        None,
    )


def test_producer_duplicates_become_one_row(
    store: PostgresStore, admin: psycopg.Connection[Any]
) -> None:
    """PutRecords retries re-send a reading: same (device, seq), new Kinesis sequence
    number, possibly in the same batch, possibly later. The key is day-scoped (issue 10
    item 10): the same (device, seq) with an event time on another day is a reading of
    its own (a restarted sequence), not a duplicate."""
    token = acquire(store)
    first = store.commit_batch(
        batch_of(
            [
                reading("d1", 1, sequence_number="300"),
                reading("d1", 2, sequence_number="301"),
                reading("d1", 1, sequence_number="302"),  # retry within the batch
                reading("d1", 1, sequence_number="1000"),
            ]
        ),
        token,
    )
    assert (first.inserted, first.duplicates) == (2, 2)
    second = store.commit_batch(
        batch_of(
            [
                reading("d1", 2, sequence_number="400"),  # retry in a later batch
                # Same (device, seq) with an event time on another day: another key.
                reading("d1", 1, sequence_number="401", ts=NOW - timedelta(days=3)),
                reading("d1", 3, sequence_number="402"),
            ]
        ),
        token,
    )
    assert (second.inserted, second.duplicates) == (2, 1)
    assert second.inserted_keys == {("d1", 1), ("d1", 3)}
    assert second.seq_conflicts == 0
    assert store.stored_keys() == {("d1", 1), ("d1", 2), ("d1", 3)}
    assert store.run_query(reads.duplicate_keys) == []
    # Within a batch, the copy with the lowest Kinesis sequence number is kept (numeric
    # order: "1000" > "302" although it sorts first as text).
    # ("401" is the other day's reading of seq 1.)
    kept = admin.execute(
        "SELECT sequence_number FROM tap.readings WHERE device_id='d1' AND seq=1"
        " ORDER BY sequence_number"
    ).fetchall()
    assert kept == [("300",), ("401",)]


def test_concurrent_commits_of_the_same_keys_store_each_once(make_store: StoreFactory) -> None:
    """Two workers (two shards, after a reshard for instance) commit overlapping keys
    at the same time: every key is stored exactly once and counted once."""
    setup = make_store()
    setup.migrate()
    setup.ensure_partitions()
    stores = [make_store() for _ in range(4)]
    tokens = [acquire(setup, f"shard-{i}", f"w{i}") for i in range(4)]
    barrier = threading.Barrier(4)
    results: list[int] = []
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            rows = [
                reading(f"d{k % 7}", k, shard=f"shard-{i}") for k in range(i * 100, i * 100 + 300)
            ]
            barrier.wait()
            results.append(
                stores[i].commit_batch(batch_of(rows, shard=f"shard-{i}"), tokens[i]).inserted
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sum(results) == 600  # keys 0..599
    assert setup.count_readings() == 600
    assert setup.run_query(reads.duplicate_keys) == []


def test_anomalies_only_for_newly_stored_readings(
    store: PostgresStore, admin: psycopg.Connection[Any]
) -> None:
    token = acquire(store)
    store.commit_batch(batch_of([reading("d1", 1)], anomalies=[anomaly("d1", 1)]), token)
    # A replay whose detectors (fresh state after a takeover) see something else for
    # the same, already stored reading: the first verdict stands.
    replay = store.commit_batch(
        batch_of(
            [reading("d1", 1), reading("d1", 2)],
            anomalies=[
                anomaly("d1", 1, AnomalyType.STATISTICAL),
                anomaly("d1", 2, AnomalyType.LIMIT),
                # A silent-device anomaly belongs to no reading of the batch: kept.
                anomaly("d9", 77, AnomalyType.SILENT),
            ],
        ),
        token,
    )
    assert replay.anomalies == 2
    stored = {(a.device_id, a.seq, a.anomaly_type) for a in store.run_query(reads.anomalies)}
    assert stored == {("d1", 1, "spike"), ("d1", 2, "limit"), ("d9", 77, "silent")}
    row = admin.execute(
        "SELECT severity, score, explanation, sensor_type, value FROM tap.anomalies"
        " WHERE anomaly_type = 'limit'"
    ).fetchone()
    assert row == ("warning", 4.2, "limit on d1#2", "temperature", 99.0)
    # Silent anomalies are idempotent too.
    again = store.commit_batch(
        batch_of([], anomalies=[anomaly("d9", 77, AnomalyType.SILENT)], checkpoint="9"), token
    )
    assert again.anomalies == 0


def test_a_verdict_one_batch_after_its_reading_is_stored_and_returned_for_redis(
    store: PostgresStore,
) -> None:
    """The shape tests judge a reading when the next ones arrive (an isolated outlier
    is a SPIKE once the level is back; a step is a DRIFT once it stays), so the
    anomaly of reading 1 rides in the batch of reading 2. It was dropped by
    PostgreSQL (only anomalies of readings stored *by this batch* were kept) while
    Redis's stream showed it: the board had anomalies the compliance store lacked
    (tap load's mixed campaign: 67 in the stream, 65 in tap.anomalies)."""
    token = acquire(store)
    store.commit_batch(batch_of([reading("d1", 1)]), token)
    later = store.commit_batch(
        batch_of([reading("d1", 2)], anomalies=[anomaly("d1", 1), anomaly("d1", 2)]), token
    )
    stored = {(a.device_id, a.seq, a.anomaly_type) for a in store.run_query(reads.anomalies)}
    assert stored == {("d1", 1, "spike"), ("d1", 2, "spike")}
    assert later.anomalies == 2
    assert {(d, seq, kind) for d, _, seq, kind, _ in later.stored_anomalies} == {
        ("d1", 1, "spike"),
        ("d1", 2, "spike"),
    }
    # A verdict about a reading PostgreSQL never stored is not kept.
    orphan = store.commit_batch(batch_of([reading("d1", 3)], anomalies=[anomaly("d1", 7)]), token)
    assert orphan.anomalies == 0 and orphan.stored_anomalies == frozenset()


def test_dead_letters_keep_the_full_payload_and_replay_once(store: PostgresStore) -> None:
    token = acquire(store)
    payloads = {
        "100": b"\xff\xfe not utf-8 \x00 with NUL",
        "101": b'{"device_id": "d1", "seq": NaN}',
        "102": bytes(range(256)) * 16,
    }
    letters = [dead_letter(sn, data) for sn, data in payloads.items()]
    letters.append(
        DeadLetter(
            "shard-0", "103", "pk\x00nul", b"x", RejectReason.OVERSIZED, "detail\x00nul", NOW
        )
    )
    result = store.commit_batch(
        batch_of([reading("d1", 1)], dead_letters=letters, checkpoint="103"), token
    )
    assert result.dead_letters == 4
    again = store.commit_batch(batch_of([], dead_letters=letters, checkpoint="103"), token)
    assert again.dead_letters == 0
    stored = {d.sequence_number: d for d in store.run_query(reads.dead_letters)}
    assert set(stored) == {"100", "101", "102", "103"}
    for sn, data in payloads.items():
        assert stored[sn].payload == data
        assert stored[sn].reason == "not_json"
        assert stored[sn].detail == "expected JSON at byte 0"
        assert stored[sn].shard_id == "shard-0"
        assert stored[sn].arrival_ts == NOW
    # Text columns cannot hold NUL: escaped rather than failing the batch.
    assert stored["103"].partition_key == "pk\\x00nul"
    assert stored["103"].detail == "detail\\x00nul"
    assert stored["103"].reason == "oversized"
    assert store.count_dead_letters() == 4
    assert store.count_dead_letters("oversized") == 1
    assert store.checkpoint_of("shard-0") == "103"


# --- append-only ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE tap.readings SET value = 0",
        "DELETE FROM tap.readings",
        "TRUNCATE tap.readings",
        "UPDATE {partition} SET value = 0",
        "DELETE FROM {partition}",
        "TRUNCATE {partition}",
        "TRUNCATE tap.readings_default",
        "UPDATE tap.reading_keys SET seq = seq + 1",
        "DELETE FROM tap.reading_keys",
        "TRUNCATE tap.reading_keys",
        "UPDATE tap.anomalies SET score = 0",
        "DELETE FROM tap.anomalies",
        "TRUNCATE tap.anomalies",
        "UPDATE tap.dead_letters SET reason = 'x'",
        "DELETE FROM tap.dead_letters",
        "TRUNCATE tap.dead_letters",
    ],
)
def test_compliance_tables_are_append_only(
    store: PostgresStore, fresh_database: FreshDatabase, statement: str
) -> None:
    token = acquire(store)
    store.commit_batch(
        batch_of(
            [reading("d1", 1)], anomalies=[anomaly("d1", 1)], dead_letters=[dead_letter("7", b"x")]
        ),
        token,
    )
    # The daily partition that holds reading("d1", 1).
    statement = statement.format(partition=f"tap.readings_p{reading('d1', 1).reading.ts:%Y%m%d}")
    # As the table owner (the processor's own role): the trigger binds it too.
    with (
        psycopg.connect(fresh_database.dsn(), autocommit=True) as conn,
        pytest.raises(
            psycopg.errors.InsufficientPrivilege, match=r"is append-only \(compliance record\)"
        ),
    ):
        conn.execute(statement)
    assert store.count_readings() == 1
    assert store.count_dead_letters() == 1
    assert len(store.run_query(reads.anomalies)) == 1


def test_every_daily_partition_rejects_truncate(
    store: PostgresStore, admin: psycopg.Connection[Any]
) -> None:
    missing = admin.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'tap.readings'::regclass AND NOT EXISTS ("
        "  SELECT 1 FROM pg_trigger t"
        "  WHERE t.tgrelid = c.oid AND t.tgname = 'readings_no_truncate')"
    ).fetchall()
    assert missing == []


# --- leases and fencing ---------------------------------------------------------------


def test_stale_owner_commit_is_rejected_and_invisible(
    make_store: StoreFactory, admin: psycopg.Connection[Any]
) -> None:
    """Worker 1 pauses past its lease (GC, network), worker 2 takes the shard over;
    worker 1 wakes up and commits its batch: LeaseLost, and nothing of it is stored."""
    w1, w2 = make_store(), make_store()
    w1.migrate()
    w1.ensure_partitions()
    w1.sync_shards([("shard-0", [], None)])
    t1 = w1.try_acquire("shard-0", "w1", 30)
    assert t1 is not None
    w1.commit_batch(batch_of([reading("d1", 1, sequence_number="10")]), t1)

    assert w2.try_acquire("shard-0", "w2", 30) is None  # still held
    # w1 "paused" past its lease. Expired on the database clock by hand rather than by
    # a short lease and a sleep: with a 2 s lease, w2's first connection on a loaded
    # CI machine took longer than the lease, and the "still held" check failed.
    admin.execute(
        "UPDATE tap.shard_leases SET expires_at = now() - interval '1 second'"
        " WHERE shard_id = 'shard-0'"
    )
    admin.commit()
    t2 = w2.try_acquire("shard-0", "w2", 30)
    assert t2 is not None and t2.fencing == t1.fencing + 1

    stale = batch_of(
        [reading("d1", 2, sequence_number="20"), reading("d2", 1, sequence_number="21")],
        anomalies=[anomaly("d1", 2)],
        dead_letters=[dead_letter("22", b"junk")],
        checkpoint="22",
    )
    with pytest.raises(LeaseLost) as info:
        w1.commit_batch(stale, t1)
    assert info.value.lease == t1
    assert w1.stored_keys() == {("d1", 1)}
    assert count(admin, "tap.reading_keys") == 1
    assert count(admin, "tap.anomalies") == 0
    assert count(admin, "tap.dead_letters") == 0
    assert w1.checkpoint_of("shard-0") == "10"
    # The new owner commits the same records from the checkpoint: stored once.
    result = w2.commit_batch(stale, t2)
    assert (result.inserted, result.anomalies, result.dead_letters) == (2, 1, 1)
    assert w2.checkpoint_of("shard-0") == "22"
    # The old owner's renewal reports the loss too.
    assert w1.renew([t1], 30) == ([], [t1])


def test_steal_by_compare_and_set_fences_the_live_owner(store: PostgresStore) -> None:
    t1 = acquire(store, owner="w1")
    with pytest.raises(ValueError, match="expected_fencing"):
        store.try_acquire("shard-0", "w2", 30, steal=True)
    # A stale view of the fencing counter loses the compare-and-set.
    assert store.try_acquire("shard-0", "w2", 30, t1.fencing - 1, steal=True) is None
    t2 = store.try_acquire("shard-0", "w2", 30, t1.fencing, steal=True)
    assert t2 == LeaseToken("shard-0", "w2", t1.fencing + 1)
    with pytest.raises(LeaseLost):
        store.commit_batch(batch_of([reading("d1", 1)]), t1)
    assert store.count_readings() == 0


def test_an_expired_lease_cannot_commit_even_if_nobody_took_it(store: PostgresStore) -> None:
    token = store.try_acquire("shard-0", "w1", 0.3)
    assert token is not None
    time.sleep(0.5)
    with pytest.raises(LeaseLost):
        store.commit_batch(batch_of([reading("d1", 1)]), token)
    assert store.count_readings() == 0
    # ...and it is free for anyone, including its former owner (new fencing).
    again = store.try_acquire("shard-0", "w1", 30)
    assert again is not None and again.fencing == token.fencing + 1


def test_release_hands_over_at_once(store: PostgresStore) -> None:
    t1 = acquire(store, owner="w1")
    store.commit_batch(batch_of([reading("d1", 1, sequence_number="55")]), t1)
    assert store.try_acquire("shard-0", "w2", 30) is None
    assert store.release(t1) is True
    assert store.release(t1) is False  # no longer ours
    started = time.monotonic()
    t2 = store.try_acquire("shard-0", "w2", 30)
    assert t2 is not None and time.monotonic() - started < 1.0
    assert t2.fencing == t1.fencing + 1
    assert store.checkpoint_of("shard-0") == "55"  # the checkpoint survives handover
    row = {r.shard_id: r for r in store.list_leases()}["shard-0"]
    assert (row.owner, row.fencing, row.held) == ("w2", t2.fencing, True)


def test_only_one_of_many_concurrent_acquirers_wins(make_store: StoreFactory) -> None:
    setup = make_store()
    setup.migrate()
    setup.sync_shards([("shard-0", [], None)])
    stores = [make_store() for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    won: list[LeaseToken] = []

    def run(i: int) -> None:
        barrier.wait()
        token = stores[i].try_acquire("shard-0", f"w{i}", 30, expected_fencing=0)
        if token is not None:
            won.append(token)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1 and won[0].fencing == 1


def test_renew_reports_renewed_and_lost_in_one_call(store: PostgresStore) -> None:
    store.sync_shards([(f"shard-{i}", [], None) for i in range(3)])
    a = acquire(store, "shard-0", "w1", 30)
    b = acquire(store, "shard-1", "w1", 30)
    c = acquire(store, "shard-2", "w1", 30)
    before = {r.shard_id: r.expires_at for r in store.list_leases()}
    assert store.release(b)
    stolen = store.try_acquire("shard-2", "w2", 30, c.fencing, steal=True)
    assert stolen is not None
    renewed, lost = store.renew([a, b, c], 60)
    assert renewed == [a] and lost == [b, c]
    after = {r.shard_id: r for r in store.list_leases()}
    assert after["shard-0"].expires_at is not None and before["shard-0"] is not None
    assert after["shard-0"].expires_at - before["shard-0"] > timedelta(seconds=25)
    assert after["shard-2"].owner == "w2"
    assert store.renew([], 10) == ([], [])


def test_sync_shards_and_finished_shards(store: PostgresStore) -> None:
    assert store.sync_shards([("p0", [], None), ("p1", [], None)]) == 2
    assert store.sync_shards([("p0", [], None), ("c0", ["p0", "p1"], "p1")]) == 1
    rows = {r.shard_id: r for r in store.list_leases()}
    assert rows["c0"].parent_shard_ids == ("p0", "p1")
    assert rows["c0"].adjacent_parent == "p1"
    assert rows["c0"].owner is None and rows["c0"].fencing == 0 and not rows["c0"].held
    # Shard end: the parent's last batch marks it finished; nobody acquires it again.
    token = acquire(store, "p0")
    store.commit_batch(batch_of([reading("d1", 1, shard="p0")], shard="p0", shard_end=True), token)
    rows = {r.shard_id: r for r in store.list_leases()}
    assert rows["p0"].finished and rows["p0"].checkpoint == reading("d1", 1).sequence_number
    assert store.release(token)
    assert store.try_acquire("p0", "w2", 30) is None
    # Re-syncing does not touch ownership, checkpoints or fencing.
    store.sync_shards([("p0", [], None)])
    assert {r.shard_id: r for r in store.list_leases()}["p0"].finished


def test_heartbeats_and_live_workers(store: PostgresStore) -> None:
    store.heartbeat("w1")
    store.heartbeat("w2")
    assert store.live_workers(5) == ["w1", "w2"]
    time.sleep(1.5)
    store.heartbeat("w2")
    assert store.live_workers(1.0) == ["w2"]
    store.remove_worker("w2")
    assert store.live_workers(5) == ["w1"]


# --- reads ----------------------------------------------------------------------------


def test_latest_per_device_by_event_time_then_seq(store: PostgresStore) -> None:
    token = acquire(store)
    t0 = NOW - timedelta(hours=1)
    store.commit_batch(
        batch_of(
            [
                reading("a", 1, ts=t0),
                reading("a", 2, ts=t0 + timedelta(seconds=5)),
                reading("a", 3, ts=t0 + timedelta(seconds=2)),  # late arrival: older ts
                reading("b", 10, ts=t0),
                reading("b", 11, ts=t0),  # same ts: higher seq wins
                reading("c", 1, ts=NOW - timedelta(days=3)),  # other partition
            ]
        ),
        token,
    )
    latest = store.latest_per_device()
    assert {d: (r.reading.seq, r.reading.ts) for d, r in latest.items()} == {
        "a": (2, t0 + timedelta(seconds=5)),
        "b": (11, t0),
        "c": (1, NOW - timedelta(days=3)),
    }
    a = latest["a"]
    assert a.reading == reading("a", 2, ts=t0 + timedelta(seconds=5)).reading
    assert (a.shard_id, a.arrival) == ("shard-0", NOW)


def test_latest_per_device_uses_the_index(
    store: PostgresStore, admin: psycopg.Connection[Any]
) -> None:
    token = acquire(store)
    store.commit_batch(batch_of([reading(f"d{i % 20}", i) for i in range(2000)]), token)
    admin.execute("ANALYZE tap.reading_keys")
    from processor.postgres.reads import _LATEST_PER_DEVICE

    # The query is composed from the contract's names (psycopg.sql), hence SQL + SQL.
    plan = "\n".join(r[0] for r in admin.execute(sql.SQL("EXPLAIN ") + _LATEST_PER_DEVICE))
    # Partitioned since migration 0005: the partitions' copies of the index are used.
    assert "reading_keys_p" in plan and "Index" in plan, plan
    assert "Seq Scan on reading_keys" not in plan
    assert len(store.latest_per_device()) == 20


# --- rotation and outages -------------------------------------------------------------


def test_password_rotation_reconnects_with_the_refreshed_secret(
    make_store: StoreFactory,
    local_services_lazy: LocalServices,
    restartable_pg_server: PostgresServer,
    db_secret_arn: str,
    admin: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = make_store()
    store.migrate()
    store.ensure_partitions()
    token = acquire(store)
    store.commit_batch(batch_of([reading("d1", i) for i in range(100)]), token)
    old_password = restartable_pg_server.app_password
    fetches_before = store.connector._secrets.fetch_count

    # Rotation as RDS does it: ALTER ROLE, then the secret's new version.
    new_password = local_services_lazy.rotate_db_password(db_secret_arn)
    # Open sessions survive a password change; cut them so the next call must log in.
    store.reset_connections()
    admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE usename = 'tap_app' AND pid <> pg_backend_pid()"
    )
    with caplog.at_level("DEBUG"):
        result = store.commit_batch(batch_of([reading("d1", i) for i in range(50, 150)]), token)
    assert (result.inserted, result.duplicates) == (50, 50)
    assert store.connector.auth_refreshes == 1
    assert store.connector._secrets.fetch_count == fetches_before + 1
    assert store.stored_keys() == {("d1", i) for i in range(150)}
    assert store.run_query(reads.duplicate_keys) == []
    for text in (caplog.text, repr(store), repr(store.connector)):
        assert old_password not in text and new_password not in text


def test_db_rotated_before_the_secret_fails_cleanly_then_recovers(
    make_store: StoreFactory,
    local_services_lazy: LocalServices,
    restartable_pg_server: PostgresServer,
    db_secret_arn: str,
    secrets_client: Any,
) -> None:
    """Between setSecret (ALTER ROLE) and finishSecret the secret still holds the old
    password: the login fails, the store says so without any password, and the worker
    backs off until the secret catches up."""
    import json

    store = make_store()
    store.migrate()
    new_password = restartable_pg_server.set_app_password()
    store.reset_connections()
    with pytest.raises(AuthenticationFailed) as info:
        store.count_readings()
    message = str(info.value) + repr(info.value.__cause__) + repr(info.value.__context__)
    assert new_password not in message
    assert "password authentication failed" in message
    assert isinstance(info.value, StoreUnavailable)

    secret = json.loads(secrets_client.get_secret_value(SecretId=db_secret_arn)["SecretString"])
    old_password = secret["password"]
    assert old_password not in message
    secret["password"] = new_password
    secrets_client.put_secret_value(SecretId=db_secret_arn, SecretString=json.dumps(secret))
    assert (
        with_pg_retry(
            store.count_readings, policy=RetryPolicy(initial_delay_s=0.01, max_attempts=5)
        )
        == 0
    )


def test_postgres_restart_mid_use_then_recovery(
    make_store: StoreFactory, restartable_pg_server: PostgresServer
) -> None:
    store = make_store(connect_timeout_s=2)
    store.migrate()
    store.ensure_partitions()
    token = acquire(store, duration=120)
    store.commit_batch(batch_of([reading("d1", i) for i in range(100)]), token)

    restartable_pg_server.stop()
    try:
        with pytest.raises(StoreUnavailable):
            store.commit_batch(batch_of([reading("d1", i) for i in range(100, 200)]), token)
        assert store.ping() is False
    finally:
        restartable_pg_server.start()

    # The worker's loop: retry the same batch with back-off until it is stored.
    retries: list[int] = []
    result = with_pg_retry(
        lambda: store.commit_batch(batch_of([reading("d1", i) for i in range(100, 200)]), token),
        policy=RetryPolicy(initial_delay_s=0.05, max_delay_s=0.5, max_attempts=50),
        on_retry=lambda attempt, exc, delay: retries.append(attempt),
    )
    assert result.inserted == 100
    assert store.stored_keys() == {("d1", i) for i in range(200)}
    assert store.checkpoint_of("shard-0") == reading("d1", 199).sequence_number


def test_restart_between_idle_calls_is_invisible(
    make_store: StoreFactory, restartable_pg_server: PostgresServer
) -> None:
    """Pooled connections cut by a restart are detected (ping after idle) and replaced,
    so the first call after the server is back succeeds."""
    store = make_store()
    store.migrate()
    assert store.count_readings() == 0
    restartable_pg_server.restart()
    time.sleep(1.1)  # idle past the ping threshold
    assert store.count_readings() == 0


def test_unreachable_server_is_store_unavailable_without_secrets(
    make_store: StoreFactory, restartable_pg_server: PostgresServer
) -> None:
    store = make_store(port=1, connect_timeout_s=2)
    with pytest.raises(StoreUnavailable) as info:
        store.migrate()
    assert restartable_pg_server.app_password not in str(info.value)
    assert info.value.__cause__ is None


def test_with_pg_retry_stops_on_other_errors_and_on_stop() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise StoreUnavailable("down")
        return "ok"

    assert with_pg_retry(flaky, policy=RetryPolicy(initial_delay_s=0.001)) == "ok"
    assert len(calls) == 3

    def lost() -> None:
        raise LeaseLost(LeaseToken("s", "w", 1))

    with pytest.raises(LeaseLost):
        with_pg_retry(lost)

    stop = threading.Event()
    stop.set()
    with pytest.raises(StoreUnavailable):
        with_pg_retry(lambda: (_ for _ in ()).throw(StoreUnavailable("down")), stop=stop)


# --- throughput -----------------------------------------------------------------------


@pytest.mark.slow
def test_commit_throughput(store: PostgresStore) -> None:
    """records/s of commit_batch with 500-reading batches on one process (the figure in
    docs/BENCHMARKS.md). TAP_BENCH_BATCHES sets the number of batches."""
    batches = int(os.environ.get("TAP_BENCH_BATCHES", "20"))
    # Unique names, so a rerun on a shared server (TAP_PG_DSN) measures new rows.
    run = f"{time.time_ns():x}"
    shard = f"shard-bench-{run}"
    token = acquire(store, shard, duration=600)
    devices = 200
    work = [
        batch_of(
            [
                reading(
                    f"dev-{run}-{k % devices:04d}",
                    k,
                    shard=shard,
                    ts=NOW - timedelta(milliseconds=k),
                )
                for k in range(b * 500, (b + 1) * 500)
            ],
            shard=shard,
            anomalies=[anomaly(f"dev-{run}-{(b * 500) % devices:04d}", b * 500)],
        )
        for b in range(batches)
    ]
    before = store.count_readings()
    store.commit_batch(work[0], token)  # warm-up: connection, staging tables
    started = time.perf_counter()
    inserted = sum(store.commit_batch(batch, token).inserted for batch in work[1:])
    elapsed = time.perf_counter() - started
    rate = (batches - 1) * 500 / elapsed
    print(
        f"\ncommit_batch: {batches - 1} batches x 500 readings in {elapsed:.2f} s"
        f" = {rate:,.0f} records/s"
    )
    assert inserted == (batches - 1) * 500
    assert store.count_readings() - before == batches * 500
    assert rate > 1000


# --- issue 10 items 4 and 10: reused sequence numbers, a bounded key table ------------


def _dead_letters(admin: psycopg.Connection[Any]) -> list[tuple[str, str, bytes, str]]:
    return [
        (seqno, reason, bytes(payload), detail)
        for seqno, reason, payload, detail in admin.execute(
            "SELECT sequence_number, reason, payload, detail FROM tap.dead_letters"
            " ORDER BY sequence_number"
        )
    ]


def test_a_reused_seq_with_another_payload_is_a_seq_conflict_dead_letter(
    store: PostgresStore, admin: psycopg.Connection[Any]
) -> None:
    """The same (device, seq) on the same event day: an exact re-send is a duplicate,
    another payload is dead-lettered with reason seq_conflict (its payload, and where
    the stored reading is), never dropped silently; its anomalies are not stored."""
    token = acquire(store)
    original = reading("d1", 5, sequence_number="100", value=20.0)
    store.commit_batch(batch_of([original]), token)
    resend = AcceptedReading(original.reading, "shard-0", "200", NOW)
    rebooted = reading(
        "d1", 5, sequence_number="201", value=95.0, ts=original.reading.ts + timedelta(seconds=30)
    )
    limit = Anomaly(
        device_id="d1",
        seq=5,
        ts=rebooted.reading.ts,
        anomaly_type=AnomalyType.LIMIT,
        severity=Severity.WARNING,
        score=1.0,
        explanation="rebooted device over the limit",
        sensor_type="temperature",
        value=95.0,
    )
    batch = batch_of([resend, rebooted], anomalies=[limit])
    result = store.commit_batch(batch, token)
    assert (result.inserted, result.duplicates, result.seq_conflicts) == (0, 2, 1)
    assert result.dead_letters == 1
    (dead,) = _dead_letters(admin)
    seqno, reason, payload, detail = dead
    assert (seqno, reason) == ("201", "seq_conflict")
    assert decode_reading(payload, arrival=NOW) == rebooted.reading
    assert "sequence number 100" in detail and "value 20.0" in detail
    assert count(admin, "tap.anomalies") == 0
    assert count(admin, "tap.readings") == 1
    # Committing the same batch again (a replay) adds nothing.
    again = store.commit_batch(batch, token)
    assert (again.inserted, again.dead_letters) == (0, 0)
    assert len(_dead_letters(admin)) == 1


def test_a_reboot_mid_stream_with_a_boot_counter_is_a_new_series(
    store: PostgresStore, admin: psycopg.Connection[Any]
) -> None:
    """A schema version 2 device restarts: seq 0, 1, 2 again with boot 1, the same day.
    Every reading is stored; none is a duplicate or a conflict."""
    token = acquire(store)
    before = [reading("d1", seq, sequence_number=f"{100 + seq}") for seq in range(5)]
    store.commit_batch(batch_of(before), token)
    after = [
        AcceptedReading(
            msgspec.structs.replace(
                reading("d1", seq).reading,
                schema_version=2,
                boot=1,
                ts=NOW - timedelta(seconds=100 - seq),
            ),
            "shard-0",
            f"{200 + seq}",
            NOW,
        )
        for seq in range(3)
    ]
    result = store.commit_batch(batch_of(after), token)
    assert (result.inserted, result.duplicates, result.seq_conflicts) == (3, 0, 0)
    assert count(admin, "tap.readings") == 8
    assert count(admin, "tap.dead_letters") == 0
    boots = admin.execute(
        "SELECT boot, count(*) FROM tap.readings GROUP BY boot ORDER BY boot"
    ).fetchall()
    assert boots == [(0, 5), (1, 3)]
    latest = store.latest_per_device()["d1"].reading
    assert (latest.boot, latest.seq) == (1, 2)
    assert store.run_query(reads.duplicate_keys) == []


def test_dedupe_keys_live_in_the_readings_daily_partitions(
    store: PostgresStore, admin: psycopg.Connection[Any]
) -> None:
    """Issue 10 item 10: every readings day partition has its key partition (created
    together), so retention that drops a day drops its keys; each partition refuses
    TRUNCATE like the readings'."""
    token = acquire(store)
    store.commit_batch(
        batch_of([reading("d1", i, ts=NOW - timedelta(days=i)) for i in range(3)]), token
    )
    readings_days = {
        name.removeprefix("readings_p")
        for (name,) in admin.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'tap.readings'::regclass AND c.relname LIKE 'readings_p%'"
        )
    }
    key_days = {
        name.removeprefix("reading_keys_p")
        for (name,) in admin.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'tap.reading_keys'::regclass"
            " AND c.relname LIKE 'reading_keys_p%'"
        )
    }
    assert readings_days and key_days == readings_days
    assert count(admin, "tap.reading_keys_default") == 0
    for day in sorted(key_days)[:2]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            admin.execute(f"TRUNCATE tap.reading_keys_p{day}")
        admin.rollback()


def test_migration_0005_moves_existing_keys(
    make_store: StoreFactory, admin: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database migrated before 0005, with readings and keys: 0005 moves the keys to
    the partitioned table (boot 0, their event day), and they still de-duplicate."""
    from processor.postgres import migrations as postgres_migrations

    migrations = load_migrations()
    dedupe = next(m.version for m in migrations if m.name == "dedupe_window")
    old = make_store()
    with monkeypatch.context() as patch:  # only the migrations before 0005
        patch.setattr(
            postgres_migrations,
            "load_migrations",
            lambda: [m for m in migrations if m.version < dedupe],
        )
        old.migrate()
    old.ensure_partitions()
    rows = [reading("d1", seq, ts=NOW - timedelta(days=seq)) for seq in range(3)]
    for accepted in rows:
        r = accepted.reading
        admin.execute(
            "INSERT INTO tap.reading_keys (device_id, seq, event_ts) VALUES (%s, %s, %s)",
            (r.device_id, r.seq, r.ts),
        )
        admin.execute(
            "INSERT INTO tap.readings (device_id, seq, facility, line, sensor_type, value,"
            " status, unit, event_ts, arrival_ts, processed_at, shard_id, sequence_number,"
            " schema_version) VALUES (%s, %s, %s, %s, %s, %s, NULL, %s, %s, %s, %s, %s, %s, 1)",
            (r.device_id, r.seq, r.facility, r.line, r.sensor_type.value, r.value, r.unit, r.ts,
             NOW, NOW, accepted.shard_id, accepted.sequence_number),
        )  # fmt: skip
    admin.commit()

    store = make_store()
    assert dedupe in store.migrate()
    keys = admin.execute(
        "SELECT device_id, boot, seq, event_day FROM tap.reading_keys ORDER BY seq"
    ).fetchall()
    assert keys == [("d1", 0, a.reading.seq, a.reading.ts.date()) for a in rows]
    assert count(admin, "tap.reading_keys_default") == 0
    store.ensure_partitions()
    token = acquire(store)
    resend = [AcceptedReading(a.reading, "shard-0", f"9{i}", NOW) for i, a in enumerate(rows)]
    result = store.commit_batch(batch_of(resend), token)
    assert (result.inserted, result.duplicates, result.seq_conflicts) == (0, 3, 0)
    assert count(admin, "tap.readings") == 3


def test_anomalies_of_a_reused_seq_after_a_reboot_or_on_a_later_day_are_kept(
    store: PostgresStore, admin: psycopg.Connection[Any]
) -> None:
    """Issue 10 item 4 for anomalies: the same (device, seq, type) after a reboot
    (boot 1) and for a version 1 seq reused on another day belong to readings of their
    own, so they are rows of their own; a replay still adds nothing. The key
    (device_id, seq, anomaly_type) kept only the first (ON CONFLICT DO NOTHING)."""
    token = acquire(store)
    first = reading("d1", 2, sequence_number="100")
    rebooted = AcceptedReading(
        msgspec.structs.replace(
            first.reading, schema_version=2, boot=1, ts=NOW - timedelta(seconds=50)
        ),
        "shard-0",
        "200",
        NOW,
    )
    other_day = reading("d1", 2, sequence_number="300", ts=NOW - timedelta(days=3))

    def spike_of(a: AcceptedReading) -> Anomaly:
        r = a.reading
        return msgspec.structs.replace(anomaly("d1", 2), ts=r.ts, boot=r.series)

    for accepted in (first, rebooted, other_day):
        store.commit_batch(batch_of([accepted], anomalies=[spike_of(accepted)]), token)
    # A replay of all three (no reading inserted): nothing new.
    replay = store.commit_batch(
        batch_of([first, rebooted, other_day], anomalies=[spike_of(first), spike_of(rebooted)]),
        token,
    )
    assert replay.anomalies == 0
    rows = store.run_query(reads.anomalies)
    assert sorted((a.boot, a.seq, a.anomaly_type, a.event_day) for a in rows) == sorted(
        [
            (0, 2, "spike", first.reading.ts.date()),
            (1, 2, "spike", rebooted.reading.ts.date()),
            (0, 2, "spike", other_day.reading.ts.date()),
        ]
    )
    assert count(admin, "tap.anomalies") == 3
