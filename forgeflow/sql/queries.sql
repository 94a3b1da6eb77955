-- Every statement forgeflow sends to PostgreSQL, each under a "-- name: x" header.
-- Statements that write on behalf of a worker check its lease in the same statement:
-- a worker that lost its lease (paused, partitioned) has its write refused by the
-- database, and the row lock taken by the check keeps a claimer out while it commits.

-- name: insert_run
INSERT INTO forgeflow.workflow_runs
    (id, workflow, version, queue, input, idempotency_key, runnable_at, timeout_seconds,
     created_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $7)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id, pg_notify('forgeflow_wakeup', queue);

-- name: run_by_idempotency_key
SELECT id, workflow FROM forgeflow.workflow_runs WHERE idempotency_key = $1;

-- name: claim_runs
WITH candidates AS (
    SELECT id FROM forgeflow.workflow_runs
    WHERE runnable_at IS NOT NULL
      AND runnable_at <= $1
      AND queue = ANY($2::text[])
      AND (lease_expires_at IS NULL OR lease_expires_at < now())
      -- Matched as "name:version" text on purpose: the planner then scans the small
      -- claim index instead of combining it with the per-workflow history index.
      AND (workflow || ':' || version) = ANY($3::text[])
    ORDER BY runnable_at
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)
UPDATE forgeflow.workflow_runs r
SET lease_owner = $5,
    lease_expires_at = now() + make_interval(secs => $6),
    status = CASE WHEN r.status IN ('created', 'waiting') THEN 'running' ELSE r.status END,
    started_at = coalesce(r.started_at, $1),
    deadline = coalesce(r.deadline, $1 + make_interval(secs => r.timeout_seconds)),
    runnable_at = $1,
    wake_requested = false,
    executions = r.executions + 1,
    -- A run still leased when claimed was abandoned by a crash (a dead worker, a lost
    -- lease). Count such executions in a row that wrote no checkpoint at all.
    recoveries = CASE
        WHEN r.lease_owner IS NULL THEN 0
        WHEN EXISTS (SELECT 1 FROM forgeflow.workflow_steps s
                     WHERE s.run_id = r.id AND s.execution = r.executions) THEN 0
        ELSE r.recoveries + 1
    END,
    updated_at = now()
FROM candidates c
WHERE r.id = c.id
RETURNING r.id, r.workflow, r.version, r.status, r.input, r.cancel_requested, r.end_reason,
          r.error, r.started_at, r.deadline, r.parent_run_id, r.recoveries,
          pg_notify('forgeflow_run_changed', r.id);

-- name: claim_run
UPDATE forgeflow.workflow_runs r
SET lease_owner = $2,
    lease_expires_at = now() + make_interval(secs => $3),
    status = CASE WHEN r.status IN ('created', 'waiting') THEN 'running' ELSE r.status END,
    started_at = coalesce(r.started_at, $4),
    deadline = coalesce(r.deadline, $4 + make_interval(secs => r.timeout_seconds)),
    runnable_at = $4,
    wake_requested = false,
    executions = r.executions + 1,
    -- A run still leased when claimed was abandoned by a crash (a dead worker, a lost
    -- lease). Count such executions in a row that wrote no checkpoint at all.
    recoveries = CASE
        WHEN r.lease_owner IS NULL THEN 0
        WHEN EXISTS (SELECT 1 FROM forgeflow.workflow_steps s
                     WHERE s.run_id = r.id AND s.execution = r.executions) THEN 0
        ELSE r.recoveries + 1
    END,
    updated_at = now()
WHERE r.id = $1
  AND r.runnable_at IS NOT NULL
  AND r.runnable_at <= $4
  AND (r.lease_expires_at IS NULL OR r.lease_expires_at < now())
RETURNING r.id, r.workflow, r.version, r.status, r.input, r.cancel_requested, r.end_reason,
          r.error, r.started_at, r.deadline, r.parent_run_id, r.recoveries,
          pg_notify('forgeflow_run_changed', r.id);

-- name: next_runnable_at
-- When the claim loop should look again: a timer coming due or a lease running out.
SELECT min(greatest(runnable_at, coalesce(lease_expires_at, runnable_at)))
FROM forgeflow.workflow_runs
WHERE runnable_at IS NOT NULL
  AND queue = ANY($1::text[])
  AND (workflow || ':' || version) = ANY($2::text[]);

