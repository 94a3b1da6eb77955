"""Engine defects under real process faults: a worker paused past its lease, a step that
kills every worker executing it."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from forgeflow import Forgeflow, RecoveryLimitExceeded, WorkflowStatus, default_registry
from tests.support.db import wait_for, wait_for_run_status, wait_for_step_status
from tests.support.wf_faults import KillerSpec, PausedSpec, killer, paused
from tests.support.worker_procs import WorkerProcesses

FAULTS = "tests.support.wf_faults"


@pytest.fixture
async def procs(dsn: str, tmp_path: Path) -> AsyncIterator[WorkerProcesses]:
    """Worker processes on the test's database, killed at the end of the test."""
    async with WorkerProcesses(dsn, tmp_path) as started:
        yield started


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[Forgeflow]:
    """A client knowing the fault workflows (they register in the default registry)."""
    async with Forgeflow.connect(dsn, registry=default_registry) as ff:
        yield ff


async def test_a_worker_paused_past_its_lease_starts_no_new_step_when_it_resumes(
    client: Forgeflow, procs: WorkerProcesses, tmp_path: Path
) -> None:
    """SIGSTOP past the lease, SIGCONT after another worker finished: b runs only there."""
    marks = tmp_path / "marks"
    marks.mkdir()
    frozen = await procs.start(FAULTS, concurrency=1, lease=1, worker_id="frozen")
    run_id = await client.start(paused, PausedSpec(marks=str(marks), sleep=2.0))
    await wait_for_step_status(client.pool, run_id, "a", "completed")
    frozen.proc.send_signal(signal.SIGSTOP)
    taker = await procs.start(FAULTS, concurrency=1, lease=5, worker_id="taker")
    await wait_for_run_status(client.pool, run_id, "completed")
    # Resumed, the frozen worker's in-place sleep is over at once: it must notice that
    # its lease ran out while it was stopped, and give the run up without running b.
    frozen.proc.send_signal(signal.SIGCONT)

    async def gave_up() -> bool:
        return "lease_lost" in frozen.tail(100_000)

    await wait_for(gave_up, what="the frozen worker to give the run up")
    await frozen.terminate()
    assert await frozen.wait() == 0
    ran = sorted(p.name for p in marks.iterdir())
    assert ran == sorted([f"a-{frozen.pid}", f"b-{taker.pid}"])
    assert (await client.status(run_id)).output == taker.pid


async def test_a_step_that_kills_its_worker_is_rolled_back_after_max_recoveries(
    client: Forgeflow, procs: WorkerProcesses, tmp_path: Path
) -> None:
    """Three executions die in `boom` without progress (max_recoveries=2): then roll back."""
    marks = tmp_path / "marks"
    marks.mkdir()
    run_id = await client.start(killer, KillerSpec(marks=str(marks)))
    deaths = 0
    for _ in range(6):  # a bound: a broken engine would kill workers forever
        worker = await procs.start(FAULTS, concurrency=1, lease=1)

        async def settled() -> bool:
            return not procs.started[-1].alive or (await client.status(run_id)).is_terminal

        await wait_for(settled, what="a worker death or the run's end")
        if worker.alive:
            break
        assert await worker.wait() == -signal.SIGKILL
        deaths += 1
    record = await client.status(run_id)
    assert deaths == 3
    assert record.status is WorkflowStatus.COMPENSATED
    assert record.error is not None
    assert (record.error["type"], record.error["step"]) == (RecoveryLimitExceeded.__name__, "boom")
    assert len([p for p in marks.iterdir() if p.name.startswith("undo-a-")]) == 1
