"""The client: start, idempotency, input validation, status, list_runs, result,
lifecycle listeners and structured logs."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest
import structlog
from pydantic import BaseModel

from forgeflow import (
    EndReason,
    Forgeflow,
    IdempotencyConflict,
    InputValidationError,
    LifecycleEvent,
    Registry,
    ResultTimeout,
    RunNotFound,
    StepStatus,
    WorkflowCancelled,
    WorkflowContext,
    WorkflowDefinition,
    WorkflowFailed,
    WorkflowNotFound,
    WorkflowStatus,
    workflow,
)
from tests.support.db import count_rows, fetch_run


class Signup(BaseModel):
    """A typed workflow input."""

    email: str
    seats: int


class Account(BaseModel):
    """A typed workflow output."""

    email: str
    seats: int


def signup_workflow(
    registry: Registry, calls: list[str] | None = None
) -> WorkflowDefinition[Any, Account]:
    @workflow(version=1, registry=registry, name="signup")
    async def signup(ctx: WorkflowContext, input: Signup) -> Account:
        if calls is not None:
            calls.append(input.email)
        seats = await ctx.step("seats", lambda: input.seats * 2)
        return Account(email=input.email, seats=seats)

    return signup


# -- start -----------------------------------------------------------------------------


async def test_start_writes_a_created_run_without_running_user_code(
    ff: Forgeflow, registry: Registry
) -> None:
    """start stores the validated input and returns; the workflow function is not called."""
    calls: list[str] = []
    signup = signup_workflow(registry, calls)
    run_id = await ff.start(signup, {"email": "ada@example.com", "seats": "3"})
    record = await ff.status(run_id)
    assert calls == []
    assert record.status is WorkflowStatus.CREATED
    assert (record.workflow, record.version, record.queue) == ("signup", 1, "default")
    assert record.input == {"email": "ada@example.com", "seats": 3}
    assert record.steps == []


async def test_a_typed_input_and_output_round_trip(ff: Forgeflow, registry: Registry) -> None:
    """ff.run validates the input into its model and returns the output as its model."""
    signup = signup_workflow(registry)
    output = await ff.run(signup, Signup(email="ada@example.com", seats=2))
    assert output == Account(email="ada@example.com", seats=4)


async def test_the_same_idempotency_key_returns_the_same_run(
    ff: Forgeflow, registry: Registry
) -> None:
    """Starting twice with one idempotency_key gives one run id and writes one row."""
    signup = signup_workflow(registry)
    payload = {"email": "ada@example.com", "seats": 1}
    first = await ff.start(signup, payload, idempotency_key="order-17")
    second = await ff.start(signup, payload, idempotency_key="order-17")
    other = await ff.start(signup, payload, idempotency_key="order-18")
    assert first == second != other
    assert (
        await count_rows(ff.pool, "forgeflow.workflow_runs", "idempotency_key = $1", "order-17")
        == 1
    )
    assert await count_rows(ff.pool, "forgeflow.workflow_runs") == 2


async def test_an_idempotency_key_of_another_workflow_raises_idempotency_conflict(
    ff: Forgeflow, registry: Registry
) -> None:
    """A key already used by a run of another workflow is refused; its own workflow reuses it."""
    signup = signup_workflow(registry)

    @workflow(version=1, registry=registry, name="invoice")
    async def invoice(ctx: WorkflowContext, input: Signup) -> None:
        return None

    payload = {"email": "ada@example.com", "seats": 1}
    first = await ff.start(signup, payload, idempotency_key="order-17")
    with pytest.raises(IdempotencyConflict) as caught:
        # A dict for a model input is validated at run time; type checkers want the model.
        await ff.start(invoice, payload, idempotency_key="order-17")  # type: ignore[misc]
    assert "order-17" in caught.value.message and "signup" in caught.value.message
    with pytest.raises(IdempotencyConflict):
        await ff.start("invoice", payload, idempotency_key="order-17")
    assert await ff.start("signup", payload, idempotency_key="order-17") == first
    assert await count_rows(ff.pool, "forgeflow.workflow_runs") == 1


async def test_concurrent_starts_with_one_idempotency_key_create_one_run(
    ff: Forgeflow, registry: Registry
) -> None:
    """Racing starts with the same key all get the id of the single run written."""
    signup = signup_workflow(registry)
    payload = {"email": "ada@example.com", "seats": 1}
    ids = await asyncio.gather(*(ff.start(signup, payload, idempotency_key="k") for _ in range(8)))
    assert len(set(ids)) == 1
    assert await count_rows(ff.pool, "forgeflow.workflow_runs") == 1


async def test_bad_input_raises_input_validation_error_naming_the_field(
    ff: Forgeflow, registry: Registry
) -> None:
    """Invalid input fails at start with the offending field named, and writes nothing."""
    signup = signup_workflow(registry)
    with pytest.raises(InputValidationError) as caught:
        await ff.start(signup, {"email": "ada@example.com", "seats": "many"})
    assert "seats" in str(caught.value)
    assert caught.value.errors[0]["loc"] == ["seats"]
    assert isinstance(caught.value, ValueError)
    with pytest.raises(InputValidationError, match="email: Field required"):
        await ff.start("signup", {"seats": 1})
    assert await count_rows(ff.pool, "forgeflow.workflow_runs") == 0


async def test_starting_by_name_uses_the_latest_non_deprecated_version(
    ff: Forgeflow, registry: Registry
) -> None:
    """start("name") picks the newest live version; version= picks an exact one."""

    @workflow(version=1, registry=registry, name="pricing")
    async def v1(ctx: WorkflowContext) -> str:
        return "v1"

    @workflow(version=2, registry=registry, name="pricing")
    async def v2(ctx: WorkflowContext) -> str:
        return "v2"

    @workflow(version=3, registry=registry, name="pricing", deprecated=True)
    async def v3(ctx: WorkflowContext) -> str:
        return "v3"

    assert await ff.run("pricing") == "v2"
    assert await ff.run("pricing", version=1) == "v1"
    assert await ff.run("pricing", version=3) == "v3"
    with pytest.raises(WorkflowNotFound):
        await ff.start("no_such_workflow")


async def test_a_run_replays_on_the_version_it_started_with(
    ff: Forgeflow, registry: Registry
) -> None:
    """A run started on v1 is executed by v1 even after v2 is registered."""

    @workflow(version=1, registry=registry, name="versioned")
    async def v1(ctx: WorkflowContext) -> str:
        return "v1"

    run_id = await ff.start("versioned")

    @workflow(version=2, registry=registry, name="versioned")
    async def v2(ctx: WorkflowContext) -> str:
        return "v2"

    await ff.drive(run_id)
    assert await ff.result(run_id) == "v1"
    assert (await ff.status(run_id)).version == 1


# -- status and list_runs --------------------------------------------------------------


async def test_status_returns_the_run_with_its_steps(ff: Forgeflow, registry: Registry) -> None:
    """status gives the run's fields and each step's status, result, attempts and times."""

    @workflow(version=1, registry=registry)
    async def two_steps(ctx: WorkflowContext, n: int) -> int:
        a = await ctx.step("double", lambda: n * 2)
        b = await ctx.step("label", lambda: {"value": a})
        return int(b["value"]) + 1

    run_id = await ff.start(two_steps, 5)
    await ff.drive(run_id)
    record = await ff.status(run_id)
    assert record.run_id == run_id
    assert (record.status, record.input, record.output) == (WorkflowStatus.COMPLETED, 5, 11)
    assert record.error is None and record.end_reason is None
    assert record.created_at <= record.started_at <= record.completed_at  # type: ignore[operator]
    assert [(s.name, s.status, s.result, s.attempts) for s in record.steps] == [
        ("double", StepStatus.COMPLETED, 10, 1),
        ("label", StepStatus.COMPLETED, {"value": 10}, 1),
    ]
    assert all(isinstance(s.completed_at, datetime) for s in record.steps)
    assert record.is_terminal


async def test_status_of_an_unknown_run_raises_run_not_found(ff: Forgeflow) -> None:
    """status, result and cancel of an id no run has raise RunNotFound."""
    with pytest.raises(RunNotFound):
        await ff.status("no-such-run")
    with pytest.raises(RunNotFound):
        await ff.result("no-such-run")
    with pytest.raises(RunNotFound):
        await ff.cancel("no-such-run")


async def test_list_runs_filters_by_status_and_workflow_newest_first(
    ff: Forgeflow, registry: Registry
) -> None:
    """list_runs returns runs newest first, narrowed by status, workflow and limit."""

    @workflow(version=1, registry=registry)
    async def alpha(ctx: WorkflowContext) -> None:
        return None

    @workflow(version=1, registry=registry)
    async def beta(ctx: WorkflowContext) -> None:
        return None

    done_alpha = await ff.start(alpha)
    await ff.drive(done_alpha)
    waiting_alpha = await ff.start(alpha)
    waiting_beta = await ff.start(beta)

    everything = await ff.list_runs()
    assert [r.run_id for r in everything] == [waiting_beta, waiting_alpha, done_alpha]
    assert [r.run_id for r in await ff.list_runs(status="created")] == [waiting_beta, waiting_alpha]
    assert [r.run_id for r in await ff.list_runs(status=WorkflowStatus.COMPLETED)] == [done_alpha]
    assert [r.run_id for r in await ff.list_runs(workflow="alpha")] == [waiting_alpha, done_alpha]
    assert [r.run_id for r in await ff.list_runs(workflow="alpha", status="created")] == [
        waiting_alpha
    ]
    assert [r.run_id for r in await ff.list_runs(limit=1)] == [waiting_beta]
    assert await ff.list_runs(workflow="gamma") == []
    with pytest.raises(ValueError):
        await ff.list_runs(status="sleeping")


# -- result ----------------------------------------------------------------------------


async def test_result_raises_workflow_failed_for_a_failed_run(
    ff: Forgeflow, registry: Registry
) -> None:
    """result of a failed run raises WorkflowFailed carrying its status, reason and error."""

    def broken() -> None:
        raise ValueError("bad data")

    @workflow(version=1, registry=registry)
    async def failing(ctx: WorkflowContext) -> None:
        await ctx.step("broken", broken)

    run_id = await ff.start(failing)
    await ff.drive(run_id)
    with pytest.raises(WorkflowFailed) as caught:
        await ff.result(run_id)
    error = caught.value
    assert not isinstance(error, WorkflowCancelled)
    assert (error.run_id, error.status, error.reason) == (run_id, "failed", "failure")
    assert error.error["step"] == "broken"
    assert "bad data" in str(error)


async def test_result_raises_workflow_cancelled_for_a_cancelled_run(
    ff: Forgeflow, registry: Registry
) -> None:
    """result of a cancelled run raises WorkflowCancelled (a WorkflowFailed)."""

    @workflow(version=1, registry=registry)
    async def idle(ctx: WorkflowContext) -> None:
        return None

    run_id = await ff.start(idle)
    await ff.cancel(run_id)
    await ff.drive(run_id)
    with pytest.raises(WorkflowCancelled) as caught:
        await ff.result(run_id)
    assert isinstance(caught.value, WorkflowFailed)
    assert (caught.value.status, caught.value.reason) == ("compensated", "cancel")


async def test_result_waits_for_a_run_executed_elsewhere(ff: Forgeflow, registry: Registry) -> None:
    """result blocks until another task finishes the run, then returns its output."""
    go = asyncio.Event()

    @workflow(version=1, registry=registry)
    async def gated(ctx: WorkflowContext) -> str:
        await ctx.step("gate", go.wait)
        return "through"

    run_id = await ff.start(gated)
    waiter = asyncio.create_task(ff.result(run_id))
    driver = asyncio.create_task(ff.drive(run_id))
    go.set()
    assert await waiter == "through"
    await driver


async def test_result_with_a_timeout_raises_result_timeout(
    ff: Forgeflow, registry: Registry
) -> None:
    """result(timeout=) on a run nobody executes raises ResultTimeout (a TimeoutError)."""

    @workflow(version=1, registry=registry)
    async def idle(ctx: WorkflowContext) -> None:
        return None

    run_id = await ff.start(idle)
    with pytest.raises(ResultTimeout):
        await ff.result(run_id, timeout="10ms")


# -- listeners and logs ----------------------------------------------------------------


def saga(registry: Registry) -> WorkflowDefinition[Any, Any]:
    def declined() -> None:
        raise RuntimeError("declined")

    @workflow(version=1, registry=registry, name="listened")
    async def listened(ctx: WorkflowContext, fail: bool) -> str:
        await ctx.step("reserve", lambda: "r").compensate(lambda _: None)
        ctx.log.info("between_steps", note="custom")
        if fail:
            await ctx.step("charge", declined)
        return "ok"

    return listened


async def test_listeners_receive_the_lifecycle_events_of_a_run(
    dsn: str, registry: Registry
) -> None:
    """Sync and async listeners get run_started, step events, compensation_ran, run_finished."""
    sync_seen: list[LifecycleEvent] = []
    async_seen: list[str] = []

    async def async_listener(event: LifecycleEvent) -> None:
        async_seen.append(event.name)

    wf = saga(registry)
    async with Forgeflow.connect(
        dsn, registry=registry, listeners=[sync_seen.append, async_listener]
    ) as ff:
        ok_id = await ff.start(wf, False)
        await ff.drive(ok_id)
        failed_id = await ff.start(wf, True)
        await ff.drive(failed_id)

    ok = [e.name for e in sync_seen if e.run_id == ok_id]
    failed = [e for e in sync_seen if e.run_id == failed_id]
    assert ok == ["run_started", "step_completed", "run_finished"]
    assert [e.name for e in failed] == [
        "run_started",
        "step_completed",
        "step_failed",
        "compensation_ran",
        "run_finished",
    ]
    assert async_seen == ok + [e.name for e in failed]
    assert all(e.workflow == "listened" for e in sync_seen)
    assert failed[1].fields["step"] == "reserve"
    assert failed[2].fields["step"] == "charge"
    assert failed[4].fields["status"] == "compensated"


async def test_a_failing_listener_does_not_break_the_run(dsn: str, registry: Registry) -> None:
    """A listener that raises is logged as listener_failed and the run still completes."""
    later: list[str] = []

    def broken(event: LifecycleEvent) -> None:
        raise RuntimeError("listener bug")

    wf = saga(registry)
    with structlog.testing.capture_logs() as logs:
        async with Forgeflow.connect(
            dsn, registry=registry, listeners=[broken, lambda e: later.append(e.name)]
        ) as ff:
            assert await ff.run(wf, False) == "ok"
    assert later == ["run_started", "step_completed", "run_finished"]
    assert any(entry["event"] == "listener_failed" for entry in logs)


async def test_cancel_emits_run_cancelled(dsn: str, registry: Registry) -> None:
    """A cancelled run emits run_cancelled before its run_finished."""
    seen: list[str] = []

    @workflow(version=1, registry=registry)
    async def idle(ctx: WorkflowContext) -> None:
        await ctx.step("never", lambda: None)

    async with Forgeflow.connect(
        dsn, registry=registry, listeners=[lambda e: seen.append(e.name)]
    ) as ff:
        run_id = await ff.start(idle)
        await ff.cancel(run_id)
        await ff.drive(run_id)
    assert seen[-2:] == ["run_cancelled", "run_finished"]


async def test_structlog_events_carry_run_workflow_and_step(
    ff: Forgeflow, registry: Registry
) -> None:
    """Every lifecycle log has run_id and workflow bound, step events name their step."""
    wf = saga(registry)
    with structlog.testing.capture_logs() as logs:
        run_id = await ff.start(wf, True)
        await ff.drive(run_id)
    events = {entry["event"]: entry for entry in logs if entry.get("run_id") == run_id}
    for name in (
        "run_started",
        "step_completed",
        "step_failed",
        "compensation_ran",
        "run_finished",
        "between_steps",
    ):
        assert events[name]["workflow"] == "listened", name
    assert events["step_completed"]["step"] == "reserve"
    assert events["step_failed"]["step"] == "charge"
    assert events["compensation_ran"]["step"] == "reserve"
    assert events["run_finished"]["status"] == "compensated"
    assert events["run_finished"]["reason"] == EndReason.FAILURE
    assert events["between_steps"]["note"] == "custom"


async def test_status_reflects_a_run_in_progress(
    ff: Forgeflow, registry: Registry, dsn: str
) -> None:
    """While a step runs, status shows the run running and the earlier step completed."""
    entered = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        entered.set()
        await release.wait()

    @workflow(version=1, registry=registry)
    async def slow(ctx: WorkflowContext) -> None:
        await ctx.step("first", lambda: 1)
        await ctx.step("hold", hold)

    run_id = await ff.start(slow)
    driver = asyncio.create_task(ff.drive(run_id))
    await entered.wait()
    record = await ff.status(run_id)
    release.set()
    await driver
    assert record.status is WorkflowStatus.RUNNING
    assert record.worker is not None
    assert [(s.name, s.status) for s in record.steps] == [("first", StepStatus.COMPLETED)]
    row = await fetch_run(dsn, run_id)
    assert row is not None and row["status"] == "completed" and row["lease_owner"] is None
