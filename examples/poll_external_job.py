"""Polling an external job until it is done.

    python examples/poll_external_job.py

The workflow starts a data export in an outside system and checks it with
`ctx.poll(name, fn, job_id, until=..., interval=..., timeout=..., max_attempts=...)`. Each
check is a checkpointed step (`check_export`, `check_export#2`, ...) and each pause a
durable sleep, so a restarted worker goes on with the next check instead of starting over.
A second export never finishes: after `max_attempts` checks the poll raises
`PollTimeout`, which the workflow catches to cancel that job. To finish in seconds the
interval here is 0.3 s; with an interval above the client's `sleep_threshold` (60 s by
default) the run is suspended between checks and holds no worker. Runs on the embedded
PostgreSQL under ./.forgeflow/ unless FORGEFLOW_DATABASE_URL is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import structlog
from pydantic import BaseModel

from forgeflow import Forgeflow, PollTimeout, Registry, WorkflowContext, workflow

registry = Registry()


class ExportRequest(BaseModel):
    dataset: str
    stuck_dataset: str


class JobState(BaseModel):
    job_id: str
    state: str  # queued | running | done
    progress: int
    url: str | None = None


class ExportResult(BaseModel):
    url: str | None
    stuck_job_cancelled: bool


# -- the outside world: a batch system whose jobs take a few checks -------------------


class BatchSystem:
    def __init__(self) -> None:
        self.checks: dict[str, int] = {}

    async def submit(self, dataset: str) -> str:
        job_id = f"job_{dataset}"
        self.checks[job_id] = 0
        print(f"  [batch] submitted {job_id}")
        return job_id

    async def status(self, job_id: str) -> JobState:
        self.checks[job_id] += 1
        n = self.checks[job_id]
        if job_id.endswith("_stuck") or n < 4:
            state = JobState(
                job_id=job_id,
                state="running" if n > 1 else "queued",
                progress=min(25 * (n - 1), 90),
            )
        else:
            state = JobState(
                job_id=job_id,
                state="done",
                progress=100,
                url=f"https://files.example.com/{job_id}.csv",
            )
        print(f"  [batch] check {n} of {job_id}: {state.state} {state.progress}%")
        return state

    async def cancel(self, job_id: str) -> None:
        print(f"  [batch] cancelled {job_id}")


batch = BatchSystem()


def finished(state: JobState) -> bool:
    return state.state == "done"


# -- the workflow ---------------------------------------------------------------------


@workflow(version=1, timeout="2h", registry=registry)
async def export_dataset(ctx: WorkflowContext, request: ExportRequest) -> ExportResult:
    job_id = await ctx.step("submit_export", batch.submit, request.dataset).run()
    done: JobState = await ctx.poll(
        "check_export",
        batch.status,
        job_id,
        until=finished,
        interval="300ms",
        timeout="1h",
        max_attempts=20,
    )

    stuck_id = await ctx.step("submit_stuck", batch.submit, request.stuck_dataset).run()
    try:
        await ctx.poll(
            "check_stuck",
            batch.status,
            stuck_id,
            until=finished,
            interval="100ms",
            timeout="1h",
            max_attempts=3,
        )
        cancelled = False
    except PollTimeout as exc:
        ctx.log.warning("export_gave_up", job_id=stuck_id, error=str(exc))
        await ctx.step("cancel_stuck", batch.cancel, stuck_id).run()
        cancelled = True
    return ExportResult(url=done.url, stuck_job_cancelled=cancelled)


# -- running it -----------------------------------------------------------------------


def configure_logging() -> None:
    """Engine events (run_started, step_completed, run_finished, ...) go to stderr."""
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


async def main() -> None:
    configure_logging()
    async with Forgeflow.connect(registry=registry) as ff:
        print(
            "Exporting 'orders' (polled every 0.3 s here; minutes in real life) and a job "
            "that never finishes (given up after 3 checks)"
        )
        result = await ff.run(
            export_dataset, ExportRequest(dataset="orders", stuck_dataset="events_stuck")
        )
        [latest] = await ff.list_runs(workflow=export_dataset.name, limit=1)
        record = await ff.status(latest.run_id)
        checks = sum(
            1 for s in record.steps if s.name.startswith("check_export") and s.kind == "step"
        )
        print(f"\nExport ready after {checks} checks: {result.url}")
        print(f"Stuck job cancelled: {result.stuck_job_cancelled}")
        print(f"Run {record.run_id} status: {record.status.value}")
        for step in record.steps:
            print(f"  step {step.name:<20} {step.kind:<5} {step.status.value}")


if __name__ == "__main__":
    asyncio.run(main())
