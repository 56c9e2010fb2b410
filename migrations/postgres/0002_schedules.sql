-- Schedules: see migrations/sqlite/0002_schedules.sql.
CREATE TABLE schedules (
    name         TEXT PRIMARY KEY,
    template     TEXT NOT NULL,
    context      TEXT NOT NULL,
    cron         TEXT,
    interval_ms  BIGINT,
    timezone     TEXT,
    catch_up     TEXT NOT NULL CHECK (catch_up IN ('one', 'skip')),
    paused       BOOLEAN NOT NULL DEFAULT FALSE,
    last_firing  BIGINT,
    current_job  BIGINT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    CHECK ((cron IS NULL) <> (interval_ms IS NULL))
);

ALTER TABLE runs ADD COLUMN unique_key TEXT;

-- A job not started by this time is no longer claimed (a scheduled job whose
-- missed firing is to be skipped); the scheduler withdraws it.
ALTER TABLE jobs ADD COLUMN discard_after BIGINT;
