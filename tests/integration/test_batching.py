"""Batched checkpoints: runs executing in one worker share statements, keep every guarantee.

A write is held in flight by a real lock (``tests.support.holds``): one run's checkpoint
statement waits in PostgreSQL, and the checkpoints other runs reach meanwhile queue
behind it. Statements are counted at the store layer, by name and rows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from forgeflow import Forgeflow, Registry, WorkflowContext, workflow
from forgeflow._store import Store
from tests.support.db import connect_direct, wait_for, wait_for_run_status
from tests.support.holds import HOLD_STEP, step_held, waiting_checkpoint
from tests.support.wf_chain import ChainSpec, chain
from tests.support.worker_effects import create_effects, effects
from tests.support.worker_procs import WorkerProcess, WorkerProcesses

CHAIN = "tests.support.wf_chain"

OTHERS = 5

Statements = list[tuple[str, int]]


def of(statements: Statements, kind: str) -> Statements:
    """The statements of one kind: "checkpoint" or "finish"."""
    return [s for s in statements if s[0].startswith(kind)]


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Statements:
    """(statement name, rows) of every checkpoint and finish statement the store sends."""
    sent: Statements = []
    original = Store._call

    async def counted(self: Store, method: str, name: str, *args: Any) -> Any:
        if name in ("checkpoint_step", "finish_run", "finish_run_alone"):
            sent.append((name, 1))
        elif name in ("checkpoint_steps", "finish_runs"):
            sent.append((name, len(json.loads(args[0]))))
        return await original(self, method, name, *args)

    monkeypatch.setattr(Store, "_call", counted)
    return sent


class Gates:
    """Events that step functions wait on, by role, and a count of calls per role."""

    def __init__(self) -> None:
        self.open: dict[str, asyncio.Event] = {"blocker": asyncio.Event(), "other": asyncio.Event()}
        self.calls: dict[str, int] = {}
        self.entered = 0
        self.all_entered = asyncio.Event()
        self.expected = 1 + OTHERS

    async def step(self, run_id: str, role: str, value: str) -> str:
        """Wait for ``role``'s gate, then return ``value``."""
        self.calls[run_id] = self.calls.get(run_id, 0) + 1
        self.entered += 1
        if self.entered >= self.expected:
            self.all_entered.set()
        await self.open[role].wait()
        # A NUL character: valid in a Python string, refused by PostgreSQL's jsonb.
        return "bad \x00 value" if value == "nul" else value


def gated_workflow(registry: Registry, gates: Gates) -> Any:
    """A one-step workflow whose step waits at a gate and returns what it is given."""

    @workflow(version=1, registry=registry, name="gated")
    async def gated(ctx: WorkflowContext, args: list[str]) -> str:
        role, value = args
        return await ctx.step("first", gates.step, ctx.run_id, role, value).run()

    return gated


async def queued(ff: Forgeflow, count: int) -> None:
    """Wait until ``count`` checkpoints are queued behind the write in flight."""
    batching = ff._executor.store._batching
    assert batching is not None
    batcher = batching.checkpoints

    async def check() -> bool:
        return batcher.queued >= count

    await wait_for(check, what=f"{count} queued checkpoints")


async def start_behind_blocker(
    ff: Forgeflow, dsn: str, gates: Gates, gated: Any, values: list[str]
) -> tuple[str, list[str], Any]:
    """Start a blocker run and one run per value; hold the blocker's checkpoint in flight
    and queue the others' behind it. Returns the runs and the hold's context."""
    blocker = await ff.start(gated, ["blocker", "b"])
    others = [await ff.start(gated, ["other", v]) for v in values]
    await gates.all_entered.wait()
    lock = step_held(dsn, blocker)
    await lock.__aenter__()
    gates.open["blocker"].set()
    await waiting_checkpoint(ff.pool)
    gates.open["other"].set()
    await queued(ff, len(values))
    return blocker, others, lock


async def test_a_run_alone_pays_one_statement_per_step(
    ff: Forgeflow, registry: Registry, statements: Statements
) -> None:
    """With nothing else in flight, each checkpoint is sent at once, on its own."""

    @workflow(version=1, registry=registry)
    async def alone(ctx: WorkflowContext) -> int:
        return sum([await ctx.step("s", _number, i).run() for i in range(20)])

    assert await ff.run(alone) == sum(range(20))
    assert of(statements, "checkpoint") == [("checkpoint_step", 1)] * 20


async def _number(i: int) -> int:
    return i


