"""Durable sleeps, cancellation and deadlines of runs held by worker processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from forgeflow import (
    Forgeflow,
    LifecycleEvent,
    Registry,
    WorkflowCancelled,
    WorkflowContext,
    workflow,
)
from forgeflow.testing import fire_timers
from tests.support.db import fetch_run, fetch_steps, wait_for, wait_for_run_status
from tests.support.wf_saga import SagaSpec, saga, saga_3s
from tests.support.worker_effects import create_effects, effects
from tests.support.worker_procs import WorkerProcesses

SAGA = "tests.support.wf_saga"


@pytest.fixture
async def procs(dsn: str, tmp_path: Path) -> AsyncIterator[WorkerProcesses]:
    """Worker processes on the test's database, killed at the end of the test."""
    async with WorkerProcesses(dsn, tmp_path) as started:
        yield started


@pytest.fixture
async def pool(ff: Forgeflow) -> asyncpg.Pool:
    """The test's pool, with the effects table created."""
    pool: asyncpg.Pool = ff.pool
    await create_effects(pool)
    return pool


def events(made: list[dict[str, Any]], event: str) -> list[str]:
    """The steps that left ``event``, in order."""
    return [e["step"] for e in made if e["event"] == event]


async def wait_for_effect(pool: asyncpg.Pool, run_id: str, step: str, event: str) -> None:
    """Wait until ``step`` of ``run_id`` has left ``event``."""
    query = (
        "SELECT count(*) > 0 FROM public.worker_effects"
        " WHERE run_id = $1 AND step = $2 AND event = $3"
    )

    async def check() -> bool:
        return bool(await pool.fetchval(query, run_id, step, event))

    await wait_for(check, what=f"{step} {event} in run {run_id}")


# -- durable sleep -----------------------------------------------------------------------


async def test_a_two_hour_sleep_holds_no_worker_and_survives_a_worker_restart(
    ff: Forgeflow, procs: WorkerProcesses, pool: asyncpg.Pool
) -> None:
    """A 2 h sleep frees the worker; a restart changes nothing; firing its timer resumes it."""
    first = await procs.start(SAGA, concurrency=1)
    run_id = await ff.start(saga, SagaSpec(sleep=7200))
    await wait_for_run_status(pool, run_id, "waiting")
    asleep = await fetch_run(pool, run_id)
    assert asleep is not None
    assert asleep["lease_owner"] is None
    sleep = (await fetch_steps(pool, run_id))["sleep"]
    assert sleep["completed_at"] - sleep["started_at"] == timedelta(hours=2)
    assert asleep["runnable_at"] == sleep["completed_at"]
    record = await ff.status(run_id)
    assert record.wake_at == sleep["completed_at"]
    assert record.wait["kind"] == "sleep"
    # Its only slot is free: the same worker runs another run meanwhile.
    other = await ff.start(saga, SagaSpec())
    await wait_for_run_status(pool, other, "completed")

    await first.kill()
    await procs.start(SAGA, concurrency=1)
    # Once the new worker has finished a run started after it, it has seen the sleeper.
    later = await ff.start(saga, SagaSpec())
    await wait_for_run_status(pool, later, "completed")
    still = await fetch_run(pool, run_id)
    assert still is not None
    assert {k: still[k] for k in ("status", "runnable_at", "executions", "lease_owner")} == {
        "status": "waiting",
        "runnable_at": asleep["runnable_at"],
        "executions": 1,
        "lease_owner": None,
    }

    assert await fire_timers(ff, run_id) == [run_id]
    assert await ff.result(run_id, timeout=30) == "done"
    made = await effects(pool, run_id)
    assert events(made, "start") == ["s1", "s2", "s3", "s4"]
    assert (await ff.status(run_id)).executions == 2


async def test_fire_timers_makes_a_long_retry_delay_due(ff: Forgeflow, registry: Registry) -> None:
    """A retry delay above the threshold frees the worker; fire_timers runs the next attempt."""
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(len(attempts) + 1)
        if len(attempts) == 1:
            raise RuntimeError("the first attempt fails")
        return "ok"

    @workflow(version=1, registry=registry)
    async def retrying(ctx: WorkflowContext) -> str:
        return await ctx.step("flaky", flaky).retry(attempts=2, delay="1h")

    run_id = await ff.start(retrying)
    async with ff.worker(concurrency=1, poll_interval="50ms") as worker:
        await wait_for_run_status(ff.pool, run_id, "waiting")
        record = await ff.status(run_id)
        assert (record.wait["kind"], worker.active) == ("retry", 0)
        assert await fire_timers(ff) == [run_id]
        assert await ff.result(run_id, timeout=30) == "ok"
    assert attempts == [1, 2]
    assert [(s.name, s.attempts) for s in (await ff.status(run_id)).steps] == [("flaky", 2)]


# -- cancellation ------------------------------------------------------------------------


