"""The exactly-once batch commit: one transaction that fences on the shard's lease,
stores a batch's readings, anomalies and dead letters, and advances the shard's
checkpoint.

Separate because it is the edge's hot path and its correctness argument (see
:meth:`BatchWriter.commit_batch` and docs/PROCESSOR-STORAGE.md): the order of the
statements, the staging tables reused per session and the SQL that de-duplicates
and finds ``seq_conflict`` readings belong together and to nothing else.

Why one transaction: a batch is either fully stored with its checkpoint or not at
all, so a replay after any crash is harmless; and the fencing update comes first,
so a worker that paused past its lease and lost it to a peer commits nothing.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
from psycopg import sql

from processor.contract.record import MAX_DETAIL_CHARS, RejectReason, encode_reading
from processor.contract.storage import (
    ANOMALIES_COPY_COLUMNS,
    ANOMALIES_TABLE,
    DEAD_LETTERS_COPY_COLUMNS,
    DEAD_LETTERS_TABLE,
    PG_SCHEMA,
    READING_KEYS_TABLE,
    READINGS_COPY_COLUMNS,
    READINGS_TABLE,
    SHARD_LEASES_TABLE,
)
from processor.core.batch import AnomalyIdentity, anomaly_rows, dead_letter_rows, reading_rows
from processor.core.model import AcceptedReading, LeaseToken, ProcessedBatch
from processor.postgres.connection import PooledConnections
from processor.postgres.errors import LeaseLost
from processor.postgres.identifiers import table_identifier as _table


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What one :meth:`BatchWriter.commit_batch` stored."""

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
    #: Identities of the anomalies this commit stored: the ones Redis may show.
    stored_anomalies: frozenset[AnomalyIdentity] = frozenset()

    @property
    def devices(self) -> tuple[str, ...]:
        """Devices with newly stored readings, sorted."""
        return tuple(sorted({device for device, _ in self.inserted_keys}))


_STAGE_READINGS: Final = "tap_stage_readings"
_STAGE_ANOMALIES: Final = "tap_stage_anomalies"
_STAGE_DEAD_LETTERS: Final = "tap_stage_dead_letters"


def _columns(columns: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


class BatchWriter:
    """Commits batches on the store's connections. Thread-safe (a connection per call)."""

    def __init__(self, db: PooledConnections) -> None:
        self._db = db
        # Connections whose session already has the temporary staging tables.
        self._staged: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()

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
           ``(device_id, boot, seq, event time)`` —, verdicts about a stored reading
           of an earlier batch (the shape tests judge a reading when the next ones
           arrive), and ``silent`` ones, which belong to no reading, ``ON CONFLICT
           (device_id, boot, seq, anomaly_type, event_day) DO NOTHING``: a replay's
           detectors may see a different history, but the first commit's verdict
           stands. ``RETURNING`` what was stored: Redis shows exactly that.
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

                stored_anomalies: set[AnomalyIdentity] = set()
                if anomalies:
                    _copy(conn, _STAGE_ANOMALIES, ANOMALIES_COPY_COLUMNS, anomalies)
                    stored_anomalies = {
                        (device, boot, seq, kind, ts)
                        for device, boot, seq, kind, ts in conn.execute(
                            _INSERT_ANOMALIES_SQL, (list(inserted_records),)
                        )
                    }

                stored_dead = 0
                if dead_letters:
                    _copy(conn, _STAGE_DEAD_LETTERS, DEAD_LETTERS_COPY_COLUMNS, dead_letters)
                    stored_dead = conn.execute(_INSERT_DEAD_LETTERS_SQL).rowcount

            return CommitResult(
                inserted=len(inserted_keys),
                duplicates=len(readings) - len(inserted_keys),
                anomalies=len(stored_anomalies),
                dead_letters=stored_dead,
                inserted_keys=frozenset(inserted_keys),
                inserted_sequence_numbers=frozenset(inserted_records),
                stored_anomalies=frozenset(stored_anomalies),
                seq_conflicts=len(conflicts),
            )

        return self._db.call(run)

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


# Kept: silent ones (no reading); those of a reading this batch stored; and verdicts
# about a reading of an earlier batch (the shape tests judge a reading when the next
# ones arrive) whose reading is stored. Not kept: those of a reading of this batch
# that was not new (a replay: the first commit's verdict stands) or of a reading never
# stored. RETURNING: exactly what Redis may show (processor.core.batch.committed_part).
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
   OR (NOT EXISTS (
           SELECT 1 FROM {readings_stage} s
           WHERE s.device_id = a.device_id AND s.boot = a.boot AND s.seq = a.seq
             AND s.event_ts = a.event_ts)
       AND EXISTS (
           SELECT 1 FROM {readings} r
           WHERE r.device_id = a.device_id AND r.event_ts = a.event_ts
             AND r.boot = a.boot AND r.seq = a.seq))
ON CONFLICT (device_id, boot, seq, anomaly_type, event_day) DO NOTHING
RETURNING device_id, boot, seq, anomaly_type, event_ts
"""
).format(
    anomalies=_table(ANOMALIES_TABLE),
    cols=_columns(ANOMALIES_COPY_COLUMNS),
    a_cols=_prefixed("a", ANOMALIES_COPY_COLUMNS),
    stage=sql.Identifier(_STAGE_ANOMALIES),
    readings_stage=sql.Identifier(_STAGE_READINGS),
    readings=_table(READINGS_TABLE),
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
