"""Versions 1 and 2 of ``worker_versioned``: a worker importing this module has both."""

from __future__ import annotations

from forgeflow import WorkflowContext, workflow
from tests.support.wf_versioned_v1 import mark, versioned_v1

__all__ = ["versioned_v1", "versioned_v2"]


@workflow(version=2, timeout="24h", name="worker_versioned")
async def versioned_v2(ctx: WorkflowContext) -> str:
    """Like version 1, with other effects."""
    await ctx.step("first", mark, ctx, "v2:first")
    await ctx.sleep("2h")
    await ctx.step("second", mark, ctx, "v2:second")
    return "v2"
