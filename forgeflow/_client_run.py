"""Executing runs in this process: ``run`` (start and execute until it ends), ``drive``,
workers sharing the client's pool, and ``check`` (replaying unfinished runs on new code)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from functools import partial
from typing import Any, NamedTuple, TypeVar, overload

import anyio
import structlog

from ._check import CheckReport, check_runs
from ._client_core import _NewRun
from ._client_read import ReadingRuns
from ._client_start import StartingRuns
from ._definitions import Registry, WorkflowDefinition
from ._runloop import ENDED, RunLoop
from ._serde import loads
from ._signals import EngineFault
from ._store import Record, Store
from ._worker import Worker
from .errors import DatabaseError

__all__ = ["ExecutingRuns"]

O = TypeVar("O")  # noqa: E741
I = TypeVar("I")  # noqa: E741
log = structlog.get_logger("forgeflow.client")


class ExecutingRuns(StartingRuns, ReadingRuns):
    """Executing runs here; ``run`` starts and reads through the other areas."""

    async def check(
        self, registry: Registry | None = None, *, workflow: str | None = None
    ) -> CheckReport:
        """Replay every unfinished run on ``registry``'s code (default: this client's), executing
        and writing nothing; a verdict per run (see docs/safe-deploys.md)."""
        return await check_runs(
            self._store,
            self.registry if registry is None else registry,
            self._clock,
            self._engine_settings,
            workflow=workflow,
        )

    def worker(self, **options: Any) -> Worker:
        """A worker sharing this client's pool (and its lease, unless ``lease=`` is given)."""
        return Worker(self.runtime, **options)

    @overload
    async def run(
        self, workflow: WorkflowDefinition[None, O], input: None = None, **kw: Any
    ) -> O: ...
    @overload
    async def run(self, workflow: WorkflowDefinition[I, O], input: I, **kw: Any) -> O: ...
    @overload
    async def run(self, workflow: str, input: Any = None, **kw: Any) -> Any: ...

    async def run(self, workflow: Any, input: Any = None, **kw: Any) -> Any:
        """Start a run and execute it in this process until it ends; its output."""
        new = self._new_run(workflow, input, **kw)
        if new.options.debounce is None and new.options.runnable_at <= new.now:
            run_id = str(uuid.uuid4())
            # Written already leased to this process: no claim, no replay read, and the
            # output comes back from the execution itself, without reading the run.
            outcome, output = await self._run_here(run_id, new, kw.get("idempotency_key"))
            if output is not None:
                return output.value
            if outcome:  # it ended otherwise: its error, as result() raises it
                return await self.result(run_id)
            # Nothing was written: the idempotency key is taken. Go the ordinary way.
        run_id = await self.start(workflow, input, **kw)
        await self.drive(run_id)
        return await self.result(run_id)

    async def _run_here(
        self, run_id: str, new: _NewRun, idempotency_key: str | None
    ) -> tuple[str, _Output | None]:
        """Write ``new`` leased to this process and execute it until it ends: the outcome
        of its last execution ("" if nothing was written) and its output if it completed."""
        definition = new.definition

        async def insert(store: Store, worker_id: str, lease_seconds: float) -> list[Any]:
            row = await store.insert_claimed_run(
                run_id,
                definition.name,
                definition.version,
                new.queue,
                new.input_json,
                idempotency_key,
                new.now,
                definition.timeout.total_seconds(),
                (new.options.priority, new.options.key),
                worker_id,
                lease_seconds,
            )
            if row is None:
                return []
            log.info(
                "run_created", run_id=run_id, workflow=definition.name, version=definition.version
            )
            return [row]

        outputs = self._executor.outputs
        outputs[run_id] = None
        try:
            outcome = await self._drive(run_id, insert)
            output = outputs[run_id]
        finally:
            outputs.pop(run_id, None)
        if outcome != "completed" or output is None:
            return outcome, None
        return outcome, _Output(definition.output_adapter.validate_python(loads(output)))

    async def _drive_children(self, run_id: str) -> None:
        async with anyio.create_task_group() as group:
            for child in await self._store.live_children(run_id):
                group.start_soon(self.drive, child)

    async def drive(self, run_id: str) -> None:
        """Execute ``run_id`` here whenever it is runnable, until it ends."""
        await self._drive(run_id, None)

    async def _drive(self, run_id: str, first: _FirstClaim | None) -> str:
        # Executes the run whenever it can be claimed until it ends; the outcome of its
        # last execution here ("" if none).
        await self._notifications.start()
        loop = RunLoop(self._executor, lease_seconds=self.settings.lease_seconds)
        outcome = ""
        async with anyio.create_task_group() as group:
            # Leases are first renewed a third of a lease after the claim: the heartbeat
            # task starts only then, so that a run that ends sooner (most) costs none.
            heartbeats = asyncio.get_running_loop().call_later(
                loop.lease_seconds / 3, group.start_soon, partial(loop.keep_leases, first=0)
            )
            try:
                outcome = await self._executions(run_id, loop, first)
            finally:
                heartbeats.cancel()
                group.cancel_scope.cancel()
        return outcome

    async def _executions(self, run_id: str, loop: RunLoop, first: _FirstClaim | None) -> str:
        # ``first`` claims the run the first time (when it finds nothing, neither does
        # this), on the connection its execution then holds: one pool checkout for both.
        outcome = ""
        if first is not None:
            async with AsyncExitStack() as stack:
                try:
                    store = await stack.enter_async_context(self._executor.holding())
                except EngineFault as fault:
                    # No connection to start on: what a start that fails raises.
                    raise DatabaseError(f"insert_claimed_run: {fault.cause}") from fault.cause
                public = store.public()
                claimed = await loop.claim(lambda _n, worker, secs: first(public, worker, secs), 1)
                if not claimed:
                    return outcome
                outcome = await loop.execute(*claimed.pop(), store)
            if outcome in ENDED:
                return outcome  # it ended here: nothing left to claim or to read

        async def claim(_limit: int, worker_id: str, lease_seconds: float) -> list[Any]:
            row = await self._store.claim_run(run_id, worker_id, lease_seconds, self._clock.now())
            return [] if row is None else [row]

        while True:
            changed = self._notifications.run_changed(run_id)
            try:
                claimed = await loop.claim(claim, 1)
                if claimed:
                    outcome = await loop.execute(*claimed.pop())
                    if outcome in ENDED:
                        return outcome
                    continue
                record = await self._brief(run_id)
                if record.is_terminal:
                    return outcome
                kind = (record.wait or {}).get("kind")
                if kind in ("child", "children"):
                    # The run waits for its children: execute them here as well, so
                    # that `run` needs no worker for sub-workflows.
                    await self._drive_children(run_id)
                    continue
                delay = 1.0
                if record.wake_at is not None:
                    delay = (record.wake_at - self._clock.now()).total_seconds()
                with anyio.move_on_after(min(max(delay, 0.005), 1.0)):
                    await changed.wait()
            finally:
                self._notifications.forget(run_id, changed)


#: Claims a run the first time on ``store`` for ``worker_id`` with a lease of ``seconds``.
_FirstClaim = Callable[[Store, str, float], Awaitable[list[Record]]]


class _Output(NamedTuple):
    """The output of a run that completed (None is an output too)."""

    value: Any
