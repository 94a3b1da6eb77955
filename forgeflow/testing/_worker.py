"""The test environment's worker: executes, in-process, what is due at the test clock's time.

A real worker claims runs forever and sleeps between claims; this one claims only when
asked to (or woken by a notification), and reports when nothing is left to do at the
current time, which is what lets the env move time from one wake-up to the next.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from .._lease import Lease
from .._runloop import RunLoop, new_worker_id
from .._schedules import BATCH as SCHEDULE_BATCH
from .._schedules import Scheduler
from .._store import Record
from .._worker import Announcement
from ._context import SimulatedCrash
from ._store import TestingStore

if TYPE_CHECKING:
    from .._client import Forgeflow
    from ._clock import ManualClock

__all__ = ["TestWorker"]

log = structlog.get_logger("forgeflow.testing")


class _CrashingLoop(RunLoop):
    """The run loop, noting the runs whose execution a simulated crash stopped."""

    def __init__(self, executor: Any, lease_seconds: float) -> None:
        super().__init__(executor, lease_seconds=lease_seconds)
        self.crashed: list[str] = []

    async def _execute_one(self, row: Record, lease: Lease) -> None:
        try:
            await self.execute(row, lease)
        except SimulatedCrash as crash:
            log.info("simulated_crash", run_id=crash.run_id, step=crash.step)
            self.crashed.append(row["id"])


class TestWorker:
    """Claims and executes due runs in batches until none is left (``drain``)."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(
        self,
        client: Forgeflow,
        clock: ManualClock,
        *,
        queues: set[str],
        batch: int,
        poll_interval: float,
    ) -> None:
        self.client = client
        self.runtime = client.runtime
        self.clock = clock
        self.queues = queues
        self.batch = batch
        self.poll_interval = poll_interval
        self.loop = _CrashingLoop(self.runtime.executor, self.runtime.settings.lease_seconds)
        self._db = TestingStore(client.pool)
        self.scheduler = Scheduler(self.runtime)
        self._lock: anyio.Lock | None = None
        self._nudge: anyio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._error: BaseException | None = None
        self._announcement: Announcement | None = None

    @property
    def name(self) -> str:
        """The worker id the env's leases are held under."""
        return self.loop.worker_id

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Listen for wake-ups, announce this worker, start its background tasks."""
        self._lock = anyio.Lock()
        self._nudge = anyio.Event()
        await self.runtime.notifications.start()
        self.runtime.notifications.on_wakeup.append(self._on_wakeup)
        # Announced like any worker, so that status() does not report a run of the env's
        # workflows as one no live worker executes.
        announcement = Announcement(self.runtime, self.name, self.queue_list(), self.batch)
        self._announcement = announcement
        await announcement.register()
        await self.scheduler.declare()
        # Plain asyncio tasks rather than a task group: a fixture may start the worker in
        # one task and stop it in another, which a cancel scope does not allow.
        self._tasks = [
            asyncio.create_task(self.loop.keep_leases(), name="forgeflow-testing-heartbeat"),
            asyncio.create_task(self._serve(), name="forgeflow-testing-worker"),
            asyncio.create_task(self._announcement.keep_alive(), name="forgeflow-testing-announce"),
        ]

    async def stop(self) -> None:
        """Cancel the background tasks (and any run still executing), unannounce."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._announcement is not None:
            await self._announcement.withdraw()
        with contextlib.suppress(ValueError):
            self.runtime.notifications.on_wakeup.remove(self._on_wakeup)

    def raise_error(self) -> None:
        """Re-raise (once) an error the background loop met."""
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _on_wakeup(self, _queue: str) -> None:
        if self._nudge is not None:
            self._nudge.set()

    async def _serve(self) -> None:
        # Woken by forgeflow_wakeup (a start, a decision, an event, a cancel) or, as a
        # fallback for a lost notification, every poll interval.
        while True:
            assert self._nudge is not None
            with anyio.move_on_after(self.poll_interval):
                await self._nudge.wait()
            self._nudge = anyio.Event()
            try:
                async with self.lock():
                    await self.drain()
            except Exception as exc:
                log.exception("test_worker_failed", error=str(exc))
                self._error = self._error or exc

    # -- executing -----------------------------------------------------------------------

    def workflow_keys(self) -> list[tuple[str, int]]:
        """The (workflow, version) pairs this worker executes: its client's registry."""
        return self.runtime.workflow_keys()

    def queue_list(self) -> list[str]:
        """The queues it serves: those its workflows name, "default" and any added."""
        queues = {d.queue for d in self.runtime.registry.definitions()}
        return sorted(queues | self.queues | {"default"})

    def lock(self) -> anyio.Lock:
        """Held while runs execute, so that time never moves under a running run."""
        assert self._lock is not None, "use the env as 'async with WorkflowTestEnv(...)'"
        return self._lock

    async def _claim(self, limit: int, worker_id: str, lease_seconds: float) -> list[Record]:
        return await self.runtime.store.claim_runs(
            self.clock.now(),
            self.queue_list(),
            self.workflow_keys(),
            limit,
            worker_id,
            lease_seconds,
        )

    async def drain(self) -> int:
        """Execute what is due now, batch after batch, until a claim finds nothing; how
        many executions ran."""
        loop = self.loop
        total = 0
        while True:
            total += await loop.drain(self._claim, self.batch)
            if not await self._after_batch():
                return total

    async def _run_batch(self) -> None:
        """Claim one batch of what is due now and execute it: ``drain`` without the claim
        that finds nothing left (the next stop's statement tells whether anything is)."""
        loop = self.loop
        claimed = await loop.claim(self._claim, self.batch)
        async with anyio.create_task_group() as group:
            for row, lease in claimed:
                group.start_soon(loop._execute_one, row, lease)
        await self._after_batch()

    async def _after_batch(self) -> bool:
        """Raise what a batch's runs met; True if runs crashed and should be taken over."""
        loop = self.loop
        if loop.errors:
            error = loop.errors[0]
            loop.errors.clear()
            raise error
        if not loop.crashed:
            return False
        # The dead worker's leases lapse and a new worker (a new id) takes over from the
        # last checkpoints, as after a real crash.
        for run_id in loop.crashed:
            await self._db.expire_lease(run_id, loop.worker_id)
        loop.crashed.clear()
        loop.worker_id = new_worker_id()
        return True

    async def settle(self) -> None:
        """Fire the schedules due and execute everything due at the current time."""
        self.raise_error()
        async with self.lock():
            await self.scheduler.fire_due()
            await self.drain()

    async def advance_to(self, when: datetime) -> None:
        """Run what is due now, then jump from wake-up to wake-up up to ``when``.

        One statement per stop says whether anything is left to run at the current time
        and finds the next stop with the schedules due there, which are fired from what
        it read (read again only if another process changed one of them meanwhile).
        """
        self.raise_error()
        async with self.lock():
            await self.scheduler.fire_due()
            await self.drain()
            while True:
                live = self.scheduler.live()
                stop = await self._db.next_stop(
                    self.clock.now(),
                    when,
                    self.queue_list(),
                    self.workflow_keys(),
                    list(live),
                    SCHEDULE_BATCH,
                )
                # (A claim that finds nothing after all must not make this loop spin.)
                if stop.runnable_now and await self.drain():
                    continue
                if stop.at is None:
                    break
                self.clock.set(stop.at)
                # Schedules first: their runs then execute with the runs woken now.
                _, current = await self.scheduler.fire(stop.schedules, live)
                if not current or len(stop.schedules) == SCHEDULE_BATCH:
                    await self.scheduler.fire_due()
                await self._run_batch()
            self.clock.set(when)
