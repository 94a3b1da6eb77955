"""Schedules under the testing toolkit: env.advance fires them in time order, on time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from forgeflow import Registry, WorkflowContext, workflow
from forgeflow.testing import ManualClock, WorkflowTestEnv


async def fired(env: WorkflowTestEnv, name: str) -> list[datetime]:
    """The fire times of the runs a schedule started, in order."""
    rows = await env.client.pool.fetch(
        "SELECT scheduled_at FROM forgeflow.workflow_runs WHERE schedule = $1"
        " ORDER BY scheduled_at",
        name,
    )
    return [r["scheduled_at"] for r in rows]


async def test_a_week_of_a_decorator_schedule_every_15_minutes_gives_672_runs(
    dsn: str,
) -> None:
    """A decorator */15 schedule advanced through a week starts 672 runs, each completed."""
    registry = Registry()
    seen: list[datetime] = []

    @workflow(version=1, registry=registry, schedule="*/15 * * * *")
    async def sync_accounts(ctx: WorkflowContext) -> None:
        assert ctx.scheduled_at is not None
        seen.append(ctx.scheduled_at)

    start = datetime(2024, 6, 3, 0, 0, 1, tzinfo=UTC)
    async with WorkflowTestEnv.connect(dsn, registry=registry, clock=ManualClock(start)) as env:
        await env.advance(timedelta(days=7))
        times = await fired(env, "sync_accounts")
        statuses = await env.client.pool.fetch(
            "SELECT DISTINCT status FROM forgeflow.workflow_runs"
        )
    expected = [start.replace(second=0) + timedelta(minutes=15 * i) for i in range(1, 673)]
    assert times == expected
    assert sorted(seen) == expected
    assert [r["status"] for r in statuses] == ["completed"]


async def test_stored_and_decorator_schedules_fire_interleaved_in_time_order(
    dsn: str,
) -> None:
    """Two schedules, one declared and one stored, run in the order of their fire times."""
    registry = Registry()
    order: list[str] = []

    @workflow(version=1, registry=registry, schedule="0 * * * *")
    async def hourly(ctx: WorkflowContext) -> None:
        assert ctx.scheduled_at is not None
        order.append(f"hourly {ctx.scheduled_at:%H:%M}")

    @workflow(version=1, registry=registry)
    async def report(ctx: WorkflowContext, input: str = "eu") -> None:
        assert ctx.scheduled_at is not None
        order.append(f"{input} {ctx.scheduled_at:%H:%M}")

    start = datetime(2024, 6, 3, 0, 0, 1, tzinfo=UTC)
    async with WorkflowTestEnv.connect(dsn, registry=registry, clock=ManualClock(start)) as env:
        await env.client.schedule("us", report, cron="30 */2 * * *", input="us")
        await env.advance(timedelta(hours=3))
    assert order == [
        "us 00:30",
        "hourly 01:00",
        "hourly 02:00",
        "us 02:30",
        "hourly 03:00",
    ]


async def test_a_europe_paris_schedule_fires_at_the_documented_times_across_dst(
    dsn: str,
) -> None:
    """02:30 daily in Paris: 03:00 on the spring-forward day, once on the fall-back day."""
    registry = Registry()

    @workflow(version=1, registry=registry)
    async def nightly(ctx: WorkflowContext) -> None:
        return None

    paris = ZoneInfo("Europe/Paris")
    start = datetime(2024, 3, 29, 12, 0, tzinfo=UTC)
    async with WorkflowTestEnv.connect(dsn, registry=registry, clock=ManualClock(start)) as env:
        await env.client.schedule("n", nightly, cron="30 2 * * *", timezone="Europe/Paris")
        await env.client.schedule("h", nightly, cron="0 * * * *", timezone="Europe/Paris")
        await env.advance(timedelta(days=3))
        spring = await fired(env, "n")
        hourly = await fired(env, "h")
        env.clock.set(datetime(2024, 10, 25, 12, 0, tzinfo=UTC))
        await env.client.pool.execute("DELETE FROM forgeflow.schedules")
        await env.client.schedule("n", nightly, cron="30 2 * * *", timezone="Europe/Paris")
        await env.advance(timedelta(days=3))
        autumn = await fired(env, "n")
    local = [t.astimezone(paris).isoformat() for t in spring]
    assert local == [
        "2024-03-30T02:30:00+01:00",
        "2024-03-31T03:00:00+02:00",  # 02:30 does not exist that night: right after the gap
        "2024-04-01T02:30:00+02:00",
    ]
    # Hour by hour the schedule follows real time: 23 runs on the 23-hour day.
    march_31 = [t for t in hourly if t.astimezone(paris).date().isoformat() == "2024-03-31"]
    assert len(march_31) == 23
    assert [t.astimezone(paris).isoformat() for t in autumn[-3:]] == [
        "2024-10-26T02:30:00+02:00",
        "2024-10-27T02:30:00+02:00",  # 02:30 happens twice that night: it fires once
        "2024-10-28T02:30:00+01:00",
    ]
