"""The errors of the processor's PostgreSQL edge, and what a caller does with each.

Separate from the code that raises them because every job of the edge raises them
(connections, migrations, the batch commit, leases) and the callers (the worker,
the shard runner, the migrate command, :mod:`processor.error_kinds`) catch them
without needing the rest: importing this module opens nothing and imports no driver.

* :class:`StoreError` > :class:`StoreUnavailable` (transient: back off, do not
  advance anything) > :class:`AuthenticationFailed` and :class:`SchemaBehind`;
* :class:`LeaseLost` (fencing check failed, the batch was rolled back);
* :class:`MigrationError` (a migration file malformed or changed after it was applied).
"""

from __future__ import annotations

from processor.core.model import LeaseToken


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
