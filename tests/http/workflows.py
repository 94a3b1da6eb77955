"""The workflows the HTTP tests start, registered into each test's own registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, field_validator

from forgeflow import Registry, WorkflowContext, WorkflowDefinition, workflow

__all__ = ["Document", "Workflows", "define"]


class Document(BaseModel):
    """What the approval workflow takes."""

    title: str
    pages: int = 1


class Fragile(BaseModel):
    """An input whose validator has a bug (it raises something pydantic does not wrap)."""

    value: int

    @field_validator("value")
    @classmethod
    def crash(cls, value: int) -> int:
        raise RuntimeError("a bug in a validator")


@dataclass
class Workflows:
    """Handles on the registered definitions."""

    approval: WorkflowDefinition[Any, Any]
    double: WorkflowDefinition[Any, Any]
    double_v2: WorkflowDefinition[Any, Any]
    payment: WorkflowDefinition[Any, Any]
    saga: WorkflowDefinition[Any, Any]


def define(registry: Registry, released: list[str] | None = None) -> Workflows:
    """Register the test workflows into ``registry``."""
    undone = released if released is not None else []

    @workflow(version=1, registry=registry, name="approval")
    async def approval(ctx: WorkflowContext, doc: Document) -> dict[str, Any]:
        hook = await ctx.hook("review", timeout="1h", metadata={"title": doc.title})
        decision = await hook.wait()
        return {
            "title": doc.title,
            "outcome": decision.outcome.value,
            "data": decision.data,
            "timed_out": decision.timed_out,
        }

    @workflow(version=1, registry=registry, name="double")
    async def double(ctx: WorkflowContext, n: int) -> int:
        return await ctx.step("double", lambda: n * 2).run()

    @workflow(version=2, registry=registry, name="double")
    async def double_v2(ctx: WorkflowContext, n: int) -> int:
        return await ctx.step("triple", lambda: n * 3).run()

    @workflow(version=1, registry=registry, name="payment")
    async def payment(ctx: WorkflowContext, order: str) -> Any:
        return await ctx.wait_for_event("payment.confirmed", match={"order": order}, timeout="1h")

    @workflow(version=1, registry=registry, name="saga")
    async def saga(ctx: WorkflowContext, item: str) -> str:
        await ctx.step("reserve", lambda: f"reserved {item}").compensate(undone.append).run()
        decision = await ctx.wait_for_hook("confirm", timeout="1h")
        return decision.outcome.value

    @workflow(version=1, registry=registry, name="fragile")
    async def fragile(ctx: WorkflowContext, data: Fragile) -> int:
        return data.value

    return Workflows(
        approval=approval, double=double, double_v2=double_v2, payment=payment, saga=saga
    )
