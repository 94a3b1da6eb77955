"""Checking a deploy: unfinished runs replayed on new code, with nothing executed or written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from forgeflow import (
    Forgeflow,
    Registry,
    Verdict,
    WorkflowContext,
    WorkflowNotFound,
    WorkflowStatus,
    workflow,
)
from tests.support import deploy_new, deploy_old
from tests.support.db import connect_direct
from tests.support.waits_time import until

TABLES = ("forgeflow.workflow_runs", "forgeflow.workflow_steps", "forgeflow.hooks", "effects")


def waiting(record: Any) -> bool:
    return bool(record.status is WorkflowStatus.WAITING)


async def snapshot(dsn: str) -> dict[str, list[str]]:
    """Every row of the tables a check could touch, as text, in a stable order."""
    conn = await connect_direct(dsn)
    try:
        return {
            table: [r[0] for r in await conn.fetch(f"SELECT t::text FROM {table} t ORDER BY 1")]
            for table in TABLES
        }
    finally:
        await conn.close()


async def effects(dsn: str) -> list[str]:
    conn = await connect_direct(dsn)
    try:
        return sorted(r[0] for r in await conn.fetch("SELECT name FROM effects"))
    finally:
        await conn.close()


@pytest.fixture
async def in_flight(dsn: str) -> AsyncIterator[dict[str, list[str]]]:
    """Two runs of each production workflow, executed by the old code up to their hook."""
    conn = await connect_direct(dsn)
    await conn.execute("CREATE TABLE effects (name text NOT NULL)")
    await conn.close()
    runs: dict[str, list[str]] = {}
    async with Forgeflow.connect(dsn, registry=deploy_old.registry) as ff, ff.worker():
        for name in ("renamed", "inserted", "guarded"):
            runs[name] = [await ff.start(name, f"{name}-{i}") for i in range(2)]
        for ids in runs.values():
            for run_id in ids:
                await until(ff, run_id, waiting)
    yield runs


async def test_check_reports_the_renamed_and_the_inserted_step_and_passes_the_patch(
    dsn: str, in_flight: dict[str, list[str]]
) -> None:
    """Renamed and inserted steps diverge, with their names; the patched insertion passes."""
    before = await snapshot(dsn)
    async with Forgeflow.connect(dsn, registry=deploy_new.registry) as ff:
        report = await ff.check()
    verdicts = {(r.workflow, r.verdict, r.step, r.expected) for r in report.runs}
    assert verdicts == {
        ("renamed", Verdict.DIVERGES, "reserve_stock", "reserve"),
        ("inserted", Verdict.DIVERGES, "notify", "hook:approval"),
        ("guarded", Verdict.COMPATIBLE, None, None),
    }
    assert sorted(r.run_id for r in report.runs) == sorted(
        i for ids in in_flight.values() for i in ids
    )
    assert not report.ok
    assert {r.run_id for r in report.problems} == {*in_flight["renamed"], *in_flight["inserted"]}
    assert await snapshot(dsn) == before
    assert await effects(dsn) == sorted(
        f"reserve {name}-{i}" for name in in_flight for i in range(2)
    )


async def test_patched_runs_keep_their_old_branch_and_new_runs_take_the_new_one(
    dsn: str, in_flight: dict[str, list[str]]
) -> None:
    """After approval, runs that passed the patch point before it existed finish the old way."""
    async with Forgeflow.connect(dsn, registry=deploy_new.registry) as ff:
        async with ff.worker(concurrency=8):
            fresh = await ff.start("guarded", "guarded-new")
            await until(ff, fresh, waiting)
            for run_id in [*in_flight["guarded"], fresh]:
                (hook,) = (await ff.status(run_id)).hooks
                await ff.resume_hook(hook.hook_id, decision="approve")
            outputs = {
                run_id: await ff.result(run_id, timeout=30) for run_id in in_flight["guarded"]
            }
            assert await ff.result(fresh, timeout=30) == "new"
        steps = {s.name: s for s in await ff.steps(in_flight["guarded"][0])}
    assert set(outputs.values()) == {"old"}
    assert steps["patch:notify-first"].kind == "patch"
    assert steps["patch:notify-first"].result is False
    done = await effects(dsn)
    assert "notify guarded-new" in done
    assert not [e for e in done if e.startswith("notify guarded-") and e != "notify guarded-new"]
    assert {"ship guarded-0", "ship guarded-1", "ship guarded-new"} <= set(done)


async def test_a_new_run_decides_its_patch_once_and_replays_it(
    dsn: str, registry: Registry
) -> None:
    """A patch decided True on the frontier stays True when the run is replayed later."""
    seen: list[bool] = []

    @workflow(version=1, registry=registry)
    async def flow(ctx: WorkflowContext) -> bool:
        await ctx.step("a", lambda: 1)
        decided = await ctx.patched("fix")
        seen.append(decided)
        await ctx.wait_for_hook("go")
        return decided and await ctx.patched("fix")

    async with Forgeflow.connect(dsn, registry=registry) as ff, ff.worker():
        run_id = await ff.start(flow)
        record = await until(ff, run_id, waiting)
        assert (await ff.check(registry)).ok
        await ff.resume_hook(record.hooks[0].hook_id, decision="approve")
        assert await ff.result(run_id, timeout=30) is True
    # The first execution, the check's replay and the replay after the decision.
    assert seen == [True, True, True]


async def test_replay_failures_and_filters(dsn: str, registry: Registry) -> None:
    """A run the new code cannot replay fails with its traceback; --workflow narrows the check."""

    @workflow(version=1, registry=registry)
    async def orders(ctx: WorkflowContext, n: int) -> int:
        await ctx.step("a", lambda: n)
        await ctx.wait_for_hook("go")
        return n

    async with Forgeflow.connect(dsn, registry=registry) as ff, ff.worker():
        run_id = await ff.start(orders, 3)
        await until(ff, run_id, waiting)

    broken = Registry()

    @workflow(version=1, registry=broken, name="orders")
    async def orders_v1(ctx: WorkflowContext, n: int) -> int:
        value = await ctx.step("a", lambda: n)
        if value == 3:
            raise RuntimeError("boom on replay")
        return n

    @workflow(version=2, registry=broken, name="orders")
    async def orders_v2(ctx: WorkflowContext, n: int) -> int:
        return n

    async with Forgeflow.connect(dsn, registry=broken) as ff:
        (result,) = (await ff.check(workflow="orders")).runs
        assert result.verdict is Verdict.FAILS
        assert result.error is not None
        assert "RuntimeError: boom on replay" in result.error
        assert "Traceback" in result.error
        assert result.to_json().keys() == {
            "run_id",
            "workflow",
            "version",
            "verdict",
            "step",
            "expected",
            "error",
        }
        with pytest.raises(WorkflowNotFound):
            await ff.check(workflow="nothing")
        assert (await ff.check(_only_v2())).runs == []


def _only_v2() -> Registry:
    """A registry defining only a version no run is on: nothing to check."""
    only = Registry()

    @workflow(version=2, registry=only, name="orders")
    async def orders(ctx: WorkflowContext, n: int) -> int:
        return n

    return only
