"""Mistakes a new user makes are refused at the call, with a message that names the fix."""

from __future__ import annotations

import pytest

from forgeflow import (
    Forgeflow,
    Registry,
    WorkflowContext,
    WorkflowFailed,
    WorkflowNotFound,
    workflow,
)
from tests.support.db import count_rows


async def test_starting_an_unknown_version_is_refused_and_writes_nothing(
    dsn: str, registry: Registry
) -> None:
    """ff.start(wf, version=N) with no such version raises WorkflowNotFound naming the versions."""

    @workflow(version=2, registry=registry, name="report")
    async def report(ctx: WorkflowContext) -> str:
        return "v2"

    async with Forgeflow.connect(dsn, registry=registry) as ff:
        with pytest.raises(WorkflowNotFound, match=r"'report' version 7 .*registered: 2"):
            await ff.start(report, version=7)
        with pytest.raises(WorkflowNotFound, match=r"'report' version 7 "):
            await ff.start("report", version=7)
        run_id = await ff.start(report, version=2)
        assert (await ff.status(run_id)).version == 2
    assert await count_rows(dsn, "forgeflow.workflow_runs") == 1


async def test_an_unknown_on_timeout_names_the_parameter(dsn: str, registry: Registry) -> None:
    """ctx.hook(..., on_timeout="maybe") fails with a ValueError naming on_timeout."""

    @workflow(version=1, registry=registry, name="undecided")
    async def undecided(ctx: WorkflowContext) -> str:
        await ctx.hook("approval", on_timeout="maybe")
        return "never"

    async with Forgeflow.connect(dsn, registry=registry) as ff:
        with pytest.raises(WorkflowFailed) as failed:
            await ff.run(undecided)
    error = failed.value.error
    assert error["type"] == "ValueError", error
    assert error["message"].startswith("on_timeout: 'maybe' is not one of "), error
