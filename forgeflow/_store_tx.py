"""Transactional steps: a transaction on a connection of the store's, and the statements
that end it, each a step's checkpoint sent with its COMMIT in one simple-query message
(values inlined as literals)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
import asyncpg

from ._journal import Checkpoint
from ._signals import EngineFault
from ._sql import QUERIES as Q
from ._store_core import CONNECTION_LOST, DRIVER_ERRORS, RETRYABLE, StoreCore

__all__ = ["ISOLATION_LEVELS", "StoreTransaction", "TransactionStatements", "is_conflict"]

#: The isolation levels a transactional step may ask for, by their SQL names.
ISOLATION_LEVELS = {
    "read committed": "read_committed",
    "repeatable read": "repeatable_read",
    "serializable": "serializable",
}
# How long a rollback may take before its connection is closed instead.
_ROLLBACK_SECONDS = 10.0


class TransactionStatements(StoreCore):
    """The transactions of transactional steps."""

    @asynccontextmanager
    async def transaction(
        self, isolation: str = "read committed"
    ) -> AsyncIterator[StoreTransaction]:
        """A transaction on a pooled connection of its own, committed if the block ends.

        Anything raised in the block rolls it back and is raised again, except that a lost
        connection (or a rollback that fails) becomes ``EngineFault``; so does a failed
        BEGIN or COMMIT. Whether the error is a conflict worth trying the whole
        transaction again for is ``is_conflict``'s answer.
        """
        level = ISOLATION_LEVELS[isolation]
        # A store bound to the one connection an executing run holds runs the
        # transaction there: no pool checkout on the hot path.
        own = self._db is not self.pool
        conn = self._db if own else await self._acquire()
        try:
            tr = conn.transaction(isolation=level)
            try:
                await tr.start()
            except DRIVER_ERRORS as exc:
                raise EngineFault("begin", exc) from exc
            tx = StoreTransaction(conn, isolation)
            try:
                yield tx
            except BaseException as exc:
                # After the COMMIT message, the transaction is over unless the statement
                # before COMMIT failed (then it is aborted and waits for ROLLBACK).
                if tx.sent and (_closed(conn) or not conn.is_in_transaction()):
                    _forget(tr)
                else:
                    failed = await _roll_back(conn, tr)
                    if failed is not None:
                        raise EngineFault("rollback", failed) from exc
                if isinstance(exc, CONNECTION_LOST) or _closed(conn):
                    raise EngineFault("transaction", exc) from exc
                raise
            if tx.sent:
                _forget(tr)
                return
            try:
                await tr.commit()
            except DRIVER_ERRORS as exc:
                # A conflict at COMMIT (serializable) rolled everything back; a connection
                # lost during COMMIT leaves the outcome unknown, which replay settles: the
                # checkpoint is there with the writes, or neither is.
                if not _closed(conn) and conn.is_in_transaction():
                    await _roll_back(conn, tr)
                raise EngineFault("commit", exc) from exc
        finally:
            if not own:
                with anyio.CancelScope(shield=True):
                    await self.pool.release(conn)


class StoreTransaction:
    """An open transaction: its connection, for the caller's own statements, and the
    checkpoint statements that commit it, each sent together with its COMMIT."""

    def __init__(self, conn: Any, isolation: str) -> None:
        #: The connection (a pooled asyncpg connection) for the caller's statements.
        self.conn = conn
        self.isolation = isolation
        #: True once the checkpoint and COMMIT were sent (whatever came of them).
        self.sent = False
        # Under a snapshot isolation level the lease check needs a lock that conflicts
        # with the claim's update (see migration 0007).
        self._snapshot = isolation != "read committed"

    async def checkpoint_and_commit(
        self, run_id: str, worker: str, checkpoint: Checkpoint
    ) -> bool | None:
        """Write a step's final checkpoint and COMMIT, in one round trip, if ``worker``
        holds the lease: cancel_requested; None if not (nothing committed).

        The checkpoint is one that ends a step without error (its error and input are
        not stored): what a transaction that commits can record.
        """
        c = checkpoint
        assert c.error is None and c.input is None, "a failure is not committed"
        args = (run_id, worker, c.name, c.kind, c.status.value, c.result, c.result_type)
        times = (c.attempts, c.started_at, c.completed_at, self._snapshot)
        status = await self._send("checkpoint_and_commit", *args, *times)
        return None if status is None else status == "SELECT 1"

    async def compensated_and_commit(
        self, run_id: str, worker: str, step: str, at: datetime
    ) -> bool:
        """Mark ``step`` compensated and COMMIT, in one round trip; False if the lease is
        gone (nothing committed)."""
        args = (run_id, worker, step, at, self._snapshot)
        return await self._send("compensated_and_commit", *args) is not None

    async def _send(self, name: str, *args: Any) -> str | None:
        """Send the named statements as one simple query (values inlined as literals):
        the last one's status, or None if the lease check refused them."""
        self.sent = True
        # No statement is retried here: after an error the whole transaction is void.
        try:
            status: str = await self.conn.execute(_inline(name, args))
        except DRIVER_ERRORS as exc:
            if getattr(exc, "sqlstate", None) == _LEASE_LOST:
                return None
            raise EngineFault(name, exc) from exc
        return status


