"""Workers: claim runnable runs, hold their leases, and hand them back on shutdown."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from ._durations import Duration, parse_duration
from ._executor import Executor
from ._queues import QueueClaimer
from ._store import Record

if TYPE_CHECKING:
    from ._client import Forgeflow

__all__ = ["WORKER_SILENCE_SECONDS", "LeaseKeeper", "Worker", "new_worker_id"]

log = structlog.get_logger("forgeflow.worker")

# How often a worker says it is alive, and how long after its last word it counts as gone.
WORKER_HEARTBEAT_SECONDS = 10.0
WORKER_SILENCE_SECONDS = 35.0


def new_worker_id() -> str:
    """A unique id naming this worker in leases: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseKeeper:
    """Extends the leases of the runs a worker executes; cancels those it lost."""

    def __init__(self, executor: Executor, worker_id: str, lease_seconds: float) -> None:
        self.executor = executor
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.scopes: dict[str, anyio.CancelScope] = {}

    async def run(self) -> None:
        """Heartbeat every third of the lease until cancelled."""
        store = self.executor.store
        last_ok = anyio.current_time()
        while True:
            await anyio.sleep(self.lease_seconds / 3)
            ids = list(self.scopes)
            if not ids:
                last_ok = anyio.current_time()
                continue
            try:
                held = await store.heartbeat(self.worker_id, ids, self.lease_seconds)
            except Exception as exc:
                log.warning("heartbeat_failed", worker=self.worker_id, error=str(exc))
                # Without a heartbeat we cannot know we still hold anything: stop before
                # the lease could have expired and been taken over.
                if anyio.current_time() - last_ok > self.lease_seconds * 0.8:
                    for run_id in ids:
                        self._lost(run_id)
                continue
            last_ok = anyio.current_time()
            for run_id in ids:
                if run_id not in held:
                    self._lost(run_id)

    def _lost(self, run_id: str) -> None:
        scope = self.scopes.pop(run_id, None)
        if scope is not None:
            log.warning("lease_lost", run_id=run_id, worker=self.worker_id)
            scope.cancel()

    async def execute(self, run: Record) -> str:
        """Execute a leased run under this keeper's heartbeat."""
        run_id: str = run["id"]
        with anyio.CancelScope() as scope:
            self.scopes[run_id] = scope
            try:
                return await self.executor.execute(run, self.worker_id)
            finally:
                self.scopes.pop(run_id, None)
        return "lease_lost"


