-- Flow control across nodes (see the README's "Flow control").

-- Per queue, for the whole cluster: paused, a limit on runs in flight, a
-- limit on starts per period, and what partitions the queue (`template`, or
-- a JSON pointer into the context such as `/customer_id`). A queue without
-- a row has none of these.
CREATE TABLE queues (
    name            TEXT PRIMARY KEY,
    paused          INTEGER NOT NULL DEFAULT 0,
    global_limit    INTEGER CHECK (global_limit > 0),
    rate_limit      INTEGER CHECK (rate_limit > 0),
    rate_period_ms  INTEGER CHECK (rate_period_ms > 0),
    partition_by    TEXT,
    updated_at      INTEGER NOT NULL,
    CHECK ((rate_limit IS NULL) = (rate_period_ms IS NULL))
);

-- The starts of rate-limited queues within their period: the sliding window
-- a claim counts. Claims prune what has left the window.
CREATE TABLE queue_starts (
    queue          TEXT NOT NULL,
    partition_key  TEXT,
    started_at     INTEGER NOT NULL
);
CREATE INDEX queue_starts_window ON queue_starts (queue, started_at);

-- A job's partition key (the JSON text of the value its queue's pointer
-- finds in its context, '' when it finds none, or its template's name as a
-- JSON string), set at enqueue while its queue is partitioned; NULL
-- otherwise. The claim of a partitioned queue walks its partitions through
-- this index.
ALTER TABLE jobs ADD COLUMN partition_key TEXT;
CREATE INDEX jobs_partition ON jobs (queue, partition_key, priority, run_at, id)
    WHERE state = 'available' AND partition_key IS NOT NULL;

-- How many times the job snoozed (a snooze gives its attempt back; a node
-- caps snoozes per job).
ALTER TABLE jobs ADD COLUMN snoozes INTEGER NOT NULL DEFAULT 0;

-- A run may end `snoozed`. SQLite cannot change a CHECK constraint in place:
-- the runs table is rebuilt with the same columns, indexes and id sequence.
CREATE TABLE runs_new (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id            INTEGER NOT NULL,
    template          TEXT NOT NULL,
    attempt           INTEGER NOT NULL,
    max_attempts      INTEGER NOT NULL,
    node_id           TEXT NOT NULL,
    digest            TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('running', 'done')),
    result            TEXT CHECK (result IN ('succeeded', 'failed', 'cancelled', 'snoozed')),
    reason            TEXT,
    message           TEXT,
    output            TEXT,
    logs              TEXT NOT NULL DEFAULT '[]',
    progress_percent  INTEGER,
    progress_message  TEXT,
    checkpoint        TEXT,
    started_at        INTEGER NOT NULL,
    finished_at       INTEGER,
    expires_at        INTEGER NOT NULL,
    unique_key        TEXT,
    calls             TEXT NOT NULL DEFAULT '[]',
    calls_made        INTEGER NOT NULL DEFAULT 0,
    calls_denied      INTEGER NOT NULL DEFAULT 0
);
INSERT INTO runs_new (id, job_id, template, attempt, max_attempts, node_id, digest, status, result, reason, message,
                      output, logs, progress_percent, progress_message, checkpoint, started_at, finished_at, expires_at,
                      unique_key, calls, calls_made, calls_denied)
SELECT id, job_id, template, attempt, max_attempts, node_id, digest, status, result, reason, message,
       output, logs, progress_percent, progress_message, checkpoint, started_at, finished_at, expires_at, unique_key,
       calls, calls_made, calls_denied
FROM runs;
-- Ids of pruned runs are not handed out again.
INSERT INTO sqlite_sequence (name, seq) SELECT 'runs_new', seq FROM sqlite_sequence WHERE name = 'runs'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'runs_new');
UPDATE sqlite_sequence SET seq = MAX(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'runs'))
    WHERE name = 'runs_new' AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'runs');
DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;
CREATE INDEX runs_job ON runs (job_id);
CREATE INDEX runs_template ON runs (template, id);
CREATE INDEX runs_started ON runs (started_at);
