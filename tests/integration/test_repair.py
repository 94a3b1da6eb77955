"""Repairing runs: restart, fork (onto a newer version), purge and bulk operations."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

import pytest

from forgeflow import (
    EventTimeout,
    Forgeflow,
    ForkError,
    Registry,
    RunNotFound,
    WorkflowContext,
    WorkflowNotFound,
    WorkflowStatus,
    workflow,
)
from tests.support.db import count_rows, create_side_effects, record_side_effect, side_effects


async def effect(pool: Any, key: str) -> str:
    """A step with a side effect counted in the database."""
    await record_side_effect(pool, key)
    return key


def define_v1(registry: Registry, pool: Any) -> Any:
    """Version 1: reserve, charge (buggy: always raises), ship; no compensations."""

    async def charge_with_bug() -> str:
        await record_side_effect(pool, "charge:v1")
        raise RuntimeError("charge: bug in the amount rounding")

    @workflow(version=1, registry=registry, name="order")
    async def order(ctx: WorkflowContext, item: str) -> str:
        await ctx.step("reserve", effect, pool, f"reserve:{item}").run()
        await ctx.step("quote", effect, pool, f"quote:{item}").run()
        await ctx.step("charge", charge_with_bug).run()
        return await ctx.step("ship", effect, pool, f"ship:{item}").run()

    return order


def define_v2(registry: Registry, pool: Any) -> Any:
    """Version 2: the same steps in the same order, the charge fixed."""

    @workflow(version=2, registry=registry, name="order")
    async def order(ctx: WorkflowContext, item: str) -> str:
        await ctx.step("reserve", effect, pool, f"reserve:{item}").run()
        await ctx.step("quote", effect, pool, f"quote:{item}").run()
        await ctx.step("charge", effect, pool, "charge:v2").run()
        return await ctx.step("ship", effect, pool, f"ship:{item}").run()

    return order


async def failed_order(ff: Forgeflow, registry: Registry) -> str:
    await create_side_effects(ff.pool)
    v1 = define_v1(registry, ff.pool)
    run_id = await ff.start(v1, "book")
    await ff.drive(run_id)
    assert (await ff.status(run_id)).status is WorkflowStatus.FAILED
    return run_id


async def test_a_failed_run_forked_onto_the_fixed_version_completes_without_redoing_steps(
    ff: Forgeflow, registry: Registry
) -> None:
    """The fork reuses reserve and quote, runs charge on v2 and records its lineage."""
    source = await failed_order(ff, registry)
    define_v2(registry, ff.pool)
    fork_id = await ff.fork(source, from_step="charge", version=2)
    await ff.drive(fork_id)
    assert await ff.result(fork_id) == "ship:book"
    assert await side_effects(ff.pool) == {
        "reserve:book": 1,
        "quote:book": 1,
        "charge:v1": 1,
        "charge:v2": 1,
        "ship:book": 1,
    }
    record = await ff.status(fork_id)
    assert (record.version, record.forked_from, record.forked_from_step) == (2, source, "charge")
    assert record.restarted_from is None
    assert [s.name for s in record.steps] == ["reserve", "quote", "charge", "ship"]


async def test_a_fork_takes_the_latest_version_unless_told(
    ff: Forgeflow, registry: Registry
) -> None:
    """Without version= the fork runs on the latest registered version."""
    source = await failed_order(ff, registry)
    define_v2(registry, ff.pool)
    fork_id = await ff.fork(source, from_step="quote")
    await ff.drive(fork_id)
    assert (await ff.status(fork_id)).version == 2
    effects = await side_effects(ff.pool)
    assert (effects["reserve:book"], effects["quote:book"]) == (1, 2)


async def test_a_restart_runs_every_step_again_and_links_its_source(
    ff: Forgeflow, registry: Registry
) -> None:
    """A restart is a new run of the same input from the first step."""
    source = await failed_order(ff, registry)
    define_v2(registry, ff.pool)
    new_id = await ff.restart(source)
    await ff.drive(new_id)
    record = await ff.status(new_id)
    assert (record.status, record.version, record.restarted_from) == (
        WorkflowStatus.COMPLETED,
        2,
        source,
    )
    assert (await side_effects(ff.pool))["reserve:book"] == 2


def define_saga(registry: Registry, pool: Any) -> Any:
    async def declined() -> None:
        await record_side_effect(pool, "charge")
        raise RuntimeError("card declined")

    async def undo(result: str) -> None:
        await record_side_effect(pool, f"undo:{result}")

    @workflow(version=1, registry=registry, name="saga")
    async def saga(ctx: WorkflowContext) -> None:
        await ctx.step("reserve", effect, pool, "reserve").compensate(undo).run()
        await ctx.step("charge", declined).run()

    return saga


async def test_a_fork_is_refused_when_a_copied_step_was_compensated(
    ff: Forgeflow, registry: Registry
) -> None:
    """Reusing a compensated step's result would lie: ForkError names the step, no run."""
    await create_side_effects(ff.pool)
    saga = define_saga(registry, ff.pool)
    run_id = await ff.start(saga)
    await ff.drive(run_id)
    assert (await ff.status(run_id)).status is WorkflowStatus.COMPENSATED
    with pytest.raises(ForkError, match="'reserve'") as raised:
        await ff.fork(run_id, from_step="charge")
    assert raised.value.step == "reserve"
    assert await count_rows(ff.pool, "forgeflow.workflow_runs") == 1


