-- The dashboard (issue 13).
-- A job's context is kept on its final failed run, so a finished failed job
-- can be retried (enqueued again with the same context). Written only for
-- final failures; a nullable column without a default is metadata only.
ALTER TABLE runs ADD COLUMN context TEXT;
-- The claim index carries `attempt`, so the overview's capped counts of
-- scheduled (never tried) and retrying jobs per queue stay in the index
-- (an index-only scan). The claim reads the same key prefix as before.
DROP INDEX jobs_claim;
CREATE INDEX jobs_claim ON jobs (queue, priority, run_at, id) INCLUDE (attempt) WHERE state = 'available';