class Worker:
    """Executes runs from the database with bounded concurrency, until stopped."""

    def __init__(
        self,
        client: Forgeflow,
        *,
        concurrency: int = 10,
        queues: Sequence[str] | None = None,
        lease: Duration = "30s",
        poll_interval: Duration = "1s",
        grace: Duration = "30s",
        worker_id: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency: must be at least 1")
        self.client = client
        self.concurrency = concurrency
        # By default, the queues this worker's workflows name; `queues=` chooses instead.
        self.queues = list(queues) if queues is not None else client.registry.queue_names()
        self.queues = self.queues or ["default"]
        self.claimer = QueueClaimer(client._store, self.queues)
        self.worker_id = worker_id or new_worker_id()
        self.lease_seconds = parse_duration(lease, field="lease").total_seconds()
        self.poll_interval = parse_duration(poll_interval, field="poll_interval").total_seconds()
        self.grace = parse_duration(grace, field="grace").total_seconds()
        self.executor = client._executor
        self.keeper = LeaseKeeper(self.executor, self.worker_id, self.lease_seconds)
        self._wakeup = anyio.Event()
        self._idle = anyio.Event()
        self._stopping = False
        self._group: Any = None
        self._runs: Any = None
        self.executed = 0
        self.log = log.bind(worker=self.worker_id)

    @property
    def active(self) -> int:
        """How many runs this worker executes right now."""
        return len(self.keeper.scopes)

    async def __aenter__(self) -> Worker:
        await self.client._notifications.start()
        self.client._notifications.on_wakeup.append(self._on_wakeup)
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._runs = anyio.create_task_group()
        await self._runs.__aenter__()
        await self._register()
        await self.claimer.start(self.client.registry.queues())
        self._group.start_soon(self._claim_loop)
        self._group.start_soon(self.keeper.run)
        self._group.start_soon(self._announce)
        self.log.info("worker_started", concurrency=self.concurrency, queues=self.queues)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _register(self) -> None:
        names = [f"{d.name}:{d.version}" for d in self.client.registry.definitions()]
        await self.client._store.register_worker(
            self.worker_id, self.queues, names, self.concurrency
        )

    async def _announce(self) -> None:
        # Lets `status` tell a run nobody can execute from one waiting for a free slot.
        while True:
            await anyio.sleep(WORKER_HEARTBEAT_SECONDS)
            try:
                if not await self.client._store.worker_heartbeat(self.worker_id):
                    await self._register()
            except Exception as exc:
                self.log.warning("worker_heartbeat_failed", error=str(exc))

    def _on_wakeup(self, queue: str) -> None:
        if not queue or queue in self.queues:
            self._wakeup.set()

    async def _claim_loop(self) -> None:
        clock = self.client._clock
        while not self._stopping:
            self._wakeup = anyio.Event()
            keys = [d.key for d in self.client.registry.definitions()]
            free = self.concurrency - self.active
            rows: list[Record] = []
            if free > 0 and keys:
                try:
                    rows = await self.claimer.claim(
                        clock.now(), keys, free, self.worker_id, self.lease_seconds
                    )
                except Exception as exc:
                    self.log.warning("claim_failed", error=str(exc))
                for row in rows:
                    if row["id"] in self.keeper.scopes:
                        # Our own run, whose lease ran out while a stalled loop kept the
                        # heartbeat from renewing it: the claim renewed it, and the run is
                        # still executing here. A second execution would run its steps twice.
                        continue
                    self.keeper.scopes[row["id"]] = anyio.CancelScope()
                    self._runs.start_soon(self._execute, row)
                if rows and len(rows) == free:
                    continue
            timeout = self.poll_interval
            if free > 0 and not rows and keys:
                timeout = await self._until_next(keys, timeout)
            if not self.client._notifications.connected:
                await self._reconnect()
            with anyio.move_on_after(timeout):
                await self._wakeup.wait()

    async def _until_next(self, keys: list[tuple[str, int]], timeout: float) -> float:
        try:
            nxt = await self.claimer.next_wake(keys, self.client._clock.now())
        except Exception:
            return timeout
        if nxt is None:
            return timeout
        delta = (nxt - self.client._clock.now()).total_seconds()
        return min(timeout, max(delta, 0.01))

    async def _reconnect(self) -> None:
        try:
            await self.client._notifications.start()
        except Exception as exc:
            self.log.warning("listen_reconnect_failed", error=str(exc))

    async def _execute(self, row: Record) -> None:
        run_id = row["id"]
        try:
            outcome = await self.keeper.execute(row)
            self.executed += 1
            self.log.debug("run_attempt_done", run_id=run_id, outcome=outcome)
        except Exception as exc:
            # Infrastructure trouble (the database went away mid-run): hand the run back
            # so that it is retried, by us or another worker, from its last checkpoint.
            self.log.exception("run_attempt_crashed", run_id=run_id, error=str(exc))
            with anyio.move_on_after(5, shield=True), contextlib.suppress(Exception):
                await self.client._store.release_run(
                    run_id, self.worker_id, self.client._clock.now()
                )
        finally:
            self._wakeup.set()
            if not self.active:
                idle, self._idle = self._idle, anyio.Event()
                idle.set()

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming, let in-flight steps finish within the grace period, release leases."""
        if self._stopping:
            return
        self._stopping = True
        self._wakeup.set()
        grace = self.grace if grace is None else grace
        for ctx in list(self.executor.live.values()):
            if ctx._worker == self.worker_id:
                ctx.request_release()
        with anyio.move_on_after(grace):
            await self.wait_idle()
        leftover = list(self.keeper.scopes)
        for run_id in leftover:
            self.keeper.scopes[run_id].cancel()
        self._runs.cancel_scope.cancel()
        await self._runs.__aexit__(None, None, None)
        with anyio.move_on_after(5, shield=True):
            for run_id in leftover:
                await self.client._store.release_run(
                    run_id, self.worker_id, self.client._clock.now()
                )
        self._group.cancel_scope.cancel()
        await self._group.__aexit__(None, None, None)
        with anyio.move_on_after(5, shield=True), contextlib.suppress(Exception):
            await self.client._store.unregister_worker(self.worker_id)
        if self._on_wakeup in self.client._notifications.on_wakeup:
            self.client._notifications.on_wakeup.remove(self._on_wakeup)
        self.log.info("worker_stopped", executed=self.executed, released=len(leftover))

    async def wait_idle(self) -> None:
        """Wait until this worker executes nothing (for scripts and tests)."""
        while self.active:
            await self._idle.wait()
