"""WorkflowContext: what workflow code calls — steps, waits and determinism helpers."""

from __future__ import annotations

import asyncio
import inspect
import random as _random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

import anyio
import asyncpg
import structlog

from . import _waits
from ._clock import Clock
from ._durations import Duration
from ._events import Emitter
from ._journal import Checkpoint, Journal, StepRow
from ._lease import Lease
from ._models import StepStatus
from ._runstate import EngineSettings
from ._serde import decode_result, dumps, encode_result, error_info, loads
from ._signals import CancelSignal, EngineFault, LeaseLost, ReleaseSignal, SuspendSignal
from ._steps import StepRunner, invoke
from ._transaction import TransactionalCompensation, TransactionRunner
from .errors import ContextClosed

if TYPE_CHECKING:
    from ._definitions import Registry, WorkflowDefinition
    from ._models import Decision
    from ._store import Store

__all__ = ["FINISHED", "PATCH_KIND", "EngineSettings", "WorkflowContext", "patch_step"]

T = TypeVar("T")
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
T4 = TypeVar("T4")
T5 = TypeVar("T5")
T6 = TypeVar("T6")

#: The kind of the checkpoint that records a ``ctx.patched(...)`` decision.
PATCH_KIND = "patch"
#: Checkpoint statuses that mean "this point was passed": replay serves them, never redoes them.
FINISHED = frozenset({"completed", "compensated", "failed", "skipped"})


def patch_step(patch_id: str) -> str:
    """The checkpoint name of patch ``patch_id``'s decision."""
    return f"patch:{patch_id}"


