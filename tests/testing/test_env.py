"""The env with children, events and cancels, and what it leaves behind."""

from __future__ import annotations

from datetime import timedelta

import pytest

from forgeflow import (
    ConfigurationError,
    Forgeflow,
    Registry,
    WorkflowCancelled,
    WorkflowContext,
    WorkflowStatus,
    workflow,
)
from forgeflow._context import WorkflowContext as EngineContext
from forgeflow.testing import WorkflowTestEnv

from .workflows import onboarding, order_flow


async def test_a_child_workflow_runs_and_its_timer_is_fired_with_the_parents(
    forgeflow_env: WorkflowTestEnv, journal: list[str]
) -> None:
    """The parent waits on its child; one advance fires the child's sleep and wakes the parent."""
    env = forgeflow_env
    run_id = await env.start(order_flow, "o-1")
    assert (await env.run_until_waiting(run_id)).wait["kind"] == "child"
    await env.advance(timedelta(hours=2))
    record = await env.client.status(run_id)
    assert record.status is WorkflowStatus.WAITING
    assert record.wait["kind"] == "event"
    assert journal == ["ship o-1"]


async def test_send_event_wakes_the_matching_run(
    forgeflow_env: WorkflowTestEnv, journal: list[str]
) -> None:
    """env.send_event delivers the event and lets the woken run finish."""
    env = forgeflow_env
    run_id = await env.start(order_flow, "o-2")
    await env.advance(timedelta(hours=2))
    assert await env.send_event("payment.received", {"order": "o-2", "amount": 30}) == 1
    assert await env.result(run_id) == "shipment-o-2 paid 30"


async def test_cancel_compensates_a_waiting_run(
    forgeflow_env: WorkflowTestEnv, journal: list[str]
) -> None:
    """env.cancel rolls a waiting run back through its compensations."""
    env = forgeflow_env
    run_id = await env.start(order_flow, "o-3")
    await env.advance(timedelta(hours=2))
    record = await env.cancel(run_id)
    assert record.status is WorkflowStatus.COMPENSATED
    assert await env.compensations(run_id) == ["book_shipment"]
    assert journal[-1] == "cancel_shipment shipment-o-3"
    with pytest.raises(WorkflowCancelled):
        await env.result(run_id)


async def test_the_event_timeout_fails_the_run_after_a_day(
    forgeflow_env: WorkflowTestEnv, journal: list[str]
) -> None:
    """No payment within a day of shipping: the event wait times out and the shipment is undone."""
    env = forgeflow_env
    run_id = await env.start(order_flow, "o-4")
    await env.advance(timedelta(hours=2, days=1))
    assert (await env.client.status(run_id)).status is WorkflowStatus.COMPENSATED
    assert journal == ["ship o-4", "cancel_shipment shipment-o-4"]


async def test_a_run_the_env_cannot_execute_is_reported(forgeflow_env: WorkflowTestEnv) -> None:
    """A run of a workflow outside the env's registry makes run_until_waiting fail, not hang."""
    elsewhere = Registry()

    @workflow(version=1, name="testing_elsewhere", registry=elsewhere)
    async def stranger(ctx: WorkflowContext) -> None:
        return None

    run_id = await forgeflow_env.client.start(stranger)
    with pytest.raises(ConfigurationError, match="testing_elsewhere v1"):
        await forgeflow_env.run_until_waiting(run_id)


async def test_the_env_hands_its_client_back_untouched(forgeflow_client: Forgeflow) -> None:
    """Once the env ends, the client builds plain contexts: no injected failure outlives it."""
    async with WorkflowTestEnv(forgeflow_client) as env:
        assert env.client._executor.context_class is not EngineContext
        env.fail_step("create_user")
    assert forgeflow_client._executor.context_class is EngineContext
    assert await forgeflow_client.run(onboarding, "lin@example.com") == "trial-user-lin@example.com"
