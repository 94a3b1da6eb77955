"""The repair commands: restart, fork, bulk cancel and gc, with --json."""

from __future__ import annotations

from forgeflow import Forgeflow, Registry, WorkflowContext, workflow
from tests.support.db import connect_direct

from .runner import forgeflow


async def finished_run(dsn: str) -> str:
    """A run of a workflow the CLI has no code for, driven to its end here."""
    registry = Registry()

    @workflow(version=1, registry=registry, name="cli_repair")
    async def flow(ctx: WorkflowContext, n: int) -> int:
        first = await ctx.step("first", lambda: n + 1).run()
        return await ctx.step("second", lambda: first * 2).run()

    async with Forgeflow.connect(dsn, registry=registry) as ff:
        run_id = await ff.start(flow, 1)
        await ff.drive(run_id)
    return run_id


async def test_restart_and_fork_print_the_new_run_and_status_shows_lineage(dsn: str) -> None:
    """`restart RUN` and `fork RUN --from-step S --json` create linked runs."""
    run_id = await finished_run(dsn)
    restarted = await forgeflow("restart", run_id, "--dsn", dsn)
    assert restarted.code == 0, restarted.err
    forked = await forgeflow("fork", run_id, "--from-step", "second", "--json", "--dsn", dsn)
    assert forked.code == 0, forked.err
    body = forked.json()
    assert (body["forked_from"], body["forked_from_step"]) == (run_id, "second")
    status = await forgeflow("status", body["run_id"], "--dsn", dsn)
    assert f"{run_id} from step second" in status.out
    conn = await connect_direct(dsn)
    try:
        copied = await conn.fetch(
            "SELECT name FROM forgeflow.workflow_steps WHERE run_id = $1", body["run_id"]
        )
    finally:
        await conn.close()
    assert [r["name"] for r in copied] == ["first"]
    refused = await forgeflow("fork", run_id, "--from-step", "nope", "--dsn", dsn)
    assert refused.code == 1 and "never recorded a step named 'nope'" in refused.err


async def test_bulk_cancel_needs_a_filter_or_yes_and_gc_reports_json(dsn: str) -> None:
    """An unfiltered bulk cancel is refused; gc --json prints matched and deleted."""
    await finished_run(dsn)
    refused = await forgeflow("cancel", "--dsn", dsn)
    assert refused.code == 1 and "--yes" in refused.err
    dry = await forgeflow("cancel", "--workflow", "cli_repair", "--dry-run", "--json", "--dsn", dsn)
    assert dry.code == 0, dry.err
    assert (dry.json()["matched"], dry.json()["acted"]) == (1, 0)
    gc = await forgeflow("gc", "--older-than", "1h", "--json", "--dsn", dsn)
    assert gc.code == 0, gc.err
    assert gc.json() == {"matched": 0, "deleted": 0}
    bad = await forgeflow("gc", "--older-than", "soon", "--dsn", dsn)
    assert bad.code == 2 and "--older-than" in bad.err
