"""The lease store: the shard lease table and the live-worker table.

Separate because it is the coordination between workers, with its own rules: every
write is a compare-and-set on the owner and the fencing counter, expiry is judged by
the database's clock, and a row lock held by a frozen peer is waited for at most
:data:`LEASE_LOCK_TIMEOUT`. The pure decision of which shards to take or give up is
:func:`processor.core.leases.plan_leases`; this module only reads its inputs and
applies its outcome. The batch commit's fencing update is in
:mod:`processor.postgres.batch_writer` (it must be in the batch's transaction).

* :class:`LeaseStore`: ``sync_shards``, ``list_leases``, ``try_acquire``, ``renew``,
  ``release``, ``checkpoint_of``; workers: ``heartbeat``, ``live_workers``,
  ``remove_worker``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from processor.contract.storage import SHARD_LEASES_TABLE, WORKERS_TABLE
from processor.core.leases import LeaseRow
from processor.core.model import LeaseToken
from processor.postgres.connection import PooledConnections
from processor.postgres.identifiers import table_identifier as _table

log = logging.getLogger(__name__)

#: How long taking a lease waits for a row lock before leaving the shard for the next
#: planning round (see ``try_acquire``).
LEASE_LOCK_TIMEOUT: Final = sql.Literal("100ms")


#: What :meth:`LeaseStore.sync_shards` takes: (shard_id, parent_shard_ids, adjacent_parent).
ShardSpec = tuple[str, Sequence[str], str | None]


class LeaseStore:
    """Reads and writes lease and worker rows on the store's connections."""

    def __init__(self, db: PooledConnections) -> None:
        self._db = db

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

        return self._db.call(run)

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

        return self._db.call(run)

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

        return self._db.call(run)

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

        still_held = self._db.call(run)
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

        return self._db.call(run)

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

        return self._db.call(run)

    def heartbeat(self, worker_id: str) -> None:
        """Record that this worker is alive (database clock)."""
        self._db.call(
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
        return self._db.call(
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
        self._db.call(
            lambda c: c.execute(
                sql.SQL("DELETE FROM {} WHERE worker_id = %s").format(_table(WORKERS_TABLE)),
                (worker_id,),
            )
        )
