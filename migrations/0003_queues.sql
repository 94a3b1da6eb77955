-- Queues with flow control: per-queue limits, priorities, delayed and debounced starts.

-- One row per declared queue, written by the workers that serve it. Every claim on a
-- limited queue updates its row (claim_seq), so that two workers never count the same
-- free slot: see claim_limited_runs in forgeflow/sql/queries.sql.
CREATE TABLE forgeflow.queues (
    name                text PRIMARY KEY,
    -- at most this many runs of the queue holding a live lease, across all workers.
    concurrency         integer CHECK (concurrency > 0),
    -- the same per concurrency key (workflow_runs.concurrency_key).
    key_concurrency     integer CHECK (key_concurrency > 0),
    -- at most rate_limit first claims in any rate_period_seconds-long interval.
    rate_limit          integer CHECK (rate_limit > 0),
    rate_period_seconds double precision CHECK (rate_period_seconds > 0),
    limited             boolean GENERATED ALWAYS AS (
                            concurrency IS NOT NULL OR key_concurrency IS NOT NULL
                            OR rate_limit IS NOT NULL) STORED,
    -- bumped by every limited claim: a claim whose snapshot predates the last bump retries.
    claim_seq           bigint NOT NULL DEFAULT 0,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((rate_limit IS NULL) = (rate_period_seconds IS NULL))
);

ALTER TABLE forgeflow.workflow_runs
    ADD COLUMN priority        integer NOT NULL DEFAULT 0,
    ADD COLUMN concurrency_key text,
    -- a debounced run: its key, and the latest time its start may be pushed back to.
    ADD COLUMN debounce_key    text,
    ADD COLUMN debounce_until  timestamptz;

-- The claim walks one queue's runnable runs in priority order, FIFO within a priority.
DROP INDEX forgeflow.workflow_runs_claim_idx;
CREATE INDEX workflow_runs_claim_idx ON forgeflow.workflow_runs (queue, priority DESC, runnable_at)
    WHERE runnable_at IS NOT NULL;

-- Runs holding a lease (executing), counted per queue and per key by a limited claim:
-- small, since only executing runs are in it.
CREATE INDEX workflow_runs_executing_idx ON forgeflow.workflow_runs (queue, concurrency_key)
    INCLUDE (lease_expires_at)
    WHERE lease_owner IS NOT NULL;

-- First claims per queue in time order: a rate-limited claim counts one window of them.
CREATE INDEX workflow_runs_started_idx ON forgeflow.workflow_runs (queue, started_at)
    WHERE started_at IS NOT NULL;

-- At most one pending (never claimed) run per workflow and debounce key: a start with
-- that key updates it instead of creating another.
CREATE UNIQUE INDEX workflow_runs_debounce_idx ON forgeflow.workflow_runs (workflow, debounce_key)
    WHERE debounce_key IS NOT NULL AND executions = 0 AND NOT cancel_requested;

-- A run of a limited queue that stops executing frees a slot: wake the workers of that
-- queue at once rather than at their next poll. Only lease releases fire it (finish,
-- suspend, hand back), never the per-step checkpoint.
CREATE FUNCTION forgeflow.notify_slot_released() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM forgeflow.queues WHERE name = NEW.queue AND limited) THEN
        PERFORM pg_notify('forgeflow_wakeup', NEW.queue);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER workflow_runs_slot_released
    AFTER UPDATE OF lease_owner ON forgeflow.workflow_runs
    FOR EACH ROW
    WHEN (OLD.lease_owner IS NOT NULL AND NEW.lease_owner IS NULL)
    EXECUTE FUNCTION forgeflow.notify_slot_released();
