-- Fewer index entries written per run. Every insert of a run row and every update that
-- changes an indexed column (a claim, a finish) adds an entry to each index whose
-- predicate the new row version meets: an executing run was in three partial indexes
-- (WHERE lease_owner IS NOT NULL), two of which nothing needs. No query looks runs up by
-- lease owner alone (a heartbeat finds its runs by id), and the per-queue counts of
-- executing runs (limited claims, queue stats) read the lease expiry index as well, with
-- the concurrency key carried in it.
DROP INDEX forgeflow.workflow_runs_lease_idx;
DROP INDEX forgeflow.workflow_runs_executing_idx;
DROP INDEX forgeflow.workflow_runs_lease_expiry_idx;
CREATE INDEX workflow_runs_lease_expiry_idx
    ON forgeflow.workflow_runs (queue, lease_expires_at) INCLUDE (concurrency_key)
    WHERE lease_owner IS NOT NULL;
