"""The run loop: claim runs, execute them under leases kept alive, hand them back.

Everything that executes runs goes through this one module: a ``Worker`` serves its
queues forever (``serve``), ``Forgeflow.run`` executes one run and its children in the
calling process (``drain`` with a claim of that run), and the testing toolkit executes
whatever is due on its manual clock (``drain`` in batches). Only the claim (what to take)
and the idle wait (when to look again) differ between them; leases, heartbeats,
engine faults and hand-backs are handled here, once.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Awaitable, Callable

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus

from ._executor import Executor
from ._lease import Lease
from ._store import Record, Store

__all__ = ["ENDED", "Claim", "RunLoop", "new_worker_id"]

log = structlog.get_logger("forgeflow.worker")

#: What an execution returns when the run ended in it.
ENDED = frozenset({"completed", "compensated", "failed"})

#: Claims up to ``n`` runs for ``worker_id`` with a lease of ``seconds``.
Claim = Callable[[int, str, float], Awaitable[list[Record]]]


def new_worker_id() -> str:
    """A unique id naming this worker in leases: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class RunLoop:
    """Executes claimed runs with bounded concurrency under leases it keeps renewing."""

    def __init__(
        self, executor: Executor, *, lease_seconds: float, worker_id: str | None = None
    ) -> None:
        self.executor = executor
        self.worker_id = worker_id or new_worker_id()
        self.lease_seconds = lease_seconds
        self.leases: dict[str, Lease] = {}
        self._scopes: dict[str, anyio.CancelScope] = {}
        # Runs claimed again while their execution here was still winding down, each
        # executed anew once that execution has ended (see claim).
        self._next: dict[str, tuple[Record, Lease]] = {}
        # Where ``serve`` starts executions, and whether its worker is stopping.
        self._runs: TaskGroup | None = None
        self._stopping: Callable[[], bool] = lambda: False
        self._idle = anyio.Event()
        self._wakeup = anyio.Event()
        self.executed = 0
        #: Whether a run ending here should make the loop claim again even when its last
        #: claim found all there was (a limited queue's slot frees when a run ends).
        self.claim_after_each_run = True
        self._saturated = False
        #: Unexpected errors met by executions (kept for the testing toolkit to report).
        self.errors: list[Exception] = []

    @property
    def active(self) -> int:
        """How many runs this loop executes right now."""
        return len(self.leases)

    def holds(self, run_id: str) -> bool:
        """True while this loop executes ``run_id``."""
        return run_id in self.leases

    def poke(self) -> None:
        """There may be work to claim (a notification, a slot that became free)."""
        self._wakeup.set()

    # -- leases ----------------------------------------------------------------------

    async def keep_leases(
        self,
        *,
        first: float | None = None,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Heartbeat every third of the lease until cancelled; stop runs whose lease is gone.

        ``first``: seconds until the first heartbeat, if not a third of the lease.
        """
        store = self.executor.store
        task_status.started()
        delay = self.lease_seconds / 3 if first is None else first
        while True:
            await anyio.sleep(delay)
            delay = self.lease_seconds / 3
            ids = list(self.leases)
            if not ids:
                continue
            sent = anyio.current_time()
            try:
                held = await store.heartbeat(self.worker_id, ids, self.lease_seconds)
            except Exception as exc:
                # Each run's own lease deadline stops it from starting new work meanwhile;
                # the next heartbeat that lands renews whatever is still ours. A run whose
                # lease has run out is stopped where it is (a long step, an in-place sleep).
                log.warning("heartbeat_failed", worker=self.worker_id, error=str(exc))
                for run_id, lease in list(self.leases.items()):
                    if lease.expired:
                        self._lost(run_id)
                continue
            for run_id in ids:
                current = self.leases.get(run_id)
                if current is None:
                    continue
                if run_id in held:
                    current.renewed(sent)
                else:
                    self._lost(run_id)

    def _lost(self, run_id: str) -> None:
        scope = self._scopes.get(run_id)
        lease = self.leases.get(run_id)
        if lease is not None:
            lease.handing_back = True  # its execution stops: a claim of it starts anew
        if scope is not None:
            log.warning("lease_lost", run_id=run_id, worker=self.worker_id)
            scope.cancel()

    # -- claiming and executing --------------------------------------------------------

    async def claim(self, claim: Claim, limit: int) -> list[tuple[Record, Lease]]:
        """Claim up to ``limit`` runs; each with its lease, counted from the request."""
        sent = anyio.current_time()
        rows = await claim(limit, self.worker_id, self.lease_seconds)
        claimed = []
        for row in rows:
            current = self.leases.get(row["id"])
            if current is not None and not current.handing_back:
                # Our own run, whose lease ran out while a stalled loop kept the heartbeat
                # from renewing it: the claim renewed it, and the run is still executing
                # here. A second execution would run its steps twice.
                current.renewed(sent)
                continue
            lease = Lease(row["id"], self.worker_id, self.lease_seconds, sent)
            if current is not None:
                # Given back here a moment ago (a release, a wait already over) and claimed
                # again before its execution quite ended: it is executed anew once that
                # execution has. Skipped, it would stay leased here, idle, for a lease.
                self._next[row["id"]] = (row, lease)
                continue
            self.leases[row["id"]] = lease
            claimed.append((row, lease))
        return claimed

    async def execute(self, row: Record, lease: Lease, store: Store | None = None) -> str:
        """Execute one claimed run; what became of it (completed, waiting, abandoned, ...).

        ``store``: an engine store the caller holds for this execution, if any.
        """
        run_id: str = row["id"]
        outcome = "lease_lost"
        try:
            with anyio.CancelScope() as scope:
                self._scopes[run_id] = scope
                outcome = await self.executor.execute(row, lease, store)
        except Exception as exc:
            # A defect or an error nothing else caught: never the workflow's failure.
            # Hand the run back so that it is retried from its last checkpoint.
            log.exception("run_attempt_crashed", run_id=run_id, error=str(exc))
            self.errors.append(exc)
            await self.executor.hand_back(run_id, lease)
            outcome = "crashed"
        finally:
            self._scopes.pop(run_id, None)
            ended = self.leases.pop(run_id, None)
            follow = self._next.pop(run_id, None)
            if follow is not None:
                await self._follow(*follow, ended)
            self.executed += 1
            if self._saturated or self.claim_after_each_run or outcome not in ENDED:
                # A free slot to fill, or a run that may be claimable again (handed back,
                # waiting on a timer of its own): look again. A run that simply ended
                # made nothing claimable that a notification does not announce.
                self.poke()
            if not self.leases:
                idle, self._idle = self._idle, anyio.Event()
                idle.set()
        log.debug("run_attempt_done", run_id=run_id, outcome=outcome)
        return outcome

    async def _follow(self, row: Record, lease: Lease, ended: Lease | None) -> None:
        """Execute ``row`` again, claimed while its previous execution here ended."""
        if ended is not None:
            lease.deadline = max(lease.deadline, ended.deadline)  # heartbeats meanwhile
        if self._runs is None or self._stopping():
            await self.executor.hand_back(row["id"], lease)
            return
        self.leases[row["id"]] = lease
        self._runs.start_soon(self._execute_one, row, lease)

    async def drain(self, claim: Claim, batch: int) -> int:
        """Claim and execute batch after batch until a claim finds nothing; how many ran."""
        total = 0
        while True:
            claimed = await self.claim(claim, batch)
            if not claimed:
                return total
            total += len(claimed)
            async with anyio.create_task_group() as group:
                for row, lease in claimed:
                    group.start_soon(self._execute_one, row, lease)

    async def _execute_one(self, row: Record, lease: Lease) -> None:
        await self.execute(row, lease)

    async def serve(
        self,
        claim: Claim,
        concurrency: int,
        idle: Callable[[anyio.Event], Awaitable[None]],
        runs: TaskGroup,
        stopping: Callable[[], bool],
    ) -> None:
        """Keep up to ``concurrency`` runs executing in ``runs`` until ``stopping()``.

        ``idle(event)`` waits for more work when a claim came back short: until ``event``
        is set (a notification, a freed slot) or whatever timeout the caller prefers.
        """
        self._runs, self._stopping = runs, stopping
        while not stopping():
            # A fresh event before the claim: a wake-up arriving meanwhile is not lost.
            self._wakeup = wakeup = anyio.Event()
            free = concurrency - self.active
            claimed: list[tuple[Record, Lease]] = []
            if free > 0:
                try:
                    claimed = await self.claim(claim, free)
                except Exception as exc:
                    log.warning("claim_failed", worker=self.worker_id, error=str(exc))
                for row, lease in claimed:
                    runs.start_soon(self._execute_one, row, lease)
                if claimed and len(claimed) == free:
                    continue  # probably more: claim again at once
            # Full: the next run to end frees a slot, and the loop must look again then.
            self._saturated = free <= 0
            await idle(wakeup)

    # -- stopping ----------------------------------------------------------------------

    async def wait_idle(self) -> None:
        """Wait until this loop executes nothing."""
        while self.leases:
            await self._idle.wait()

    def request_release(self) -> None:
        """Ask every run executing here to stop at its next step boundary."""
        for run_id in list(self.leases):
            ctx = self.executor.live.get(run_id)
            if ctx is not None:
                ctx.request_release()

    async def abandon(self) -> list[str]:
        """Stop the runs still executing (past the grace period) and hand them back."""
        leftover = list(self.leases.items())
        for run_id, _ in leftover:
            scope = self._scopes.get(run_id)
            if scope is not None:
                scope.cancel()
        for run_id, lease in leftover:
            await self.executor.hand_back(run_id, lease)
        return [run_id for run_id, _ in leftover]
