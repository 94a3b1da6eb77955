"""Hooks survive worker crashes: a decision resumes the run on whichever worker is alive."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from forgeflow import Forgeflow, HookStatus, WorkflowStatus
from tests.support.db import create_side_effects, side_effects, wait_for_side_effect
from tests.support.waits_time import until
from tests.support.waits_worker import kill, spawn
from tests.support.waits_workflows import Approval, document_approval, registry

MODULE = "tests.support.waits_workflows"


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[Forgeflow]:
    """A client that starts and resumes runs; the workers are other processes."""
    await create_side_effects(dsn)
    async with Forgeflow.connect(dsn, registry=registry) as ff:
        yield ff


async def test_a_worker_killed_while_a_run_waits_on_a_hook_changes_nothing(
    client: Forgeflow, dsn: str
) -> None:
    """After SIGKILL of the worker, the decision still resumes the run on a new worker."""
    run_id = await client.start(document_approval, Approval(dsn=dsn, document="d1"))
    worker = await spawn(dsn, MODULE)
    try:
        await until(client, run_id, lambda r: r.status is WorkflowStatus.WAITING)
    finally:
        assert await kill(worker) == -9
    record = await client.status(run_id)
    assert record.hooks[0].status is HookStatus.ACTIVE
    assert (
        await client.resume_hook(f"approval-{run_id}", decision="approve", data={"by": "ann"})
        == run_id
    )
    worker = await spawn(dsn, MODULE)
    try:
        output = await client.result(run_id, timeout=60)
    finally:
        await kill(worker)
    assert output == {"outcome": "approve", "data": {"by": "ann"}}
    assert await side_effects(dsn) == {"email:d1": 1, "archive:d1": 1}


async def test_a_decision_for_a_run_whose_worker_died_mid_step_is_kept(
    client: Forgeflow, dsn: str
) -> None:
    """A decision sent while a killed worker still holds the run resumes it after takeover."""
    run_id = await client.start(document_approval, Approval(dsn=dsn, document="d2"))
    worker = await spawn(dsn, MODULE, lease="1s", env={"WAITS_BLOCK_EMAIL": "1"})
    try:
        await wait_for_side_effect(dsn, "email:d2")  # the worker hangs inside the email step
    finally:
        assert await kill(worker) == -9
    assert (await client.status(run_id)).hooks[0].status is HookStatus.PENDING
    await client.resume_hook(f"approval-{run_id}", decision="reject")
    worker = await spawn(dsn, MODULE, lease="1s")
    try:
        output = await client.result(run_id, timeout=60)
    finally:
        await kill(worker)
    assert output == {"outcome": "reject", "data": {}}
    # The in-flight email step ran again on the new worker (at-least-once); nothing else did.
    assert await side_effects(dsn) == {"email:d2": 2, "archive:d2": 1}
    record = await client.status(run_id)
    assert record.executions == 2
    assert record.hooks[0].status is HookStatus.CONSUMED
    assert record.hooks[0].activated_at is None  # the wait found the decision already there
