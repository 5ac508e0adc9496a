"""The schema's migrations: the files shipped in ``processor/migrations``, applying
the pending ones (the migrate task, with the owner's credentials) and the worker's
start-up check that they are applied.

Separate because it is the one job that runs with other credentials and at another
time than the rest (``python -m processor migrate``, issue 11), on a connection of
its own without a statement timeout, serialized across processes by an advisory
lock; the worker only reads the ``schema_migrations`` table.

* :func:`load_migrations`: the shipped files, in version order (1..n, no gaps).
* :class:`SchemaMigrations`: ``migrate()``, ``require_schema()``, ``applied_migrations()``.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import re
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import sql

from processor.contract.storage import MIGRATIONS_TABLE, PG_SCHEMA
from processor.postgres.connection import PooledConnections
from processor.postgres.errors import MigrationError, SchemaBehind, StoreUnavailable
from processor.postgres.identifiers import table_identifier as _table

log = logging.getLogger(__name__)

#: Key of the session advisory lock that serializes migrations across processes
#: (ASCII "tap_mig"; any constant works as long as nothing else uses it).
MIGRATION_LOCK_KEY: Final = 0x7461705F6D6967


_MIGRATION_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """The migration files shipped in ``processor/migrations``, in version order."""
    folder = importlib.resources.files("processor").joinpath("migrations")
    migrations = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _MIGRATION_FILE.fullmatch(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not NNNN_name.sql")
        migrations.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"migration versions must be 1..n without gaps, got {versions}")
    return migrations


class SchemaMigrations:
    """Applies and checks the migrations on the store's connections."""

    def __init__(self, db: PooledConnections) -> None:
        self._db = db

    def migrate(self) -> list[int]:
        """Apply pending migrations; returns the versions applied by this call.

        Safe to run from every worker at once: a session advisory lock serializes
        them, and each migration is applied with its ``schema_migrations`` row in one
        transaction, so a crash leaves it either fully applied or not at all. A file
        changed after it was applied raises :class:`MigrationError` (checksum).
        """
        migrations = load_migrations()
        # No statement timeout: waiting for a peer's migration is expected.
        conn = self._db.connector.connect(statement_timeout_ms=0)
        applied_now: list[int] = []
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
            try:
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(PG_SCHEMA))
                )
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {} ("
                        " version integer PRIMARY KEY,"
                        " name text NOT NULL,"
                        " checksum text NOT NULL,"
                        " applied_at timestamptz NOT NULL DEFAULT now())"
                    ).format(_table(MIGRATIONS_TABLE))
                )
                done = {
                    version: checksum
                    for version, checksum in conn.execute(
                        sql.SQL("SELECT version, checksum FROM {}").format(_table(MIGRATIONS_TABLE))
                    )
                }
                for migration in migrations:
                    if migration.version in done:
                        if done[migration.version] != migration.checksum:
                            raise MigrationError(
                                f"migration {migration.version:04d}_{migration.name} changed after "
                                "it was applied; add a new migration instead"
                            )
                        continue
                    with conn.transaction():
                        # No parameters: the file runs as a multi-statement script.
                        conn.execute(migration.sql.encode())
                        conn.execute(
                            sql.SQL(
                                "INSERT INTO {} (version, name, checksum) VALUES (%s, %s, %s)"
                            ).format(_table(MIGRATIONS_TABLE)),
                            (migration.version, migration.name, migration.checksum),
                        )
                    log.info("applied migration %04d_%s", migration.version, migration.name)
                    applied_now.append(migration.version)
            finally:
                if not conn.broken:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StoreUnavailable(f"migration interrupted: {type(exc).__name__}: {exc}") from exc
        finally:
            conn.close()
        return applied_now

    def require_schema(self) -> list[int]:
        """Check that every migration this processor ships is applied, unchanged;
        returns the applied versions. Raises :class:`SchemaBehind` (retryable) while
        one is missing or the schema cannot be read yet, :class:`MigrationError` when
        an applied file differs from ours. A schema *ahead* of ours is fine: a new
        version's migrate task runs before its service replaces the old tasks, and
        migrations only add."""
        shipped = load_migrations()

        def run(conn: psycopg.Connection[Any]) -> dict[int, str]:
            try:
                return {
                    version: checksum
                    for version, checksum in conn.execute(
                        sql.SQL("SELECT version, checksum FROM {}").format(_table(MIGRATIONS_TABLE))
                    )
                }
            except (psycopg.errors.UndefinedTable, psycopg.errors.InsufficientPrivilege) as exc:
                # Nothing migrated yet (or not 0004, which grants us the read).
                raise SchemaBehind(
                    f"schema not migrated yet ({type(exc).__name__}); "
                    "run `python -m processor migrate` with the owner's secret"
                ) from exc

        applied = self._db.call(run)
        missing = [m for m in shipped if m.version not in applied]
        if missing:
            names = ", ".join(f"{m.version:04d}_{m.name}" for m in missing)
            raise SchemaBehind(
                f"schema behind this processor: {names} not applied; "
                "run `python -m processor migrate` with the owner's secret"
            )
        for migration in shipped:
            if applied[migration.version] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} applied to the "
                    "database differs from the one this processor ships"
                )
        return sorted(applied)

    def applied_migrations(self) -> list[int]:
        return self._db.call(
            lambda c: [
                row[0]
                for row in c.execute(
                    sql.SQL("SELECT version FROM {} ORDER BY version").format(
                        _table(MIGRATIONS_TABLE)
                    )
                )
            ]
        )
