"""The processor's PostgreSQL edge: migrations, exactly-once batch commits, leases.

Usage (the worker loop)::

    secrets = SecretsProvider.from_settings(settings)
    store = PostgresStore.from_settings(settings, secrets)
    store.require_schema()                # at start-up (the migrate command migrates)
    store.ensure_partitions()             # at start-up, then every hour or so
    store.sync_shards([(shard_id, parent_ids, adjacent_parent), ...])
    token = store.try_acquire(shard_id, worker_id, 10.0, expected_fencing=row.fencing)
    result = store.commit_batch(batch, token, processed_at)   # may raise LeaseLost
    # then, after the commit, update Redis (result.inserted_keys, result.devices)

Public API (see each docstring):

* :class:`PostgresStore`
  - ``migrate() -> list[int]`` apply pending ``processor/migrations/NNNN_*.sql`` (with
    the owner's credentials: ``python -m processor migrate``)
  - ``require_schema() -> list[int]`` the processor's start-up check (raises
    :class:`SchemaBehind` until the migrations it ships are applied)
  - ``ensure_partitions(now=None, *, days_back=8, days_ahead=7) -> int``
  - ``commit_batch(batch, lease, processed_at=None) -> CommitResult`` (one transaction)
  - leases: ``sync_shards``, ``list_leases``, ``try_acquire``, ``renew``, ``release``,
    ``checkpoint_of``; workers: ``heartbeat``, ``live_workers``, ``remove_worker``
  - reads: ``latest_per_device``, ``stored_keys``, ``count_readings``,
    ``count_dead_letters`` (more in :mod:`processor.postgres_queries`)
  - ``run_query(fn)`` runs a :mod:`processor.postgres_queries` helper on the pool
  - ``applied_migrations()``, ``ping()``, ``db_now()``, ``reset_connections()``,
    ``close()``
* :class:`PgConnector`: opens connections from settings + Secrets Manager, refreshing
  the secret and reconnecting once when the login fails (password rotation).
* :func:`with_pg_retry`: call a store method, backing off while PostgreSQL is down.
* Exceptions: :class:`StoreError` > :class:`StoreUnavailable` (transient: back off,
  do not advance anything) > :class:`AuthenticationFailed`; :class:`LeaseLost`
  (fencing check failed, the batch was rolled back); :class:`MigrationError`;
  :class:`SchemaBehind` (a :class:`StoreUnavailable`: wait for the migrate task).

Why: each batch is one transaction that writes readings, anomalies and dead
letters and advances the shard checkpoint only while this worker still holds the
lease with the fencing counter it acquired. A worker that paused past its lease and
lost it to a peer therefore commits nothing, and a batch is either fully stored
with its checkpoint or not at all, so a replay after any crash is harmless.
See docs/PROCESSOR-STORAGE.md for the tables and the exactly-once argument.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import os
import random
import re
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeVar

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from processor import client_timeouts, postgres_queries
from processor.contract.record import MAX_DETAIL_CHARS, RejectReason, encode_reading
from processor.contract.storage import (
    ANOMALIES_COPY_COLUMNS,
    ANOMALIES_TABLE,
    DEAD_LETTERS_COPY_COLUMNS,
    DEAD_LETTERS_TABLE,
    ENSURE_PARTITIONS_FUNCTION,
    MIGRATIONS_TABLE,
    PG_SCHEMA,
    READING_KEYS_TABLE,
    READINGS_COPY_COLUMNS,
    READINGS_TABLE,
    SHARD_LEASES_TABLE,
    WORKERS_TABLE,
)
from processor.core.backoff import Backoff, Jitter
from processor.core.batch import anomaly_rows, dead_letter_rows, reading_rows
from processor.core.model import AcceptedReading, LeaseToken, ProcessedBatch
from processor.error_kinds import ErrorKind, classify
from processor.secrets import DbCredentials, SecretsError, SecretsProvider, SecretsUnavailable

if TYPE_CHECKING:
    from processor.contract.environment import ProcessorSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Key of the session advisory lock that serializes migrations across processes
#: (ASCII "tap_mig"; any constant works as long as nothing else uses it).
MIGRATION_LOCK_KEY: Final = 0x7461705F6D6967

#: Partitions kept behind today: validation accepts event times up to 7 days before
#: arrival, so every accepted reading finds its daily partition.
DEFAULT_PARTITION_DAYS_BACK: Final = 8
#: Partitions created ahead of today (the periodic job can be down for a week).
DEFAULT_PARTITION_DAYS_AHEAD: Final = 7

#: Reuse an idle pooled connection without a ping if it was used this recently.
_PING_AFTER_IDLE_S: Final = 1.0

_MIGRATION_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


# --- exceptions -----------------------------------------------------------------------


class StoreError(Exception):
    """Base of the store's errors. Messages never contain credentials."""


class StoreUnavailable(StoreError):
    """PostgreSQL cannot be reached or dropped the connection (restart, failover,
    network, timeout, login refused). Transient: back off and retry the same call.
    If it interrupted a COMMIT the outcome is unknown, which is fine: retrying the
    same batch is safe because commit_batch is idempotent."""


class AuthenticationFailed(StoreUnavailable):
    """The login failed even with a freshly fetched secret (rotation in progress,
    or the refresh was rate-limited). Retrying later picks up the new secret."""


class LeaseLost(StoreError):
    """The shard lease is no longer ours (owner, fencing counter or expiry changed):
    the transaction was rolled back. Drop the shard and its in-memory state."""

    def __init__(self, lease: LeaseToken) -> None:
        self.lease = lease
        super().__init__(
            f"lease on {lease.shard_id} lost by {lease.owner} (fencing {lease.fencing}): "
            "another worker took it or it expired; batch rolled back"
        )


class MigrationError(StoreError):
    """A migration file is malformed or was changed after it was applied."""


class SchemaBehind(StoreUnavailable):
    """The database lacks migrations this processor ships (issue 11: the processor no
    longer migrates; the migrate task does, with the owner's credentials). Transient
    on purpose: the worker waits, not ready, until the migrate task has run."""


