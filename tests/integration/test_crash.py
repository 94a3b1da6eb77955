"""Workers that die, pause or stop mid-run: the runs go on elsewhere, nothing done twice.

Workers run in processes of their own and are killed with SIGKILL, paused with SIGSTOP
or stopped with SIGTERM. Every step leaves rows in ``worker_effects`` (see
``tests.support.worker_effects``), so a test can prove from the database alone which
attempt of which step ran where, and that nothing ran again once checkpointed.
"""

from __future__ import annotations

import random
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from structlog.testing import capture_logs

from forgeflow import Forgeflow, Registry, WorkflowContext, workflow
from tests.support.db import connect_direct, fetch_run, wait_for, wait_for_run_status
from tests.support.wf_chain import ChainSpec, chain
from tests.support.wf_saga import SagaSpec, saga
from tests.support.worker_effects import Gate, create_effects, effects
from tests.support.worker_procs import WorkerProcess, WorkerProcesses

CHAIN = "tests.support.wf_chain"
SAGA = "tests.support.wf_saga"
ENDED = ("completed", "compensated", "failed")


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


async def count(pool: asyncpg.Pool, query: str, *args: Any) -> int:
    """One number from the database."""
    value: int = await pool.fetchval(query, *args)
    return value


async def wait_for_effect(
    pool: asyncpg.Pool, run_id: str, step: str, event: str, times: int = 1
) -> None:
    """Wait until ``step`` of ``run_id`` has left ``event`` at least ``times`` times."""
    query = (
        "SELECT count(*) >= $4 FROM public.worker_effects"
        " WHERE run_id = $1 AND step = $2 AND event = $3"
    )

    async def check() -> bool:
        return bool(await pool.fetchval(query, run_id, step, event, times))

    await wait_for(check, what=f"{step} {event} x{times} in run {run_id}")


# -- SIGKILL at random points ------------------------------------------------------------

KILL_POINTS = ("inside a step", "after a side effect", "after a checkpoint")


async def kill_at_random_point(
    pool: asyncpg.Pool, victim: WorkerProcess, point: str, events: int
) -> None:
    """Wait until ``victim`` has passed ``point`` ``events`` more times, then SIGKILL it.

    It is killed anyway if meanwhile it runs out of work (it holds no run any more).
    """
    event = "start" if point == "inside a step" else "done"
    query = "SELECT max(id) FROM public.worker_effects WHERE pid = $1 AND event = $2"
    last = await pool.fetchval(query, victim.pid, event) or 0
    newer = (
        "SELECT id FROM public.worker_effects WHERE pid = $1 AND event = $2 AND id > $3"
        " ORDER BY id OFFSET $4 LIMIT 1"
    )
    holds = "SELECT count(*) > 0 FROM forgeflow.workflow_runs WHERE lease_owner = $1"

    async def passed() -> int:
        # The effect's id once it is there; -1 if the victim ran out of work first.
        found: int | None = await pool.fetchval(newer, victim.pid, event, last, events - 1)
        if found is not None:
            return found
        return 0 if await pool.fetchval(holds, victim.worker_id) else -1

    effect = await wait_for(passed, what=f"{victim.worker_id} {point} x{events}")
    if point == "after a checkpoint" and effect > 0:
        checkpointed = (
            "SELECT count(*) > 0 FROM forgeflow.workflow_steps WHERE result = to_jsonb($1::int)"
            " UNION ALL SELECT count(*) = 0 FROM forgeflow.workflow_runs WHERE lease_owner = $2"
        )

        async def written() -> bool:
            return any(r[0] for r in await pool.fetch(checkpointed, effect, victim.worker_id))

        await wait_for(written, what=f"the checkpoint of effect {effect}")
    await victim.kill()


