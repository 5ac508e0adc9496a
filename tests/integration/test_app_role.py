"""The processor's application role on a real PostgreSQL (issue 11, item 2).

The processor used to connect as the owner of its tables, who can disable the
append-only triggers. Now migrations run with the owner's secret
(``python -m processor migrate``; locally
:class:`local_pipeline.services.app_role.ApplicationLogins`)
and the processor logs in as :data:`processor.contract.storage.APP_ROLE`. Asserted:
the role cannot change, remove or unprotect a compliance row; it can do everything
the processor does (partitions included); every table has an explicit privilege
decision; the processor waits for the schema instead of migrating; the migrate
command provisions the login from the application secret and refuses the owner's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from e2e.fixtures import FreshDatabase
from local_pipeline.services import LocalServices
from processor.contract import storage
from processor.contract.record import Reading, RejectReason, SensorType
from processor.core.model import (
    AcceptedReading,
    Anomaly,
    AnomalyType,
    DeadLetter,
    ProcessedBatch,
    Severity,
)
from processor.migrate_command import migrate_and_provision
from processor.postgres import (
    DbTarget,
    MigrationError,
    PgConnector,
    PostgresStore,
    SchemaBehind,
    load_migrations,
    reads,
)
from processor.postgres.identifiers import table_identifier
from processor.secrets import SecretsProvider

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
COMPLIANCE_TABLES = (
    storage.READINGS_TABLE,
    storage.READING_KEYS_TABLE,
    storage.ANOMALIES_TABLE,
    storage.DEAD_LETTERS_TABLE,
)


def _reading(device: str, seq: int) -> AcceptedReading:
    r = Reading(
        device_id=device,
        facility="fac1",
        line="l01",
        sensor_type=SensorType.TEMPERATURE,
        unit="C",
        ts=NOW - timedelta(seconds=600 - seq),
        seq=seq,
        schema_version=1,
        value=20.0 + seq,
    )
    return AcceptedReading(r, "shard-0", f"4960{seq:020d}", NOW)


def _batch(seq: int) -> ProcessedBatch:
    accepted = _reading("d1", seq)
    return ProcessedBatch(
        shard_id="shard-0",
        readings=[accepted],
        anomalies=[
            Anomaly(
                device_id="d1",
                seq=seq,
                ts=accepted.reading.ts,
                anomaly_type=AnomalyType.SPIKE,
                severity=Severity.WARNING,
                score=4.2,
                explanation="spike",
                sensor_type="temperature",
                value=99.0,
            )
        ],
        dead_letters=[
            DeadLetter(
                shard_id="shard-0",
                sequence_number=f"5000{seq:020d}",
                partition_key="dev-x",
                data=b"not json",
                reason=RejectReason.NOT_JSON,
                detail="expected JSON at byte 0",
                arrival=NOW,
            )
        ],
        checkpoint=accepted.sequence_number,
        shard_end=False,
    )


class AppDatabase:
    """A fresh database migrated with the owner's secret, and the application secret."""

    def __init__(
        self, services: LocalServices, db: FreshDatabase, owner_arn: str, app_arn: str
    ) -> None:
        self.services, self.db, self.owner_arn, self.app_arn = services, db, owner_arn, app_arn
        self.stores: list[PostgresStore] = []

    def target(self, secret_arn: str) -> DbTarget:
        server = self.db.server
        return DbTarget(
            host=server.host,
            port=server.port,
            dbname=self.db.name,
            secret_arn=secret_arn,
            sslmode=server.sslmode,
            sslrootcert=str(server.ca_path) if server.ca_path else None,
        )

    def store(self) -> PostgresStore:
        """A store that logs in as the processor does: the application secret."""
        store = PostgresStore(PgConnector(self.target(self.app_arn), SecretsProvider("eu-west-2")))
        self.stores.append(store)
        return store

    def app_secret(self) -> dict[str, Any]:
        client = self.services.secrets_client()
        return dict(json.loads(client.get_secret_value(SecretId=self.app_arn)["SecretString"]))

    def app_connection(self) -> psycopg.Connection[Any]:
        secret = self.app_secret()
        return psycopg.connect(self.db.dsn(secret["username"], secret["password"]), autocommit=True)


