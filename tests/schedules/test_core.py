"""Stored schedules through the client: create, list, pause, resume, delete, trigger."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from pydantic import BaseModel

from forgeflow import (
    Forgeflow,
    Registry,
    ScheduleNotFound,
    WorkflowContext,
    WorkflowStatus,
    workflow,
)
from forgeflow._schedules import Scheduler
from forgeflow.testing import ManualClock
from tests.support.db import connect_direct

START = datetime(2024, 6, 3, 8, 0, 30, tzinfo=UTC)  # a Monday, 30 s after a full minute


class Report(BaseModel):
    """A report's input."""

    region: str


def define(registry: Registry) -> tuple[object, object]:
    """A workflow taking a required input and one without an input."""

    @workflow(version=1, registry=registry)
    async def report(ctx: WorkflowContext, input: Report) -> str:
        assert ctx.scheduled_at is not None
        return f"{input.region}@{ctx.scheduled_at.isoformat()}"

    @workflow(version=1, registry=registry)
    async def tick(ctx: WorkflowContext) -> str | None:
        return None if ctx.scheduled_at is None else ctx.scheduled_at.isoformat()

    return report, tick


async def count_runs(dsn: str, schedule: str | None = None) -> int:
    """How many runs a schedule (or any schedule) started."""
    conn = await connect_direct(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM forgeflow.workflow_runs WHERE schedule IS NOT NULL"
                " AND ($1::text IS NULL OR schedule = $1)",
                schedule,
            )
        )
    finally:
        await conn.close()


@pytest.fixture
async def client(dsn: str, registry: Registry) -> asyncpg.Pool:
    """A client on a ManualClock standing at START."""
    async with Forgeflow.connect(dsn, registry=registry, clock=ManualClock(START)) as ff:
        yield ff


async def test_a_stored_schedule_is_listed_with_its_next_fire_time_in_utc(
    client: Forgeflow, registry: Registry
) -> None:
    """schedule() stores the schedule; list_schedules shows its next fire time in UTC."""
    report, _ = define(registry)
    record = await client.schedule(
        "eu-report",
        report,  # type: ignore[arg-type]
        cron="0 9 * * MON-FRI",
        input={"region": "eu"},
        timezone="Europe/Paris",
    )
    # 08:00:30 UTC is 10:00:30 in Paris: the next 09:00 there is on Tuesday, 07:00 UTC.
    assert record.next_fire_at == datetime(2024, 6, 4, 7, 0, tzinfo=UTC)
    [listed] = await client.list_schedules()
    assert (listed.name, listed.workflow, listed.cron, listed.timezone) == (
        "eu-report",
        "report",
        "0 9 * * MON-FRI",
        "Europe/Paris",
    )
    assert (listed.catchup, listed.paused, listed.last_run_id) == ("latest", False, None)
    assert listed.input == {"region": "eu"}


async def test_scheduling_again_by_name_updates_the_schedule(
    client: Forgeflow, registry: Registry
) -> None:
    """A second schedule() with the same name updates it; there is still one schedule."""
    report, _ = define(registry)
    await client.schedule("r", report, cron="0 9 * * *", input={"region": "eu"})  # type: ignore[arg-type]
    await client.schedule("r", report, cron="30 10 * * *", input={"region": "us"})  # type: ignore[arg-type]
    [listed] = await client.list_schedules()
    assert (listed.cron, listed.input) == ("30 10 * * *", {"region": "us"})
    assert listed.next_fire_at == datetime(2024, 6, 3, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * * *"}, "cron"),
        ({"cron": "* * * * * *"}, "cron"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"cron": "* * * * *", "catchup": "some"}, "catchup"),
    ],
)
async def test_bad_schedule_options_raise_value_error_naming_the_field(
    client: Forgeflow, registry: Registry, options: dict[str, str], field: str
) -> None:
    """An invalid cron, time zone or catch-up raises ValueError naming it; nothing is written."""
    _, tick = define(registry)
    with pytest.raises(ValueError, match=rf"^{field}: "):
        await client.schedule("bad", tick, **options)  # type: ignore[arg-type]
    assert await client.list_schedules() == []


async def test_a_workflow_input_without_default_needs_input(
    client: Forgeflow, registry: Registry
) -> None:
    """Scheduling a workflow whose input has no default without input= names `input`."""
    report, _ = define(registry)
    with pytest.raises(ValueError, match=r"^input: "):
        await client.schedule("r", report, cron="* * * * *")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="region"):
        await client.schedule("r", report, cron="* * * * *", input={"x": 1})  # type: ignore[arg-type]
    assert await client.list_schedules() == []


def test_a_bad_decorator_schedule_fails_at_decoration() -> None:
    """@workflow(schedule=...) validates the cron, time zone and input default at once."""
    registry = Registry()
    with pytest.raises(ValueError, match=r"^cron: "):

        @workflow(version=1, registry=registry, schedule="every minute")
        async def a(ctx: WorkflowContext) -> None: ...

    with pytest.raises(ValueError, match=r"^timezone: "):

        @workflow(version=1, registry=registry, schedule="* * * * *", timezone="Nowhere")
        async def b(ctx: WorkflowContext) -> None: ...

    with pytest.raises(ValueError, match=r"^input: "):

        @workflow(version=1, registry=registry, schedule="* * * * *")
        async def c(ctx: WorkflowContext, input: Report) -> None: ...

    assert len(registry) == 0


async def test_unknown_schedule_names_raise_schedule_not_found(client: Forgeflow) -> None:
    """pause, resume, delete and trigger of an unknown name raise ScheduleNotFound."""
    for op in (
        client.pause_schedule,
        client.resume_schedule,
        client.delete_schedule,
        client.trigger_schedule,
    ):
        with pytest.raises(ScheduleNotFound):
            await op("nope")


