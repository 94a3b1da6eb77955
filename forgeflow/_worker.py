"""Workers: serve queues with the run loop, announce themselves, shut down gracefully."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import anyio
import structlog

from ._durations import Duration, parse_duration
from ._interrupt import Interrupts
from ._queues import QueueClaimer
from ._retention import parse_retention, retention_service
from ._runloop import RunLoop
from ._runtime import Runtime
from ._schedules import Scheduler
from ._store import Record

__all__ = ["WORKER_HEARTBEAT_SECONDS", "WORKER_SILENCE_SECONDS", "Announcement", "Worker"]

log = structlog.get_logger("forgeflow.worker")

# How often a worker says it is alive, and how long after its last word it counts as gone.
WORKER_HEARTBEAT_SECONDS = 10.0
WORKER_SILENCE_SECONDS = 35.0


class Announcement:
    """A worker's entry in ``forgeflow.workers``: what it executes, kept alive while it runs.

    It lets ``status`` tell a run that no live worker can execute from one waiting for a
    free slot.
    """

    def __init__(
        self, runtime: Runtime, worker_id: str, queues: Sequence[str], concurrency: int
    ) -> None:
        self.runtime = runtime
        self.worker_id = worker_id
        self.queues = list(queues)
        self.concurrency = concurrency

    async def register(self) -> None:
        """Record the worker, its queues and the workflow versions it executes."""
        names = [f"{n}:{v}" for n, v in self.runtime.workflow_keys()]
        await self.runtime.store.register_worker(
            self.worker_id, self.queues, names, self.concurrency
        )

    async def keep_alive(self) -> None:
        """Say the worker is alive every few seconds (registering again if forgotten)."""
        while True:
            await anyio.sleep(WORKER_HEARTBEAT_SECONDS)
            try:
                if not await self.runtime.store.worker_heartbeat(self.worker_id):
                    await self.register()
            except Exception as exc:
                log.warning("worker_heartbeat_failed", worker=self.worker_id, error=str(exc))

    async def withdraw(self) -> None:
        """Forget the worker (it stops); best effort."""
        with anyio.move_on_after(5, shield=True), contextlib.suppress(Exception):
            await self.runtime.store.unregister_worker(self.worker_id)


class Worker:
    """Executes runs from the database with bounded concurrency, until stopped."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        concurrency: int = 10,
        queues: Sequence[str] | None = None,
        lease: Duration | None = None,
        poll_interval: Duration = "1s",
        grace: Duration = "30s",
        worker_id: str | None = None,
        retention: Duration | None = None,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError("concurrency: must be a positive integer")
        self.runtime = runtime
        self.concurrency = concurrency
        # By default, the queues this worker's workflows name; `queues=` chooses instead.
        names = list(queues) if queues is not None else runtime.registry.queue_names()
        self.queues = names or ["default"]
        self.claimer = QueueClaimer(runtime.store, self.queues)
        lease_seconds = (
            runtime.settings.lease_seconds
            if lease is None
            else parse_duration(lease, field="lease").total_seconds()
        )
        if lease_seconds <= 0:
            raise ValueError("lease: must be positive")
        self.poll_interval = parse_duration(poll_interval, field="poll_interval").total_seconds()
        self.grace = parse_duration(grace, field="grace").total_seconds()
        self.loop = RunLoop(runtime.executor, lease_seconds=lease_seconds, worker_id=worker_id)
        #: Finished runs older than this are deleted by the workers (None: kept forever).
        self.retention = runtime.retention if retention is None else parse_retention(retention)
        self._stopping = False
        # How many runs the last claim took, and the next due time with when it was read.
        self._claimed = 0
        self._next_wake: tuple[float, datetime | None] = (float("-inf"), None)
        self._exit: contextlib.AsyncExitStack | None = None
        self._runs: Any = None
        self.log = log.bind(worker=self.worker_id)
        self._interrupts = Interrupts(self.log, self.grace)
        self.announcement = Announcement(runtime, self.worker_id, self.queues, concurrency)

    @property
    def worker_id(self) -> str:
        """The id this worker's leases are held under."""
        return self.loop.worker_id

    @property
    def lease_seconds(self) -> float:
        """The lease each claimed run gets, in seconds."""
        return self.loop.lease_seconds

    @property
    def active(self) -> int:
        """How many runs this worker executes right now."""
        return self.loop.active

    @property
    def executed(self) -> int:
        """How many executions this worker has finished."""
        return self.loop.executed

    async def __aenter__(self) -> Worker:
        notifications = self.runtime.notifications
        await notifications.start()
        await self.announcement.register()
        await self.claimer.start(self.runtime.registry.queues())
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            notifications.on_wakeup.append(self._on_wakeup)
            stack.callback(self._forget_wakeup)
            services = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(services.cancel_scope.cancel)
            self._runs = await stack.enter_async_context(anyio.create_task_group())
            await services.start(self.loop.keep_leases)
            services.start_soon(self.announcement.keep_alive)
            await services.start(Scheduler(self.runtime).serve)
            if self.retention is not None:
                retention = retention_service(self.runtime, self.retention, self.worker_id)
                await services.start(retention)
            self._runs.start_soon(self._serve)
        except BaseException:
            await stack.aclose()
            raise
        self._exit = stack
        self._interrupts.install()
        self.log.info("worker_started", concurrency=self.concurrency, queues=self.queues)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        interrupts = self._interrupts
        interrupts.absorb()
        await self.stop()
        if interrupts.interrupted:
            # Ctrl-C was the way out: the worker stopped gracefully and said so in one
            # line; a traceback of the cancelled script would only bury that line.
            raise SystemExit(130) from None

    def _forget_wakeup(self) -> None:
        with contextlib.suppress(ValueError):
            self.runtime.notifications.on_wakeup.remove(self._on_wakeup)

    def _on_wakeup(self, queue: str) -> None:
        if not queue or queue in self.queues:
            self.loop.poke()

    async def _claim(self, limit: int, worker_id: str, lease_seconds: float) -> list[Record]:
        keys = self.runtime.workflow_keys()
        if not keys:
            return []
        rows = await self.claimer.claim(
            self.runtime.clock.now(), keys, limit, worker_id, lease_seconds
        )
        self._claimed = len(rows)
        # A run of a limited queue that ends frees a slot there: claim again each time.
        self.loop.claim_after_each_run = bool(self.claimer.limited)
        return rows

    async def _serve(self) -> None:
        await self.loop.serve(
            self._claim, self.concurrency, self._idle, self._runs, lambda: self._stopping
        )

    async def _idle(self, wakeup: anyio.Event) -> None:
        # Until a notification, the next timer coming due, or the poll interval.
        timeout = self.poll_interval
        if self.active < self.concurrency:
            timeout = await self._until_next(timeout)
        notifications = self.runtime.notifications
        if not notifications.connected:
            try:
                await notifications.start()
            except Exception as exc:
                self.log.warning("listen_reconnect_failed", error=str(exc))
        with anyio.move_on_after(timeout):
            await wakeup.wait()

    async def _until_next(self, timeout: float) -> float:
        keys = self.runtime.workflow_keys()
        if not keys:
            return timeout
        now = self.runtime.clock.now()
        looked_at, nxt = self._next_wake
        # A claim that took runs was woken by them becoming due; the next due time read
        # less than a poll interval ago still stands (anything due sooner is announced,
        # and the poll bounds the rest). Otherwise, read it again.
        if (
            not self._claimed
            or anyio.current_time() - looked_at >= self.poll_interval
            or (nxt is not None and nxt <= now)
        ):
            try:
                nxt = await self.claimer.next_wake(keys, now)
            except Exception:
                return timeout
            self._next_wake = (anyio.current_time(), nxt)
        if nxt is None:
            return timeout
        delta = (nxt - self.runtime.clock.now()).total_seconds()
        return min(timeout, max(delta, 0.01))

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming, let in-flight steps finish within the grace period, release leases."""
        if self._stopping or self._exit is None:
            return
        self._stopping = True
        self.loop.poke()
        self.loop.request_release()
        with anyio.move_on_after(self.grace if grace is None else grace):
            await self.loop.wait_idle()
        leftover = await self.loop.abandon()
        self._runs.cancel_scope.cancel()
        exit_stack, self._exit = self._exit, None
        await exit_stack.aclose()
        await self.announcement.withdraw()
        # Only now: a Ctrl-C during the grace period must still end the process at once.
        self._interrupts.remove()
        self.log.info("worker_stopped", executed=self.executed, released=len(leftover))

    async def wait_idle(self) -> None:
        """Wait until this worker executes nothing (for scripts and tests)."""
        await self.loop.wait_idle()