async def test_a_restart_of_a_compensated_run_runs_every_step_again(
    ff: Forgeflow, registry: Registry
) -> None:
    """The restarted saga reserves again (and is rolled back again)."""
    await create_side_effects(ff.pool)
    saga = define_saga(registry, ff.pool)
    run_id = await ff.start(saga)
    await ff.drive(run_id)
    new_id = await ff.restart(run_id)
    await ff.drive(new_id)
    assert await side_effects(ff.pool) == {"reserve": 2, "charge": 2, "undo:reserve": 2}
    assert (await ff.status(new_id)).restarted_from == run_id


async def test_bad_repairs_are_refused_and_write_nothing(ff: Forgeflow, registry: Registry) -> None:
    """Unknown run, unrecorded step, running source, unknown version: clear errors."""
    source = await failed_order(ff, registry)
    with pytest.raises(RunNotFound):
        await ff.restart("no-such-run")
    with pytest.raises(RunNotFound):
        await ff.fork("no-such-run", from_step="charge")
    with pytest.raises(ForkError, match="never recorded a step named 'pack'"):
        await ff.fork(source, from_step="pack")
    with pytest.raises(WorkflowNotFound):
        await ff.fork(source, from_step="charge", version=7)
    with pytest.raises(WorkflowNotFound):
        await ff.restart(source, version=7)
    pending = await ff.start("order", "pen")
    with pytest.raises(ForkError, match="still created") as raised:
        await ff.fork(pending, from_step="reserve")
    assert raised.value.step == "reserve"
    assert await count_rows(ff.pool, "forgeflow.workflow_runs") == 2


# -- purge and bulk operations -----------------------------------------------------------


async def age_runs(ff: Forgeflow, run_ids: list[str], by: timedelta) -> None:
    """Pretend the runs ended ``by`` ago."""
    await ff.pool.execute(
        "UPDATE forgeflow.workflow_runs SET completed_at = completed_at - $2::interval"
        " WHERE id = ANY($1::text[])",
        run_ids,
        by,
    )


def define_family(registry: Registry) -> Any:
    @workflow(version=1, registry=registry, name="child")
    async def child(ctx: WorkflowContext) -> str:
        return await ctx.step("work", lambda: "done").run()

    @workflow(version=1, registry=registry, name="parent")
    async def parent(ctx: WorkflowContext) -> str:
        await ctx.hook("approval")  # never waited for: closed when the run ends
        with contextlib.suppress(EventTimeout):
            await ctx.wait_for_event("never.sent", timeout="100ms")
        return await ctx.run_child(child)

    return parent