async def test_cancel_reaches_a_running_step_lets_it_finish_then_compensates_in_reverse(
    ff: Forgeflow, procs: WorkerProcesses, pool: asyncpg.Pool
) -> None:
    """A cancel reaches the worker while a step runs (NOTIFY); the step ends, then rollback."""
    await procs.start(SAGA, concurrency=1)
    run_id = await ff.start(saga, SagaSpec(cancel_aware_at="s3"))
    await wait_for_effect(pool, run_id, "s3", "start")
    await ff.cancel(run_id)
    with pytest.raises(WorkflowCancelled):
        await ff.result(run_id, timeout=30)
    made = await effects(pool, run_id)
    s3_done = next(e for e in made if (e["step"], e["event"]) == ("s3", "done"))
    # The step learnt of the cancel while it ran: nothing but the notification told it.
    assert s3_done["info"] == '{"saw_cancel": true}'
    assert events(made, "start") == ["s1", "s2", "s3"]
    assert events(made, "undo") == ["s3", "s2", "s1"]
    record = await ff.status(run_id)
    assert (record.status, record.end_reason) == ("compensated", "cancel")


async def test_cancel_interrupts_a_sleep_in_place_at_once(
    ff: Forgeflow, procs: WorkerProcesses, pool: asyncpg.Pool
) -> None:
    """A ten-minute sleep held in place by a worker is cut short by a cancel."""
    await procs.start(SAGA, concurrency=1, sleep_threshold=3600)
    run_id = await ff.start(saga, SagaSpec(sleep=600))

    async def sleeping_in_place() -> bool:
        row = await fetch_run(pool, run_id)
        steps = await fetch_steps(pool, run_id)
        return row is not None and row["status"] == "running" and "sleep" in steps

    await wait_for(sleeping_in_place, what="the run to sleep in place")
    await ff.cancel(run_id)
    await wait_for_run_status(pool, run_id, "compensated")
    made = await effects(pool, run_id)
    assert events(made, "undo") == ["s3", "s2", "s1"]
    assert "s4" not in events(made, "start")


async def test_cancel_of_a_waiting_run_replays_it_and_compensates_in_reverse(
    ff: Forgeflow, procs: WorkerProcesses, pool: asyncpg.Pool
) -> None:
    """Cancelling a sleeping run rebuilds its compensations by replay; each runs once."""
    await procs.start(SAGA, concurrency=1)
    run_id = await ff.start(saga, SagaSpec(sleep=7200))
    await wait_for_run_status(pool, run_id, "waiting")
    await ff.cancel(run_id)
    await wait_for_run_status(pool, run_id, "compensated")
    made = await effects(pool, run_id)
    assert events(made, "start") == ["s1", "s2", "s3"]
    assert events(made, "undo") == ["s3", "s2", "s1"]
    record = await ff.status(run_id)
    assert record.end_reason == "cancel"
    assert record.executions == 2


async def test_cancel_before_any_worker_claimed_the_run(
    ff: Forgeflow, procs: WorkerProcesses, pool: asyncpg.Pool
) -> None:
    """A run cancelled before it was claimed ends compensated without running a step."""
    run_id = await ff.start(saga, SagaSpec())
    await ff.cancel(run_id)
    await procs.start(SAGA, concurrency=1)
    await wait_for_run_status(pool, run_id, "compensated")
    assert await effects(pool, run_id) == []
    record = await ff.status(run_id)
    assert (record.end_reason, record.steps) == ("cancel", [])


# -- deadlines ---------------------------------------------------------------------------


async def test_a_waiting_run_is_woken_at_its_deadline_and_compensated(
    ff: Forgeflow, procs: WorkerProcesses, pool: asyncpg.Pool
) -> None:
    """A run sleeping past its workflow timeout is woken at the deadline and rolled back."""
    await procs.start(SAGA, concurrency=1)
    run_id = await ff.start(saga_3s, SagaSpec(sleep=7200))
    await wait_for_run_status(pool, run_id, "waiting")
    waiting = await fetch_run(pool, run_id)
    assert waiting is not None
    assert waiting["runnable_at"] == waiting["deadline"]  # not in two hours
    await wait_for_run_status(pool, run_id, "compensated")
    record = await ff.status(run_id)
    assert record.end_reason == "timeout"
    made = await effects(pool, run_id)
    assert events(made, "start") == ["s1", "s2", "s3"]
    assert events(made, "undo") == ["s3", "s2", "s1"]


# -- a run given back and claimed again at once -------------------------------------------


async def test_a_wait_over_before_its_execution_ended_is_executed_again_here(
    dsn: str, registry: Registry
) -> None:
    """The event a run waits for arrives while the execution that suspended it is still
    winding down, and the same worker claims it back: it runs on at once, not a lease later.
    """
    done: list[str] = []

    @workflow(version=1, registry=registry)
    async def awaits_parcel(ctx: WorkflowContext, order: str) -> str:
        parcel = await ctx.wait_for_event("parcel.delivered", match={"order": order})
        done.append(order)
        return str(parcel["by"])

    async def deliver_and_linger(event: LifecycleEvent) -> None:
        # Between the suspension's commit and the end of its execution: send the event,
        # then linger until the worker has claimed the run back.
        if event.name != "run_suspended":
            return
        await ff.send_event("parcel.delivered", {"order": "o-1", "by": "courier"})

        async def claimed_again() -> bool:
            row = await fetch_run(ff.pool, event.run_id)
            return row is not None and row["executions"] == 2

        await wait_for(claimed_again, what="the run claimed again")

    # A lease of an hour: a run left leased to the worker without executing waits an hour.
    async with Forgeflow.connect(
        dsn, registry=registry, lease="1h", listeners=[deliver_and_linger]
    ) as ff:
        run_id = await ff.start(awaits_parcel, "o-1")
        async with ff.worker(concurrency=2):
            assert await ff.result(run_id, timeout=30) == "courier"
    assert done == ["o-1"]
