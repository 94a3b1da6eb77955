-- Every statement forgeflow sends to PostgreSQL, each under a "-- name: x" header.
-- Statements that write on behalf of a worker check its lease in the same statement:
-- a worker that lost its lease (paused, partitioned) has its write refused by the
-- database.
--
-- A write and a claim of one run never overlap. Each run has a transaction-level
-- advisory lock, keyed hashtextextended(run id, 0): a lease-checked write holds it shared
-- (lease_held below), a claim holds it exclusive (tried only on a run it may take, whose
-- lease is gone), both until they commit, and neither waits for it. A write that finds
-- a claim in progress is refused, a claim that finds a write in flight skips the run.
-- The write checks the lease expiry against clock_timestamp() once the lock is held,
-- so even a row it reads from before a claim that committed meanwhile fails the check
-- (that claim saw the lease expired, earlier). Unlike a row lock, the advisory lock is
-- held in memory only: the run row is not written, which on the hot path (a step's
-- checkpoint) saves a WAL record and its share of the commit. A claim's snapshot can
-- still predate the commit of such a write that ended just before the claim tried the
-- lock, so a claim never tells a run executed before that it has no checkpoints to read
-- (has_steps).

-- fragment: lease_held
-- Run $1 is leased to worker $2 (the run row unaliased), its advisory lock taken first.
    WHERE id = $1
      AND CASE WHEN lease_owner = $2
                    AND pg_try_advisory_xact_lock_shared(hashtextextended($1, 0))
               THEN lease_expires_at > clock_timestamp() ELSE false END

-- name: insert_run
-- $7 is the start time, $9 when the run becomes claimable ($7, or later when delayed).
-- The NOTIFY lets idle workers look again either way (at once, or to time their wake).
INSERT INTO forgeflow.workflow_runs
    (id, workflow, version, queue, input, idempotency_key, runnable_at, timeout_seconds,
     created_at, priority, concurrency_key)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $9, $8, $7, $10, $11)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id, pg_notify('forgeflow_wakeup', queue);

-- name: insert_claimed_run
-- insert_run for a run the caller executes itself at once (Forgeflow.run): the run is
-- written already leased to $11 for $12 seconds, as claim_run would leave it, so that
-- neither a claim nor a replay read follows. Workers are not woken (the run is leased);
-- the columns returned are claim_run's. Nothing is written when the idempotency key is
-- taken (the caller then goes the ordinary way).
WITH claimed AS (
    INSERT INTO forgeflow.workflow_runs AS r
        (id, workflow, version, queue, input, idempotency_key, runnable_at, timeout_seconds,
         created_at, priority, concurrency_key, status, started_at, deadline, executions,
         lease_owner, lease_expires_at)
    VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7::timestamptz, $8, $7, $9, $10, 'running', $7,
            $7::timestamptz + make_interval(secs => $8), 1, $11,
            now() + make_interval(secs => $12))
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING r.id, r.workflow, r.version, r.status, r.input, r.cancel_requested,
              r.end_reason, r.error, r.started_at, r.deadline, r.parent_run_id, r.recoveries,
              r.scheduled_at, false AS has_steps, r.queue, r.executions,
              pg_notify('forgeflow_run_changed', r.id) AS notified
),
-- include: count_first_claims
SELECT * FROM claimed;

-- name: run_by_idempotency_key
SELECT id, workflow FROM forgeflow.workflow_runs WHERE idempotency_key = $1;

