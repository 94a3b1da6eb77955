"""Queue limits, priority and debounce, held by worker processes sharing one database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from forgeflow import Debounce, Forgeflow
from tests.support.db import wait_for
from tests.support.wf_queues import (
    Job,
    conc_job,
    create_exec_table,
    debounced_job,
    gated_job,
    keyed_job,
    max_overlap,
    prio_job,
    rate_job,
)
from tests.support.worker_effects import Gate
from tests.support.worker_procs import WorkerProcesses

QUEUES = "tests.support.wf_queues"


@pytest.fixture
async def procs(dsn: str, tmp_path: Path) -> AsyncIterator[WorkerProcesses]:
    """Worker processes on the test's database, killed at the end of the test."""
    async with WorkerProcesses(dsn, tmp_path) as started:
        yield started


@pytest.fixture
async def pool(ff: Forgeflow) -> asyncpg.Pool:
    """The test's pool, with the execution log table created."""
    pool: asyncpg.Pool = ff.pool
    await create_exec_table(pool)
    return pool


async def all_completed(ff: Forgeflow, run_ids: list[str], timeout: float = 90) -> None:
    """Wait until every run of ``run_ids`` is completed."""

    async def done() -> bool:
        count = await ff.pool.fetchval(
            "SELECT count(*) FROM forgeflow.workflow_runs"
            " WHERE id = ANY($1::text[]) AND status = 'completed'",
            run_ids,
        )
        return bool(count == len(run_ids))

    await wait_for(done, timeout=timeout, what=f"{len(run_ids)} runs to complete")


async def test_queue_concurrency_holds_across_three_worker_processes(
    ff: Forgeflow, procs: WorkerProcesses, pool: asyncpg.Pool
) -> None:
    """With 3 workers of concurrency 20, a queue of concurrency 5 never runs more than 5."""
    for _ in range(3):
        await procs.start(QUEUES, concurrency=20, lease=10)
    run_ids = await ff.start_many(conc_job, [Job(hold=0.03, label=str(i)) for i in range(240)])
    await all_completed(ff, run_ids)
    assert await pool.fetchval("SELECT count(*) FROM public.queue_exec") == 240
    overlap = await max_overlap(pool)
    assert 1 < overlap <= 5
    pids = await pool.fetchval("SELECT count(DISTINCT pid) FROM public.queue_exec")
    assert pids > 1  # more than one worker process took part


async def test_key_concurrency_serialises_each_key_while_keys_run_side_by_side(
    ff: Forgeflow, procs: WorkerProcesses, pool: asyncpg.Pool
) -> None:
    """key_concurrency=1: runs of one key never overlap, runs of different keys do."""
    for _ in range(3):
        await procs.start(QUEUES, concurrency=20, lease=10)
    run_ids = []
    for i in range(200):
        key = f"customer-{i % 8}"
        run_ids.append(await ff.start(keyed_job, Job(hold=0.02, key=key), key=key))
    await all_completed(ff, run_ids)
    assert await max_overlap(pool, by_key=True) == 1
    assert await max_overlap(pool) > 1


async def test_rate_limit_admits_at_most_twenty_first_claims_in_any_second(
    ff: Forgeflow, procs: WorkerProcesses, pool: asyncpg.Pool
) -> None:
    """rate="20/s" over 200 runs: no one-second window holds more than 20 first claims."""
    for _ in range(3):
        await procs.start(QUEUES, concurrency=20, lease=10)
    run_ids = await ff.start_many(rate_job, [Job() for _ in range(200)])
    await all_completed(ff, run_ids)
    # For each first claim, the claims in the second that begins with it (the sliding
    # window the limit promises, whichever instant a window starts at).
    busiest = await pool.fetchval(
        """
        SELECT max(n) FROM (
            SELECT (SELECT count(*) FROM forgeflow.workflow_runs b
                    WHERE b.queue = 't_rated' AND b.started_at >= a.started_at
                      AND b.started_at < a.started_at + interval '1 second') AS n
            FROM forgeflow.workflow_runs a WHERE a.queue = 't_rated'
        ) x
        """
    )
    assert busiest <= 20
    assert busiest >= 10  # the limit was reached, not merely undercut by slow workers


