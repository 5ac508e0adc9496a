-- 0005: a bounded de-duplication key, and the device's boot counter (issue 10
-- items 4 and 10). See docs/PROCESSOR-STORAGE.md, "De-duplication".
--
-- Before: tap.reading_keys (device_id, seq) was one unpartitioned, append-only table
-- that grew forever, and dropping a readings partition left its keys behind; and a
-- device that restarted its sequence numbers had every later reading taken for a
-- duplicate of an old one.
--
-- After: the key is (device_id, boot, seq, event_day), where event_day is the UTC
-- day of the reading's event time (the day of the readings partition it lives in),
-- and tap.reading_keys is partitioned by that day exactly like tap.readings:
-- tap.reading_keys_pYYYYMMDD beside tap.readings_pYYYYMMDD, created together by
-- tap.ensure_partitions(), and dropped together by retention. The dedupe window is
-- therefore the readings' retention: an exact re-send always carries the same event
-- time, so it finds its key for as long as the reading itself is kept.
--
-- A key repeated with a different payload on the same day is not stored and not
-- silently dropped: the processor writes it to tap.dead_letters with reason
-- 'seq_conflict'. The same (device_id, boot, seq) on another event day is a reading
-- of its own (a restarted sequence a day or more later).
--
-- Existing keys are moved (boot 0, their event day); the old table is dropped. It is
-- derived data (tap.readings holds the same rows), so dropping it loses nothing.

-- The boot counter (record schema version 2; 0 for version 1 records).
ALTER TABLE tap.readings ADD COLUMN boot bigint NOT NULL DEFAULT 0 CHECK (boot >= 0);
-- Two series of one device may share (event_ts, seq); the second guard must allow it.
ALTER TABLE tap.readings DROP CONSTRAINT readings_pkey;
ALTER TABLE tap.readings ADD PRIMARY KEY (device_id, event_ts, boot, seq);

ALTER TABLE tap.reading_keys RENAME TO reading_keys_0001;
ALTER TABLE tap.reading_keys_0001 RENAME CONSTRAINT reading_keys_pkey TO reading_keys_0001_pkey;

CREATE TABLE tap.reading_keys (
    device_id text        NOT NULL,
    boot      bigint      NOT NULL DEFAULT 0,
    seq       bigint      NOT NULL,
    event_day date        NOT NULL,
    event_ts  timestamptz NOT NULL,
    PRIMARY KEY (device_id, boot, seq, event_day)
) PARTITION BY RANGE (event_day);

COMMENT ON TABLE tap.reading_keys IS
    'One row per stored reading: its (device_id, boot, seq, event_day) dedup key; '
    'partitioned by event day like tap.readings; append-only.';

CREATE TABLE tap.reading_keys_default PARTITION OF tap.reading_keys DEFAULT;

-- Newest reading per device (the loose index scan of latest_per_device).
DROP INDEX tap.reading_keys_latest;
CREATE INDEX reading_keys_latest ON tap.reading_keys (device_id, event_ts DESC, seq DESC);

CREATE TRIGGER reading_keys_append_only
    BEFORE UPDATE OR DELETE ON tap.reading_keys
    FOR EACH ROW EXECUTE FUNCTION tap.reject_modification();
CREATE TRIGGER reading_keys_no_truncate
    BEFORE TRUNCATE ON tap.reading_keys
    FOR EACH STATEMENT EXECUTE FUNCTION tap.reject_modification();
CREATE TRIGGER reading_keys_no_truncate
    BEFORE TRUNCATE ON tap.reading_keys_default
    FOR EACH STATEMENT EXECUTE FUNCTION tap.reject_modification();

