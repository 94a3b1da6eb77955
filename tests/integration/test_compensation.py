"""Saga semantics: compensations in reverse on failure, cancel and timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from forgeflow import (
    EndReason,
    Forgeflow,
    Registry,
    StepStatus,
    WorkflowCancelled,
    WorkflowContext,
    WorkflowFailed,
    WorkflowRecord,
    WorkflowStatus,
    workflow,
)
from tests.support import proc_core_workflows as crash
from tests.support.db import create_side_effects, fetch_steps, side_effects
from tests.support.proc_core_driver import kill, spawn, wait_while_alive


def statuses(record: WorkflowRecord) -> dict[str, StepStatus]:
    return {s.name: s.status for s in record.steps}


async def run_to_end(ff: Forgeflow, wf: Any, input: Any = None) -> WorkflowRecord:
    run_id = await ff.start(wf, input)
    await ff.drive(run_id)
    return await ff.status(run_id)


def declined() -> None:
    raise RuntimeError("card declined")


# -- on failure ------------------------------------------------------------------------


async def test_a_failed_step_compensates_completed_steps_in_reverse(
    ff: Forgeflow, registry: Registry
) -> None:
    """Compensations run newest first, each step is marked compensated, the run compensated."""
    undone: list[str] = []

    @workflow(version=1, registry=registry)
    async def saga(ctx: WorkflowContext) -> None:
        await ctx.step("create_user", lambda: "user").compensate(undone.append)
        await ctx.step("billing", lambda: "billing").compensate(undone.append)
        await ctx.step("database", lambda: "database").compensate(undone.append)
        await ctx.step("charge", declined)

    record = await run_to_end(ff, saga)
    assert undone == ["database", "billing", "user"]
    assert statuses(record) == {
        "create_user": StepStatus.COMPENSATED,
        "billing": StepStatus.COMPENSATED,
        "database": StepStatus.COMPENSATED,
        "charge": StepStatus.FAILED,
    }
    assert record.status is WorkflowStatus.COMPENSATED
    assert record.end_reason is EndReason.FAILURE
    assert record.error["step"] == "charge"
    assert "card declined" in record.error["message"]
    by_name = {s.name: s for s in record.steps}
    times = [by_name[n].compensated_at for n in ("database", "billing", "create_user")]
    assert all(t is not None for t in times)
    assert times == sorted(times)  # type: ignore[type-var]


async def test_compensations_follow_completion_order_not_declaration_order(
    ff: Forgeflow, registry: Registry
) -> None:
    """With ctx.parallel, the step that completed last is compensated first."""
    undone: list[str] = []
    first_done = asyncio.Event()

    async def early() -> str:
        first_done.set()
        return "early"

    async def late() -> str:
        await first_done.wait()
        return "late"

    @workflow(version=1, registry=registry)
    async def saga(ctx: WorkflowContext) -> None:
        await ctx.parallel(
            ctx.step("late", late).compensate(undone.append),
            ctx.step("early", early).compensate(undone.append),
        )
        await ctx.step("charge", declined)

    record = await run_to_end(ff, saga)
    assert record.status is WorkflowStatus.COMPENSATED
    assert undone == ["late", "early"]


async def test_a_compensation_receives_its_step_result(ff: Forgeflow, registry: Registry) -> None:
    """The compensation is called with the result its step returned (sync or async)."""
    received: list[Any] = []

    async def refund(charge: dict[str, Any]) -> None:
        received.append(("refund", charge["id"]))

    @workflow(version=1, registry=registry)
    async def saga(ctx: WorkflowContext) -> None:
        await ctx.step("charge", lambda: {"id": "ch_1", "amount": 5}).compensate(refund)
        await ctx.step("user", lambda: 17).compensate(lambda uid: received.append(("user", uid)))
        await ctx.step("ship", declined)

    await run_to_end(ff, saga)
    assert received == [("user", 17), ("refund", "ch_1")]


async def test_steps_without_a_compensation_stay_completed(
    ff: Forgeflow, registry: Registry
) -> None:
    """Only steps that registered a compensation are marked compensated."""

    @workflow(version=1, registry=registry)
    async def saga(ctx: WorkflowContext) -> None:
        await ctx.step("read_only", lambda: 1)
        await ctx.step("write", lambda: 2).compensate(lambda _: None)
        await ctx.step("fail", declined)

    record = await run_to_end(ff, saga)
    assert statuses(record)["read_only"] is StepStatus.COMPLETED
    assert statuses(record)["write"] is StepStatus.COMPENSATED


async def test_a_failure_with_nothing_to_compensate_leaves_the_run_failed(
    ff: Forgeflow, registry: Registry
) -> None:
    """A run that fails before any compensation was registered ends failed, error kept."""

    @workflow(version=1, registry=registry)
    async def saga(ctx: WorkflowContext) -> None:
        await ctx.step("fail", declined)

    with pytest.raises(WorkflowFailed) as caught:
        await ff.run(saga)
    assert caught.value.status == "failed"
    assert caught.value.reason == "failure"
    record = await ff.status(caught.value.run_id)
    assert record.status is WorkflowStatus.FAILED
    assert record.error["type"] == "StepFailed"


async def test_an_exception_in_workflow_code_also_compensates(
    ff: Forgeflow, registry: Registry
) -> None:
    """An error raised by the workflow function itself rolls back like a failed step."""
    undone: list[str] = []

    @workflow(version=1, registry=registry)
    async def saga(ctx: WorkflowContext) -> None:
        await ctx.step("reserve", lambda: "r").compensate(undone.append)
        raise LookupError("inventory missing")

    record = await run_to_end(ff, saga)
    assert undone == ["r"]
    assert record.status is WorkflowStatus.COMPENSATED
    assert record.error == {"type": "LookupError", "message": "inventory missing"}


async def test_a_failing_compensation_leaves_the_run_failed_with_both_errors(
    ff: Forgeflow, registry: Registry
) -> None:
    """The run is failed; its error keeps the step failure and the compensation failure."""
    undone: list[str] = []

    def refund_refused(_: str) -> None:
        raise RuntimeError("refund refused")

    @workflow(version=1, registry=registry)
    async def saga(ctx: WorkflowContext) -> None:
        await ctx.step("user", lambda: "user").compensate(undone.append)
        await ctx.step("charge", lambda: "charge").compensate(refund_refused)
        await ctx.step("ship", declined)

    with pytest.raises(WorkflowFailed) as caught:
        await ff.run(saga)
    record = await ff.status(caught.value.run_id)
    assert record.status is WorkflowStatus.FAILED
    assert "card declined" in record.error["message"]
    assert record.error["compensation_errors"] == [
        {"type": "RuntimeError", "message": "refund refused"}
    ]
    # The other compensations still ran.
    assert undone == ["user"]
    by_name = {s.name: s for s in record.steps}
    assert by_name["user"].status is StepStatus.COMPENSATED
    assert by_name["charge"].status is StepStatus.COMPLETED
    assert by_name["charge"].compensation_error["message"] == "refund refused"


async def test_a_compensation_interrupted_by_a_crash_is_finished_later(dsn: str) -> None:
    """After a crash mid-rollback, finished compensations are not run again; the rest are."""
    await create_side_effects(dsn)
    async with Forgeflow.connect(dsn, registry=crash.registry) as ff:
        run_id = await ff.start(crash.crash_compensation)
        proc = await spawn("drive", dsn, run_id)

        async def undo_b_started() -> bool:
            return (await side_effects(dsn)).get("undo_b", 0) >= 1

        await wait_while_alive(proc, undo_b_started, "the second compensation to start")
        assert await kill(proc) == -9
        mid = await fetch_steps(dsn, run_id)
        assert mid["c"]["status"] == "compensated"
        assert mid["b"]["status"] == "completed"

        await ff.drive(run_id)
        record = await ff.status(run_id)
    counts = await side_effects(dsn)
    assert {k: counts[k] for k in ("a", "b", "c", "charge")} == dict.fromkeys(
        ("a", "b", "c", "charge"), 1
    )
    assert {k: counts[k] for k in ("undo_c", "undo_b", "undo_a")} == {
        "undo_c": 1,
        "undo_b": 2,
        "undo_a": 1,
    }
    assert record.status is WorkflowStatus.COMPENSATED
    assert statuses(record) == {
        "a": StepStatus.COMPENSATED,
        "b": StepStatus.COMPENSATED,
        "c": StepStatus.COMPENSATED,
        "charge": StepStatus.FAILED,
    }


# -- on cancel -------------------------------------------------------------------------


async def test_cancel_compensates_in_reverse_with_reason_cancel(
    ff: Forgeflow, registry: Registry
) -> None:
    """Cancelling a run blocked in a step compensates every completed step in reverse."""
    undone: list[str] = []
    entered = asyncio.Event()
    release = asyncio.Event()
    after: list[str] = []

    async def wait_for_release() -> str:
        entered.set()
        await release.wait()
        return "blocked"

    @workflow(version=1, registry=registry)
    async def saga(ctx: WorkflowContext) -> None:
        await ctx.step("first", lambda: "first").compensate(undone.append)
        await ctx.step("second", lambda: "second").compensate(undone.append)
        await ctx.step("blocked", wait_for_release).compensate(undone.append)
        await ctx.step("never", lambda: after.append("never"))

    run_id = await ff.start(saga)
    async with anyio.create_task_group() as group:
        group.start_soon(ff.drive, run_id)
        await entered.wait()
        cancelled = await ff.cancel(run_id)
        assert cancelled.cancel_requested
        release.set()

    with pytest.raises(WorkflowCancelled) as caught:
        await ff.result(run_id)
    assert caught.value.reason == "cancel"
    record = await ff.status(run_id)
    assert undone == ["blocked", "second", "first"]
    assert after == []
    assert record.status is WorkflowStatus.COMPENSATED
    assert record.end_reason is EndReason.CANCEL
    assert statuses(record) == dict.fromkeys(("first", "second", "blocked"), StepStatus.COMPENSATED)


async def test_cancelling_a_run_that_never_started_runs_no_step(
    ff: Forgeflow, registry: Registry
) -> None:
    """A created run that is cancelled ends compensated (reason cancel) without any step."""
    calls: list[str] = []

    @workflow(version=1, registry=registry)
    async def saga(ctx: WorkflowContext) -> None:
        await ctx.step("work", lambda: calls.append("work"))

    run_id = await ff.start(saga)
    await ff.cancel(run_id)
    await ff.drive(run_id)
    with pytest.raises(WorkflowCancelled):
        await ff.result(run_id)
    record = await ff.status(run_id)
    assert calls == []
    assert record.steps == []
    assert (record.status, record.end_reason) == (WorkflowStatus.COMPENSATED, EndReason.CANCEL)


async def test_cancelling_a_finished_run_changes_nothing(ff: Forgeflow, registry: Registry) -> None:
    """cancel on a completed run leaves it completed with its output."""

    @workflow(version=1, registry=registry)
    async def quick(ctx: WorkflowContext) -> int:
        return await ctx.step("one", lambda: 1)

    run_id = await ff.start(quick)
    await ff.drive(run_id)
    record = await ff.cancel(run_id)
    assert record.status is WorkflowStatus.COMPLETED
    assert not record.cancel_requested
    assert await ff.result(run_id) == 1


# -- on timeout ------------------------------------------------------------------------


async def test_a_workflow_timeout_compensates_with_reason_timeout(
    ff: Forgeflow, registry: Registry
) -> None:
    """A run past its workflow timeout stops its current step and compensates in reverse."""
    undone: list[str] = []
    never = asyncio.Event()

    @workflow(version=1, registry=registry, timeout=0.5)
    async def saga(ctx: WorkflowContext) -> None:
        await ctx.step("reserve", lambda: "reserve").compensate(undone.append)
        await ctx.step("charge", lambda: "charge").compensate(undone.append)
        await ctx.step("wait", never.wait).compensate(lambda _: undone.append("wait"))

    run_id = await ff.start(saga)
    await ff.drive(run_id)
    record = await ff.status(run_id)
    assert record.status is WorkflowStatus.COMPENSATED
    assert undone == ["charge", "reserve"]
    assert record.end_reason is EndReason.TIMEOUT
    assert record.error["type"] == "WorkflowTimeout"
    assert statuses(record) == {
        "reserve": StepStatus.COMPENSATED,
        "charge": StepStatus.COMPENSATED,
    }
    with pytest.raises(WorkflowFailed) as caught:
        await ff.result(run_id)
    assert not isinstance(caught.value, WorkflowCancelled)
    assert caught.value.reason == "timeout"
