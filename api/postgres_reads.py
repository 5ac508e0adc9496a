"""PostgreSQL reads of the API: SQL over the processor's tables, as the read-only role.

Every query is bounded in time so that PostgreSQL prunes partitions: ``tap.readings``
and ``tap.reading_keys`` are partitioned by event day, and each query here carries
an ``event_ts`` (or ``event_day``) range, so it reads the partitions of that range
(and the default partition, normally empty) and never the whole table.
``tests/integration/test_api.py`` checks it with EXPLAIN. Ranges and page sizes are
capped by the HTTP layer (:mod:`api.limits`).

Each function takes an open psycopg connection and returns plain rows (dicts), so it
runs in the API's thread pool on a pooled connection of the processor's store
plumbing (:meth:`processor.postgres.store.PostgresStore.run_query`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier

from processor.contract.storage import ANOMALIES_TABLE, DEAD_LETTERS_TABLE, READINGS_TABLE

Connection = psycopg.Connection[Any]

_READINGS: Final = Identifier(*READINGS_TABLE.split("."))
_ANOMALIES: Final = Identifier(*ANOMALIES_TABLE.split("."))
_DEAD_LETTERS: Final = Identifier(*DEAD_LETTERS_TABLE.split("."))

_LATEST_COLUMNS: Final = SQL(
    "device_id, facility, line, sensor_type, value, status, unit, event_ts, seq, arrival_ts"
)

# The newest reading of one device since ``since``: the primary key
# (device_id, event_ts, boot, seq) of each partition in range, newest first.
_LATEST_OF_DEVICE: Final = SQL(
    "SELECT {cols} FROM {readings} WHERE device_id = %(device)s AND event_ts >= %(since)s"
    " ORDER BY event_ts DESC, seq DESC LIMIT 1"
).format(cols=_LATEST_COLUMNS, readings=_READINGS)

# The newest reading of every device seen since ``since``, in device order, after the
# cursor: a loose index scan over the primary key's device_id prefix (one hop per
# device, not one row per reading), then each device's newest row. Lazy: the outer
# LIMIT stops the recursion once a page is full.
_LATEST_PER_DEVICE: Final = SQL(
    """
WITH RECURSIVE devices AS (
    (SELECT device_id FROM {readings}
     WHERE event_ts >= %(since)s AND device_id > %(after)s ORDER BY device_id LIMIT 1)
    UNION ALL
    SELECT (SELECT r.device_id FROM {readings} r
            WHERE r.event_ts >= %(since)s AND r.device_id > d.device_id
            ORDER BY r.device_id LIMIT 1)
    FROM devices d WHERE d.device_id IS NOT NULL
)
SELECT newest.* FROM devices d
CROSS JOIN LATERAL (
    SELECT {cols} FROM {readings} r
    WHERE r.device_id = d.device_id AND r.event_ts >= %(since)s
    ORDER BY r.event_ts DESC, r.seq DESC LIMIT 1
) newest
WHERE d.device_id IS NOT NULL
  AND (%(facility)s::text IS NULL OR newest.facility = %(facility)s)
  AND (%(line)s::text IS NULL OR newest.line = %(line)s)
  AND (%(sensor_type)s::text IS NULL OR newest.sensor_type = %(sensor_type)s)
LIMIT %(limit)s
"""
).format(cols=_LATEST_COLUMNS, readings=_READINGS)

_RAW_READINGS: Final = SQL(
    "SELECT event_ts, seq, boot, value, status FROM {readings}"
    " WHERE device_id = %(device)s AND event_ts >= %(start)s AND event_ts < %(end)s"
    " AND (event_ts, boot, seq) > (%(after_ts)s, %(after_boot)s, %(after_seq)s)"
    " ORDER BY event_ts, boot, seq LIMIT %(limit)s"
).format(readings=_READINGS)

# date_bin on the epoch: buckets are aligned to UTC whatever the range's start.
_BUCKETED_READINGS: Final = SQL(
    "SELECT date_bin(%(width)s, event_ts, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS bucket,"
    " min(value) AS min, avg(value) AS avg, max(value) AS max, count(value) AS count"
    " FROM {readings}"
    " WHERE device_id = %(device)s AND event_ts >= %(start)s AND event_ts < %(end)s"
    " GROUP BY bucket ORDER BY bucket"
).format(readings=_READINGS)

# facility and line are not stored with an anomaly: they are the device's, read from
# its newest reading in the horizon (pruned like every readings query).
_ANOMALIES_SQL: Final = SQL(
    """
SELECT a.device_id, a.seq, a.boot, a.anomaly_type, a.severity, a.score, a.explanation,
       a.event_ts, a.detected_at, a.sensor_type, a.value, place.facility, place.line
