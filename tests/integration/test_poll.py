"""Polling: call an outside system until a condition holds, each attempt checkpointed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
import pytest

from forgeflow import (
    Forgeflow,
    PollTimeout,
    Registry,
    WorkflowContext,
    WorkflowRecord,
    WorkflowStatus,
    workflow,
)
from tests.support.waits_time import ShiftedClock, advance, clocked_client, until

Clocked = tuple[Forgeflow, ShiftedClock]


@pytest.fixture
async def clocked(dsn: str, registry: Registry) -> AsyncIterator[Clocked]:
    """A client with a movable engine clock (default 60 s sleep threshold)."""
    async with clocked_client(dsn, registry) as pair:
        yield pair


def waiting_after(attempts: int) -> Any:
    """A condition: the run is suspended after ``attempts`` completed poll attempts."""

    def check(record: WorkflowRecord) -> bool:
        done = [s for s in record.steps if s.name.split("#")[0] == "job" and s.result is not None]
        return record.status is WorkflowStatus.WAITING and len(done) == attempts

    return check


async def test_poll_stops_as_soon_as_the_condition_holds(ff: Forgeflow, registry: Registry) -> None:
    """poll returns the first result satisfying until=, each attempt a completed step."""
    calls: list[int] = []

    def job_state() -> str:
        calls.append(1)
        return "done" if len(calls) == 3 else "running"

    @workflow(version=1, registry=registry)
    async def wait_for_job(ctx: WorkflowContext, _: None) -> str:
        state: str = await ctx.poll(
            "job", job_state, until=lambda s: s == "done", interval="10ms", timeout="1h"
        )
        return state

    run_id = await ff.start(wait_for_job)
    async with ff.worker(concurrency=1):
        assert await ff.result(run_id, timeout=30) == "done"
    assert len(calls) == 3
    steps = {s.name: s for s in (await ff.status(run_id)).steps}
    assert sorted(steps) == ["job", "job#2", "job#3", "job:wait", "job:wait#2"]
    assert all(s.status == "completed" for s in steps.values())


async def test_each_attempt_is_checkpointed_and_long_intervals_release_the_worker(
    clocked: Clocked, registry: Registry
) -> None:
    """Between attempts of a long interval the run waits without a worker; none is redone."""
    ff, clock = clocked
    calls: list[int] = []

    def job_state() -> str:
        calls.append(1)
        return "done" if len(calls) == 3 else "running"

    @workflow(version=1, timeout="30d", registry=registry)
    async def wait_for_job(ctx: WorkflowContext, _: None) -> str:
        state: str = await ctx.poll(
            "job", job_state, until=lambda s: s == "done", interval="1h", timeout="1d"
        )
        return state

    run_id = await ff.start(wait_for_job)
    async with ff.worker(concurrency=1) as worker:
        for attempts in (1, 2):
            record = await until(ff, run_id, waiting_after(attempts))
            assert record.worker is None
            with anyio.fail_after(10):
                await worker.wait_idle()  # the slot is free while the run waits
            assert record.wake_at is not None
            await advance(ff, clock, timedelta(hours=1))
        assert await ff.result(run_id, timeout=30) == "done"
    record = await ff.status(run_id)
    assert len(calls) == 3  # three executions of the run, and each attempt ran once
    assert record.executions == 3
    results = {s.name: s.result for s in record.steps if s.kind == "step"}
    assert results == {"job": "running", "job#2": "running", "job#3": "done"}


async def test_poll_raises_poll_timeout_when_the_timeout_passes(
    clocked: Clocked, registry: Registry
) -> None:
    """poll raises PollTimeout once the next attempt would fall after its timeout."""
    ff, clock = clocked
    calls: list[int] = []

    def job_state() -> str:
        calls.append(1)
        return "running"

    @workflow(version=1, timeout="30d", registry=registry)
    async def wait_for_job(ctx: WorkflowContext, _: None) -> str:
        try:
            await ctx.poll(
                "job",
                job_state,
                until=lambda s: s == "done",
                interval="1h",
                timeout="2h30m",
                max_attempts=100,
            )
        except PollTimeout as exc:
            return f"gave up: {exc}"
        return "done"

    run_id = await ff.start(wait_for_job)
    async with ff.worker(concurrency=1):
        for attempts in (1, 2):
            await until(ff, run_id, waiting_after(attempts))
            await advance(ff, clock, timedelta(hours=1))
        output = await ff.result(run_id, timeout=30)
    assert output.startswith("gave up: poll 'job'")
    assert len(calls) == 3  # at 0 h, 1 h and 2 h; a fourth at 3 h would be too late


async def test_poll_raises_poll_timeout_after_max_attempts(
    ff: Forgeflow, registry: Registry
) -> None:
    """poll makes at most max_attempts calls, then raises PollTimeout naming the count."""
    calls: list[int] = []

    def job_state() -> str:
        calls.append(1)
        return "running"

    @workflow(version=1, registry=registry)
    async def wait_for_job(ctx: WorkflowContext, _: None) -> str:
        await ctx.poll(
            "job",
            job_state,
            until=lambda s: s == "done",
            interval="10ms",
            timeout="1h",
            max_attempts=4,
        )
        return "done"

    run_id = await ff.start(wait_for_job)
    async with ff.worker(concurrency=1):
        record = await until(ff, run_id, lambda r: r.is_terminal)
    assert len(calls) == 4
    assert record.status is WorkflowStatus.FAILED
    assert record.error["type"] == "PollTimeout"
    assert "4 attempts" in record.error["message"]
