"""The processor's PostgreSQL edge, one module per job.

Why: each batch is one transaction that writes readings, anomalies and dead
letters and advances the shard checkpoint only while this worker still holds the
lease with the fencing counter it acquired. A worker that paused past its lease and
lost it to a peer therefore commits nothing, and a batch is either fully stored
with its checkpoint or not at all, so a replay after any crash is harmless.
See docs/PROCESSOR-STORAGE.md for the tables and the exactly-once argument.

=====================  ==============================================================
module                 job
=====================  ==============================================================
``errors``             the exceptions and what a caller does with each
``identifiers``        the contract's table and column names as SQL identifiers
``connection``         target, login with Secrets Manager credentials (rotation), TLS,
                       pool, client-side call deadline
``migrations``         the shipped migration files, applying them, the start-up check
``partitions``         the readings' daily partitions
``batch_writer``       the exactly-once batch commit and its SQL
``leases``             the shard lease table and the live-worker table
``reads``              read-only queries (reconciliation, verifier, tests)
``retry``              calling the store while PostgreSQL is down (back-off)
``store``              :class:`PostgresStore`, the jobs composed on one pool
=====================  ==============================================================

The names most callers need are re-exported here.
"""

from __future__ import annotations

from processor.postgres.batch_writer import CommitResult
from processor.postgres.connection import DbTarget, PgConnector
from processor.postgres.errors import (
    AuthenticationFailed,
    LeaseLost,
    MigrationError,
    SchemaBehind,
    StoreError,
    StoreUnavailable,
)
from processor.postgres.migrations import Migration, load_migrations
from processor.postgres.retry import RetryPolicy, with_pg_retry
from processor.postgres.store import PostgresStore

__all__ = [
    "AuthenticationFailed",
    "CommitResult",
    "DbTarget",
    "LeaseLost",
    "Migration",
    "MigrationError",
    "PgConnector",
    "PostgresStore",
    "RetryPolicy",
    "SchemaBehind",
    "StoreError",
    "StoreUnavailable",
    "load_migrations",
    "with_pg_retry",
]
