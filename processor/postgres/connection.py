"""Connections to PostgreSQL: where to connect, logging in with credentials from
Secrets Manager (refreshed when a rotation makes the login fail), TLS and keepalive
options, a small pool, and a client-side deadline on every call.

Separate from what the edge does with a connection (migrations, the batch commit,
leases, reads): those modules receive a :class:`PooledConnections` and call
:meth:`PooledConnections.call` with a function of a connection, so this is the only
module that knows how a connection is opened, reused, timed out and classified
when it fails (:mod:`processor.error_kinds`).

* :class:`DbTarget`: host, port, database, secret ARN, TLS mode (no credentials).
* :class:`PgConnector`: opens autocommit connections from a target + Secrets Manager,
  refreshing the secret and reconnecting once when the login fails (rotation).
* :class:`PooledConnections`: a connection per call from a pool, the call's
  deadline enforced by a watchdog, connection-level failures raised as
  :class:`~processor.postgres.errors.StoreUnavailable`.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

import psycopg

from processor import client_timeouts
from processor.error_kinds import ErrorKind, classify
from processor.postgres.errors import (
    AuthenticationFailed,
    StoreError,
    StoreUnavailable,
)
from processor.secrets import DbCredentials, SecretsError, SecretsProvider, SecretsUnavailable

if TYPE_CHECKING:
    from processor.contract.environment import ProcessorSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Reuse an idle pooled connection without a ping if it was used this recently.
_PING_AFTER_IDLE_S: Final = 1.0


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


def scalar(cur: psycopg.Cursor[Any]) -> Any:
    """The first column of the cursor's first row (the statement returns one)."""
    row = cur.fetchone()
    assert row is not None
    return row[0]


class PooledConnections:
    """A connection per call from a small pool, under a client-side deadline.

    Thread-safe: the worker calls the store from several threads (batch commits per
    shard, lease renewal in the background); each call borrows its own connection,
    so their transactions never interleave.
    """

    def __init__(self, connector: PgConnector, max_idle_connections: int = 4) -> None:
        self._connector = connector
        self._watchdog = _Watchdog()
        self._pool = _Pool(connector, max_idle_connections, self._watchdog)
        #: Per-thread override of the call deadline (see :meth:`call_deadline`).
        self._deadline = threading.local()

    @property
    def connector(self) -> PgConnector:
        return self._connector

    def close(self) -> None:
        self._pool.close()

    def reset(self) -> None:
        """Drop the idle pooled connections (new logins on the next calls)."""
        self._pool.reset()

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

    def call(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``fn`` on a pooled connection (see :meth:`_connection` for the failures)."""
        with self._connection() as conn:
            return fn(conn)

    def ping(self) -> bool:
        """True when PostgreSQL answers (readiness)."""
        try:
            return self.call(lambda c: c.execute("SELECT 1").fetchone()) == (1,)
        except StoreError:
            return False

    def db_now(self) -> datetime:
        """The database clock (leases expire by it)."""
        return self.call(lambda c: scalar(c.execute("SELECT now()")))
