-- 0003: daily partitions of tap.readings, created ahead.
--
-- tap.ensure_partitions(p_from, p_days) creates the partitions for the UTC days
-- p_from .. p_from + p_days - 1 that do not exist yet and returns how many it
-- created. The processor calls it at start-up and then periodically (every
-- worker; it is idempotent and serialized by an advisory lock), covering the
-- whole window validation accepts (7 days back, a few minutes ahead) plus a
-- week ahead, so the default partition stays empty in normal operation.
--
-- If the default partition already holds rows of a day (the job was down for
-- days), that day's partition is NOT created: PostgreSQL would have to move the
-- rows out of the default partition, which is a DELETE on an append-only table.
-- The rows stay valid and queryable in tap.readings_default; a WARNING says so.

CREATE FUNCTION tap.ensure_partitions(p_from date, p_days integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d       date;
    lo      timestamptz;
    hi      timestamptz;
    part    text;
    created integer := 0;
BEGIN
    IF p_days < 0 OR p_days > 366 THEN
        RAISE EXCEPTION 'p_days must be between 0 and 366, got %', p_days;
    END IF;
    -- One creator at a time; the others find the partitions already there.
    PERFORM pg_advisory_xact_lock(hashtext('tap.ensure_partitions'));
    FOR i IN 0 .. p_days - 1 LOOP
        d := p_from + i;
        part := 'readings_p' || to_char(d, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(format('tap.%I', part)) IS NOT NULL;
        -- Day boundaries in UTC whatever the session time zone.
        lo := d::timestamp AT TIME ZONE 'UTC';
        hi := (d + 1)::timestamp AT TIME ZONE 'UTC';
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
    END LOOP;
    RETURN created;
END;
$$;