async def test_sigkilled_workers_lose_nothing_and_repeat_no_completed_step(
    ff: Forgeflow, procs: WorkerProcesses, pool: asyncpg.Pool
) -> None:
    """Workers SIGKILLed at random points: the others finish every run, no completed step twice."""
    rng = random.Random(3)  # a fixed seed: the same kill points on every run of the test
    specs = [ChainSpec(steps=8, delay=0.15, fail_at=5 if i % 4 == 3 else None) for i in range(12)]
    live: list[WorkerProcess] = []

    async def start_worker() -> None:
        live.append(await procs.start(CHAIN, concurrency=4, lease=1, poll_interval=0.1))

    async def next_victim() -> WorkerProcess | str:
        # The live worker holding the most runs; "" (look again) between claims.
        rows = await ff.pool.fetch(
            "SELECT lease_owner, count(*) FROM forgeflow.workflow_runs"
            " WHERE lease_owner IS NOT NULL GROUP BY lease_owner"
        )
        holders = {r[0]: r[1] for r in rows}
        busy = [w for w in live if holders.get(w.worker_id)]
        if busy:
            return max(busy, key=lambda w: holders[w.worker_id])
        ended = await count(
            ff.pool,
            "SELECT count(*) FROM forgeflow.workflow_runs WHERE status = ANY($1::text[])",
            list(ENDED),
        )
        return "every run ended" if ended == len(specs) else ""

    await start_worker()
    await start_worker()
    run_ids = [await ff.start(chain, spec) for spec in specs]
    kills = 0
    # Replacements start in the background, so the work and the kills go on meanwhile.
    async with anyio.create_task_group() as group:
        while kills < 5:
            victim: WorkerProcess | str = await wait_for(
                next_victim, what="a live worker holding a run"
            )
            if isinstance(victim, str):
                break
            point = rng.choice(KILL_POINTS)
            await kill_at_random_point(pool, victim, point, rng.randint(1, 3))
            kills += 1
            live.remove(victim)
            group.start_soon(start_worker)
    assert kills == 5

    async def all_ended() -> bool:
        return await count(
            ff.pool,
            "SELECT count(*) FROM forgeflow.workflow_runs WHERE status = ANY($1::text[])",
            list(ENDED),
        ) == len(run_ids)

    await wait_for(all_ended, timeout=60, what="every run to end")
    for run_id, spec in zip(run_ids, specs, strict=True):
        await check_run(ff, pool, run_id, spec)


async def check_run(ff: Forgeflow, pool: asyncpg.Pool, run_id: str, spec: ChainSpec) -> None:
    """The run ended as its spec says, and the effects show no completed step ran again."""
    record = await ff.status(run_id)
    made = await effects(pool, run_id)
    steps = {s.name: s for s in record.steps}
    completed = [s for s in steps.values() if s.status in ("completed", "compensated")]
    for step in completed:
        # The checkpoint names the effect of the attempt that completed, and no attempt
        # of that step started after that effect was made.
        attempts = [e for e in made if e["step"] == step.name]
        assert any(e["id"] == step.result and e["event"] == "done" for e in attempts)
        later = [e for e in attempts if e["event"] == "start" and e["id"] > step.result]
        assert later == [], (run_id, step.name, attempts)
    if spec.fail_at is None:
        assert record.status == "completed"
        assert record.output == [steps[f"s{n}"].result for n in range(1, spec.steps + 1)]
        assert not any(e["event"] == "undo" for e in made)
        return
    assert (record.status, record.end_reason) == ("compensated", "failure")
    failed = f"s{spec.fail_at}"
    before = [f"s{n}" for n in range(1, spec.fail_at)]
    assert steps[failed].status == "failed"
    assert sorted(steps) == sorted([*before, failed])
    assert all(steps[name].status == "compensated" for name in before)
    undone: list[str] = []
    for e in made:
        if e["event"] == "undo":
            # Each compensation undoes the effect its step's checkpoint recorded.
            assert int(e["info"]) == steps[e["step"]].result
            if e["step"] not in undone:
                undone.append(e["step"])
    assert undone == before[::-1]


# -- a worker that lost its lease ----------------------------------------------------------


