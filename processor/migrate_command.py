"""``python -m processor migrate``: the schema migrations and the application login,
run with the database owner's credentials (the migrate task; issue 11, item 2).

Usage::

    secrets = SecretsProvider.from_settings(settings)
    outcome = migrate_and_provision(
        DbTarget.from_settings(settings), secrets,
        owner_secret_arn=settings.db_migration_secret_arn,
        app_secret_arn=settings.db_secret_arn,
    )

Why a command of its own: the processor used to migrate at start-up, so it had to
connect as the owner of the tables, who can disable the append-only triggers. Now
the service connects as :data:`~processor.contract.storage.APP_ROLE` (INSERT and
SELECT on the compliance tables, nothing that changes or removes a row), and only
this command, in a task whose role may read the owner's secret, changes the schema.

The application login: migration 0004 creates the role NOLOGIN with its grants;
no password belongs in a migration. This command then makes the login named by the
application secret's current version able to log in with that secret's password:

* the login is the role itself or, after an alternating-users rotation (the AWS
  ``SecretsManagerRDSPostgreSQLRotationMultiUser`` function), ``<role>_clone``, which
  must be a member of the role (the rotation creates it ``GRANT <role> TO clone``);
* the password is sent as a SCRAM verifier computed by libpq on this side, so the
  clear password never reaches the server's statement log (``log_statement=ddl``);
* a secret without a password (the stack creates it that way, so no password is
  ever in Terraform state or plan) gets a new random one: set in the database first,
  then written to the secret as its current version (a failure in between leaves
  the old secret valid and the next run repeats it).

Running it again is harmless: it sets the secret's current password again.
"""

from __future__ import annotations

import logging
import secrets as random_source
from dataclasses import dataclass, replace
from typing import Any, Final

import psycopg
from psycopg import sql

from processor.contract.storage import API_READER_ROLE, APP_ROLE
from processor.postgres import (
    DbTarget,
    MigrationError,
    PgConnector,
    PostgresStore,
    StoreUnavailable,
)
from processor.secrets import Secret, SecretsProvider

log = logging.getLogger(__name__)

#: Suffix the alternating-users rotation appends to the second login.
CLONE_SUFFIX: Final = "_clone"

#: Length of a generated password (URL-safe characters: nothing to escape anywhere).
_PASSWORD_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class MigrateOutcome:
    """What :func:`migrate_and_provision` did."""

    applied: list[int]
    app_login: str
    #: True when the application secret had no password and one was generated.
    password_generated: bool
    #: The read API's login, when ``api_secret_arn`` was given (issue 13, item 3).
    api_login: str = ""


def migrate_and_provision(
    target: DbTarget,
    secrets: SecretsProvider,
    *,
    owner_secret_arn: str,
    app_secret_arn: str,
    api_secret_arn: str = "",
) -> MigrateOutcome:
    """Apply pending migrations as the owner, then provision the application login.

    ``target`` is the database (its ``secret_arn`` is ignored: the owner's secret is
    used). Raises :class:`StoreUnavailable` when PostgreSQL or Secrets Manager cannot
    be reached and :class:`MigrationError` for a login that must not be the
    application's (the owner itself, a superuser, or not a member of the role).
    """
    if owner_secret_arn == app_secret_arn:
        raise MigrationError(
            "the application secret is the owner's secret: the processor must not "
            "connect as the owner (TAP_DB_SECRET_ARN = TAP_DB_MIGRATION_SECRET_ARN)"
        )
    owner = PgConnector(replace(target, secret_arn=owner_secret_arn), secrets)
    with PostgresStore(owner) as store:
        applied = store.migrate()
    if applied:
        log.info("migrations applied", extra={"versions": applied})
    conn = owner.connect(statement_timeout_ms=0)
    try:
        login, generated = provision_app_login(conn, secrets, app_secret_arn)
        api_login = (
            provision_api_reader_login(conn, secrets, api_secret_arn)[0] if api_secret_arn else ""
        )
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise StoreUnavailable(f"provisioning interrupted: {type(exc).__name__}") from exc
    finally:
        conn.close()
    log.info(
        "application login ready",
        extra={"login": login, "role": APP_ROLE, "password_generated": generated},
    )
    return MigrateOutcome(applied, login, generated, api_login)


