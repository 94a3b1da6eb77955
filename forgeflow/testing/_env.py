"""WorkflowTestEnv: drive runs through days of engine time in a few milliseconds."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, NamedTuple

import anyio

from .._client import Forgeflow
from .._definitions import Registry, WorkflowDefinition
from .._durations import Duration, parse_duration
from .._models import HookRecord, Outcome, StepStatus, WorkflowRecord, WorkflowStatus
from ..errors import ConfigurationError, HookNotFound, ResultTimeout
from ._clock import ManualClock
from ._context import Faults, testing_context
from ._worker import TestWorker

__all__ = ["StepSummary", "WorkflowTestEnv"]

_FAR = datetime.max.replace(tzinfo=UTC)


class StepSummary(NamedTuple):
    """One step of a run as a test asserts on it: compares equal to a plain tuple."""

    name: str
    status: StepStatus
    attempts: int
    result: Any


class WorkflowTestEnv:
    """Runs workflows in-process on a ManualClock, for tests of your own workflows.

    The env executes every run that is due on its client's database (an in-process
    worker woken by the same notifications as a real one), and moves engine time only
    when told to: ``await env.advance(timedelta(hours=72))`` fires, in order, every
    timer, retry delay, hook or event timeout and workflow deadline that falls due, and
    lets the runs go on after each until nothing is left to do at that moment.

    The client must use a ``ManualClock``; ``sleep_threshold=0`` makes every
    ``ctx.sleep`` a durable wait driven by that clock (the pytest fixtures and
    ``WorkflowTestEnv.connect`` set both). Use it as
    ``async with WorkflowTestEnv(client) as env``.
    """

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(
        self,
        client: Forgeflow,
        *,
        queues: Iterable[str] = (),
        batch: int = 100,
        poll_interval: Duration = "1s",
    ) -> None:
        clock = client.clock
        if not isinstance(clock, ManualClock):
            raise ConfigurationError(
                "WorkflowTestEnv needs a client whose clock is a ManualClock: "
                "Forgeflow.connect(..., clock=ManualClock(), sleep_threshold=0)"
            )
        if client.settings.sleep_threshold > timedelta(0):
            # A short sleep would otherwise sleep in place, in real time, on a clock
            # that does not move.
            raise ConfigurationError(
                "WorkflowTestEnv needs a client with sleep_threshold=0, so that every "
                "ctx.sleep is a timer on its ManualClock"
            )
        self.client = client
        self.clock: ManualClock = clock
        self._faults = Faults()
        self._saved_context: Any = None
        self._worker = TestWorker(
            client,
            clock,
            queues=set(queues),
            batch=batch,
            poll_interval=parse_duration(poll_interval, field="poll_interval").total_seconds(),
        )

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        dsn: str | None = None,
        *,
        registry: Registry | None = None,
        clock: ManualClock | None = None,
        **options: Any,
    ) -> AsyncIterator[WorkflowTestEnv]:
        """Connect a client on a ManualClock (``sleep_threshold=0``) and run an env on it."""
        options.setdefault("sleep_threshold", 0)
        async with (
            Forgeflow.connect(
                dsn, registry=registry, clock=clock or ManualClock(), **options
            ) as client,
            cls(client) as env,
        ):
            yield env

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> WorkflowTestEnv:
        executor = self.client.runtime.executor
        self._saved_context = executor.context_class
        executor.context_class = testing_context(self._faults)
        try:
            await self._worker.start()
        except BaseException:
            executor.context_class = self._saved_context
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._worker.stop()
        self.client.runtime.executor.context_class = self._saved_context
        if et is None:
            self._worker.raise_error()

    async def settle(self) -> None:
        """Execute everything runnable at the current (test) time until nothing is left."""
        await self._worker.settle()

    # -- time ----------------------------------------------------------------------------

    async def advance(self, duration: Duration) -> datetime:
        """Move engine time forward by ``duration``, firing what falls due in order.

        Everything due now runs first. Then, repeatedly, the clock jumps to the earliest
        wake-up time still inside the window (a timer, a retry delay, a hook or event
        timeout, a deadline, a schedule's fire time) and the runs due then go on until
        none is left to do at that moment; schedules, decorator and stored, fire in time
        order, each fire time on time. Finally the clock stands at the end of the window;
        the new time is returned.
        """
        return await self.advance_to(self.clock.now() + parse_duration(duration))

    async def advance_to(self, when: datetime) -> datetime:
        """Like ``advance``, up to the timezone-aware time ``when``."""
        if when.tzinfo is None:
            raise ValueError("advance_to: 'when' must be timezone-aware")
        if when < self.clock.now():
            raise ValueError(f"advance_to: {when} is before the clock's {self.clock.now()}")
        await self._worker.advance_to(when)
        return when

    # -- runs ------------------------------------------------------------------------

    async def start(
        self, workflow: WorkflowDefinition[Any, Any] | str, input: Any = None, **options: Any
    ) -> str:
        """Start a run (``Forgeflow.start``); the env's worker picks it up at once."""
        if options.get("queue"):
            self._worker.queues.add(options["queue"])
        return await self.client.start(workflow, input, **options)

    async def run_until_waiting(self, run_id: str, *, timeout: Duration = 30) -> WorkflowRecord:
        """Let the run go on until it waits (for time, a hook, an event, a child) or ends.

        Returns its record (with steps and hooks). ResultTimeout if it is still busy
        after ``timeout`` seconds of real time; ConfigurationError if the env cannot run
        it (its workflow version is not in the client's registry).
        """
        limit = parse_duration(timeout, field="timeout").total_seconds()
        notifications = self.client.runtime.notifications
        record: WorkflowRecord | None = None
        with anyio.move_on_after(limit):
            while True:
                changed = notifications.run_changed(run_id)
                try:
                    await self.settle()
                    record = await self.client.status(run_id)
                    if record.is_terminal or (
                        record.worker is None
                        and record.status in (WorkflowStatus.WAITING, WorkflowStatus.COMPENSATING)
                    ):
                        return record
                    if record.worker is None and not self._serves(record):
                        raise ConfigurationError(
                            f"run {run_id} ({record.workflow} v{record.version}, queue "
                            f"{record.queue!r}) cannot run in this env: that workflow version "
                            "is not in the client's registry"
                        )
                    # Held by another worker (or just claimed by this env's): wait for news.
                    with anyio.move_on_after(0.05 if record.worker is None else 1.0):
                        await changed.wait()
                finally:
                    notifications.forget(run_id, changed)
        state = "unknown" if record is None else record.status.value
        raise ResultTimeout(f"run {run_id} did not wait or end within {limit:g}s ({state})")

    def _serves(self, record: WorkflowRecord) -> bool:
        key = (record.workflow, record.version)
        return key in self._worker.workflow_keys() and record.queue in self._worker.queue_list()

    async def result(self, run_id: str, *, timeout: Duration = 30) -> Any:
        """The run's output once it ends (WorkflowFailed / WorkflowCancelled if rolled back).

        Raises ResultTimeout at once if the run is waiting: advance the clock, answer
        its hook or send its event first.
        """
        record = await self.run_until_waiting(run_id, timeout=timeout)
        if not record.is_terminal:
            raise ResultTimeout(
                f"run {run_id} is {record.status.value} on {record.wait}: advance the clock, "
                "answer its hook or send its event first"
            )
        return self.client._outcome(record)

    async def cancel(self, run_id: str) -> WorkflowRecord:
        """Cancel the run and let its compensations run; its record afterwards."""
        await self.client.cancel(run_id)
        return await self.run_until_waiting(run_id)

    async def send_event(self, event_type: str, payload: Mapping[str, Any] | None = None) -> int:
        """Send an event (``Forgeflow.send_event``) and let the woken runs go on."""
        count = await self.client.send_event(event_type, payload)
        await self.settle()
        return count

    # -- hooks -----------------------------------------------------------------------

    async def approve(
        self, run_id: str, hook_name: str, data: Mapping[str, Any] | None = None
    ) -> WorkflowRecord:
        """Approve the run's open hook named ``hook_name``; the record once it waits or ends."""
        return await self.decide(run_id, hook_name, Outcome.APPROVE, data)

    async def reject(
        self, run_id: str, hook_name: str, data: Mapping[str, Any] | None = None
    ) -> WorkflowRecord:
        """Reject the run's open hook named ``hook_name``; the record once it waits or ends."""
        return await self.decide(run_id, hook_name, Outcome.REJECT, data)

    async def escalate(
        self, run_id: str, hook_name: str, data: Mapping[str, Any] | None = None
    ) -> WorkflowRecord:
        """Escalate the run's open hook named ``hook_name``; the record once it waits or ends."""
        return await self.decide(run_id, hook_name, Outcome.ESCALATE, data)

    async def decide(
        self,
        run_id: str,
        hook_name: str,
        decision: Outcome | str,
        data: Mapping[str, Any] | None = None,
    ) -> WorkflowRecord:
        """Give the run's open hook ``hook_name`` a decision and let the run go on.

        The run is first let go on until it waits, so the hook exists; HookNotFound if
        the run has no open hook by that name, HookExpired if its timeout has passed.
        """
        record = await self.run_until_waiting(run_id)
        hook = self._open_hook(record, hook_name)
        await self.client.resume_hook(hook.hook_id, decision, data)
        return await self.run_until_waiting(run_id)

    @staticmethod
    def _open_hook(record: WorkflowRecord, name: str) -> HookRecord:
        open_hooks = [
            h for h in record.hooks if h.name == name and h.status in ("pending", "active")
        ]
        if not open_hooks:
            known = ", ".join(f"{h.name} ({h.status.value})" for h in record.hooks) or "none"
            raise HookNotFound(
                f"run {record.run_id} has no open hook named {name!r} (its hooks: {known})"
            )
        return open_hooks[-1]

    # -- what happened ---------------------------------------------------------------

    async def steps(self, run_id: str, *, include_waits: bool = False) -> list[StepSummary]:
        """The run's steps as (name, status, attempts, result), in the order they ended.

        Steps still running or pending come last. With ``include_waits`` the
        checkpoints of sleeps, hooks, events and children are listed too.
        """
        rows = await self.client.steps(run_id)
        order = self._faults.order.get(run_id, {})
        rows.sort(
            key=lambda s: (
                s.completed_at is None,
                s.completed_at or _FAR,
                order.get(s.name, math.inf),
            )
        )
        return [
            StepSummary(s.name, s.status, s.attempts, s.result)
            for s in rows
            if include_waits or s.kind == "step"
        ]

    async def compensations(self, run_id: str) -> list[str]:
        """The names of the steps whose compensation ran, in the order they ran."""
        rows = await self.client.steps(run_id)
        ran = self._faults.compensated.get(run_id, [])
        position = {name: i for i, name in enumerate(ran)}
        done = [s for s in rows if s.compensated_at is not None]
        done.sort(key=lambda s: (s.compensated_at, position.get(s.name, math.inf)))
        return [s.name for s in done]

    # -- faults ----------------------------------------------------------------------

    def fail_step(
        self,
        name: str,
        times: int = 1,
        *,
        error: BaseException | type[BaseException] | None = None,
    ) -> None:
        """Make the next ``times`` attempts of step ``name`` raise before its function runs.

        The error is ``InjectedFailure`` unless ``error`` (an exception or its class) is
        given, and goes through the step's retry policy like any other: with
        ``.retry(attempts=3)``, ``fail_step(name, times=2)`` makes the third attempt the
        one that succeeds. ``times=0`` withdraws what is left.
        """
        self._faults.fail(name, times, error)

    def crash_after(self, name: str, times: int = 1) -> None:
        """Simulate the worker dying right after step ``name``'s checkpoint is written.

        The execution stops there, holding its lease; the env then lets the lease lapse
        and a new worker continues the run from its checkpoints, so ``name`` is not run
        again while the steps after it are.
        """
        self._faults.crash(name, times)
