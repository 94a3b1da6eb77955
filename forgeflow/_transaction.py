"""Transactional steps: a step's database writes and its checkpoint commit together.

``ctx.transaction(name, fn, ...)`` hands ``fn`` a connection inside a transaction of
forgeflow's own database and writes the step's checkpoint (with its lease check) in that
same transaction before COMMIT. Either both commit or neither does, so the step's
database effects happen exactly once, whatever crashes. Its compensation commits with
its own checkpoint the same way.

Until the checkpoint statement, the transaction touches none of forgeflow's rows: a
worker frozen inside ``fn`` holds no lock a claimer needs, and when it wakes up after a
takeover its checkpoint is refused and everything it wrote is rolled back.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import asyncpg
import structlog

from ._journal import Checkpoint
from ._models import StepStatus
from ._serde import encode_result
from ._signals import EngineFault, LeaseLost
from ._steps import StepRunner, invoke
from ._store import ISOLATION_LEVELS, StoreTransaction, is_conflict

if TYPE_CHECKING:
    from ._runstate import RunContext

__all__ = ["TransactionRunner", "TransactionalCompensation"]

T = TypeVar("T")

#: How many times one attempt's transaction is tried again after a serialization failure
#: or a deadlock (these do not count as the step's attempts).
CONFLICT_RETRIES = 8
_FIRST_BACKOFF = 0.01
_MAX_BACKOFF = 1.0

log = structlog.get_logger("forgeflow.transaction")


async def _backoff(tries: int) -> None:
    """Sleep before trying a conflicting transaction again: exponential, with jitter."""
    delay = min(_FIRST_BACKOFF * 2 ** (tries - 1), _MAX_BACKOFF)
    await anyio.sleep(delay * (0.5 + random.random()))


class TransactionalCompensation:
    """The undo of a transactional step: ``fn(conn, result)`` committed with its mark."""

    __slots__ = ("fn", "isolation")

    def __init__(self, fn: Callable[[asyncpg.Connection, Any], Awaitable[Any]], isolation: str):
        self.fn = fn
        self.isolation = isolation

    def __call__(self, result: Any) -> Any:
        raise TypeError("a transactional compensation runs through commit(), in a transaction")

    async def commit(self, ctx: RunContext, step: str, result: Any, at: datetime) -> None:
        """Run the undo and mark ``step`` compensated in one transaction (LeaseLost if
        the lease is gone: nothing is then committed)."""
        tries = 0
        while True:
            tries += 1
            try:
                async with ctx.store.transaction(self.isolation) as tx:
                    await self.fn(tx.conn, result)
                    if ctx.lease.expired:
                        raise LeaseLost()
                    if not await tx.compensated_and_commit(ctx.run_id, ctx.worker_id, step, at):
                        raise LeaseLost()
                return
            except (Exception, EngineFault) as exc:
                if not is_conflict(exc) or tries > CONFLICT_RETRIES:
                    raise
                log.info("transaction_retried", run_id=ctx.run_id, step=step, compensation=True)
                await _backoff(tries)


class TransactionRunner(StepRunner[T]):
    """A step whose ``fn(conn, ...)`` runs in a transaction that commits its checkpoint."""

    __slots__ = ("_isolation",)

    def __init__(
        self,
        ctx: RunContext,
        name: str,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        super().__init__(ctx, name, fn, args, kwargs)
        self._isolation = "read committed"

    def isolation(self, level: str) -> TransactionRunner[T]:
        """Run the transaction at ``level``: read committed (default), repeatable read or
        serializable."""
        normalized = level.replace("_", " ").strip().lower()
        if normalized not in ISOLATION_LEVELS:
            raise ValueError(
                f"isolation: expected one of {sorted(ISOLATION_LEVELS)}, got {level!r}"
            )
        self._isolation = normalized
        if isinstance(self._compensation, TransactionalCompensation):
            self._compensation.isolation = normalized
        return self

    def compensate(  # type: ignore[override]
        self, fn: Callable[[asyncpg.Connection, T], Awaitable[Any]]
    ) -> TransactionRunner[T]:
        """Register ``fn(conn, result)`` to undo this step, committed with its own mark."""
        self._compensation = TransactionalCompensation(fn, self._isolation)
        return self

    async def _attempts(self, attempt: int) -> T:
        ctx = self._ctx
        clock = ctx.clock
        while True:
            attempt += 1
            ctx.before_new_work(self.name)
            started = clock.now()
            try:
                value, checkpoint, cancel = await self._commit(attempt, started)
            except Exception as exc:
                delay = self._retry_delay(exc, attempt)
                if delay is not None:
                    await self._retry_later(exc, attempt, started, delay)
                    continue
                return await self._failed(exc, attempt, started)
            # Committed: what follows is what ctx.checkpoint does once its write is in.
            ctx.journal.record(checkpoint)
            if cancel and not ctx.cancel_requested:
                ctx.request_cancel()
            completed = checkpoint.completed_at
            ctx.journal.reached(completed)
            if self._compensation is not None:
                ctx.journal.push_compensation(self.name, self._compensation, value)
            assert completed is not None
            await ctx.emit(
                "step_completed",
                step=self.name,
                attempts=attempt,
                transactional=True,
                duration_ms=round((completed - started).total_seconds() * 1000, 3),
            )
            return value

    async def _commit(self, attempt: int, started: datetime) -> tuple[T, Checkpoint, bool]:
        """One attempt: its transaction, tried again on conflicts; (value, checkpoint,
        cancel requested) once committed."""
        ctx = self._ctx
        tries = 0
        while True:
            tries += 1
            try:
                async with ctx.store.transaction(self._isolation) as tx:
                    return await self._in_transaction(tx, attempt, started)
            except (Exception, EngineFault) as exc:
                if not is_conflict(exc) or tries > CONFLICT_RETRIES:
                    raise
                ctx.log.info("transaction_retried", step=self.name, attempt=attempt, tries=tries)
                await _backoff(tries)
                ctx.before_new_work(self.name)

    async def _in_transaction(
        self, tx: StoreTransaction, attempt: int, started: datetime
    ) -> tuple[T, Checkpoint, bool]:
        ctx = self._ctx
        args = (tx.conn, *self.args)
        value: T = await invoke(self._fn, args, self.kwargs, self._timeout, self.name)
        text, tag = encode_result(value, self.name)
        checkpoint = Checkpoint(
            self.name,
            "step",
            StepStatus.COMPLETED,
            text,
            tag,
            None,
            attempt,
            started,
            ctx.clock.now(),
        )
        # Past the lease as this worker knows it, another worker may be executing the
        # run: give up without the round trip (the block's exit rolls everything back).
        if ctx.lease.expired:
            raise LeaseLost()
        cancel = await tx.checkpoint_and_commit(ctx.run_id, ctx.worker_id, checkpoint)
        if cancel is None:
            raise LeaseLost()
        return value, checkpoint, bool(cancel)
