"""The processor's PostgreSQL adapter in one object: the jobs of the edge composed on
one pool of connections.

Usage (the worker loop)::

    secrets = SecretsProvider.from_settings(settings)
    store = PostgresStore.from_settings(settings, secrets)
    store.require_schema()                # at start-up (the migrate command migrates)
    store.ensure_partitions()             # at start-up, then every hour or so
    store.sync_shards([(shard_id, parent_ids, adjacent_parent), ...])
    token = store.try_acquire(shard_id, worker_id, 10.0, expected_fencing=row.fencing)
    result = store.commit_batch(batch, token, processed_at)   # may raise LeaseLost
    # then, after the commit, update Redis (result.inserted_keys, result.devices)

Each method hands the call to the module that does that job, where its docstring
and SQL live:

* schema: ``migrate``, ``require_schema``, ``applied_migrations``
  (:mod:`processor.postgres.migrations`); ``ensure_partitions``
  (:mod:`processor.postgres.partitions`);
* ``commit_batch`` (:mod:`processor.postgres.batch_writer`);
* leases: ``sync_shards``, ``list_leases``, ``try_acquire``, ``renew``, ``release``,
  ``checkpoint_of``; workers: ``heartbeat``, ``live_workers``, ``remove_worker``
  (:mod:`processor.postgres.leases`);
* reads: ``latest_per_device``, ``stored_keys``, ``count_readings``,
  ``count_dead_letters``, and ``run_query(fn)`` for any :mod:`processor.postgres.reads`
  helper;
* connections: ``ping``, ``db_now``, ``call_deadline``, ``deadline_hits``,
  ``reset_connections``, ``close`` (:mod:`processor.postgres.connection`).

Why one object on top of the modules: the worker, the API and the harness hold one
store with one pool and one watchdog; the split is by job for the reader of the
code, not for the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg

from processor.core.model import AcceptedReading, LeaseToken, ProcessedBatch
from processor.postgres import reads
from processor.postgres.batch_writer import BatchWriter, CommitResult
from processor.postgres.connection import DbTarget, PgConnector, PooledConnections
from processor.postgres.leases import LeaseRow, LeaseStore, ShardSpec
from processor.postgres.migrations import SchemaMigrations
from processor.postgres.partitions import (
    DEFAULT_PARTITION_DAYS_AHEAD,
    DEFAULT_PARTITION_DAYS_BACK,
    Partitions,
)
from processor.secrets import SecretsProvider

if TYPE_CHECKING:
    from processor.contract.environment import ProcessorSettings

T = TypeVar("T")


class PostgresStore:
    """The processor's PostgreSQL adapter. Thread-safe (a connection per call)."""

    def __init__(self, connector: PgConnector, *, max_idle_connections: int = 4) -> None:
        self._db = PooledConnections(connector, max_idle_connections)
        self._migrations = SchemaMigrations(self._db)
        self._partitions = Partitions(self._db)
        self._batches = BatchWriter(self._db)
        self._leases = LeaseStore(self._db)

    @classmethod
    def from_settings(
        cls, settings: ProcessorSettings, secrets: SecretsProvider, **kwargs: Any
    ) -> PostgresStore:
        return cls(PgConnector(DbTarget.from_settings(settings), secrets), **kwargs)

    @property
    def connector(self) -> PgConnector:
        return self._db.connector

    def __repr__(self) -> str:
        return f"PostgresStore({self._db.connector!r})"

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def reset_connections(self) -> None:
        """Drop the idle pooled connections (new logins on the next calls)."""
        self._db.reset()

    # -- connections (processor.postgres.connection) -----------------------------------

    def call_deadline(self, seconds: float) -> AbstractContextManager[None]:
        """See :meth:`PooledConnections.call_deadline`."""
        return self._db.call_deadline(seconds)

    @property
    def deadline_hits(self) -> int:
        """Calls ended by the client-side deadline so far."""
        return self._db.deadline_hits

    def ping(self) -> bool:
        """True when PostgreSQL answers (readiness)."""
        return self._db.ping()

    def db_now(self) -> datetime:
        """The database clock (leases expire by it)."""
        return self._db.db_now()

    # -- schema (processor.postgres.migrations, processor.postgres.partitions) ---------

    def migrate(self) -> list[int]:
        """See :meth:`SchemaMigrations.migrate`."""
        return self._migrations.migrate()

    def require_schema(self) -> list[int]:
        """See :meth:`SchemaMigrations.require_schema`."""
        return self._migrations.require_schema()

    def applied_migrations(self) -> list[int]:
        return self._migrations.applied_migrations()

    def ensure_partitions(
        self,
        now: datetime | None = None,
        *,
        days_back: int = DEFAULT_PARTITION_DAYS_BACK,
        days_ahead: int = DEFAULT_PARTITION_DAYS_AHEAD,
    ) -> int:
        """See :meth:`Partitions.ensure_partitions`."""
        return self._partitions.ensure_partitions(now, days_back=days_back, days_ahead=days_ahead)

    # -- the batch commit (processor.postgres.batch_writer) ----------------------------

    def commit_batch(
        self,
        batch: ProcessedBatch,
        lease: LeaseToken,
        processed_at: datetime | None = None,
    ) -> CommitResult:
        """See :meth:`BatchWriter.commit_batch`."""
        return self._batches.commit_batch(batch, lease, processed_at)

    # -- leases and workers (processor.postgres.leases) --------------------------------

    def sync_shards(self, shards: Iterable[ShardSpec]) -> int:
        """See :meth:`LeaseStore.sync_shards`."""
        return self._leases.sync_shards(shards)

    def list_leases(self) -> list[LeaseRow]:
        """See :meth:`LeaseStore.list_leases`."""
        return self._leases.list_leases()

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
        """See :meth:`LeaseStore.try_acquire`."""
        return self._leases.try_acquire(
            shard_id, owner, lease_duration_s, expected_fencing, steal=steal, create=create
        )

    def renew(
        self, tokens: Sequence[LeaseToken], lease_duration_s: float
    ) -> tuple[list[LeaseToken], list[LeaseToken]]:
        """See :meth:`LeaseStore.renew`."""
        return self._leases.renew(tokens, lease_duration_s)

    def release(self, token: LeaseToken) -> bool:
        """See :meth:`LeaseStore.release`."""
        return self._leases.release(token)

    def checkpoint_of(self, shard_id: str) -> str | None:
        """See :meth:`LeaseStore.checkpoint_of`."""
        return self._leases.checkpoint_of(shard_id)

    def heartbeat(self, worker_id: str) -> None:
        """See :meth:`LeaseStore.heartbeat`."""
        self._leases.heartbeat(worker_id)

    def live_workers(self, within_s: float) -> list[str]:
        """See :meth:`LeaseStore.live_workers`."""
        return self._leases.live_workers(within_s)

    def remove_worker(self, worker_id: str) -> None:
        """See :meth:`LeaseStore.remove_worker`."""
        self._leases.remove_worker(worker_id)

    # -- reads (processor.postgres.reads) ----------------------------------------------

    def latest_per_device(self) -> dict[str, AcceptedReading]:
        """The newest reading, by (event_ts, seq), of every device (Redis reconciliation)."""
        return self._db.call(reads.latest_per_device)

    def stored_keys(self, device_ids: Iterable[str] | None = None) -> set[tuple[str, int]]:
        """(device_id, seq) of every stored reading (optionally of some devices)."""
        return self._db.call(lambda c: reads.stored_keys(c, device_ids))

    def count_readings(self) -> int:
        return self._db.call(reads.count_readings)

    def count_dead_letters(self, reason: str | None = None) -> int:
        return self._db.call(lambda c: reads.count_dead_letters(c, reason))

    def run_query(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run any :mod:`processor.postgres.reads` helper on a pooled connection."""
        return self._db.call(fn)
