-- 0002: compliance. Readings, their dedup keys, anomalies and dead letters are
-- append-only: UPDATE, DELETE and TRUNCATE are rejected by triggers, for every
-- role including the table owner (who could only get round it with an explicit,
-- auditable ALTER TABLE ... DISABLE TRIGGER). Retention, when it comes, is done
-- by detaching and dropping whole daily partitions, never by DELETE.
--
-- Row triggers on the partitioned tap.readings are cloned by PostgreSQL onto
-- every partition, present and future. TRUNCATE triggers are not: a TRUNCATE of
-- one partition does not fire the parent's, so tap.ensure_partitions() adds the
-- statement trigger to each partition it creates (and we add it to the default
-- partition here).

CREATE FUNCTION tap.reject_modification() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%.% is append-only (compliance record): % is not allowed',
        TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Rows of the compliance tables are never changed or removed; '
                     'retention drops whole partitions.';
END;
$$;

CREATE TRIGGER readings_append_only
    BEFORE UPDATE OR DELETE ON tap.readings
    FOR EACH ROW EXECUTE FUNCTION tap.reject_modification();
CREATE TRIGGER readings_no_truncate
    BEFORE TRUNCATE ON tap.readings
    FOR EACH STATEMENT EXECUTE FUNCTION tap.reject_modification();
CREATE TRIGGER readings_no_truncate
    BEFORE TRUNCATE ON tap.readings_default
    FOR EACH STATEMENT EXECUTE FUNCTION tap.reject_modification();

CREATE TRIGGER reading_keys_append_only
    BEFORE UPDATE OR DELETE ON tap.reading_keys
    FOR EACH ROW EXECUTE FUNCTION tap.reject_modification();
CREATE TRIGGER reading_keys_no_truncate
    BEFORE TRUNCATE ON tap.reading_keys
    FOR EACH STATEMENT EXECUTE FUNCTION tap.reject_modification();

CREATE TRIGGER anomalies_append_only
    BEFORE UPDATE OR DELETE ON tap.anomalies
    FOR EACH ROW EXECUTE FUNCTION tap.reject_modification();
CREATE TRIGGER anomalies_no_truncate
    BEFORE TRUNCATE ON tap.anomalies
    FOR EACH STATEMENT EXECUTE FUNCTION tap.reject_modification();

CREATE TRIGGER dead_letters_append_only
    BEFORE UPDATE OR DELETE ON tap.dead_letters
    FOR EACH ROW EXECUTE FUNCTION tap.reject_modification();
CREATE TRIGGER dead_letters_no_truncate
    BEFORE TRUNCATE ON tap.dead_letters
    FOR EACH STATEMENT EXECUTE FUNCTION tap.reject_modification();
