"""Executes one attempt of a run: replay, new steps, suspension, compensation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import anyio
import structlog

from ._clock import Clock
from ._context import EngineSettings, WorkflowContext
from ._definitions import Registry, WorkflowDefinition
from ._events import Emitter
from ._journal import StepRow
from ._lease import Lease
from ._serde import dumps, error_info
from ._signals import CancelSignal, EngineFault, LeaseLost, ReleaseSignal, SuspendSignal
from ._store import Record, Store
from .errors import DatabaseError, RecoveryLimitExceeded, SerializationError

__all__ = ["Executor"]

log = structlog.get_logger("forgeflow.executor")


class Executor:
    """Runs a claimed run from the top until it finishes, suspends or is rolled back."""

    #: The context handed to workflow code. forgeflow.testing substitutes a subclass on
    #: its own client's executor (failure injection, simulated crashes), so the engine
    #: itself carries no test-only check on the hot path.
    context_class: type[WorkflowContext] = WorkflowContext

    def __init__(
        self,
        store: Store,
        registry: Registry,
        clock: Clock,
        emitter: Emitter,
        settings: EngineSettings,
    ) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.emitter = emitter
        self.settings = settings
        self.live: dict[str, WorkflowContext] = {}
        self._held = 0  # pooled connections held by executing runs
        #: The output (JSON) of each run listed here, set when it completes in this
        #: process: ``Forgeflow.run`` returns it without reading the run back.
        self.outputs: dict[str, str | None] = {}

    async def execute(self, run: Record, lease: Lease, store: Store | None = None) -> str:
        """Execute a run this worker has leased; returns what became of it.

        ``store``: where the execution's statements go when the caller already holds one
        (from ``holding``); else the execution holds a connection of its own.
        Whatever happens in forgeflow's own machinery meanwhile (a dropped connection, a
        statement PostgreSQL refused) abandons the attempt and hands the run back at once:
        it is never mistaken for the workflow's failure.
        """
        run_id: str = run["id"]
        definition = self.registry.find(run["workflow"], run["version"])
        if definition is None:
            await self.hand_back(run_id, lease)
            return "released"
        try:
            if store is not None:
                return await self._execute_on(store, run, definition, lease)
            async with self.holding() as held:
                return await self._execute_on(held, run, definition, lease)
        except EngineFault as fault:
            log.warning(
                "run_abandoned",
                run_id=run_id,
                workflow=definition.name,
                operation=fault.operation,
                error=str(fault.cause),
            )
            await self.hand_back(run_id, lease)
            return "abandoned"

    @asynccontextmanager
    async def holding(self) -> AsyncIterator[Store]:
        """The engine store one execution runs on, for the duration of the block."""
        # The run holds one pooled connection while it executes: every checkpoint then
        # costs exactly its round trip, without the pool's acquire/release bookkeeping.
        # Only half the pool is held that way: heartbeats, claims and steps using
        # ctx.db() need the rest, or runs holding every connection would wait forever for
        # their own steps' (and lose their leases meanwhile). The others go per statement.
        if self._held >= self.store.pool.get_max_size() // 2:
            yield self.store.bind(self.store.pool)
            return
        self._held += 1
        try:
            async with self.store.held() as store:
                yield store
        finally:
            self._held -= 1

    async def hand_back(self, run_id: str, lease: Lease) -> bool:
        """Release a run this worker can no longer go on with, retrying while the lease lasts.

        A single failed attempt (PostgreSQL restarting, a dropped connection) would leave
        the run to wait out its whole lease; retrying until the release lands, or until the
        lease has run out anyway, lets another worker continue it at once.
        """
        delay = 0.05
        lease.handing_back = True
        with anyio.CancelScope(shield=True):
            while not lease.expired and not self.store.closing:
                try:
                    return await self.store.release_run(run_id, lease.worker_id, self.clock.now())
                except DatabaseError as exc:
                    log.warning("release_failed", run_id=run_id, error=str(exc))
                await anyio.sleep(max(0.0, min(delay, lease.remaining())))
                delay = min(delay * 2, 2.0)
        return False

    async def _execute_on(
        self, store: Store, run: Record, definition: WorkflowDefinition[Any, Any], lease: Lease
    ) -> str:
        run_id: str = run["id"]
        steps: dict[str, StepRow] = {}
        scheduled_at = run.get("scheduled_at")
        # A claim says whether the run has any checkpoint: a fresh run has none to replay,
        # and reading them would cost a round trip before its first step.
        if run.get("has_steps", True):
            rows, scheduled_at = await store.load_replay(run_id)
            steps = {r["name"]: StepRow(*tuple(r)[:8]) for r in rows}
        stop = self._stop_reason(run, definition)
        ctx = self.context_class(
            run_id=run_id,
            definition=definition,
            started_at=run["started_at"],
            scheduled_at=scheduled_at,
            steps=steps,
            store=store,
            registry=self.registry,
            clock=self.clock,
            emitter=self.emitter,
            settings=self.settings,
            lease=lease,
            replay_only=stop is not None,
        )
        self.live[run_id] = ctx
        try:
            return await self._drive(ctx, definition, run, stop)
        except LeaseLost:
            ctx.log.warning("lease_lost")
            return "lease_lost"
        finally:
            self.live.pop(run_id, None)
            ctx.close()

    def _stop_reason(self, run: Record, definition: WorkflowDefinition[Any, Any]) -> str | None:
        # A run that must not go forward is replayed only to rebuild its compensations.
        if run["status"] == "compensating":
            return str(run["end_reason"] or "failure")
        if run["cancel_requested"]:
            return "cancel"
        if run["deadline"] is not None and run["deadline"] <= self.clock.now():
            return "timeout"
        if run["recoveries"] >= definition.max_recoveries:
            return "recovery"
        return None

    async def _drive(
        self,
        ctx: WorkflowContext,
        definition: WorkflowDefinition[Any, Any],
        run: Record,
        stop: str | None,
    ) -> str:
        first = not len(ctx.journal) and run["status"] != "compensating"
        await ctx.emit("run_started" if first else "run_resumed")
        reason: str
        error: BaseException
        try:
            output = await self._call_workflow(ctx, definition, run["input"], run["deadline"])
        except SuspendSignal as signal:
            return await self._suspend(ctx, definition, signal)
        except ReleaseSignal:
            ctx.lease.handing_back = True
            await ctx.store.release_run(ctx.run_id, ctx.worker_id, self.clock.now())
            ctx.log.info("run_released")
            return "released"
        except CancelSignal as exc:
            reason = stop or ("cancel" if ctx.cancel_requested else "timeout")
            error = exc
        except Exception as exc:
            reason, error = stop or "failure", exc
        else:
            if stop is not None:
                # A run cancelled, timed out or already rolling back before this execution
                # began never completes, even if its code reaches the end without new work.
                return await self._roll_back(ctx, run, stop, CancelSignal())
            try:
                text = definition.output_adapter.dump_json(output).decode()
            except Exception as exc:
                reason = "failure"
                error = SerializationError(f"workflow output cannot be stored as JSON: {exc}")
            else:
                return await self._complete(ctx, run, text)
        return await self._roll_back(ctx, run, reason, error)

    async def _call_workflow(
        self,
        ctx: WorkflowContext,
        definition: WorkflowDefinition[Any, Any],
        input_json: str,
        deadline: datetime | None,
    ) -> Any:
        value = definition.load_input(input_json)
        if deadline is None:
            return await definition(ctx, value)
        remaining = (deadline - self.clock.now()).total_seconds()
        with anyio.CancelScope(deadline=anyio.current_time() + remaining) as scope:
            return await definition(ctx, value)
        if scope.cancelled_caught:
            raise CancelSignal()  # the deadline passed mid-run
        raise AssertionError("unreachable")

    async def _suspend(
        self,
        ctx: WorkflowContext,
        definition: WorkflowDefinition[Any, Any],
        signal: SuspendSignal,
    ) -> str:
        wake_at = signal.wake_at
        deadline = ctx.started_at + definition.timeout
        # A waiting run past its deadline is woken to be compensated.
        if wake_at is None or wake_at > deadline:
            wake_at = deadline
        ctx.lease.handing_back = True
        ok = await ctx.store.suspend_run(
            ctx.run_id, ctx.worker_id, dumps(signal.wait), wake_at, self.clock.now()
        )
        if not ok:
            ctx.lease.handing_back = False
            # Refused: a cancel arrived since the last checkpoint. Roll back now.
            ctx.request_cancel()
            return await self._roll_back(ctx, None, "cancel", CancelSignal())
        await ctx.emit(
            "run_suspended",
            wait=signal.wait.get("kind"),
            step=signal.wait.get("step"),
            wake_at=wake_at.isoformat(),
        )
        return "waiting"

    async def _complete(self, ctx: WorkflowContext, run: Record, output_json: str) -> str:
        now = self.clock.now()
        if not await ctx.store.finish_run(
            ctx.run_id,
            ctx.worker_id,
            "completed",
            output_json,
            None,
            None,
            now,
            # Most runs have no parent, nor a hook or an event wait left open at the end:
            # the statement for those is lighter, and checks it (see finish_run_alone).
            alone=run["parent_run_id"] is None,
        ):
            raise LeaseLost()
        if ctx.run_id in self.outputs:
            self.outputs[ctx.run_id] = output_json
        await ctx.emit(
            "run_finished",
            status="completed",
            duration_ms=round((now - ctx.started_at).total_seconds() * 1000, 3),
        )
        return "completed"

    async def _roll_back(
        self, ctx: WorkflowContext, run: Record | None, reason: str, error: BaseException
    ) -> str:
        if reason == "recovery":
            # Stored as a failure: the step kept killing the workers that executed it.
            reason, error = "failure", self._recovery_error(ctx, run)
        if isinstance(error, CancelSignal):
            info = (
                {"type": "WorkflowCancelled", "message": "the run was cancelled"}
                if reason == "cancel"
                else {"type": "WorkflowTimeout", "message": "the workflow deadline passed"}
            )
        else:
            info = error_info(error)
            step = getattr(error, "step", None)
            if step:
                info["step"] = step
            # A failed step's own exception type (KeyError, ...), not only StepFailed.
            cause = getattr(error, "error_type", None)
            if cause:
                info["error_type"] = cause
        resuming = run is not None and run["status"] == "compensating"
        if resuming and run is not None and run["error"] is not None:
            error_json = run["error"]
        else:
            error_json = dumps(info)
            if not await ctx.store.start_compensation(
                ctx.run_id, ctx.worker_id, reason, error_json
            ):
                raise LeaseLost()
        if reason == "cancel" and not resuming:
            await ctx.emit("run_cancelled")
        # Whatever ends a run, its attached children are cancelled and rolled back before
        # its own compensations run: wait for them first (a cancel has marked them already).
        now = self.clock.now()
        if reason != "cancel":
            await ctx.store.request_cancel(ctx.run_id, now, include_run=False)
        wait = dumps({"kind": "children", "step": None})
        ctx.lease.handing_back = True
        if await ctx.store.park_for_children(ctx.run_id, ctx.worker_id, wait, now):
            await ctx.emit("run_suspended", wait="children")
            return "waiting"
        ctx.lease.handing_back = False
        had_compensations = ctx.has_compensations
        failures = await ctx.run_compensation()
        final_error = None
        if failures:
            status = "failed"
            final_error = dumps({**info, "compensation_errors": [error_info(e) for e in failures]})
        elif had_compensations or reason == "cancel":
            status = "compensated"
        else:
            status = "failed"
        if not await ctx.store.finish_run(
            ctx.run_id,
            ctx.worker_id,
            status,
            None,
            final_error,
            reason,
            self.clock.now(),
            alone=run is not None and run["parent_run_id"] is None,
        ):
            raise LeaseLost()
        await ctx.emit("run_finished", status=status, reason=reason, error=info.get("message"))
        return status

    def _recovery_error(self, ctx: WorkflowContext, run: Record | None) -> RecoveryLimitExceeded:
        step = ctx.blocked_step or "?"
        count = 0 if run is None else int(run["recoveries"])
        ctx.log.error("recovery_limit_exceeded", step=step, recoveries=count)
        return RecoveryLimitExceeded(
            f"{count} executions in a row ended in a crash at step {step!r} without any "
            "progress; the run was rolled back instead of being tried again",
            step=step,
            recoveries=count,
        )
