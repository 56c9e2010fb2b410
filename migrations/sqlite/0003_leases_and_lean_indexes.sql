-- A node's lease lives on its row: one heartbeat renews the lease of every
-- run the node has in flight, instead of rewriting each run. A run is
-- abandoned once its own lease from the claim has passed and its node's
-- lease has passed too (or the node is gone).
ALTER TABLE nodes ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;
UPDATE nodes SET expires_at = heartbeat_at + 30000;

-- Running runs are found through their jobs (a running job names its run),
-- so closing a run changes no indexed column and touches no index.
DROP INDEX runs_running;
DROP INDEX runs_template_finished;
CREATE INDEX runs_template ON runs (template, id);
CREATE INDEX runs_started ON runs (started_at);

DROP INDEX jobs_node;
CREATE INDEX jobs_running ON jobs (node_id) WHERE state = 'running';

-- Only jobs waiting to be claimed need the claim order.
DROP INDEX jobs_claim;
CREATE INDEX jobs_claim ON jobs (queue, priority, run_at, id) WHERE state = 'available';
