"""The test environment's WorkflowContext: injected failures, simulated crashes, ordering.

The engine knows nothing of tests. ``WorkflowTestEnv`` puts the subclass built here on
its own client's executor (``Executor.context_class``), so production runs never pay for
a check that only tests need: the substitution is the whole mechanism.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._context import WorkflowContext
from .._journal import Checkpoint
from .._steps import StepRunner

__all__ = ["Faults", "InjectedFailure", "SimulatedCrash", "testing_context"]

_DONE = frozenset({"completed", "compensated", "skipped", "failed"})


class InjectedFailure(Exception):
    """A failure injected into a step by ``WorkflowTestEnv.fail_step``."""


class SimulatedCrash(BaseException):
    """The worker executing a run died right after a checkpoint (``crash_after``).

    A BaseException, like the engine's own signals, so that neither workflow code nor the
    executor catches it: the execution stops on the spot, holding its lease.
    """

    def __init__(self, run_id: str, step: str) -> None:
        super().__init__(f"simulated worker crash in run {run_id} after step {step!r}")
        self.run_id = run_id
        self.step = step


@dataclass
class _Failure:
    remaining: int
    error: BaseException | type[BaseException] | None


@dataclass
class Faults:
    """What a test env injects, and what it observed of the runs it executed."""

    failures: dict[str, _Failure] = field(default_factory=dict)
    crashes: dict[str, int] = field(default_factory=dict)
    # run id -> step name -> position in program order (first seen, kept across replays).
    order: dict[str, dict[str, int]] = field(default_factory=dict)
    # run id -> step names in the order their compensations ran in this process.
    compensated: dict[str, list[str]] = field(default_factory=dict)

    def fail(
        self, name: str, times: int, error: BaseException | type[BaseException] | None
    ) -> None:
        """Make the next ``times`` attempts of step ``name`` raise ``error``."""
        if times < 0:
            raise ValueError("fail_step: 'times' must not be negative")
        if times == 0:
            self.failures.pop(name, None)
        else:
            self.failures[name] = _Failure(times, error)

    def crash(self, name: str, times: int) -> None:
        """Stop the execution right after the next ``times`` checkpoints of ``name``."""
        if times < 1:
            raise ValueError("crash_after: 'times' must be at least 1")
        self.crashes[name] = self.crashes.get(name, 0) + times

    def failure_for(self, *names: str) -> _Failure | None:
        """The pending failure registered under any of ``names``, if one is left."""
        for name in names:
            failure = self.failures.get(name)
            if failure is not None and failure.remaining > 0:
                return failure
        return None

    def take_crash(self, *names: str) -> bool:
        """True (once per registration) if a crash is due after ``names``' checkpoint."""
        for name in names:
            left = self.crashes.get(name, 0)
            if left > 0:
                if left == 1:
                    del self.crashes[name]
                else:
                    self.crashes[name] = left - 1
                return True
        return False

    def seen(self, run_id: str, name: str) -> None:
        """Remember where ``name`` comes in ``run_id``'s program order."""
        names = self.order.setdefault(run_id, {})
        names.setdefault(name, len(names))


def _injecting(fn: Callable[..., Any], name: str, failure: _Failure) -> Callable[..., Any]:
    """``fn`` behind a gate that raises instead of calling it while failures remain."""

    def gate() -> None:
        if failure.remaining > 0:
            failure.remaining -= 1
            error = failure.error
            if error is None:
                raise InjectedFailure(f"injected failure of step {name!r}")
            raise error

    # The wrapper keeps fn's nature (sync functions still run in a worker thread) and,
    # through functools.wraps, its return annotation, which replay uses to rebuild results.
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_gate(*args: Any, **kwargs: Any) -> Any:
            gate()
            return await fn(*args, **kwargs)

        return async_gate

    @functools.wraps(fn)
    def sync_gate(*args: Any, **kwargs: Any) -> Any:
        gate()
        return fn(*args, **kwargs)

    return sync_gate


def testing_context(faults: Faults) -> type[WorkflowContext]:
    """A WorkflowContext subclass that applies (and records into) ``faults``."""

    class TestWorkflowContext(WorkflowContext):
        """A WorkflowContext that injects the test env's failures and crashes."""

        def step(
            self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any
        ) -> StepRunner[Any]:
            runner = super().step(name, fn, *args, **kwargs)
            failure = faults.failure_for(runner.name, name)
            row = self.journal.get(runner.name)
            if failure is not None and (row is None or row.status not in _DONE):
                runner._fn = _injecting(fn, runner.name, failure)
            return runner

        def next_name(self, name: str) -> str:
            resolved = super().next_name(name)
            faults.seen(self.run_id, resolved)
            return resolved

        async def checkpoint(self, checkpoint: Checkpoint) -> None:
            await super().checkpoint(checkpoint)
            name = checkpoint.name
            if checkpoint.status == "completed" and faults.take_crash(name, name.partition("#")[0]):
                raise SimulatedCrash(self.run_id, name)

        async def emit(self, name: str, **fields: Any) -> None:
            if name == "compensation_ran":
                faults.compensated.setdefault(self.run_id, []).append(str(fields.get("step")))
            await super().emit(name, **fields)

    return TestWorkflowContext
