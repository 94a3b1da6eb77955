"""A workflow that records what its worker was configured with, for the settings tests."""

from __future__ import annotations

from forgeflow import WorkflowContext, workflow

LEASE_LEFT = """
SELECT extract(epoch FROM lease_expires_at - now())::float8
FROM forgeflow.workflow_runs WHERE id = $1
"""


@workflow(version=1, name="notify")
async def notify(ctx: WorkflowContext, who: str) -> str:
    """Build a hook link as an email would, note the lease left, then wait for a decision."""
    hook = await ctx.hook("approval", timeout="1h")
    await ctx.step("email", lambda: f"{who}: {hook.url}")

    async def lease_left() -> float:
        async with ctx.db().acquire() as conn:
            seconds: float = await conn.fetchval(LEASE_LEFT, ctx.run_id)
        return seconds

    await ctx.step("lease", lease_left)
    decision = await hook.wait()
    return decision.outcome.value