-- name: load_steps
SELECT name, kind, status, result, result_type, error, attempts, completed_at
FROM forgeflow.workflow_steps WHERE run_id = $1;

-- name: checkpoint_step
-- The hot path: one statement writes the checkpoint, verifies the lease and reports
-- whether a cancel was requested meanwhile.
WITH run AS (
    SELECT cancel_requested, watched_until, executions FROM forgeflow.workflow_runs
    WHERE id = $1 AND lease_owner = $2 AND lease_expires_at > now()
    FOR KEY SHARE
), saved AS (
    INSERT INTO forgeflow.workflow_steps
        (run_id, name, kind, status, result, result_type, error, attempts, started_at,
         completed_at, input, execution)
    SELECT $1, $3, $4, $5, $6::jsonb, $7, $8::jsonb, $9, $10, $11, $12::jsonb, executions
    FROM run
    ON CONFLICT (run_id, name) DO UPDATE
    SET kind = excluded.kind, status = excluded.status, result = excluded.result,
        execution = excluded.execution,
        input = coalesce(excluded.input, forgeflow.workflow_steps.input),
        result_type = excluded.result_type, error = excluded.error,
        attempts = excluded.attempts,
        started_at = coalesce(forgeflow.workflow_steps.started_at, excluded.started_at),
        completed_at = excluded.completed_at
)
-- Step changes are announced only while someone watches the run: no NOTIFY otherwise.
SELECT cancel_requested,
       CASE WHEN watched_until > now() THEN pg_notify('forgeflow_step', $1) END
FROM run;

-- name: mark_compensated
WITH run AS (
    SELECT executions FROM forgeflow.workflow_runs
    WHERE id = $1 AND lease_owner = $2 AND lease_expires_at > now()
    FOR KEY SHARE
)
UPDATE forgeflow.workflow_steps s
SET status = CASE WHEN $4::jsonb IS NULL THEN 'compensated' ELSE s.status END,
    compensated_at = $3, compensation_error = $4::jsonb, execution = run.executions
FROM run
WHERE s.run_id = $1 AND s.name = $5
RETURNING s.name;

-- name: heartbeat
UPDATE forgeflow.workflow_runs
SET lease_expires_at = now() + make_interval(secs => $3)
WHERE lease_owner = $1 AND id = ANY($2::text[])
RETURNING id;

-- name: suspend_run
-- A wake-up that arrived while the run was still executing (wake_requested) makes the
-- run claimable at once instead of at its timer, so no decision or event is lost.
UPDATE forgeflow.workflow_runs
SET status = 'waiting', wait = $3::jsonb,
    runnable_at = CASE WHEN wake_requested THEN $5 ELSE $4 END,
    wake_requested = false,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
WHERE id = $1 AND lease_owner = $2 AND NOT cancel_requested
RETURNING id, pg_notify('forgeflow_run_changed', id),
          CASE WHEN runnable_at <= $5 THEN pg_notify('forgeflow_wakeup', queue) END;

-- name: release_run
UPDATE forgeflow.workflow_runs
SET lease_owner = NULL, lease_expires_at = NULL, runnable_at = $3, updated_at = now()
WHERE id = $1 AND lease_owner = $2
RETURNING id, pg_notify('forgeflow_wakeup', queue);

-- name: park_for_children
-- A cancelled parent waits (holding no worker) until its attached children have been
-- rolled back; the last child to finish wakes it through finish_run.
UPDATE forgeflow.workflow_runs
SET wait = $3::jsonb, lease_owner = NULL, lease_expires_at = NULL, wake_requested = false,
    runnable_at = CASE WHEN wake_requested THEN $4::timestamptz END, updated_at = now()
WHERE id = $1 AND lease_owner = $2
  AND EXISTS (
      SELECT 1 FROM forgeflow.workflow_runs c
      WHERE c.parent_run_id = $1 AND NOT c.detached
        AND c.status NOT IN ('completed', 'compensated', 'failed'))
RETURNING id, pg_notify('forgeflow_run_changed', id);

-- name: start_compensation
UPDATE forgeflow.workflow_runs
SET status = 'compensating', end_reason = $3, error = $4::jsonb, wait = NULL,
    updated_at = now()
