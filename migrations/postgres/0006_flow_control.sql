-- Flow control across nodes: see migrations/sqlite/0006_flow_control.sql.
CREATE TABLE queues (
    name            TEXT PRIMARY KEY,
    paused          BOOLEAN NOT NULL DEFAULT FALSE,
    global_limit    BIGINT CHECK (global_limit > 0),
    rate_limit      BIGINT CHECK (rate_limit > 0),
    rate_period_ms  BIGINT CHECK (rate_period_ms > 0),
    partition_by    TEXT,
    updated_at      BIGINT NOT NULL,
    CHECK ((rate_limit IS NULL) = (rate_period_ms IS NULL))
);

CREATE TABLE queue_starts (
    queue          TEXT NOT NULL,
    partition_key  TEXT,
    started_at     BIGINT NOT NULL
);
CREATE INDEX queue_starts_window ON queue_starts (queue, started_at);

ALTER TABLE jobs ADD COLUMN partition_key TEXT;
CREATE INDEX jobs_partition ON jobs (queue, partition_key, priority, run_at, id)
    WHERE state = 'available' AND partition_key IS NOT NULL;

ALTER TABLE jobs ADD COLUMN snoozes BIGINT NOT NULL DEFAULT 0;

ALTER TABLE runs DROP CONSTRAINT runs_result_check;
ALTER TABLE runs ADD CONSTRAINT runs_result_check CHECK (result IN ('succeeded', 'failed', 'cancelled', 'snoozed'));