@pytest.fixture
def app_db(
    local_services_lazy: LocalServices,
    fresh_database: FreshDatabase,
    db_secret_arn: str,
    aws_env: dict[str, str],
) -> Iterator[AppDatabase]:
    app_arn = local_services_lazy.app_logins.prepare(
        db_secret_arn, fresh_database.server, fresh_database.name
    )
    db = AppDatabase(local_services_lazy, fresh_database, db_secret_arn, app_arn)
    yield db
    for store in db.stores:
        store.close()


@pytest.fixture
def stored(app_db: AppDatabase) -> AppDatabase:
    """One reading, one anomaly and one dead letter, committed as the application role."""
    store = app_db.store()
    store.ensure_partitions()
    token = store.try_acquire("shard-0", "w1", 30)
    assert token is not None
    result = store.commit_batch(_batch(1), token)
    assert (result.inserted, result.anomalies, result.dead_letters) == (1, 1, 1)
    return app_db


# --- the append-only rule holds against the role itself --------------------------------


@pytest.mark.parametrize("table", COMPLIANCE_TABLES)
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {table} SET seq = seq",
        "DELETE FROM {table}",
        "TRUNCATE {table}",
        "ALTER TABLE {table} ADD COLUMN note text",
        "ALTER TABLE {table} DISABLE TRIGGER ALL",
        "ALTER TABLE {table} DISABLE TRIGGER USER",
        "DROP TRIGGER {trigger} ON {table}",
        "DROP TABLE {table}",
    ],
)
def test_app_role_cannot_change_remove_or_unprotect_compliance_rows(
    stored: AppDatabase, table: str, statement: str
) -> None:
    name = table.split(".")[1]
    sql_text = statement.format(table=table, trigger=f"{name}_append_only")
    if name == "dead_letters" and "seq" in sql_text:
        sql_text = sql_text.replace("seq = seq", "reason = reason")
    with (
        stored.app_connection() as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(sql_text)
    with stored.db.admin_connection() as admin:
        row = admin.execute(
            sql.SQL("SELECT count(*) FROM {}").format(table_identifier(table))
        ).fetchone()
        assert row == (1,)
        triggers = admin.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND tgenabled = 'O'"
            " AND NOT tgisinternal",
            (table,),
        ).fetchone()
        assert triggers == (2,), "both append-only triggers must still be there and enabled"