WHERE id = $1 AND lease_owner = $2 AND lease_expires_at > now()
RETURNING id, pg_notify('forgeflow_run_changed', id);

-- name: finish_run
-- Ends a run and, in the same statement, wakes the parent that waits for it and closes
-- its open hooks and event waits: a late decision then gets HookExpired, and an event
-- no longer counts the run as woken.
WITH done AS (
    UPDATE forgeflow.workflow_runs
    SET status = $3, output = $4::jsonb, error = coalesce($5::jsonb, error),
        end_reason = coalesce($6, end_reason), completed_at = $7, runnable_at = NULL,
        lease_owner = NULL, lease_expires_at = NULL, wait = NULL, updated_at = now()
    WHERE id = $1 AND lease_owner = $2 AND lease_expires_at > now()
    RETURNING id, parent_run_id, status
), parent AS (
    UPDATE forgeflow.workflow_runs p
    SET wake_requested = true,
        runnable_at = CASE WHEN p.lease_owner IS NULL THEN $7 ELSE p.runnable_at END
    FROM done
    WHERE p.id = done.parent_run_id
      AND p.status NOT IN ('completed', 'compensated', 'failed')
    RETURNING p.queue
), closed_hooks AS (
    UPDATE forgeflow.hooks h SET status = 'expired', resolved_at = $7
    FROM done WHERE h.run_id = done.id AND h.status IN ('pending', 'active')
), closed_waits AS (
    UPDATE forgeflow.event_waits w SET status = 'expired'
    FROM done WHERE w.run_id = done.id AND w.status = 'waiting'
)
SELECT done.id,
       pg_notify('forgeflow_run_changed', done.id),
       (SELECT count(pg_notify('forgeflow_wakeup', parent.queue)) FROM parent)
FROM done;

-- name: request_cancel
-- Marks the run ($3: itself too, or only its descendants, when something else ended it)
-- and its non-detached descendants; idle ones become claimable now so a worker replays
-- them to rebuild their compensations.
WITH RECURSIVE tree AS (
    SELECT id FROM forgeflow.workflow_runs WHERE id = $1
    UNION ALL
    SELECT c.id FROM forgeflow.workflow_runs c JOIN tree t ON c.parent_run_id = t.id
    WHERE NOT c.detached
), marked AS (
    UPDATE forgeflow.workflow_runs r
    SET cancel_requested = true, wake_requested = true,
        runnable_at = CASE WHEN r.lease_owner IS NULL THEN $2 ELSE r.runnable_at END,
        updated_at = now()
    FROM tree
    WHERE r.id = tree.id
      AND (r.id <> $1 OR $3)
      AND r.status NOT IN ('completed', 'compensated', 'failed')
      AND NOT r.cancel_requested
    RETURNING r.id, r.queue
)
SELECT id, pg_notify('forgeflow_cancel', id), pg_notify('forgeflow_wakeup', queue)
FROM marked;

-- name: watch_run
UPDATE forgeflow.workflow_runs
SET watched_until = greatest(watched_until, now() + make_interval(secs => $2))
WHERE id = $1
RETURNING id;

-- name: wake_run
UPDATE forgeflow.workflow_runs
SET wake_requested = true,
    runnable_at = CASE WHEN lease_owner IS NULL THEN $2 ELSE runnable_at END,
    updated_at = now()
WHERE id = $1 AND status NOT IN ('completed', 'compensated', 'failed')
RETURNING id, pg_notify('forgeflow_wakeup', queue);

-- name: get_run
SELECT r.id, r.workflow, r.version, r.queue, r.status, r.input, r.output, r.error,
       r.end_reason, r.cancel_requested, r.wait, r.runnable_at, r.deadline,
       r.lease_owner, r.parent_run_id, r.detached, r.executions, r.created_at,
       r.started_at, r.completed_at, r.schedule, r.scheduled_at
FROM forgeflow.workflow_runs r WHERE r.id = $1;

-- name: get_run_steps
SELECT name, kind, status, result, error, attempts, started_at, completed_at,
       compensated_at, compensation_error
FROM forgeflow.workflow_steps WHERE run_id = $1
ORDER BY completed_at NULLS LAST, started_at NULLS LAST, name;

-- name: get_run_hooks
SELECT h.id, h.run_id, h.workflow, h.name, h.step, h.status, h.on_timeout, h.metadata,
       h.decision, h.data, h.created_at, h.activated_at, h.expires_at, h.resolved_at
