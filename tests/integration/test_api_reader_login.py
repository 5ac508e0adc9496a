"""The migrate task provisions the read API's PostgreSQL login (issue 13, item 3), on
a real PostgreSQL, with the secrets in the emulated Secrets Manager.

The stack writes the API's secret without a password (none in Terraform state or
plan); ``python -m processor migrate`` with ``TAP_DB_API_SECRET_ARN`` generates one,
makes the secret's login a member of ``tap_api_reader`` able to log in, and writes the
password to the secret. The login reads and cannot write.

The login here is ``tap_api_reader_clone`` (a member of the role, the shape an
alternating-users rotation gives): roles are cluster-wide, and the local stack's own
helper (local_pipeline/services/api_reader.py) keeps ``tap_api_reader``'s password for this
server, which this test must not change under other tests.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest

from e2e.fixtures import FreshDatabase
from local_pipeline.services import LocalServices
from processor.contract.storage import API_READER_ROLE
from processor.migrate_command import CLONE_SUFFIX, migrate_and_provision
from processor.postgres import DbTarget, MigrationError
from processor.secrets import SecretsProvider

pytestmark = pytest.mark.integration


def _target(db: FreshDatabase, secret_arn: str) -> DbTarget:
    server = db.server
    return DbTarget(
        host=server.host,
        port=server.port,
        dbname=db.name,
        secret_arn=secret_arn,
        sslmode=server.sslmode,
        sslrootcert=str(server.ca_path) if server.ca_path else None,
    )


def _secret(secrets_client: Any, username: str) -> str:
    document = {"engine": "postgres", "dbname": "tap", "username": username}
    arn: str = secrets_client.create_secret(
        Name=f"tap-test-api-reader-{uuid.uuid4().hex[:10]}", SecretString=json.dumps(document)
    )["ARN"]
    return arn


def test_migrate_provisions_the_read_api_login_which_reads_and_cannot_write(
    local_services_lazy: LocalServices,
    fresh_database: FreshDatabase,
    db_secret_arn: str,
    secrets_client: Any,
    aws_env: dict[str, str],
) -> None:
    app_arn = local_services_lazy.app_logins.prepare(
        db_secret_arn, fresh_database.server, fresh_database.name
    )
    api_arn = _secret(secrets_client, API_READER_ROLE + CLONE_SUFFIX)
    secrets = SecretsProvider("eu-west-2", min_refresh_interval_s=0)
    target = _target(fresh_database, db_secret_arn)

    outcome = migrate_and_provision(
        target, secrets, owner_secret_arn=db_secret_arn, app_secret_arn=app_arn,
        api_secret_arn=api_arn,
    )  # fmt: skip
    assert outcome.api_login == API_READER_ROLE + CLONE_SUFFIX
    written = json.loads(secrets_client.get_secret_value(SecretId=api_arn)["SecretString"])
    assert written["username"] == outcome.api_login and len(written["password"]) >= 32
    with psycopg.connect(
        fresh_database.dsn(written["username"], written["password"]), autocommit=True
    ) as conn:
        assert conn.execute("SELECT count(*) FROM tap.readings").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM tap.readings")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM tap.shard_leases")

    # Running it again keeps the password (the secret is the source of truth).
    migrate_and_provision(
        target, secrets, owner_secret_arn=db_secret_arn, app_secret_arn=app_arn,
        api_secret_arn=api_arn,
    )  # fmt: skip
    again = json.loads(secrets_client.get_secret_value(SecretId=api_arn)["SecretString"])
    assert again["password"] == written["password"]


def test_migrate_refuses_a_read_api_secret_naming_another_login(
    local_services_lazy: LocalServices,
    fresh_database: FreshDatabase,
    db_secret_arn: str,
    secrets_client: Any,
    aws_env: dict[str, str],
) -> None:
    app_arn = local_services_lazy.app_logins.prepare(
        db_secret_arn, fresh_database.server, fresh_database.name
    )
    api_arn = _secret(secrets_client, "tap_processor")  # the writer's role: refused
    with pytest.raises(MigrationError, match="read API's secret names login 'tap_processor'"):
        migrate_and_provision(
            _target(fresh_database, db_secret_arn),
            SecretsProvider("eu-west-2", min_refresh_interval_s=0),
            owner_secret_arn=db_secret_arn, app_secret_arn=app_arn, api_secret_arn=api_arn,
        )  # fmt: skip
