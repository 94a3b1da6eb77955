"""The shortest path through the engine, to catch a broken install early."""

from __future__ import annotations

from forgeflow import Forgeflow, Registry, WorkflowContext, workflow


async def test_a_workflow_runs_to_completion_in_process(ff: Forgeflow, registry: Registry) -> None:
    @workflow(version=1, registry=registry)
    async def double(ctx: WorkflowContext, n: int) -> int:
        return await ctx.step("double", lambda: n * 2).run()

    assert await ff.run(double, 21) == 42
