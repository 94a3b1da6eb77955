"""The error tree: one root, the documented parents, docstrings as default messages."""

from __future__ import annotations

import pytest

import forgeflow
from forgeflow import errors
from forgeflow._signals import (
    CancelSignal,
    EngineFault,
    LeaseLost,
    ReleaseSignal,
    SuspendSignal,
)

# child -> parent, as drawn in the docstring of forgeflow.errors
TREE = {
    "ConfigurationError": "ForgeflowError",
    "DatabaseError": "ForgeflowError",
    "WorkflowNotFound": "ForgeflowError",
    "DuplicateWorkflowError": "ForgeflowError",
    "InputValidationError": "ForgeflowError",
    "IdempotencyConflict": "ForgeflowError",
    "RunNotFound": "ForgeflowError",
    "ForkError": "ForgeflowError",
    "ScheduleNotFound": "ForgeflowError",
    "StepError": "ForgeflowError",
    "StepFailed": "StepError",
    "StepTimeout": "StepError",
    "SerializationError": "StepError",
    "RecoveryLimitExceeded": "StepError",
    "WaitTimeout": "ForgeflowError",
    "EventTimeout": "WaitTimeout",
    "PollTimeout": "WaitTimeout",
    "ChildWorkflowFailed": "ForgeflowError",
    "WorkflowFailed": "ForgeflowError",
    "WorkflowCancelled": "WorkflowFailed",
    "ResultTimeout": "ForgeflowError",
    "HookError": "ForgeflowError",
    "HookNotFound": "HookError",
    "HookAlreadyUsed": "HookError",
    "HookExpired": "HookError",
}


def test_the_tree_matches_its_drawing() -> None:
    """Each error's direct forgeflow parent is the one the module docstring draws."""
    for child, parent in TREE.items():
        cls = getattr(errors, child)
        bases = [b.__name__ for b in cls.__bases__ if b.__module__ == errors.__name__]
        assert bases == [parent], child
        assert child in (errors.__doc__ or ""), child


def test_every_error_is_listed_drawn_and_exported() -> None:
    """errors.__all__ is the root plus the tree, and forgeflow re-exports every one."""
    assert set(errors.__all__) == {"ForgeflowError", *TREE}
    for name in errors.__all__:
        assert getattr(forgeflow, name) is getattr(errors, name)
        assert issubclass(getattr(errors, name), errors.ForgeflowError)


@pytest.mark.parametrize("name", sorted(TREE))
def test_the_docstring_is_the_default_message(name: str) -> None:
    """An error raised without a message says what its docstring says."""
    cls = getattr(errors, name)
    error = cls()
    assert str(error) == (cls.__doc__ or "").strip()
    assert error.message == str(error)


def test_a_given_message_replaces_the_default() -> None:
    """A message passed to the constructor is the error's text."""
    assert str(errors.RunNotFound("no run with id 'x'")) == "no run with id 'x'"


def test_errors_that_are_also_builtin_errors() -> None:
    """InputValidationError is a ValueError and ResultTimeout a TimeoutError."""
    assert issubclass(errors.InputValidationError, ValueError)
    assert issubclass(errors.ResultTimeout, TimeoutError)


def test_errors_carry_their_details() -> None:
    """Step, run and validation errors keep the fields callers inspect."""
    failed = errors.StepFailed("x", step="charge", attempts=3, error_type="StepTimeout")
    assert (failed.step, failed.attempts, failed.error_type) == ("charge", 3, "StepTimeout")
    assert errors.SerializationError(step="s").step == "s"
    run = errors.WorkflowCancelled(run_id="r", status="compensated", reason="cancel", error={})
    assert (run.run_id, run.status, run.reason, run.error) == ("r", "compensated", "cancel", {})
    invalid = errors.InputValidationError("bad", errors=[{"loc": ["a"], "msg": "m"}])
    assert invalid.errors == [{"loc": ["a"], "msg": "m"}]
    child = errors.ChildWorkflowFailed(run_id="c", status="failed")
    assert (child.run_id, child.status) == ("c", "failed")


def test_fork_errors_name_the_run_and_step() -> None:
    """ForkError keeps the run and the step it refused, and answers HTTP 409."""
    error = errors.ForkError("x", run_id="r", step="charge")
    assert (error.run_id, error.step) == ("r", "charge")
    assert errors.ForkError.status_code == 409


def test_hook_errors_map_to_http_status_codes() -> None:
    """Unknown, already used and expired hooks answer 404, 409 and 410."""
    assert errors.HookError.status_code == 400
    assert errors.HookNotFound.status_code == 404
    assert errors.HookAlreadyUsed.status_code == 409
    assert errors.HookExpired.status_code == 410


@pytest.mark.parametrize(
    "signal", [SuspendSignal, CancelSignal, ReleaseSignal, LeaseLost, EngineFault]
)
def test_internal_signals_escape_except_exception(signal: type[BaseException]) -> None:
    """Engine control flow is not an Exception, so user code cannot swallow it."""
    assert not issubclass(signal, Exception)
    assert not issubclass(signal, errors.ForgeflowError)
