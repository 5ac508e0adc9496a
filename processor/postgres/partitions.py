"""Daily partitions of ``tap.readings``: creating the missing ones around today, and
reading which exist.

Separate because it is a maintenance job with its own rhythm (at start-up, then
hourly from the worker's chores) and its own lock discipline (a short
``lock_timeout``: creating a partition briefly locks the readings table, and the
batch commits must not queue behind it). The creation itself is the SQL function
:data:`~processor.contract.storage.ENSURE_PARTITIONS_FUNCTION` of the migrations.

* :class:`Partitions`: ``ensure_partitions(now=None, *, days_back, days_ahead)``.
* :func:`reading_partitions`, :func:`rows_in_default_partition`: read-only queries
  taking an open connection (tests and the verifier).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg import sql

from processor.contract.storage import (
    ENSURE_PARTITIONS_FUNCTION,
    READINGS_DEFAULT_PARTITION,
    READINGS_TABLE,
)
from processor.postgres.connection import PooledConnections, scalar
from processor.postgres.identifiers import table_identifier

Connection = psycopg.Connection[Any]
#: Partitions kept behind today: validation accepts event times up to 7 days before
#: arrival, so every accepted reading finds its daily partition.
DEFAULT_PARTITION_DAYS_BACK: Final = 8
#: Partitions created ahead of today (the periodic job can be down for a week).
DEFAULT_PARTITION_DAYS_AHEAD: Final = 7


class Partitions:
    """Creates the readings' daily partitions on the store's connections."""

    def __init__(self, db: PooledConnections) -> None:
        self._db = db

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
                    today: date = scalar(conn.execute("SELECT (now() AT TIME ZONE 'UTC')::date"))
                else:
                    today = now.astimezone(UTC).date()
                start = today - timedelta(days=days_back)
                return int(
                    scalar(
                        conn.execute(
                            sql.SQL("SELECT {}(%s, %s)").format(
                                table_identifier(ENSURE_PARTITIONS_FUNCTION)
                            ),
                            (start, days_back + days_ahead + 1),
                        )
                    )
                )

        return self._db.call(run)


def reading_partitions(conn: Connection) -> list[str]:
    """Names of the readings' partitions (daily ones and the default one), sorted."""
    return [
        name
        for (name,) in conn.execute(
            "SELECT c.relname FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = %s::regclass ORDER BY c.relname",
            (READINGS_TABLE,),
        )
    ]


def rows_in_default_partition(conn: Connection) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(table_identifier(READINGS_DEFAULT_PARTITION))
    ).fetchone()
    return int(row[0]) if row else 0
