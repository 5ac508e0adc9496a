"""Names of what the processor stores, shared with the e2e verifier, the benchmarks
and Locust's end-to-end listener. Change a name here and every reader follows.

Every table of schema :data:`PG_SCHEMA` (:data:`TABLES`), every column order a
reader or writer depends on, every Redis key pattern and every Redis hash and
stream field is named here once; ``tests/unit/test_storage_names.py`` fails when a
``tap.`` table name or a Redis field is written as a literal anywhere else (the SQL
migrations excepted), and ``tests/integration/test_postgres.py`` compares
this module with the schema the migrations create.
"""

from __future__ import annotations

import enum
from typing import Final

#: PostgreSQL schema holding every table of the pipeline.
PG_SCHEMA: Final = "tap"


def split_qualified(qualified: str) -> tuple[str, str]:
    """``"schema.table"`` -> ``("schema", "table")``, for composing SQL identifiers
    (``psycopg.sql.Identifier(*split_qualified(READINGS_TABLE))``) and catalog queries."""
    schema, dot, name = qualified.partition(".")
    if not dot or not schema or not name or "." in name:
        raise ValueError(f"not a schema-qualified name: {qualified!r}")
    return schema, name


#: Every reading, partitioned by day on event time; unique on (device_id, boot, seq)
#: within an event day (see docs/PROCESSOR-STORAGE.md, "De-duplication").
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
#: The de-duplication keys of the readings, (device_id, boot, seq, event_day), with the
#: reading's event time (migration 0005); partitioned by day like the readings.
READING_KEYS_TABLE: Final = f"{PG_SCHEMA}.reading_keys"
#: Live processor workers and their last heartbeat (database clock).
WORKERS_TABLE: Final = f"{PG_SCHEMA}.workers"

#: Every table of schema :data:`PG_SCHEMA` (partitions are not listed: they follow their
#: parent). The integration drift test compares this set with the migrated schema.
TABLES: Final[frozenset[str]] = frozenset(
    {
        READINGS_TABLE,
        READING_KEYS_TABLE,
        ANOMALIES_TABLE,
        DEAD_LETTERS_TABLE,
        SHARD_LEASES_TABLE,
        WORKERS_TABLE,
        MIGRATIONS_TABLE,
        DETECTOR_OVERRIDES_TABLE,
    }
)

#: The partition of :data:`READINGS_TABLE` that catches event days without a daily
#: partition (it should stay empty; see docs/PROCESSOR-STORAGE.md).
READINGS_DEFAULT_PARTITION: Final = f"{READINGS_TABLE}_default"
#: Creates the missing daily partitions of the readings and their keys (SECURITY
#: DEFINER: see :data:`APP_ROLE_DEFINER_FUNCTIONS`).
ENSURE_PARTITIONS_FUNCTION: Final = f"{PG_SCHEMA}.ensure_partitions"

#: Redis key prefix; every key the processor writes starts with it.
REDIS_PREFIX: Final = "tap"


def redis_latest_key(device_id: str) -> str:
    """Hash: the latest reading of a device (replaced only by a newer (ts, seq))."""
    return f"{REDIS_PREFIX}:latest:{device_id}"


def redis_window_key(device_id: str) -> str:
    """Sorted set: the recent readings of a device, scored by event time (µs since the
    epoch, exact in a double), the newest ``window_size`` kept."""
    return f"{REDIS_PREFIX}:window:{device_id}"


def redis_detector_key(device_id: str) -> str:
    """String: serialized detector state of a device (so a new shard owner keeps baselines)."""
    return f"{REDIS_PREFIX}:detector:{device_id}"


def redis_silence_key(shard_id: str) -> str:
    """Hash: the silence registry of a shard, device id -> JSON entry (last seq, last
    arrival and event time, recent gaps, reported episode; see
    ``processor.core.silence.SilenceEntry``), so a new owner knows every device."""
    return f"{REDIS_PREFIX}:silence:{shard_id}"


def redis_silence_arrivals_key(shard_id: str) -> str:
    """Sorted set beside :func:`redis_silence_key`: device id -> last arrival (epoch
    ms), so the registry's entries older than the forget time are found and removed
    without reading the whole hash (issue 10 item 9)."""
    return f"{REDIS_PREFIX}:silence-arrivals:{shard_id}"