FROM forgeflow.hooks h WHERE h.run_id = $1 ORDER BY h.created_at;

-- name: list_runs
SELECT r.id, r.workflow, r.version, r.queue, r.status, r.input, r.output, r.error,
       r.end_reason, r.cancel_requested, r.wait, r.runnable_at, r.deadline,
       r.lease_owner, r.parent_run_id, r.detached, r.executions, r.created_at,
       r.started_at, r.completed_at
FROM forgeflow.workflow_runs r
WHERE ($1::text IS NULL OR r.status = $1)
  AND ($2::text IS NULL OR r.workflow = $2)
  AND ($3::timestamptz IS NULL OR (r.created_at, r.id) < ($3, $4))
ORDER BY r.created_at DESC, r.id DESC
LIMIT $5;

-- name: insert_hook
WITH run AS (
    SELECT workflow, executions FROM forgeflow.workflow_runs
    WHERE id = $1 AND lease_owner = $2 AND lease_expires_at > now()
    FOR KEY SHARE
), hook AS (
    INSERT INTO forgeflow.hooks
        (id, run_id, workflow, name, step, on_timeout, timeout_seconds, metadata, created_at)
    SELECT $3, $1, run.workflow, $4, $5, $6, $7, $8::jsonb, $9 FROM run
), saved AS (
    INSERT INTO forgeflow.workflow_steps
        (run_id, name, kind, status, result, attempts, started_at, completed_at, execution)
    SELECT $1, $5, 'hook', 'completed', to_jsonb($3::text), 1, $9, $9, executions FROM run
)
SELECT 1 FROM run;

-- name: get_hook
SELECT h.id, h.run_id, h.workflow, h.name, h.step, h.status, h.on_timeout,
       h.timeout_seconds, h.metadata, h.decision, h.data, h.idempotency_key, h.created_at,
       h.activated_at, h.expires_at, h.resolved_at
FROM forgeflow.hooks h WHERE h.id = $1;

-- name: activate_hook
UPDATE forgeflow.hooks
SET status = 'active', activated_at = $2::timestamptz,
    expires_at = CASE WHEN timeout_seconds IS NULL THEN NULL
                      ELSE $2::timestamptz + make_interval(secs => timeout_seconds) END
WHERE id = $1 AND status = 'pending'
RETURNING expires_at;

-- name: expire_hook
UPDATE forgeflow.hooks
SET status = 'expired', resolved_at = $2
WHERE id = $1 AND status = 'active' AND expires_at <= $2
RETURNING id;

-- name: resolve_hook
-- The hook is consumed and its run woken in one statement: exactly one caller wins.
WITH hook AS (
    UPDATE forgeflow.hooks
    SET status = 'consumed', decision = $2, data = $3::jsonb, resolved_at = $4,
        idempotency_key = $5
    WHERE id = $1 AND status IN ('pending', 'active')
      AND (expires_at IS NULL OR expires_at > $4)
    RETURNING run_id
), woken AS (
    UPDATE forgeflow.workflow_runs r
    SET wake_requested = true,
        runnable_at = CASE WHEN r.lease_owner IS NULL THEN $4 ELSE r.runnable_at END,
        updated_at = now()
    FROM hook
    WHERE r.id = hook.run_id AND r.status NOT IN ('completed', 'compensated', 'failed')
    RETURNING r.queue
)
SELECT hook.run_id, (SELECT count(pg_notify('forgeflow_wakeup', queue)) FROM woken)
FROM hook;

-- name: list_hooks
SELECT h.id, h.run_id, h.workflow, h.name, h.step, h.status, h.on_timeout, h.metadata,
       h.decision, h.data, h.created_at, h.activated_at, h.expires_at, h.resolved_at
FROM forgeflow.hooks h
WHERE ($1::text IS NULL OR h.status = $1)
  AND ($2::text IS NULL OR h.workflow = $2)
ORDER BY h.created_at
LIMIT $3;