async def test_higher_priority_runs_first_and_fifo_within_a_priority(
    ff: Forgeflow, procs: WorkerProcesses, pool: asyncpg.Pool
) -> None:
    """One worker of concurrency 1 on a backlog executes by priority, then by start order."""
    priorities = [0, 5, 0, 10, 5, -1, 10, 0, 5, 10]
    run_ids = [
        await ff.start(prio_job, Job(label=f"{i}:{p}"), priority=p)
        for i, p in enumerate(priorities)
    ]
    await procs.start(QUEUES, concurrency=1)
    await all_completed(ff, run_ids)
    rows = await pool.fetch("SELECT label FROM public.queue_exec ORDER BY id")
    order = [r["label"] for r in rows]
    expected = [
        f"{i}:{p}" for i, p in sorted(enumerate(priorities), key=lambda ip: (-ip[1], ip[0]))
    ]
    assert order == expected


async def test_fifty_debounced_starts_make_one_run_with_the_last_input(
    ff: Forgeflow, procs: WorkerProcesses, pool: asyncpg.Pool
) -> None:
    """50 starts with one debounce key in about a second: one run, with the last input."""
    await procs.start(QUEUES, concurrency=4)
    debounce = Debounce("digest", window="1s", max_wait="1m")
    ids = {await ff.start(debounced_job, Job(label=str(i)), debounce=debounce) for i in range(50)}
    assert len(ids) == 1
    (run_id,) = ids
    assert await ff.result(run_id, timeout=30) == "49"
    runs = await pool.fetchval(
        "SELECT count(*) FROM forgeflow.workflow_runs WHERE workflow = 'q_debounced_job'"
    )
    assert runs == 1
    # Once claimed, the next start with the key creates a new run.
    later = await ff.start(debounced_job, Job(label="later"), debounce=debounce)
    assert later != run_id
    assert await ff.result(later, timeout=30) == "later"


async def test_a_killed_workers_slots_come_back_when_its_leases_expire(
    ff: Forgeflow, procs: WorkerProcesses, pool: asyncpg.Pool, dsn: str
) -> None:
    """SIGKILL a worker holding all 3 slots: after its leases expire others take over,
    and the queue still never executes more than 3 runs."""
    async with Gate(dsn, 41) as gate:
        run_ids = await ff.start_many(gated_job, [Job(gate=41) for _ in range(8)])
        doomed = await procs.start(QUEUES, concurrency=10, lease=2)
        await wait_for(
            lambda: _executing(pool, 3), what="the first worker to hold the queue's 3 slots"
        )
        survivor = await procs.start(QUEUES, concurrency=10, lease=10)
        waiting = await pool.fetchval(
            "SELECT id FROM forgeflow.workflow_runs WHERE queue = 't_gated'"
            " AND lease_owner IS NULL LIMIT 1"
        )
        record = await ff.status(waiting)
        assert record.wait is not None
        assert record.wait["kind"] == "queue_limit"
        assert record.wait["detail"] == "held by queue t_gated: 3/3 executing"
        await doomed.kill()
        # The dead worker's leases run out; the survivor takes 3 runs and no more.
        await wait_for(
            lambda: _executing(pool, 3, owner=survivor.worker_id),
            what="the survivor to hold the 3 slots",
        )
        assert await _executing(pool, 3)
        await gate.open()
    await all_completed(ff, run_ids)
    # The survivor's executions (every one that ended) never exceeded the limit.
    assert await max_overlap(pool, ended_only=True) <= 3
    assert await pool.fetchval("SELECT count(*) FROM public.queue_exec WHERE ended IS NULL") == 3


async def _executing(pool: asyncpg.Pool, count: int, owner: str | None = None) -> bool:
    value = await pool.fetchval(
        "SELECT count(*) FROM forgeflow.workflow_runs WHERE queue = 't_gated'"
        " AND lease_owner IS NOT NULL AND lease_expires_at > now()"
        " AND ($1::text IS NULL OR lease_owner = $1)",
        owner,
    )
    return bool(value == count)
