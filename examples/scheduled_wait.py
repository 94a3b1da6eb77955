"""Scheduled wait: prepare now, send at a given date with `ctx.sleep_until`.

    python examples/scheduled_wait.py

The workflow builds a newsletter, then sleeps until its send date, then sends it. The
wake-up time is checkpointed, so the run is suspended (status `waiting`, no worker held)
and whichever worker is alive at that date continues it, even after restarts. To show
that, the script stops its first worker while the run waits and starts a fresh one.

Demo timing: the send date is 3 seconds from now rather than, say, next Monday 09:00,
and the client's `sleep_threshold` is lowered to 1 s so that even this short wait
suspends the run (by default, waits under 60 s sleep in place). Runs on the embedded
PostgreSQL under ./.forgeflow/ unless FORGEFLOW_DATABASE_URL is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import UTC, datetime, timedelta

import structlog
from pydantic import AwareDatetime, BaseModel

from forgeflow import Forgeflow, Registry, WorkflowContext, WorkflowStatus, workflow

registry = Registry()


class Newsletter(BaseModel):
    issue: int
    send_at: AwareDatetime


class Delivery(BaseModel):
    issue: int
    sent_at: datetime
    recipients: int


# -- the outside world ----------------------------------------------------------------


async def build_issue(issue: int) -> int:
    print(f"  [news]  issue #{issue} rendered for 1,250 recipients")
    return 1250


async def send_issue(issue: int, recipients: int) -> datetime:
    sent_at = datetime.now(UTC)
    print(f"  [news]  issue #{issue} sent at {sent_at:%H:%M:%S} to {recipients} recipients")
    return sent_at


# -- the workflow ---------------------------------------------------------------------


@workflow(version=1, timeout="30d", registry=registry)
async def scheduled_newsletter(ctx: WorkflowContext, letter: Newsletter) -> Delivery:
    recipients = await ctx.step("build_issue", build_issue, letter.issue).run()
    await ctx.sleep_until(letter.send_at)
    sent_at = await ctx.step("send_issue", send_issue, letter.issue, recipients).run()
    return Delivery(issue=letter.issue, sent_at=sent_at, recipients=recipients)


# -- running it -----------------------------------------------------------------------


def configure_logging() -> None:
    """Engine events (run_suspended, run_resumed, ...) go to stderr."""
    level = os.environ.get("FORGEFLOW_LOG_LEVEL", "INFO").upper()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


async def wait_for_status(ff: Forgeflow, run_id: str, status: WorkflowStatus) -> None:
    async for record in ff.watch(run_id, steps=False):
        if record.status is status:
            return
    raise SystemExit(f"run {run_id} ended before reaching {status.value}")


async def main() -> None:
    configure_logging()
    now = datetime.now(UTC)
    send_at = (now + timedelta(seconds=3)).replace(microsecond=0)
    monday = (now + timedelta(days=7 - now.weekday())).replace(
        hour=9, minute=0, second=0, microsecond=0
    )
    print(
        f"Demo timing: scheduling for {send_at:%H:%M:%S} UTC, 3 seconds from now "
        f"(a real schedule would say e.g. {monday:%A %Y-%m-%d %H:%M} UTC)."
    )
    async with Forgeflow.connect(registry=registry, sleep_threshold="1s") as ff:
        run_id = await ff.start(scheduled_newsletter, Newsletter(issue=42, send_at=send_at))

        async with ff.worker(concurrency=2, poll_interval="200ms"):
            await wait_for_status(ff, run_id, WorkflowStatus.WAITING)
            record = await ff.status(run_id)
            wake = record.wake_at.strftime("%H:%M:%S") if record.wake_at else "?"
            print(
                f"Run {run_id[:8]} is {record.status.value} until {wake} UTC; stopping this worker."
            )
        print("No worker is running now; the timer lives in the database.")

        async with ff.worker(concurrency=2, poll_interval="200ms"):
            print("A new worker started; it picks the run up when the date comes.")
            delivery = await ff.result(run_id, timeout="60s")
        late = (delivery.sent_at - send_at).total_seconds()
        print(f"\nIssue #{delivery.issue} sent {late:.2f} s after its scheduled time.")
        record = await ff.status(run_id)
        print(f"Run {run_id} status: {record.status.value}")
        for step in record.steps:
            print(f"  step {step.name:<12} {step.kind:<5} {step.status.value}")


if __name__ == "__main__":
    asyncio.run(main())
