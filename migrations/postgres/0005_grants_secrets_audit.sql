-- Issue 12: what a template grants its jobs (allowed hosts, headers the host
-- adds, readable secrets) and its own limits, both JSON; a job's narrowing
-- of its template's allowed hosts (JSON, NULL: the template's); the audit
-- of each run's outbound calls (JSON) with its counts for stats; secrets,
-- sealed under the key every node is given, and the value that tells that
-- key from a wrong one.
ALTER TABLE templates ADD COLUMN grants TEXT NOT NULL DEFAULT '{}';
ALTER TABLE templates ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';
ALTER TABLE jobs ADD COLUMN allowed_hosts TEXT;
ALTER TABLE runs ADD COLUMN calls TEXT NOT NULL DEFAULT '[]';
ALTER TABLE runs ADD COLUMN calls_made BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN calls_denied BIGINT NOT NULL DEFAULT 0;

CREATE TABLE secrets (
    name        TEXT PRIMARY KEY,
    sealed      BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE secrets_key (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    key_id       TEXT NOT NULL,
    check_value  BYTEA NOT NULL
);
