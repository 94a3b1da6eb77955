"""A chain of steps that each leave an effect, for crash and load tests with workers."""

from __future__ import annotations

from functools import partial

import anyio
from pydantic import BaseModel

from forgeflow import WorkflowContext, workflow
from tests.support.worker_effects import record

__all__ = ["ChainSpec", "chain"]


class ChainSpec(BaseModel):
    """How long the chain is, how slow each step, and which step (if any) fails."""

    steps: int = 3
    delay: float = 0.0
    fail_at: int | None = None


async def act(ctx: WorkflowContext, name: str, delay: float, fail: bool) -> int:
    """Record the attempt, take ``delay`` seconds, then make the effect; its id."""
    pool = ctx.db()
    await record(pool, ctx.run_id, name, "start")
    if delay:
        await anyio.sleep(delay)
    if fail:
        raise RuntimeError(f"{name} fails on purpose")
    return await record(pool, ctx.run_id, name, "done")


async def undo(ctx: WorkflowContext, name: str, effect: int) -> None:
    """Record that the effect ``effect`` of step ``name`` was undone."""
    await record(ctx.db(), ctx.run_id, name, "undo", str(effect))


@workflow(version=1, timeout="1h", name="worker_chain")
async def chain(ctx: WorkflowContext, spec: ChainSpec) -> list[int]:
    """Steps s1..sN, each compensated; returns the ids of their effects."""
    done: list[int] = []
    for number in range(1, spec.steps + 1):
        name = f"s{number}"
        runner = ctx.step(name, act, ctx, name, spec.delay, spec.fail_at == number)
        done.append(await runner.compensate(partial(undo, ctx, name)).run())
    return done
