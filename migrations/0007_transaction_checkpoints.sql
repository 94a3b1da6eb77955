-- The checkpoint of a transactional step (and the mark of its compensation) as functions,
-- so that forgeflow can send the checkpoint and COMMIT in one message: a simple query
-- "SELECT forgeflow.checkpoint_in_transaction(...); COMMIT; ..." is one round trip where
-- a parameterized statement followed by COMMIT is two. A simple query cannot carry
-- parameters, so its values are literals; in a function the statements below keep plans
-- cached per connection, as a prepared statement would, instead of being planned again
-- on every step.
--
-- A lost lease raises SQLSTATE FF001: the rest of the message (its COMMIT) is then
-- skipped and the client rolls the whole transaction back, the caller's writes included.
-- The run's cancel flag is left in the session setting forgeflow.cancel_requested, which
-- the message's last statement reports after COMMIT.
--
-- p_snapshot selects the lease check for REPEATABLE READ and SERIALIZABLE: there a
-- statement sees the run row as of the transaction's snapshot and FOR KEY SHARE does not
-- conflict with a claim's (non-key) update, so a takeover committed after the snapshot
-- would go unseen. FOR SHARE conflicts with any update: such a takeover (or a heartbeat)
-- makes the check fail with 40001 and the transaction is tried again on a fresh snapshot.

CREATE FUNCTION forgeflow.checkpoint_in_transaction(
    p_run_id text, p_worker text, p_name text, p_kind text, p_status text,
    p_result jsonb, p_result_type text, p_attempts integer,
    p_started_at timestamptz, p_completed_at timestamptz, p_snapshot boolean
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    run record;
BEGIN
    IF p_snapshot THEN
        SELECT cancel_requested, watched_until, executions INTO run
        FROM forgeflow.workflow_runs
        WHERE id = p_run_id AND lease_owner = p_worker
          AND lease_expires_at > statement_timestamp()
        FOR SHARE;
    ELSE
        SELECT cancel_requested, watched_until, executions INTO run
        FROM forgeflow.workflow_runs
        WHERE id = p_run_id AND lease_owner = p_worker AND lease_expires_at > now()
        FOR KEY SHARE;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'forgeflow: run % is leased to another worker', p_run_id
            USING ERRCODE = 'FF001';
    END IF;
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

CREATE FUNCTION forgeflow.compensated_in_transaction(
    p_run_id text, p_worker text, p_name text, p_at timestamptz, p_snapshot boolean
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    run record;
BEGIN
    IF p_snapshot THEN
        SELECT executions INTO run FROM forgeflow.workflow_runs
        WHERE id = p_run_id AND lease_owner = p_worker
          AND lease_expires_at > statement_timestamp()
        FOR SHARE;
    ELSE
        SELECT executions INTO run FROM forgeflow.workflow_runs
        WHERE id = p_run_id AND lease_owner = p_worker AND lease_expires_at > now()
        FOR KEY SHARE;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'forgeflow: run % is leased to another worker', p_run_id
            USING ERRCODE = 'FF001';
    END IF;
    UPDATE forgeflow.workflow_steps
    SET status = 'compensated', compensated_at = p_at, compensation_error = NULL,
        execution = run.executions
    WHERE run_id = p_run_id AND name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'forgeflow: run % has no step %', p_run_id, p_name
            USING ERRCODE = 'FF001';
    END IF;
END $$;