-- One key partition per existing readings partition, then the keys themselves.
DO $$
DECLARE
    part text;
    d    date;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'tap.readings'::regclass AND c.relname ~ '^readings_p[0-9]{8}$'
    LOOP
        d := to_date(substr(part, 11), 'YYYYMMDD');
        EXECUTE format(
            'CREATE TABLE tap.%I PARTITION OF tap.reading_keys FOR VALUES FROM (%L) TO (%L)',
            'reading_keys_p' || to_char(d, 'YYYYMMDD'), d, d + 1);
        EXECUTE format(
            'CREATE TRIGGER reading_keys_no_truncate BEFORE TRUNCATE ON tap.%I '
            'FOR EACH STATEMENT EXECUTE FUNCTION tap.reject_modification()',
            'reading_keys_p' || to_char(d, 'YYYYMMDD'));
    END LOOP;
END;
$$;

INSERT INTO tap.reading_keys (device_id, boot, seq, event_day, event_ts)
SELECT device_id, 0, seq, (event_ts AT TIME ZONE 'UTC')::date, event_ts
FROM tap.reading_keys_0001;

DROP TABLE tap.reading_keys_0001;

-- tap.ensure_partitions as in 0003, creating each day's key partition with its
-- readings partition (both, or neither when a default partition holds that day).
CREATE OR REPLACE FUNCTION tap.ensure_partitions(p_from date, p_days integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d       date;
    lo      timestamptz;
    hi      timestamptz;
    part    text;
    keys    text;
    created integer := 0;
BEGIN
    IF p_days < 0 OR p_days > 366 THEN
        RAISE EXCEPTION 'p_days must be between 0 and 366, got %', p_days;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('tap.ensure_partitions'));
    FOR i IN 0 .. p_days - 1 LOOP
        d := p_from + i;
        part := 'readings_p' || to_char(d, 'YYYYMMDD');
        keys := 'reading_keys_p' || to_char(d, 'YYYYMMDD');
        lo := d::timestamp AT TIME ZONE 'UTC';
        hi := (d + 1)::timestamp AT TIME ZONE 'UTC';
        IF to_regclass(format('tap.%I', part)) IS NULL THEN
            IF EXISTS (SELECT 1 FROM tap.readings_default
                       WHERE event_ts >= lo AND event_ts < hi) THEN
                RAISE WARNING 'tap.readings_default holds rows of %; partition % not created '
                              '(moving them would delete from an append-only table)', d, part;
                CONTINUE;
            END IF;
            EXECUTE format(
                'CREATE TABLE tap.%I PARTITION OF tap.readings FOR VALUES FROM (%L) TO (%L)',
                part, lo, hi);
            EXECUTE format(
                'CREATE TRIGGER readings_no_truncate BEFORE TRUNCATE ON tap.%I '
                'FOR EACH STATEMENT EXECUTE FUNCTION tap.reject_modification()', part);
            created := created + 1;
        END IF;
        CONTINUE WHEN to_regclass(format('tap.%I', keys)) IS NOT NULL;
        IF EXISTS (SELECT 1 FROM tap.reading_keys_default WHERE event_day = d) THEN
            RAISE WARNING 'tap.reading_keys_default holds keys of %; partition % not created '
                          '(moving them would delete from an append-only table)', d, keys;
            CONTINUE;
        END IF;
        EXECUTE format(
            'CREATE TABLE tap.%I PARTITION OF tap.reading_keys FOR VALUES FROM (%L) TO (%L)',
            keys, d, d + 1);
        EXECUTE format(
            'CREATE TRIGGER reading_keys_no_truncate BEFORE TRUNCATE ON tap.%I '
            'FOR EACH STATEMENT EXECUTE FUNCTION tap.reject_modification()', keys);
    END LOOP;
    RETURN created;
END;
$$;

-- CREATE OR REPLACE resets every property it does not name: restore what 0004 set
-- (the application role creates partitions through this function with its owner's
-- rights; see 0004_app_role.sql's rule for SECURITY DEFINER functions).
ALTER FUNCTION tap.ensure_partitions(date, integer)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE EXECUTE ON FUNCTION tap.ensure_partitions(date, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tap.ensure_partitions(date, integer) TO tap_processor;
