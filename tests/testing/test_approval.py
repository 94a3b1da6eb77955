"""Document approval and escalation, driven through days of engine time by the env."""

from __future__ import annotations

from datetime import timedelta

import pytest

from forgeflow import HookNotFound, StepStatus, WorkflowFailed, WorkflowStatus
from forgeflow.testing import StepSummary, WorkflowTestEnv

from .workflows import Document, document_approval, expense_approval

DOC = Document(id="doc-1", title="Q3 report")


async def test_unanswered_approval_times_out_into_the_reject_branch_and_compensates(
    forgeflow_env: WorkflowTestEnv, journal: list[str]
) -> None:
    """72 h without an answer takes on_timeout="reject" and rolls the saga back, newest first."""
    env = forgeflow_env
    started = env.clock.now()
    run_id = await env.start(document_approval, DOC)
    waiting = await env.run_until_waiting(run_id)
    assert waiting.status is WorkflowStatus.WAITING
    assert waiting.wake_at == started + timedelta(hours=72)

    await env.advance(timedelta(hours=71, minutes=59))
    assert (await env.client.status(run_id)).status is WorkflowStatus.WAITING

    await env.advance(timedelta(minutes=1))
    record = await env.client.status(run_id)
    assert record.status is WorkflowStatus.COMPENSATED
    assert record.completed_at == started + timedelta(hours=72)
    assert await env.compensations(run_id) == ["lock_document", "reserve_slot"]
    assert journal[-2:] == ["unlock_document lock-doc-1", "release_slot slot-doc-1"]
    assert "publish doc-1" not in journal
    with pytest.raises(WorkflowFailed, match="no answer in time"):
        await env.result(run_id)


async def test_approve_helper_resumes_the_hook_with_its_data(
    forgeflow_env: WorkflowTestEnv,
) -> None:
    """env.approve answers the run's hook by name and lets the run finish."""
    env = forgeflow_env
    run_id = await env.start(document_approval, DOC)
    record = await env.approve(run_id, "approval", {"by": "dana"})
    assert record.status is WorkflowStatus.COMPLETED
    assert await env.result(run_id) == "published doc-1 in slot-doc-1 by dana"
    assert await env.steps(run_id) == [
        ("reserve_slot", StepStatus.COMPLETED, 1, "slot-doc-1"),
        ("lock_document", StepStatus.COMPLETED, 1, "lock-doc-1"),
        ("send_approval_email", StepStatus.COMPLETED, 1, None),
        ("publish", StepStatus.COMPLETED, 1, "published doc-1 in slot-doc-1 by dana"),
    ]
    assert await env.compensations(run_id) == []


async def test_reject_helper_takes_the_reject_branch(forgeflow_env: WorkflowTestEnv) -> None:
    """env.reject answers the hook with reject; the saga is compensated in reverse order."""
    env = forgeflow_env
    run_id = await env.start(document_approval, DOC)
    record = await env.reject(run_id, "approval", {"reason": "typos"})
    assert record.status is WorkflowStatus.COMPENSATED
    assert await env.compensations(run_id) == ["lock_document", "reserve_slot"]
    steps = await env.steps(run_id)
    assert [s.name for s in steps] == ["reserve_slot", "lock_document", "send_approval_email"]
    assert [s.status for s in steps] == [
        StepStatus.COMPENSATED,
        StepStatus.COMPENSATED,
        StepStatus.COMPLETED,
    ]


async def test_escalate_helper_moves_the_chain_to_the_next_approver(
    forgeflow_env: WorkflowTestEnv,
) -> None:
    """env.escalate answers one hook; the run waits on the next one, which env.approve answers."""
    env = forgeflow_env
    run_id = await env.start(expense_approval, 900)
    record = await env.escalate(run_id, "manager")
    assert record.status is WorkflowStatus.WAITING
    assert [(h.name, h.status.value) for h in record.hooks] == [
        ("manager", "consumed"),
        ("director", "active"),
    ]
    await env.approve(run_id, "director")
    assert await env.result(run_id) == "900 approved by director"


async def test_silence_escalates_after_the_hook_timeout(forgeflow_env: WorkflowTestEnv) -> None:
    """Each approver's 48 h passes in one advance; on_timeout="escalate" walks the chain."""
    env = forgeflow_env
    run_id = await env.start(expense_approval, 50)
    await env.run_until_waiting(run_id)
    await env.advance(timedelta(days=4))
    assert await env.result(run_id) == "50 escalated past the director"


async def test_deciding_a_hook_the_run_does_not_have_is_an_error(
    forgeflow_env: WorkflowTestEnv,
) -> None:
    """A hook name with no open hook raises HookNotFound naming the hooks the run has."""
    env = forgeflow_env
    run_id = await env.start(expense_approval, 10)
    with pytest.raises(HookNotFound, match=r"manager \(active\)"):
        await env.approve(run_id, "cfo")


async def test_steps_are_plain_records(forgeflow_env: WorkflowTestEnv) -> None:
    """env.steps gives StepSummary records with named fields, waits only when asked for."""
    env = forgeflow_env
    run_id = await env.start(document_approval, DOC)
    await env.run_until_waiting(run_id)
    first = (await env.steps(run_id))[0]
    assert isinstance(first, StepSummary)
    assert (first.name, first.status, first.attempts, first.result) == (
        "reserve_slot",
        "completed",
        1,
        "slot-doc-1",
    )
    kinds = [s.name for s in await env.steps(run_id, include_waits=True)]
    assert kinds == ["reserve_slot", "lock_document", "hook:approval", "send_approval_email"]
