"""A workflow that reports the event loop its worker runs on."""

from __future__ import annotations

import asyncio

from forgeflow import WorkflowContext, workflow


def loop_kind() -> str:
    """The module of the running event loop's class: "uvloop" or "asyncio.unix_events"."""
    return type(asyncio.get_running_loop()).__module__.partition(".")[0]


async def read_loop() -> str:
    """``loop_kind`` from inside a step."""
    return loop_kind()


@workflow(version=1, name="event_loop")
async def event_loop(ctx: WorkflowContext) -> str:
    """Returns what ``loop_kind`` says in the worker executing it."""
    return await ctx.step("loop", read_loop).run()