# --- values ---------------------------------------------------------------------------


#: How long taking a lease waits for a row lock before leaving the shard for the next
#: planning round (see ``try_acquire``).
LEASE_LOCK_TIMEOUT: Final = sql.Literal("100ms")


@dataclass(frozen=True, slots=True)
class DbTarget:
    """Where and how to connect; no credentials (those come from Secrets Manager)."""

    host: str
    port: int
    dbname: str
    secret_arn: str
    sslmode: str = "verify-full"
    #: CA bundle for verify-ca/verify-full (the RDS bundle in the image).
    sslrootcert: str | None = None
    application_name: str = "tap-processor"
    connect_timeout_s: int = client_timeouts.PG_CONNECT_TIMEOUT_S
    #: Server-side statement timeout of pooled connections (not of migrations).
    statement_timeout_ms: int = client_timeouts.PG_STATEMENT_TIMEOUT_MS
    #: A session frozen inside a transaction (SIGSTOP, a paused VM) keeps its lease
    #: row locked, so no peer can take the shard until PostgreSQL ends the session.
    #: Our transactions never wait on the client, so twice the lease is generous.
    idle_in_transaction_timeout_ms: int = 300_000

    @classmethod
    def from_settings(cls, settings: ProcessorSettings) -> DbTarget:
        return cls(
            host=settings.db_host,
            port=settings.db_port,
            dbname=settings.db_name,
            secret_arn=settings.db_secret_arn,
            sslmode=settings.db_sslmode,
            sslrootcert=settings.db_ca_bundle if settings.db_sslmode != "disable" else None,
            idle_in_transaction_timeout_ms=int(max(2 * settings.lease_duration_s, 5) * 1000),
        )


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What one :meth:`PostgresStore.commit_batch` stored."""

    #: Readings newly stored by this commit.
    inserted: int
    #: Readings of the batch already stored (replay, exact re-send) or in conflict.
    duplicates: int
    anomalies: int
    dead_letters: int
    #: (device_id, seq) of the newly stored readings: the ones to apply to Redis.
    inserted_keys: frozenset[tuple[str, int]] = frozenset()
    #: Kinesis sequence numbers of the newly stored readings (the exact records, even
    #: where a device's seq repeats): see :func:`processor.core.batch.committed_part`.
    inserted_sequence_numbers: frozenset[str] = frozenset()
    #: Readings repeating a stored key with another payload, dead-lettered as
    #: ``seq_conflict`` by this commit (issue 10 item 4; included in ``dead_letters``).
    seq_conflicts: int = 0

    @property
    def devices(self) -> tuple[str, ...]:
        """Devices with newly stored readings, sorted."""
        return tuple(sorted({device for device, _ in self.inserted_keys}))


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """A row of ``tap.shard_leases`` as read, with the database's clock."""

    shard_id: str
    parent_shard_ids: tuple[str, ...]
    adjacent_parent: str | None
    owner: str | None
    expires_at: datetime | None
    fencing: int
    checkpoint: str | None
    finished: bool
    updated_at: datetime
    #: ``now()`` of the database when the row was read: compare expiry with this.
    db_now: datetime

    @property
    def held(self) -> bool:
        """Owned and not expired (by the database clock)."""
        return (
            self.owner is not None and self.expires_at is not None and self.expires_at > self.db_now
        )


#: What :meth:`PostgresStore.sync_shards` takes: (shard_id, parent_shard_ids, adjacent_parent).
ShardSpec = tuple[str, Sequence[str], str | None]


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


# --- connections ----------------------------------------------------------------------


def _is_auth_failure(exc: psycopg.Error) -> bool:
    # A failed login surfaces from connect() without a result, so sqlstate is often
    # None there; libpq's message is stable ("password authentication failed").
    return exc.sqlstate == "28P01" or "password authentication failed" in str(exc)


def _log_notice(diag: psycopg.errors.Diagnostic) -> None:
    # Server WARNINGs matter (ensure_partitions skipping a day whose rows sit in the
    # default partition); NOTICEs such as "relation already exists, skipping" do not.
    level = logging.WARNING if diag.severity_nonlocalized == "WARNING" else logging.DEBUG
    log.log(level, "PostgreSQL %s: %s", diag.severity_nonlocalized, diag.message_primary)


def _redact(message: str, *secrets: str) -> str:
    """The message with any secret value and any ``password=...`` replaced."""
    for value in secrets:
        if value:
            message = message.replace(value, "***")
    return re.sub(r"(password\s*=\s*)(\S+)", r"\1***", message, flags=re.IGNORECASE)


