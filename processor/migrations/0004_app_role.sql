-- 0004: the application role (issue 11, item 2). The processor no longer connects as
-- the owner of the tables (the RDS master user, who runs these migrations): it
-- connects as tap_processor, or as a login that is a member of it (the
-- alternating-users rotation creates tap_processor_clone IN ROLE tap_processor).
--
-- tap_processor owns nothing, so it cannot ALTER or DROP a table, nor DROP or
-- DISABLE a trigger (all need ownership), and it gets no UPDATE, DELETE or
-- TRUNCATE on the compliance tables: the append-only rule of 0002 no longer rests
-- on the triggers alone. processor/contract/storage.py APP_ROLE_TABLE_PRIVILEGES is
-- the decision per table; tests/integration/test_app_role.py checks the database
-- against it.
--
-- RULE FOR LATER MIGRATIONS: a new table in schema tap gets SELECT and INSERT for
-- tap_processor by the default privileges below (so nothing breaks), and must be
-- added to APP_ROLE_TABLE_PRIVILEGES; if the processor needs more (UPDATE, DELETE),
-- GRANT it explicitly in the same migration. A new SECURITY DEFINER function must
-- pin search_path, REVOKE EXECUTE FROM PUBLIC and GRANT EXECUTE TO tap_processor.
--
-- Roles are cluster-wide and several databases (tests) may migrate at once, so the
-- role is created only if missing, tolerating a concurrent creator. The login
-- password is never in a migration: `python -m processor migrate` sets it from the
-- application secret (processor/migrate_command.py).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tap_processor') THEN
        CREATE ROLE tap_processor NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created by a concurrent migration of another database
END
$$;

GRANT USAGE ON SCHEMA tap TO tap_processor;

GRANT SELECT, INSERT ON tap.readings, tap.reading_keys, tap.anomalies, tap.dead_letters
    TO tap_processor;
GRANT SELECT, INSERT, UPDATE ON tap.shard_leases TO tap_processor;
GRANT SELECT, INSERT, UPDATE, DELETE ON tap.workers TO tap_processor;
GRANT SELECT ON tap.schema_migrations TO tap_processor;

-- Tables created later by the migrating role (the owner) in schema tap.
ALTER DEFAULT PRIVILEGES IN SCHEMA tap GRANT SELECT, INSERT ON TABLES TO tap_processor;
ALTER DEFAULT PRIVILEGES IN SCHEMA tap GRANT USAGE, SELECT ON SEQUENCES TO tap_processor;

-- Daily partitions are created by the processor (hourly job) but need ownership of
-- tap.readings: run the function with its owner's rights. Every name in its body
-- is schema-qualified or in pg_catalog; pinning search_path stops a caller from
-- shadowing one with an object of their own (pg_temp last, as PostgreSQL advises).
ALTER FUNCTION tap.ensure_partitions(date, integer)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE EXECUTE ON FUNCTION tap.ensure_partitions(date, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tap.ensure_partitions(date, integer) TO tap_processor;
