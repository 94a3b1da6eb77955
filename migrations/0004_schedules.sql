-- Schedules: cron workflows, declared on @workflow (source 'decorator', written by every
-- worker at start) or stored with Forgeflow.schedule (source 'api').
CREATE TABLE forgeflow.schedules (
    name         text PRIMARY KEY,
    workflow     text NOT NULL,
    -- What a trigger starts when the triggering process does not know the workflow (the
    -- CLI, the HTTP app): the version, queue and timeout last declared for it. Workers
    -- firing on time start their own registry's latest version instead.
    version      integer NOT NULL,
    queue        text NOT NULL,
    timeout_seconds double precision NOT NULL,
    cron         text NOT NULL,
    timezone     text NOT NULL,
    catchup      text NOT NULL CHECK (catchup IN ('skip', 'latest', 'all')),
    input        jsonb NOT NULL DEFAULT 'null',
    source       text NOT NULL CHECK (source IN ('decorator', 'api')),
    paused       boolean NOT NULL DEFAULT false,
    -- The next fire time not handled yet, in UTC. Firing moves it forward in the same
    -- statement that inserts the runs, with a compare-and-set on its old value.
    next_fire_at timestamptz NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE INDEX schedules_due_idx ON forgeflow.schedules (next_fire_at) WHERE NOT paused;

-- The schedule a run was started by and its fire time (ctx.scheduled_at). A fired run's
-- idempotency key is 'schedule:<name>:<fire time>', so the unique idempotency_key column
-- is what makes a second run for the same fire time impossible.
ALTER TABLE forgeflow.workflow_runs
    ADD COLUMN schedule text,
    ADD COLUMN scheduled_at timestamptz;

CREATE INDEX workflow_runs_schedule_idx ON forgeflow.workflow_runs (schedule, created_at DESC)
    WHERE schedule IS NOT NULL;
