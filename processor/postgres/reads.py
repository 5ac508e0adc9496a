"""Read-only queries over the processor's tables, for Redis reconciliation, the e2e
verifier, tests and the data team's examples (docs/PROCESSOR-STORAGE.md).

Separate from the writers because nothing here writes and every function takes an
open psycopg connection (any role that can read the schema
:data:`~processor.contract.storage.PG_SCHEMA`): the verifier uses its own
administrative connection, the processor its pooled one
(:meth:`processor.postgres.store.PostgresStore.run_query`). Table and column names
come from :mod:`processor.contract.storage`, composed with :mod:`psycopg.sql`
(:mod:`processor.postgres.identifiers`). The partition listings are in
:mod:`processor.postgres.partitions`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

import psycopg
from psycopg import sql

from processor.contract.record import BOOT_SCHEMA_VERSION, EquipmentStatus, Reading, SensorType
from processor.contract.storage import (
    ANOMALIES_COPY_COLUMNS,
    ANOMALIES_GENERATED_COLUMNS,
    ANOMALIES_TABLE,
    DEAD_LETTERS_COPY_COLUMNS,
    DEAD_LETTERS_TABLE,
    READING_KEYS_TABLE,
    READINGS_TABLE,
)
from processor.core.model import AcceptedReading
from processor.postgres.identifiers import column_list, table_identifier

Connection = psycopg.Connection[Any]


_READINGS: Final = table_identifier(READINGS_TABLE)
_READING_KEYS: Final = table_identifier(READING_KEYS_TABLE)
_ANOMALIES: Final = table_identifier(ANOMALIES_TABLE)
_DEAD_LETTERS: Final = table_identifier(DEAD_LETTERS_TABLE)

#: The columns :func:`_accepted` unpacks, in its order.
_LATEST_COLUMNS: Final = (
    "device_id",
    "facility",
    "line",
    "sensor_type",
    "unit",
    "event_ts",
    "seq",
    "schema_version",
    "value",
    "status",
    "shard_id",
    "sequence_number",
    "arrival_ts",
    "boot",
)

# The newest (event_ts, seq) per device without reading every row: a "loose index
# scan" that hops from one device to the next on reading_keys_latest
# (device_id, event_ts DESC, seq DESC), then fetches each device's newest key and
# its row from the readings by primary key. Cost grows with the number of devices,
# not of readings, which matters once the table holds months of data.
_LATEST_PER_DEVICE: Final = sql.SQL(
    """
WITH RECURSIVE devices AS (
    (SELECT device_id FROM {keys} ORDER BY device_id LIMIT 1)
    UNION ALL
    SELECT (SELECT k.device_id FROM {keys} k
            WHERE k.device_id > d.device_id ORDER BY k.device_id LIMIT 1)
    FROM devices d WHERE d.device_id IS NOT NULL
)
SELECT {r_cols}
FROM devices d
CROSS JOIN LATERAL (
    SELECT k.device_id, k.event_ts, k.seq, k.boot FROM {keys} k
    WHERE k.device_id = d.device_id
    ORDER BY k.event_ts DESC, k.seq DESC LIMIT 1
) newest
JOIN {readings} r
  ON r.device_id = newest.device_id AND r.event_ts = newest.event_ts AND r.seq = newest.seq
 AND r.boot = newest.boot
