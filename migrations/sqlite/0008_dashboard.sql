-- The dashboard (issue 13).
-- A job's context is kept on its final failed run, so a finished failed job
-- can be retried (enqueued again with the same context). Written only for
-- final failures.
ALTER TABLE runs ADD COLUMN context TEXT;
-- The claim index carries `attempt`, so the overview's capped counts of
-- scheduled (never tried) and retrying jobs per queue stay in the index.
DROP INDEX jobs_claim;
CREATE INDEX jobs_claim ON jobs (queue, priority, run_at, id, attempt) WHERE state = 'available';
