-- A ledger of first claims per rate-limited queue, counted by time bucket, so that a
-- claim can bound how many runs its rate window holds by reading a few rows instead of
-- every run started in the window (thousands per claim on a busy queue).
--
-- Every statement that first claims a run (claim_limited_runs, claim_run,
-- insert_claimed_run) adds it here when its queue has a rate. The ledger only ever
-- over-counts a window (a bucket that reaches into it counts whole): a claim that finds
-- the bound close to the limit counts the runs themselves, as before, so the limit is
-- enforced exactly as it was.
--
-- Each queue has at most 40 rows, a ring of buckets a twentieth of its rate period wide
-- (two periods in all): a bucket takes over the slot of the one two periods older, so
-- nothing is ever deleted and a claim reads one queue's few rows.
CREATE TABLE forgeflow.queue_starts (
    queue  text NOT NULL,
    slot   smallint NOT NULL,
    -- Every start counted in this row happened before this instant.
    until  timestamptz NOT NULL,
    starts integer NOT NULL,
    PRIMARY KEY (queue, slot)
);

-- Since when every first claim of the queue is in the ledger: reset when its rate period
-- is declared or changed. The first claims of a window from before then are counted
-- from the runs (none once a period has gone by).
ALTER TABLE forgeflow.queues
    ADD COLUMN starts_counted_from timestamptz NOT NULL DEFAULT now();