async def test_a_worker_whose_lease_was_taken_cannot_write_a_checkpoint(
    ff: Forgeflow, registry: Registry, dsn: str
) -> None:
    """A worker paused past its lease has its checkpoint refused; only the new holder's count."""
    calls: list[str] = []
    paused = anyio.Event()
    go_on = anyio.Event()

    async def slow() -> str:
        calls.append("slow")
        attempt = f"attempt {len(calls)}"
        if len(calls) == 1:
            paused.set()
            await go_on.wait()  # the first worker stalls here (a long GC pause, a VM freeze)
        return attempt

    async def after() -> str:
        calls.append("after")
        return "after"

    @workflow(version=1, registry=registry)
    async def stalled(ctx: WorkflowContext) -> list[str]:
        return [await ctx.step("slow", slow), await ctx.step("after", after)]

    run_id = await ff.start(stalled)
    with capture_logs() as logs:
        async with ff.worker(concurrency=1, lease="10m", worker_id="stalled") as first:
            await paused.wait()
            # The pause outlasts the lease, and another worker takes the run over.
            await ff.pool.execute(
                "UPDATE forgeflow.workflow_runs SET lease_expires_at = now() - interval '1s'"
                " WHERE id = $1",
                run_id,
            )
            async with (
                Forgeflow.connect(dsn, registry=registry) as other,
                other.worker(concurrency=1, lease="10m", worker_id="taker"),
            ):
                assert await other.result(run_id, timeout=30) == ["attempt 2", "after"]
            go_on.set()  # the first worker wakes up and tries to checkpoint its attempt
            await first.wait_idle()
    assert {"event": "lease_lost", "log_level": "warning"}.items() <= next(
        e for e in logs if e["event"] == "lease_lost"
    ).items()
    assert calls == ["slow", "slow", "after"]
    record = await ff.status(run_id)
    assert {s.name: s.result for s in record.steps} == {"slow": "attempt 2", "after": "after"}
    assert (record.status, record.executions, record.worker) == ("completed", 2, None)


async def test_ff_run_renews_the_lease_of_a_step_that_outlasts_it(
    dsn: str, registry: Registry
) -> None:
    """ff.run keeps its run's lease while a step takes several leases: the heartbeat starts
    a third of a lease in, and renews it until the run ends."""
    renewals: list[Any] = []

    async def outlast(run_id: str) -> int:
        conn = await connect_direct(dsn)
        try:

            async def expiry() -> Any:
                return await conn.fetchval(
                    "SELECT lease_expires_at FROM forgeflow.workflow_runs WHERE id = $1", run_id
                )

            renewals.append(await expiry())
            while len(renewals) < 4:
                latest = await wait_for(
                    lambda: _later(expiry(), renewals[-1]), what="the lease renewed", timeout=30
                )
                renewals.append(latest)
        finally:
            await conn.close()
        return len(renewals)

    @workflow(version=1, registry=registry)
    async def long_step(ctx: WorkflowContext) -> int:
        return await ctx.step("outlast", outlast, ctx.run_id)

    async with Forgeflow.connect(dsn, registry=registry, lease="1s") as ff:
        assert await ff.run(long_step) == 4
        (run,) = await ff.list_runs()
    # Three renewals, and the run was never taken from this process meanwhile.
    assert (run.status, run.executions) == ("completed", 1)


async def _later(value: Any, than: Any) -> Any:
    """``value`` (awaited) if it is later than ``than``, else None."""
    current = await value
    return current if current > than else None


async def test_a_worker_does_not_start_a_run_it_still_executes_when_its_lease_lapsed(
    ff: Forgeflow, registry: Registry
) -> None:
    """A lease that lapsed (a stalled heartbeat) and is claimed back leaves one execution."""
    calls: list[str] = []
    busy = anyio.Event()
    go_on = anyio.Event()

    async def slow() -> str:
        calls.append("slow")
        busy.set()
        await go_on.wait()
        return "slow"

    @workflow(version=1, registry=registry)
    async def long_step(ctx: WorkflowContext) -> str:
        return await ctx.step("slow", slow)

    @workflow(version=1, registry=registry)
    async def short(ctx: WorkflowContext) -> str:
        return await ctx.step("quick", lambda: "quick")

    stalled = await ff.start(long_step)
    async with ff.worker(concurrency=2, lease="10m", poll_interval="50ms") as worker:
        await busy.wait()
        await ff.pool.execute(
            "UPDATE forgeflow.workflow_runs SET lease_expires_at = now() - interval '1s'"
            " WHERE id = $1",
            stalled,
        )
        # The next claim finds the lapsed run first, then this one.
        assert await ff.result(await ff.start(short), timeout=30) == "quick"
        go_on.set()
        assert await ff.result(stalled, timeout=30) == "slow"
        await worker.wait_idle()
    assert calls == ["slow"]


