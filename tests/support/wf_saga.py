"""A four-step saga whose steps and compensations a test can hold at a gate.

Steps s1, s2 and s3 run, then an optional ``ctx.sleep``, then s4; each has a
compensation. Every attempt and every compensation leaves a row in ``worker_effects``.
"""

from __future__ import annotations

import json
from functools import partial

import anyio
from pydantic import BaseModel

from forgeflow import WorkflowContext, workflow
from tests.support.worker_effects import pass_gate, record

__all__ = ["SagaSpec", "saga", "saga_3s"]

STEPS_BEFORE_SLEEP = ("s1", "s2", "s3")


class SagaSpec(BaseModel):
    """Where the saga stops for the test."""

    gate: int = 0
    #: the step that waits at the gate before making its effect
    gate_at: str | None = None
    #: the compensation that waits at the gate before undoing
    undo_gate_at: str | None = None
    #: the step that waits until its worker learns the run was cancelled
    cancel_aware_at: str | None = None
    #: seconds to ctx.sleep between s3 and s4
    sleep: float | None = None


async def act(ctx: WorkflowContext, name: str, spec: SagaSpec) -> int:
    """Record the attempt, wait where told to, make the effect; its id."""
    pool = ctx.db()
    await record(pool, ctx.run_id, name, "start")
    if spec.gate_at == name:
        await pass_gate(pool, spec.gate)
    if spec.cancel_aware_at == name:
        # Nothing is checkpointed while this step runs: only a notification can tell
        # the worker about the cancel. The cap keeps a broken engine from hanging here.
        # The public flag is polled on purpose: it is what user code can look at.
        with anyio.move_on_after(60):
            while not ctx.cancel_requested:  # noqa: ASYNC110
                await anyio.sleep(0.01)
    info = json.dumps({"saw_cancel": ctx.cancel_requested})
    return await record(pool, ctx.run_id, name, "done", info)


async def undo(ctx: WorkflowContext, name: str, spec: SagaSpec, effect: int) -> None:
    """Undo one step's effect (waiting at the gate first, if told to)."""
    pool = ctx.db()
    if spec.undo_gate_at == name:
        await record(pool, ctx.run_id, name, "undo_start")
        await pass_gate(pool, spec.gate)
    await record(pool, ctx.run_id, name, "undo", str(effect))


async def body(ctx: WorkflowContext, spec: SagaSpec) -> str:
    """The saga itself, shared by its definitions."""
    for name in STEPS_BEFORE_SLEEP:
        await ctx.step(name, act, ctx, name, spec).compensate(partial(undo, ctx, name, spec))
    if spec.sleep is not None:
        await ctx.sleep(spec.sleep)
    await ctx.step("s4", act, ctx, "s4", spec).compensate(partial(undo, ctx, "s4", spec))
    return "done"


@workflow(version=1, timeout="24h", name="worker_saga")
async def saga(ctx: WorkflowContext, spec: SagaSpec) -> str:
    """The saga with a day to finish."""
    return await body(ctx, spec)


@workflow(version=1, timeout="3s", name="worker_saga_3s")
async def saga_3s(ctx: WorkflowContext, spec: SagaSpec) -> str:
    """The saga with three seconds to finish: a long sleep runs into its deadline."""
    return await body(ctx, spec)
