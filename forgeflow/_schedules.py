"""Schedules: the worker's scheduler and the operations behind the client's methods.

A schedule row holds its next fire time (UTC). Whoever handles a due schedule — any
worker, or the test env — plans the fire times to run (``_cron.plan_fires``) and then,
in one statement, starts those runs and moves the next fire time on with a
compare-and-set (``Store.fire_schedule``): of several workers deciding at once one wins,
and a worker killed in between has committed nothing. Each run's idempotency key is
``schedule:<name>:<fire time>``, so no fire time can ever get a second run.

Workers do not poll: the scheduler sleeps until the earliest next fire time of the
schedules it can run, and every change to a schedule NOTIFYs ``forgeflow_schedules``,
which wakes it to look again.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from pydantic import BaseModel

from ._cron import ScheduleSpec, next_fire_after, plan_fires
from ._definitions import WorkflowDefinition
from ._models import WorkflowStatus
from ._serde import loads
from .errors import ScheduleNotFound, WorkflowNotFound

if TYPE_CHECKING:
    from ._runtime import Runtime
    from ._store import Record

__all__ = ["ScheduleRecord", "Scheduler", "Schedules"]

log = structlog.get_logger("forgeflow.schedules")

#: Due schedules handled per statement batch.
BATCH = 100
#: The longest the scheduler sleeps without a notification (a lost NOTIFY, a new
#: schedule of a workflow this worker could not see): not a poll, a safety net.
_MAX_WAIT = 60.0
#: How long to wait before trying again after the database failed.
_RETRY_WAIT = 5.0
_MAX_NAME = 200


class ScheduleRecord(BaseModel):
    """A schedule, its next fire time and its latest run."""

    name: str
    workflow: str
    cron: str
    timezone: str
    catchup: str
    paused: bool
    #: The next fire time not handled yet (UTC); a paused schedule resumes after "now".
    next_fire_at: datetime | None
    last_run_id: str | None = None
    last_run_status: WorkflowStatus | None = None
    #: The fire time (or trigger time) of the latest run.
    last_scheduled_at: datetime | None = None
    input: Any = None
    #: "decorator" (declared on @workflow, kept by workers) or "api" (Forgeflow.schedule).
    source: str = "api"


def schedule_record(row: Record) -> ScheduleRecord:
    """A list_schedules row as a ScheduleRecord."""
    return ScheduleRecord(
        name=row["name"],
        workflow=row["workflow"],
        cron=row["cron"],
        timezone=row["timezone"],
        catchup=row["catchup"],
        paused=row["paused"],
        next_fire_at=row["next_fire_at"],
        last_run_id=row["last_run_id"],
        last_run_status=row["last_run_status"],
        last_scheduled_at=row["last_scheduled_at"],
        input=loads(row["input"]),
        source=row["source"],
    )


def _target(definition: WorkflowDefinition[Any, Any]) -> tuple[str, int, str, float]:
    return (
        definition.name,
        definition.version,
        definition.queue,
        definition.timeout.total_seconds(),
    )


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME:
        raise ValueError(f"name: expected a non-empty string of at most {_MAX_NAME} characters")
    return name


class Scheduler:
    """Fires the due schedules of the workflows one process can execute."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._changed = anyio.Event()

    def live(self) -> dict[str, WorkflowDefinition[Any, Any]]:
        """The latest non-deprecated definition of each registered workflow."""
        registry = self.runtime.registry
        found = {}
        for name in registry.names():
            with contextlib.suppress(WorkflowNotFound):
                found[name] = registry.get(name)
        return found

    async def declare(self) -> None:
        """Write the decorator schedules of this process's workflows into the database."""
        now = self.runtime.clock.now()
        store = self.runtime.store
        undeclared = []
        for name, definition in self.live().items():
            spec = definition.schedule
            if spec is None:
                undeclared.append(name)
                continue
            await store.upsert_schedule(
                name,
                _target(definition),
                (spec.cron, spec.timezone, spec.catchup),
                definition.schedule_input(),
                "decorator",
                next_fire_after(spec, now),
                now,
            )
        # A schedule removed from the code stops with the first worker running that code.
        if undeclared:
            await store.forget_declared_schedules(undeclared)

    async def fire_due(self) -> list[str]:
        """Start the runs of every due schedule at the clock's time; the run ids."""
        started: list[str] = []
        live = self.live()
        while True:
            rows = await self.runtime.store.due_schedules(
                self.runtime.clock.now(), list(live), BATCH
            )
            fired, _ = await self.fire(rows, live)
            started += fired
            if len(rows) < BATCH:
                return started

    async def fire(
        self, rows: list[Record], live: dict[str, WorkflowDefinition[Any, Any]] | None = None
    ) -> tuple[list[str], bool]:
        """Fire the given due schedule rows at the clock's time: the run ids started, and
        whether every row was still as read (False: another process changed or fired
        one first, and ``fire_due`` should look again)."""
        live = self.live() if live is None else live
        now = self.runtime.clock.now()
        started: list[str] = []
        current = True
        for row in rows:
            definition = live.get(row["workflow"])
            if definition is None:
                continue
            created = await self._fire(row, definition, now)
            current = current and created is not None
            started += created or []
        return started, current

    async def _fire(
        self, row: Record, definition: WorkflowDefinition[Any, Any], now: datetime
    ) -> list[str] | None:
        name = row["name"]
        spec = ScheduleSpec(row["cron"], row["timezone"], row["catchup"])
        plan = plan_fires(spec, row["next_fire_at"], now)
        fires = [(str(uuid.uuid4()), t, t.astimezone(UTC).isoformat()) for t in plan.fires]
        created = await self.runtime.store.fire_schedule(
            name, row["next_fire_at"], plan.next_fire_at, _target(definition), fires, now
        )
        if created is None:
            return None  # another worker handled this fire time first
        if plan.skipped:
            log.warning(
                "schedule_missed", schedule=name, skipped=plan.skipped, catchup=spec.catchup
            )
        log.info(
            "schedule_fired",
            schedule=name,
            runs=created,
            fire_times=[t.isoformat() for t in plan.fires],
            next_fire_at=plan.next_fire_at.isoformat(),
        )
        return created

    async def next_fire(self) -> datetime | None:
        """The earliest next fire time among the schedules this process can run."""
        return await self.runtime.store.next_schedule_fire(list(self.live()))

    def _on_notify(self, channel: str, _payload: str) -> None:
        if channel == "forgeflow_schedules":
            self._changed.set()

    async def _tick(self) -> float:
        """Fire what is due; how long to sleep until the next fire time."""
        try:
            await self.fire_due()
            nxt = await self.next_fire()
        except Exception as exc:
            log.warning("scheduler_failed", error=str(exc))
            return _RETRY_WAIT
        if nxt is None:
            return _MAX_WAIT
        delay = (nxt - self.runtime.clock.now()).total_seconds()
        return min(_MAX_WAIT, max(delay, 0.001))

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Declare this process's schedules, then fire them on time until cancelled."""
        await self.declare()
        hooks = self.runtime.notifications.on_any
        hooks.append(self._on_notify)
        task_status.started()
        try:
            while True:
                # A fresh event before looking, so that a change made while this worker
                # queries is not lost: it wakes the very next wait.
                self._changed = anyio.Event()
                delay = await self._tick()
                with anyio.move_on_after(delay):
                    await self._changed.wait()
        finally:
            with contextlib.suppress(ValueError):
                hooks.remove(self._on_notify)