-- name: insert_event_wait
WITH run AS (
    SELECT executions FROM forgeflow.workflow_runs
    WHERE id = $1 AND lease_owner = $2 AND lease_expires_at > now()
    FOR KEY SHARE
), wait AS (
    INSERT INTO forgeflow.event_waits (run_id, step, event_type, match, created_at, expires_at)
    SELECT $1, $3, $4, $5::jsonb, $6, $7 FROM run
), saved AS (
    INSERT INTO forgeflow.workflow_steps
        (run_id, name, kind, status, result, attempts, started_at, completed_at, execution)
    SELECT $1, $3, 'event', 'running', NULL, 1, $6, NULL, executions FROM run
    ON CONFLICT (run_id, name) DO NOTHING
)
SELECT 1 FROM run;

-- name: get_event_wait
SELECT status, payload, expires_at FROM forgeflow.event_waits WHERE run_id = $1 AND step = $2;

-- name: expire_event_wait
UPDATE forgeflow.event_waits SET status = 'expired'
WHERE run_id = $1 AND step = $2 AND status = 'waiting'
RETURNING step;

-- name: send_event
WITH delivered AS (
    UPDATE forgeflow.event_waits
    SET status = 'delivered', payload = $2::jsonb, delivered_at = $3
    WHERE event_type = $1 AND status = 'waiting' AND $2::jsonb @> match
      AND (expires_at IS NULL OR expires_at > $3)
    RETURNING run_id
), woken AS (
    UPDATE forgeflow.workflow_runs r
    SET wake_requested = true,
        runnable_at = CASE WHEN r.lease_owner IS NULL THEN $3 ELSE r.runnable_at END,
        updated_at = now()
    WHERE r.id IN (SELECT run_id FROM delivered)
      AND r.status NOT IN ('completed', 'compensated', 'failed')
    RETURNING r.queue
)
-- How many runs were woken: a run with two matching waits counts once.
SELECT (SELECT count(DISTINCT run_id) FROM delivered),
       (SELECT count(pg_notify('forgeflow_wakeup', q)) FROM (SELECT DISTINCT queue AS q FROM woken) x);

-- name: insert_child
-- An attached child inherits a cancel that reached the parent a moment before.
WITH run AS (
    SELECT queue, cancel_requested, executions FROM forgeflow.workflow_runs
    WHERE id = $1 AND lease_owner = $2 AND lease_expires_at > now()
    FOR KEY SHARE
), child AS (
    INSERT INTO forgeflow.workflow_runs
        (id, workflow, version, queue, input, parent_run_id, parent_step, detached,
         runnable_at, timeout_seconds, created_at, cancel_requested)
    SELECT $3, $4, $5, coalesce($6, run.queue), $7::jsonb, $1, $8, $9, $10, $11, $10,
           run.cancel_requested AND NOT $9
    FROM run
    ON CONFLICT (id) DO NOTHING
    RETURNING queue
), saved AS (
    INSERT INTO forgeflow.workflow_steps
        (run_id, name, kind, status, result, attempts, started_at, completed_at, execution)
    SELECT $1, $8, 'child', 'completed', to_jsonb($3::text), 1, $10, $10, executions FROM run
)
SELECT (SELECT count(pg_notify('forgeflow_wakeup', queue)) FROM child) FROM run;

-- name: get_run_outcome
SELECT status, output, error, end_reason FROM forgeflow.workflow_runs WHERE id = $1;

-- name: migration_lock
SELECT pg_advisory_lock($1);

-- name: migration_unlock
SELECT pg_advisory_unlock($1);

-- name: create_migrations_table
CREATE SCHEMA IF NOT EXISTS forgeflow;
CREATE TABLE IF NOT EXISTS forgeflow.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
SELECT version FROM forgeflow.schema_migrations ORDER BY version;

-- name: insert_migration
INSERT INTO forgeflow.schema_migrations (version, name) VALUES ($1, $2);

