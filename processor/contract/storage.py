"""Names of what the processor stores, shared with the e2e verifier and Locust's
end-to-end listener. Change a name here and every reader follows."""

from __future__ import annotations

from typing import Final

#: PostgreSQL schema holding every table of the pipeline.
PG_SCHEMA: Final = "tap"

#: Every reading, partitioned by day on event time; unique on (device_id, seq).
READINGS_TABLE: Final = f"{PG_SCHEMA}.readings"
#: Detected anomalies (append-only).
ANOMALIES_TABLE: Final = f"{PG_SCHEMA}.anomalies"
#: Records that failed validation: raw bytes, shard, sequence number, reason.
DEAD_LETTERS_TABLE: Final = f"{PG_SCHEMA}.dead_letters"
#: Shard leases with their fencing counter and checkpoint.
SHARD_LEASES_TABLE: Final = f"{PG_SCHEMA}.shard_leases"
#: Applied schema migrations.
MIGRATIONS_TABLE: Final = f"{PG_SCHEMA}.schema_migrations"
#: Per-device / per-type detector settings, read at run time (issue 9).
DETECTOR_OVERRIDES_TABLE: Final = f"{PG_SCHEMA}.detector_overrides"

#: Redis key prefix; every key the processor writes starts with it.
REDIS_PREFIX: Final = "tap"


def redis_latest_key(device_id: str) -> str:
    """Hash: the latest reading of a device (replaced only by a newer (ts, seq))."""
    return f"{REDIS_PREFIX}:latest:{device_id}"


def redis_window_key(device_id: str) -> str:
    """Sorted set: the recent readings of a device, scored by its sequence number."""
    return f"{REDIS_PREFIX}:window:{device_id}"


def redis_detector_key(device_id: str) -> str:
    """String: serialized detector state of a device (so a new shard owner keeps baselines)."""
    return f"{REDIS_PREFIX}:detector:{device_id}"


#: Stream: recent anomalies, entry ids derived from the reading so a replay is idempotent.
REDIS_ANOMALY_STREAM: Final = f"{REDIS_PREFIX}:anomalies"
#: Sorted set: device id -> last event time (epoch ms).
REDIS_LAST_SEEN: Final = f"{REDIS_PREFIX}:last_seen"

# COPY column orders. The SQL migrations create these tables with exactly these
# columns, and the core's row helpers (processor.core.batch) build tuples in this
# order, so the PostgreSQL store can ``COPY table (cols...) FROM STDIN`` blindly.

#: Readings: identity (device_id, seq), where it came from, and the three times
#: (event ``event_ts``, Kinesis ``arrival_ts``, processor ``processed_at``).
READINGS_COPY_COLUMNS: Final[tuple[str, ...]] = (
    "device_id",
    "seq",
    "facility",
    "line",
    "sensor_type",
    "value",
    "status",
    "unit",
    "event_ts",
    "arrival_ts",
    "processed_at",
    "shard_id",
    "sequence_number",
    "schema_version",
)

#: Anomalies: identity (device_id, seq, anomaly_type) makes a replay idempotent.
ANOMALIES_COPY_COLUMNS: Final[tuple[str, ...]] = (
    "device_id",
    "seq",
    "anomaly_type",
    "severity",
    "score",
    "explanation",
    "event_ts",
    "detected_at",
    "sensor_type",
    "value",
)

#: Dead letters: the full raw payload (bytea) with the reject reason code.
DEAD_LETTERS_COPY_COLUMNS: Final[tuple[str, ...]] = (
    "shard_id",
    "sequence_number",
    "partition_key",
    "payload",
    "reason",
    "detail",
    "arrival_ts",
    "received_at",
)