WHERE d.device_id IS NOT NULL
"""
).format(keys=_READING_KEYS, readings=_READINGS, r_cols=column_list(_LATEST_COLUMNS, "r"))


def _accepted(row: tuple[Any, ...]) -> AcceptedReading:
    (device_id, facility, line, sensor_type, unit, event_ts, seq, schema_version, value,
     status, shard_id, sequence_number, arrival_ts, boot) = row  # fmt: skip
    reading = Reading(
        device_id=device_id,
        facility=facility,
        line=line,
        sensor_type=SensorType(sensor_type),
        unit=unit,
        ts=event_ts,
        seq=seq,
        schema_version=schema_version,
        value=value,
        status=None if status is None else EquipmentStatus(status),
        # Version 1 records carry no boot counter (stored as 0).
        boot=None if schema_version < BOOT_SCHEMA_VERSION else boot,
    )
    return AcceptedReading(
        reading=reading, shard_id=shard_id, sequence_number=sequence_number, arrival=arrival_ts
    )


def latest_per_device(conn: Connection) -> dict[str, AcceptedReading]:
    """Device id -> its newest stored reading by (event_ts, seq)."""
    return {row[0]: _accepted(row) for row in conn.execute(_LATEST_PER_DEVICE)}


def stored_keys(conn: Connection, device_ids: Iterable[str] | None = None) -> set[tuple[str, int]]:
    """(device_id, seq) of the stored readings (optionally of some devices).

    A set hides duplicates; the verifier checks :func:`duplicate_keys` as well.
    """
    if device_ids is None:
        cur = conn.execute(sql.SQL("SELECT device_id, seq FROM {}").format(_READINGS))
    else:
        cur = conn.execute(
            sql.SQL("SELECT device_id, seq FROM {} WHERE device_id = ANY(%s)").format(_READINGS),
            (list(device_ids),),
        )
    return {(device, seq) for device, seq in cur}


def duplicate_keys(conn: Connection) -> list[tuple[str, int, int]]:
    """(device_id, seq, copies) of every key stored more than once (must be empty).

    The key is (device_id, boot, seq, event day), as the reading keys decide it
    (migration 0005): a restarted sequence on another day is not a duplicate."""
    return [
        (device, seq, n)
        for device, seq, n in conn.execute(
            sql.SQL(
                "SELECT device_id, seq, count(*) FROM {}"
                " GROUP BY device_id, boot, seq, (event_ts AT TIME ZONE 'UTC')::date"
                " HAVING count(*) > 1 ORDER BY device_id, seq"
            ).format(_READINGS)
        )
    ]


def count_readings(conn: Connection) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_READINGS)).fetchone()
    return int(row[0]) if row else 0


def count_dead_letters(conn: Connection, reason: str | None = None) -> int:
    row = conn.execute(
        sql.SQL(
            "SELECT count(*) FROM {} WHERE %(reason)s::text IS NULL OR reason = %(reason)s"
        ).format(_DEAD_LETTERS),
        {"reason": reason},
    ).fetchone()
    return int(row[0]) if row else 0


def dead_letters_by_reason(conn: Connection) -> dict[str, int]:
    return {
        reason: int(n)
        for reason, n in conn.execute(
            sql.SQL("SELECT reason, count(*) FROM {} GROUP BY reason").format(_DEAD_LETTERS)
        )
    }


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A dead letter as stored: the fields in the table's COPY column order."""

    shard_id: str
    sequence_number: str
    partition_key: str
    payload: bytes
    reason: str
    detail: str
    arrival_ts: datetime
    received_at: datetime


def dead_letters(conn: Connection, shard_id: str | None = None) -> list[StoredDeadLetter]:
    """Dead letters (optionally of one shard), in shard and Kinesis order."""
    cur = conn.execute(
        sql.SQL(
            "SELECT {cols} FROM {table} WHERE %(shard)s::text IS NULL OR shard_id = %(shard)s"
            " ORDER BY shard_id, length(sequence_number), sequence_number"
        ).format(cols=column_list(DEAD_LETTERS_COPY_COLUMNS), table=_DEAD_LETTERS),
        {"shard": shard_id},
    )
    return [
        StoredDeadLetter(shard, seqno, key, bytes(payload), reason, detail, arrival, received)
        for shard, seqno, key, payload, reason, detail, arrival, received in cur
    ]


@dataclass(frozen=True, slots=True)
class StoredAnomaly:
    """An anomaly as stored: the COPY columns, then the generated ones, in that order."""

    device_id: str
    seq: int
    anomaly_type: str
    severity: str
    score: float
    explanation: str
    event_ts: datetime
    detected_at: datetime
    sensor_type: str
    value: float | None
    #: Migration 0007: with the seq and the event day, the anomaly's identity.
    boot: int = 0
    event_day: date | None = None


def anomalies(conn: Connection, device_id: str | None = None) -> list[StoredAnomaly]:
    cur = conn.execute(
        sql.SQL(
            "SELECT {cols} FROM {table} WHERE %(device)s::text IS NULL OR device_id = %(device)s"
            " ORDER BY device_id, seq, anomaly_type, boot, event_day"
        ).format(
            cols=column_list((*ANOMALIES_COPY_COLUMNS, *ANOMALIES_GENERATED_COLUMNS)),
            table=_ANOMALIES,
        ),
        {"device": device_id},
    )
    return [StoredAnomaly(*r) for r in cur]


def anomaly_counts_since(conn: Connection, since: datetime) -> dict[str, int]:
    """Anomalies with event time at or after ``since``, by type."""
    return {
        kind: int(n)
        for kind, n in conn.execute(
            sql.SQL(
                "SELECT anomaly_type, count(*) FROM {} WHERE event_ts >= %s GROUP BY anomaly_type"
            ).format(_ANOMALIES),
            (since,),
        )
    }
