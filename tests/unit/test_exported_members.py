"""The public API: exactly these names are exported by forgeflow."""

from __future__ import annotations

import types

import forgeflow

EXPECTED = {
    "BulkResult",
    "CheckReport",
    "ChildHandle",
    "ChildWorkflowFailed",
    "Clock",
    "ConfigurationError",
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
    "Registry",
    "ResultTimeout",
    "RetryPolicy",
    "RunCheck",
    "RunNotFound",
    "ContextClosed",
    "ScheduleNotFound",
    "ScheduleRecord",
    "RecoveryLimitExceeded",
    "SerializationError",
    "Settings",
    "StepError",
    "StepFailed",
    "StepRecord",
    "StepRunner",
    "TransactionRunner",
    "StepStatus",
    "StepTimeout",
    "SystemClock",
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
}


def test_all_lists_exactly_the_public_names() -> None:
    """forgeflow.__all__ is the pinned set of public names, each listed once."""
    assert len(forgeflow.__all__) == len(set(forgeflow.__all__))
    assert set(forgeflow.__all__) == EXPECTED


def test_every_public_attribute_is_in_all() -> None:
    """Nothing public is importable from forgeflow without being declared in __all__."""
    public = {
        name
        for name, value in vars(forgeflow).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(forgeflow.__all__)


def test_every_exported_name_resolves_to_a_forgeflow_object() -> None:
    """Each name in __all__ exists and is defined inside the forgeflow package."""
    for name in forgeflow.__all__:
        value = getattr(forgeflow, name)
        module = getattr(value, "__module__", None) or type(value).__module__
        assert module.split(".")[0] == "forgeflow", name


def test_every_exported_class_and_function_has_a_docstring() -> None:
    """Public names carry a docstring (the error classes' docstrings are their messages)."""
    for name in forgeflow.__all__:
        value = getattr(forgeflow, name)
        if isinstance(value, type | types.FunctionType):
            assert (value.__doc__ or "").strip(), name


def test_the_package_has_a_version() -> None:
    """forgeflow.__version__ is a dotted version string."""
    assert forgeflow.__version__.count(".") >= 2