# Raised by the functions of migration 0007 when the run is leased to someone else.
_LEASE_LOST = "FF001"
# Each named statement split around its $n placeholders: text, number, text, ...
_TEMPLATES: dict[str, list[str]] = {}
_PLACEHOLDER = re.compile(r"\$(\d+)")


def _inline(name: str, args: tuple[Any, ...]) -> str:
    """The named statement with ``$n`` replaced by the literal of ``args[n - 1]``."""
    parts = _TEMPLATES.get(name)
    if parts is None:
        parts = _TEMPLATES[name] = _PLACEHOLDER.split(Q[name])
    out = parts[:]
    for i in range(1, len(out), 2):
        out[i] = _literal(args[int(out[i]) - 1])
    return "".join(out)


def _literal(value: Any) -> str:
    """``value`` as an SQL literal. Strings are E'' literals (backslashes and quotes
    doubled), which mean the same whatever standard_conforming_strings says."""
    if isinstance(value, str):
        return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return f"'{aware.isoformat()}'"
    raise TypeError(f"no SQL literal for {type(value).__name__}")


def _forget(tr: Any) -> None:
    """Tell asyncpg that the transaction ``tr`` began is over: it was ended by a COMMIT
    forgeflow sent in one message with its checkpoint, which asyncpg's Transaction
    cannot do. Until then the connection treats any new transaction as nested in it."""
    conn = tr._connection
    if conn._top_xact is tr:
        conn._top_xact = None


def is_conflict(exc: BaseException) -> bool:
    """True if ``exc`` (or what it wraps) is a serialization failure or a deadlock.

    Looks through ``EngineFault`` and through the causes libraries chain (SQLAlchemy
    keeps the driver's error as ``orig``), by SQLSTATE.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RETRYABLE):
            return True
        if getattr(current, "sqlstate", None) in ("40001", "40P01"):
            return True
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException) and is_conflict(orig):
            return True
        cause = current.cause if isinstance(current, EngineFault) else current.__cause__
        current = cause
    return False


async def _roll_back(conn: Any, tr: Any) -> BaseException | None:
    """Roll ``tr`` back (shielded, bounded); the error if it failed (the connection is
    then closed, so that the pool never hands out one stuck in a transaction)."""
    error: BaseException | None = None
    with anyio.move_on_after(_ROLLBACK_SECONDS, shield=True) as scope:
        try:
            await tr.rollback()
        except DRIVER_ERRORS as exc:
            error = exc
    if scope.cancelled_caught:
        error = TimeoutError(f"rollback took longer than {_ROLLBACK_SECONDS:g}s")
    if error is not None and not _closed(conn):
        conn.terminate()
    return error


def _closed(conn: Any) -> bool:
    """True if the connection is gone: closed, or already taken back by the pool (which
    detaches a pooled connection the moment it learns the connection was lost)."""
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True
