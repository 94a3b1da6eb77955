"""What a new user meets in the first hour: waits past the deadline, visible running
steps and sleeps, errors that name the mistake."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from forgeflow import (
    ContextClosed,
    Forgeflow,
    Registry,
    StepStatus,
    WorkflowContext,
    WorkflowFailed,
    WorkflowStatus,
    workflow,
)
from forgeflow._journal import Checkpoint
from forgeflow._store import Store
from forgeflow.testing import WorkflowTestEnv


def deadline_warnings(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == "wait_exceeds_deadline"]


async def test_a_hook_timeout_past_the_workflow_deadline_logs_a_warning(
    ff: Forgeflow, registry: Registry
) -> None:
    """A 72 h hook in a 24 h workflow warns at creation, naming the run and the step."""

    @workflow(version=1, timeout="24h", registry=registry)
    async def too_short(ctx: WorkflowContext) -> None:
        await ctx.hook("welcome_call", timeout="72h", on_timeout="approve")
        await ctx.expect_event("paid", timeout="2d")
        await ctx.hook("fits", timeout="1h")

    run_id = await ff.start(too_short)
    with capture_logs() as logs:
        await ff.drive(run_id)
    warnings = deadline_warnings(logs)
    assert [w["step"] for w in warnings] == ["hook:welcome_call", "event:paid"]
    assert warnings[0]["run_id"] == run_id
    assert warnings[0]["workflow"] == "too_short"
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["expires_at"] > warnings[0]["deadline"]
    assert (await ff.status(run_id)).status is WorkflowStatus.COMPLETED


async def test_a_sleep_past_the_deadline_warns_and_one_within_it_does_not(
    dsn: str, registry: Registry
) -> None:
    """Sleeping beyond the deadline warns; a wait that fits, replayed or not, never does."""

    @workflow(version=1, timeout="1h", registry=registry)
    async def sleepy(ctx: WorkflowContext, seconds: float) -> None:
        await ctx.sleep(seconds)

    async with WorkflowTestEnv.connect(dsn, registry=registry) as env:
        with capture_logs() as logs:
            fits = await env.start(sleepy, 60.0)
            too_long = await env.start(sleepy, 7200.0)
            await env.run_until_waiting(fits)
            await env.run_until_waiting(too_long)
            await env.advance("1h")
        assert (await env.client.status(fits)).status is WorkflowStatus.COMPLETED
    assert [w["run_id"] for w in deadline_warnings(logs)] == [too_long]


async def test_a_slow_step_shows_as_running_with_its_attempt_until_it_completes(
    ff: Forgeflow, registry: Registry
) -> None:
    """A step running past the threshold gets a running row; it becomes the current step."""
    release = anyio.Event()

    async def prepare() -> str:
        return "ready"

    async def slow() -> str:
        await release.wait()
        return "done"

    @workflow(version=1, registry=registry)
    async def two_steps(ctx: WorkflowContext) -> str:
        await ctx.step("prepare", prepare).run()
        return await ctx.step("slow", slow).run()

    run_id = await ff.start(two_steps)
    async with anyio.create_task_group() as group:
        group.start_soon(ff.drive, run_id)
        async for record in ff.watch(run_id):
            running = [s for s in record.steps if s.status is StepStatus.RUNNING]
            if running:
                break
        release.set()
    (step,) = running
    assert (step.name, step.attempts, step.completed_at) == ("slow", 1, None)
    assert step.started_at is not None
    assert record.current_step == "slow"
    final = await ff.status(run_id)
    assert [(s.name, s.status) for s in final.steps] == [
        ("prepare", StepStatus.COMPLETED),
        ("slow", StepStatus.COMPLETED),
    ]
    assert final.steps[1].started_at == step.started_at


async def test_a_late_running_marker_never_replaces_a_finished_checkpoint(
    ff: Forgeflow, registry: Registry
) -> None:
    """The checkpoint statement refuses a start marker over completed or skipped rows."""

    @workflow(version=1, registry=registry)
    async def holder(ctx: WorkflowContext) -> None:
        await ctx.step("done", prepare_value).run()
        await ctx.step("skipped", fail).optional().run()
        await (await ctx.hook("wait")).wait()

    run_id = await ff.start(holder)
    worker = "marker-test"
    store = ff._store
    async with anyio.create_task_group() as group:
        group.start_soon(ff.drive, run_id)
        async for record in ff.watch(run_id):
            if record.status is WorkflowStatus.WAITING:
                break
        group.cancel_scope.cancel()
    # Hold the run's lease as a worker would while a marker is still in flight.
    await store.pool.execute(
        "UPDATE forgeflow.workflow_runs SET lease_owner = $2,"
        " lease_expires_at = now() + interval '1 minute' WHERE id = $1",
        run_id,
        worker,
    )
    for name in ("done", "skipped"):
        marker = Checkpoint(name, "step", StepStatus.RUNNING, attempts=2)
        assert await store.checkpoint_step(run_id, worker, marker) is False
    steps = {s.name: s for s in (await ff.status(run_id)).steps}
    assert (steps["done"].status, steps["done"].attempts) == (StepStatus.COMPLETED, 1)
    assert steps["done"].result == "value"
    assert steps["skipped"].status is StepStatus.SKIPPED


def prepare_value() -> str:
    return "value"


def fail() -> None:
    raise KeyError("missing")


async def test_a_durable_sleep_shows_as_waiting_until_its_wake_time(
    dsn: str, registry: Registry
) -> None:
    """Before its wake time a sleep is waiting (and current); after it, completed."""

    @workflow(version=1, registry=registry)
    async def nap(ctx: WorkflowContext) -> None:
        await ctx.sleep("1h")

    async with WorkflowTestEnv.connect(dsn, registry=registry) as env:
        run_id = await env.start(nap)
        record = await env.run_until_waiting(run_id)
        (sleep,) = record.steps
        assert (sleep.status, sleep.completed_at) == (StepStatus.WAITING, None)
        assert sleep.wake_at == record.wake_at
        assert record.current_step == "sleep"
        await env.advance("1h")
        (sleep,) = (await env.client.status(run_id)).steps
        assert (sleep.status, sleep.completed_at) == (StepStatus.COMPLETED, sleep.wake_at)


async def test_runs_and_status_say_when_no_worker_can_take_a_run(
    ff: Forgeflow, registry: Registry
) -> None:
    """A run without a live worker carries the reason in both status and list_runs."""

    @workflow(version=1, registry=registry)
    async def orphan(ctx: WorkflowContext) -> None:
        return None

    run_id = await ff.start(orphan)
    (listed,) = await ff.list_runs()
    for record in (listed, await ff.status(run_id)):
        assert record.wait["kind"] == "no_worker"
        assert "orphan v1" in record.wait["detail"]


# -- errors that name the mistake -------------------------------------------------------


async def test_a_coroutine_given_as_the_step_function_fails_at_the_call_naming_the_step(
    ff: Forgeflow, registry: Registry
) -> None:
    """ctx.step("x", f()) is a TypeError that names the step and says what to write."""

    async def fetch() -> int:
        return 1

    @workflow(version=1, registry=registry)
    async def mistaken(ctx: WorkflowContext) -> Any:
        return await ctx.step("fetch", fetch()).run()  # type: ignore[call-overload]

    with pytest.raises(WorkflowFailed) as failed:
        await ff.run(mistaken)
    assert failed.value.error_type == "TypeError"
    assert "step 'fetch'" in failed.value.error["message"]
    assert "ctx.step('fetch', f, *args)" in failed.value.error["message"]


async def test_a_step_runner_never_run_is_reported(ff: Forgeflow, registry: Registry) -> None:
    """A step created but never awaited logs step_never_run with its run and name."""

    @workflow(version=1, registry=registry)
    async def forgetful(ctx: WorkflowContext) -> None:
        ctx.step("forgotten", prepare_value)
        await ctx.step("kept", prepare_value)

    with capture_logs() as logs:
        run_id = await ff.start(forgetful)
        await ff.drive(run_id)
    never = [e for e in logs if e["event"] == "step_never_run"]
    assert [(e["step"], e["run_id"], e["log_level"]) for e in never] == [
        ("forgotten", run_id, "warning")
    ]


async def test_the_exception_type_of_a_failed_workflow_is_kept(
    ff: Forgeflow, registry: Registry
) -> None:
    """A KeyError in a step or in the workflow code is recorded as KeyError."""

    @workflow(version=1, registry=registry)
    async def in_step(ctx: WorkflowContext) -> None:
        await ctx.step("lookup", fail).run()

    @workflow(version=1, registry=registry)
    async def in_code(ctx: WorkflowContext) -> None:
        empty: dict[str, int] = {}
        empty["missing"]

    for wf in (in_step, in_code):
        run_id = await ff.start(wf)
        await ff.drive(run_id)
        error = (await ff.status(run_id)).error
        assert error.get("error_type", error["type"]) == "KeyError"
        with pytest.raises(WorkflowFailed) as failed:
            await ff.result(run_id)
        assert failed.value.error_type == "KeyError"


async def test_a_context_used_after_its_run_ended_raises_a_forgeflow_error(
    ff: Forgeflow, registry: Registry
) -> None:
    """A kept ctx fails with ContextClosed, never with an asyncpg error."""
    kept: list[WorkflowContext] = []

    @workflow(version=1, registry=registry)
    async def keeper(ctx: WorkflowContext) -> None:
        kept.append(ctx)

    await ff.run(keeper)
    ctx = kept[0]
    with pytest.raises(ContextClosed, match="after its execution ended"):
        await ctx.step("late", prepare_value).run()
    with pytest.raises(ContextClosed):
        ctx.db()
    with pytest.raises(ContextClosed):
        await ctx.sleep(1)


async def test_fast_steps_write_one_checkpoint_each_and_nothing_else(
    ff: Forgeflow, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Showing slow steps as running adds no statement to steps that finish in time."""
    calls: list[str] = []
    original = Store.checkpoint_step

    async def counted(self: Store, run_id: str, worker: str, c: Checkpoint) -> bool | None:
        calls.append(c.status.value)
        return await original(self, run_id, worker, c)

    monkeypatch.setattr(Store, "checkpoint_step", counted)

    @workflow(version=1, registry=registry)
    async def quick(ctx: WorkflowContext) -> int:
        return sum([await ctx.step("s", prepare_number, i).run() for i in range(20)])

    assert await ff.run(quick) == sum(range(20))
    assert calls == ["completed"] * 20


def prepare_number(i: int) -> int:
    return i
