"""A run's writes and its takeover never overlap.

A write made for a run (a checkpoint) and a claim of that run are mutually exclusive in
PostgreSQL: a claim never takes a run whose write is in flight, even once the lease it
was checked against has lapsed, so the new owner's replay always sees that write. Each
test holds a real checkpoint statement in flight (``tests.support.holds``) and claims
with real statements on other connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from forgeflow import Forgeflow, Registry, StepStatus, WorkflowContext, workflow
from forgeflow._journal import Checkpoint
from forgeflow._store import Store
from tests.support.db import direct
from tests.support.holds import step_held, waiting_checkpoint

LEASE = 30.0
EXPIRE = (
    "UPDATE forgeflow.workflow_runs SET lease_expires_at = now() - interval '1 second'"
    " WHERE id = $1"
)


@pytest.fixture
async def stores(dsn: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two workers' stores: "a" executes the run, "b" would take it over."""
    a = await Store.open(direct(dsn), min_size=1, max_size=2, migrate=False)
    b = await Store.open(direct(dsn), min_size=1, max_size=2, migrate=False)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def started(ff: Forgeflow, registry: Registry, a: Store, queue: str = "default") -> str:
    """A run of a one-step workflow on ``queue``, claimed by worker "a"."""

    @workflow(version=1, registry=registry, name="exclusive", queue=queue)
    async def exclusive(ctx: WorkflowContext) -> int:
        return 1

    run_id = await ff.start(exclusive)
    assert await a.claim_run(run_id, "a", LEASE, datetime.now(UTC)) is not None
    return run_id


def checkpoint(name: str) -> Checkpoint:
    now = datetime.now(UTC)
    return Checkpoint(name, "step", StepStatus.COMPLETED, "1", None, None, 1, now, now)


@pytest.mark.parametrize("limited", [False, True], ids=["queue", "limited queue"])
async def test_a_claim_skips_a_run_whose_checkpoint_is_in_flight(
    ff: Forgeflow, dsn: str, registry: Registry, stores: tuple[Store, Store], limited: bool
) -> None:
    """The lease lapses while a checkpoint commits: no claim takes the run meanwhile,
    whichever way it claims, and the claim after it sees the checkpoint."""
    a, b = stores
    queue = "exclusive_limited" if limited else "default"
    if limited:
        await a.declare_queue(queue, 5, None, None, None)
    run_id = await started(ff, registry, a, queue)
    async with step_held(dsn, run_id, "x"):
        write = asyncio.create_task(a.checkpoint_step(run_id, "a", checkpoint("x")))
        await waiting_checkpoint(ff.pool)
        await ff.pool.execute(EXPIRE, run_id)
        now = datetime.now(UTC)
        claim = (now, [queue], [("exclusive", 1)], 10, "b", LEASE)
        assert await b.claim_runs(*claim) == []
        assert await b.claim_run(run_id, "b", LEASE, now) is None
        assert not [r for r in await b.claim_limited_runs(*claim) if r["id"] is not None]
    # Checked while the lease held: the checkpoint is written (no cancel requested).
    assert await write is False
    taken = await b.claim_run(run_id, "b", LEASE, datetime.now(UTC))
    assert taken is not None and taken["has_steps"]
    assert [r["name"] for r in await b.load_steps(run_id)] == ["x"]


async def test_a_checkpoint_after_a_takeover_is_refused(
    ff: Forgeflow, registry: Registry, stores: tuple[Store, Store]
) -> None:
    """Once another worker has claimed the run, the old owner's checkpoint writes nothing."""
    a, b = stores
    run_id = await started(ff, registry, a)
    await ff.pool.execute(EXPIRE, run_id)
    assert await b.claim_run(run_id, "b", LEASE, datetime.now(UTC)) is not None
    assert await a.checkpoint_step(run_id, "a", checkpoint("x")) is None
    assert await b.load_steps(run_id) == []
