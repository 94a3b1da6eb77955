-- The lease checks of transactional steps take the run's advisory lock as every other
-- lease-checked write does (see the top of forgeflow/sql/queries.sql): shared, tried,
-- never waited for, before the run row is read. The row lock of READ COMMITTED is gone:
-- in a function each statement reads the newest committed row, and a claim that
-- committed before the lock was taken has moved the lease away or let it lapse, which
-- the check against clock_timestamp() sees. Under REPEATABLE READ and SERIALIZABLE the
-- row comes from the transaction's snapshot: FOR SHARE stays, so that any update since
-- (a takeover, a heartbeat) makes the check fail with 40001 and the transaction is tried
-- again on a fresh snapshot.

-- The lease check of a transactional write: the run's advisory lock, then its row, FF001
-- (the lease is lost) when either is not to be had.
CREATE FUNCTION forgeflow.leased_run(
    p_run_id text, p_worker text, p_snapshot boolean,
    OUT cancel_requested boolean, OUT watched_until timestamptz, OUT executions integer
) LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock_shared(hashtextextended(p_run_id, 0)) THEN
        RAISE EXCEPTION 'forgeflow: run % is being claimed by another worker', p_run_id
            USING ERRCODE = 'FF001';
    END IF;
    IF p_snapshot THEN
        SELECT r.cancel_requested, r.watched_until, r.executions
        INTO cancel_requested, watched_until, executions
        FROM forgeflow.workflow_runs r
        WHERE r.id = p_run_id AND r.lease_owner = p_worker
          AND r.lease_expires_at > clock_timestamp()
        FOR SHARE;
    ELSE
        SELECT r.cancel_requested, r.watched_until, r.executions
        INTO cancel_requested, watched_until, executions
        FROM forgeflow.workflow_runs r
        WHERE r.id = p_run_id AND r.lease_owner = p_worker
          AND r.lease_expires_at > clock_timestamp();
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'forgeflow: run % is leased to another worker', p_run_id
            USING ERRCODE = 'FF001';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION forgeflow.checkpoint_in_transaction(
    p_run_id text, p_worker text, p_name text, p_kind text, p_status text,
    p_result jsonb, p_result_type text, p_attempts integer,
    p_started_at timestamptz, p_completed_at timestamptz, p_snapshot boolean
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    run record;
BEGIN
    SELECT * INTO run FROM forgeflow.leased_run(p_run_id, p_worker, p_snapshot);
    INSERT INTO forgeflow.workflow_steps AS s
        (run_id, name, kind, status, result, result_type, error, attempts, started_at,
         completed_at, execution)
    VALUES (p_run_id, p_name, p_kind, p_status, p_result, p_result_type, NULL, p_attempts,
            p_started_at, p_completed_at, run.executions)
    ON CONFLICT (run_id, name) DO UPDATE
    SET kind = excluded.kind, status = excluded.status, result = excluded.result,
        execution = excluded.execution, result_type = excluded.result_type, error = NULL,
        attempts = excluded.attempts,
        started_at = coalesce(s.started_at, excluded.started_at),
        completed_at = excluded.completed_at;
    -- Step changes are announced only while someone watches the run.
    IF run.watched_until > now() THEN
        PERFORM pg_notify('forgeflow_step', p_run_id);
    END IF;
    PERFORM set_config('forgeflow.cancel_requested', run.cancel_requested::text, false);
END $$;

CREATE OR REPLACE FUNCTION forgeflow.compensated_in_transaction(
    p_run_id text, p_worker text, p_name text, p_at timestamptz, p_snapshot boolean
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    run record;
BEGIN
    SELECT * INTO run FROM forgeflow.leased_run(p_run_id, p_worker, p_snapshot);
    UPDATE forgeflow.workflow_steps
    SET status = 'compensated', compensated_at = p_at, compensation_error = NULL,
        execution = run.executions
    WHERE run_id = p_run_id AND name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'forgeflow: run % has no step %', p_run_id, p_name
            USING ERRCODE = 'FF001';
    END IF;
END $$;