class PgConnector:
    """Opens autocommit psycopg connections to the target with credentials from
    Secrets Manager.

    Rotation: the cached secret is used until a login fails with an authentication
    error; then the secret is fetched again (``refresh=True``, rate-limited by the
    provider) and the login retried once. Already open connections keep working
    after a password change (PostgreSQL checks passwords at login only), so only new
    connections see the rotation.
    """

    def __init__(self, target: DbTarget, secrets: SecretsProvider) -> None:
        self.target = target
        self._secrets = secrets
        #: Logins retried with a refreshed secret (for tests and metrics).
        self.auth_refreshes = 0
        self.connects = 0

    def __repr__(self) -> str:
        t = self.target
        return f"PgConnector({t.host}:{t.port}/{t.dbname}, sslmode={t.sslmode})"

    def connect(self, *, statement_timeout_ms: int | None = None) -> psycopg.Connection[Any]:
        """A new autocommit connection. Raises :class:`StoreUnavailable` (or its
        :class:`AuthenticationFailed`) on any connection failure."""
        creds = self._credentials(refresh=False)
        try:
            return self._open(creds, statement_timeout_ms)
        except psycopg.OperationalError as exc:
            if not _is_auth_failure(exc):
                raise StoreUnavailable(self._describe(exc, creds)) from None
            first_error = self._describe(exc, creds)
        fresh = self._credentials(refresh=True)
        if fresh == creds:
            raise AuthenticationFailed(
                f"{first_error} (secret unchanged or refresh rate-limited; will retry)"
            )
        self.auth_refreshes += 1
        log.info("database login failed; retrying with the refreshed secret")
        try:
            return self._open(fresh, statement_timeout_ms)
        except psycopg.OperationalError as exc:
            if _is_auth_failure(exc):
                raise AuthenticationFailed(self._describe(exc, fresh)) from None
            raise StoreUnavailable(self._describe(exc, fresh)) from None

    def _credentials(self, *, refresh: bool) -> DbCredentials:
        try:
            return self._secrets.db_credentials(self.target.secret_arn, refresh=refresh)
        except SecretsUnavailable as exc:
            raise StoreUnavailable(f"database secret unavailable: {exc}") from exc
        except SecretsError:
            raise  # malformed secret: configuration error, not transient

    def _open(
        self, creds: DbCredentials, statement_timeout_ms: int | None
    ) -> psycopg.Connection[Any]:
        t = self.target
        timeout = t.statement_timeout_ms if statement_timeout_ms is None else statement_timeout_ms
        kwargs: dict[str, Any] = {
            "host": t.host,
            "port": t.port,
            "dbname": t.dbname,
            "user": creds.username,
            # Passed as a keyword, never formatted into a conninfo string we might log.
            "password": creds.password.reveal(),
            "sslmode": t.sslmode,
            "application_name": t.application_name,
            "connect_timeout": t.connect_timeout_s,
            # Detect a dead peer (failover, black-holed network) in ~25 s instead of
            # the kernel's two hours, and unacknowledged sends in 10 s instead of ~15
            # minutes; the worker then backs off and reconnects (client_timeouts.py).
            "keepalives": 1,
            "keepalives_idle": client_timeouts.PG_KEEPALIVES_IDLE_S,
            "keepalives_interval": client_timeouts.PG_KEEPALIVES_INTERVAL_S,
            "keepalives_count": client_timeouts.PG_KEEPALIVES_COUNT,
            "tcp_user_timeout": client_timeouts.PG_TCP_USER_TIMEOUT_MS,
            "options": (
                f"-c statement_timeout={timeout}"
                f" -c idle_in_transaction_session_timeout={t.idle_in_transaction_timeout_ms}"
                " -c TimeZone=UTC"
            ),
        }
        if t.sslrootcert and t.sslmode != "disable":
            kwargs["sslrootcert"] = t.sslrootcert
        conn = psycopg.connect(autocommit=True, **kwargs)
        conn.add_notice_handler(_log_notice)
        self.connects += 1
        return conn

    def _describe(self, exc: psycopg.Error, creds: DbCredentials) -> str:
        t = self.target
        detail = " ".join(str(exc).split())
        return _redact(
            f"cannot connect to PostgreSQL {t.host}:{t.port}/{t.dbname} as {creds.username} "
            f"(sslmode={t.sslmode}): {detail}",
            creds.password.reveal(),
        )


class _Watchdog:
    """Ends calls that overran their deadline by shutting their socket down.

    psycopg has no client-side timeout for a query, and on a connection whose peer
    keeps acknowledging but never answers (a middlebox that drops, a frozen server)
    neither TCP keepalives nor ``tcp_user_timeout`` fire. ``shutdown(SHUT_RDWR)`` on
    the socket wakes the blocked call, which fails as a lost connection
    (connection-unusable: closed, never pooled again). One daemon thread per store.
    """

    def __init__(self, tick_s: float = client_timeouts.PG_WATCHDOG_TICK_S) -> None:
        self._tick_s = tick_s
        self._lock = threading.Lock()
        self._armed: dict[int, tuple[float, psycopg.Connection[Any]]] = {}
        self._next = 0
        self._thread: threading.Thread | None = None
        #: Calls ended by the watchdog (for tests and logs).
        self.fired = 0

    @contextmanager
    def guard(self, conn: psycopg.Connection[Any], timeout_s: float) -> Iterator[None]:
        """Run the body with ``conn`` under a deadline ``timeout_s`` from now."""
        with self._lock:
            self._next += 1
            token = self._next
            self._armed[token] = (time.monotonic() + timeout_s, conn)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="pg-watchdog", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._armed.pop(token, None)

    def _loop(self) -> None:
        while True:
            time.sleep(self._tick_s)
            now = time.monotonic()
            with self._lock:
                overdue = [t for t, (deadline, _) in self._armed.items() if deadline <= now]
                conns = [self._armed.pop(t)[1] for t in overdue]
                self.fired += len(conns)
            for conn in conns:
                log.warning(
                    "PostgreSQL call overran its deadline; dropping its connection",
                    extra={"event": "pg_call_deadline"},
                )
                _shutdown_socket(conn)


def _shutdown_socket(conn: psycopg.Connection[Any]) -> None:
    try:
        fd = conn.pgconn.socket
        # A duplicate descriptor of the same socket: shutting it down wakes the
        # thread blocked on the original; closing the duplicate leaves it to psycopg.
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg.Error):
        pass  # already closed: nothing is blocked on it


