-- elihu on PostgreSQL: the tables of DESIGN.md, as in migrations/sqlite.
-- Times are milliseconds since the Unix epoch (UTC); JSON is stored as text.

CREATE TABLE components (
    digest      TEXT PRIMARY KEY,
    bytes       BYTEA NOT NULL,
    size        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE templates (
    name             TEXT PRIMARY KEY,
    digest           TEXT NOT NULL REFERENCES components (digest),
    schema           TEXT NOT NULL,
    queue            TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    max_attempts     BIGINT NOT NULL,
    timeout_ms       BIGINT NOT NULL,
    memory_bytes     BIGINT NOT NULL,
    backoff_base_ms  BIGINT NOT NULL,
    backoff_max_ms   BIGINT NOT NULL,
    config           TEXT NOT NULL,
    version          BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

CREATE TABLE jobs (
    id                BIGSERIAL PRIMARY KEY,
    template          TEXT NOT NULL,
    context           TEXT NOT NULL,
    queue             TEXT NOT NULL,
    priority          INTEGER NOT NULL,
    run_at            BIGINT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('available', 'running')),
    attempt           BIGINT NOT NULL DEFAULT 0,
    max_attempts      BIGINT NOT NULL,
    timeout_ms        BIGINT NOT NULL,
    memory_bytes      BIGINT NOT NULL,
    unique_key        TEXT UNIQUE,
    checkpoint        TEXT,
    current_run       BIGINT,
    node_id           TEXT,
    cancel_requested  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at        BIGINT NOT NULL
);
CREATE INDEX jobs_claim ON jobs (queue, priority, run_at, id) WHERE state = 'available';
CREATE INDEX jobs_node ON jobs (node_id) WHERE node_id IS NOT NULL;
CREATE INDEX jobs_template ON jobs (template);

-- A run cut short by a shutdown gives its attempt back, so (job_id, attempt)
-- is not unique.
CREATE TABLE runs (
    id                BIGSERIAL PRIMARY KEY,
    job_id            BIGINT NOT NULL,
    template          TEXT NOT NULL,
    attempt           BIGINT NOT NULL,
    max_attempts      BIGINT NOT NULL,
    node_id           TEXT NOT NULL,
    digest            TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('running', 'done')),
    result            TEXT CHECK (result IN ('succeeded', 'failed', 'cancelled')),
    reason            TEXT,
    message           TEXT,
    output            TEXT,
    logs              TEXT NOT NULL DEFAULT '[]',
    progress_percent  BIGINT,
    progress_message  TEXT,
    checkpoint        TEXT,
    started_at        BIGINT NOT NULL,
    finished_at       BIGINT,
    expires_at        BIGINT NOT NULL
);
CREATE INDEX runs_running ON runs (expires_at) WHERE status = 'running';
CREATE INDEX runs_node_running ON runs (node_id) WHERE status = 'running';
CREATE INDEX runs_job ON runs (job_id);
CREATE INDEX runs_template ON runs (template, id);
CREATE INDEX runs_finished ON runs (finished_at) WHERE status = 'done';

CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,
    hostname      TEXT NOT NULL,
    pid           BIGINT NOT NULL,
    queues        TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL
);

CREATE TABLE leader (
    name        TEXT PRIMARY KEY,
    node_id     TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
