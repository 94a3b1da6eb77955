"""Write combining: the checkpoints and ends of the runs executing in one process share
commits.

A checkpoint reached while no write of the batcher is in flight is sent at once, alone,
on the run's own store: a run alone pays exactly its one round trip, with no batching
window to wait out. Checkpoints reached while a write is in flight are queued, and sent
together as one statement (one commit) the moment it returns; those arriving meanwhile
wait for the next. So at most one checkpoint write is in flight at a time, and a batch
holds what the executing runs reached during the previous round trip: one row on an
idle worker, up to one per executing run under load (group commit without a timer).

What a single write guarantees holds for every row of a batch:

- each row is written only if its own run's lease is held (checked in the statement); a
  refused lease refuses that run's rows alone, and that run alone sees ``None``;
- each run waits until the statement holding its row has committed, so nothing a run
  does after a checkpoint can precede its durability;
- a batch PostgreSQL refuses for the data of a row (SQLSTATE class 22 or 23, a
  ``DatabaseError`` from the store) is sent again row by row, so that only the step whose
  data it was fails; any other error (a dropped connection, a server restarting) fails
  every run of the batch with ``EngineFault``, as it fails a lone write.

A run that stops waiting before its row was sent (cancelled, its lease lost) has its row
left out: nothing it did not see acknowledged is written on its behalf.

The ends of runs (``finish_run``) go through a combiner of their own in the same way.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, NamedTuple, TypeVar

from ._journal import Checkpoint
from ._signals import EngineFault
from .errors import DatabaseError

__all__ = ["CheckpointEntry", "Combiner", "FinishEntry"]


class CheckpointEntry(NamedTuple):
    """One checkpoint to write: the run, the worker that must hold its lease, the row."""

    run_id: str
    worker: str
    checkpoint: Checkpoint


class FinishEntry(NamedTuple):
    """One run to end: the run, the worker that must hold its lease, how it ended."""

    run_id: str
    worker: str
    status: str
    output: str | None
    error: str | None
    reason: str | None
    at: datetime
    #: The run has no parent: try the statement that writes its row alone first (it
    #: refuses a run with open hooks or event waits, see finish_run_alone).
    alone: bool = False


E = TypeVar("E", CheckpointEntry, FinishEntry)
R = TypeVar("R")


class _Queued(NamedTuple, Generic[E, R]):
    entry: E
    future: asyncio.Future[R | None]


class Combiner(Generic[E, R]):
    """Combines the writes of concurrently executing runs into shared statements.

    ``send_many`` writes several entries in one statement and returns the result of each
    run whose lease held, by run id; ``send_one`` writes one entry by itself (a result,
    or None if the lease was refused). ``key`` names what one statement may not hold
    twice (a step's row, a run's end).
    """

    #: The most entries one statement carries; the rest go in the next one.
    max_rows = 500

    def __init__(
        self,
        send_many: Callable[[Sequence[E]], Awaitable[Mapping[str, R]]],
        send_one: Callable[[E], Awaitable[R | None]],
        key: Callable[[E], Hashable],
        operation: str,
    ) -> None:
        self._send_many: Callable[[Sequence[E]], Awaitable[Mapping[str, R]]] = send_many
        self._send_one: Callable[[E], Awaitable[R | None]] = send_one
        self._key: Callable[[E], Hashable] = key
        self._operation = operation
        self._queue: deque[_Queued[E, R]] = deque()
        self._busy = False
        self._task: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """How many writes wait for the one in flight to return."""
        return len(self._queue)

    async def write(self, entry: E, alone: Callable[[E], Awaitable[R | None]]) -> R | None:
        """Write ``entry`` durably; its result, or None if its run's lease was refused.

        ``alone`` sends it by itself when nothing is in flight (the caller's own store).
        """
        if not self._busy:
            self._busy = True
            try:
                return await alone(entry)
            finally:
                self._next()
        future: asyncio.Future[R | None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(entry, future))
        return await future

    def _next(self) -> None:
        # The write in flight has returned: what queued meanwhile goes now, together.
        if self._queue:
            self._task = asyncio.get_running_loop().create_task(self._drain())
        else:
            self._busy = False

    async def _drain(self) -> None:
        batch: list[_Queued[E, R]] = []
        try:
            while self._queue:
                batch = self._take()
                if len(batch) == 1:
                    await self._one_by_one(batch)
                elif batch:
                    await self._together(batch)
        except BaseException as exc:  # cancelled with the event loop: fail the waiting
            for queued in (*batch, *self._queue):
                self._fail(queued.future, exc)
            self._queue.clear()
            raise
        finally:
            self._busy = False
            self._task = None

    def _take(self) -> list[_Queued[E, R]]:
        """The next statement's entries: in order, none twice, none abandoned."""
        batch: list[_Queued[E, R]] = []
        later: list[_Queued[E, R]] = []
        keys: set[Hashable] = set()
        while self._queue and len(batch) < self.max_rows:
            queued = self._queue.popleft()
            if queued.future.done():
                continue  # its run stopped waiting: nothing unacknowledged is written
            key = self._key(queued.entry)
            if key in keys:
                # Two writes of one row (a 'running' marker and the step's own
                # checkpoint): one statement cannot upsert a row twice, and the order
                # of the two must hold, so the later one waits for the next statement.
                later.append(queued)
                continue
            keys.add(key)
            batch.append(queued)
        self._queue.extendleft(reversed(later))
        return batch

    async def _together(self, batch: list[_Queued[E, R]]) -> None:
        try:
            held = await self._send_many([q.entry for q in batch])
        except DatabaseError:
            # One entry's data was refused: each run learns of its own entry alone.
            await self._one_by_one(batch)
            return
        except Exception as exc:
            for queued in batch:
                self._fail(queued.future, exc)
            return
        for queued in batch:
            if not queued.future.done():
                queued.future.set_result(held.get(queued.entry.run_id))

    async def _one_by_one(self, batch: list[_Queued[E, R]]) -> None:
        for queued in batch:
            if queued.future.done():
                continue
            try:
                result = await self._send_one(queued.entry)
            except (Exception, EngineFault) as exc:
                self._fail(queued.future, exc)
            else:
                if not queued.future.done():
                    queued.future.set_result(result)

    def _fail(self, future: asyncio.Future[Any], exc: BaseException) -> None:
        """Fail one waiting run with its own exception object (never one shared by many)."""
        if future.done():
            return
        if isinstance(exc, DatabaseError):
            error: BaseException = DatabaseError(exc.message)
        elif isinstance(exc, EngineFault):
            error = EngineFault(exc.operation, exc.cause)
        else:
            error = EngineFault(self._operation, exc)
        future.set_exception(error)
