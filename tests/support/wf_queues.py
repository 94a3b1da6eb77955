"""Workflows on limited queues, recording when each execution starts and ends.

Each run's single step writes a row to ``queue_exec`` (in the test database) when it
begins and stamps it when it ends, both with the database's clock, so a test can
compute how many executions overlapped, overall and per key. A run may also pass a
gate (``worker_effects.Gate``) so that a test holds it executing.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
from pydantic import BaseModel

from forgeflow import Queue, WorkflowContext, workflow
from tests.support.worker_effects import pass_gate

__all__ = [
    "DDL",
    "Job",
    "conc_job",
    "create_exec_table",
    "debounced_job",
    "gated_job",
    "keyed_job",
    "max_overlap",
    "prio_job",
    "rate_job",
]

DDL = """
CREATE TABLE IF NOT EXISTS public.queue_exec (
    id      bigserial PRIMARY KEY,
    run_id  text NOT NULL,
    key     text,
    label   text,
    pid     integer NOT NULL,
    started timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended   timestamptz
)
"""

CONCURRENT = Queue("t_concurrent", concurrency=5)
KEYED = Queue("t_keyed", key_concurrency=1)
RATED = Queue("t_rated", rate="20/s")
GATED = Queue("t_gated", concurrency=3)


class Job(BaseModel):
    """How long the step holds its slot, a label to record, and a gate to pass."""

    hold: float = 0.0
    label: str = ""
    key: str | None = None
    gate: int | None = None


async def create_exec_table(pool: Any) -> None:
    """Create the execution log table (idempotent)."""
    await pool.execute(DDL)


async def max_overlap(pool: Any, by_key: bool = False, ended_only: bool = False) -> int:
    """The largest number of executions in progress at one instant (per key if asked).

    At equal timestamps an end sorts before a start: touching intervals do not overlap.
    An execution without an end (its worker died) counts as running until the end.
    """
    part = "PARTITION BY key" if by_key else ""
    where = "WHERE ended IS NOT NULL" if ended_only else ""
    value = await pool.fetchval(
        f"""
        SELECT coalesce(max(n), 0) FROM (
            SELECT sum(d) OVER ({part} ORDER BY t, d ROWS UNBOUNDED PRECEDING) AS n FROM (
                SELECT key, started AS t, 1 AS d FROM public.queue_exec {where}
                UNION ALL
                SELECT key, coalesce(ended, 'infinity'), -1 FROM public.queue_exec {where}
            ) e
        ) x
        """
    )
    return int(value)


async def _execute(ctx: WorkflowContext, job: Job) -> str:
    pool = ctx.db()
    row = await pool.fetchval(
        "INSERT INTO public.queue_exec (run_id, key, label, pid)"
        " VALUES ($1, $2, $3, $4) RETURNING id",
        ctx.run_id,
        job.key,
        job.label,
        os.getpid(),
    )
    if job.gate is not None:
        await pass_gate(pool, job.gate)
    if job.hold:
        await anyio.sleep(job.hold)
    await pool.execute("UPDATE public.queue_exec SET ended = clock_timestamp() WHERE id = $1", row)
    return job.label


@workflow(version=1, timeout="1h", name="q_conc_job", queue=CONCURRENT)
async def conc_job(ctx: WorkflowContext, job: Job) -> str:
    """One step on a queue with concurrency=5."""
    return await ctx.step("work", _execute, ctx, job).run()


@workflow(version=1, timeout="1h", name="q_keyed_job", queue=KEYED)
async def keyed_job(ctx: WorkflowContext, job: Job) -> str:
    """One step on a queue with key_concurrency=1."""
    return await ctx.step("work", _execute, ctx, job).run()


@workflow(version=1, timeout="1h", name="q_rate_job", queue=RATED)
async def rate_job(ctx: WorkflowContext, job: Job) -> str:
    """One step on a queue with rate 20/s."""
    return await ctx.step("work", _execute, ctx, job).run()


@workflow(version=1, timeout="1h", name="q_gated_job", queue=GATED)
async def gated_job(ctx: WorkflowContext, job: Job) -> str:
    """One step on a queue with concurrency=3, held at a gate."""
    return await ctx.step("work", _execute, ctx, job).run()


@workflow(version=1, timeout="1h", name="q_prio_job", queue="t_prio")
async def prio_job(ctx: WorkflowContext, job: Job) -> str:
    """One step on an unlimited queue (for priority order)."""
    return await ctx.step("work", _execute, ctx, job).run()


@workflow(version=1, timeout="1h", name="q_debounced_job", queue="t_debounce")
async def debounced_job(ctx: WorkflowContext, job: Job) -> str:
    """One step; returns its input's label (debounce keeps the last input)."""
    return await ctx.step("work", _execute, ctx, job).run()