class WorkflowContext:
    """The handle a workflow function receives: steps, waits, deterministic helpers."""

    def __init__(
        self,
        *,
        run_id: str,
        definition: WorkflowDefinition[Any, Any],
        started_at: datetime,
        steps: dict[str, StepRow],
        store: Store,
        registry: Registry,
        clock: Clock,
        emitter: Emitter,
        settings: EngineSettings,
        lease: Lease,
        replay_only: bool = False,
        scheduled_at: datetime | None = None,
    ) -> None:
        self.run_id = run_id
        #: The fire time of the schedule that started this run (UTC); None otherwise.
        self.scheduled_at = scheduled_at
        self.workflow_name = definition.name
        self.version = definition.version
        self.started_at = started_at
        self.log: Any = structlog.get_logger("forgeflow.run").bind(
            run_id=run_id, workflow=definition.name, version=definition.version
        )
        # Engine side: what steps, waits and the executor use (see RunContext).
        self.definition = definition
        #: The run's checkpoints, compensation stack and workflow time.
        self.journal = Journal(steps, started_at)
        self.store = store
        self.registry = registry
        self.clock = clock
        self._emitter = emitter
        self.settings = settings
        self.lease = lease
        self.worker_id = lease.worker_id
        #: The step a replay-only execution stopped at (what it would have run next).
        self.blocked_step: str | None = None
        self._rng = _random.Random(run_id)
        self._replay_only = replay_only
        self._patches: dict[str, bool] = {}
        self.cancel_requested = False
        self._releasing = False
        self._interrupt = anyio.Event()
        self._in_flight: dict[str, tuple[int, datetime, float]] = {}
        # The watcher of slow attempts: a timer until it is due to look, then a task.
        self._watcher: asyncio.TimerHandle | asyncio.Task[None] | None = None

    # -- steps ---------------------------------------------------------------------

    # Two overloads so that type checkers infer T from an async function's awaited result
    # (a single ``T | Awaitable[T]`` parameter leaves T unsolved).
    @overload
    def step(
        self, name: str, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any
    ) -> StepRunner[T]: ...
    @overload
    def step(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> StepRunner[T]: ...
    def step(
        self, name: str, fn: Callable[..., T | Awaitable[T]], *args: Any, **kwargs: Any
    ) -> StepRunner[T]:
        """A checkpointed step calling ``fn(*args, **kwargs)``; configure it, then run it."""
        if not callable(fn):
            if inspect.iscoroutine(fn):
                fn.close()  # it will never run: no "never awaited" warning on top
            raise TypeError(
                f"step {name!r}: expected a function and its arguments, got "
                f"{type(fn).__name__} (write ctx.step({name!r}, f, *args), not f(*args))"
            )
        return StepRunner(self, self.next_name(name), fn, args, kwargs)

    def transaction(
        self, name: str, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any
    ) -> TransactionRunner[T]:
        """A step whose ``fn(conn, *args, **kwargs)`` commits with its checkpoint."""
        return TransactionRunner(self, self.next_name(name), fn, args, kwargs)

    # One overload per common arity keeps each result's type in its position; beyond six
    # runners (or for a runner list built at run time) the results share one type.
    @overload
    async def parallel(self, r1: StepRunner[T1], /) -> tuple[T1]: ...
    @overload
    async def parallel(self, r1: StepRunner[T1], r2: StepRunner[T2], /) -> tuple[T1, T2]: ...
    @overload
    async def parallel(
        self, r1: StepRunner[T1], r2: StepRunner[T2], r3: StepRunner[T3], /
    ) -> tuple[T1, T2, T3]: ...
    @overload
    async def parallel(
        self, r1: StepRunner[T1], r2: StepRunner[T2], r3: StepRunner[T3], r4: StepRunner[T4], /
    ) -> tuple[T1, T2, T3, T4]: ...
    @overload
    async def parallel(
        self,
        r1: StepRunner[T1],
        r2: StepRunner[T2],
        r3: StepRunner[T3],
        r4: StepRunner[T4],
        r5: StepRunner[T5],
        /,
    ) -> tuple[T1, T2, T3, T4, T5]: ...
    @overload
    async def parallel(
        self,
        r1: StepRunner[T1],
        r2: StepRunner[T2],
        r3: StepRunner[T3],
        r4: StepRunner[T4],
        r5: StepRunner[T5],
        r6: StepRunner[T6],
        /,
    ) -> tuple[T1, T2, T3, T4, T5, T6]: ...
    @overload
    async def parallel(self, *runners: StepRunner[T]) -> tuple[T, ...]: ...
    async def parallel(self, *runners: StepRunner[Any]) -> Any:
        """Run several steps concurrently; a list of their results in the order given."""
        results: list[Any] = [None] * len(runners)
        # Concurrent steps cannot share the run's one connection: use the pool meanwhile.
        held, self.store = self.store, self.store.bind(self.store.pool)
        before, mark = self.journal.time, self.journal.compensation_mark

        failures: list[Exception] = []

        async def one(index: int, runner: StepRunner[Any]) -> None:
            # A failing step does not cancel its siblings: one that has already acted must
            # reach its checkpoint, or its compensation would never be registered.
            try:
                results[index] = await runner.run()
            except Exception as exc:
                failures.append(exc)

        try:
            async with anyio.create_task_group() as group:
                for index, runner in enumerate(runners):
                    group.start_soon(one, index, runner)
        except BaseExceptionGroup as exc:
            group_error = BaseExceptionGroup("parallel", [*exc.exceptions, *failures])
            raise _most_important(group_error) from None
        finally:
            self.store = held
            self._settle_parallel(runners, before, mark)
        if failures:
            raise failures[0]
        # A list, as in 0.1, though typed per position as a tuple (as asyncio.gather is):
        # unpacking, indexing and iterating agree, and list comparisons keep working.
        return results

    def _settle_parallel(
        self, runners: tuple[StepRunner[Any], ...], before: datetime, mark: int
    ) -> None:
        # The steps finish in any order, and a replay serves them in argument order. What
        # follows the block must not depend on which: its time is that of the last
        # checkpoint, and its compensations are stacked in recorded completion order
        # (ties in argument order), whichever checkpoint round trip happened to end first.
        position = {runner.name: index for index, runner in enumerate(runners)}

        def completed(step: str) -> datetime:
            row = self.journal.get(step)
            return (row.completed_at if row is not None else None) or before

        self.journal.time = max([before, *(completed(r.name) for r in runners)])
        self.journal.order_compensations_since(
            mark, lambda e: (completed(e.step), position.get(e.step, len(position)))
        )

    def idempotency_key(self, step: str) -> str:
        """A key stable across replays and retries of ``step``, for external APIs."""
        return f"{self.run_id}:{step}"

    def db(self) -> asyncpg.Pool:
        """The asyncpg pool, for steps that work in the same database."""
        return self.store.pool

    # -- determinism helpers ---------------------------------------------------------

    def workflow_time(self) -> datetime:
        """The time of the latest checkpoint before this point: identical on replay."""
        return self.journal.time

    def elapsed(self) -> timedelta:
        """Workflow time since the run started."""
        return self.journal.time - self.started_at

    def random(self) -> float:
        """A float in [0, 1) from a generator seeded by the run id: identical on replay."""
        return self._rng.random()

    def uuid4(self) -> uuid.UUID:
        """A version-4 UUID from the run's seeded generator: identical on replay."""
        return uuid.UUID(int=self._rng.getrandbits(128), version=4)

    # -- changing code under runs in flight -------------------------------------------

    async def patched(self, patch_id: str) -> bool:
        """True if this run reaches this point on the new code; False if it passed it before.

        The decision is checkpointed (``patch:<patch_id>``) the first time a run makes it,
        so every later replay takes the same branch. A run still replaying checkpoints
        recorded after this point passed it before the patch existed: False. A run whose
        replay is over (what comes next is new work) and a new run: True.
        """
        name = patch_step(patch_id)
        decided = self._patches.get(name)
        if decided is not None:
            return decided
        row = self.journal.get(name)
        if row is not None and row.status == StepStatus.COMPLETED:
            decided = loads(row.result) is True
        else:
            decided = not self._replay_pending()
            # A replay-only execution (a rollback, `forgeflow check`) writes nothing: the
            # same history gives the same answer the next time.
            if not self._replay_only and not self.cancel_requested:
                now = self.clock.now()
                await self.checkpoint(
                    Checkpoint(
                        name,
                        PATCH_KIND,
                        StepStatus.COMPLETED,
                        result=dumps(decided),
                        started_at=now,
                        completed_at=now,
                    )
                )
        self._patches[name] = decided
        return decided

    def deprecate_patch(self, patch_id: str) -> None:
        """Mark patch ``patch_id`` as kept on its new branch only (the old one is gone).

        Nothing is read or written at run time; ``forgeflow check`` reports any run in
        flight whose recorded decision took the old branch.
        """
        self._patches.setdefault(patch_step(patch_id), True)

    def _replay_pending(self) -> bool:
        # Recorded checkpoints this execution has not reached yet mean the run's history
        # goes on past this point: it is still replaying. Names are reached through
        # self.next_name (steps, waits, children), in call order.
        reached = self.journal.names_given()
        return any(
            row.kind != PATCH_KIND and row.status in FINISHED and row.name not in reached
            for row in self.journal.rows()
        )

    # -- low-level API ---------------------------------------------------------------

    def is_step_completed(self, name: str) -> bool:
        """True if ``name`` has a completed checkpoint."""
        row = self.journal.get(name)
        return row is not None and row.status in ("completed", "compensated")

    def get_step_result(self, name: str, type: Any = None) -> Any:
        """The checkpointed result of ``name`` (validated as ``type`` if given), or None."""
        row = self.journal.get(name)
        if row is None or row.status not in ("completed", "compensated"):
            return None
        return decode_result(row.result, row.result_type, type)

    def step_attempts(self, name: str) -> int:
        """How many attempts of ``name`` have been recorded (durably) so far."""
        row = self.journal.get(name)
        return 0 if row is None else row.attempts

    async def record_step_start(self, name: str, input: Any = None) -> int:
        """Record that an attempt of ``name`` begins; returns its attempt number."""
        self.before_new_work(name)
        row = self.journal.get(name)
        attempt = (row.attempts if row is not None else 0) + 1
        error = row.error if row is not None else None
        await self.checkpoint(
            Checkpoint(
                name,
                "step",
                StepStatus.RUNNING,
                error=error,
                attempts=attempt,
                started_at=self.clock.now(),
                input=dumps(input) if input is not None else None,
            )
        )
        return attempt

    async def record_step_complete(self, name: str, result: Any) -> None:
        """Checkpoint ``result`` as the outcome of ``name``."""
        row = self.journal.get(name)
        text, tag = encode_result(result, name)
        now = self.clock.now()
        attempts = row.attempts if row else 1
        await self.checkpoint(
            Checkpoint(name, "step", StepStatus.COMPLETED, text, tag, None, attempts, None, now)
        )
        self.journal.reached(now)
        await self.emit("step_completed", step=name)

    async def record_step_failure(self, name: str, error: BaseException | str) -> None:
        """Record that the latest attempt of ``name`` failed with ``error``."""
        row = self.journal.get(name)
        info = (
            error_info(error)
            if isinstance(error, BaseException)
            else {"type": "Error", "message": str(error)}
        )
        await self.checkpoint(
            Checkpoint(
                name,
                "step",
                StepStatus.FAILED,
                error=dumps(info),
                attempts=row.attempts if row else 1,
                completed_at=self.clock.now(),
            )
        )
        await self.emit("step_failed", step=name, error=info["message"])

    def add_compensation(self, step: str, fn: Callable[[Any], Any], result: Any = None) -> None:
        """Register ``fn(result)`` as the undo of ``step`` (for the low-level API)."""
        row = self.journal.get(step)
        done = row is not None and row.status == StepStatus.COMPENSATED
        self.journal.push_compensation(step, fn, result, done)

    async def run_compensation(self) -> list[BaseException]:
        """Run the registered compensations now, newest first; returns those that failed."""
        errors: list[BaseException] = []
        while (entry := self.journal.pop_compensation()) is not None:
            if entry.done:
                continue
            now = self.clock.now()
            try:
                if isinstance(entry.fn, TransactionalCompensation):
                    # Its mark commits with its writes, in its own transaction.
                    await entry.fn.commit(self, entry.step, entry.result, now)
                    await self.emit("compensation_ran", step=entry.step, ok=True)
                    continue
                await invoke(entry.fn, (entry.result,), {})
            except Exception as exc:
                errors.append(exc)
                info = dumps({**error_info(exc), "step": entry.step})
                ok = await self.store.mark_compensated(
                    self.run_id, self.worker_id, entry.step, now, info
                )
                await self.emit("compensation_ran", step=entry.step, ok=False, error=str(exc))
            else:
                ok = await self.store.mark_compensated(
                    self.run_id, self.worker_id, entry.step, now, None
                )
                await self.emit("compensation_ran", step=entry.step, ok=True)
            if not ok:
                raise LeaseLost()
        return errors

    @property
    def has_compensations(self) -> bool:
        """True if any compensation has been registered in this run."""
        return self.journal.has_compensations

    # -- durable waits ---------------------------------------------------------------

    async def sleep(self, duration: Duration) -> None:
        """Wait ``duration``; long waits release the worker and survive restarts."""
        await _waits.sleep(self, duration, "sleep")

    async def sleep_until(self, when: datetime) -> None:
        """Wait until ``when`` (timezone-aware); long waits release the worker."""
        await _waits.sleep_until(self, when, "sleep_until")

    async def hook(
        self,
        name: str,
        *,
        timeout: Duration | None = "72h",
        on_timeout: str = "reject",
        metadata: Mapping[str, Any] | None = None,
        hook_id: str | None = None,
    ) -> _waits.Hook:
        """Create a resume hook (state pending) whose URL can be sent before waiting on it."""
        return await _waits.create_hook(self, name, timeout, on_timeout, metadata, hook_id)

    async def wait_for_hook(self, name: str, **options: Any) -> Decision:
        """Create a hook and wait for its decision in one call."""
        hook = await self.hook(name, **options)
        return await hook.wait()

    async def expect_event(
        self,
        event_type: str,
        match: Mapping[str, Any] | None = None,
        timeout: Duration | None = None,
    ) -> _waits.EventWait:
        """Declare interest in an event now (it is kept until waited on); returns the wait."""
        return await _waits.expect_event(self, event_type, match, timeout)

    async def wait_for_event(
        self,
        event_type: str,
        match: Mapping[str, Any] | None = None,
        timeout: Duration | None = None,
    ) -> Any:
        """Wait for an event whose payload contains ``match``; returns the payload."""
        pending = await self.expect_event(event_type, match, timeout)
        return await pending.wait()

    async def start_child(
        self,
        workflow: WorkflowDefinition[Any, T] | str,
        input: Any = None,
        *,
        detached: bool = False,
        version: int | None = None,
    ) -> _waits.ChildHandle[T]:
        """Start a child workflow; ``await handle.result()`` waits for its output."""
        return await _waits.start_child(self, workflow, input, detached, version)

    async def run_child(
        self,
        workflow: WorkflowDefinition[Any, T] | str,
        input: Any = None,
        *,
        version: int | None = None,
    ) -> T:
        """Run a child workflow and return its output; its failure raises here."""
        handle = await self.start_child(workflow, input, version=version)
        return await handle.result()

    async def poll(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        until: Callable[[Any], bool],
        interval: Duration = "30s",
        timeout: Duration = "1h",
        max_attempts: int = 120,
    ) -> Any:
        """Call ``fn`` (a checkpointed step each time) until ``until(result)`` holds."""
        return await _waits.poll(self, name, fn, args, until, interval, timeout, max_attempts)

    # -- engine side (used by steps, waits and the executor) -------------------------

    def next_name(self, name: str) -> str:
        """Engine: the checkpoint name of this use of ``name`` (``name#2`` on its second)."""
        return self.journal.next_name(name)

    def before_new_work(self, step: str | None = None) -> None:
        """Engine: raise the signal that stops the run here if it may not do anything new."""
        # Called before anything is done for the first time: replay ends here.
        if isinstance(self.store, _ClosedStore):
            self.store.closed()
        if self.lease.expired:
            # Past the lease as this worker knows it (paused, starved, cut off), another
            # worker may already be executing the run: start nothing, write nothing.
            raise LeaseLost()
        if self.cancel_requested or self._replay_only:
            self.blocked_step = step
            raise CancelSignal()
        if self._releasing:
            raise ReleaseSignal()

    async def checkpoint(self, checkpoint: Checkpoint) -> None:
        """Engine: write ``checkpoint`` (refused, and LeaseLost, if the lease is lost)."""
        cancel = await self.store.checkpoint_step(self.run_id, self.worker_id, checkpoint)
        if cancel is None:
            raise LeaseLost()
        self.journal.record(checkpoint)
        if cancel and not self.cancel_requested:
            self.request_cancel()

    # A step attempt is checkpointed when it ends: that is its one round trip. To show an
    # attempt still running, one watcher per execution (started with the first step, not
    # one timer or task per step) looks at the attempts in flight now and then, and
    # writes a 'running' checkpoint for any that has outlived the threshold. A fast step
    # pays a dict insert and delete. The write goes through the lease-checked checkpoint
    # statement on a pooled connection (the run's own may be busy with the step), and
    # that statement never turns a finished checkpoint back into a running one, so a
    # write landing after the step's own checkpoint changes nothing. The watcher is a
    # timer until its first look is due (half the threshold): an execution that ends
    # sooner, as most do, starts no task for it.

    def attempt_started(self, name: str, attempt: int, started: datetime) -> None:
        """Engine: attempt ``attempt`` of step ``name`` is running."""
        self._in_flight[name] = (attempt, started, time.monotonic())
        if self._watcher is None:
            loop = asyncio.get_running_loop()
            self._watcher = loop.call_later(self.settings.running_after / 2, self._watch)

    def _watch(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self._show_running())

    def attempt_ended(self, name: str) -> None:
        """Engine: the attempt of step ``name`` in flight has ended."""
        self._in_flight.pop(name, None)

    async def _show_running(self) -> None:
        threshold = self.settings.running_after
        shown: set[tuple[str, int]] = set()
        while True:
            now = time.monotonic()
            for name, (attempt, started, since) in list(self._in_flight.items()):
                if now - since >= threshold and (name, attempt) not in shown:
                    shown.add((name, attempt))
                    await self._write_running(name, attempt, started)
            await asyncio.sleep(threshold / 2)

    async def _write_running(self, name: str, attempt: int, started: datetime) -> None:
        try:
            marker = Checkpoint(
                name, "step", StepStatus.RUNNING, attempts=attempt, started_at=started
            )
            store = self.store.bind(self.store.pool)
            cancel = await store.checkpoint_step(self.run_id, self.worker_id, marker)
        except Exception as exc:  # only a display: the step's own checkpoint decides
            self.log.debug("step_running_not_shown", step=name, error=str(exc))
            return
        if cancel:
            self.request_cancel()

    async def wait_until(self, when: datetime, wait: dict[str, Any]) -> None:
        """Engine: wait in place until ``when``, or suspend the run with ``wait`` if far."""
        remaining = (when - self.clock.now()).total_seconds()
        if remaining <= 0:
            return
        step = wait.get("step")
        self.before_new_work(step)
        if remaining > self.settings.sleep_threshold:
            raise SuspendSignal(when, {**wait, "wake_at": when.isoformat()})
        with anyio.move_on_after(remaining):
            await self._interrupt.wait()
        self.before_new_work(step)

    async def emit(self, name: str, **fields: Any) -> None:
        """Engine: log lifecycle event ``name`` and call the listeners."""
        await self._emitter.emit(self.log, name, self.run_id, self.workflow_name, **fields)

    def close(self) -> None:
        """Engine: the execution ended; any later use of the context raises ContextClosed."""
        # The run's connection goes back to the pool when its execution ends: a context
        # kept beyond that (stored, or used by a stray task) must fail as forgeflow's
        # error, never as asyncpg's "connection released back to the pool".
        self.store = cast("Store", _ClosedStore(self.run_id))
        if self._watcher is not None:
            self._watcher.cancel()

    def request_cancel(self) -> None:
        """Engine: a cancel was requested; interrupt waits and stop before new work."""
        self.cancel_requested = True
        self._interrupt.set()

    def request_release(self) -> None:
        """Engine: the worker is shutting down; stop at the next step boundary."""
        self._releasing = True
        self._interrupt.set()


class _ClosedStore:
    """Stands for the store in a context whose execution ended: any use is an error."""

    def __init__(self, run_id: str) -> None:
        self._run_id = run_id

    def __getattr__(self, name: str) -> Any:
        self.closed()

    def closed(self) -> None:
        """Raise ContextClosed."""
        raise ContextClosed(
            f"the context of run {self._run_id} was used after its execution ended; "
            "use ctx only inside the workflow function, while it runs"
        )


def _most_important(group: BaseExceptionGroup[Any]) -> BaseException:
    """Pick what a parallel block re-raises: engine fault, lease loss, cancel, failure, suspend."""
    flat: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            flat.append(exc)

    walk(group)
    for kind in (EngineFault, LeaseLost, CancelSignal, Exception, SuspendSignal, ReleaseSignal):
        for exc in flat:
            if isinstance(exc, kind):
                return exc
    return flat[0]
