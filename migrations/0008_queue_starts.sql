-- A ledger of first claims per rate-limited queue, counted by time bucket, so that a
-- claim can bound how many runs its rate window holds by reading a few buckets instead
-- of every run started in the window (thousands per claim on a busy queue).
--
-- Every statement that first claims a run (claim_limited_runs, claim_run,
-- insert_claimed_run) adds it here when its queue has a rate. The ledger only ever
-- over-counts a window (a bucket that reaches into it counts whole): a claim that finds
-- the bound close to the limit counts the runs themselves, as before, so the limit is
-- enforced exactly as it was.
CREATE TABLE forgeflow.queue_starts (
    queue  text NOT NULL,
    -- Every start counted in this row happened before this instant, and at most a
    -- twentieth of the queue's rate period earlier (the width of its bucket).
    until  timestamptz NOT NULL,
    starts integer NOT NULL,
    PRIMARY KEY (queue, until)
);

-- Since when every first claim of the queue is in the ledger: reset when its rate period
-- is declared or changed. The first claims of a window from before then are counted
-- from the runs (none once a period has gone by).
ALTER TABLE forgeflow.queues
    ADD COLUMN starts_counted_from timestamptz NOT NULL DEFAULT now();
