"""Workflows for the CLI tests; `forgeflow worker tests/cli/app.py` imports this file."""

from __future__ import annotations

from pydantic import BaseModel

from forgeflow import WorkflowContext, workflow


class Document(BaseModel):
    """What the review workflow takes."""

    title: str


@workflow(version=1, name="greet")
async def greet(ctx: WorkflowContext, name: str) -> str:
    """One step, done at once."""
    return await ctx.step("greet", lambda: f"hello {name}").run()


@workflow(version=1, name="review")
async def review(ctx: WorkflowContext, doc: Document) -> str:
    """Wait for a decision on a resume hook."""
    decision = await ctx.wait_for_hook("review", timeout="1h", metadata={"title": doc.title})
    return f"{doc.title}: {decision.outcome.value} {decision.data}"


def release(seat: str) -> None:
    """The compensation of the reservation (nothing outside to undo in a test)."""


@workflow(version=1, name="booking")
async def booking(ctx: WorkflowContext, seat: str) -> str:
    """Reserve, then wait for a confirmation; a cancel releases the seat."""
    await ctx.step("reserve", lambda: seat).compensate(release).run()
    decision = await ctx.wait_for_hook("confirm", timeout="1h")
    return decision.outcome.value
