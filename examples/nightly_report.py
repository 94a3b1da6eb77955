"""Nightly report: a cron schedule in a time zone, fired exactly once per night.

    python examples/nightly_report.py

`nightly_report` is scheduled on its decorator for 02:00 every night, Paris time; a
second, stored schedule (`ff.schedule`) sends a weekly digest on Monday 09:00. Every
worker keeps the decorator schedule in PostgreSQL and fires each night's run exactly
once, however many workers are alive; `ctx.scheduled_at` is the night it is for.

Demo timing: instead of waiting for real nights, the script runs on forgeflow's test
clock (`WorkflowTestEnv`) and moves it through one week, across the night in March when
Paris moves its clocks forward. Then it pauses the digest and triggers one report by
hand. Runs on the embedded PostgreSQL under ./.forgeflow/ unless FORGEFLOW_DATABASE_URL
is set.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import structlog

from forgeflow import Registry, WorkflowContext, workflow
from forgeflow.testing import ManualClock, WorkflowTestEnv

registry = Registry()
PARIS = ZoneInfo("Europe/Paris")


async def build_report(night: str) -> int:
    print(f"  [report] sales report for the night of {night}")
    return 42


@workflow(version=1, registry=registry, schedule="0 2 * * *", timezone="Europe/Paris")
async def nightly_report(ctx: WorkflowContext) -> int:
    assert ctx.scheduled_at is not None
    night = ctx.scheduled_at.astimezone(PARIS).strftime("%a %d %b %H:%M %Z")
    return await ctx.step("build_report", build_report, night).run()


@workflow(version=1, registry=registry)
async def weekly_digest(ctx: WorkflowContext, team: str = "sales") -> None:
    assert ctx.scheduled_at is not None
    when = ctx.scheduled_at.astimezone(PARIS).strftime("%a %d %b %H:%M %Z")
    await ctx.step("send_digest", print, f"  [digest] weekly digest for {team}, {when}").run()


async def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    # Thursday 28 March 2024, noon UTC: the clocks in Paris go forward on Sunday night.
    clock = ManualClock(datetime(2024, 3, 28, 12, 0, tzinfo=UTC))
    async with WorkflowTestEnv.connect(registry=registry, clock=clock) as env:
        ff = env.client
        await ff.schedule("digest", weekly_digest, cron="0 9 * * MON", timezone="Europe/Paris")
        print("Schedules:")
        for s in await ff.list_schedules():
            print(f"  {s.name:<15} {s.cron:<12} {s.timezone:<13} next {s.next_fire_at:%c} UTC")

        print("One week of nights on the test clock:")
        await env.advance(timedelta(days=7))
        runs = await ff.list_runs(workflow="nightly_report")
        print(f"nightly_report ran {len(runs)} times, each night once")

        await ff.pause_schedule("digest")
        run_id = await ff.trigger_schedule("nightly_report")
        await env.settle()
        record = await ff.status(run_id)
        print(f"triggered by hand: run {record.status.value}, scheduled_at {record.scheduled_at}")
        for s in await ff.list_schedules():
            state = "paused" if s.paused else f"next {s.next_fire_at:%c} UTC"
            last = s.last_run_status.value if s.last_run_status else "-"
            print(f"  {s.name:<15} {state:<35} last run {last}")


if __name__ == "__main__":
    asyncio.run(main())