class _Pool:
    """A few idle connections reused across calls, one borrower each at a time.

    The worker calls the store from several threads (batch commits per shard, lease
    renewal in the background); each call borrows its own connection so their
    transactions never interleave. psycopg_pool would do, but this is 40 lines and
    keeps the image's dependency list short.
    """

    def __init__(
        self, connector: PgConnector, max_idle: int, watchdog: _Watchdog | None = None
    ) -> None:
        self._connector = connector
        self._watchdog = watchdog or _Watchdog()
        self._max_idle = max_idle
        self._idle: list[tuple[psycopg.Connection[Any], float]] = []
        self._lock = threading.Lock()
        self._closed = False

    def take(self) -> psycopg.Connection[Any]:
        while True:
            with self._lock:
                if not self._idle:
                    break
                conn, last_used = self._idle.pop()
            if conn.closed or conn.broken:
                continue
            if time.monotonic() - last_used < _PING_AFTER_IDLE_S:
                return conn
            # An idle connection may have been cut (server restart, failover,
            # pg_terminate_backend); find out now rather than in the middle of a batch.
            try:
                with self._watchdog.guard(conn, client_timeouts.PG_PING_TIMEOUT_S):
                    conn.execute("SELECT 1")
                return conn
            except psycopg.Error:
                conn.close()
        return self._connector.connect()

    def give_back(self, conn: psycopg.Connection[Any]) -> None:
        if conn.closed or conn.broken:
            conn.close()
            return
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            # Should not happen (transactions are context-managed); never reuse it.
            conn.close()
            return
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append((conn, time.monotonic()))
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()

    def reset(self) -> None:
        """Close the idle connections (the next calls open new ones)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()


# --- the store ------------------------------------------------------------------------

_STAGE_READINGS: Final = "tap_stage_readings"
_STAGE_ANOMALIES: Final = "tap_stage_anomalies"
_STAGE_DEAD_LETTERS: Final = "tap_stage_dead_letters"


def _columns(columns: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


_table = postgres_queries.table_identifier


class PostgresStore:
    """The processor's PostgreSQL adapter. Thread-safe (a connection per call)."""

    def __init__(self, connector: PgConnector, *, max_idle_connections: int = 4) -> None:
        self._connector = connector
        self._watchdog = _Watchdog()
        self._pool = _Pool(connector, max_idle_connections, self._watchdog)
        #: Per-thread override of the call deadline (see :meth:`call_deadline`).
        self._deadline = threading.local()
        # Connections whose session already has the temporary staging tables.
        self._staged: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()

    @classmethod
    def from_settings(
        cls, settings: ProcessorSettings, secrets: SecretsProvider, **kwargs: Any
    ) -> PostgresStore:
        return cls(PgConnector(DbTarget.from_settings(settings), secrets), **kwargs)

    @property
    def connector(self) -> PgConnector:
        return self._connector

    def __repr__(self) -> str:
        return f"PostgresStore({self._connector!r})"

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.close()

    def reset_connections(self) -> None:
        """Drop the idle pooled connections (new logins on the next calls)."""
        self._pool.reset()

    # -- plumbing --------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled autocommit connection; connection-level failures become
        :class:`StoreUnavailable`. Use ``with conn.transaction():`` inside."""
        conn = self._pool.take()
        try:
            with self._watchdog.guard(conn, self._call_timeout_s()):
                yield conn
        except psycopg.Error as exc:
            # One classification for every caller (processor/error_kinds.py): lost
            # connections, restarts, failovers (read-only transaction), idle-session
            # timeouts, lock and statement timeouts, serialization failures are
            # transient and rolled back; a connection they leave in doubt is closed,
            # never pooled again. Anything else (a missing privilege, a bug) is not
            # ours to retry and propagates as is.
            kind = classify(exc)
            if kind is ErrorKind.CONNECTION_UNUSABLE:
                conn.close()
            if kind is ErrorKind.FATAL:
                raise
            raise StoreUnavailable(
                f"PostgreSQL operation failed: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            self._pool.give_back(conn)

    def _call_timeout_s(self) -> float:
        override: float | None = getattr(self._deadline, "seconds", None)
        if override is not None:
            return override
        t = self._connector.target
        return t.statement_timeout_ms / 1000 + client_timeouts.PG_CALL_MARGIN_S

    @contextmanager
    def call_deadline(self, seconds: float) -> Iterator[None]:
        """Calls made by this thread inside the block get ``seconds`` as their
        client-side deadline (the lease threads' calls are tiny and must not block
        longer than a renewal period; the default suits a batch commit)."""
        previous = getattr(self._deadline, "seconds", None)
        self._deadline.seconds = seconds
        try:
            yield
        finally:
            self._deadline.seconds = previous

    @property
    def deadline_hits(self) -> int:
        """Calls ended by the client-side deadline so far."""
        return self._watchdog.fired

    def _call(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        with self._connection() as conn:
            return fn(conn)

    def ping(self) -> bool:
        """True when PostgreSQL answers (readiness)."""
        try:
            return self._call(lambda c: c.execute("SELECT 1").fetchone()) == (1,)
        except StoreError:
            return False

    def db_now(self) -> datetime:
        """The database clock (leases expire by it)."""
        return self._call(lambda c: _one(c.execute("SELECT now()")))

    # -- schema ----------------------------------------------------------------------

    def migrate(self) -> list[int]:
        """Apply pending migrations; returns the versions applied by this call.

        Safe to run from every worker at once: a session advisory lock serializes
        them, and each migration is applied with its ``schema_migrations`` row in one
        transaction, so a crash leaves it either fully applied or not at all. A file
        changed after it was applied raises :class:`MigrationError` (checksum).
        """
        migrations = load_migrations()
        # No statement timeout: waiting for a peer's migration is expected.
        conn = self._connector.connect(statement_timeout_ms=0)
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

        applied = self._call(run)
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
        return self._call(
            lambda c: [
                row[0]
                for row in c.execute(
                    sql.SQL("SELECT version FROM {} ORDER BY version").format(
                        _table(MIGRATIONS_TABLE)
                    )
                )
            ]
        )

    def ensure_partitions(
        self,
        now: datetime | None = None,
        *,
        days_back: int = DEFAULT_PARTITION_DAYS_BACK,
        days_ahead: int = DEFAULT_PARTITION_DAYS_AHEAD,
    ) -> int:
        """Create the missing daily partitions of ``tap.readings`` from ``days_back``
        days before ``now``'s UTC day (default: the database's today) to ``days_ahead``
        days after it; returns how many were created. Call at start-up and then
        periodically (idempotent; concurrent callers serialize in the database)."""

        def run(conn: psycopg.Connection[Any]) -> int:
            with conn.transaction():
                # Creating a partition locks tap.readings exclusively for a moment; do
                # not queue behind a long transaction (and block commits queued after
                # us) for more than a few seconds: the next run will do it.
                conn.execute("SET LOCAL lock_timeout = '5s'")
                if now is None:
                    today: date = _one(conn.execute("SELECT (now() AT TIME ZONE 'UTC')::date"))
                else:
                    today = now.astimezone(UTC).date()
                start = today - timedelta(days=days_back)
                return int(
                    _one(
                        conn.execute(
                            sql.SQL("SELECT {}(%s, %s)").format(_table(ENSURE_PARTITIONS_FUNCTION)),
                            (start, days_back + days_ahead + 1),
                        )
                    )
                )

        return self._call(run)

    # -- the batch commit ------------------------------------------------------------

    def commit_batch(
        self,
        batch: ProcessedBatch,
        lease: LeaseToken,
        processed_at: datetime | None = None,
    ) -> CommitResult:
        """Store one batch and advance its shard's checkpoint, in ONE transaction.

        1. Fence: ``UPDATE tap.shard_leases SET checkpoint, finished WHERE shard_id,
           owner, fencing match AND expires_at > now()``. No row: roll back, raise
           :class:`LeaseLost`. Doing it first also locks the lease row until commit,
           so no peer can acquire the shard between our check and our commit.
        2. Readings: COPY into a session temp table, then in one statement insert the
           keys ``(device_id, boot, seq, event day)`` into ``tap.reading_keys``
           ``ON CONFLICT DO NOTHING RETURNING`` and the rows whose key was new into
           ``tap.readings`` (duplicates within the batch keep the lowest Kinesis
           sequence number). When some key was not new, one more statement finds the
           readings whose stored twin has another payload and another Kinesis record:
           they become ``seq_conflict`` dead letters (payload: the reading re-encoded,
           detail: where and what the stored one is); exact re-sends and replays of
           our own records are dropped as duplicates.
        3. Anomalies of newly stored readings — matched on the reading's identity
           ``(device_id, boot, seq, event time)`` — and ``silent`` ones, which belong
           to no reading of the batch, ``ON CONFLICT (device_id, boot, seq,
           anomaly_type, event_day) DO NOTHING``: a replay's detectors may see a
           different history, but the first commit's verdict stands.
        4. Dead letters ``ON CONFLICT (shard_id, sequence_number) DO NOTHING``.

        Idempotent: committing the same batch again stores nothing new and sets the
        same checkpoint. Raises :class:`StoreUnavailable` when PostgreSQL fails (the
        outcome is then unknown; retrying the same batch is safe).
        """
        if batch.shard_id != lease.shard_id:
            raise ValueError(
                f"batch of {batch.shard_id} committed under the lease of {lease.shard_id}"
            )
        when = processed_at or datetime.now(UTC)
        readings = reading_rows(batch, when)
        anomalies = anomaly_rows(batch, when)
        dead_letters = [_strip_nul(row) for row in dead_letter_rows(batch, when)]
        by_record = {a.sequence_number: a for a in batch.readings}

        def run(conn: psycopg.Connection[Any]) -> CommitResult:
            self._prepare_staging(conn)
            with conn.transaction():
                fenced = conn.execute(
                    sql.SQL(
                        "UPDATE {} SET checkpoint = COALESCE(%s, checkpoint),"
                        " finished = finished OR %s, updated_at = now()"
                        " WHERE shard_id = %s AND owner = %s AND fencing = %s"
                        " AND expires_at > now()"
                    ).format(_table(SHARD_LEASES_TABLE)),
                    (batch.checkpoint, batch.shard_end, lease.shard_id, lease.owner, lease.fencing),
                )
                if fenced.rowcount != 1:
                    raise LeaseLost(lease)

                inserted_keys: set[tuple[str, int]] = set()
                inserted_records: set[str] = set()
                if readings:
                    _copy(conn, _STAGE_READINGS, READINGS_COPY_COLUMNS, readings)
                    for device, seq, sequence_number in conn.execute(_INSERT_READINGS_SQL):
                        inserted_keys.add((device, seq))
                        inserted_records.add(sequence_number)

                conflicts = []
                if len(inserted_records) < len(readings):
                    conflicts = [
                        _seq_conflict_row(by_record[sequence_number], stored, when)
                        for sequence_number, *stored in conn.execute(_SEQ_CONFLICTS_SQL)
                    ]
                    dead_letters.extend(conflicts)

                stored_anomalies = 0
                if anomalies:
                    _copy(conn, _STAGE_ANOMALIES, ANOMALIES_COPY_COLUMNS, anomalies)
                    stored_anomalies = conn.execute(
                        _INSERT_ANOMALIES_SQL, (list(inserted_records),)
                    ).rowcount

                stored_dead = 0
                if dead_letters:
                    _copy(conn, _STAGE_DEAD_LETTERS, DEAD_LETTERS_COPY_COLUMNS, dead_letters)
                    stored_dead = conn.execute(_INSERT_DEAD_LETTERS_SQL).rowcount

            return CommitResult(
                inserted=len(inserted_keys),
                duplicates=len(readings) - len(inserted_keys),
                anomalies=stored_anomalies,
                dead_letters=stored_dead,
                inserted_keys=frozenset(inserted_keys),
                inserted_sequence_numbers=frozenset(inserted_records),
                seq_conflicts=len(conflicts),
            )

        return self._call(run)

    def _prepare_staging(self, conn: psycopg.Connection[Any]) -> None:
        """Create this session's staging tables once (committed on their own, so a
        rolled-back batch does not take them away). ``INCLUDING GENERATED``: the
        anomalies' ``event_day`` is computed, not copied. ``ON COMMIT DELETE ROWS`` empties
        them at each commit; reusing them avoids the catalog churn that a
        ``CREATE TEMP TABLE ... ON COMMIT DROP`` per batch causes."""
        if conn in self._staged:
            return
        for stage, table in (
            (_STAGE_READINGS, "readings"),
            (_STAGE_ANOMALIES, "anomalies"),
            (_STAGE_DEAD_LETTERS, "dead_letters"),
        ):
            conn.execute(
                sql.SQL(
                    "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING GENERATED)"
                    " ON COMMIT DELETE ROWS"
                ).format(sql.Identifier(stage), sql.Identifier(PG_SCHEMA, table))
            )
        self._staged.add(conn)

    # -- leases ----------------------------------------------------------------------

    def sync_shards(self, shards: Iterable[ShardSpec]) -> int:
        """Upsert one lease row per listed shard (from ListShards); returns how many
        rows were new. Parent links are updated if they changed; ownership,
        checkpoints and fencing are never touched here."""
        specs = [(sid, list(parents), adjacent) for sid, parents, adjacent in shards]
        if not specs:
            return 0
        ids = [s[0] for s in specs]
        # text[] per row cannot go through unnest of a 2-D array (it flattens);
        # encode each row's parents as a JSON array instead.
        parents = [Jsonb(s[1]) for s in specs]
        adjacent = [s[2] for s in specs]

        def run(conn: psycopg.Connection[Any]) -> int:
            cur = conn.execute(
                sql.SQL(
                    "INSERT INTO {t} (shard_id, parent_shard_ids, adjacent_parent)"
                    " SELECT s.id, ARRAY(SELECT jsonb_array_elements_text(s.parents)), s.adjacent"
                    " FROM unnest(%s::text[], %s::jsonb[], %s::text[]) AS s(id, parents, adjacent)"
                    " ON CONFLICT (shard_id) DO UPDATE"
                    " SET parent_shard_ids = EXCLUDED.parent_shard_ids,"
                    "     adjacent_parent = EXCLUDED.adjacent_parent, updated_at = now()"
                    " WHERE (t.parent_shard_ids, t.adjacent_parent)"
                    "       IS DISTINCT FROM (EXCLUDED.parent_shard_ids, EXCLUDED.adjacent_parent)"
                    " RETURNING (xmax = 0) AS inserted"
                ).format(t=sql.SQL("{} AS t").format(_table(SHARD_LEASES_TABLE))),
                (ids, parents, adjacent),
            )
            return sum(1 for (inserted,) in cur if inserted)

        return self._call(run)

    def list_leases(self) -> list[LeaseRow]:
        """Every lease row, with the database clock for expiry decisions."""

        def run(conn: psycopg.Connection[Any]) -> list[LeaseRow]:
            cur = conn.execute(
                sql.SQL(
                    "SELECT shard_id, parent_shard_ids, adjacent_parent, owner, expires_at,"
                    " fencing, checkpoint, finished, updated_at, now()"
                    " FROM {} ORDER BY shard_id"
                ).format(_table(SHARD_LEASES_TABLE))
            )
            return [
                LeaseRow(
                    shard_id=r[0],
                    parent_shard_ids=tuple(r[1]),
                    adjacent_parent=r[2],
                    owner=r[3],
                    expires_at=r[4],
                    fencing=r[5],
                    checkpoint=r[6],
                    finished=r[7],
                    updated_at=r[8],
                    db_now=r[9],
                )
                for r in cur
            ]

        return self._call(run)

    def try_acquire(
        self,
        shard_id: str,
        owner: str,
        lease_duration_s: float,
        expected_fencing: int | None = None,
        *,
        steal: bool = False,
        create: bool = True,
    ) -> LeaseToken | None:
        """Take the lease by compare-and-set; ``None`` if someone else has it.

        Succeeds only if the shard is not finished and is free (never owned,
        released, or expired by the database clock), and, when ``expected_fencing``
        is given, its fencing counter still has that value. ``steal=True`` (requires
        ``expected_fencing``) takes it from a live owner, whose next commit then
        fails the fencing check. Every acquisition increments the fencing counter.
        With ``create`` a missing row is inserted first (shard not synced yet).
        """
        if steal and expected_fencing is None:
            raise ValueError("steal=True needs expected_fencing (compare-and-set)")

        def run(conn: psycopg.Connection[Any]) -> LeaseToken | None:
            # A row locked by a peer frozen inside its commit must not stall the
            # caller's whole lease loop: give up on it for this round instead.
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(LEASE_LOCK_TIMEOUT))
                    if create:
                        conn.execute(
                            sql.SQL(
                                "INSERT INTO {} (shard_id) VALUES (%s) ON CONFLICT DO NOTHING"
                            ).format(_table(SHARD_LEASES_TABLE)),
                            (shard_id,),
                        )
                    row = conn.execute(
                        sql.SQL(
                            "UPDATE {} SET owner = %(owner)s, fencing = fencing + 1,"
                            " expires_at = now() + make_interval(secs => %(duration)s),"
                            " updated_at = now()"
                            " WHERE shard_id = %(shard)s AND NOT finished"
                            " AND (%(steal)s OR owner IS NULL"
                            "      OR expires_at IS NULL OR expires_at <= now())"
                            " AND (%(expected)s::bigint IS NULL OR fencing = %(expected)s::bigint)"
                            " RETURNING fencing"
                        ).format(_table(SHARD_LEASES_TABLE)),
                        {
                            "owner": owner,
                            "duration": float(lease_duration_s),
                            "shard": shard_id,
                            "steal": steal,
                            "expected": expected_fencing,
                        },
                    ).fetchone()
                    return None if row is None else LeaseToken(shard_id, owner, int(row[0]))
            except psycopg.errors.LockNotAvailable:
                log.info(
                    "lease row locked by another session; skipped this round",
                    extra={"event": "lease_row_locked", "shard_id": shard_id},
                )
                return None

        return self._call(run)

    def renew(
        self, tokens: Sequence[LeaseToken], lease_duration_s: float
    ) -> tuple[list[LeaseToken], list[LeaseToken]]:
        """Extend every lease still held (same owner and fencing, not expired), in
        one statement. Returns (renewed, lost): a lost lease must be dropped (its
        shard's batch in hand will fail its commit anyway)."""
        if not tokens:
            return [], []

        def run(conn: psycopg.Connection[Any]) -> set[LeaseToken]:
            cur = conn.execute(
                sql.SQL(
                    "UPDATE {} AS l SET expires_at = now() + make_interval(secs => %s),"
                    " updated_at = now()"
                    " FROM unnest(%s::text[], %s::text[], %s::bigint[])"
                    "      AS t(shard_id, owner, fencing)"
                    " WHERE l.shard_id = t.shard_id AND l.owner = t.owner"
                    " AND l.fencing = t.fencing AND l.expires_at > now()"
                    " RETURNING l.shard_id, l.owner, l.fencing"
                ).format(_table(SHARD_LEASES_TABLE)),
                (
                    float(lease_duration_s),
                    [t.shard_id for t in tokens],
                    [t.owner for t in tokens],
                    [t.fencing for t in tokens],
                ),
            )
            return {LeaseToken(r[0], r[1], int(r[2])) for r in cur}

        still_held = self._call(run)
        renewed = [t for t in tokens if t in still_held]
        lost = [t for t in tokens if t not in still_held]
        return renewed, lost

    def release(self, token: LeaseToken) -> bool:
        """Give the lease up now (owner NULL, expiry now) so a peer takes it at
        once; False if it was no longer ours. Checkpoint and fencing stay."""

        def run(conn: psycopg.Connection[Any]) -> bool:
            cur = conn.execute(
                sql.SQL(
                    "UPDATE {} SET owner = NULL, expires_at = now(), updated_at = now()"
                    " WHERE shard_id = %s AND owner = %s AND fencing = %s"
                ).format(_table(SHARD_LEASES_TABLE)),
                (token.shard_id, token.owner, token.fencing),
            )
            return cur.rowcount == 1

        return self._call(run)

    def checkpoint_of(self, shard_id: str) -> str | None:
        """The last committed Kinesis sequence number of a shard (None: none yet)."""

        def run(conn: psycopg.Connection[Any]) -> str | None:
            row = conn.execute(
                sql.SQL("SELECT checkpoint FROM {} WHERE shard_id = %s").format(
                    _table(SHARD_LEASES_TABLE)
                ),
                (shard_id,),
            ).fetchone()
            return None if row is None else row[0]

        return self._call(run)

    def heartbeat(self, worker_id: str) -> None:
        """Record that this worker is alive (database clock)."""
        self._call(
            lambda c: c.execute(
                sql.SQL(
                    "INSERT INTO {} (worker_id) VALUES (%s)"
                    " ON CONFLICT (worker_id) DO UPDATE SET last_seen = now()"
                ).format(_table(WORKERS_TABLE)),
                (worker_id,),
            )
        )

    def live_workers(self, within_s: float) -> list[str]:
        """Workers whose last heartbeat is at most ``within_s`` seconds old, sorted."""
        return self._call(
            lambda c: [
                r[0]
                for r in c.execute(
                    sql.SQL(
                        "SELECT worker_id FROM {}"
                        " WHERE last_seen > now() - make_interval(secs => %s) ORDER BY worker_id"
                    ).format(_table(WORKERS_TABLE)),
                    (float(within_s),),
                )
            ]
        )

    def remove_worker(self, worker_id: str) -> None:
        """Forget a worker at shutdown, so peers rebalance without waiting."""
        self._call(
            lambda c: c.execute(
                sql.SQL("DELETE FROM {} WHERE worker_id = %s").format(_table(WORKERS_TABLE)),
                (worker_id,),
            )
        )

    # -- reads -----------------------------------------------------------------------

    def latest_per_device(self) -> dict[str, AcceptedReading]:
        """The newest reading, by (event_ts, seq), of every device (Redis reconciliation)."""
        return self._call(postgres_queries.latest_per_device)

    def stored_keys(self, device_ids: Iterable[str] | None = None) -> set[tuple[str, int]]:
        """(device_id, seq) of every stored reading (optionally of some devices)."""
        return self._call(lambda c: postgres_queries.stored_keys(c, device_ids))

    def count_readings(self) -> int:
        return self._call(postgres_queries.count_readings)

    def count_dead_letters(self, reason: str | None = None) -> int:
        return self._call(lambda c: postgres_queries.count_dead_letters(c, reason))

    def run_query(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run any :mod:`processor.postgres_queries` helper on a pooled connection."""
        return self._call(fn)


def _prefixed(alias: str, columns: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(alias, c) for c in columns)


# Duplicates within one batch (a producer retry landing in the same GetRecords page)
# must be collapsed first: the join below would otherwise insert both copies. (The
# core already does it and dead-letters in-batch conflicts; this is the guard.)
# The key's event day is the UTC day of event_ts: the day of the readings partition.
_INSERT_READINGS_SQL: Final = sql.SQL(
    """
WITH staged AS (
    SELECT DISTINCT ON (device_id, boot, seq, event_day) {cols}, event_day
    FROM (SELECT *, (event_ts AT TIME ZONE 'UTC')::date AS event_day FROM {stage}) t
    -- lowest Kinesis sequence number first (decimal strings: compare length, then text)
    ORDER BY device_id, boot, seq, event_day, length(sequence_number), sequence_number
), new_keys AS (
    INSERT INTO {keys} (device_id, boot, seq, event_day, event_ts)
    SELECT device_id, boot, seq, event_day, event_ts FROM staged
    ON CONFLICT (device_id, boot, seq, event_day) DO NOTHING
    RETURNING device_id, boot, seq, event_day
)
INSERT INTO {readings} ({cols})
SELECT {s_cols}
FROM staged s JOIN new_keys k
  ON k.device_id = s.device_id AND k.boot = s.boot AND k.seq = s.seq
 AND k.event_day = s.event_day
RETURNING device_id, seq, sequence_number
"""
).format(
    cols=_columns(READINGS_COPY_COLUMNS),
    stage=sql.Identifier(_STAGE_READINGS),
    keys=_table(READING_KEYS_TABLE),
    readings=_table(READINGS_TABLE),
    s_cols=_prefixed("s", READINGS_COPY_COLUMNS),
)

# Staged readings whose key is stored (by an earlier commit, or by this one for
# another record) with another payload from another Kinesis record: seq_conflicts.
# Same Kinesis record = a replay of our own; same payload = an exact re-send.
_SEQ_CONFLICTS_SQL: Final = sql.SQL(
    """
SELECT s.sequence_number, r.shard_id, r.sequence_number, r.event_ts, r.value, r.status
FROM {stage} s
JOIN {keys} k
  ON k.device_id = s.device_id AND k.boot = s.boot AND k.seq = s.seq
 AND k.event_day = (s.event_ts AT TIME ZONE 'UTC')::date
JOIN {readings} r
  ON r.device_id = k.device_id AND r.event_ts = k.event_ts AND r.boot = k.boot
 AND r.seq = k.seq
WHERE (r.shard_id, r.sequence_number) IS DISTINCT FROM (s.shard_id, s.sequence_number)
  AND (r.event_ts, r.value, r.status, r.facility, r.line, r.sensor_type, r.unit)
      IS DISTINCT FROM (s.event_ts, s.value, s.status, s.facility, s.line, s.sensor_type, s.unit)
"""
).format(
    stage=sql.Identifier(_STAGE_READINGS),
    keys=_table(READING_KEYS_TABLE),
    readings=_table(READINGS_TABLE),
)


def _seq_conflict_row(
    accepted: AcceptedReading, stored: Sequence[Any], received_at: datetime
) -> tuple[Any, ...]:
    """A ``seq_conflict`` dead-letter row (DEAD_LETTERS_COPY_COLUMNS order): the new
    reading re-encoded as its producer sent it (the raw bytes are not kept past
    validation; the encoding is canonical and lossless for every field), the stored
    reading's place and values in the detail."""
    shard_id, sequence_number, event_ts, value, status = stored
    r = accepted.reading
    detail = (
        f"(device_id, boot, seq) = ({r.device_id}, {r.series}, {r.seq}) already stored on "
        f"event day {r.ts.date().isoformat()} from {shard_id} sequence number "
        f"{sequence_number} (ts {event_ts.isoformat()}, value {value}, status {status}); "
        f"this record: ts {r.ts.isoformat()}, value {r.value}, status {r.status}"
    )
    return _strip_nul(
        (
            accepted.shard_id,
            accepted.sequence_number,
            r.device_id,
            encode_reading(r),
            RejectReason.SEQ_CONFLICT.value,
            detail if len(detail) <= MAX_DETAIL_CHARS else detail[: MAX_DETAIL_CHARS - 3] + "...",
            accepted.arrival,
            received_at,
        )
    )


_INSERT_ANOMALIES_SQL: Final = sql.SQL(
    """
INSERT INTO {anomalies} ({cols})
SELECT {a_cols}
FROM {stage} a
WHERE a.anomaly_type = 'silent'
   OR EXISTS (
       SELECT 1 FROM {readings_stage} s
       WHERE s.sequence_number = ANY(%s::text[])
         AND s.device_id = a.device_id AND s.boot = a.boot AND s.seq = a.seq
         AND s.event_ts = a.event_ts)
ON CONFLICT (device_id, boot, seq, anomaly_type, event_day) DO NOTHING
"""
).format(
    anomalies=_table(ANOMALIES_TABLE),
    cols=_columns(ANOMALIES_COPY_COLUMNS),
    a_cols=_prefixed("a", ANOMALIES_COPY_COLUMNS),
    stage=sql.Identifier(_STAGE_ANOMALIES),
    readings_stage=sql.Identifier(_STAGE_READINGS),
)

_INSERT_DEAD_LETTERS_SQL: Final = sql.SQL(
    """
INSERT INTO {dead_letters} ({cols})
SELECT {cols} FROM {stage}
ON CONFLICT (shard_id, sequence_number) DO NOTHING
"""
).format(
    dead_letters=_table(DEAD_LETTERS_TABLE),
    cols=_columns(DEAD_LETTERS_COPY_COLUMNS),
    stage=sql.Identifier(_STAGE_DEAD_LETTERS),
)


def _copy(
    conn: psycopg.Connection[Any],
    table: str,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), _columns(columns))
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _strip_nul(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # PostgreSQL text cannot hold NUL; a poison record's detail or partition key
    # might. A COPY failing on it would stall the shard, which is what dead letters
    # exist to prevent. (payload is bytes and keeps every byte.)
    return tuple(
        v.replace("\x00", "\\x00") if isinstance(v, str) and "\x00" in v else v for v in row
    )


def _one(cur: psycopg.Cursor[Any]) -> Any:
    row = cur.fetchone()
    assert row is not None
    return row[0]


# --- retry ----------------------------------------------------------------------------


@dataclass(slots=True)
class RetryPolicy:
    """Exponential back-off with full jitter for :func:`with_pg_retry`
    (:mod:`processor.core.backoff`, the processor's one policy)."""

    initial_delay_s: float = 0.2
    max_delay_s: float = 5.0
    #: None: retry until ``stop`` is set.
    max_attempts: int | None = None
    sleep: Callable[[float], None] = field(default=time.sleep)

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.initial_delay_s, self.max_delay_s, Jitter.FULL)


def with_pg_retry(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy | None = None,
    stop: threading.Event | None = None,
    on_retry: Callable[[int, StoreUnavailable, float], None] | None = None,
) -> T:
    """Call ``fn`` until it does not raise :class:`StoreUnavailable`.

    Other errors (``LeaseLost``, bugs) propagate at once. When ``stop`` is set
    (SIGTERM) or ``max_attempts`` is reached, the last ``StoreUnavailable`` is
    raised. ``on_retry(attempt, error, delay)`` is for logs and metrics.
    """
    policy = policy or RetryPolicy()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except StoreUnavailable as exc:
            if (policy.max_attempts is not None and attempt >= policy.max_attempts) or (
                stop is not None and stop.is_set()
            ):
                raise
            # Full jitter spreads reconnects of many workers after a failover.
            delay = policy.backoff.delay(attempt - 1, random)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            else:
                log.warning(
                    "PostgreSQL unavailable (attempt %d), retrying in %.2fs: %s",
                    attempt,
                    delay,
                    exc,
                )
            if stop is not None:
                if stop.wait(delay):
                    raise
            else:
                policy.sleep(delay)
