"""What a new user meets in the first hour: waits past the deadline, visible running
steps and sleeps, errors that name the mistake."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from forgeflow import Forgeflow, Registry, WorkflowContext, WorkflowStatus, workflow
from forgeflow.testing import WorkflowTestEnv


def deadline_warnings(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == "wait_exceeds_deadline"]


async def test_a_hook_timeout_past_the_workflow_deadline_logs_a_warning(
    ff: Forgeflow, registry: Registry
) -> None:
    """A 72 h hook in a 24 h workflow warns at creation, naming the run and the step."""

    @workflow(version=1, timeout="24h", registry=registry)
    async def too_short(ctx: WorkflowContext) -> None:
        await ctx.hook("welcome_call", timeout="72h", on_timeout="approve")
        await ctx.expect_event("paid", timeout="2d")
        await ctx.hook("fits", timeout="1h")

    run_id = await ff.start(too_short)
    with capture_logs() as logs:
        await ff.drive(run_id)
    warnings = deadline_warnings(logs)
    assert [w["step"] for w in warnings] == ["hook:welcome_call", "event:paid"]
    assert warnings[0]["run_id"] == run_id
    assert warnings[0]["workflow"] == "too_short"
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["expires_at"] > warnings[0]["deadline"]
    assert (await ff.status(run_id)).status is WorkflowStatus.COMPLETED


async def test_a_sleep_past_the_deadline_warns_and_one_within_it_does_not(
    dsn: str, registry: Registry
) -> None:
    """Sleeping beyond the deadline warns; a wait that fits, replayed or not, never does."""

    @workflow(version=1, timeout="1h", registry=registry)
    async def sleepy(ctx: WorkflowContext, seconds: float) -> None:
        await ctx.sleep(seconds)

    async with WorkflowTestEnv.connect(dsn, registry=registry) as env:
        with capture_logs() as logs:
            fits = await env.start(sleepy, 60.0)
            too_long = await env.start(sleepy, 7200.0)
            await env.run_until_waiting(fits)
            await env.run_until_waiting(too_long)
            await env.advance("1h")
        assert (await env.client.status(fits)).status is WorkflowStatus.COMPLETED
    assert [w["run_id"] for w in deadline_warnings(logs)] == [too_long]
