"""The fixed cost of a run, in statements: what a 3-step run sends from start to result.

Every statement forgeflow sends goes through ``Store._call``; the tests count them there,
by name, so that any statement added to a run's lifecycle shows up here.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from forgeflow import Forgeflow, Queue, Registry, WorkflowContext, workflow
from forgeflow._store import Store

# Statements a worker sends whether or not it executes anything (start-up, heartbeats,
# the scheduler): not part of a run's cost.
_SERVICE = {
    "register_worker",
    "worker_heartbeat",
    "unregister_worker",
    "limited_queues",
    "declare_queue",
    "due_schedules",
    "next_schedule_fire",
    "forget_declared_schedules",
    "heartbeat",
}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the statements sent from now on, in order."""
    names: list[str] = []
    original = Store._call

    async def counted(self: Store, method: str, name: str, *args: Any) -> Any:
        names.append(name)
        return await original(self, method, name, *args)

    monkeypatch.setattr(Store, "_call", counted)
    return names


async def add_one(n: int) -> int:
    return n + 1


def three_steps(registry: Registry) -> Any:
    @workflow(version=1, name="three_steps", registry=registry)
    async def flow(ctx: WorkflowContext, n: int) -> int:
        a = await ctx.step("one", add_one, n)
        b = await ctx.step("two", add_one, a)
        return await ctx.step("three", add_one, b)

    return flow


async def test_a_run_executed_in_process_costs_its_steps_and_two_statements(
    ff: Forgeflow, registry: Registry, sent: list[str]
) -> None:
    """ff.run: the start (already leased), one checkpoint per step, the finish. Nothing else:
    no claim, no replay read of a run that has no checkpoint, no read of the outcome."""
    flow = three_steps(registry)
    assert await ff.run(flow, 1) == 4
    assert sent == ["insert_claimed_run", *["checkpoint_step"] * 3, "finish_run_alone"]
    # The outcome returned is the stored one.
    sent.clear()
    assert (await ff.status((await ff.list_runs())[0].run_id)).output == 4


async def test_a_run_started_and_awaited_through_a_worker_sends_seven_statements(
    ff: Forgeflow, registry: Registry, sent: list[str]
) -> None:
    """start + an idle worker + result: the start, one claim, the steps, the finish and one
    read of the run, when its end is announced (the client listens: it started the worker).
    The worker reads when it should look again only when its claim found nothing."""
    flow = three_steps(registry)
    runs = 5
    async with ff.worker(concurrency=4, poll_interval="1h"):
        # A first run settles the worker's start-up (its first looks for work may race
        # with the first start); from then on it is idle between runs.
        assert await ff.result(await ff.start(flow, 0), timeout=60) == 3
        sent.clear()
        for i in range(runs):
            assert await ff.result(await ff.start(flow, i), timeout=60) == i + 3
    counts = Counter(name for name in sent if name not in _SERVICE)
    per_run = {
        "insert_run": 1,
        "claim_runs": 1,
        "checkpoint_step": 3,
        "finish_run_alone": 1,
        "get_run": 1,
    }
    expected = Counter({name: n * runs for name, n in per_run.items()})
    # A look or two for work left over from the start-up (its wake-ups may still be in
    # flight when the first run ends, more so on a slow link), and none per run: five
    # runs each looking again would exceed this.
    expected.update({"claim_runs": 2, "next_runnable_at": 2})
    assert counts <= expected, counts - expected


async def test_a_run_of_a_limited_queue_is_claimed_without_a_replay_read(
    ff: Forgeflow, registry: Registry, sent: list[str]
) -> None:
    """The limited claim says, as the plain one does, that a fresh run has no checkpoint:
    its first step follows the claim without reading the run's checkpoints."""

    @workflow(
        version=1,
        name="limited_steps",
        queue=Queue("limited", concurrency=5, rate="100/s"),
        registry=registry,
    )
    async def flow(ctx: WorkflowContext, n: int) -> int:
        return await ctx.step("one", add_one, n)

    async with ff.worker(concurrency=4, poll_interval="1h"):
        for i in range(3):
            assert await ff.result(await ff.start(flow, i), timeout=60) == i + 1
    assert "claim_limited_runs" in sent
    assert "claim_runs" not in sent
    assert "load_replay" not in sent