async def test_purge_deletes_old_finished_runs_with_every_row_and_nothing_else(
    ff: Forgeflow, registry: Registry
) -> None:
    """Old finished trees go whole; recent and unfinished runs and their rows stay."""
    await failed_order(ff, registry)
    old = [r.run_id for r in await ff.list_runs()]
    recent = await ff.start("order", "recent")
    await ff.drive(recent)
    unfinished = await ff.start("order", "waiting")
    await age_runs(ff, [*old, recent], timedelta(hours=1))
    await age_runs(ff, old, timedelta(days=40))
    assert await ff.purge(older_than="30d", dry_run=True) == 1
    assert await ff.purge(older_than="30d") == 1
    assert await ff.purge(older_than="30d") == 0
    left = {r.run_id for r in await ff.list_runs()}
    assert left == {recent, unfinished}
    assert await count_rows(ff.pool, "forgeflow.workflow_steps", "run_id = ANY($1)", old) == 0


async def test_purge_takes_children_hooks_and_event_waits_with_their_parent(
    ff: Forgeflow, registry: Registry
) -> None:
    """A parent's tree is deleted together, and a child is never orphaned."""
    parent = define_family(registry)
    run_id = await ff.start(parent)
    await ff.drive(run_id)
    assert (await ff.status(run_id)).status is WorkflowStatus.COMPLETED
    for table in ("workflow_runs", "hooks", "event_waits"):
        assert await count_rows(ff.pool, f"forgeflow.{table}") > 0, table
    everything = [r.run_id for r in await ff.list_runs()]
    await age_runs(ff, everything, timedelta(hours=2))
    assert await ff.purge(older_than="1h", workflow="child") == 0  # not top-level
    assert await ff.purge(older_than="1h") == 2
    for table in ("workflow_runs", "workflow_steps", "hooks", "event_waits"):
        assert await count_rows(ff.pool, f"forgeflow.{table}") == 0, table


async def test_purge_refuses_bad_arguments(ff: Forgeflow) -> None:
    """A non-positive age or an unfinished status is refused, naming the field."""
    with pytest.raises(ValueError, match="older_than"):
        await ff.purge(older_than="0s")
    with pytest.raises(ValueError, match="status"):
        await ff.purge(older_than="1d", status="running")


async def test_bulk_cancel_and_restart_report_matched_and_acted(
    ff: Forgeflow, registry: Registry
) -> None:
    """Bulk operations are bounded, have a dry run, and refuse an empty filter."""
    source = await failed_order(ff, registry)
    waiting = [await ff.start("order", f"item{i}") for i in range(3)]
    with pytest.raises(ValueError, match="filters"):
        await ff.cancel_many()
    dry = await ff.cancel_many(status="created", dry_run=True)
    assert (dry.matched, dry.acted, dry.dry_run) == (3, 0, True)
    assert (await ff.status(waiting[0])).cancel_requested is False
    done = await ff.cancel_many(workflow="order", status="created", limit=2)
    assert (done.matched, done.acted, done.run_ids) == (3, 2, waiting[:2])
    restarted = await ff.restart_many(workflow="order", status="failed", since="1h")
    assert (restarted.matched, restarted.acted) == (1, 1)
    assert (await ff.status(restarted.new_run_ids[0])).restarted_from == source
    with pytest.raises(ValueError, match="limit"):
        await ff.restart_many(status="failed", limit=0)


async def test_a_retention_below_one_hour_is_refused_naming_the_field(
    dsn: str, ff: Forgeflow
) -> None:
    """connect(retention=) and worker(retention=) refuse less than 1 h."""
    with pytest.raises(ValueError, match="retention: must be at least 1h"):
        async with Forgeflow.connect(dsn, retention="30m"):
            pass
    with pytest.raises(ValueError, match="retention: must be at least 1h"):
        ff.worker(retention="10m")