async def test_a_worker_paused_past_its_lease_changes_nothing_when_it_resumes(
    ff: Forgeflow, procs: WorkerProcesses, pool: asyncpg.Pool, dsn: str
) -> None:
    """A SIGSTOPped worker's run is taken over; resumed (SIGCONT), it writes nothing of it."""
    async with Gate(dsn, 21) as gate:
        frozen = await procs.start(SAGA, concurrency=1, lease=1, worker_id="frozen")
        run_id = await ff.start(saga, SagaSpec(gate=21, gate_at="s2"))
        await wait_for_effect(pool, run_id, "s2", "start")
        frozen.proc.send_signal(signal.SIGSTOP)
        taker = await procs.start(SAGA, concurrency=1, worker_id="taker")
        await wait_for_effect(pool, run_id, "s2", "start", times=2)
        await gate.open()
        await wait_for_run_status(pool, run_id, "completed")
    frozen.proc.send_signal(signal.SIGCONT)
    await frozen.terminate()  # its stop waits for whatever it still had in flight
    assert await frozen.wait() == 0
    made = await effects(pool, run_id)
    record = await ff.status(run_id)
    done_by = {e["id"]: e["pid"] for e in made if e["event"] == "done"}
    # Every checkpoint after the pause is the taker's, whatever the resumed worker did.
    assert {s.name: done_by[s.result] for s in record.steps} == {
        "s1": frozen.pid,
        "s2": taker.pid,
        "s3": taker.pid,
        "s4": taker.pid,
    }
    assert [e["pid"] for e in made if e["step"] in ("s3", "s4")] == [taker.pid] * 4
    assert (record.status, record.executions) == ("completed", 2)


# -- graceful stop ---------------------------------------------------------------------


async def test_sigterm_finishes_the_step_releases_the_lease_and_another_worker_goes_on(
    ff: Forgeflow, procs: WorkerProcesses, pool: asyncpg.Pool, dsn: str
) -> None:
    """On SIGTERM a worker completes its in-flight step and hands the run over at once."""
    async with Gate(dsn, 41) as gate:
        leaving = await procs.start(SAGA, concurrency=1, lease=60, worker_id="leaving")
        run_id = await ff.start(saga, SagaSpec(gate=41, gate_at="s2"))
        await wait_for_effect(pool, run_id, "s2", "start")
        staying = await procs.start(SAGA, concurrency=1, lease=60, worker_id="staying")
        held = await fetch_run(pool, run_id)
        assert held is not None
        assert held["lease_owner"] == "leaving"
        await leaving.terminate()
        await gate.open()
        assert await leaving.wait() == 0
    await wait_for_run_status(pool, run_id, "completed")
    made = await effects(pool, run_id)
    by = {(e["step"], e["event"]): e for e in made}
    assert len(made) == len(by) == 8  # every step started once and made its effect once
    assert [by["s2", "start"]["pid"], by["s2", "done"]["pid"]] == [leaving.pid] * 2
    assert {by["s3", "start"]["pid"], by["s4", "done"]["pid"]} == {staying.pid}
    # The other worker went on while the sixty-second lease still ran: it was released.
    assert by["s3", "start"]["at"] < held["lease_expires_at"]
    record = await ff.status(run_id)
    assert record.executions == 2
    assert {s.name: s.result for s in record.steps}["s2"] == by["s2", "done"]["id"]


# -- compensation interrupted by a crash -------------------------------------------------


async def test_a_crash_during_compensation_runs_no_compensation_twice(
    ff: Forgeflow, procs: WorkerProcesses, pool: asyncpg.Pool, dsn: str
) -> None:
    """A worker SIGKILLed mid-rollback: another finishes it; each compensation once, in reverse."""
    async with Gate(dsn, 51) as gate:
        first = await procs.start(SAGA, concurrency=1, lease=1)
        run_id = await ff.start(saga, SagaSpec(gate=51, undo_gate_at="s2", sleep=7200))
        await wait_for_run_status(pool, run_id, "waiting")
        await ff.cancel(run_id)
        await wait_for_effect(pool, run_id, "s2", "undo_start")
        await first.kill()
        second = await procs.start(SAGA, concurrency=1)
        await wait_for_effect(pool, run_id, "s2", "undo_start", times=2)
        await gate.open()
    await wait_for_run_status(pool, run_id, "compensated")
    made = await effects(pool, run_id)
    assert [(e["step"], e["pid"]) for e in made if e["event"] == "undo"] == [
        ("s3", first.pid),
        ("s2", second.pid),
        ("s1", second.pid),
    ]
    assert [e["step"] for e in made if e["event"] == "start"] == ["s1", "s2", "s3"]
    record = await ff.status(run_id)
    assert (record.status, record.end_reason) == ("compensated", "cancel")
    assert {s.name: s.status for s in record.steps if s.kind == "step"} == {
        "s1": "compensated",
        "s2": "compensated",
        "s3": "compensated",
    }
