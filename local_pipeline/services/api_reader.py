"""The local stack's side of the read API's logins (issue 13): the read-only
PostgreSQL login and Redis ACL user, their secrets in the emulated Secrets Manager,
and the API's environment.

In AWS the stack creates the Redis user (an ElastiCache user whose access string is
:func:`processor.contract.storage.redis_api_reader_access_string`) and the API's
secrets; locally :func:`api_environment` does the same against the run's servers.
The PostgreSQL role comes from the migrations (``tap_api_reader``, NOLOGIN); this
makes it a login with a password of its own, once per server (roles are
cluster-wide), as the owner.
"""

from __future__ import annotations

import json
import secrets as random_source
import threading
import uuid
from typing import TYPE_CHECKING, Any, Final

from local_pipeline.services.aws_emulator import REGION
from processor.contract.api_environment import API_VARIABLES, ApiSettings
from processor.contract.storage import (
    API_READER_ROLE,
    REDIS_API_READER_USER,
    redis_api_reader_access_string,
)

if TYPE_CHECKING:
    from local_pipeline.services.local_stack import LocalServices
    from local_pipeline.services.postgres import PostgresServer
    from local_pipeline.services.redis import RedisServer

_VARIABLE_OF_ATTRIBUTE: Final = {var.attribute: var.name for var in API_VARIABLES}
_lock = threading.Lock()
#: (host, port) of a PostgreSQL server -> the reader login's password there.
_pg_passwords: dict[tuple[str, int], str] = {}


def provision_pg_reader(server: PostgresServer) -> str:
    """Make ``tap_api_reader`` a login (the database must be migrated); its password."""
    from psycopg import sql

    key = (server.host, server.port)
    with _lock:
        password = _pg_passwords.get(key)
        if password is None:
            password = random_source.token_urlsafe(24)
            with server.admin_connection(server.maintenance_database) as conn:
                conn.execute(
                    sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                        sql.Identifier(API_READER_ROLE), sql.Literal(password)
                    )
                )
            _pg_passwords[key] = password
        return password


def provision_redis_reader(server: RedisServer) -> str:
    """Create (or reset) the API's ACL user on ``server``; its password. Saved to the
    server's ACL file when it has one (a local binary), so a restarted Redis still
    knows the user; a container's or ``TAP_REDIS_URL``'s server keeps it in memory
    only (this must run again after its restart)."""
    password = random_source.token_urlsafe(24)
    client = server.client()
    try:
        client.execute_command(
            "ACL", "SETUSER", REDIS_API_READER_USER, "reset", "on", f">{password}",
            *redis_api_reader_access_string().split(),
        )  # fmt: skip
        if server.acl_path is not None:
            client.execute_command("ACL", "SAVE")
    finally:
        client.close()
    return password


def api_environment(
    services: LocalServices,
    database: str,
    *,
    postgres: PostgresServer | None = None,
    redis: RedisServer | None = None,
    **overrides: Any,
) -> dict[str, str]:
    """The environment of one ``tap api`` process against ``database`` (migrated by
    the caller, e.g. through :meth:`LocalServices.processor_environment`): the API's
    variables plus the emulator endpoints. ``overrides`` are :class:`ApiSettings`
    attribute names (``api_port=8123``)."""
    from local_pipeline.services.network import free_port

    db, cache = postgres or services.postgres, redis or services.redis
    suffix = uuid.uuid4().hex[:8]
    client = services.secrets_client()
    db_arn = client.create_secret(
        Name=f"tap-local-api-db-{suffix}",
        SecretString=json.dumps({"username": API_READER_ROLE, "password": provision_pg_reader(db)}),
    )["ARN"]
    redis_arn = client.create_secret(
        Name=f"tap-local-api-redis-{suffix}",
        SecretString=json.dumps(
            {"username": REDIS_API_READER_USER, "auth_token": provision_redis_reader(cache)}
        ),
    )["ARN"]
    values: dict[str, Any] = {
        "aws_region": REGION,
        "environment": "local",
        "db_host": db.host,
        "db_port": db.port,
        "db_name": database,
        "db_sslmode": db.sslmode,
        "redis_host": cache.host,
        "redis_port": cache.port,
        "redis_tls": cache.tls,
        "redis_ca_bundle": str(cache.ca_path) if cache.ca_path else "",
        "db_secret_arn": db_arn,
        "redis_secret_arn": redis_arn,
        "api_port": free_port(),
    }
    if db.ca_path is not None:
        values["db_ca_bundle"] = str(db.ca_path)
    values |= overrides
    environment = services.client_environment()
    for attribute, value in values.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        environment[_VARIABLE_OF_ATTRIBUTE[attribute]] = str(value)
    ApiSettings.from_environ(environment)  # drift between harness and contract fails here
    return environment


class ApiThread:
    """``tap api``'s application served by uvicorn in a thread of this process (tests):
    the same app, stores and HTTP stack as the command, without a process start."""

    def __init__(self, environment: dict[str, str]) -> None:
        import uvicorn

        from api.app import create_app

        self.settings = ApiSettings.from_environ(environment)
        self.app = create_app(self.settings)
        config = uvicorn.Config(
            self.app,
            host=self.settings.api_host,
            port=self.settings.api_port,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="tap-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def __enter__(self) -> ApiThread:
        import time

        self._thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the API did not start within 20 s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