def redis_anomaly_dedup_key(anomaly_id: str) -> str:
    """String with TTL: marks an anomaly as already added to :data:`REDIS_ANOMALY_STREAM`."""
    return f"{REDIS_PREFIX}:anomaly-seen:{anomaly_id}"


#: Stream: recent anomalies, entry ids derived from the reading so a replay is idempotent.
REDIS_ANOMALY_STREAM: Final = f"{REDIS_PREFIX}:anomalies"
#: Sorted set: device id -> last event time (epoch ms).
REDIS_LAST_SEEN: Final = f"{REDIS_PREFIX}:last_seen"


def redis_line_devices_key(facility: str, line: str) -> str:
    """Sorted set: the devices of one production line -> last event time (epoch ms), so
    a line's board reads that line's latest hashes only. ``/`` separates the two names
    because neither may contain it (:mod:`processor.contract.record`'s name pattern)."""
    return f"{REDIS_PREFIX}:line-devices:{facility}/{line}"


class LatestField(enum.StrEnum):
    """The fields of the latest-reading hash (:func:`redis_latest_key`), in the order
    the processor writes them (:data:`REDIS_LATEST_FIELDS`). Every value is a string;
    an absent value (``value`` of a status reading, ``status`` of an analog one) is
    the empty string."""

    DEVICE_ID = "device_id"
    FACILITY = "facility"
    LINE = "line"
    SENSOR_TYPE = "sensor_type"
    VALUE = "value"
    STATUS = "status"
    UNIT = "unit"
    #: Event time, ISO-8601 with offset.
    TS = "ts"
    #: Event time in integer microseconds since the epoch (what "newer" compares).
    TS_US = "ts_us"
    SEQ = "seq"
    SCHEMA_VERSION = "schema_version"
    SHARD_ID = "shard_id"
    SEQUENCE_NUMBER = "sequence_number"
    #: Kinesis arrival time, ISO-8601.
    ARRIVAL = "arrival"


#: The latest-reading hash's fields in write order (the batch script receives them once).
REDIS_LATEST_FIELDS: Final[tuple[str, ...]] = tuple(f.value for f in LatestField)


class AnomalyStreamField(enum.StrEnum):
    """The fields of an entry of :data:`REDIS_ANOMALY_STREAM` (all strings)."""

    ANOMALY_ID = "anomaly_id"
    DEVICE_ID = "device_id"
    SEQ = "seq"
    TYPE = "type"
    SEVERITY = "severity"
    SCORE = "score"
    #: The reading's event time, ISO-8601 with offset.
    TS = "ts"
    SENSOR_TYPE = "sensor_type"
    VALUE = "value"
    EXPLANATION = "explanation"
    BOOT = "boot"


class WindowMemberField(enum.StrEnum):
    """The keys of a window member (:func:`redis_window_key`): compact JSON, the same
    bytes for the same reading, so a replay adds nothing. In this order: the reading's
    identity ``{"boot":B,"seq":S,`` is the member's prefix (the batch script compares
    it to keep the first copy of an identity)."""

    BOOT = "boot"
    SEQ = "seq"
    TS = "ts"
    VALUE = "value"
    STATUS = "status"


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
    # Migration 0005 (issue 10 item 4): the device's restart counter, 0 without one.
    "boot",
)

#: Anomalies: identity (device_id, boot, seq, anomaly_type, event_day) makes a replay
#: idempotent; event_day is generated from event_ts (migration 0007), so not copied.
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
    # Migration 0007 (issue 10 item 4): the reading's boot counter, 0 without one.
    "boot",
)

#: Anomalies' generated columns (migration 0007), after the COPY columns in the table.
ANOMALIES_GENERATED_COLUMNS: Final[tuple[str, ...]] = ("event_day",)

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

# --- the application role (issue 11, item 2) --------------------------------------------

#: The PostgreSQL role whose privileges the processor runs with. Migrations (run by the
#: database owner, the RDS master user) create it NOLOGIN and grant it exactly
#: :data:`APP_ROLE_TABLE_PRIVILEGES`; the login in the application secret is this role
#: or, after an alternating-users rotation, ``<role>_clone``, a member of it.
APP_ROLE: Final = "tap_processor"

