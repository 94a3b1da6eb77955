"""forgeflow: durable sagas for Python on PostgreSQL."""

from ._check import CheckReport, RunCheck, Verdict
from ._client import Forgeflow
from ._clock import Clock, SystemClock
from ._context import WorkflowContext
from ._decorator import workflow
from ._definitions import Registry, WorkflowDefinition, default_registry
from ._durations import parse_duration
from ._events import LifecycleEvent
from ._models import (
    BulkResult,
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
from ._queues import Queue, QueueState
from ._schedules import ScheduleRecord
from ._settings import Settings
from ._start_options import Debounce
from ._steps import RetryPolicy, StepRunner
from ._transaction import TransactionRunner
from ._waits import ChildHandle, EventWait, Hook
from ._worker import Worker
from .errors import (
    ChildWorkflowFailed,
    ConfigurationError,
    ContextClosed,
    DatabaseError,
    DuplicateWorkflowError,
    EventTimeout,
    ForgeflowError,
    ForkError,
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
    "BulkResult",
    "CheckReport",
    "ChildHandle",
    "ChildWorkflowFailed",
    "Clock",
    "ConfigurationError",
    "ContextClosed",
    "DatabaseError",
    "Debounce",
    "Decision",
    "DuplicateWorkflowError",
    "EndReason",
    "EventTimeout",
    "EventWait",
    "Forgeflow",
    "ForgeflowError",
    "ForkError",
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
    "Queue",
    "QueueState",
    "RecoveryLimitExceeded",
    "Registry",
    "ResultTimeout",
    "RetryPolicy",
    "RunCheck",
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
    "TransactionRunner",
    "Verdict",
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
