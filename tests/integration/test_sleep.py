"""Durable sleeps: short ones in place, long ones and dates without holding a worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import anyio
import pytest

from forgeflow import Forgeflow, Registry, WorkflowContext, WorkflowStatus, workflow
from tests.support.waits_time import ShiftedClock, advance, clocked_client, until

Clocked = tuple[Forgeflow, ShiftedClock]


@pytest.fixture
async def clocked(dsn: str, registry: Registry) -> AsyncIterator[Clocked]:
    """A client with a movable engine clock (default 60 s sleep threshold)."""
    async with clocked_client(dsn, registry) as pair:
        yield pair


def is_waiting(record: Any) -> bool:
    return bool(record.status is WorkflowStatus.WAITING)


async def test_sleep_until_a_date_waits_for_that_date(clocked: Clocked, registry: Registry) -> None:
    """sleep_until suspends the run until the date, then it goes on with that workflow time."""
    ff, clock = clocked
    launch = (clock.now() + timedelta(days=3)).replace(microsecond=0)

    @workflow(version=1, timeout="30d", registry=registry)
    async def scheduled(ctx: WorkflowContext, when: datetime) -> datetime:
        await ctx.sleep_until(when)
        return ctx.workflow_time()

    run_id = await ff.start(scheduled, launch)
    async with ff.worker(concurrency=1) as worker:
        record = await until(ff, run_id, is_waiting)
        assert record.wake_at == launch
        with anyio.fail_after(10):
            await worker.wait_idle()  # the slot is free while the run sleeps
        await advance(ff, clock, timedelta(days=2))
        await ff.resume(run_id)  # woken early (e.g. by an operator): it sleeps on
        record = await until(ff, run_id, lambda r: is_waiting(r) and r.executions == 2)
        assert record.wake_at == launch
        await advance(ff, clock, timedelta(days=1))
        woke_at = await ff.result(run_id, timeout=30)
    assert woke_at >= launch
    assert (await ff.status(run_id)).executions == 3


async def test_sleep_until_a_past_date_returns_at_once(ff: Forgeflow, registry: Registry) -> None:
    """A date already passed does not suspend the run."""

    @workflow(version=1, registry=registry)
    async def late(ctx: WorkflowContext, when: datetime) -> str:
        await ctx.sleep_until(when)
        return "on time"

    run_id = await ff.start(late, datetime.fromisoformat("2020-01-01T00:00:00+00:00"))
    async with ff.worker(concurrency=1):
        assert await ff.result(run_id, timeout=30) == "on time"
    assert (await ff.status(run_id)).executions == 1


async def test_a_sleep_below_the_threshold_sleeps_in_place(
    ff: Forgeflow, registry: Registry
) -> None:
    """ctx.sleep shorter than sleep_threshold keeps the run on its worker."""

    @workflow(version=1, registry=registry)
    async def nap(ctx: WorkflowContext, _: None) -> str:
        await ctx.sleep("20ms")
        return "rested"

    run_id = await ff.start(nap)
    async with ff.worker(concurrency=1):
        assert await ff.result(run_id, timeout=30) == "rested"
    record = await ff.status(run_id)
    assert record.executions == 1
    assert [(s.name, s.kind) for s in record.steps] == [("sleep", "sleep")]


async def test_a_sleep_above_the_threshold_releases_the_worker(
    clocked: Clocked, registry: Registry
) -> None:
    """ctx.sleep longer than sleep_threshold suspends the run until its wake time."""
    ff, clock = clocked

    @workflow(version=1, timeout="30d", registry=registry)
    async def nap(ctx: WorkflowContext, _: None) -> str:
        await ctx.sleep("2h")
        return "rested"

    run_id = await ff.start(nap)
    async with ff.worker(concurrency=1) as worker:
        record = await until(ff, run_id, is_waiting)
        assert record.worker is None
        with anyio.fail_after(10):
            await worker.wait_idle()
        assert record.wait["kind"] == "sleep"
        await advance(ff, clock, timedelta(hours=2))
        assert await ff.result(run_id, timeout=30) == "rested"
    assert (await ff.status(run_id)).executions == 2


async def test_ff_run_waits_out_a_suspended_sleep_in_process(dsn: str, registry: Registry) -> None:
    """ff.run drives a run across a sleep above the threshold to its end."""

    @workflow(version=1, registry=registry)
    async def nap(ctx: WorkflowContext, _: None) -> str:
        await ctx.sleep("50ms")
        return "rested"

    async with Forgeflow.connect(dsn, registry=registry, sleep_threshold="10ms") as ff:
        assert await ff.run(nap) == "rested"
        [record] = await ff.list_runs()
    assert record.executions == 2