#: The privilege decision for the application role on every table of schema ``tap``
#: (partitions follow their parent). A migration that adds a table must add it here
#: and grant exactly this; ``tests/integration/test_app_role.py`` fails otherwise.
#: Compliance tables get SELECT and INSERT only: no UPDATE, DELETE, TRUNCATE, and, as
#: the role owns nothing, no ALTER/DROP/DISABLE TRIGGER.
APP_ROLE_TABLE_PRIVILEGES: Final[dict[str, frozenset[str]]] = {
    READINGS_TABLE: frozenset({"SELECT", "INSERT"}),
    READING_KEYS_TABLE: frozenset({"SELECT", "INSERT"}),
    ANOMALIES_TABLE: frozenset({"SELECT", "INSERT"}),
    DEAD_LETTERS_TABLE: frozenset({"SELECT", "INSERT"}),
    # Mutable by design: acquire/renew/release/checkpoint are UPDATEs, sync_shards upserts.
    SHARD_LEASES_TABLE: frozenset({"SELECT", "INSERT", "UPDATE"}),
    # Heartbeat upsert; a stopping worker deletes its own row.
    WORKERS_TABLE: frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"}),
    # The start-up schema check reads it; only the migrate command writes it.
    MIGRATIONS_TABLE: frozenset({"SELECT"}),
    # Per-device detector settings (0006): the processor only reads them.
    DETECTOR_OVERRIDES_TABLE: frozenset({"SELECT"}),
}

#: Functions the application role may execute that run with their owner's rights
#: (SECURITY DEFINER, search_path pinned): creating a partition needs ownership of
#: ``tap.readings``, which the application role must not have.
APP_ROLE_DEFINER_FUNCTIONS: Final[tuple[str, ...]] = (
    f"{ENSURE_PARTITIONS_FUNCTION}(date, integer)",
)

# --- the API's read-only logins (issue 13, item 1) ---------------------------------------

#: The PostgreSQL role the read API (``tap api``) runs with: SELECT only, created
#: NOLOGIN by migration ``*_api_reader.sql``; its login comes from the API's secret.
API_READER_ROLE: Final = "tap_api_reader"

#: The privilege decision for the API's role on every table of schema ``tap`` (an
#: empty set: nothing). A migration that adds a table must add it here;
#: ``tests/integration/test_api_reader.py`` checks the database against it.
API_READER_TABLE_PRIVILEGES: Final[dict[str, frozenset[str]]] = {
    READINGS_TABLE: frozenset({"SELECT"}),
    READING_KEYS_TABLE: frozenset({"SELECT"}),
    ANOMALIES_TABLE: frozenset({"SELECT"}),
    DEAD_LETTERS_TABLE: frozenset({"SELECT"}),
    # Operational tables the API does not read: no access at all.
    SHARD_LEASES_TABLE: frozenset(),
    WORKERS_TABLE: frozenset(),
    MIGRATIONS_TABLE: frozenset(),
    DETECTOR_OVERRIDES_TABLE: frozenset(),
}

#: The Redis ACL user the API connects as (ElastiCache RBAC user name as well).
REDIS_API_READER_USER: Final = "tap-api-reader"

#: Key patterns the API's Redis user may read: the serving cache only (latest
#: readings, windows, the anomaly stream, last seen, the lines' device sets), not
#: detector or silence state.
REDIS_API_READER_KEY_PATTERNS: Final[tuple[str, ...]] = (
    redis_latest_key("*"),
    redis_window_key("*"),
    REDIS_ANOMALY_STREAM,
    REDIS_LAST_SEEN,
    redis_line_devices_key("*", "*"),
)


def redis_api_reader_access_string() -> str:
    """The ACL rules of :data:`REDIS_API_READER_USER` (without ``on`` and the
    password): read commands on the cache keys, and ``PING`` (health checks). No
    ``CLIENT``: redis-py's ``CLIENT SETINFO`` at connect is refused and ignored (a
    ``client|setinfo`` rule does not exist before Redis 7.2). The same grammar is an
    ElastiCache user's ``access_string``."""
    keys = " ".join(f"~{pattern}" for pattern in REDIS_API_READER_KEY_PATTERNS)
    return f"{keys} -@all +@read +ping"
