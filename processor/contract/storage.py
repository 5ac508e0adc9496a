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
