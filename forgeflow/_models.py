"""Lifecycle enums and the records returned to users."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "BulkResult",
    "Decision",
    "EndReason",
    "HookRecord",
    "HookStatus",
    "Outcome",
    "StepRecord",
    "StepStatus",
    "WorkflowRecord",
    "WorkflowStatus",
]


class WorkflowStatus(StrEnum):
    """Where a run is in its life."""

    CREATED = "created"  # written by start; no worker has picked it up yet
    RUNNING = "running"  # held by a worker (or about to be taken over after a crash)
    WAITING = "waiting"  # suspended on a durable wait; holds no worker
    COMPLETED = "completed"  # the workflow function returned; output is stored
    COMPENSATING = "compensating"  # rolling back: compensations run in reverse
    COMPENSATED = "compensated"  # rolled back after a failure, a cancel or a timeout
    FAILED = "failed"  # failed with nothing to roll back, or a compensation failed

    @property
    def is_terminal(self) -> bool:
        """True for statuses a run never leaves."""
        return self in _TERMINAL


_TERMINAL = frozenset({WorkflowStatus.COMPLETED, WorkflowStatus.COMPENSATED, WorkflowStatus.FAILED})


class StepStatus(StrEnum):
    """Where a step checkpoint is in its life."""

    PENDING = "pending"  # declared but not started (e.g. a hook not yet waited on)
    RUNNING = "running"  # started; between retry attempts, or a wait in progress
    COMPLETED = "completed"  # result checkpointed; never executed again
    FAILED = "failed"  # failed after all its attempts
    COMPENSATED = "compensated"  # its compensation ran after the run was rolled back
    SKIPPED = "skipped"  # an optional step that failed; its default was returned


class EndReason(StrEnum):
    """Why a run was rolled back."""

    FAILURE = "failure"  # a non-optional step (or the workflow code) raised
    CANCEL = "cancel"  # cancel was requested
    TIMEOUT = "timeout"  # the workflow deadline passed


class HookStatus(StrEnum):
    """Where a resume hook is in its life."""

    PENDING = "pending"  # created; its URL can be sent, the run is not waiting yet
    ACTIVE = "active"  # the run waits on it; it expires at expires_at
    CONSUMED = "consumed"  # a decision was taken; the hook cannot be used again
    EXPIRED = "expired"  # no decision came in time; the run took on_timeout


class Outcome(StrEnum):
    """A decision on a resume hook."""

    APPROVE = "approve"
    REJECT = "reject"
    ESCALATE = "escalate"


class Decision(BaseModel):
    """What a resume hook returned to the waiting run."""

    model_config = ConfigDict(frozen=True)

    outcome: Outcome
    data: dict[str, Any] = {}
    timed_out: bool = False

    @property
    def approved(self) -> bool:
        """True when the outcome is approve."""
        return self.outcome is Outcome.APPROVE


class StepRecord(BaseModel):
    """One checkpoint of a run, as stored."""

    name: str
    kind: str
    status: StepStatus
    result: Any = None
    error: Any = None
    attempts: int = 1
    started_at: datetime | None = None
    completed_at: datetime | None = None
    compensated_at: datetime | None = None
    compensation_error: Any = None


class HookRecord(BaseModel):
    """A resume hook, as stored."""

    hook_id: str
    run_id: str
    workflow: str
    name: str
    step: str
    status: HookStatus
    on_timeout: Outcome
    metadata: dict[str, Any] = {}
    decision: Outcome | None = None
    data: Any = None
    created_at: datetime
    activated_at: datetime | None = None
    expires_at: datetime | None = None
    resolved_at: datetime | None = None
    is_expired: bool = False
    url: str | None = None


class WorkflowRecord(BaseModel):
    """A run and, when asked for, its steps and hooks."""

    run_id: str
    workflow: str
    version: int
    queue: str
    status: WorkflowStatus
    priority: int = 0
    key: str | None = None  # the concurrency key given to start
    input: Any = None
    output: Any = None
    error: Any = None
    end_reason: EndReason | None = None
    cancel_requested: bool = False
    current_step: str | None = None
    wait: Any = None
    wake_at: datetime | None = None
    deadline: datetime | None = None
    parent_run_id: str | None = None
    detached: bool = False
    executions: int = 0
    worker: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    #: The run this one restarts (same input, executed from the start).
    restarted_from: str | None = None
    #: The run this one was forked from, and the step it executes anew from.
    forked_from: str | None = None
    forked_from_step: str | None = None
    #: The schedule that started the run and its fire time (None for other runs).
    schedule: str | None = None
    scheduled_at: datetime | None = None
    steps: list[StepRecord] = []
    hooks: list[HookRecord] = []

    @property
    def is_terminal(self) -> bool:
        """True once the run can no longer change."""
        return self.status.is_terminal


class BulkResult(BaseModel):
    """What a bulk operation (or its dry run) matched and acted on."""

    #: How many runs match the filters (all of them, not only the first ``limit``).
    matched: int
    #: How many were cancelled or restarted (0 on a dry run).
    acted: int
    #: The runs acted on (a dry run: the runs that would be), at most ``limit``.
    run_ids: list[str] = []
    #: For a restart, the new runs' ids in the order of ``run_ids``.
    new_run_ids: list[str] = []
    dry_run: bool = False
