"""The read API's logins cannot write (issue 13, goal "Nothing the API does can
write"): the PostgreSQL role ``tap_api_reader`` (migration ``*_api_reader.sql``) and
the Redis ACL user (:func:`processor.contract.storage.redis_api_reader_access_string`),
on the real servers, with the credentials the API gets from its secrets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
import redis

from e2e.fixtures import FreshDatabase
from e2e.plant_writer import PlantWriter
from local_pipeline.services import LocalServices, RedisServer
from local_pipeline.services.api_reader import api_environment
from processor.contract import storage
from processor.contract.api_environment import ApiSettings
from processor.contract.environment import ProcessorSettings

pytestmark = pytest.mark.integration

PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


class Reader:
    def __init__(self, services: LocalServices, env: dict[str, str], db: FreshDatabase) -> None:
        self.settings = ApiSettings.from_environ(env)
        client = services.secrets_client()
        self.pg_secret = json.loads(
            client.get_secret_value(SecretId=self.settings.db_secret_arn)["SecretString"]
        )
        self.redis_secret = json.loads(
            client.get_secret_value(SecretId=self.settings.redis_secret_arn)["SecretString"]
        )
        self.db = db

    def pg(self) -> psycopg.Connection[Any]:
        dsn = self.db.dsn(self.pg_secret["username"], self.pg_secret["password"])
        return psycopg.connect(dsn, autocommit=True)

    def redis(self, server: RedisServer) -> redis.Redis:
        return server.client(
            username=self.redis_secret["username"], password=self.redis_secret["auth_token"]
        )


@pytest.fixture
def reader(
    local_services: LocalServices,
    fresh_database: FreshDatabase,
    clean_redis: RedisServer,
    db_secret_arn: str,
    redis_secret_arn: str,
    aws_env: dict[str, str],
) -> Iterator[Reader]:
    env = local_services.processor_environment(
        "unused", db_secret_arn, redis_secret_arn, db_name=fresh_database.name
    )
    with PlantWriter(ProcessorSettings.from_environ(env)) as writer:
        reading = PlantWriter.reading("d1", 1, datetime.now(UTC), 20.0)
        writer.write([reading], [PlantWriter.anomaly(reading)])
        writer.cache.save_detector_states({"d1": b"state"})
    yield Reader(
        local_services, api_environment(local_services, fresh_database.name), fresh_database
    )


def test_reader_role_reads_and_is_refused_every_write(reader: Reader) -> None:
    with reader.pg() as conn:
        assert conn.execute("SELECT count(*) FROM tap.readings").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM tap.anomalies").fetchone() == (1,)
        statements = [
            "INSERT INTO tap.dead_letters SELECT * FROM tap.dead_letters",
            "UPDATE tap.readings SET value = 0",
            "DELETE FROM tap.anomalies",
            "TRUNCATE tap.readings",
            "INSERT INTO tap.shard_leases (shard_id) VALUES ('x')",
            "SELECT * FROM tap.shard_leases",
            "SELECT * FROM tap.detector_overrides",
            "CREATE TABLE tap.mine (x int)",
            "ALTER TABLE tap.readings DISABLE TRIGGER ALL",
            "SELECT tap.ensure_partitions(current_date, 1)",
        ]
        for statement in statements:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM tap.readings").fetchone() == (1,)


def test_reader_role_privileges_are_exactly_the_contract(reader: Reader) -> None:
    """Every table of schema tap has a decision in API_READER_TABLE_PRIVILEGES, and the
    grants are exactly it (a new table's default SELECT must be decided too)."""
    with reader.db.admin_connection() as admin:
        tables = [
            f"tap.{name}"
            for (name,) in admin.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'tap' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
                " AND NOT c.relispartition ORDER BY c.relname"
            )
        ]
        assert sorted(storage.API_READER_TABLE_PRIVILEGES) == tables
        for table in tables:
            granted = {
                privilege
                for privilege in PRIVILEGES
                if admin.execute(
                    "SELECT has_table_privilege(%s, %s, %s)",
                    (storage.API_READER_ROLE, table, privilege),
                ).fetchone()
                == (True,)
            }
            assert granted == storage.API_READER_TABLE_PRIVILEGES[table], table
        rolsuper, owns = admin.execute(
            "SELECT r.rolsuper, (SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid)"
            " FROM pg_roles r WHERE r.rolname = %s",
            (storage.API_READER_ROLE,),
        ).fetchone() or (None, None)
        assert (rolsuper, owns) == (False, 0)


def test_reader_redis_user_reads_the_cache_and_is_refused_writes(
    reader: Reader, clean_redis: RedisServer
) -> None:
    client = reader.redis(clean_redis)
    try:
        assert client.ping()
        assert client.hget(storage.redis_latest_key("d1"), "value") == b"20.0"
        assert client.xlen(storage.REDIS_ANOMALY_STREAM) == 1
        assert client.zscore(storage.REDIS_LAST_SEEN, "d1") is not None
        writes = [
            lambda: client.set(storage.redis_latest_key("d1"), "x"),
            lambda: client.hset(storage.redis_latest_key("d1"), "value", "0"),
            lambda: client.delete(storage.redis_latest_key("d1")),
            lambda: client.xadd(storage.REDIS_ANOMALY_STREAM, {"a": "b"}),
            lambda: client.zadd(storage.REDIS_LAST_SEEN, {"d1": 0}),
            lambda: client.expire(storage.redis_latest_key("d1"), 1),
            lambda: client.eval("return redis.call('DEL', KEYS[1])", 1, "tap:latest:d1"),
            lambda: client.flushall(),
            lambda: client.config_set("maxmemory", "1"),
            lambda: client.acl_setuser(storage.REDIS_API_READER_USER, enabled=True),
            # Reads outside the serving cache: detector and silence state are not its.
            lambda: client.get(storage.redis_detector_key("d1")),
            lambda: client.hgetall(storage.redis_silence_key("shardId-000000000000")),
        ]
        for write in writes:
            with pytest.raises(redis.exceptions.NoPermissionError):
                write()
    finally:
        client.close()
    admin = clean_redis.client()
    try:
        assert admin.hget(storage.redis_latest_key("d1"), "value") == b"20.0"
        assert admin.get(storage.redis_detector_key("d1")) == b"state"
    finally:
        admin.close()
