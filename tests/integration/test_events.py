"""Events: runs wait for an outside system's message and wake on a matching one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
import pytest

from forgeflow import (
    EventTimeout,
    Forgeflow,
    Registry,
    WorkflowContext,
    WorkflowDefinition,
    WorkflowStatus,
    workflow,
)
from tests.support.waits_time import ShiftedClock, advance, clocked_client, until

Clocked = tuple[Forgeflow, ShiftedClock]


@pytest.fixture
async def clocked(dsn: str, registry: Registry) -> AsyncIterator[Clocked]:
    """A client with a movable engine clock."""
    async with clocked_client(dsn, registry) as pair:
        yield pair


def is_waiting(record: Any) -> bool:
    return bool(record.status is WorkflowStatus.WAITING)


def payment_workflow(registry: Registry) -> WorkflowDefinition[dict[str, Any], Any]:
    """Waits for "payment.confirmed" whose payload contains the given match."""

    @workflow(version=1, timeout="30d", registry=registry)
    async def await_payment(ctx: WorkflowContext, match: dict[str, Any]) -> Any:
        return await ctx.wait_for_event("payment.confirmed", match=match, timeout="7d")

    return await_payment


async def test_an_event_wakes_exactly_the_runs_whose_match_it_contains(
    clocked: Clocked, registry: Registry
) -> None:
    """send_event resumes every run whose match is contained in the payload, and no other."""
    ff, _ = clocked
    flow = payment_workflow(registry)
    order_a = await ff.start(flow, {"order_id": "A"})
    order_a_too = await ff.start(flow, {"order_id": "A", "customer": {"id": 7}})
    order_a_eur = await ff.start(flow, {"order_id": "A", "currency": "EUR"})
    order_b = await ff.start(flow, {"order_id": "B"})
    payload = {"order_id": "A", "currency": "USD", "customer": {"id": 7, "name": "Ann"}}
    async with ff.worker(concurrency=4):
        for run_id in (order_a, order_a_too, order_a_eur, order_b):
            await until(ff, run_id, is_waiting)
        assert await ff.send_event("refund.issued", payload) == 0
        assert await ff.send_event("payment.confirmed", payload) == 2
        assert await ff.result(order_a, timeout=30) == payload
        assert await ff.result(order_a_too, timeout=30) == payload
        for run_id in (order_a_eur, order_b):
            assert (await ff.status(run_id)).status is WorkflowStatus.WAITING
        assert await ff.send_event("payment.confirmed", payload) == 0  # each wait takes one
        assert await ff.send_event("payment.confirmed", {"order_id": "B", "amount": 5}) == 1
        assert await ff.result(order_b, timeout=30) == {"order_id": "B", "amount": 5}
    assert (await ff.status(order_a_eur)).status is WorkflowStatus.WAITING


async def test_an_empty_match_accepts_any_event_of_the_type(
    clocked: Clocked, registry: Registry
) -> None:
    """A wait without match is woken by the next event of its type."""
    ff, _ = clocked

    @workflow(version=1, timeout="30d", registry=registry)
    async def any_deploy(ctx: WorkflowContext, _: None) -> Any:
        return await ctx.wait_for_event("deploy.finished")

    run_id = await ff.start(any_deploy)
    async with ff.worker(concurrency=1):
        await until(ff, run_id, is_waiting)
        assert await ff.send_event("deploy.finished", {"service": "api"}) == 1
        assert await ff.result(run_id, timeout=30) == {"service": "api"}


async def test_an_event_timeout_raises_event_timeout_in_the_workflow(
    clocked: Clocked, registry: Registry
) -> None:
    """With no matching event before the timeout, wait_for_event raises EventTimeout."""
    ff, clock = clocked

    @workflow(version=1, timeout="30d", registry=registry)
    async def confirm_or_cancel(ctx: WorkflowContext, order: str) -> str:
        try:
            await ctx.wait_for_event("payment.confirmed", match={"order_id": order}, timeout="2d")
        except EventTimeout:
            return await ctx.step("cancel_order", lambda: f"cancelled {order}")
        return "paid"

    run_id = await ff.start(confirm_or_cancel, "A")
    async with ff.worker(concurrency=1):
        await until(ff, run_id, is_waiting)
        await advance(ff, clock, timedelta(days=2, seconds=1))
        assert await ff.result(run_id, timeout=30) == "cancelled A"
        # The wait is closed: a late event finds nobody.
        assert await ff.send_event("payment.confirmed", {"order_id": "A"}) == 0


async def test_an_event_sent_after_interest_was_declared_is_kept_for_the_wait(
    clocked: Clocked, registry: Registry
) -> None:
    """An event arriving between expect_event() and wait() is returned by wait() at once."""
    ff, _ = clocked
    charging, sent = anyio.Event(), anyio.Event()

    async def charge() -> str:
        charging.set()
        await sent.wait()
        return "charged"

    @workflow(version=1, timeout="30d", registry=registry)
    async def pay(ctx: WorkflowContext, order: str) -> Any:
        confirmation = await ctx.expect_event("payment.confirmed", match={"order_id": order})
        await ctx.step("charge", charge)
        return await confirmation.wait()

    run_id = await ff.start(pay, "A")
    async with ff.worker(concurrency=1):
        with anyio.fail_after(30):
            await charging.wait()
        assert await ff.send_event("payment.confirmed", {"order_id": "A", "ok": True}) == 1
        sent.set()
        assert await ff.result(run_id, timeout=30) == {"order_id": "A", "ok": True}
    assert (await ff.status(run_id)).executions == 1  # it never had to suspend


async def test_an_event_sent_before_any_interest_is_not_delivered(
    clocked: Clocked, registry: Registry
) -> None:
    """An event sent before the run declared interest is dropped; the run waits for the next."""
    ff, _ = clocked
    preparing, sent = anyio.Event(), anyio.Event()

    async def prepare() -> None:
        preparing.set()
        await sent.wait()

    @workflow(version=1, timeout="30d", registry=registry)
    async def late_listener(ctx: WorkflowContext, order: str) -> Any:
        await ctx.step("prepare", prepare)
        return await ctx.wait_for_event("payment.confirmed", match={"order_id": order})

    run_id = await ff.start(late_listener, "A")
    async with ff.worker(concurrency=1):
        with anyio.fail_after(30):
            await preparing.wait()
        assert await ff.send_event("payment.confirmed", {"order_id": "A", "n": 1}) == 0
        sent.set()
        await until(ff, run_id, is_waiting)
        assert await ff.send_event("payment.confirmed", {"order_id": "A", "n": 2}) == 1
        assert await ff.result(run_id, timeout=30) == {"order_id": "A", "n": 2}


async def test_an_unhandled_event_timeout_rolls_the_run_back(
    clocked: Clocked, registry: Registry
) -> None:
    """EventTimeout not caught by the workflow fails it and runs its compensations."""
    ff, clock = clocked
    undone: list[str] = []

    @workflow(version=1, timeout="30d", registry=registry)
    async def reserve_then_wait(ctx: WorkflowContext, _: None) -> Any:
        await ctx.step("reserve", lambda: "seat-1").compensate(undone.append)
        return await ctx.wait_for_event("payment.confirmed", timeout="1h")

    run_id = await ff.start(reserve_then_wait)
    async with ff.worker(concurrency=1):
        await until(ff, run_id, is_waiting)
        await advance(ff, clock, timedelta(hours=2))
        record = await until(ff, run_id, lambda r: r.is_terminal)
    assert record.status is WorkflowStatus.COMPENSATED
    assert record.error["type"] == "EventTimeout"
    assert undone == ["seat-1"]


async def test_a_cancelled_run_no_longer_counts_as_waiting_for_an_event(
    clocked: Clocked, registry: Registry
) -> None:
    """After a waiting run is cancelled, send_event neither wakes nor counts it."""
    ff, _ = clocked
    flow = payment_workflow(registry)
    cancelled, waiting = await ff.start(flow, {"order_id": "A"}), await ff.start(flow, {})
    async with ff.worker(concurrency=2):
        await until(ff, cancelled, is_waiting)
        await until(ff, waiting, is_waiting)
        await ff.cancel(cancelled)
        await until(ff, cancelled, lambda r: r.is_terminal)
        assert await ff.send_event("payment.confirmed", {"order_id": "A"}) == 1
        assert await ff.result(waiting, timeout=30) == {"order_id": "A"}


async def test_one_event_fills_every_matching_wait_of_a_run_and_counts_the_run_once(
    clocked: Clocked, registry: Registry
) -> None:
    """Two declared waits that both match get the payload; send_event counts one run."""
    ff, _ = clocked

    @workflow(version=1, timeout="30d", registry=registry)
    async def two_waits(ctx: WorkflowContext, _: None) -> list[Any]:
        by_order = await ctx.expect_event("payment.confirmed", match={"order_id": "A"})
        by_customer = await ctx.expect_event("payment.confirmed", match={"customer": 7})
        return [await by_order.wait(), await by_customer.wait()]

    run_id = await ff.start(two_waits)
    payload = {"order_id": "A", "customer": 7}
    async with ff.worker(concurrency=1):
        await until(ff, run_id, is_waiting)
        assert await ff.send_event("payment.confirmed", payload) == 1
        assert await ff.result(run_id, timeout=30) == [payload, payload]


async def test_an_event_wait_never_waited_on_closes_when_its_run_completes(
    clocked: Clocked, registry: Registry
) -> None:
    """A run that completes with an event wait still open no longer counts for that event,
    in process and through a worker alike."""
    ff, _ = clocked

    @workflow(version=1, timeout="30d", registry=registry)
    async def declared_only(ctx: WorkflowContext, _: None) -> str:
        await ctx.expect_event("payment.confirmed", match={"order_id": "B"})
        return "done"

    assert await ff.run(declared_only) == "done"
    run_id = await ff.start(declared_only)
    async with ff.worker(concurrency=1):
        assert await ff.result(run_id, timeout=30) == "done"
    assert await ff.send_event("payment.confirmed", {"order_id": "B"}) == 0