class Schedules:
    """What ``Forgeflow.schedule`` and its companions do."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def create(
        self,
        name: str,
        definition: WorkflowDefinition[Any, Any],
        *,
        cron: str,
        input: Any,
        timezone: str,
        catchup: str,
    ) -> ScheduleRecord:
        """Create or update a stored schedule; ValueError naming the field if invalid."""
        _check_name(name)
        spec = ScheduleSpec(cron, timezone, catchup)
        input_json = definition.schedule_input(input)
        now = self.runtime.clock.now()
        await self.runtime.store.upsert_schedule(
            name,
            _target(definition),
            (spec.cron, spec.timezone, spec.catchup),
            input_json,
            "api",
            next_fire_after(spec, now),
            now,
        )
        log.info("schedule_saved", schedule=name, workflow=definition.name, cron=cron)
        return await self.get(name)

    async def list(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""
        return [schedule_record(r) for r in await self.runtime.store.list_schedules()]

    async def get(self, name: str) -> ScheduleRecord:
        """One schedule; ScheduleNotFound if there is none by that name."""
        rows = await self.runtime.store.list_schedules(name)
        if not rows:
            raise ScheduleNotFound(f"no schedule named {name!r}")
        return schedule_record(rows[0])

    async def pause(self, name: str) -> ScheduleRecord:
        """Stop firing; ScheduleNotFound if there is none by that name."""
        if not await self.runtime.store.pause_schedule(name, self.runtime.clock.now()):
            raise ScheduleNotFound(f"no schedule named {name!r}")
        log.info("schedule_paused", schedule=name)
        return await self.get(name)

    async def resume(self, name: str) -> ScheduleRecord:
        """Fire again from the next future fire time; a no-op if it is not paused."""
        row = await self.runtime.store.get_schedule(name)
        if row is None:
            raise ScheduleNotFound(f"no schedule named {name!r}")
        spec = ScheduleSpec(row["cron"], row["timezone"], row["catchup"])
        now = self.runtime.clock.now()
        if await self.runtime.store.resume_schedule(name, next_fire_after(spec, now), now):
            log.info("schedule_resumed", schedule=name)
        return await self.get(name)

    async def delete(self, name: str) -> None:
        """Delete a schedule (its runs stay); ScheduleNotFound if there is none."""
        if not await self.runtime.store.delete_schedule(name):
            raise ScheduleNotFound(f"no schedule named {name!r}")
        log.info("schedule_deleted", schedule=name)

    async def trigger(self, name: str) -> str:
        """Start one run now, whose ``scheduled_at`` is now; the run id."""
        row = await self.runtime.store.get_schedule(name)
        if row is None:
            raise ScheduleNotFound(f"no schedule named {name!r}")
        target = None
        if row["workflow"] in self.runtime.registry:
            with contextlib.suppress(WorkflowNotFound):
                _, version, queue, timeout = _target(self.runtime.registry.get(row["workflow"]))
                target = (version, queue, timeout)
        run_id = str(uuid.uuid4())
        if not await self.runtime.store.trigger_schedule(
            name, run_id, target, self.runtime.clock.now()
        ):
            raise ScheduleNotFound(f"no schedule named {name!r}")
        log.info("schedule_triggered", schedule=name, run_id=run_id)
        return run_id