FROM {anomalies} a
LEFT JOIN LATERAL (
    SELECT r.facility, r.line FROM {readings} r
    WHERE r.device_id = a.device_id AND r.event_ts >= %(horizon)s
    ORDER BY r.event_ts DESC LIMIT 1
) place ON true
WHERE a.event_ts >= %(since)s
  AND (%(type)s::text IS NULL OR a.anomaly_type = %(type)s)
  AND (%(severity)s::text IS NULL OR a.severity = %(severity)s)
  AND (%(device)s::text IS NULL OR a.device_id = %(device)s)
  AND (%(facility)s::text IS NULL OR place.facility = %(facility)s)
  AND (%(line)s::text IS NULL OR place.line = %(line)s)
ORDER BY a.event_ts DESC, a.device_id, a.seq
LIMIT %(limit)s
"""
).format(anomalies=_ANOMALIES, readings=_READINGS)

_DEAD_LETTER_SUMMARY: Final = SQL(
    "SELECT reason, date_trunc('hour', received_at) AS hour, count(*) AS count"
    " FROM {dead_letters} WHERE received_at >= %(since)s"
    " GROUP BY reason, hour ORDER BY hour, reason"
).format(dead_letters=_DEAD_LETTERS)


def _rows(conn: Connection, query: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return list(cur.execute(query, params))


def latest_of_device(conn: Connection, device_id: str, since: datetime) -> dict[str, Any] | None:
    rows = _rows(conn, _LATEST_OF_DEVICE, {"device": device_id, "since": since})
    return rows[0] if rows else None


def latest_per_device(
    conn: Connection,
    since: datetime,
    *,
    facility: str | None = None,
    line: str | None = None,
    sensor_type: str | None = None,
    after: str = "",
    limit: int,
) -> list[dict[str, Any]]:
    params = {
        "since": since,
        "facility": facility,
        "line": line,
        "sensor_type": sensor_type,
        "after": after,
        "limit": limit,
    }
    return _rows(conn, _LATEST_PER_DEVICE, params)


def raw_readings(
    conn: Connection,
    device_id: str,
    start: datetime,
    end: datetime,
    *,
    after: tuple[datetime, int, int] | None,
    limit: int,
) -> list[dict[str, Any]]:
    after_ts, after_boot, after_seq = after or (start - timedelta(microseconds=1), 0, -1)
    params = {
        "device": device_id,
        "start": start,
        "end": end,
        "after_ts": after_ts,
        "after_boot": after_boot,
        "after_seq": after_seq,
        "limit": limit,
    }
    return _rows(conn, _RAW_READINGS, params)


def bucketed_readings(
    conn: Connection, device_id: str, start: datetime, end: datetime, width: timedelta
) -> list[dict[str, Any]]:
    params = {"device": device_id, "start": start, "end": end, "width": width}
    return _rows(conn, _BUCKETED_READINGS, params)


def anomalies(
    conn: Connection,
    since: datetime,
    horizon: datetime,
    *,
    anomaly_type: str | None = None,
    severity: str | None = None,
    device_id: str | None = None,
    facility: str | None = None,
    line: str | None = None,
    limit: int,
) -> list[dict[str, Any]]:
    params = {
        "since": since,
        "horizon": horizon,
        "type": anomaly_type,
        "severity": severity,
        "device": device_id,
        "facility": facility,
        "line": line,
        "limit": limit,
    }
    return _rows(conn, _ANOMALIES_SQL, params)


def dead_letter_summary(conn: Connection, since: datetime) -> list[dict[str, Any]]:
    return _rows(conn, _DEAD_LETTER_SUMMARY, {"since": since})


#: Every query of this module with example parameters, for the EXPLAIN test.
def explained_queries(now: datetime, device_id: str) -> Sequence[tuple[str, Any, dict[str, Any]]]:
    hour = timedelta(hours=1)
    return (
        ("latest_of_device", _LATEST_OF_DEVICE, {"device": device_id, "since": now - hour}),
        (
            "latest_per_device",
            _LATEST_PER_DEVICE,
            {
                "since": now - hour,
                "facility": None,
                "line": None,
                "sensor_type": None,
                "after": "",
                "limit": 100,
            },
        ),
        (
            "raw_readings",
            _RAW_READINGS,
            {
                "device": device_id,
                "start": now - hour,
                "end": now,
                "after_ts": now - hour,
                "after_boot": 0,
                "after_seq": -1,
                "limit": 100,
            },
        ),
        (
            "bucketed_readings",
            _BUCKETED_READINGS,
            {"device": device_id, "start": now - hour, "end": now, "width": timedelta(minutes=1)},
        ),
        (
            "anomalies",
            _ANOMALIES_SQL,
            {
                "since": now - hour,
                "horizon": now - hour,
                "type": None,
                "severity": None,
                "device": None,
                "facility": None,
                "line": None,
                "limit": 100,
            },
        ),
    )
