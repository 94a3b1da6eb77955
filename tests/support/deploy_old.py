"""The code in production: three order workflows that wait on a manager's approval."""

from __future__ import annotations

from typing import Any

from forgeflow import Registry, WorkflowContext, workflow

registry = Registry()


async def effect(pool: Any, name: str) -> str:
    """A step's side effect: one row in the test database's ``effects`` table."""
    await pool.execute("INSERT INTO effects (name) VALUES ($1)", name)
    return name


@workflow(version=1, registry=registry)
async def renamed(ctx: WorkflowContext, order: str) -> str:
    await ctx.step("reserve", effect, ctx.db(), f"reserve {order}")
    await ctx.wait_for_hook("approval")
    await ctx.step("ship", effect, ctx.db(), f"ship {order}")
    return "old"


@workflow(version=1, registry=registry)
async def inserted(ctx: WorkflowContext, order: str) -> str:
    await ctx.step("reserve", effect, ctx.db(), f"reserve {order}")
    await ctx.wait_for_hook("approval")
    await ctx.step("ship", effect, ctx.db(), f"ship {order}")
    return "old"


@workflow(version=1, registry=registry)
async def guarded(ctx: WorkflowContext, order: str) -> str:
    await ctx.step("reserve", effect, ctx.db(), f"reserve {order}")
    await ctx.wait_for_hook("approval")
    await ctx.step("ship", effect, ctx.db(), f"ship {order}")
    return "old"
