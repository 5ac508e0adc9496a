-- 0008: the read API's role (issue 13, item 1). `tap api` serves the plant board and
-- the data team from PostgreSQL and Redis; nothing it does may write. It connects as
-- tap_api_reader (a login whose password the API's secret holds), which has SELECT on
-- the tables the API reads and nothing else: no INSERT, UPDATE, DELETE, TRUNCATE,
-- no ownership (so no ALTER, DROP or trigger changes), no EXECUTE on the SECURITY
-- DEFINER partition function.
--
-- processor/contract/storage.py API_READER_TABLE_PRIVILEGES is the decision per table;
-- tests/integration/test_api_reader.py checks the database against it.
--
-- RULE FOR LATER MIGRATIONS (as 0004's for tap_processor): a new table in schema tap
-- gets SELECT for tap_api_reader by the default privileges below, and must be added
-- to API_READER_TABLE_PRIVILEGES; a table the API must not read gets
-- REVOKE SELECT ... FROM tap_api_reader in the same migration.
--
-- Roles are cluster-wide and several databases (tests) may migrate at once, so the
-- role is created only if missing, tolerating a concurrent creator. No password here.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tap_api_reader') THEN
        CREATE ROLE tap_api_reader NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created by a concurrent migration of another database
END
$$;

GRANT USAGE ON SCHEMA tap TO tap_api_reader;

GRANT SELECT ON tap.readings, tap.reading_keys, tap.anomalies, tap.dead_letters
    TO tap_api_reader;

-- Tables created later by the migrating role (the owner) in schema tap, daily
-- partitions included (a query on a parent needs only the parent's grant, but a
-- partition read directly, as the data team sometimes does, needs its own).
ALTER DEFAULT PRIVILEGES IN SCHEMA tap GRANT SELECT ON TABLES TO tap_api_reader;
