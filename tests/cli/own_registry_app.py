"""A module that registers its workflows in a Registry of its own, not the default one."""

from __future__ import annotations

from forgeflow import Registry, WorkflowContext, workflow

registry = Registry()


@workflow(version=1, name="hello", registry=registry)
async def hello(ctx: WorkflowContext, name: str) -> str:
    """Greet ``name``."""
    return f"hello {name}"