def provision_app_login(
    conn: psycopg.Connection[Any], secrets: SecretsProvider, app_secret_arn: str
) -> tuple[str, bool]:
    """Make the application secret's current login work; returns (login, generated).

    ``conn`` is an autocommit connection of a role with CREATEROLE and ADMIN on
    :data:`APP_ROLE` (the owner, who created it in migration 0004).
    """
    return _provision_login(conn, secrets, app_secret_arn, APP_ROLE, "application")


def provision_api_reader_login(
    conn: psycopg.Connection[Any], secrets: SecretsProvider, api_secret_arn: str
) -> tuple[str, bool]:
    """Make the read API's secret's login work (issue 13, item 3); (login, generated).

    The secret names :data:`API_READER_ROLE` (migration ``*_api_reader.sql`` creates
    it NOLOGIN with SELECT only) or ``<role>_clone``, a login that is a member of it;
    the rest is as for the application login. ``conn``: the owner's autocommit
    connection (ADMIN on the role).
    """
    login, generated = _provision_login(
        conn, secrets, api_secret_arn, API_READER_ROLE, "read API's"
    )
    log.info("read API login ready", extra={"login": login, "password_generated": generated})
    return login, generated


def _provision_login(
    conn: psycopg.Connection[Any],
    secrets: SecretsProvider,
    secret_arn: str,
    role: str,
    whose: str,
) -> tuple[str, bool]:
    """Make the login a secret names able to log in as (a member of) ``role``.

    The login is ``role`` itself or, after an alternating-users rotation,
    ``<role>_clone``; never the migrating owner, never a superuser. A secret without a
    password (the stack writes it so: none in Terraform state or plan) gets a random
    one, set in the database first, then written to the secret; a SCRAM verifier,
    never the clear password, reaches the server. ``whose`` names the secret in errors.
    """
    values = secrets.get_json(secret_arn, refresh=True)
    if "username" not in values:
        raise MigrationError(f"the {whose} secret lacks username")
    login = values["username"].reveal()
    if login not in (role, role + CLONE_SUFFIX):
        raise MigrationError(
            f"the {whose} secret names login {login!r}; expected {role!r} "
            f"or {role + CLONE_SUFFIX!r} (alternating-users rotation)"
        )
    current_user = _one(conn.execute("SELECT current_user"))
    if login == current_user:
        raise MigrationError(f"the {whose} login is the migrating owner itself")
    existing = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (login,)).fetchone()
    if existing is not None and existing[0]:
        raise MigrationError(f"the {whose} login {login!r} is a superuser")

    password = values.get("password")
    generated = password is None or not password.reveal()
    if generated:
        password = Secret(random_source.token_urlsafe(_PASSWORD_BYTES))
    assert password is not None
    verifier = conn.pgconn.encrypt_password(
        password.reveal().encode(), login.encode(), b"scram-sha-256"
    ).decode()
    with conn.transaction():
        if existing is None:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                    sql.Identifier(login), sql.Literal(verifier), sql.Identifier(role)
                )
            )
        else:
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                    sql.Identifier(login), sql.Literal(verifier)
                )
            )
            if login != role:
                conn.execute(
                    sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(login))
                )
    if generated:
        document = {key: value.reveal() for key, value in values.items()}
        document["password"] = password.reveal()
        secrets.put_json(secret_arn, document)
    return login, generated


def _one(cur: psycopg.Cursor[Any]) -> Any:
    row = cur.fetchone()
    assert row is not None
    return row[0]
