"""Engine errors are not workflow failures: real PostgreSQL errors in forgeflow's own writes.

Faults are injected by PostgreSQL itself: a trigger on forgeflow's tables raises the real
error (serialization failure 40001, admin shutdown 57P01) the first time a chosen write
arrives, exactly as the server would under load or while restarting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import anyio
import asyncpg
import pytest

from forgeflow import Forgeflow, Registry, WorkflowContext, WorkflowStatus, workflow
from tests.support.db import connect_direct

FAULTS = """
-- One row per armed fault; `fired` is a sequence, because whatever the trigger writes in
-- the failing statement's transaction is rolled back with it.
CREATE TABLE public.injected_faults (
    target   text PRIMARY KEY,
    sqlstate text NOT NULL,
    times    integer NOT NULL,
    fired    regclass NOT NULL
);

CREATE FUNCTION public.fire_fault(what text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE fault public.injected_faults;
BEGIN
    SELECT * INTO fault FROM public.injected_faults WHERE target = what;
    IF FOUND AND nextval(fault.fired) <= fault.times THEN
        RAISE EXCEPTION 'injected fault on %', what USING ERRCODE = fault.sqlstate;
    END IF;
END $$;

-- The completed checkpoint of a step ("step:NAME").
CREATE FUNCTION public.fail_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'completed' THEN
        PERFORM public.fire_fault('step:' || NEW.name);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER fail_checkpoint BEFORE INSERT OR UPDATE ON forgeflow.workflow_steps
    FOR EACH ROW EXECUTE FUNCTION public.fail_checkpoint();

-- A worker handing a running run back ("release"): its lease cleared, still 'running'.
CREATE FUNCTION public.fail_release() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.lease_owner IS NOT NULL AND NEW.lease_owner IS NULL AND NEW.status = 'running' THEN
        PERFORM public.fire_fault('release');
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER fail_release BEFORE UPDATE ON forgeflow.workflow_runs
    FOR EACH ROW EXECUTE FUNCTION public.fail_release();
"""

SERIALIZATION_FAILURE = "40001"
ADMIN_SHUTDOWN = "57P01"


@pytest.fixture
async def faults(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test database with the fault-injecting triggers installed."""
    conn = await connect_direct(dsn)
    await conn.execute(FAULTS)
    try:
        yield conn
    finally:
        await conn.close()


async def inject(conn: asyncpg.Connection, target: str, sqlstate: str, times: int = 1) -> None:
    """Make the next ``times`` writes of ``target`` fail with ``sqlstate``."""
    sequence = f"public.fault_{len(await conn.fetch('SELECT 1 FROM public.injected_faults'))}"
    await conn.execute(f"CREATE SEQUENCE {sequence}")
    await conn.execute(
        "INSERT INTO public.injected_faults VALUES ($1, $2, $3, $4::regclass)",
        target,
        sqlstate,
        times,
        sequence,
    )


async def left(conn: asyncpg.Connection, target: str) -> int:
    """How many injected faults of ``target`` have not fired yet."""
    fault = await conn.fetchrow(
        "SELECT times, fired::text AS fired FROM public.injected_faults WHERE target = $1",
        target,
    )
    assert fault is not None
    used = await conn.fetchrow(f"SELECT last_value, is_called FROM {fault['fired']}")
    assert used is not None
    fired = used["last_value"] if used["is_called"] else 0
    return max(0, int(fault["times"]) - int(fired))


class Calls:
    """What the steps and compensations of a test's workflow really did, in order."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def step(self, name: str) -> Any:
        def call() -> str:
            self.log.append(name)
            return name

        return call

    def undo(self, result: str) -> None:
        self.log.append(f"undo {result}")


def saga_of(registry: Registry, calls: Calls, *, swallow: bool = False) -> Any:
    """a → b → c, each compensated; with ``swallow``, b sits in a user's except Exception."""

    @workflow(version=1, registry=registry, name="faulty_saga")
    async def faulty_saga(ctx: WorkflowContext) -> str:
        await ctx.step("a", calls.step("a")).compensate(calls.undo)
        try:
            await ctx.step("b", calls.step("b")).compensate(calls.undo)
        except Exception as exc:
            if not swallow:
                raise
            return f"swallowed {type(exc).__name__}"
        await ctx.step("c", calls.step("c")).compensate(calls.undo)
        return "done"

    return faulty_saga


async def test_a_serialization_failure_of_a_checkpoint_is_retried_not_rolled_back(
    ff: Forgeflow, registry: Registry, faults: asyncpg.Connection
) -> None:
    """A 40001 on a checkpoint is retried by the engine: the step ran once, nothing undone."""
    calls = Calls()
    wf = saga_of(registry, calls)
    await inject(faults, "step:b", SERIALIZATION_FAILURE, times=2)
    assert await ff.run(wf) == "done"
    assert await left(faults, "step:b") == 0
    assert calls.log == ["a", "b", "c"]


async def test_an_engine_error_after_a_step_succeeded_hands_the_run_back(
    ff: Forgeflow, registry: Registry, faults: asyncpg.Connection
) -> None:
    """57P01 on b's checkpoint abandons the attempt; the run goes on, nothing compensated."""
    calls = Calls()
    wf = saga_of(registry, calls, swallow=True)
    await inject(faults, "step:b", ADMIN_SHUTDOWN)
    run_id = await ff.start(wf)
    await ff.drive(run_id)
    record = await ff.status(run_id)
    # The user's `except Exception` around b did not see the engine's error, and the
    # step whose checkpoint was lost ran again (at least once), never undone.
    assert (record.status, record.output) == (WorkflowStatus.COMPLETED, "done")
    assert calls.log == ["a", "b", "b", "c"]
    assert record.executions == 2


async def test_a_failed_release_is_retried_so_the_run_does_not_wait_out_its_lease(
    dsn: str, registry: Registry, faults: asyncpg.Connection
) -> None:
    """The hand-back after an engine error is retried; the run goes on long before its lease."""
    calls = Calls()
    wf = saga_of(registry, calls)
    await inject(faults, "step:b", ADMIN_SHUTDOWN)
    await inject(faults, "release", ADMIN_SHUTDOWN, times=2)
    # A lease of an hour: had the release been given up, the run would sit for an hour.
    async with Forgeflow.connect(dsn, registry=registry, lease="1h") as ff:
        run_id = await ff.start(wf)
        async with ff.worker(concurrency=2):
            assert await ff.result(run_id, timeout=60) == "done"
    assert await left(faults, "release") == 0
    assert calls.log == ["a", "b", "b", "c"]


async def test_no_healthy_run_is_rolled_back_under_serializable_isolation(
    dsn: str, registry: Registry
) -> None:
    """With every transaction SERIALIZABLE and runs checkpointing concurrently, all complete."""
    admin = await connect_direct(dsn)
    try:
        name = await admin.fetchval("SELECT current_database()")
        await admin.execute(
            f"ALTER DATABASE \"{name}\" SET default_transaction_isolation = 'serializable'"
        )
    finally:
        await admin.close()
    undone: list[str] = []

    @workflow(version=1, registry=registry)
    async def busy(ctx: WorkflowContext, n: int) -> int:
        total = 0
        for i in range(5):
            total += await ctx.step("add", lambda i=i: i + n).compensate(undone.append).run()
        await ctx.parallel(ctx.step("left", lambda: 1), ctx.step("right", lambda: 2))
        return total

    async with Forgeflow.connect(dsn, registry=registry) as ff:
        isolation = await ff.pool.fetchval("SHOW default_transaction_isolation")
        assert isolation == "serializable"
        ids = [await ff.start(busy, n) for n in range(60)]
        async with ff.worker(concurrency=30):
            outputs = [await ff.result(run_id, timeout=120) for run_id in ids]
    assert outputs == [5 * n + 10 for n in range(60)]
    assert undone == []


async def test_workflow_time_after_parallel_is_the_same_on_replay(
    dsn: str, registry: Registry
) -> None:
    """After ctx.parallel, workflow_time() is the last recorded completion, replayed or not."""
    fast_done = anyio.Event()

    async def slow() -> str:
        # Finishes after `fast` although it comes first in the argument list.
        await fast_done.wait()
        return "slow"

    async def fast() -> str:
        fast_done.set()
        return "fast"

    @workflow(version=1, registry=registry)
    async def timed(ctx: WorkflowContext) -> list[str]:
        await ctx.parallel(ctx.step("slow", slow), ctx.step("fast", fast))
        now = ctx.workflow_time()
        recorded = await ctx.step("note", lambda: now.isoformat()).run()
        await ctx.sleep("1s")  # durable here (threshold 0): the rest runs on a replay
        return [recorded, now.isoformat()]

    async with Forgeflow.connect(dsn, registry=registry, sleep_threshold=0) as ff:
        run_id = await ff.start(timed)
        await ff.drive(run_id)
        record = await ff.status(run_id)
    first_execution, replayed = record.output
    assert record.executions == 2
    assert first_execution == replayed
    slow_done = {s.name: s.completed_at for s in record.steps}["slow"]
    assert slow_done is not None
    assert datetime.fromisoformat(replayed) == slow_done


async def test_a_result_postgresql_refuses_fails_the_step_instead_of_looping(
    ff: Forgeflow, registry: Registry
) -> None:
    """A result jsonb cannot hold (a NUL character) fails its step, naming it: not retried."""
    calls = Calls()

    @workflow(version=1, registry=registry)
    async def nul(ctx: WorkflowContext) -> str:
        await ctx.step("a", calls.step("a")).compensate(calls.undo)
        return await ctx.step("b", lambda: "nul \x00 inside").run()

    run_id = await ff.start(nul)
    await ff.drive(run_id)
    record = await ff.status(run_id)
    assert record.status is WorkflowStatus.COMPENSATED
    assert record.error is not None
    assert record.error["step"] == "b"
    assert "cannot be stored" in record.error["message"]
    assert calls.log == ["a", "undo a"]
    assert record.executions == 1
