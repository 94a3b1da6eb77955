-- Repairing runs and keeping the database small: lineage of restarted and forked runs,
-- and an index for the retention pass.

-- Where a run came from. Plain text, no foreign key: the source run may be purged by
-- retention while its restarts and forks are kept, and the link then names a run that
-- no longer exists (status shows the id; following it answers RunNotFound).
ALTER TABLE forgeflow.workflow_runs
    ADD COLUMN restarted_from   text,
    ADD COLUMN forked_from      text,
    ADD COLUMN forked_from_step text;

-- Retention and purge look for top-level finished runs, oldest first.
CREATE INDEX workflow_runs_finished_idx ON forgeflow.workflow_runs (completed_at, id)
    WHERE completed_at IS NOT NULL AND parent_run_id IS NULL;
