-- ---------------------------------------------------------------------------
-- 0004 (issue 9): detector settings a plant changes without a deploy. The
-- processor reads this table every TAP_DETECTOR_OVERRIDES_REFRESH_S seconds and
-- resolves each device's settings most specific first: device > longest prefix
-- > sensor_type > the processor's defaults (processor/core/overrides.py;
-- docs/DETECTION.md lists the settings). A row the processor cannot use is
-- refused with a log line naming it (id and field); the other rows still apply.
-- This is configuration, not a compliance record: rows may be updated/deleted.
-- ---------------------------------------------------------------------------
CREATE TABLE tap.detector_overrides (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope      text             NOT NULL CHECK (scope IN ('device', 'prefix', 'sensor_type')),
    match      text             NOT NULL CHECK (match <> ''),
    setting    text             NOT NULL,
    -- NULL disables a limit (warning_high, critical_low, ...).
    value      double precision,
    note       text             NOT NULL DEFAULT '',
    updated_at timestamptz      NOT NULL DEFAULT now(),
    UNIQUE (scope, match, setting)
);

-- The processor only reads the overrides (0004_app_role.sql's default privileges
-- grant SELECT and INSERT on every new table: take INSERT back). The plant edits
-- them as the owner or a role of its own.
REVOKE INSERT ON tap.detector_overrides FROM tap_processor;
