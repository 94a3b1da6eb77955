"""Workflows for the engine-fault tests run by real worker processes.

``paused`` checkpoints a step, sleeps in place, then runs a step whose effect is a file
named after the process that ran it: a worker paused past its lease must not create one
after it resumes. ``killer`` checkpoints a step, then runs one that SIGKILLs the worker
executing it, every time.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from pydantic import BaseModel

from forgeflow import WorkflowContext, workflow

__all__ = ["KillerSpec", "PausedSpec", "killer", "paused"]


class PausedSpec(BaseModel):
    """Where the paused workflow leaves its marks."""

    marks: str
    sleep: float = 2.0


def mark(directory: str, name: str) -> int:
    """Leave a file saying which process ran step ``name``; the pid."""
    pid = os.getpid()
    (Path(directory) / f"{name}-{pid}").write_text("ran")
    return pid


@workflow(version=1)
async def paused(ctx: WorkflowContext, spec: PausedSpec) -> int:
    """a, an in-place sleep, then b (a sync step: once called, it always runs through)."""
    await ctx.step("a", mark, spec.marks, "a").run()
    await ctx.sleep(spec.sleep)
    return await ctx.step("b", mark, spec.marks, "b").run()


class KillerSpec(BaseModel):
    """Where the killer workflow leaves its marks."""

    marks: str


def undo(directory: str, pid: int) -> None:
    """The compensation of step a: a file per undo."""
    (Path(directory) / f"undo-a-{os.getpid()}").write_text(str(pid))


def die() -> None:
    """Kill the worker process executing this step, as a segfaulting library would."""
    os.kill(os.getpid(), signal.SIGKILL)


@workflow(version=1, max_recoveries=2)
async def killer(ctx: WorkflowContext, spec: KillerSpec) -> None:
    """a (compensated), then a step that kills every worker that runs it."""
    await ctx.step("a", mark, spec.marks, "a").compensate(lambda pid: undo(spec.marks, pid)).run()
    await ctx.step("boom", die).run()
