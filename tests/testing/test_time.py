"""Moving engine time: long sleeps, timers of every kind, in order, at their exact time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from forgeflow import EndReason, ResultTimeout, WorkflowStatus
from forgeflow.testing import WorkflowTestEnv

from .workflows import Timer, hourly_ticks, one_timer, renewal_reminder, short_deadline


async def test_a_seven_day_sleep_until_ends_at_its_date(
    forgeflow_env: WorkflowTestEnv, journal: list[str]
) -> None:
    """sleep_until a week ahead wakes exactly at that date, not a moment before."""
    env = forgeflow_env
    due = env.clock.now() + timedelta(days=7)
    run_id = await env.start(renewal_reminder, due)
    record = await env.run_until_waiting(run_id)
    assert record.wake_at == due

    await env.advance(timedelta(days=6, hours=23, minutes=59))
    assert journal == []
    await env.advance(timedelta(minutes=1))
    assert await env.result(run_id) == due.isoformat()
    assert journal == [f"remind at {due.isoformat()}"]


async def test_one_advance_fires_every_kind_of_timer_in_time_order(
    forgeflow_env: WorkflowTestEnv, journal: list[str]
) -> None:
    """Sleep, retry delay, hook and event timeouts and a deadline fire in order, each on time."""
    env = forgeflow_env
    start = env.clock.now()
    env.fail_step("flaky", times=1)
    timers = [
        Timer(label="sleep-3h", kind="sleep", minutes=180),
        Timer(label="hook-1h", kind="hook", minutes=60),
        Timer(label="event-2h", kind="event", minutes=120),
        Timer(label="retry-90m", kind="retry", minutes=90),
    ]
    runs = [await env.start(one_timer, t) for t in timers]
    deadline_run = await env.start(short_deadline, "deadline-4h")
    for run_id in [*runs, deadline_run]:
        assert (await env.run_until_waiting(run_id)).status is WorkflowStatus.WAITING

    await env.advance(timedelta(hours=5))

    def at(minutes: int) -> str:
        return (start + timedelta(minutes=minutes)).isoformat()

    assert journal == [
        "hook-1h " + at(60),
        "retry-90m attempt",
        "retry-90m " + at(90),
        "event-2h " + at(120),
        "sleep-3h " + at(180),
        "deadline-4h rolled back",
    ]
    assert env.clock.now() == start + timedelta(hours=5)
    deadline = await env.client.status(deadline_run)
    assert deadline.status is WorkflowStatus.COMPENSATED
    assert deadline.end_reason is EndReason.TIMEOUT
    assert deadline.completed_at == start + timedelta(hours=4)


async def test_one_advance_fires_a_runs_successive_sleeps_in_order(
    forgeflow_env: WorkflowTestEnv, journal: list[str]
) -> None:
    """A run that sleeps an hour three times over wakes at +1 h, +2 h and +3 h in one advance."""
    env = forgeflow_env
    start = env.clock.now()
    run_id = await env.start(hourly_ticks, 3)
    await env.advance(timedelta(hours=3))
    assert await env.result(run_id) == 3
    assert journal == [f"tick {(start + timedelta(hours=h)).isoformat()}" for h in (1, 2, 3)]
    ticks = await env.steps(run_id)
    assert [s.name for s in ticks] == ["tick", "tick#2", "tick#3"]


async def test_time_stands_still_until_advanced(
    forgeflow_env: WorkflowTestEnv, journal: list[str]
) -> None:
    """Without an advance, a sleeping run stays waiting however long the test takes."""
    env = forgeflow_env
    run_id = await env.start(hourly_ticks, 1)
    before = env.clock.now()
    await env.run_until_waiting(run_id)
    await env.settle()
    assert env.clock.now() == before
    assert (await env.client.status(run_id)).status is WorkflowStatus.WAITING
    with pytest.raises(ResultTimeout, match="advance the clock"):
        await env.result(run_id)
    assert journal == []


async def test_advance_to_refuses_to_go_back(forgeflow_env: WorkflowTestEnv) -> None:
    """Engine time never goes backwards: advance_to a past time is a ValueError."""
    env = forgeflow_env
    with pytest.raises(ValueError, match="before the clock"):
        await env.advance_to(env.clock.now() - timedelta(seconds=1))
