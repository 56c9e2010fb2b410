-- Schedules: rules that enqueue a template with a context, by cron or by
-- interval. `last_firing` is the firing time of the job last enqueued (the
-- compare-and-set that keeps a firing from being enqueued twice) and
-- `current_job` that job, while it is queued or running.
CREATE TABLE schedules (
    name         TEXT PRIMARY KEY,
    template     TEXT NOT NULL,
    context      TEXT NOT NULL,
    cron         TEXT,
    interval_ms  INTEGER,
    timezone     TEXT,
    catch_up     TEXT NOT NULL CHECK (catch_up IN ('one', 'skip')),
    paused       INTEGER NOT NULL DEFAULT 0,
    last_firing  INTEGER,
    current_job  INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    CHECK ((cron IS NULL) <> (interval_ms IS NULL))
);

-- A run keeps its job's unique key (a scheduled job's names its firing).
ALTER TABLE runs ADD COLUMN unique_key TEXT;

-- A job not started by this time is no longer claimed (a scheduled job whose
-- missed firing is to be skipped); the scheduler withdraws it.
ALTER TABLE jobs ADD COLUMN discard_after INTEGER;