async def test_trigger_starts_one_run_whose_scheduled_at_is_the_trigger_time(
    client: Forgeflow, registry: Registry
) -> None:
    """trigger_schedule starts a run now; its ctx.scheduled_at is the trigger time."""
    report, _ = define(registry)
    await client.schedule("r", report, cron="0 9 * * *", input={"region": "eu"})  # type: ignore[arg-type]
    run_id = await client.trigger_schedule("r")
    await client.drive(run_id)
    assert await client.result(run_id) == f"eu@{START.isoformat()}"
    record = await client.status(run_id)
    assert (record.schedule, record.scheduled_at) == ("r", START)
    [listed] = await client.list_schedules()
    assert (listed.last_run_id, listed.last_run_status) == (run_id, WorkflowStatus.COMPLETED)


async def test_a_plain_run_has_no_scheduled_at(client: Forgeflow, registry: Registry) -> None:
    """ctx.scheduled_at is None for a run no schedule started."""
    _, tick = define(registry)
    assert await client.run(tick) is None  # type: ignore[call-overload]


async def test_two_schedulers_deciding_at_once_start_one_run_per_fire_time(
    dsn: str, registry: Registry
) -> None:
    """Eight schedulers handling the same due fire time at the same instant start one run."""
    _, tick = define(registry)
    clock = ManualClock(START)
    async with Forgeflow.connect(dsn, registry=registry, clock=clock) as ff:
        await ff.schedule("t", tick, cron="* * * * *", catchup="all")  # type: ignore[arg-type]
        clock.set(START + timedelta(seconds=35))  # 08:01:05: 08:01 is due, on time
        schedulers = [Scheduler(ff.runtime) for _ in range(8)]
        started = await asyncio.gather(*(s.fire_due() for s in schedulers))
    assert sorted(len(s) for s in started) == [0] * 7 + [1]
    assert await count_runs(dsn, "t") == 1


async def test_a_fire_time_handled_again_cannot_start_a_second_run(
    dsn: str, registry: Registry
) -> None:
    """Resetting a schedule to a fire time already handled starts nothing: the key is taken."""
    _, tick = define(registry)
    clock = ManualClock(START)
    async with Forgeflow.connect(dsn, registry=registry, clock=clock) as ff:
        await ff.schedule("t", tick, cron="* * * * *")  # type: ignore[arg-type]
        clock.set(START + timedelta(seconds=35))
        scheduler = Scheduler(ff.runtime)
        assert len(await scheduler.fire_due()) == 1
        # As if a worker had decided on 08:01 and died before moving the schedule on.
        await ff.pool.execute(
            "UPDATE forgeflow.schedules SET next_fire_at = $1", START + timedelta(seconds=30)
        )
        assert await scheduler.fire_due() == []
        with pytest.raises(asyncpg.UniqueViolationError):
            await ff.pool.execute(
                "INSERT INTO forgeflow.workflow_runs (id, workflow, version, input,"
                " idempotency_key, timeout_seconds, created_at)"
                " SELECT 'dup', workflow, version, input, idempotency_key, 60, now()"
                " FROM forgeflow.workflow_runs WHERE schedule = 't'"
            )
    assert await count_runs(dsn, "t") == 1


async def test_a_paused_schedule_fires_nothing_and_resumes_from_the_next_future_time(
    dsn: str, registry: Registry
) -> None:
    """Paused for an hour: no run; resumed: the next fire time is after now, nothing caught up."""
    _, tick = define(registry)
    clock = ManualClock(START)
    async with Forgeflow.connect(dsn, registry=registry, clock=clock) as ff:
        await ff.schedule("t", tick, cron="* * * * *", catchup="all")  # type: ignore[arg-type]
        assert (await ff.pause_schedule("t")).paused
        clock.set(START + timedelta(hours=1))
        scheduler = Scheduler(ff.runtime)
        assert await scheduler.fire_due() == []
        resumed = await ff.resume_schedule("t")
        assert not resumed.paused
        assert resumed.next_fire_at == datetime(2024, 6, 3, 9, 1, tzinfo=UTC)
        assert await scheduler.fire_due() == []
        await ff.delete_schedule("t")
        assert await ff.list_schedules() == []
    assert await count_runs(dsn) == 0


@pytest.mark.parametrize(("catchup", "expected"), [("skip", 0), ("latest", 1), ("all", 60)])
async def test_an_hour_of_downtime_gives_0_1_or_60_runs_by_catchup(
    dsn: str, registry: Registry, catchup: str, expected: int
) -> None:
    """A worker back after an hour down runs skip: 0, latest: 1, all: 60 missed minutes."""
    _, tick = define(registry)
    clock = ManualClock(START)  # 08:00:30
    async with Forgeflow.connect(dsn, registry=registry, clock=clock) as ff:
        await ff.schedule("t", tick, cron="* * * * *", catchup=catchup)  # type: ignore[arg-type]
        clock.set(START + timedelta(hours=1))  # 09:00:30: 08:01 … 09:00 are all late
        async with ff.worker(concurrency=20):
            # The worker's scheduler fires at start; firing here too changes nothing (one
            # of the two wins) but tells the test when it has happened.
            await Scheduler(ff.runtime).fire_due()
            runs = await ff.list_runs(workflow="tick")
            outputs = sorted([await ff.result(r.run_id, timeout=30) for r in runs])
        [listed] = await ff.list_schedules()
    minutes = [START.replace(second=0) + timedelta(minutes=m) for m in range(1, 61)]
    assert len(runs) == expected == await count_runs(dsn, "t")
    assert outputs == [t.isoformat() for t in minutes[len(minutes) - expected :]]
    assert listed.next_fire_at == datetime(2024, 6, 3, 9, 1, tzinfo=UTC)
