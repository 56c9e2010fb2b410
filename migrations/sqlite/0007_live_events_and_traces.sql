-- Live events across processes (issue 13). A watcher is a process with at
-- least one live event stream open; while any watcher row is fresh, nodes
-- publish their events to the cluster, and not otherwise.
CREATE TABLE watchers (
    id          TEXT PRIMARY KEY,
    expires_at  INTEGER NOT NULL
);

-- SQLite cannot push: published batches of events land here and watching
-- processes poll them by id (writes are serialised, so ids appear in commit
-- order). Rows older than a minute are pruned.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    origin      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    payload     TEXT NOT NULL
);

-- The W3C traceparent of the request that enqueued a job: its runs' spans
-- are children of it.
ALTER TABLE jobs ADD COLUMN traceparent TEXT;
