"""Workflows for wait tests that run in a worker process of their own.

A step records each real execution in the test database's side-effect table (see
``tests.support.db``), so a test can count executions across processes. With
``WAITS_BLOCK_EMAIL=1`` in its environment, a worker hangs inside the email step after
recording it: the test then kills that worker in the middle of the run.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
from pydantic import BaseModel

from forgeflow import Registry, WorkflowContext, workflow
from tests.support.db import record_side_effect

__all__ = ["Approval", "document_approval", "registry"]

registry = Registry()


class Approval(BaseModel):
    """Which document needs a decision, and the database for side-effect records."""

    dsn: str
    document: str


async def send_email(approval: Approval, url: str) -> str:
    """Pretend to email ``url``; hangs in a worker started with WAITS_BLOCK_EMAIL=1."""
    await record_side_effect(approval.dsn, f"email:{approval.document}")
    if os.environ.get("WAITS_BLOCK_EMAIL") == "1":
        await anyio.sleep_forever()
    return url


async def archive(approval: Approval, outcome: str) -> str:
    """The step after the decision."""
    await record_side_effect(approval.dsn, f"archive:{approval.document}")
    return outcome


@workflow(version=1, timeout="30d", registry=registry)
async def document_approval(ctx: WorkflowContext, approval: Approval) -> dict[str, Any]:
    """Email the hook's link, wait for the decision, then archive it."""
    hook = await ctx.hook(
        "manager",
        timeout="72h",
        hook_id="approval-{run_id}",
        metadata={"document": approval.document},
    )
    await ctx.step("email", send_email, approval, hook.url)
    decision = await hook.wait()
    outcome = await ctx.step("archive", archive, approval, decision.outcome.value)
    return {"outcome": outcome, "data": decision.data}
