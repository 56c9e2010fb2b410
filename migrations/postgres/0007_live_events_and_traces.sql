-- Live events across processes (issue 13). A watcher is a process with at
-- least one live event stream open; while any watcher row is fresh, nodes
-- publish their events to the cluster (NOTIFY elihu_events), and not
-- otherwise. Events themselves are never stored on PostgreSQL.
CREATE TABLE watchers (
    id          TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);

-- The W3C traceparent of the request that enqueued a job: its runs' spans
-- are children of it. Nullable, so adding it rewrites nothing.
ALTER TABLE jobs ADD COLUMN traceparent TEXT;
