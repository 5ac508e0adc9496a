-- 0001: the pipeline's tables. Applied once, inside one transaction, by
-- processor.postgres_store.PostgresStore.migrate() under an advisory lock.
-- Names must match processor/contract/storage.py (a test checks it).
--
-- Times are timestamptz everywhere, stored in UTC:
--   event_ts     the reading's own time (the "ts" field the sensor sent)
--   arrival_ts   Kinesis ApproximateArrivalTimestamp (ingestion time)
--   processed_at when the processor committed the batch

CREATE SCHEMA IF NOT EXISTS tap;

-- ---------------------------------------------------------------------------
-- Readings: partitioned by day on event time.
--
-- Exactly-once per (device_id, seq). PostgreSQL only allows a unique constraint
-- on a partitioned table if it includes the partition key, so UNIQUE
-- (device_id, seq) cannot live on tap.readings itself: two copies of a reading
-- whose event times fall on different days (a producer bug) would both pass a
-- (device_id, seq, event_ts) constraint. The uniqueness authority is therefore
-- the small non-partitioned table tap.reading_keys below. commit_batch inserts
-- the batch's keys there with ON CONFLICT DO NOTHING RETURNING and writes to
-- tap.readings only the rows whose key it actually inserted, in the same
-- statement and transaction. A concurrent transaction inserting the same key
-- waits on the key's index entry and then skips it if we commit, or takes it
-- if we roll back, so exactly one committed row exists per key, whatever the
-- interleaving of workers. The primary key on tap.readings (which includes
-- event_ts, as PostgreSQL requires) is a second guard and the data team's
-- (device_id, event_ts) index.
-- ---------------------------------------------------------------------------
CREATE TABLE tap.readings (
    device_id       text             NOT NULL,
    seq             bigint           NOT NULL CHECK (seq >= 0),
    facility        text             NOT NULL,
    line            text             NOT NULL,
    sensor_type     text             NOT NULL,
    value           double precision,
    status          text,
    unit            text             NOT NULL,
    event_ts        timestamptz      NOT NULL,
    arrival_ts      timestamptz      NOT NULL,
    processed_at    timestamptz      NOT NULL,
    shard_id        text             NOT NULL,
    -- Kinesis sequence numbers are decimal strings of up to 128 digits.
    sequence_number text             NOT NULL,
    schema_version  smallint         NOT NULL,
    PRIMARY KEY (device_id, event_ts, seq)
) PARTITION BY RANGE (event_ts);

COMMENT ON TABLE tap.readings IS
    'Every accepted reading, once per (device_id, seq) (see tap.reading_keys); append-only.';

-- Catches any event time no daily partition covers, so an insert never fails
-- for want of a partition. tap.ensure_partitions() keeps daily partitions
-- created ahead; rows normally never land here.
CREATE TABLE tap.readings_default PARTITION OF tap.readings DEFAULT;

-- The uniqueness authority for readings (see above). event_ts is kept so the
-- newest reading per device can be found from this narrow table alone
-- (tap.latest_readings index below) and then fetched from the right partition.
CREATE TABLE tap.reading_keys (
    device_id text        NOT NULL,
    seq       bigint      NOT NULL,
    event_ts  timestamptz NOT NULL,
    PRIMARY KEY (device_id, seq)
);

COMMENT ON TABLE tap.reading_keys IS
    'One row per stored reading: the (device_id, seq) dedup key of tap.readings; append-only.';

-- Newest reading per device (Redis reconciliation, the data team's "latest"
-- query): a loose index scan walks this index once per device.
CREATE INDEX reading_keys_latest ON tap.reading_keys (device_id, event_ts DESC, seq DESC);

-- ---------------------------------------------------------------------------
-- Anomalies: one per (device_id, seq, anomaly_type), so a replayed reading
-- cannot add the same anomaly twice.
-- ---------------------------------------------------------------------------
CREATE TABLE tap.anomalies (
    device_id    text             NOT NULL,
    seq          bigint           NOT NULL,
    anomaly_type text             NOT NULL,
    severity     text             NOT NULL,
    score        double precision NOT NULL,
    explanation  text             NOT NULL,
    event_ts     timestamptz      NOT NULL,
    detected_at  timestamptz      NOT NULL,
    sensor_type  text             NOT NULL DEFAULT '',
    value        double precision,
    PRIMARY KEY (device_id, seq, anomaly_type)
);

CREATE INDEX anomalies_event_ts ON tap.anomalies (event_ts);
CREATE INDEX anomalies_device_event_ts ON tap.anomalies (device_id, event_ts);

-- ---------------------------------------------------------------------------
-- Dead letters: the raw record exactly as Kinesis delivered it, with the
-- reject reason code. (shard_id, sequence_number) identifies a Kinesis record,
-- so a replayed batch does not store its poison records twice.
-- ---------------------------------------------------------------------------
CREATE TABLE tap.dead_letters (
    shard_id        text        NOT NULL,
    sequence_number text        NOT NULL,
    partition_key   text        NOT NULL,
    payload         bytea       NOT NULL,
    reason          text        NOT NULL,
    detail          text        NOT NULL,
    arrival_ts      timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    PRIMARY KEY (shard_id, sequence_number)
);

CREATE INDEX dead_letters_reason_received ON tap.dead_letters (reason, received_at);
CREATE INDEX dead_letters_received ON tap.dead_letters (received_at);

-- ---------------------------------------------------------------------------
-- Shard leases. Mutable by design (not a compliance table).
--   owner IS NULL          released or never taken: free to acquire at once
--   expires_at <= now()    the owner stopped renewing: free to acquire
--   fencing                incremented by every acquisition; a commit must
--                          present the value it acquired with (fencing token)
--   checkpoint             last committed Kinesis sequence number
--   finished               shard end reached and committed (closed parent)
-- Expiry is always compared with the database clock (now()), never a worker's.
-- ---------------------------------------------------------------------------
CREATE TABLE tap.shard_leases (
    shard_id         text        PRIMARY KEY,
    parent_shard_ids text[]      NOT NULL DEFAULT '{}',
    adjacent_parent  text,
    owner            text,
    expires_at       timestamptz,
    fencing          bigint      NOT NULL DEFAULT 0,
    checkpoint       text,
    finished         boolean     NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Worker heartbeats: the lease balancer divides shards by the live workers.
CREATE TABLE tap.workers (
    worker_id  text        PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now()
);