async def test_checkpoints_reached_during_a_write_go_together_in_one_statement(
    ff: Forgeflow, dsn: str, registry: Registry, statements: Statements
) -> None:
    """Runs reaching a checkpoint while one is in flight share one statement and commit;
    so do their ends."""
    gates = Gates()
    gated = gated_workflow(registry, gates)
    async with ff.worker(concurrency=10):
        blocker, others, lock = await start_behind_blocker(
            ff, dsn, gates, gated, [f"v{i}" for i in range(OTHERS)]
        )
        await lock.__aexit__(None, None, None)
        for run_id in [blocker, *others]:
            await wait_for_run_status(ff.pool, run_id, "completed")
    assert [await ff.result(r) for r in others] == [f"v{i}" for i in range(OTHERS)]
    assert of(statements, "checkpoint") == [("checkpoint_step", 1), ("checkpoint_steps", OTHERS)]
    # The runs ended together too: their ends shared a statement.
    finishes = of(statements, "finish")
    assert sum(rows for _, rows in finishes) == 1 + OTHERS
    assert ("finish_runs", 1) not in finishes and any(n == "finish_runs" for n, _ in finishes)


async def test_a_lease_stolen_in_a_batch_refuses_that_runs_checkpoint_only(
    ff: Forgeflow, dsn: str, registry: Registry, statements: Statements
) -> None:
    """A run whose lease was taken is refused alone; the batch's other rows are written."""
    gates = Gates()
    gated = gated_workflow(registry, gates)
    async with ff.worker(concurrency=10):
        blocker, others, lock = await start_behind_blocker(
            ff, dsn, gates, gated, [f"v{i}" for i in range(OTHERS)]
        )
        robbed = others[0]
        await ff.pool.execute(
            "UPDATE forgeflow.workflow_runs SET lease_owner = 'thief' WHERE id = $1", robbed
        )
        await lock.__aexit__(None, None, None)
        for run_id in [blocker, *others[1:]]:
            await wait_for_run_status(ff.pool, run_id, "completed")
    assert of(statements, "checkpoint") == [("checkpoint_step", 1), ("checkpoint_steps", OTHERS)]
    written = await ff.pool.fetch(
        "SELECT run_id FROM forgeflow.workflow_steps WHERE name = 'first' AND run_id = ANY($1)",
        others,
    )
    assert sorted(r[0] for r in written) == sorted(others[1:])
    row = await ff.pool.fetchrow(
        "SELECT status, lease_owner FROM forgeflow.workflow_runs WHERE id = $1", robbed
    )
    assert (row["status"], row["lease_owner"]) == ("running", "thief")


async def test_a_row_refused_for_its_data_fails_only_its_own_step(
    ff: Forgeflow, dsn: str, registry: Registry, statements: Statements
) -> None:
    """A result PostgreSQL cannot store fails its step; the rest of the batch is written."""
    gates = Gates()
    gated = gated_workflow(registry, gates)
    values = ["nul", *[f"v{i}" for i in range(1, OTHERS)]]
    async with ff.worker(concurrency=10):
        blocker, others, lock = await start_behind_blocker(ff, dsn, gates, gated, values)
        await lock.__aexit__(None, None, None)
        assert await wait_for_run_status(ff.pool, others[0], "completed", "failed") == "failed"
        for run_id in [blocker, *others[1:]]:
            await wait_for_run_status(ff.pool, run_id, "completed")
    record = await ff.status(others[0])
    assert record.steps[0].status == "failed"
    assert "cannot be stored" in (record.error or {}).get("message", "")
    assert [await ff.result(r) for r in others[1:]] == values[1:]
    # The batch, refused whole, then each of its rows on its own.
    sent = of(statements, "checkpoint")
    assert sent[:2] == [("checkpoint_step", 1), ("checkpoint_steps", OTHERS)]
    assert sent[2 : 2 + OTHERS] == [("checkpoint_step", 1)] * OTHERS


async def test_an_engine_error_in_a_batch_hands_every_run_of_it_back(
    ff: Forgeflow, dsn: str, registry: Registry, statements: Statements
) -> None:
    """A batch whose connection dies hands each of its runs back; they complete later."""
    gates = Gates()
    gated = gated_workflow(registry, gates)
    async with ff.worker(concurrency=10):
        blocker, others, lock = await start_behind_blocker(
            ff, dsn, gates, gated, [f"v{i}" for i in range(OTHERS)]
        )
        # The batch is held too, by one of its rows, and its backend killed.
        async with step_held(dsn, others[-1]):
            await lock.__aexit__(None, None, None)
            await wait_for_run_status(ff.pool, blocker, "completed")
            pid = await waiting_checkpoint(ff.pool)
            await ff.pool.execute("SELECT pg_terminate_backend($1)", pid)
            await wait_for(lambda: _statement_gone(ff.pool, pid), what="the batch's backend to end")
        for run_id in others:
            await wait_for_run_status(ff.pool, run_id, "completed")
    assert [await ff.result(r) for r in others] == [f"v{i}" for i in range(OTHERS)]
    # Each run executed its step again: the batch's rows were never acknowledged.
    assert all(gates.calls[r] == 2 for r in others)
    assert of(statements, "checkpoint")[:2] == [
        ("checkpoint_step", 1),
        ("checkpoint_steps", OTHERS),
    ]


async def _statement_gone(pool: asyncpg.Pool, pid: int) -> bool:
    return not await pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)


# -- a worker killed while a batch is in flight --------------------------------------------


