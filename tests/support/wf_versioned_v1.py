"""Version 1 of a workflow whose version 2 lives in ``wf_versioned_v2``."""

from __future__ import annotations

from forgeflow import WorkflowContext, workflow
from tests.support.worker_effects import record

__all__ = ["mark", "versioned_v1"]


async def mark(ctx: WorkflowContext, label: str) -> str:
    """Leave an effect naming the version and step that ran; return the label."""
    await record(ctx.db(), ctx.run_id, label, "done")
    return label


@workflow(version=1, timeout="24h", name="worker_versioned")
async def versioned_v1(ctx: WorkflowContext) -> str:
    """first, a two-hour sleep, second."""
    await ctx.step("first", mark, ctx, "v1:first")
    await ctx.sleep("2h")
    await ctx.step("second", mark, ctx, "v1:second")
    return "v1"
