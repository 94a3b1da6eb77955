"""Injected step failures and simulated worker crashes."""

from __future__ import annotations

from datetime import timedelta

from forgeflow import StepStatus, WorkflowStatus
from forgeflow.testing import WorkflowTestEnv

from .workflows import onboarding, payment


async def test_failures_within_the_retry_budget_are_retried_on_their_delays(
    forgeflow_env: WorkflowTestEnv, journal: list[str]
) -> None:
    """Two injected failures use two retries, 10 s and 20 s later; the third attempt succeeds."""
    env = forgeflow_env
    start = env.clock.now()
    env.fail_step("charge_card", times=2)
    run_id = await env.start(payment, 40)
    record = await env.run_until_waiting(run_id)
    assert record.wake_at == start + timedelta(seconds=10)

    await env.advance(timedelta(seconds=10))
    assert (await env.client.status(run_id)).wake_at == start + timedelta(seconds=30)
    await env.advance(timedelta(seconds=20))

    assert await env.result(run_id) == "charge-40"
    assert (await env.steps(run_id))[-1] == ("charge_card", StepStatus.COMPLETED, 3, "charge-40")
    # The injected failures are raised before the step's function is called.
    assert journal == ["reserve_funds 40", "charge_card 40"]


async def test_failures_beyond_the_retry_budget_fail_the_step_and_compensate(
    forgeflow_env: WorkflowTestEnv, journal: list[str]
) -> None:
    """Three injected failures exhaust three attempts: the step fails and the hold is released."""
    env = forgeflow_env
    env.fail_step("charge_card", times=3, error=ConnectionError("gateway down"))
    run_id = await env.start(payment, 15)
    await env.advance(timedelta(minutes=1))

    record = await env.client.status(run_id)
    assert record.status is WorkflowStatus.COMPENSATED
    assert "gateway down" in record.error["message"]
    assert (await env.steps(run_id))[-1][:3] == ("charge_card", StepStatus.FAILED, 3)
    assert await env.compensations(run_id) == ["reserve_funds"]
    assert journal == ["reserve_funds 15", "release_funds hold-15"]


async def test_injected_failures_are_used_up_by_the_next_attempts_only(
    forgeflow_env: WorkflowTestEnv, journal: list[str]
) -> None:
    """A failure injected once affects one attempt of one run; the next run is untouched."""
    env = forgeflow_env
    env.fail_step("charge_card")
    first = await env.start(payment, 1)
    await env.advance(timedelta(seconds=10))
    second = await env.start(payment, 2)
    assert await env.result(first) == "charge-1"
    assert await env.result(second) == "charge-2"
    assert (await env.steps(first))[-1].attempts == 2
    assert (await env.steps(second))[-1].attempts == 1


async def test_a_crash_after_a_checkpoint_is_recovered_without_rerunning_the_step(
    forgeflow_env: WorkflowTestEnv, journal: list[str]
) -> None:
    """The worker dies right after send_welcome is saved; another finishes the run, once each."""
    env = forgeflow_env
    env.crash_after("send_welcome")
    run_id = await env.start(onboarding, "ada@example.com")
    assert await env.result(run_id) == "trial-user-ada@example.com"

    assert journal == [
        "create_user ada@example.com",
        "send_welcome ada@example.com",
        "grant_trial user-ada@example.com",
    ]
    record = await env.client.status(run_id)
    assert record.executions == 2
    assert [(s.name, s.attempts) for s in await env.steps(run_id)] == [
        ("create_user", 1),
        ("send_welcome", 1),
        ("grant_trial", 1),
    ]


async def test_a_crash_is_simulated_once_per_request(
    forgeflow_env: WorkflowTestEnv, journal: list[str]
) -> None:
    """crash_after applies to the next checkpoint of that step only; later runs are not crashed."""
    env = forgeflow_env
    env.crash_after("create_user")
    first = await env.start(onboarding, "a@example.com")
    await env.run_until_waiting(first)
    second = await env.start(onboarding, "b@example.com")
    await env.run_until_waiting(second)
    assert (await env.client.status(first)).executions == 2
    assert (await env.client.status(second)).executions == 1
