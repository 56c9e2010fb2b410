-- elihu on SQLite: the tables of DESIGN.md. Times are milliseconds since the
-- Unix epoch (UTC); JSON is stored as text.

-- Component bytes, content-addressed, stored once so every node can load them.
CREATE TABLE components (
    digest      TEXT PRIMARY KEY,
    bytes       BLOB NOT NULL,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);

-- Named job types.
CREATE TABLE templates (
    name             TEXT PRIMARY KEY,
    digest           TEXT NOT NULL REFERENCES components(digest),
    schema           TEXT NOT NULL,
    queue            TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    timeout_ms       INTEGER NOT NULL,
    memory_bytes     INTEGER NOT NULL,
    backoff_base_ms  INTEGER NOT NULL,
    backoff_max_ms   INTEGER NOT NULL,
    config           TEXT NOT NULL,
    version          INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

-- Jobs waiting or running. A finished job is deleted; its history stays in runs.
CREATE TABLE jobs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    template          TEXT NOT NULL,
    context           TEXT NOT NULL,
    queue             TEXT NOT NULL,
    priority          INTEGER NOT NULL,
    run_at            INTEGER NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('available', 'running')),
    attempt           INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    timeout_ms        INTEGER NOT NULL,
    memory_bytes      INTEGER NOT NULL,
    unique_key        TEXT UNIQUE,
    checkpoint        TEXT,
    current_run       INTEGER,
    node_id           TEXT,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL
);
CREATE INDEX jobs_claim ON jobs (queue, state, priority, run_at, id);
CREATE INDEX jobs_node ON jobs (node_id) WHERE node_id IS NOT NULL;

-- Every attempt of every job: history, kept until pruned. A run cut short by
-- a shutdown gives its attempt back, so (job_id, attempt) is not unique.
CREATE TABLE runs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id            INTEGER NOT NULL,
    template          TEXT NOT NULL,
    attempt           INTEGER NOT NULL,
    max_attempts      INTEGER NOT NULL,
    node_id           TEXT NOT NULL,
    digest            TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('running', 'done')),
    result            TEXT CHECK (result IN ('succeeded', 'failed', 'cancelled')),
    reason            TEXT,
    message           TEXT,
    output            TEXT,
    logs              TEXT NOT NULL DEFAULT '[]',
    progress_percent  INTEGER,
    progress_message  TEXT,
    checkpoint        TEXT,
    started_at        INTEGER NOT NULL,
    finished_at       INTEGER,
    expires_at        INTEGER NOT NULL
);
CREATE INDEX runs_running ON runs (status, expires_at) WHERE status = 'running';
CREATE INDEX runs_job ON runs (job_id);
CREATE INDEX runs_template_finished ON runs (template, finished_at);

-- Host processes working this database.
CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,
    hostname      TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    queues        TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    heartbeat_at  INTEGER NOT NULL
);

-- The leader lease: the node holding it runs the maintenance services.
CREATE TABLE leader (
    name        TEXT PRIMARY KEY,
    node_id     TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
);