def test_app_role_cannot_modify_a_daily_partition_directly(stored: AppDatabase) -> None:
    partition = table_identifier(f"tap.readings_p{_reading('d1', 1).reading.ts:%Y%m%d}")
    for statement in (
        sql.SQL("UPDATE {} SET value = 0").format(partition),
        sql.SQL("DELETE FROM {}").format(partition),
        sql.SQL("TRUNCATE {}").format(partition),
        sql.SQL("ALTER TABLE {} DISABLE TRIGGER ALL").format(partition),
        sql.SQL("ALTER TABLE tap.readings DETACH PARTITION {}").format(partition),
    ):
        with (
            stored.app_connection() as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute(statement)


def test_app_role_cannot_create_objects_or_migrate(stored: AppDatabase) -> None:
    with stored.app_connection() as conn:
        for statement in (
            "CREATE TABLE tap.mine (x int)",
            "CREATE FUNCTION tap.mine() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "INSERT INTO tap.schema_migrations (version, name, checksum) VALUES (99, 'x', 'x')",
            "ALTER FUNCTION tap.ensure_partitions(date, integer) SECURITY INVOKER",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


# --- the role can do everything the processor does ---------------------------------------


def test_app_role_runs_every_store_operation(app_db: AppDatabase) -> None:
    store = app_db.store()
    assert store.require_schema() == [m.version for m in load_migrations()]
    # Partitions far ahead do not exist yet: the SECURITY DEFINER function creates them.
    future = datetime.combine(date.today() + timedelta(days=400), datetime.min.time(), UTC)
    assert store.ensure_partitions(future, days_back=1, days_ahead=1) == 3
    assert store.sync_shards([("shard-0", [], None), ("shard-1", ["shard-0"], None)]) == 2
    token = store.try_acquire("shard-0", "w1", 30)
    assert token is not None
    result = store.commit_batch(_batch(1), token)
    assert (result.inserted, result.anomalies, result.dead_letters) == (1, 1, 1)
    assert store.commit_batch(_batch(1), token).inserted == 0  # replay: nothing new
    renewed, lost = store.renew([token], 30)
    assert (renewed, lost) == ([token], [])
    assert store.checkpoint_of("shard-0") == _reading("d1", 1).sequence_number
    stolen = store.try_acquire("shard-0", "w2", 30, token.fencing, steal=True)
    assert stolen is not None
    assert store.release(stolen)
    store.heartbeat("w1")
    assert store.live_workers(60) == ["w1"]
    store.remove_worker("w1")
    assert store.live_workers(60) == []
    assert set(store.latest_per_device()) == {"d1"}
    assert store.stored_keys() == {("d1", 1)}
    assert store.count_readings() == 1
    assert store.count_dead_letters() == 1
    assert len(store.run_query(reads.anomalies)) == 1
    # The partitions made for the app role belong to the owner, not to the app role.
    with app_db.db.admin_connection() as admin:
        owners = admin.execute(
            "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'tap'"
        ).fetchall()
    assert (storage.APP_ROLE,) not in owners


# --- every table has a privilege decision ------------------------------------------------


def test_every_table_has_an_explicit_privilege_decision(app_db: AppDatabase) -> None:
    """Fails when a migration adds a table to schema tap without recording, in
    processor.contract.storage.APP_ROLE_TABLE_PRIVILEGES, what the application role
    may do with it, or when the grants differ from that decision."""
    with app_db.db.admin_connection() as admin:
        tables = [
            f"{storage.PG_SCHEMA}.{name}"
            for (name,) in admin.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
                " AND NOT c.relispartition ORDER BY c.relname",
                (storage.PG_SCHEMA,),
            )
        ]
        undecided = sorted(set(tables) - set(storage.APP_ROLE_TABLE_PRIVILEGES))
        assert undecided == [], (
            f"tables without a privilege decision for {storage.APP_ROLE}: {undecided}; "
            "add them to APP_ROLE_TABLE_PRIVILEGES and grant exactly that in the migration"
        )
        gone = sorted(set(storage.APP_ROLE_TABLE_PRIVILEGES) - set(tables))
        assert gone == [], f"decisions for tables no migration creates: {gone}"
        for table in tables:
            granted = {
                privilege
                for privilege in PRIVILEGES
                if admin.execute(
                    "SELECT has_table_privilege(%s, %s, %s)", (storage.APP_ROLE, table, privilege)
                ).fetchone()
                == (True,)
            }
            assert granted == storage.APP_ROLE_TABLE_PRIVILEGES[table], table
        # Functions running with the owner's rights that the role may call: only the
        # decided ones, each with a pinned search_path.
        definers = {
            (signature.replace(" ", ""), tuple(config or ()))
            for signature, config in admin.execute(
                "SELECT p.oid::regprocedure::text, p.proconfig"
                " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname = %s AND p.prosecdef"
                " AND has_function_privilege(%s, p.oid, 'EXECUTE')",
                (storage.PG_SCHEMA, storage.APP_ROLE),
            )
        }
    assert {name for name, _ in definers} == {
        f.replace(" ", "") for f in storage.APP_ROLE_DEFINER_FUNCTIONS
    }
    for name, config in definers:
        assert any(c.startswith("search_path=") for c in config), name


def test_compliance_tables_are_decided_insert_and_select_only() -> None:
    for table in COMPLIANCE_TABLES:
        assert storage.APP_ROLE_TABLE_PRIVILEGES[table] == {"SELECT", "INSERT"}, table


# --- the processor waits for the schema; the migrate command provisions -------------------


def test_store_waits_while_the_schema_is_behind(app_db: AppDatabase) -> None:
    store = app_db.store()
    last = load_migrations()[-1]
    with app_db.db.admin_connection() as admin:
        admin.execute("DELETE FROM tap.schema_migrations WHERE version = %s", (last.version,))
    with pytest.raises(SchemaBehind, match=f"{last.version:04d}_{last.name} not applied"):
        store.require_schema()
    with app_db.db.admin_connection() as admin:
        admin.execute(
            "INSERT INTO tap.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
            (last.version, last.name, last.checksum),
        )
    assert store.require_schema()[-1] == last.version


def test_store_on_an_unmigrated_database_is_schema_behind(
    app_db: AppDatabase, pg_server: Any
) -> None:
    # The login exists (cluster-wide) but this database was never migrated.
    if not pg_server.supports_restart:
        pytest.skip("TAP_PG_DSN: no second database can be created")
    name = f"tap_test_unmigrated_{NOW:%H%M%S%f}"
    pg_server.create_database(name)
    try:
        store = PostgresStore(
            PgConnector(
                replace(app_db.target(app_db.app_arn), dbname=name), SecretsProvider("eu-west-2")
            )
        )
        with pytest.raises(SchemaBehind, match="not migrated yet"):
            store.require_schema()
        store.close()
    finally:
        pg_server.drop_database(name)


def test_migrate_generates_the_first_password_and_refuses_the_owner(
    app_db: AppDatabase, secrets_client: Any
) -> None:
    # As the stack creates it: every key but the password (none in Terraform state).
    document = {k: v for k, v in app_db.app_secret().items() if k != "password"}
    arn = secrets_client.create_secret(
        Name=f"tap-test-app-{NOW:%H%M%S%f}", SecretString=json.dumps(document)
    )["ARN"]
    secrets = SecretsProvider("eu-west-2", min_refresh_interval_s=0)
    target = app_db.target(app_db.owner_arn)
    outcome = migrate_and_provision(
        target, secrets, owner_secret_arn=app_db.owner_arn, app_secret_arn=arn
    )
    assert outcome.applied == [] and outcome.password_generated
    written = json.loads(secrets_client.get_secret_value(SecretId=arn)["SecretString"])
    assert written["username"] == document["username"] and len(written["password"]) >= 32
    with psycopg.connect(
        app_db.db.dsn(written["username"], written["password"]), autocommit=True
    ) as conn:
        assert conn.execute("SELECT count(*) FROM tap.readings").fetchone() == (0,)
    # Running it again keeps the password (the secret is the source of truth).
    again = migrate_and_provision(
        target, secrets, owner_secret_arn=app_db.owner_arn, app_secret_arn=arn
    )
    assert not again.password_generated
    with pytest.raises(MigrationError, match="owner"):
        migrate_and_provision(
            target, secrets, owner_secret_arn=app_db.owner_arn, app_secret_arn=app_db.owner_arn
        )
    # Both secrets name the same login: provisioning from the fixture's secret again
    # makes it the valid one (the secret is the source of truth).
    migrate_and_provision(
        target, secrets, owner_secret_arn=app_db.owner_arn, app_secret_arn=app_db.app_arn
    )
    with app_db.app_connection() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_alternating_users_rotation_keeps_the_old_login_working(app_db: AppDatabase) -> None:
    store = app_db.store()
    store.ensure_partitions()
    before = app_db.app_secret()
    login = app_db.services.app_logins.rotate(app_db.app_arn, app_db.db.server)
    after = app_db.app_secret()
    assert login == after["username"] != before["username"]
    # The new login inherits the role's privileges and nothing more.
    with app_db.app_connection() as conn:
        conn.execute("SELECT count(*) FROM tap.readings")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM tap.readings")
    # The previous login still works until the next rotation (no refused login for
    # a processor holding the old secret).
    with psycopg.connect(
        app_db.db.dsn(before["username"], before["password"]), autocommit=True
    ) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    token = store.try_acquire("shard-0", "w1", 30)
    assert token is not None
    store.reset_connections()
    assert store.commit_batch(_batch(1), token).inserted == 1


@pytest.mark.timeout(150)
def test_processor_waits_not_ready_until_the_schema_is_migrated(
    make_cluster: Any, fresh_database: FreshDatabase
) -> None:
    """The worker's start-up no longer migrates: with a migration missing it logs
    the schema behind, is not ready and reads nothing, then starts once it is there."""
    from local_pipeline.verify import wait_until

    cluster = make_cluster(1)
    cluster.env("probe")  # migrates the database with the owner's secret (once)
    last = load_migrations()[-1]
    with fresh_database.admin_connection() as admin:
        admin.execute("DELETE FROM tap.schema_migrations WHERE version = %s", (last.version,))
    w1 = cluster.start("w1")
    assert wait_until(
        lambda: any("schema behind" in str(e.get("error", "")) for e in w1.events()),
        timeout=60,
    ), w1.tail()
    try:
        status = w1.health()[0]
    except OSError:  # the health server may not listen yet: not ready either
        status = None
    assert status != 200
    assert not w1.events("shard_first_fetch")
    with fresh_database.admin_connection() as admin:
        admin.execute(
            "INSERT INTO tap.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
            (last.version, last.name, last.checksum),
        )
    w1.wait_ready(timeout=60)
    assert w1.wait_for_event("shard_first_fetch", timeout=30), w1.tail()
