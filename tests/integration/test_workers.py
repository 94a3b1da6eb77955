"""Workers in separate processes sharing one database: claiming, queues, versions, watch."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import asyncpg
import pytest

from forgeflow import Forgeflow, WorkflowStatus
from forgeflow.testing import fire_timers
from tests.support.db import fetch_run, wait_for, wait_for_run_status
from tests.support.wf_chain import ChainSpec, chain
from tests.support.wf_saga import SagaSpec, saga
from tests.support.wf_versioned_v1 import versioned_v1
from tests.support.wf_versioned_v2 import versioned_v2
from tests.support.worker_effects import Gate, create_effects, effects
from tests.support.worker_procs import WorkerProcesses

CHAIN = "tests.support.wf_chain"
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


async def test_500_runs_on_two_worker_processes_each_run_once(
    ff: Forgeflow, procs: WorkerProcesses, pool: asyncpg.Pool
) -> None:
    """500 runs through two worker processes at concurrency 20 all complete, every step once."""
    first = await procs.start(CHAIN, concurrency=20, lease=10)
    second = await procs.start(CHAIN, concurrency=20, lease=10)
    run_ids: list[str] = []

    async def start_one() -> None:
        run_ids.append(await ff.start(chain, ChainSpec(steps=3)))

    for _ in range(50):
        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(start_one)

    async def all_ended() -> bool:
        ended = await ff.pool.fetchval(
            "SELECT count(*) FROM forgeflow.workflow_runs"
            " WHERE status IN ('completed', 'compensated', 'failed')"
        )
        return bool(ended == len(run_ids))

    await wait_for(all_ended, timeout=100, what="500 runs to end")
    runs = await ff.pool.fetch("SELECT id, status, executions FROM forgeflow.workflow_runs")
    assert len(runs) == 500
    assert {r["status"] for r in runs} == {"completed"}
    # Claimed exactly once each: no run was ever held by both workers.
    assert {r["executions"] for r in runs} == {1}
    made = await effects(pool)
    per_step = Counter((e["run_id"], e["step"], e["event"]) for e in made)
    assert len(per_step) == 500 * 3 * 2
    assert set(per_step.values()) == {1}
    assert {e["pid"] for e in made} == {first.pid, second.pid}
    # Each checkpoint holds the effect its own attempt made.
    done = {(e["run_id"], e["step"]): e["id"] for e in made if e["event"] == "done"}
    steps = await ff.pool.fetch("SELECT run_id, name, result FROM forgeflow.workflow_steps")
    assert {(s["run_id"], s["name"]): int(s["result"]) for s in steps} == done


async def test_a_worker_takes_runs_of_its_queues_only(
    ff: Forgeflow, procs: WorkerProcesses, pool: asyncpg.Pool
) -> None:
    """A worker on queue A never claims a run of queue B; a worker on B does."""
    on_b = await ff.start(saga, SagaSpec(), queue="b")
    on_a = await ff.start(saga, SagaSpec(), queue="a")
    await procs.start(SAGA, queues=["a"])
    await wait_for_run_status(ff.pool, on_a, "completed")
    untouched = await fetch_run(ff.pool, on_b)
    assert untouched is not None
    assert (untouched["status"], untouched["executions"]) == ("created", 0)
    assert await effects(pool, on_b) == []
    await procs.start(SAGA, queues=["b", "c"])
    await wait_for_run_status(ff.pool, on_b, "completed")


async def test_a_run_continues_on_the_version_it_started_with(
    ff: Forgeflow, procs: WorkerProcesses, pool: asyncpg.Pool, dsn: str
) -> None:
    """A v1 run goes on with v1 on a worker that has v1 and v2; a worker without v2 leaves v2."""
    old = await procs.start("tests.support.wf_versioned_v1", concurrency=2)
    on_v1 = await ff.start(versioned_v1)
    on_v2 = await ff.start(versioned_v2)
    later_v1 = await ff.start(versioned_v1)
    await wait_for_run_status(ff.pool, on_v1, "waiting")
    await wait_for_run_status(ff.pool, later_v1, "waiting")
    # The v1-only worker took a run created after the v2 one, but not the v2 one.
    left = await fetch_run(ff.pool, on_v2)
    assert left is not None
    assert (left["status"], left["executions"]) == ("created", 0)
    # Any client (this one knows both versions) can tell why the v2 run is not picked up.
    record = await ff.status(on_v2)
    assert record.wait is not None
    assert record.wait["kind"] == "no_worker"
    assert "v2" in record.wait["detail"]
    assert (await ff.status(later_v1)).wait["kind"] != "no_worker"
    await old.terminate()
    await old.wait()
    await procs.start("tests.support.wf_versioned_v2", concurrency=2)
    await wait_for_run_status(ff.pool, on_v2, "waiting")
    assert set(await fire_timers(ff)) == {on_v1, on_v2, later_v1}
    for run_id in (on_v1, on_v2, later_v1):
        await wait_for_run_status(ff.pool, run_id, "completed")
    assert [e["step"] for e in await effects(pool, on_v1)] == ["v1:first", "v1:second"]
    assert [e["step"] for e in await effects(pool, on_v2)] == ["v2:first", "v2:second"]
    assert (await ff.status(on_v1)).output == "v1"


async def test_watch_streams_the_status_until_the_run_ends(
    ff: Forgeflow, procs: WorkerProcesses, pool: asyncpg.Pool, dsn: str
) -> None:
    """ff.watch yields each status a worker elsewhere gives the run and stops at the end."""
    await procs.start(SAGA)
    async with Gate(dsn, 31) as gate:
        run_id = await ff.start(saga, SagaSpec(gate=31, gate_at="s2"))
        seen: list[WorkflowStatus] = []
        async for record in ff.watch(run_id):
            if not seen or seen[-1] is not record.status:
                seen.append(record.status)
            if record.status is WorkflowStatus.RUNNING:
                await gate.open()
    assert seen[-2:] == [WorkflowStatus.RUNNING, WorkflowStatus.COMPLETED]
    assert seen[0] in (WorkflowStatus.CREATED, WorkflowStatus.RUNNING)


async def test_resume_makes_a_worker_elsewhere_look_at_a_waiting_run_now(
    ff: Forgeflow, procs: WorkerProcesses, pool: asyncpg.Pool
) -> None:
    """ff.resume re-queues a waiting run at once: it replays without re-running a step."""
    await procs.start(SAGA)
    run_id = await ff.start(saga, SagaSpec(sleep=7200))
    await wait_for_run_status(ff.pool, run_id, "waiting")
    before = await fetch_run(ff.pool, run_id)
    assert before is not None
    assert await ff.resume(run_id) is True

    async def replayed() -> bool:
        row = await fetch_run(ff.pool, run_id)
        return row is not None and row["executions"] == 2 and row["status"] == "waiting"

    await wait_for(replayed, what="the resumed run to be replayed")
    after = await fetch_run(ff.pool, run_id)
    assert after is not None
    assert after["runnable_at"] == before["runnable_at"]  # the two hours still count
    assert [e["step"] for e in await effects(pool, run_id) if e["event"] == "start"] == [
        "s1",
        "s2",
        "s3",
    ]
    await fire_timers(ff, run_id)
    await wait_for_run_status(ff.pool, run_id, "completed")
    assert await ff.resume(run_id) is False
