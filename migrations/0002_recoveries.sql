-- Counting the executions of a run that end in a crash without any progress, so that a
-- step that kills every worker executing it is eventually rolled back instead of being
-- retried forever.

-- How many consecutive executions ended by a crash (worker death, lost lease) without
-- writing a checkpoint; computed at claim time, reset by an execution that made progress.
ALTER TABLE forgeflow.workflow_runs
    ADD COLUMN recoveries integer NOT NULL DEFAULT 0;

-- The execution (workflow_runs.executions at the time) that last wrote each checkpoint.
ALTER TABLE forgeflow.workflow_steps
    ADD COLUMN execution integer;
