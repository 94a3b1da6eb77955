"""Forgeflow: the client that starts, inspects, cancels and resumes runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from functools import partial
from typing import Any, NamedTuple, TypeVar, overload

import anyio
import structlog

from ._check import CheckReport, check_runs
from ._clock import Clock, SystemClock
from ._context import EngineSettings
from ._definitions import Registry, WorkflowDefinition, default_registry
from ._durations import Duration, parse_duration
from ._embedded import embedded_dsn
from ._events import Emitter, Listener
from ._executor import Executor
from ._models import BulkResult, HookRecord, Outcome, StepRecord, WorkflowRecord, WorkflowStatus
from ._notify import Notifications
from ._queues import QueueState, hold_reason, queue_states
from ._records import hook_record, run_record, step_record
from ._repair import Repairs
from ._runloop import ENDED, RunLoop
from ._runtime import Runtime
from ._schedules import ScheduleRecord, Schedules
from ._serde import dumps, loads
from ._settings import Settings, direct_url
from ._signals import EngineFault
from ._start_options import Debounce, StartOptions, start_options
from ._store import Record, Store
from ._worker import WORKER_SILENCE_SECONDS, Worker
from .errors import (
    DatabaseError,
    HookAlreadyUsed,
    HookExpired,
    HookNotFound,
    IdempotencyConflict,
    ResultTimeout,
    RunNotFound,
    WorkflowCancelled,
    WorkflowFailed,
)

__all__ = ["Forgeflow"]

_CLAIMABLE = (WorkflowStatus.CREATED, WorkflowStatus.RUNNING)

O = TypeVar("O")  # noqa: E741
I = TypeVar("I")  # noqa: E741
log = structlog.get_logger("forgeflow.client")


class Forgeflow:
    """A connection to forgeflow's database: start and manage runs, host workers."""

    def __init__(
        self,
        store: Store,
        *,
        settings: Settings | None = None,
        registry: Registry | None = None,
        base_url: str | None = None,
        listeners: Sequence[Listener] = (),
        clock: Clock | None = None,
        sleep_threshold: Duration | None = None,
        lease: Duration | None = None,
    ) -> None:
        self._store = store
        self.registry = registry if registry is not None else default_registry
        self._clock: Clock = clock or SystemClock()
        given: dict[str, Any] = {
            "base_url": base_url,
            "sleep_threshold": sleep_threshold,
            "lease": lease,
        }
        #: What this client and everything started from it (workers, the HTTP app) use.
        self.settings = Settings.load(**given) if settings is None else settings.replace(**given)
        self._engine_settings = EngineSettings(
            sleep_threshold=self.settings.sleep_threshold.total_seconds(),
            lease_seconds=self.settings.lease_seconds,
            base_url=self.settings.base_url,
        )
        # Executing runs write their checkpoints through one batcher: concurrent runs
        # share statements and commits, a run alone pays its own round trip as before.
        self._executor = Executor(
            store.batching(), self.registry, self._clock, Emitter(listeners), self._engine_settings
        )
        self._notifications = Notifications(store)
        self._notifications.on_cancel.append(self._on_cancel)
        #: What executes runs in this process: handed to workers and the testing toolkit.
        self.runtime = Runtime(
            store,
            self.registry,
            self._clock,
            self._executor,
            self._notifications,
            self._engine_settings,
            retention=self.settings.retention,
        )
        self._repairs = Repairs(store, self.registry, self._clock, WORKER_SILENCE_SECONDS)
        self._schedules = Schedules(self.runtime)

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        dsn: str | None = None,
        *,
        settings: Settings | None = None,
        registry: Registry | None = None,
        base_url: str | None = None,
        listeners: Sequence[Listener] = (),
        clock: Clock | None = None,
        sleep_threshold: Duration | None = None,
        lease: Duration | None = None,
        retention: Duration | None = None,
        min_pool: int | None = None,
        max_pool: int | None = None,
        listen_url: str | None = None,
        pgbouncer: bool | None = None,
        migrate: bool = True,
    ) -> AsyncIterator[Forgeflow]:
        """Connect (DSN, else FORGEFLOW_DATABASE_URL, else the embedded server) and migrate.

        Arguments left as None come from ``settings`` when given, else from the
        ``FORGEFLOW_*`` environment variables, else from the defaults (see ``Settings``).
        """
        given: dict[str, Any] = {
            "database_url": dsn,
            "base_url": base_url,
            "sleep_threshold": sleep_threshold,
            "lease": lease,
            "retention": retention,
            "min_pool": min_pool,
            "max_pool": max_pool,
            "listen_url": listen_url,
            "pgbouncer": pgbouncer,
        }
        resolved = Settings.load(**given) if settings is None else settings.replace(**given)
        url = resolved.database_url or await embedded_dsn()
        store = await Store.open(
            url,
            min_size=resolved.min_pool,
            max_size=resolved.max_pool,
            migrate=migrate,
            direct_dsn=direct_url(resolved.listen_url, url),
            pgbouncer=resolved.pgbouncer,
        )
        client = cls(store, settings=resolved, registry=registry, listeners=listeners, clock=clock)
        try:
            yield client
        finally:
            await client.close()

    async def close(self) -> None:
        """Close the LISTEN connection and the pool."""
        await self._notifications.close()
        await self._store.close()

    @property
    def pool(self) -> Any:
        """The asyncpg pool."""
        return self._store.pool

    @property
    def dsn(self) -> str:
        """The DSN in use (the embedded server's when none was given): hand it to workers."""
        return self._store.dsn

    def _on_cancel(self, run_id: str) -> None:
        ctx = self._executor.live.get(run_id)
        if ctx is not None:
            ctx.request_cancel()

    def _definition(
        self, workflow: WorkflowDefinition[Any, Any] | str, version: int | None
    ) -> WorkflowDefinition[Any, Any]:
        if isinstance(workflow, WorkflowDefinition):
            if version is None or version == workflow.version:
                return workflow
            # A definition with another version asked for: that version, or an error.
            return self.registry.get_version(workflow.name, version)
        if version is None:
            return self.registry.get(workflow)
        return self.registry.get_version(workflow, version)

    # -- starting and inspecting -------------------------------------------------------

    # Typed overloads: a definition's input type checks what is passed with it.
    @overload
    async def start(
        self,
        workflow: WorkflowDefinition[None, Any],
        input: None = None,
        *,
        idempotency_key: str | None = None,
        version: int | None = None,
        queue: str | None = None,
        priority: int = 0,
        key: str | None = None,
        start_at: datetime | None = None,
        delay: Duration | None = None,
        debounce: Debounce | None = None,
    ) -> str: ...
    @overload
    async def start(
        self,
        workflow: WorkflowDefinition[I, Any],
        input: I,
        *,
        idempotency_key: str | None = None,
        version: int | None = None,
        queue: str | None = None,
        priority: int = 0,
        key: str | None = None,
        start_at: datetime | None = None,
        delay: Duration | None = None,
        debounce: Debounce | None = None,
    ) -> str: ...
    @overload
    async def start(
        self,
        workflow: str,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        version: int | None = None,
        queue: str | None = None,
        priority: int = 0,
        key: str | None = None,
        start_at: datetime | None = None,
        delay: Duration | None = None,
        debounce: Debounce | None = None,
    ) -> str: ...
    async def start(
        self,
        workflow: WorkflowDefinition[Any, Any] | str,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        version: int | None = None,
        queue: str | None = None,
        priority: int = 0,
        key: str | None = None,
        start_at: datetime | None = None,
        delay: Duration | None = None,
        debounce: Debounce | None = None,
    ) -> str:
        """Write a new run (validated input and options; nothing written if invalid)."""
        new = self._new_run(
            workflow,
            input,
            idempotency_key=idempotency_key,
            version=version,
            queue=queue,
            priority=priority,
            key=key,
            start_at=start_at,
            delay=delay,
            debounce=debounce,
        )
        definition, options = new.definition, new.options
        if options.debounce is not None:
            return await self._debounce(definition, new.value, queue, options, new.now)
        new_id = str(uuid.uuid4())
        # Whoever awaits this run here then reads it once, when its end is announced.
        self._notifications.expect_end(new_id)
        run_id, owner, created = await self._store.insert_run(
            new_id,
            definition.name,
            definition.version,
            new.queue,
            new.input_json,
            idempotency_key,
            new.now,
            definition.timeout.total_seconds(),
            options.runnable_at,
            options.priority,
            options.key,
        )
        if created:
            log.info(
                "run_created", run_id=run_id, workflow=definition.name, version=definition.version
            )
            return run_id
        noted = self._notifications.expected_end(new_id)
        if noted is not None:
            self._notifications.forget(new_id, noted)
        if owner != definition.name:
            raise IdempotencyConflict(
                f"idempotency key {idempotency_key!r} is already used by a run of workflow "
                f"{owner!r}, not {definition.name!r}; use a key per workflow",
                key=idempotency_key or "",
                workflow=owner,
                run_id=run_id,
            )
        return run_id

    def _new_run(
        self,
        workflow: WorkflowDefinition[Any, Any] | str,
        input: Any,
        *,
        idempotency_key: str | None = None,
        version: int | None = None,
        queue: str | None = None,
        priority: int = 0,
        key: str | None = None,
        start_at: datetime | None = None,
        delay: Duration | None = None,
        debounce: Debounce | None = None,
    ) -> _NewRun:
        """A run about to be started, validated (ValueError naming the field if not)."""
        definition = self._definition(workflow, version)
        now = self._clock.now()
        options = start_options(
            now, priority=priority, key=key, start_at=start_at, delay=delay, debounce=debounce
        )
        if debounce is not None and idempotency_key is not None:
            raise ValueError("debounce: cannot be combined with idempotency_key")
        value = definition.validate_input(input)
        return _NewRun(
            definition, value, definition.dump_input(value), queue or definition.queue, now, options
        )

    async def _debounce(
        self,
        definition: WorkflowDefinition[Any, Any],
        value: Any,
        queue: str | None,
        options: StartOptions,
        now: datetime,
    ) -> str:
        debounce = options.debounce
        assert debounce is not None
        longest = debounce.max_wait_delta
        run_id, created = await self._store.debounce_run(
            str(uuid.uuid4()),
            definition.name,
            definition.version,
            queue or definition.queue,
            definition.dump_input(value),
            debounce.key,
            now,
            definition.timeout.total_seconds(),
            now + debounce.window_delta,
            options.priority,
            options.key,
            None if longest is None else now + longest,
        )
        log.info(
            "run_created" if created else "run_debounced",
            run_id=run_id,
            workflow=definition.name,
            debounce_key=debounce.key,
        )
        return run_id

    async def start_many(
        self,
        workflow: WorkflowDefinition[Any, Any] | str,
        inputs: Sequence[Any],
        *,
        idempotency_keys: Sequence[str | None] | None = None,
        version: int | None = None,
        queue: str | None = None,
        priority: int = 0,
        key: str | None = None,
        start_at: datetime | None = None,
        delay: Duration | None = None,
    ) -> list[str]:
        """Start one run per input in one round trip; all written, or none if any is invalid."""
        definition = self._definition(workflow, version)
        now = self._clock.now()
        options = start_options(now, priority=priority, key=key, start_at=start_at, delay=delay)
        items = list(inputs)
        ikeys = list(idempotency_keys) if idempotency_keys is not None else [None] * len(items)
        if len(ikeys) != len(items):
            raise ValueError("idempotency_keys: needs one entry (or None) per input")
        dumped = [definition.dump_input(definition.validate_input(v)) for v in items]
        if not items:
            return []
        rows = [
            (str(uuid.uuid4()), text, ik, options.runnable_at, options.priority, options.key)
            for text, ik in zip(dumped, ikeys, strict=True)
        ]
        written = await self._store.insert_runs(
            definition.name,
            definition.version,
            queue or definition.queue,
            now,
            definition.timeout.total_seconds(),
            rows,
        )
        for (run_id, _, owner), ikey in zip(written, ikeys, strict=True):
            if owner is not None:
                raise IdempotencyConflict(
                    f"idempotency key {ikey!r} is already used by a run of workflow "
                    f"{owner!r}, not {definition.name!r}; nothing of the batch was written",
                    key=ikey or "",
                    workflow=owner,
                    run_id=run_id,
                )
        log.info(
            "runs_created",
            workflow=definition.name,
            version=definition.version,
            count=sum(created for _, created, _ in written),
        )
        return [run_id for run_id, _, _ in written]

    async def status(self, run_id: str) -> WorkflowRecord:
        """The run with its steps and hooks; RunNotFound if there is none."""
        row = await self._store.get_run(run_id)
        if row is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        now = self._clock.now()
        steps = [step_record(s, now) for s in await self._store.get_run_steps(run_id)]
        hooks = [
            hook_record(h, self.settings.base_url, now)
            for h in await self._store.get_run_hooks(run_id)
        ]
        record = run_record(row, steps, hooks)
        if record.worker is None and record.status in _CLAIMABLE and record.wait is None:
            record.wait = await self._queue_wait(row)
        await self._explain_unclaimed([record])
        return record

    async def _explain_unclaimed(self, records: list[WorkflowRecord]) -> None:
        # Say why nothing picks a run up when no live worker can execute it.
        seen: dict[tuple[str, str], bool] = {}
        for record in records:
            if record.worker is not None or record.status not in _CLAIMABLE or record.wait:
                continue
            key = (f"{record.workflow}:{record.version}", record.queue)
            if key not in seen:
                seen[key] = bool(await self._store.live_workers_for(*key, WORKER_SILENCE_SECONDS))
            if not seen[key]:
                record.wait = {
                    "kind": "no_worker",
                    "detail": f"no live worker executes {record.workflow} v{record.version} "
                    f"on queue {record.queue!r}",
                }

    async def _queue_wait(self, row: Any) -> dict[str, str] | None:
        now = self._clock.now()
        if row["status"] == "created" and row["runnable_at"] > now:
            at = row["runnable_at"].isoformat()
            return {"kind": "delayed", "until": at, "detail": f"claimable from {at}"}
        return await hold_reason(self._store, row, now)

    async def queues(self, top_keys: int = 5) -> list[QueueState]:
        """Per queue: executing, claimable, delayed and limited runs, and its busiest keys."""
        return await queue_states(self._store, self._clock.now(), top_keys)

    async def list_runs(
        self,
        status: WorkflowStatus | str | None = None,
        workflow: str | None = None,
        limit: int = 100,
        before: tuple[datetime, str] | None = None,
    ) -> list[WorkflowRecord]:
        """Runs, newest first (without steps)."""
        wanted = None if status is None else WorkflowStatus(status).value
        rows = await self._store.list_runs(wanted, workflow, before, max(1, min(limit, 1000)))
        records = [run_record(r, [], []) for r in rows]
        await self._explain_unclaimed(records)
        return records

    @overload
    async def result(
        self, run_id: str, workflow: WorkflowDefinition[Any, O], *, timeout: Duration | None = None
    ) -> O: ...
    @overload
    async def result(self, run_id: str, timeout: Duration | None = None) -> Any: ...
    # The second positional parameter is the workflow or (as before) the timeout; mypy
    # cannot see that the implementation takes both by position and by keyword.
    async def result(  # type: ignore[misc]
        self, run_id: str, workflow: Any = None, timeout: Any = None
    ) -> Any:
        """Wait for the run to end; its output, or WorkflowFailed / WorkflowCancelled.

        Given the run's workflow (``ff.result(run_id, wf)``), the output is typed as its own.
        """
        if workflow is not None and not isinstance(workflow, WorkflowDefinition):
            timeout = workflow  # ff.result(run_id, "30s"): the timeout, given positionally
        limit = None if timeout is None else parse_duration(timeout).total_seconds()
        with anyio.move_on_after(limit):
            return self._outcome(await self._ended(run_id))
        raise ResultTimeout(f"run {run_id} did not finish within {limit:g}s")

    async def _ended(self, run_id: str) -> WorkflowRecord:
        # Read once, then again only when the run's end is announced: a run started and
        # awaited costs two reads whatever happens to it meanwhile, one when this client
        # started it while listening.
        await self._notifications.start()
        noted = self._notifications.expected_end(run_id)
        if noted is not None:
            # Started here while listening: its end is announced, no need to read before.
            try:
                with anyio.move_on_after(5):
                    await noted.wait()
            finally:
                self._notifications.forget(run_id, noted)
        while True:
            ended = self._notifications.run_ended(run_id)
            try:
                record = await self._brief(run_id)
                if record.is_terminal:
                    return record
                # The fallback timeout covers a notification lost with a dropped connection.
                with anyio.move_on_after(5):
                    await ended.wait()
            finally:
                self._notifications.forget(run_id, ended)

    def _outcome(self, record: WorkflowRecord) -> Any:
        if record.status is WorkflowStatus.COMPLETED:
            definition = self.registry.find(record.workflow, record.version)
            if definition is None:
                return record.output
            return definition.output_adapter.validate_python(record.output)
        error = record.error or {}
        message = f"run {record.run_id} ended {record.status.value}: {error.get('message', '')}"
        kind = WorkflowCancelled if record.end_reason == "cancel" else WorkflowFailed
        raise kind(
            message,
            run_id=record.run_id,
            status=record.status.value,
            reason=record.end_reason,
            error=error,
            error_type=error.get("error_type") or error.get("type"),
        )

    async def watch(self, run_id: str, *, steps: bool = True) -> AsyncIterator[WorkflowRecord]:
        """Yield the run at each change (LISTEN/NOTIFY) until it reaches a terminal status."""
        await self._notifications.start()
        last: Any = None
        renew_at = 0.0
        while True:
            changed = self._notifications.run_changed(run_id)
            try:
                if steps and anyio.current_time() >= renew_at:
                    # Checkpoints NOTIFY only for watched runs; renew before it lapses.
                    await self._store.watch_run(run_id, 60)
                    renew_at = anyio.current_time() + 30
                record = await self.status(run_id) if steps else await self._brief(run_id)
                fingerprint = (record.status, [(s.name, s.status) for s in record.steps])
                if fingerprint != last:
                    last = fingerprint
                    yield record
                if record.is_terminal:
                    return
                # The fallback timeout covers a notification lost with a dropped connection.
                with anyio.move_on_after(5):
                    await changed.wait()
            finally:
                self._notifications.forget(run_id, changed)

    async def _brief(self, run_id: str) -> WorkflowRecord:
        row = await self._store.get_run(run_id)
        if row is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        return run_record(row, [], [])

    # -- changing runs -----------------------------------------------------------------

    async def cancel(self, run_id: str) -> WorkflowRecord:
        """Request cancellation: the run (and attached children) compensate in reverse."""
        await self._store.request_cancel(run_id, self._clock.now())
        return await self._brief(run_id)

    async def resume(self, run_id: str) -> bool:
        """Make a waiting or stuck run claimable now; False if it has ended."""
        if await self._store.wake_run(run_id, self._clock.now()):
            return True
        await self._brief(run_id)
        return False

    async def resume_hook(
        self,
        hook_id: str,
        decision: Outcome | str = "approve",
        data: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> str:
        """Give a hook its decision and wake its run; returns the run id."""
        outcome = Outcome(decision).value
        now = self._clock.now()
        run_id = await self._store.resolve_hook(
            hook_id, outcome, dumps(dict(data or {})), now, idempotency_key
        )
        if run_id is not None:
            log.info("hook_resumed", hook_id=hook_id, run_id=run_id, decision=outcome)
            return run_id
        hook = await self._store.get_hook(hook_id)
        if hook is None:
            raise HookNotFound(f"no resume hook with id {hook_id!r}")
        if hook["status"] == "consumed":
            same = (
                idempotency_key is not None
                and hook["idempotency_key"] == idempotency_key
                and hook["decision"] == outcome
            )
            if same:
                return str(hook["run_id"])
            raise HookAlreadyUsed(f"hook {hook_id!r} already received {hook['decision']!r}")
        # Expired by its timeout, or closed early because its run ended (resolved_at).
        when = min(t for t in (hook["expires_at"], hook["resolved_at"]) if t is not None)
        raise HookExpired(f"hook {hook_id!r} expired at {when}")

    async def get_hook(self, hook_id: str) -> HookRecord:
        """One hook, with its state, decision and url; HookNotFound if there is none."""
        row = await self._store.get_hook(hook_id)
        if row is None:
            raise HookNotFound(f"no resume hook with id {hook_id!r}")
        return hook_record(row, self.settings.base_url, self._clock.now())

    async def steps(self, run_id: str) -> list[StepRecord]:
        """A run's step records in completion order (running and pending ones last)."""
        return [step_record(r) for r in await self._store.get_run_steps(run_id)]

    async def fire_timers(self, run_id: str | None = None, at: datetime | None = None) -> list[str]:
        """Make due at ``at`` (default now) the sleep and retry timers of waiting runs."""
        when = self._clock.now() if at is None else at
        if when.tzinfo is None:
            raise ValueError("at: must be timezone-aware")
        return await self._store.fire_timers(run_id, when)

    async def migrate(self) -> list[int]:
        """Apply pending schema migrations; the versions applied."""
        return await self._store.migrate()

    @property
    def clock(self) -> Clock:
        """The clock the engine reads its time from (a ManualClock in tests)."""
        return self._clock

    async def list_hooks(
        self, status: str | None = "active", workflow: str | None = None, limit: int = 500
    ) -> list[Any]:
        """Hooks (the suspensions view), each with is_expired and its url."""
        rows = await self._store.list_hooks(status, workflow, limit)
        now = self._clock.now()
        return [hook_record(r, self.settings.base_url, now) for r in rows]

    async def send_event(self, event_type: str, payload: Mapping[str, Any] | None = None) -> int:
        """Deliver an event to every run waiting for it with a matching filter; how many."""
        count = await self._store.send_event(
            event_type, dumps(dict(payload or {})), self._clock.now()
        )
        log.info("event_sent", event_type=event_type, resumed=count)
        return count

    # -- repairing runs and keeping the database small -----------------------------------

    async def restart(self, run_id: str, version: int | None = None) -> str:
        """Start the run's workflow again with its input (latest version unless given)."""
        return await self._repairs.restart(run_id, version)

    async def fork(self, run_id: str, from_step: str, version: int | None = None) -> str:
        """A new run reusing the checkpoints completed before ``from_step``; its id."""
        return await self._repairs.fork(run_id, from_step, version)

    async def purge(
        self,
        older_than: Duration,
        workflow: str | None = None,
        status: WorkflowStatus | str | None = None,
        dry_run: bool = False,
    ) -> int:
        """Delete runs that ended more than ``older_than`` ago, with all their rows; how many."""
        return await self._repairs.purge(older_than, workflow, status, dry_run)

    async def cancel_many(
        self,
        *,
        workflow: str | None = None,
        status: WorkflowStatus | str | None = None,
        since: datetime | Duration | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        dry_run: bool = False,
        all: bool = False,
    ) -> BulkResult:
        """Cancel the oldest ``limit`` runs matching the filters; what matched and acted."""
        return await self._repairs.cancel_many(
            workflow=workflow,
            status=status,
            since=since,
            until=until,
            limit=limit,
            dry_run=dry_run,
            everything=all,
        )

    async def restart_many(
        self,
        *,
        workflow: str | None = None,
        status: WorkflowStatus | str | None = None,
        since: datetime | Duration | None = None,
        until: datetime | None = None,
        version: int | None = None,
        limit: int = 1000,
        dry_run: bool = False,
        all: bool = False,
    ) -> BulkResult:
        """Restart the oldest ``limit`` runs matching the filters; what matched and acted."""
        return await self._repairs.restart_many(
            workflow=workflow,
            status=status,
            since=since,
            until=until,
            version=version,
            limit=limit,
            dry_run=dry_run,
            everything=all,
        )

    # -- schedules -----------------------------------------------------------------------

    async def schedule(
        self,
        name: str,
        workflow: WorkflowDefinition[Any, Any] | str,
        *,
        cron: str,
        input: Any = None,
        timezone: str = "UTC",
        catchup: str = "latest",
    ) -> ScheduleRecord:
        """Create or update the stored schedule ``name``; ValueError naming a bad field."""
        definition = self._definition(workflow, None)
        return await self._schedules.create(
            name, definition, cron=cron, input=input, timezone=timezone, catchup=catchup
        )

    async def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule (decorator and stored), by name, with its next fire and last run."""
        return await self._schedules.list()

    async def get_schedule(self, name: str) -> ScheduleRecord:
        """One schedule; ScheduleNotFound if there is none by that name."""
        return await self._schedules.get(name)

    async def pause_schedule(self, name: str) -> ScheduleRecord:
        """Stop a schedule firing until it is resumed."""
        return await self._schedules.pause(name)

    async def resume_schedule(self, name: str) -> ScheduleRecord:
        """Let a paused schedule fire again, from its next future fire time."""
        return await self._schedules.resume(name)

    async def delete_schedule(self, name: str) -> None:
        """Delete a schedule; its runs stay."""
        await self._schedules.delete(name)

    async def trigger_schedule(self, name: str) -> str:
        """Start one run of a schedule now (``ctx.scheduled_at`` is now); its run id."""
        return await self._schedules.trigger(name)

    # -- executing -----------------------------------------------------------------------

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


class _NewRun(NamedTuple):
    """A validated run about to be written."""

    definition: WorkflowDefinition[Any, Any]
    value: Any
    input_json: str
    queue: str
    now: datetime
    options: StartOptions


class _Output(NamedTuple):
    """The output of a run that completed (None is an output too)."""

    value: Any