-- name: fire_timers
-- Makes the timers of waiting runs (durable sleeps, retry delays) due at $2: the run
-- becomes claimable then, and the checkpointed wake time moves too, so that the replay
-- does not wait again. Used by ff.resume and by forgeflow.testing.
WITH due AS (
    SELECT id, wait->>'kind' AS kind, wait->>'step' AS step
    FROM forgeflow.workflow_runs
    WHERE status = 'waiting' AND lease_owner IS NULL
      AND ($1::text IS NULL OR id = $1)
      AND wait->>'kind' IN ('sleep', 'retry')
    FOR UPDATE
), sleeps AS (
    UPDATE forgeflow.workflow_steps s
    SET completed_at = $2, result = to_jsonb($3::text)
    FROM due
    WHERE due.kind = 'sleep' AND s.run_id = due.id AND s.name = due.step
      AND s.completed_at > $2
), retries AS (
    UPDATE forgeflow.workflow_steps s
    SET error = jsonb_set(s.error, '{retry_at}', to_jsonb($3::text))
    FROM due
    WHERE due.kind = 'retry' AND s.run_id = due.id AND s.name = due.step
      AND s.error ? 'retry_at'
), runs AS (
    UPDATE forgeflow.workflow_runs r
    SET runnable_at = least(r.runnable_at, $2),
        wait = jsonb_set(r.wait, '{wake_at}', to_jsonb($3::text)), updated_at = now()
    FROM due
    WHERE r.id = due.id
    RETURNING r.id, r.queue
)
SELECT id, pg_notify('forgeflow_wakeup', queue), pg_notify('forgeflow_run_changed', id)
FROM runs;

-- name: register_worker
INSERT INTO forgeflow.workers (id, queues, workflows, concurrency)
VALUES ($1, $2::text[], $3::text[], $4)
ON CONFLICT (id) DO UPDATE
SET queues = excluded.queues, workflows = excluded.workflows,
    concurrency = excluded.concurrency, heartbeat_at = now();

-- name: worker_heartbeat
-- Also forgets workers silent for ten minutes (crashed without unregistering).
WITH beat AS (
    UPDATE forgeflow.workers SET heartbeat_at = now() WHERE id = $1 RETURNING id
), forgotten AS (
    DELETE FROM forgeflow.workers WHERE heartbeat_at < now() - interval '10 minutes'
)
SELECT count(*) FROM beat;

-- name: unregister_worker
DELETE FROM forgeflow.workers WHERE id = $1;

-- name: live_workers_for
SELECT count(*) FROM forgeflow.workers
WHERE heartbeat_at > now() - make_interval(secs => $3)
  AND $1 = ANY(workflows) AND $2 = ANY(queues);

-- name: live_children
SELECT id FROM forgeflow.workflow_runs
WHERE parent_run_id = $1 AND NOT detached
  AND status NOT IN ('completed', 'compensated', 'failed');

-- Schedules ---------------------------------------------------------------------------

-- name: load_replay
-- A run's checkpoints for replay, and its fire time when a schedule started it; the
-- LEFT JOIN yields one row with a NULL name for a run without checkpoints.
SELECT s.name, s.kind, s.status, s.result, s.result_type, s.error, s.attempts,
       s.completed_at, r.scheduled_at
FROM forgeflow.workflow_runs r
LEFT JOIN forgeflow.workflow_steps s ON s.run_id = r.id
WHERE r.id = $1;

-- name: upsert_schedule
-- Created or updated by name. The next fire time is kept unless the cron expression or
-- the time zone changed. A decorator schedule never overwrites a stored one of the same
-- name, and re-declaring an unchanged one writes (and NOTIFYs) nothing.
INSERT INTO forgeflow.schedules
    (name, workflow, version, queue, timeout_seconds, cron, timezone, catchup, input,
     source, next_fire_at, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12, $12)
ON CONFLICT (name) DO UPDATE
SET workflow = excluded.workflow, version = excluded.version, queue = excluded.queue,
    timeout_seconds = excluded.timeout_seconds, cron = excluded.cron,
    timezone = excluded.timezone, catchup = excluded.catchup, input = excluded.input,
    source = excluded.source,
    next_fire_at = CASE
        WHEN (forgeflow.schedules.cron, forgeflow.schedules.timezone)
             IS DISTINCT FROM (excluded.cron, excluded.timezone)
        THEN excluded.next_fire_at ELSE forgeflow.schedules.next_fire_at END,
    updated_at = excluded.updated_at
WHERE excluded.source = 'api'
   OR (forgeflow.schedules.source = 'decorator'
       AND (forgeflow.schedules.workflow, forgeflow.schedules.version,
            forgeflow.schedules.queue, forgeflow.schedules.timeout_seconds,
            forgeflow.schedules.cron, forgeflow.schedules.timezone,
            forgeflow.schedules.catchup, forgeflow.schedules.input)
           IS DISTINCT FROM (excluded.workflow, excluded.version, excluded.queue,
                             excluded.timeout_seconds, excluded.cron, excluded.timezone,
                             excluded.catchup, excluded.input))
