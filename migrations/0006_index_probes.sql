-- Index probes for the claim loop's wake-up queries, so that what a worker reads per
-- claim pass is bounded by what it returns, not by how many runs wait.

-- Unleased runs with a timer (a durable sleep, a retry delay, a delayed start), per
-- workflow version and in due order: the next timer a worker can serve is the first
-- entry under each (queue, workflow, version) it serves.
CREATE INDEX workflow_runs_timer_idx
    ON forgeflow.workflow_runs (queue, workflow, version, runnable_at)
    WHERE runnable_at IS NOT NULL AND lease_owner IS NULL;

-- Leased runs by lease expiry: when an abandoned run becomes claimable again. Small,
-- since only executing runs are in it.
CREATE INDEX workflow_runs_lease_expiry_idx
    ON forgeflow.workflow_runs (queue, lease_expires_at)
    WHERE lease_owner IS NOT NULL;
