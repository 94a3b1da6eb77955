"""The errors forgeflow raises.

Every public error derives from :class:`ForgeflowError`; each class's docstring is its
default message::

    ForgeflowError
    ├── ConfigurationError
    ├── DatabaseError                 a PostgreSQL error, wrapped
    ├── WorkflowNotFound
    ├── DuplicateWorkflowError
    ├── InputValidationError          (also a ValueError)
    ├── IdempotencyConflict           HTTP 409
    ├── RunNotFound
    ├── ForkError                     HTTP 409: the run cannot be forked from that step
    ├── ScheduleNotFound              HTTP 404
    ├── StepError
    │   ├── StepFailed
    │   ├── StepTimeout
    │   ├── SerializationError
    │   └── RecoveryLimitExceeded     a step kept killing the workers executing it
    ├── WaitTimeout
    │   ├── EventTimeout
    │   └── PollTimeout
    ├── ChildWorkflowFailed
    ├── WorkflowFailed
    │   └── WorkflowCancelled
    ├── ResultTimeout
    └── HookError
        ├── HookNotFound              HTTP 404
        ├── HookAlreadyUsed           HTTP 409
        └── HookExpired               HTTP 410

Internal control flow (suspending a run, stopping it for a cancel, a lost lease) uses
``BaseException`` subclasses in ``forgeflow._signals`` so that user code catching
``Exception`` cannot swallow them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ChildWorkflowFailed",
    "ConfigurationError",
    "DatabaseError",
    "DuplicateWorkflowError",
    "EventTimeout",
    "ForgeflowError",
    "ForkError",
    "HookAlreadyUsed",
    "HookError",
    "HookExpired",
    "HookNotFound",
    "IdempotencyConflict",
    "InputValidationError",
    "PollTimeout",
    "RecoveryLimitExceeded",
    "ResultTimeout",
    "RunNotFound",
    "ScheduleNotFound",
    "SerializationError",
    "StepError",
    "StepFailed",
    "StepTimeout",
    "WaitTimeout",
    "WorkflowCancelled",
    "WorkflowFailed",
    "WorkflowNotFound",
]


class ForgeflowError(Exception):
    """A forgeflow operation failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        """The human-readable message."""
        return str(self.args[0]) if self.args else ""


class ConfigurationError(ForgeflowError):
    """forgeflow is not configured correctly."""


class DatabaseError(ForgeflowError):
    """The database refused or failed an operation."""


class WorkflowNotFound(ForgeflowError):
    """No workflow is registered under that name and version."""


class DuplicateWorkflowError(ForgeflowError):
    """A workflow with that name and version is already registered."""


class InputValidationError(ForgeflowError, ValueError):
    """The workflow input does not match the workflow's input type."""

    def __init__(self, message: str | None = None, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.errors: list[dict[str, Any]] = errors or []


class IdempotencyConflict(ForgeflowError):
    """The idempotency key is already used by a run of another workflow."""

    def __init__(
        self, message: str | None = None, *, key: str = "", workflow: str = "", run_id: str = ""
    ) -> None:
        super().__init__(message)
        self.key = key
        self.workflow = workflow
        self.run_id = run_id


class RunNotFound(ForgeflowError):
    """No run has that id."""


class ForkError(ForgeflowError):
    """The run cannot be forked from that step."""

    status_code = 409

    def __init__(self, message: str | None = None, *, run_id: str = "", step: str = "") -> None:
        super().__init__(message)
        self.run_id = run_id
        self.step = step


class ScheduleNotFound(ForgeflowError):
    """No schedule by that name."""


class StepError(ForgeflowError):
    """A step failed."""

    def __init__(self, message: str | None = None, *, step: str = "") -> None:
        super().__init__(message)
        self.step = step


class StepFailed(StepError):
    """A step failed after all its attempts."""

    def __init__(
        self,
        message: str | None = None,
        *,
        step: str = "",
        attempts: int = 1,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message, step=step)
        self.attempts = attempts
        self.error_type = error_type


class StepTimeout(StepError):
    """A step attempt took longer than its timeout."""


class SerializationError(StepError):
    """A value could not be serialized to JSON."""


class RecoveryLimitExceeded(StepError):
    """The run's executions kept ending in a crash at the same step; it was rolled back."""

    def __init__(self, message: str | None = None, *, step: str = "", recoveries: int = 0) -> None:
        super().__init__(message, step=step)
        self.recoveries = recoveries


class WaitTimeout(ForgeflowError):
    """A durable wait reached its timeout."""


class EventTimeout(WaitTimeout):
    """No matching event arrived before the timeout."""


class PollTimeout(WaitTimeout):
    """A poll reached its timeout or its attempt limit before its condition held."""


class ChildWorkflowFailed(ForgeflowError):
    """A child workflow did not complete."""

    def __init__(self, message: str | None = None, *, run_id: str = "", status: str = "") -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status


class WorkflowFailed(ForgeflowError):
    """The run did not complete."""

    def __init__(
        self,
        message: str | None = None,
        *,
        run_id: str = "",
        status: str = "",
        reason: str | None = None,
        error: Any = None,
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status
        self.reason = reason
        self.error = error


class WorkflowCancelled(WorkflowFailed):
    """The run was cancelled."""


class ResultTimeout(ForgeflowError, TimeoutError):
    """The run did not finish within the time given to wait for it."""


class HookError(ForgeflowError):
    """A resume hook cannot take a decision."""

    status_code = 400


class HookNotFound(HookError):
    """No resume hook has that id."""

    status_code = 404


class HookAlreadyUsed(HookError):
    """The resume hook has already received a decision."""

    status_code = 409


class HookExpired(HookError):
    """The resume hook has expired."""

    status_code = 410
