"""Child workflows: a parent starts runs of its own and waits for them without a worker."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from forgeflow import (
    ChildWorkflowFailed,
    Forgeflow,
    Registry,
    WorkflowContext,
    WorkflowFailed,
    WorkflowStatus,
    workflow,
)
from tests.support.waits_time import until


def is_waiting(record: Any) -> bool:
    return bool(record.status is WorkflowStatus.WAITING)


async def test_run_child_returns_the_child_output(ff: Forgeflow, registry: Registry) -> None:
    """run_child starts the child as its own run and returns its output to the parent."""

    @workflow(version=1, registry=registry)
    async def square(ctx: WorkflowContext, n: int) -> int:
        return await ctx.step("square", lambda: n * n)

    @workflow(version=1, registry=registry)
    async def sum_of_squares(ctx: WorkflowContext, numbers: list[int]) -> int:
        total = 0
        for n in numbers:
            total += await ctx.run_child(square, n)
        return total

    run_id = await ff.start(sum_of_squares, [1, 2, 3])
    async with ff.worker(concurrency=2):
        assert await ff.result(run_id, timeout=30) == 14
    children = [r for r in await ff.list_runs(workflow="square") if r.parent_run_id == run_id]
    assert len(children) == 3
    assert all(r.status is WorkflowStatus.COMPLETED for r in children)


async def test_a_waiting_parent_holds_no_worker_slot(ff: Forgeflow, registry: Registry) -> None:
    """While its child runs, the parent is waiting and the only worker slot runs the child."""
    observed: list[tuple[WorkflowStatus, int]] = []
    parent_id = ""

    async def look() -> str:
        observed.append(((await ff.status(parent_id)).status, worker.active))
        return "child done"

    @workflow(version=1, registry=registry)
    async def child(ctx: WorkflowContext, _: None) -> str:
        return await ctx.step("look", look)

    @workflow(version=1, registry=registry)
    async def parent(ctx: WorkflowContext, _: None) -> str:
        handle = await ctx.start_child(child)
        return await handle.result()

    parent_id = await ff.start(parent)
    async with ff.worker(concurrency=1) as worker:
        assert await ff.result(parent_id, timeout=30) == "child done"
    assert observed == [(WorkflowStatus.WAITING, 1)]


async def test_a_child_failure_reaches_the_parent_as_an_exception_it_can_catch(
    ff: Forgeflow, registry: Registry
) -> None:
    """A failed or rolled-back child raises ChildWorkflowFailed in the parent."""
    undone: list[str] = []

    def boom() -> None:
        raise RuntimeError("card declined")

    @workflow(version=1, registry=registry)
    async def charge(ctx: WorkflowContext, compensate: bool) -> None:
        if compensate:
            await ctx.step("hold", lambda: "hold-1").compensate(undone.append)
        await ctx.step("charge", boom)

    @workflow(version=1, registry=registry)
    async def checkout(ctx: WorkflowContext, compensate: bool) -> dict[str, Any]:
        handle = await ctx.start_child(charge, compensate)
        try:
            await handle.result()
        except ChildWorkflowFailed as exc:
            return {"child": exc.run_id == handle.run_id, "status": exc.status, "message": str(exc)}
        return {"status": "completed"}

    plain, rolled_back = await ff.start(checkout, False), await ff.start(checkout, True)
    async with ff.worker(concurrency=2):
        first = await ff.result(plain, timeout=30)
        second = await ff.result(rolled_back, timeout=30)
    assert first["child"] and first["status"] == "failed"
    assert "card declined" in first["message"]
    assert second["child"] and second["status"] == "compensated"
    assert undone == ["hold-1"]


async def test_an_uncaught_child_failure_fails_the_parent(
    ff: Forgeflow, registry: Registry
) -> None:
    """A parent that does not catch ChildWorkflowFailed is rolled back with that error."""
    undone: list[str] = []

    def boom() -> None:
        raise RuntimeError("out of stock")

    @workflow(version=1, registry=registry)
    async def pick(ctx: WorkflowContext, _: None) -> None:
        await ctx.step("pick", boom)

    @workflow(version=1, registry=registry)
    async def fulfil(ctx: WorkflowContext, _: None) -> None:
        await ctx.step("reserve", lambda: "r-1").compensate(undone.append)
        await ctx.run_child(pick)

    run_id = await ff.start(fulfil)
    async with ff.worker(concurrency=1):
        record = await until(ff, run_id, lambda r: r.is_terminal)
    assert record.status is WorkflowStatus.COMPENSATED
    assert record.error["type"] == "ChildWorkflowFailed"
    assert undone == ["r-1"]


async def test_cancelling_a_parent_cancels_its_attached_children_but_not_detached_ones(
    ff: Forgeflow, registry: Registry
) -> None:
    """cancel compensates the attached child first, then the parent; a detached child carries on."""
    undone: list[str] = []

    @workflow(version=1, registry=registry)
    async def ship(ctx: WorkflowContext, order: str) -> str:
        await ctx.step("book_courier", lambda: f"courier-{order}").compensate(undone.append)
        await ctx.wait_for_event("parcel.delivered", match={"order": order})
        return "delivered"

    @workflow(version=1, registry=registry)
    async def audit(ctx: WorkflowContext, order: str) -> str:
        await ctx.step("open_file", lambda: f"audit-{order}").compensate(undone.append)
        await ctx.wait_for_event("audit.closed", match={"order": order})
        return "audited"

    @workflow(version=1, registry=registry)
    async def order_flow(ctx: WorkflowContext, order: str) -> str:
        await ctx.step("reserve", lambda: f"stock-{order}").compensate(undone.append)
        await ctx.start_child(audit, order, detached=True)
        shipping = await ctx.start_child(ship, order)
        return await shipping.result()

    parent_id = await ff.start(order_flow, "o1")
    async with ff.worker(concurrency=3):
        await until(ff, parent_id, is_waiting)
        children = {r.workflow: r for r in await ff.list_runs() if r.parent_run_id == parent_id}
        ship_id, audit_id = children["ship"].run_id, children["audit"].run_id
        assert children["audit"].detached and not children["ship"].detached
        await until(ff, ship_id, is_waiting)
        await until(ff, audit_id, is_waiting)
        await ff.cancel(parent_id)
        parent = await until(ff, parent_id, lambda r: r.is_terminal)
        shipped = await until(ff, ship_id, lambda r: r.is_terminal)
        assert (await ff.status(audit_id)).status is WorkflowStatus.WAITING
        assert await ff.send_event("audit.closed", {"order": "o1"}) == 1
        assert await ff.result(audit_id, timeout=30) == "audited"
    assert parent.status is WorkflowStatus.COMPENSATED and parent.end_reason == "cancel"
    assert shipped.status is WorkflowStatus.COMPENSATED and shipped.end_reason == "cancel"
    assert undone == ["courier-o1", "stock-o1"]


async def test_replaying_the_parent_does_not_start_its_children_again(
    ff: Forgeflow, registry: Registry
) -> None:
    """A parent that resumes several times still has exactly one run per start_child."""

    @workflow(version=1, registry=registry)
    async def leaf(ctx: WorkflowContext, n: int) -> int:
        return await ctx.step("n", lambda: n)

    @workflow(version=1, registry=registry)
    async def tree(ctx: WorkflowContext, _: None) -> list[int]:
        first = await ctx.start_child(leaf, 1)
        second = await ctx.start_child(leaf, 2)
        return [await first.result(), await second.result()]

    run_id = await ff.start(tree)
    async with ff.worker(concurrency=1):
        assert await ff.result(run_id, timeout=30) == [1, 2]
    assert (await ff.status(run_id)).executions >= 2
    leaves = await ff.list_runs(workflow="leaf")
    assert sorted(r.input for r in leaves) == [1, 2]


async def test_run_executes_the_children_its_run_waits_for_without_a_worker(
    ff: Forgeflow, registry: Registry
) -> None:
    """ff.run alone completes a parent that runs and starts children: it executes them too."""

    @workflow(version=1, registry=registry)
    async def square(ctx: WorkflowContext, n: int) -> int:
        return await ctx.step("square", lambda: n * n).run()

    @workflow(version=1, registry=registry)
    async def sum_of_squares(ctx: WorkflowContext, n: int) -> int:
        first = await ctx.run_child(square, n)
        second = await ctx.start_child(square, n + 1)
        return first + await second.result()

    with anyio.fail_after(30):
        assert await ff.run(sum_of_squares, 3) == 9 + 16


@pytest.mark.parametrize("ending", ["failure", "timeout"])
async def test_whatever_ends_a_parent_rolls_back_its_attached_children_first(
    ff: Forgeflow, registry: Registry, ending: str
) -> None:
    """A parent that fails or times out cancels its attached children, which are rolled
    back before its own compensations run; a detached child is left alone."""
    undone: list[str] = []
    reserved = anyio.Event()

    async def reserve(name: str) -> str:
        if name == "attached":
            reserved.set()
        return name

    @workflow(version=1, registry=registry)
    async def child(ctx: WorkflowContext, name: str) -> None:
        await ctx.step("reserve", reserve, name).compensate(lambda n: undone.append(f"child {n}"))
        await ctx.wait_for_event("never", {"name": name})

    @workflow(version=1, registry=registry, timeout="3s" if ending == "timeout" else "1h")
    async def parent(ctx: WorkflowContext, _: None) -> None:
        await ctx.step("open", lambda: "parent").compensate(lambda n: undone.append(n))
        attached = await ctx.start_child(child, "attached")
        await ctx.start_child(child, "detached", detached=True)
        # The parent ends only once the attached child has something to roll back.
        await ctx.step("child_reserved", reserved.wait)
        if ending == "failure":
            await ctx.step("explode", _explode)
        await attached.result()  # waits until the deadline passes

    run_id = await ff.start(parent)
    async with ff.worker(concurrency=4):
        with pytest.raises(WorkflowFailed):
            await ff.result(run_id, timeout=30)
        kids = {
            r.input: r for r in await ff.list_runs(workflow="child") if r.parent_run_id == run_id
        }
        assert kids["attached"].status is WorkflowStatus.COMPENSATED
        assert kids["detached"].status is WorkflowStatus.WAITING
    record = await ff.status(run_id)
    assert (record.status, record.end_reason) == (WorkflowStatus.COMPENSATED, ending)
    assert undone == ["child attached", "parent"]


def _explode() -> None:
    raise RuntimeError("card declined")