-- name: claim_runs
-- Queues with limits are left to claim_limited_runs, even when the caller thinks them
-- unlimited (its list of limited queues may be a few seconds old). The claim index is
-- (queue, priority DESC, runnable_at): the priorities present in each queue are found
-- first by skipping through it (one probe per distinct priority), then each priority is
-- read as a range of due runs. So the claim reads the runs it may take, never the runs
-- waiting on future timers, however many there are.
-- Every parameter the planner could estimate from ($1 to $4) is read through a
-- sub-select, and the runs are updated by id: the plan is then the same whatever the
-- values, so PostgreSQL keeps reusing the statement's generic plan. Compared with its
-- values, each claim got a plan of its own, and planning this statement costs several
-- times running it.
WITH RECURSIVE levels AS (
    SELECT q.name AS queue,
           (SELECT r.priority FROM forgeflow.workflow_runs r
            WHERE r.queue = q.name AND r.runnable_at IS NOT NULL
            ORDER BY r.priority DESC LIMIT 1) AS priority
    FROM unnest((SELECT $2::text[])) AS q(name)
    WHERE NOT EXISTS (SELECT 1 FROM forgeflow.queues l WHERE l.name = q.name AND l.limited)
    UNION ALL
    SELECT v.queue,
           (SELECT r.priority FROM forgeflow.workflow_runs r
            WHERE r.queue = v.queue AND r.runnable_at IS NOT NULL AND r.priority < v.priority
            ORDER BY r.priority DESC LIMIT 1)
    FROM levels v
    WHERE v.priority IS NOT NULL
), candidates AS (
    SELECT c.id FROM levels v
    CROSS JOIN LATERAL (
        SELECT r.id, r.priority, r.runnable_at FROM forgeflow.workflow_runs r
        WHERE r.queue = v.queue
          AND r.priority = v.priority
          AND r.runnable_at IS NOT NULL
          AND r.runnable_at <= (SELECT $1::timestamptz)
          AND (r.lease_expires_at IS NULL OR r.lease_expires_at < now())
          -- Matched as "name:version" text on purpose: the planner then scans the small
          -- claim index instead of combining it with the per-workflow history index.
          AND (r.workflow || ':' || r.version) = ANY((SELECT $3::text[])::text[])
        ORDER BY r.runnable_at
        LIMIT (SELECT $4::int)
        FOR UPDATE SKIP LOCKED
    ) c
    -- Locked rows are current: the run is claimable, and a write in flight for it (an
    -- expired lease's last checkpoint) makes the claim skip it.
    WHERE v.priority IS NOT NULL
      AND pg_try_advisory_xact_lock(hashtextextended(c.id, 0))
    ORDER BY c.priority DESC, c.runnable_at
    LIMIT (SELECT $4::int)
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
WHERE r.id = ANY(ARRAY(SELECT id FROM candidates))
RETURNING r.id, r.workflow, r.version, r.status, r.input, r.cancel_requested, r.end_reason,
          r.error, r.started_at, r.deadline, r.parent_run_id, r.recoveries, r.scheduled_at,
          -- A run never executed before and without checkpoints needs no replay read.
          -- One executed before always has its checkpoints read: the last one its previous
          -- owner committed may postdate this statement's snapshot (see the top of file).
          (r.executions > 1
           OR EXISTS (SELECT 1 FROM forgeflow.workflow_steps s WHERE s.run_id = r.id))
              AS has_steps,
          pg_notify('forgeflow_run_changed', r.id);

-- name: claim_run
WITH claimed AS (
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
      -- The advisory lock is tried only once the run is known to be claimable.
      AND CASE WHEN r.runnable_at IS NOT NULL
                    AND r.runnable_at <= $4
                    AND (r.lease_expires_at IS NULL OR r.lease_expires_at < now())
               THEN pg_try_advisory_xact_lock(hashtextextended(r.id, 0)) ELSE false END
    RETURNING r.id, r.workflow, r.version, r.status, r.input, r.cancel_requested,
              r.end_reason, r.error, r.started_at, r.deadline, r.parent_run_id, r.recoveries,
              r.scheduled_at,
              -- As in claim_runs: a replay read unless the run is new and has no checkpoints.
              (r.executions > 1
               OR EXISTS (SELECT 1 FROM forgeflow.workflow_steps s WHERE s.run_id = r.id))
                  AS has_steps,
              r.queue, r.executions, pg_notify('forgeflow_run_changed', r.id) AS notified
),
-- include: count_first_claims
SELECT * FROM claimed;

-- name: next_runnable_at
-- When the claim loop should look again: a timer coming due or a lease running out.
-- One probe per (queue, workflow, version) served reads the first unleased timer in due
-- order, and one per queue the earliest lease expiry among executing runs: the cost is
-- bounded by the number of probes, however many runs wait. A leased run is claimable at
-- the later of its runnable_at and its expiry; taking the earliest expiry may wake the
-- loop early, never late.
SELECT least(
    (SELECT min(t.runnable_at)
     FROM unnest($1::text[]) AS q(name)
     CROSS JOIN unnest($2::text[], $3::int[]) AS k(workflow, version)
     CROSS JOIN LATERAL (
         SELECT r.runnable_at FROM forgeflow.workflow_runs r
         WHERE r.queue = q.name AND r.workflow = k.workflow AND r.version = k.version
           AND r.runnable_at IS NOT NULL AND r.lease_owner IS NULL
         ORDER BY r.runnable_at
         LIMIT 1
     ) t),
    (SELECT min(greatest(t.runnable_at, t.lease_expires_at))
     FROM unnest($1::text[]) AS q(name)
     CROSS JOIN LATERAL (
         SELECT r.runnable_at, r.lease_expires_at FROM forgeflow.workflow_runs r
         WHERE r.queue = q.name AND r.lease_owner IS NOT NULL
           AND r.runnable_at IS NOT NULL
           AND (r.workflow || ':' || r.version) = ANY($4::text[])
         ORDER BY r.lease_expires_at
         LIMIT 1
     ) t));

-- name: load_steps
SELECT name, kind, status, result, result_type, error, attempts, completed_at
FROM forgeflow.workflow_steps WHERE run_id = $1;

-- fragment: checkpoint_upsert
-- How a checkpoint replaces the row of its step, shared by checkpoint_step and
-- checkpoint_steps (the step row is aliased s). A final write always does. A 'running'
-- marker never replaces a completed or compensated row, and replaces a pending retry's
-- row only when it carries that retry's error.
    SET kind = excluded.kind, status = excluded.status, result = excluded.result,
        execution = coalesce(excluded.execution, s.execution),
        input = coalesce(excluded.input, s.input),
        result_type = excluded.result_type,
        error = CASE WHEN excluded.status = 'running' THEN coalesce(excluded.error, s.error)
                     ELSE excluded.error END,
        attempts = excluded.attempts,
        started_at = coalesce(s.started_at, excluded.started_at),
        completed_at = excluded.completed_at
    WHERE excluded.status <> 'running'
       OR (s.status NOT IN ('completed', 'compensated')
           AND (excluded.error IS NOT NULL OR s.status = 'running'))

-- name: checkpoint_step
-- The hot path: one statement writes the checkpoint, verifies the lease and reports
-- whether a cancel was requested meanwhile.
-- A 'running' write without an error is a start marker (a slow attempt made visible, or
-- record_step_start): it is not progress (execution stays as it was, for the recovery
-- count), keeps the error of a pending retry, and only ever replaces a running row. No
-- 'running' write replaces a completed or compensated checkpoint, so a marker that
-- lands after the step's own checkpoint changes nothing.
WITH run AS (
    SELECT cancel_requested, watched_until, executions FROM forgeflow.workflow_runs
    -- include: lease_held
), saved AS (
    INSERT INTO forgeflow.workflow_steps AS s
        (run_id, name, kind, status, result, result_type, error, attempts, started_at,
         completed_at, input, execution)
    SELECT $1, $3, $4, $5, $6::jsonb, $7, $8::jsonb, $9, $10, $11, $12::jsonb,
           CASE WHEN $5 = 'running' AND $8::jsonb IS NULL THEN NULL ELSE executions END
    FROM run
    ON CONFLICT (run_id, name) DO UPDATE
    -- include: checkpoint_upsert
)
-- Step changes are announced only while someone watches the run: no NOTIFY otherwise.
SELECT cancel_requested,
       CASE WHEN watched_until > now() THEN pg_notify('forgeflow_step', $1) END
FROM run;

-- name: checkpoint_steps
-- checkpoint_step for many runs at once (the checkpoints a worker's runs reached while
-- its previous write was in flight): one statement, one commit. Each row is written only
-- if its own run's lease is held, so a refused lease refuses that run's rows alone; the
-- rows are otherwise treated exactly as checkpoint_step treats its one row. $1 is a JSON
-- array of rows, each an array in the order of `given` below (JSON texts as strings):
-- one parameter the client encodes in one call, where twelve arrays cost it per element.
-- The statement never holds two rows of one step (the batcher sends those in turn).
-- Returns one row per run whose lease held: its id and cancel_requested.
WITH given AS (
    SELECT e->>0 AS run_id, e->>1 AS worker, e->>2 AS name, e->>3 AS kind,
           e->>4 AS status, e->>5 AS result, e->>6 AS result_type, e->>7 AS error,
           (e->>8)::int AS attempts, (e->>9)::timestamptz AS started_at,
           (e->>10)::timestamptz AS completed_at, e->>11 AS input
    FROM jsonb_array_elements($1::jsonb) AS e
), run AS (
    -- lease_held for each run of the batch, the lock tried on its leased row only.
    SELECT r.id, r.cancel_requested, r.watched_until, r.executions
    FROM forgeflow.workflow_runs r
    JOIN (SELECT DISTINCT run_id, worker FROM given) w
      ON r.id = w.run_id AND r.lease_owner = w.worker
    WHERE CASE WHEN r.id = w.run_id AND r.lease_owner = w.worker
                    AND pg_try_advisory_xact_lock_shared(hashtextextended(r.id, 0))
               THEN r.lease_expires_at > clock_timestamp() ELSE false END
), saved AS (
    INSERT INTO forgeflow.workflow_steps AS s
        (run_id, name, kind, status, result, result_type, error, attempts, started_at,
         completed_at, input, execution)
    SELECT g.run_id, g.name, g.kind, g.status, g.result::jsonb, g.result_type,
           g.error::jsonb, g.attempts, g.started_at, g.completed_at, g.input::jsonb,
           CASE WHEN g.status = 'running' AND g.error IS NULL THEN NULL
                ELSE run.executions END
    FROM given g JOIN run ON run.id = g.run_id
    ON CONFLICT (run_id, name) DO UPDATE
    -- include: checkpoint_upsert
)
SELECT id, cancel_requested,
       CASE WHEN watched_until > now() THEN pg_notify('forgeflow_step', id) END
FROM run;

-- name: mark_compensated
WITH run AS (
    SELECT executions FROM forgeflow.workflow_runs
    -- include: lease_held
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

-- fragment: end_run
-- The end of run $1 as finish_run and finish_run_alone write it, under the lease of $2.
    UPDATE forgeflow.workflow_runs
    SET status = $3, output = $4::jsonb, error = coalesce($5::jsonb, error),
        end_reason = coalesce($6, end_reason), completed_at = $7, runnable_at = NULL,
        lease_owner = NULL, lease_expires_at = NULL, wait = NULL, updated_at = now()
    WHERE id = $1 AND lease_owner = $2 AND lease_expires_at > now()

-- name: finish_run
-- Ends a run and, in the same statement, wakes the parent that waits for it and closes
-- its open hooks and event waits: a late decision then gets HookExpired, and an event
-- no longer counts the run as woken.
WITH done AS (
    -- include: end_run
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
-- Its own channel, so that whoever awaits the outcome wakes once, at the end.
SELECT done.id,
       pg_notify('forgeflow_run_ended', done.id),
       (SELECT count(pg_notify('forgeflow_wakeup', parent.queue)) FROM parent)
FROM done;

-- name: finish_run_alone
-- finish_run for a run without a parent, open hooks or open event waits: the run's row
-- alone is written. The parts of finish_run that update the others cost a sixth to a
-- quarter of its server time even when they find nothing, where checking that there is
-- nothing to find costs a few index probes. The run is left as it is when there is (no
-- row returned, as when the lease is gone): the caller then sends finish_run.
-- include: end_run
      AND parent_run_id IS NULL
      AND NOT EXISTS (SELECT 1 FROM forgeflow.hooks h
                      WHERE h.run_id = $1 AND h.status IN ('pending', 'active'))
      AND NOT EXISTS (SELECT 1 FROM forgeflow.event_waits w
                      WHERE w.run_id = $1 AND w.status = 'waiting')
RETURNING id, pg_notify('forgeflow_run_ended', id);

-- name: finish_runs
-- finish_run for many runs at once (the runs of one worker that ended while its previous
-- end was being written): one statement, one commit, each run ended only if its own lease
-- is held. $1 is a JSON array of [id, worker, status, output, error, reason, at] (JSON
-- texts as strings). Returns the id of each run ended.
WITH given AS (
    SELECT e->>0 AS id, e->>1 AS worker, e->>2 AS status, e->>3 AS output,
           e->>4 AS error, e->>5 AS reason, (e->>6)::timestamptz AS at
    FROM jsonb_array_elements($1::jsonb) AS e
), done AS (
    UPDATE forgeflow.workflow_runs r
    SET status = g.status, output = g.output::jsonb, error = coalesce(g.error::jsonb, r.error),
        end_reason = coalesce(g.reason, r.end_reason), completed_at = g.at,
        runnable_at = NULL, lease_owner = NULL, lease_expires_at = NULL, wait = NULL,
        updated_at = now()
    FROM given g
    WHERE r.id = g.id AND r.lease_owner = g.worker AND r.lease_expires_at > now()
    RETURNING r.id, r.parent_run_id, g.at
), parent AS (
    -- Two children of one parent ending together wake it once.
    UPDATE forgeflow.workflow_runs p
    SET wake_requested = true,
        runnable_at = CASE WHEN p.lease_owner IS NULL THEN done.at ELSE p.runnable_at END
    FROM done
    WHERE p.id = done.parent_run_id
      AND p.status NOT IN ('completed', 'compensated', 'failed')
    RETURNING p.queue
), closed_hooks AS (
    UPDATE forgeflow.hooks h SET status = 'expired', resolved_at = done.at
    FROM done WHERE h.run_id = done.id AND h.status IN ('pending', 'active')
), closed_waits AS (
    UPDATE forgeflow.event_waits w SET status = 'expired'
    FROM done WHERE w.run_id = done.id AND w.status = 'waiting'
), woken AS (
    SELECT count(pg_notify('forgeflow_wakeup', parent.queue)) FROM parent
)
-- On finish_run's channel: whoever awaits a run's outcome wakes at its end.
SELECT done.id, pg_notify('forgeflow_run_ended', done.id), (SELECT * FROM woken)
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
       r.started_at, r.completed_at, r.priority, r.concurrency_key, r.restarted_from,
       r.forked_from, r.forked_from_step, r.schedule, r.scheduled_at
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
       r.started_at, r.completed_at, r.priority, r.concurrency_key, r.restarted_from,
       r.forked_from, r.forked_from_step, r.schedule, r.scheduled_at
FROM forgeflow.workflow_runs r
WHERE ($1::text IS NULL OR r.status = $1)
  AND ($2::text IS NULL OR r.workflow = $2)
  AND ($3::timestamptz IS NULL OR (r.created_at, r.id) < ($3, $4))
ORDER BY r.created_at DESC, r.id DESC
LIMIT $5;

-- name: insert_hook
WITH run AS (
    SELECT workflow, executions FROM forgeflow.workflow_runs
    -- include: lease_held
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
    -- include: lease_held
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
    -- include: lease_held
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

-- name: insert_runs
-- start_many: the whole batch in one statement, so it is written entirely or not at all.
-- Returns one row per input, in input order. A run whose idempotency key was already
-- used (by an earlier run, or earlier in this batch) gets that run's id. A key already
-- used by a run of another workflow writes nothing of the batch (`conflict` says which).
WITH batch AS (
    SELECT * FROM unnest($1::text[], $5::text[], $6::text[], $9::timestamptz[], $10::int[],
                         $11::text[]) WITH ORDINALITY
        AS b(id, input, idempotency_key, runnable_at, priority, concurrency_key, ord)
), foreign_keys AS (
    SELECT b.ord, o.workflow FROM batch b
    JOIN forgeflow.workflow_runs o ON o.idempotency_key = b.idempotency_key
    WHERE o.workflow <> $2
), inserted AS (
    INSERT INTO forgeflow.workflow_runs
        (id, workflow, version, queue, input, idempotency_key, runnable_at, timeout_seconds,
         created_at, priority, concurrency_key)
    SELECT b.id, $2, $3, $4, b.input::jsonb, b.idempotency_key, b.runnable_at, $8, $7,
           b.priority, b.concurrency_key
    FROM batch b
    WHERE NOT EXISTS (SELECT 1 FROM foreign_keys)
    ORDER BY b.ord
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, idempotency_key, runnable_at
)
SELECT b.ord,
       coalesce(i.id, k.id, e.id) AS id,
       i.id IS NOT NULL AS created,
       f.workflow AS conflict,
       (SELECT count(pg_notify('forgeflow_wakeup', $4)) FROM inserted) AS notified
FROM batch b
LEFT JOIN inserted i ON i.id = b.id
LEFT JOIN inserted k ON i.id IS NULL AND k.idempotency_key = b.idempotency_key
LEFT JOIN forgeflow.workflow_runs e ON i.id IS NULL AND k.id IS NULL
    AND e.idempotency_key = b.idempotency_key
LEFT JOIN foreign_keys f ON f.ord = b.ord
ORDER BY b.ord;

-- name: debounce_run
-- A start with a debounce key: creates the pending run, or, while the key's run has
-- never been claimed, replaces its input and pushes its start back to $9, but never past
-- first start + max_wait (debounce_until). Once claimed, the run leaves the unique index
-- and the next start creates a new pending run.
INSERT INTO forgeflow.workflow_runs AS r
    (id, workflow, version, queue, input, runnable_at, timeout_seconds, created_at, priority,
     concurrency_key, debounce_key, debounce_until)
VALUES ($1, $2, $3, $4, $5::jsonb, least($9::timestamptz, $12::timestamptz), $8, $7, $10, $11, $6,
        $12)
ON CONFLICT (workflow, debounce_key)
    WHERE debounce_key IS NOT NULL AND executions = 0 AND NOT cancel_requested
DO UPDATE SET input = excluded.input,
              runnable_at = least(excluded.runnable_at, r.debounce_until),
              priority = excluded.priority,
              concurrency_key = excluded.concurrency_key,
              updated_at = now()
RETURNING id, (xmax = 0) AS created, pg_notify('forgeflow_wakeup', queue);

-- name: declare_queue
INSERT INTO forgeflow.queues AS q
    (name, concurrency, key_concurrency, rate_limit, rate_period_seconds)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (name) DO UPDATE
SET concurrency = excluded.concurrency, key_concurrency = excluded.key_concurrency,
    rate_limit = excluded.rate_limit, rate_period_seconds = excluded.rate_period_seconds,
    -- The ledger of first claims holds buckets of the old period (or none, without a
    -- rate): claims count the runs started before now from the runs themselves.
    starts_counted_from = CASE
        WHEN q.rate_period_seconds IS DISTINCT FROM excluded.rate_period_seconds THEN now()
        ELSE q.starts_counted_from END,
    updated_at = now()
WHERE (q.concurrency, q.key_concurrency, q.rate_limit, q.rate_period_seconds)
      IS DISTINCT FROM (excluded.concurrency, excluded.key_concurrency, excluded.rate_limit,
                        excluded.rate_period_seconds);

-- name: limited_queues
SELECT name FROM forgeflow.queues WHERE name = ANY($1::text[]) AND limited;

-- fragment: count_first_claims
-- The first claims a statement just made (the CTE "claimed", with each run's queue and
-- executions: a first claim is the one that makes it 1), added to the ledger of their
-- queue when it has a rate (see claim_limited_runs): in the bucket a twentieth of the
-- rate period wide that holds each start, in a ring of 40 slots per queue. A bucket
-- replaces an older one in its slot (two periods older, before every window, or from
-- before the period changed, which the claim counts from the runs) and adds to a newer
-- one (from a claimer whose clock is ahead): a row may over-count, never miss a start.
first_claims AS (
    SELECT c.queue, b.until, b.width
    FROM claimed c
    JOIN forgeflow.queues l ON l.name = c.queue AND l.rate_limit IS NOT NULL
    CROSS JOIN LATERAL (
        SELECT greatest(make_interval(secs => l.rate_period_seconds / 20),
                        interval '1 microsecond') AS width
    ) w
    CROSS JOIN LATERAL (
        SELECT w.width, date_bin(w.width, c.started_at, timestamptz 'epoch') + w.width AS until
    ) b
    WHERE c.executions = 1
), counted AS (
    INSERT INTO forgeflow.queue_starts AS s (queue, slot, until, starts)
    SELECT f.queue,
           mod((extract(epoch FROM f.until) / extract(epoch FROM f.width))::bigint, 40),
           f.until, count(*)
    FROM first_claims f
    GROUP BY f.queue, f.until, f.width
    ON CONFLICT (queue, slot) DO UPDATE
    SET starts = CASE WHEN s.until < excluded.until THEN excluded.starts
                      ELSE s.starts + excluded.starts END,
        until = greatest(s.until, excluded.until)
)

-- name: claim_limited_runs
-- One statement that serialises the claimers of each limited queue through the queue's
-- row. Its counts (executing runs, per key, first claims in the rate window) are read
-- with the statement's snapshot, so they are exact only if no other claim on the queue
-- committed since that snapshot was taken. Every claim bumps the queue row's claim_seq
-- (``locked``), which also makes concurrent claimers of the queue wait for each other;
-- a claim that committed after our snapshot is then seen when PostgreSQL re-checks the
-- bump on the row's newest version (READ COMMITTED re-evaluates an UPDATE's WHERE on
-- the newest version): claim_seq no longer matches, the queue is not locked, and nothing
-- of it is claimed. The caller retries with a new snapshot, which sees that claim.
-- Counting in a snapshot from before the wait without this check would hand out the
-- same last slot twice. Every row returned carries (limited, locked): fewer queues
-- locked than limited means "retry". With nothing claimed, one row of NULLs carries them.
-- The first claims in a rate window are bounded from the queue's ledger
-- (forgeflow.queue_starts, a few buckets, written by the claims themselves and so read
-- as exactly as the other counts) while that bound leaves room for all this claim may
-- take, and counted from the runs otherwise: reading every run started in the window
-- made each claim's cost grow with the queue's throughput.
WITH RECURSIVE q AS MATERIALIZED (
    SELECT l.name, l.key_concurrency, l.claim_seq,
           CASE WHEN l.concurrency IS NULL THEN (SELECT $4::int) ELSE l.concurrency - (
               SELECT count(*) FROM forgeflow.workflow_runs e
               WHERE e.queue = l.name AND e.lease_owner IS NOT NULL
                 AND e.lease_expires_at > now()) END AS free_slots,
           CASE WHEN l.rate_limit IS NULL THEN (SELECT $4::int)
                -- A bound on the window's first claims, when it leaves room for all this
                -- claim may take: a few buckets read instead of the runs.
                WHEN w.starts <= l.rate_limit - (SELECT $4::int) THEN l.rate_limit - w.starts
                -- Close to the limit: count the runs themselves.
                ELSE l.rate_limit - (
                    SELECT count(*) FROM forgeflow.workflow_runs s
                    WHERE s.queue = l.name AND s.started_at IS NOT NULL
                      AND s.started_at > w.since)
           END AS free_starts
    FROM forgeflow.queues l
    CROSS JOIN LATERAL (
        -- The ledger's buckets that reach into the window, and the window's first claims
        -- from before the ledger counted them (none once a period has gone by since).
        SELECT p.since,
               (SELECT coalesce(sum(b.starts), 0) FROM forgeflow.queue_starts b
                WHERE b.queue = l.name AND b.until > p.since)
               + (SELECT count(*) FROM forgeflow.workflow_runs s
                  WHERE s.queue = l.name AND s.started_at IS NOT NULL
                    AND s.started_at > p.since
                    AND s.started_at <= l.starts_counted_from) AS starts
        FROM (SELECT (SELECT $1::timestamptz) - make_interval(secs => l.rate_period_seconds) AS since) p
    ) w
    -- The parameters ($1 to $4) are read through sub-selects on purpose: the planner
    -- then estimates every plan alike, whatever the values, so that PostgreSQL keeps
    -- reusing the statement's generic plan instead of planning it anew at each claim
    -- (planning it costs several times running it). Compared with the values (the
    -- queues listed, the due time, the limit), every custom plan looked cheaper than
    -- the generic one.
    WHERE l.name = ANY(ARRAY(SELECT unnest($2::text[]))) AND l.limited
), locked AS (
    UPDATE forgeflow.queues l
    SET claim_seq = l.claim_seq + 1
    FROM q
    WHERE l.name = q.name AND l.claim_seq = q.claim_seq
    RETURNING l.name
), levels AS (
    -- The priorities present in each limited queue, highest first, by skipping through
    -- the claim index: the look-ahead below then reads each priority as a range of due
    -- runs, never the runs waiting on future timers.
    SELECT q.name AS queue,
           (SELECT r.priority FROM forgeflow.workflow_runs r
            WHERE r.queue = q.name AND r.runnable_at IS NOT NULL
            ORDER BY r.priority DESC LIMIT 1) AS priority
    FROM q
    WHERE q.free_slots > 0
    UNION ALL
    SELECT v.queue,
           (SELECT r.priority FROM forgeflow.workflow_runs r
            WHERE r.queue = v.queue AND r.runnable_at IS NOT NULL AND r.priority < v.priority
            ORDER BY r.priority DESC LIMIT 1)
    FROM levels v
    WHERE v.priority IS NOT NULL
), busy AS MATERIALIZED (
    SELECT e.queue, e.concurrency_key, count(*) AS n
    FROM forgeflow.workflow_runs e JOIN q ON e.queue = q.name
    WHERE q.key_concurrency IS NOT NULL AND e.concurrency_key IS NOT NULL
      AND e.lease_owner IS NOT NULL AND e.lease_expires_at > now()
    GROUP BY 1, 2
), looked AS (
    -- A bounded look-ahead per queue, in priority order, skipping keys already full.
    SELECT c.*, q.free_slots, q.free_starts,
           q.key_concurrency - coalesce(b.n, 0) AS free_key,
           row_number() OVER (PARTITION BY c.queue, c.concurrency_key,
                                           CASE WHEN c.concurrency_key IS NULL THEN c.id END
                              ORDER BY c.priority DESC, c.runnable_at, c.id) AS key_rank
    FROM q JOIN levels v ON v.queue = q.name AND v.priority IS NOT NULL
    CROSS JOIN LATERAL (
        SELECT r.id, r.queue, r.concurrency_key, r.priority, r.runnable_at,
               r.started_at IS NULL AS fresh
        FROM forgeflow.workflow_runs r
        WHERE r.queue = q.name
          AND r.priority = v.priority
          AND r.runnable_at IS NOT NULL
          AND r.runnable_at <= (SELECT $1::timestamptz)
          AND (r.lease_expires_at IS NULL OR r.lease_expires_at < now())
          AND (r.workflow || ':' || r.version) = ANY((SELECT $3::text[])::text[])
          AND NOT EXISTS (
              SELECT 1 FROM busy b
              WHERE b.queue = r.queue AND b.concurrency_key = r.concurrency_key
                AND b.n >= q.key_concurrency)
        ORDER BY r.runnable_at
        LIMIT least(greatest(q.free_slots, 0), (SELECT $4::int)) * 4
    ) c
    JOIN locked k ON k.name = q.name
    LEFT JOIN busy b ON b.queue = c.queue AND b.concurrency_key = c.concurrency_key
    WHERE q.free_slots > 0
), keyed AS (
    SELECT * FROM looked
    WHERE free_key IS NULL OR concurrency_key IS NULL OR key_rank <= free_key
), rated AS (
    -- Runs already started (resuming after a wait or a crash) take no start of the rate.
    SELECT *, count(*) FILTER (WHERE fresh) OVER (
                  PARTITION BY queue ORDER BY priority DESC, runnable_at, id
                  ROWS UNBOUNDED PRECEDING) AS start_rank
    FROM keyed
), slotted AS (
    SELECT *, row_number() OVER (PARTITION BY queue ORDER BY priority DESC, runnable_at, id)
                  AS slot_rank
    FROM rated WHERE NOT fresh OR start_rank <= free_starts
), chosen AS (
    SELECT id FROM slotted WHERE slot_rank <= free_slots
    ORDER BY priority DESC, runnable_at, id
    LIMIT (SELECT $4::int)
), claimed AS (
    -- The lease and runnable checks are repeated here: a row changed since the
    -- look-ahead read it (claimed by ff.run, cancelled) is re-checked on its newest
    -- version.
    UPDATE forgeflow.workflow_runs r
    SET lease_owner = $5,
        lease_expires_at = now() + make_interval(secs => $6),
        status = CASE WHEN r.status IN ('created', 'waiting') THEN 'running' ELSE r.status END,
        started_at = coalesce(r.started_at, $1),
        deadline = coalesce(r.deadline, $1 + make_interval(secs => r.timeout_seconds)),
        runnable_at = $1,
        wake_requested = false,
        executions = r.executions + 1,
        -- As in claim_runs: executions in a row that crashed without a checkpoint.
        recoveries = CASE
            WHEN r.lease_owner IS NULL THEN 0
            WHEN EXISTS (SELECT 1 FROM forgeflow.workflow_steps s
                         WHERE s.run_id = r.id AND s.execution = r.executions) THEN 0
            ELSE r.recoveries + 1
        END,
        updated_at = now()
    FROM chosen c
    WHERE r.id = c.id
      -- The advisory lock is tried only on a chosen row found claimable.
      AND CASE WHEN r.id = c.id
                    AND r.runnable_at IS NOT NULL AND r.runnable_at <= (SELECT $1::timestamptz)
                    AND (r.lease_expires_at IS NULL OR r.lease_expires_at < now())
               THEN pg_try_advisory_xact_lock(hashtextextended(r.id, 0)) ELSE false END
    RETURNING r.id, r.workflow, r.version, r.status, r.input, r.cancel_requested,
              r.end_reason, r.error, r.started_at, r.deadline, r.parent_run_id, r.recoveries,
              r.scheduled_at,
              -- As in claim_runs: a replay read unless the run is new and has no checkpoints.
              (r.executions > 1
               OR EXISTS (SELECT 1 FROM forgeflow.workflow_steps s WHERE s.run_id = r.id))
                  AS has_steps,
              r.queue, r.executions, pg_notify('forgeflow_run_changed', r.id) AS notified
),
-- include: count_first_claims
SELECT c.*, (SELECT count(*) FROM q) AS limited_queues,
       (SELECT count(*) FROM locked) AS locked_queues
FROM (SELECT 1) one LEFT JOIN claimed c ON true;

-- name: next_limited_wake
-- When a claimer of limited queues should look again, besides the wake-ups a freed slot
-- sends: a timer coming due, or a rate window letting the next start through. Both are
-- probes of the first index entry per queue (and workflow version), as in
-- next_runnable_at.
SELECT least(
    (SELECT min(t.runnable_at)
     FROM unnest($2::text[]) AS q(name)
     CROSS JOIN unnest($3::text[], $4::int[]) AS k(workflow, version)
     CROSS JOIN LATERAL (
         SELECT r.runnable_at FROM forgeflow.workflow_runs r
         WHERE r.queue = q.name AND r.workflow = k.workflow AND r.version = k.version
           AND r.runnable_at IS NOT NULL AND r.lease_owner IS NULL
           AND r.runnable_at > $1
         ORDER BY r.runnable_at
         LIMIT 1
     ) t),
    (SELECT min(s.started_at + make_interval(secs => l.rate_period_seconds))
     FROM forgeflow.queues l
     CROSS JOIN LATERAL (
         SELECT r.started_at FROM forgeflow.workflow_runs r
         WHERE r.queue = l.name AND r.started_at IS NOT NULL
           AND r.started_at > $1::timestamptz - make_interval(secs => l.rate_period_seconds)
         ORDER BY r.started_at
         LIMIT 1
     ) s
     WHERE l.name = ANY($2::text[]) AND l.rate_limit IS NOT NULL));

-- name: queue_stats
-- Per queue: runs executing, claimable now, delayed (created, claimable later), and how
-- many of the claimable are held back by a limit right now.
WITH runs AS (
    SELECT r.queue, r.concurrency_key, r.started_at IS NULL AS fresh,
           (r.lease_owner IS NOT NULL AND r.lease_expires_at > now()) AS executing,
           (r.runnable_at <= $1 AND (r.lease_expires_at IS NULL OR r.lease_expires_at < now()))
               AS claimable,
           (r.status = 'created' AND r.runnable_at > $1) AS delayed
    FROM forgeflow.workflow_runs r
    WHERE r.status NOT IN ('completed', 'compensated', 'failed')
), per_queue AS (
    SELECT queue, count(*) FILTER (WHERE executing) AS executing,
           count(*) FILTER (WHERE claimable) AS claimable,
           count(*) FILTER (WHERE delayed) AS delayed
    FROM runs GROUP BY queue
), names AS (
    SELECT queue AS name FROM per_queue UNION SELECT name FROM forgeflow.queues
), started AS (
    SELECT l.name, count(s.id) AS n
    FROM forgeflow.queues l
    JOIN forgeflow.workflow_runs s ON s.queue = l.name AND s.started_at IS NOT NULL
         AND s.started_at > $1::timestamptz - make_interval(secs => l.rate_period_seconds)
    WHERE l.rate_limit IS NOT NULL
    GROUP BY l.name
), busy_keys AS (
    SELECT queue, concurrency_key, count(*) AS n FROM runs
    WHERE executing AND concurrency_key IS NOT NULL GROUP BY 1, 2
)
SELECT n.name, l.concurrency, l.key_concurrency, l.rate_limit, l.rate_period_seconds,
       coalesce(p.executing, 0) AS executing, coalesce(p.claimable, 0) AS claimable,
       coalesce(p.delayed, 0) AS delayed, coalesce(st.n, 0) AS started_in_window,
       (SELECT count(*) FROM runs r
        LEFT JOIN busy_keys b ON b.queue = r.queue AND b.concurrency_key = r.concurrency_key
        WHERE r.queue = n.name AND r.claimable AND (
            coalesce(p.executing, 0) >= l.concurrency
            OR coalesce(b.n, 0) >= l.key_concurrency
            OR (r.fresh AND coalesce(st.n, 0) >= l.rate_limit))) AS limited
FROM names n
LEFT JOIN per_queue p ON p.queue = n.name
LEFT JOIN forgeflow.queues l ON l.name = n.name
LEFT JOIN started st ON st.name = n.name
ORDER BY n.name;

-- name: queue_top_keys
-- The busiest concurrency keys of the queues: executing and claimable runs per key.
SELECT queue, concurrency_key, executing, claimable FROM (
    SELECT r.queue, r.concurrency_key,
           count(*) FILTER (WHERE r.lease_owner IS NOT NULL AND r.lease_expires_at > now())
               AS executing,
           count(*) FILTER (WHERE r.runnable_at <= $1
               AND (r.lease_expires_at IS NULL OR r.lease_expires_at < now())) AS claimable,
           row_number() OVER (PARTITION BY r.queue ORDER BY count(*) DESC, r.concurrency_key)
               AS rank
    FROM forgeflow.workflow_runs r
    WHERE r.concurrency_key IS NOT NULL
      AND r.status NOT IN ('completed', 'compensated', 'failed')
    GROUP BY r.queue, r.concurrency_key
) k
WHERE rank <= $2
ORDER BY queue, rank;

-- name: queue_hold
-- Why a claimable run of a limited queue is not executing: the limits and their use.
SELECT l.name, l.concurrency, l.key_concurrency, l.rate_limit, l.rate_period_seconds,
       (SELECT count(*) FROM forgeflow.workflow_runs e
        WHERE e.queue = l.name AND e.lease_owner IS NOT NULL AND e.lease_expires_at > now())
           AS executing,
       (SELECT count(*) FROM forgeflow.workflow_runs e
        WHERE e.queue = l.name AND e.concurrency_key = $2 AND e.lease_owner IS NOT NULL
          AND e.lease_expires_at > now()) AS key_executing,
       (SELECT count(*) FROM forgeflow.workflow_runs s
        WHERE s.queue = l.name AND s.started_at IS NOT NULL
          AND s.started_at > $3::timestamptz - make_interval(secs => l.rate_period_seconds))
           AS started_in_window
FROM forgeflow.queues l WHERE l.name = $1 AND l.limited;

-- name: fork_source_steps
-- Every checkpoint of a run, in completion order, with what a fork copies.
SELECT name, kind, status, completed_at, compensated_at
FROM forgeflow.workflow_steps WHERE run_id = $1
ORDER BY completed_at NULLS LAST, started_at NULLS LAST, name;

-- name: insert_linked_run
-- A restart or a fork: the new run and, for a fork, copies of the checkpoints named in
-- $12 taken from run $9, written in one statement so that a fork never exists half-copied.
WITH run AS (
    INSERT INTO forgeflow.workflow_runs
        (id, workflow, version, queue, input, runnable_at, timeout_seconds, created_at,
         restarted_from, forked_from, forked_from_step)
    VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $6, $8, $9, $10)
    RETURNING id, queue
), copied AS (
    INSERT INTO forgeflow.workflow_steps
        (run_id, name, kind, input, status, result, result_type, error, attempts,
         started_at, completed_at, execution)
    SELECT run.id, s.name, s.kind, s.input, s.status, s.result, s.result_type, s.error,
           s.attempts, s.started_at, s.completed_at, 0
    FROM run, forgeflow.workflow_steps s
    WHERE s.run_id = $11 AND s.name = ANY($12::text[])
    RETURNING 1
)
SELECT run.id, (SELECT count(*) FROM copied) AS copied,
       pg_notify('forgeflow_wakeup', run.queue)
FROM run;

-- name: run_source
SELECT id, workflow, version, queue, status, input, timeout_seconds
FROM forgeflow.workflow_runs WHERE id = $1;

-- name: live_worker_versions
-- The versions of a workflow that live workers can execute (from "name:version").
SELECT DISTINCT split_part(w, ':', 2)::integer AS version
FROM forgeflow.workers, unnest(workflows) AS w
WHERE split_part(w, ':', 1) = $1
  AND heartbeat_at > now() - make_interval(secs => $2);

-- name: purge_batch
-- Deletes up to $4 top-level runs that ended before $1 (optionally of workflow $2 and
-- status $3), keyset-paginated after ($5, $6), each with its whole tree of child runs,
-- steps, hooks and event waits. A tree is kept whole while any run in it is unfinished
-- or recent, so that no parent link ever dangles. Top-level rows are locked SKIP LOCKED
-- and batches are small: nothing a worker needs waits long. $7 true only counts.
WITH RECURSIVE roots AS (
    SELECT id, completed_at FROM forgeflow.workflow_runs
    WHERE completed_at IS NOT NULL AND parent_run_id IS NULL
      AND completed_at < $1
      AND status IN ('completed', 'compensated', 'failed')
      AND ($2::text IS NULL OR workflow = $2)
      AND ($3::text IS NULL OR status = $3)
      AND ($5::timestamptz IS NULL OR (completed_at, id) > ($5, $6))
    ORDER BY completed_at, id
    LIMIT $4
    FOR UPDATE SKIP LOCKED
), tree AS (
    SELECT id AS root, id FROM roots
    UNION ALL
    SELECT t.root, c.id FROM forgeflow.workflow_runs c JOIN tree t ON c.parent_run_id = t.id
), blocked AS (
    SELECT DISTINCT t.root FROM tree t JOIN forgeflow.workflow_runs r ON r.id = t.id
    WHERE r.status NOT IN ('completed', 'compensated', 'failed')
       OR r.completed_at IS NULL OR r.completed_at >= $1
), doomed AS (
    SELECT id FROM tree WHERE root NOT IN (SELECT root FROM blocked)
), steps AS (
    DELETE FROM forgeflow.workflow_steps s USING doomed d
    WHERE s.run_id = d.id AND NOT $7
), runs AS (
    -- Hooks and event waits go with their run (ON DELETE CASCADE).
    DELETE FROM forgeflow.workflow_runs r USING doomed d
    WHERE r.id = d.id AND NOT $7
    RETURNING r.id
), last AS (
    SELECT completed_at, id FROM roots ORDER BY completed_at DESC, id DESC LIMIT 1
)
SELECT (SELECT count(*) FROM roots) AS scanned,
       (SELECT count(*) FROM doomed) AS matched,
       (SELECT count(*) FROM runs) AS deleted,
       (SELECT completed_at FROM last) AS last_at,
       (SELECT id FROM last) AS last_id;

-- name: bulk_select_runs
-- Runs matching a bulk operation's filters, oldest first, at most $5; and how many match.
WITH matching AS (
    SELECT id, created_at FROM forgeflow.workflow_runs
    WHERE ($1::text IS NULL OR workflow = $1)
      AND ($2::text IS NULL OR status = $2)
      AND ($3::timestamptz IS NULL OR created_at >= $3)
      AND ($4::timestamptz IS NULL OR created_at < $4)
)
SELECT (SELECT count(*) FROM matching) AS matched,
       coalesce((SELECT array_agg(id) FROM (
           SELECT id FROM matching ORDER BY created_at, id LIMIT $5) x), '{}') AS ids;

-- name: try_advisory_lock
SELECT pg_try_advisory_lock($1);

-- name: advisory_unlock
SELECT pg_advisory_unlock($1);

-- name: checkpoint_and_commit
-- A transactional step's checkpoint and COMMIT in one message (simple query, so the
-- values are literals, inlined by the store): the function (migration 0007) checks the
-- lease, raising FF001 (and so skipping COMMIT) if it is lost. The last statement runs
-- after COMMIT and returns one row if a cancel was requested, none otherwise: its row
-- count is what the client reads.
SELECT forgeflow.checkpoint_in_transaction($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11);
COMMIT;
SELECT WHERE current_setting('forgeflow.cancel_requested', true) = 'true';

-- name: compensated_and_commit
-- A transactional compensation's mark and COMMIT in one message, as checkpoint_and_commit.
SELECT forgeflow.compensated_in_transaction($1, $2, $3, $4, $5);
COMMIT;

-- name: check_runs
-- `forgeflow check`: a page of unfinished runs of the given "workflow:version" pairs.
SELECT id, workflow, version, status, input, wait, created_at, started_at
FROM forgeflow.workflow_runs
WHERE status NOT IN ('completed', 'compensated', 'failed')
  AND (workflow || ':' || version) = ANY($1::text[])
  AND id > $2
ORDER BY id
LIMIT $3;

-- name: check_steps
-- `forgeflow check`: the checkpoints of a page of runs (columns as in load_steps).
SELECT run_id, name, kind, status, result, result_type, error, attempts, completed_at
FROM forgeflow.workflow_steps WHERE run_id = ANY($1::text[]);

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
