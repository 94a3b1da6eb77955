-- The initial forgeflow schema: runs, their step checkpoints, resume hooks and event waits.
CREATE SCHEMA IF NOT EXISTS forgeflow;

CREATE TABLE forgeflow.workflow_runs (
    id               text PRIMARY KEY,
    workflow         text NOT NULL,
    version          integer NOT NULL,
    queue            text NOT NULL DEFAULT 'default',
    status           text NOT NULL DEFAULT 'created' CHECK (status IN (
                         'created', 'running', 'waiting', 'completed',
                         'compensating', 'compensated', 'failed')),
    input            jsonb NOT NULL,
    output           jsonb,
    error            jsonb,
    -- why the run was rolled back: a step failure, a cancel or its deadline.
    end_reason       text CHECK (end_reason IN ('failure', 'cancel', 'timeout')),
    cancel_requested boolean NOT NULL DEFAULT false,
    -- set by anything that wakes a run (a hook decision, an event, a child finishing)
    -- so that a run that suspends right after such a wake-up is claimed again at once.
    wake_requested   boolean NOT NULL DEFAULT false,
    idempotency_key  text UNIQUE,
    parent_run_id    text REFERENCES forgeflow.workflow_runs (id) ON DELETE CASCADE,
    parent_step      text,
    detached         boolean NOT NULL DEFAULT false,
    wait             jsonb,
    -- when a worker may claim the run; NULL while it runs nowhere and waits for a wake-up.
    runnable_at      timestamptz,
    timeout_seconds  double precision NOT NULL,
    deadline         timestamptz,
    lease_owner      text,
    lease_expires_at timestamptz,
    executions       integer NOT NULL DEFAULT 0,
    -- while in the future, each checkpoint NOTIFYs its step (someone watches the run).
    watched_until    timestamptz,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    completed_at     timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX workflow_runs_claim_idx ON forgeflow.workflow_runs (queue, runnable_at)
    WHERE runnable_at IS NOT NULL;
CREATE INDEX workflow_runs_status_idx ON forgeflow.workflow_runs (status, created_at DESC, id);
CREATE INDEX workflow_runs_created_idx ON forgeflow.workflow_runs (created_at DESC, id);
CREATE INDEX workflow_runs_workflow_idx ON forgeflow.workflow_runs (workflow, created_at DESC);
CREATE INDEX workflow_runs_parent_idx ON forgeflow.workflow_runs (parent_run_id)
    WHERE parent_run_id IS NOT NULL;
CREATE INDEX workflow_runs_lease_idx ON forgeflow.workflow_runs (lease_owner)
    WHERE lease_owner IS NOT NULL;

-- No foreign key to workflow_runs: every write here is made by a statement that has just
-- found (and key-share locked) the run while checking the lease, and a foreign key would
-- take that same lock a second time on the hot path.
CREATE TABLE forgeflow.workflow_steps (
    run_id             text NOT NULL,
    name               text NOT NULL,
    -- step, sleep, hook, wait, event, child, poll: what kind of checkpoint this is.
    kind               text NOT NULL DEFAULT 'step',
    input              jsonb,
    status             text NOT NULL CHECK (status IN (
                           'pending', 'running', 'completed', 'failed', 'compensated',
                           'skipped')),
    result             jsonb,
    result_type        text,
    error              jsonb,
    attempts           integer NOT NULL DEFAULT 1,
    started_at         timestamptz,
    completed_at       timestamptz,
    compensated_at     timestamptz,
    compensation_error jsonb,
    PRIMARY KEY (run_id, name)
);

CREATE TABLE forgeflow.hooks (
    id              text PRIMARY KEY,
    run_id          text NOT NULL REFERENCES forgeflow.workflow_runs (id) ON DELETE CASCADE,
    workflow        text NOT NULL,
    name            text NOT NULL,
    step            text NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN (
                        'pending', 'active', 'consumed', 'expired')),
    on_timeout      text NOT NULL CHECK (on_timeout IN ('approve', 'reject', 'escalate')),
    timeout_seconds double precision,
    metadata        jsonb NOT NULL DEFAULT '{}',
    decision        text CHECK (decision IN ('approve', 'reject', 'escalate')),
    data            jsonb,
    idempotency_key text,
    created_at      timestamptz NOT NULL,
    activated_at    timestamptz,
    expires_at      timestamptz,
    resolved_at     timestamptz
);

CREATE INDEX hooks_status_idx ON forgeflow.hooks (status, created_at);
CREATE INDEX hooks_run_idx ON forgeflow.hooks (run_id);

CREATE TABLE forgeflow.event_waits (
    run_id       text NOT NULL REFERENCES forgeflow.workflow_runs (id) ON DELETE CASCADE,
    step         text NOT NULL,
    event_type   text NOT NULL,
    match        jsonb NOT NULL DEFAULT '{}',
    status       text NOT NULL DEFAULT 'waiting' CHECK (status IN (
                     'waiting', 'delivered', 'expired')),
    payload      jsonb,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    delivered_at timestamptz,
    PRIMARY KEY (run_id, step)
);

-- send_event looks up the open waits of one event type, then tests containment.
CREATE INDEX event_waits_open_idx ON forgeflow.event_waits (event_type)
    WHERE status = 'waiting';

-- Live workers and what they can execute, so that status can say why a run is not
-- picked up (no live worker has its workflow version or serves its queue).
CREATE TABLE forgeflow.workers (
    id           text PRIMARY KEY,
    queues       text[] NOT NULL,
    workflows    text[] NOT NULL,  -- "name:version" of every registered definition
    concurrency  integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
