"""The code about to be deployed: one step renamed, one inserted, one insertion patched."""

from __future__ import annotations

from forgeflow import Registry, WorkflowContext, workflow
from tests.support.deploy_old import effect

registry = Registry()


@workflow(version=1, registry=registry)
async def renamed(ctx: WorkflowContext, order: str) -> str:
    await ctx.step("reserve_stock", effect, ctx.db(), f"reserve {order}")  # renamed
    await ctx.wait_for_hook("approval")
    await ctx.step("ship", effect, ctx.db(), f"ship {order}")
    return "old"


@workflow(version=1, registry=registry)
async def inserted(ctx: WorkflowContext, order: str) -> str:
    await ctx.step("reserve", effect, ctx.db(), f"reserve {order}")
    await ctx.step("notify", effect, ctx.db(), f"notify {order}")  # inserted before the wait
    await ctx.wait_for_hook("approval")
    await ctx.step("ship", effect, ctx.db(), f"ship {order}")
    return "old"


@workflow(version=1, registry=registry)
async def guarded(ctx: WorkflowContext, order: str) -> str:
    await ctx.step("reserve", effect, ctx.db(), f"reserve {order}")
    branch = "old"
    if await ctx.patched("notify-first"):  # the same insertion, made safe
        await ctx.step("notify", effect, ctx.db(), f"notify {order}")
        branch = "new"
    await ctx.wait_for_hook("approval")
    await ctx.step("ship", effect, ctx.db(), f"ship {order}")
    return branch
