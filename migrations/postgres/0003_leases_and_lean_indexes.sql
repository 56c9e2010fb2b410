-- A node's lease lives on its row: one heartbeat renews the lease of every
-- run the node has in flight, instead of rewriting each run (which also
-- deadlocked against the batched completions that lock the same rows).
-- A run is abandoned once its own lease from the claim has passed and its
-- node's lease has passed too (or the node is gone).
ALTER TABLE nodes ADD COLUMN expires_at BIGINT NOT NULL DEFAULT 0;
UPDATE nodes SET expires_at = heartbeat_at + 30000;

-- Running runs are found through their jobs (a running job names its run),
-- so no index of runs mentions the status or the end: closing a run changes
-- no indexed column, and PostgreSQL rewrites the row in place (a HOT update)
-- without touching the indexes. Fill factor leaves a page room for that.
DROP INDEX runs_running;
DROP INDEX runs_node_running;
DROP INDEX runs_finished;
CREATE INDEX runs_started ON runs (started_at);
ALTER TABLE runs SET (fillfactor = 60);

DROP INDEX jobs_node;
CREATE INDEX jobs_running ON jobs (node_id) WHERE state = 'running';

-- Most jobs have no unique key: index only those that do.
ALTER TABLE jobs DROP CONSTRAINT jobs_unique_key_key;
CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key) WHERE unique_key IS NOT NULL;