RETURNING name, pg_notify('forgeflow_schedules', name);

-- name: forget_declared_schedules
-- Decorator schedules of workflows whose code no longer declares one.
DELETE FROM forgeflow.schedules
WHERE source = 'decorator' AND name = ANY($1::text[])
RETURNING name, pg_notify('forgeflow_schedules', name);

-- name: get_schedule
SELECT name, workflow, version, queue, timeout_seconds, cron, timezone, catchup, input, source, paused, next_fire_at
FROM forgeflow.schedules WHERE name = $1;

-- name: list_schedules
SELECT s.name, s.workflow, s.cron, s.timezone, s.catchup, s.input, s.source, s.paused,
       s.next_fire_at, s.created_at, s.updated_at,
       last.id AS last_run_id, last.status AS last_run_status,
       last.scheduled_at AS last_scheduled_at
FROM forgeflow.schedules s
LEFT JOIN LATERAL (
    SELECT r.id, r.status, r.scheduled_at FROM forgeflow.workflow_runs r
    WHERE r.schedule = s.name
    ORDER BY r.created_at DESC, r.scheduled_at DESC
    LIMIT 1
) last ON true
WHERE ($1::text IS NULL OR s.name = $1)
ORDER BY s.name;

-- name: pause_schedule
UPDATE forgeflow.schedules SET paused = true, updated_at = $2
WHERE name = $1
RETURNING name, pg_notify('forgeflow_schedules', name);

-- name: resume_schedule
-- Resuming fires from the next future time: what fell due while paused is not run.
UPDATE forgeflow.schedules SET paused = false, next_fire_at = $2, updated_at = $3
WHERE name = $1 AND paused
RETURNING name, pg_notify('forgeflow_schedules', name);

-- name: delete_schedule
DELETE FROM forgeflow.schedules WHERE name = $1
RETURNING name, pg_notify('forgeflow_schedules', name);

-- name: due_schedules
SELECT name, workflow, cron, timezone, catchup, next_fire_at
FROM forgeflow.schedules
WHERE NOT paused AND next_fire_at <= $1 AND workflow = ANY($2::text[])
ORDER BY next_fire_at
LIMIT $3;

-- name: next_schedule_fire
SELECT min(next_fire_at) FROM forgeflow.schedules
WHERE NOT paused AND workflow = ANY($1::text[]);

-- name: fire_schedule
-- Deciding and starting in one statement: the compare-and-set on next_fire_at lets one
-- of any number of workers handling the same fire time at once win, and a worker killed
-- in between commits neither. Each run's idempotency key is derived from the schedule
-- and its fire time, so even a schedule reset to an already handled time cannot start a
-- second run for it.
WITH claimed AS (
    UPDATE forgeflow.schedules
    SET next_fire_at = $3, updated_at = $8
    WHERE name = $1 AND next_fire_at = $2 AND NOT paused
    RETURNING name, input
), fired AS (
    INSERT INTO forgeflow.workflow_runs
        (id, workflow, version, queue, input, idempotency_key, runnable_at,
         timeout_seconds, created_at, schedule, scheduled_at)
    SELECT f.id, $4, $5, $6, c.input, 'schedule:' || c.name || ':' || f.key, f.at, $7, $8,
           c.name, f.at
    FROM claimed c, unnest($9::text[], $10::timestamptz[], $11::text[]) AS f (id, at, key)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, pg_notify('forgeflow_wakeup', queue)
)
SELECT (SELECT count(*) FROM claimed) AS claimed, ARRAY(SELECT id FROM fired) AS runs;

-- name: trigger_schedule
-- One run now, outside the cron times; its key says it was a trigger. The workflow's
-- version, queue and timeout are the caller's, or else those stored with the schedule.
INSERT INTO forgeflow.workflow_runs
    (id, workflow, version, queue, input, idempotency_key, runnable_at, timeout_seconds,
     created_at, schedule, scheduled_at)
SELECT $2, s.workflow, coalesce($3, s.version), coalesce($4, s.queue), s.input,
       'schedule:' || s.name || ':trigger:' || $2, $6, coalesce($5, s.timeout_seconds), $6,
       s.name, $6
FROM forgeflow.schedules s WHERE s.name = $1
RETURNING id, pg_notify('forgeflow_wakeup', queue);
