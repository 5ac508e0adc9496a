-- 0007: an anomaly's identity follows its reading's (issue 10 item 4). See
-- docs/PROCESSOR-STORAGE.md, "De-duplication".
--
-- Before: one anomaly per (device_id, seq, anomaly_type). Since 0005 a reading is
-- identified by (device_id, boot, seq, event day), so a device that rebooted (boot
-- + 1, seq from 0), or a version 1 device whose seq started again on a later day,
-- stores new readings whose anomalies collided with the old series' and were
-- dropped by ON CONFLICT DO NOTHING: a silent loss.
--
-- After: one anomaly per (device_id, boot, seq, anomaly_type, event_day), where
--   boot      is the reading's boot counter (0 for version 1 records, and for every
--             row stored before this migration: all of them were boot 0 or lost);
--   event_day is the UTC day of event_ts, generated (so it can never disagree with
--             event_ts, and rows stored before get theirs without an UPDATE, which
--             the append-only trigger of 0002 would refuse). For a reading's anomaly
--             event_ts is the reading's event time, so event_day is the day in the
--             reading's key; for a silent one it is the day the silence became
--             definite.
-- Every existing row keeps its place: the old key was unique, so the wider one is.
--
-- Privileges (0004's rule): no new table and no new function; tap_processor's
-- table-level SELECT and INSERT on tap.anomalies cover the new columns.

ALTER TABLE tap.anomalies ADD COLUMN boot bigint NOT NULL DEFAULT 0 CHECK (boot >= 0);
ALTER TABLE tap.anomalies
    ADD COLUMN event_day date GENERATED ALWAYS AS ((event_ts AT TIME ZONE 'UTC')::date) STORED;
ALTER TABLE tap.anomalies DROP CONSTRAINT anomalies_pkey;
ALTER TABLE tap.anomalies ADD PRIMARY KEY (device_id, boot, seq, anomaly_type, event_day);
