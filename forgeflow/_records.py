"""Turns database rows into the public record models."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from ._models import HookRecord, StepRecord, WorkflowRecord
from ._serde import loads

__all__ = ["hook_record", "hook_url", "run_record", "step_record"]


def hook_url(base_url: str, hook_id: str) -> str:
    """The URL of a hook under ``base_url``: its id percent-encoded as one path segment."""
    # Every character outside the unreserved set is escaped, "/" included: a hook id is
    # built from a hook name that may be any string, and a "/", "?", "#" or a dot segment
    # left as is would end the path early or be rewritten by the client.
    return f"{base_url.rstrip('/')}/hooks/{quote(hook_id, safe='')}"


def step_record(row: Any) -> StepRecord:
    """A workflow_steps row as a StepRecord."""
    return StepRecord(
        name=row["name"],
        kind=row["kind"],
        status=row["status"],
        result=loads(row["result"]),
        error=loads(row["error"]),
        attempts=row["attempts"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        compensated_at=row["compensated_at"],
        compensation_error=loads(row["compensation_error"]),
    )


def hook_record(row: Any, base_url: str, now: datetime) -> HookRecord:
    """A hooks row as a HookRecord with is_expired and url."""
    expires = row["expires_at"]
    expired = row["status"] == "expired" or (
        row["status"] in ("pending", "active") and expires is not None and expires <= now
    )
    return HookRecord(
        hook_id=row["id"],
        run_id=row["run_id"],
        workflow=row["workflow"],
        name=row["name"],
        step=row["step"],
        status=row["status"],
        on_timeout=row["on_timeout"],
        metadata=loads(row["metadata"]) or {},
        decision=row["decision"],
        data=loads(row["data"]),
        created_at=row["created_at"],
        activated_at=row["activated_at"],
        expires_at=expires,
        resolved_at=row["resolved_at"],
        is_expired=expired,
        url=hook_url(base_url, row["id"]),
    )


def run_record(row: Any, steps: list[StepRecord], hooks: list[HookRecord]) -> WorkflowRecord:
    """A workflow_runs row (plus steps and hooks) as a WorkflowRecord."""
    current = None
    for step in steps:
        if step.status in ("running", "pending") or current is None or step.completed_at:
            current = step.name
    status = row["status"]
    return WorkflowRecord(
        run_id=row["id"],
        workflow=row["workflow"],
        version=row["version"],
        queue=row["queue"],
        status=status,
        priority=row.get("priority", 0),
        key=row.get("concurrency_key"),
        input=loads(row["input"]),
        output=loads(row["output"]),
        error=loads(row["error"]),
        end_reason=row["end_reason"],
        cancel_requested=row["cancel_requested"],
        current_step=current,
        wait=loads(row["wait"]),
        wake_at=row["runnable_at"] if status == "waiting" else None,
        deadline=row["deadline"],
        parent_run_id=row["parent_run_id"],
        detached=row["detached"],
        executions=row["executions"],
        worker=row["lease_owner"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        restarted_from=row.get("restarted_from"),
        forked_from=row.get("forked_from"),
        forked_from_step=row.get("forked_from_step"),
        schedule=row.get("schedule"),
        scheduled_at=row.get("scheduled_at"),
        steps=steps,
        hooks=hooks,
    )
