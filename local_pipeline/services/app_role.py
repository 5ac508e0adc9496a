"""The local stack's side of the application role (issue 11, item 2): migrations with
the owner's secret, processors with the application secret, and the alternating-users
rotation of that secret.

In AWS the migrate task runs ``python -m processor migrate`` with the RDS master
secret before the service starts, and the service reads only the application
secret. Locally :meth:`ApplicationLogins.prepare` does the same, once per database,
from :meth:`local_pipeline.services.local_stack.LocalServices.processor_environment`: every
harness that starts processors (the e2e fixtures, ``tap local``, the e2e verifier's
cluster, the load campaign's pipeline, the benchmarks' clusters) goes through it, so
no caller changes and no local processor ever sees the owner's secret.

The owner locally is the server's ``tap_app`` login (it owns the ``tap`` database
and every test database and has CREATEROLE, as the RDS master user has); the
application login is :data:`processor.contract.storage.APP_ROLE`.
"""

from __future__ import annotations

import json
import secrets as random_source
import threading
from typing import TYPE_CHECKING, Any, Final

from processor.contract.deployment import DEFAULT_REGION
from processor.contract.storage import APP_ROLE
from processor.migrate_command import CLONE_SUFFIX, migrate_and_provision
from processor.postgres import DbTarget
from processor.secrets import SecretsProvider

if TYPE_CHECKING:
    from local_pipeline.services.local_stack import LocalServices
    from local_pipeline.services.postgres import PostgresServer

#: The application secret of an owner secret named N is named N + this.
APP_SECRET_SUFFIX: Final = "-app"


def _server_key(server: PostgresServer) -> tuple[str, int]:
    return (server.host, server.port)


class ApplicationLogins:
    """Application secrets and migrated databases of one :class:`LocalServices`."""

    def __init__(self, services: LocalServices) -> None:
        self._services = services
        self._lock = threading.Lock()
        #: application secret ARN -> the owner secret ARN it was made from
        self._owner_of: dict[str, str] = {}
        self._migrated: set[tuple[str, int, str, str]] = set()

    def owner_secret(self, secret_arn: str) -> str:
        """The owner's secret behind ``secret_arn`` (itself when it is one)."""
        return self._owner_of.get(secret_arn, secret_arn)

    def prepare(self, secret_arn: str, server: PostgresServer, database: str) -> str:
        """Migrate ``database`` with the owner's secret (once) and return the
        application secret's ARN. ``secret_arn`` may be either secret."""
        owner_arn = self.owner_secret(secret_arn)
        with self._lock:
            app_arn = self._application_secret(owner_arn, server)
            key = (*_server_key(server), database, app_arn)
            if key not in self._migrated:
                target = DbTarget(
                    host=server.host,
                    port=server.port,
                    dbname=database,
                    secret_arn=owner_arn,
                    sslmode=server.sslmode,
                    sslrootcert=str(server.ca_path) if server.ca_path else None,
                )
                migrate_and_provision(
                    target,
                    self._secrets(),
                    owner_secret_arn=owner_arn,
                    app_secret_arn=app_arn,
                )
                self._migrated.add(key)
            return app_arn

    def _secrets(self) -> SecretsProvider:
        return SecretsProvider(
            DEFAULT_REGION, client=self._services.secrets_client(), min_refresh_interval_s=0
        )

    def _application_secret(self, owner_arn: str, server: PostgresServer) -> str:
        """Get or create the application secret (by name, so a later ``tap local``
        command in another process finds the one the running processors use)."""
        client = self._services.secrets_client()
        owner_name = client.describe_secret(SecretId=owner_arn)["Name"]
        name = owner_name + APP_SECRET_SUFFIX
        try:
            arn = str(client.describe_secret(SecretId=name)["ARN"])
        except client.exceptions.ResourceNotFoundException:
            document = {
                "engine": "postgres",
                "host": server.host,
                "port": server.port,
                "dbname": server.database,
                "username": APP_ROLE,
                "password": random_source.token_urlsafe(24),
                # What the alternating-users rotation function logs in with.
                "masterarn": owner_arn,
            }
            arn = str(client.create_secret(Name=name, SecretString=json.dumps(document))["ARN"])
        self._owner_of[arn] = owner_arn
        return arn

    def rotate(self, app_secret_arn: str, server: PostgresServer) -> str:
        """Rotate the application secret as the AWS alternating-users rotation
        function does; returns the login now current.

        createSecret: the other login (``<role>`` <-> ``<role>_clone``) with a new
        password; setSecret: as the owner, create that login ``IN ROLE`` the role or
        alter its password; finishSecret: the new version becomes AWSCURRENT. The
        previous login keeps working until the next rotation, so sessions and
        cached secrets of running processors never meet a refused login.
        """
        from psycopg import sql

        client = self._services.secrets_client()
        current = json.loads(client.get_secret_value(SecretId=app_secret_arn)["SecretString"])
        username = str(current["username"])
        pending_user = (
            username[: -len(CLONE_SUFFIX)]
            if username.endswith(CLONE_SUFFIX)
            else username + CLONE_SUFFIX
        )
        pending = current | {
            "username": pending_user,
            "password": random_source.token_urlsafe(24),
        }
        with server.admin_connection(server.maintenance_database) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (pending_user,)
            ).fetchone()
            if exists:
                conn.execute(
                    sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                        sql.Identifier(pending_user), sql.Literal(pending["password"])
                    )
                )
            else:
                conn.execute(
                    sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD {}").format(
                        sql.Identifier(pending_user), sql.Literal(pending["password"])
                    )
                )
                conn.execute(
                    sql.SQL("GRANT {} TO {}").format(
                        sql.Identifier(username), sql.Identifier(pending_user)
                    )
                )
        client.put_secret_value(SecretId=app_secret_arn, SecretString=json.dumps(pending))
        return pending_user

    def describe(self) -> dict[str, Any]:
        return {"application_secrets": dict(self._owner_of)}