@pytest.fixture
async def procs(dsn: str, tmp_path: Path) -> AsyncIterator[WorkerProcesses]:
    """Worker processes on the test's database, killed at the end of the test."""
    async with WorkerProcesses(dsn, tmp_path) as started:
        yield started


async def hold_a_batch(
    ff: Forgeflow, dsn: str, worker: WorkerProcess
) -> tuple[asyncpg.Connection, int]:
    """Hold the next checkpoint of a run ``worker`` executes (its row inserted in an open
    transaction) until a batch of checkpoints waits for it; the holding connection (in
    its transaction) and the batch's backend. A lone write caught instead is let go."""
    runs = (
        "SELECT r.id, 's' || (count(s.name) + 1) FROM forgeflow.workflow_runs r"
        " LEFT JOIN forgeflow.workflow_steps s ON s.run_id = r.id"
        " WHERE r.lease_owner = $1 GROUP BY r.id HAVING count(s.name) < 4"
        " ORDER BY random() LIMIT 1"
    )
    blocked = (
        "SELECT CASE WHEN query LIKE '-- checkpoint_step for many%' THEN pid END"
        " FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))"
        " AND (query LIKE '%INSERT INTO forgeflow.workflow_steps%'"
        " OR query LIKE '-- checkpoint_step%')"
    )
    for _ in range(20):
        run_id, step = await wait_for(
            lambda: ff.pool.fetchrow(runs, worker.worker_id), what="a run"
        )
        # Straight to the server: the lock's pid must be the backend that holds it.
        conn = await connect_direct(dsn)
        await conn.execute("BEGIN")
        if await conn.fetchval(HOLD_STEP, run_id, step) is None:
            await conn.close()  # the run went past that step meanwhile: try another
            continue
        lock_pid = conn.get_server_pid()

        async def check(lock_pid: int = lock_pid) -> list[int | None]:
            return [r[0] for r in await ff.pool.fetch(blocked, lock_pid)]

        batch = (await wait_for(check, what="a checkpoint waiting for the lock"))[0]
        if batch is not None:
            return conn, batch
        await conn.close()  # a lone write: let it through and try another run
    raise AssertionError("no batch of checkpoints was caught in flight")


async def test_a_worker_killed_mid_batch_loses_no_acknowledged_checkpoint(
    ff: Forgeflow, dsn: str, procs: WorkerProcesses
) -> None:
    """SIGKILL while a batch is in flight: acknowledged steps never run again, and rows
    the batch committed unacknowledged count as done (their steps do not run twice)."""
    pool = ff.pool
    await create_effects(pool)
    victim = await procs.start(CHAIN, concurrency=20, poll_interval=0.1)
    # Steps of 50 ms keep the runs under way while the test looks for a batch to hold:
    # of instant steps, a worker can finish all 20 runs while it lets a few lone writes by.
    run_ids = [await ff.start(chain, ChainSpec(steps=8, delay=0.05)) for _ in range(20)]
    done = "SELECT count(*) >= $1 FROM public.worker_effects WHERE event = 'done'"
    await wait_for(lambda: pool.fetchval(done, 20), what="the runs under way")
    conn, batch = await hold_a_batch(ff, dsn, victim)
    written = "SELECT count(*) FROM forgeflow.workflow_steps"
    before = await pool.fetchval(written)
    await victim.kill()
    await conn.execute("ROLLBACK")  # the held batch commits now, for a process now gone
    await conn.close()
    await wait_for(lambda: _statement_gone(pool, batch), what="the batch's backend to end")
    # The batch's rows are in although nobody was told: several runs' checkpoints.
    assert await pool.fetchval(written) - before >= 2
    await procs.start(CHAIN, concurrency=20, poll_interval=0.1)
    for run_id in run_ids:
        await wait_for_run_status(pool, run_id, "completed")
    for run_id in run_ids:
        await check_chain(ff, pool, run_id, victim.pid)


async def check_chain(ff: Forgeflow, pool: asyncpg.Pool, run_id: str, dead: int) -> None:
    """Every step's checkpoint names the effect of the attempt that completed it, no
    attempt started after that, and each step the dead worker went past kept its result."""
    record = await ff.status(run_id)
    made = await effects(pool, run_id)
    steps = {s.name: s for s in record.steps}
    assert record.output == [steps[f"s{n}"].result for n in range(1, 9)]
    for name, step in steps.items():
        attempts = [e for e in made if e["step"] == name]
        assert any(e["id"] == step.result and e["event"] == "done" for e in attempts)
        assert not [e for e in attempts if e["event"] == "start" and e["id"] > step.result]
    started_by_dead = {e["step"] for e in made if e["pid"] == dead and e["event"] == "start"}
    for n in range(1, 8):
        if f"s{n + 1}" in started_by_dead:
            # s{n}'s checkpoint was acknowledged (the run went on): it is the dead
            # worker's, and s{n} never ran anywhere else.
            assert {e["pid"] for e in made if e["step"] == f"s{n}"} == {dead}
