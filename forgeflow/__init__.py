"""forgeflow: durable sagas for Python on PostgreSQL."""

from ._client import Forgeflow
from ._clock import Clock, SystemClock
from ._context import WorkflowContext
from ._definitions import Registry, WorkflowDefinition, default_registry, workflow
from ._durations import parse_duration
from ._events import LifecycleEvent
from ._models import (
    Decision,
    EndReason,
    HookRecord,
    HookStatus,
    Outcome,
    StepRecord,
    StepStatus,
    WorkflowRecord,
    WorkflowStatus,
)
from ._schedules import ScheduleRecord
from ._settings import Settings
from ._steps import RetryPolicy, StepRunner
from ._waits import ChildHandle, EventWait, Hook
from ._worker import Worker
from .errors import (
    ChildWorkflowFailed,
    ConfigurationError,
    DatabaseError,
    DuplicateWorkflowError,
    EventTimeout,
    ForgeflowError,
    HookAlreadyUsed,
    HookError,
    HookExpired,
    HookNotFound,
    IdempotencyConflict,
    InputValidationError,
    PollTimeout,
    RecoveryLimitExceeded,
    ResultTimeout,
    RunNotFound,
    ScheduleNotFound,
    SerializationError,
    StepError,
    StepFailed,
    StepTimeout,
    WaitTimeout,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowNotFound,
)

__version__ = "0.1.0"

__all__ = [
    "ChildHandle",
    "ChildWorkflowFailed",
    "Clock",
    "ConfigurationError",
    "DatabaseError",
    "Decision",
    "DuplicateWorkflowError",
    "EndReason",
    "EventTimeout",
    "EventWait",
    "Forgeflow",
    "ForgeflowError",
    "Hook",
    "HookAlreadyUsed",
    "HookError",
    "HookExpired",
    "HookNotFound",
    "HookRecord",
    "HookStatus",
    "IdempotencyConflict",
    "InputValidationError",
    "LifecycleEvent",
    "Outcome",
    "PollTimeout",
    "RecoveryLimitExceeded",
    "Registry",
    "ResultTimeout",
    "RetryPolicy",
    "RunNotFound",
    "ScheduleNotFound",
    "ScheduleRecord",
    "SerializationError",
    "Settings",
    "StepError",
    "StepFailed",
    "StepRecord",
    "StepRunner",
    "StepStatus",
    "StepTimeout",
    "SystemClock",
    "WaitTimeout",
    "Worker",
    "WorkflowCancelled",
    "WorkflowContext",
    "WorkflowDefinition",
    "WorkflowFailed",
    "WorkflowNotFound",
    "WorkflowRecord",
    "WorkflowStatus",
    "default_registry",
    "parse_duration",
    "workflow",
]
