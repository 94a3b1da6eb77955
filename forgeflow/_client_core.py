"""What every part of the client stands on: its store, registry, clock and settings, the
executor and notifications shared by the runs it starts and executes, and the helpers
the areas of ``_client_*`` share (resolving a definition, validating a new run,
reading a run briefly). ``Forgeflow`` (``_client``) puts the areas together."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from ._clock import Clock, SystemClock
from ._context import EngineSettings
from ._definitions import Registry, WorkflowDefinition, default_registry
from ._durations import Duration
from ._events import Emitter, Listener
from ._executor import Executor
from ._models import WorkflowRecord
from ._notify import Notifications
from ._records import run_record
from ._repair import Repairs
from ._runtime import Runtime
from ._schedules import Schedules
from ._settings import Settings
from ._start_options import Debounce, StartOptions, start_options
from ._store import Store
from ._worker import WORKER_SILENCE_SECONDS
from .errors import RunNotFound

__all__ = ["ClientCore", "_NewRun"]


class ClientCore:
    """A client's state and the helpers its areas share (see ``Forgeflow``)."""

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

    async def _brief(self, run_id: str) -> WorkflowRecord:
        row = await self._store.get_run(run_id)
        if row is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        return run_record(row, [], [])

    async def migrate(self) -> list[int]:
        """Apply pending schema migrations; the versions applied."""
        return await self._store.migrate()

    @property
    def clock(self) -> Clock:
        """The clock the engine reads its time from (a ManualClock in tests)."""
        return self._clock


class _NewRun(NamedTuple):
    """A validated run about to be written."""

    definition: WorkflowDefinition[Any, Any]
    value: Any
    input_json: str
    queue: str
    now: datetime
    options: StartOptions
