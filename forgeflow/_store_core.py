"""What every part of the store stands on: a pool (or one held connection), and running
one named statement on it with the retries PostgreSQL asks for.

``StoreCore`` holds the connection and the few helpers the statement methods use
(``_fetch``, ``_fetchrow``, ``_fetchval``, and ``_wrap`` for the errors of a statement
sent by hand); the classes of ``_store_*`` add the statements of one area each, and
``Store`` (``_store``) puts them together.
"""

from __future__ import annotations

import random
from typing import Any

import anyio
import asyncpg
import structlog

from ._batching import CheckpointEntry, Combiner, FinishEntry
from ._signals import EngineFault
from ._sql import QUERIES as Q
from .errors import DatabaseError

__all__ = ["CONNECTION_LOST", "DRIVER_ERRORS", "RETRYABLE", "Record", "StoreCore"]

Record = asyncpg.Record
log = structlog.get_logger("forgeflow.store")

# Errors of a single statement that PostgreSQL asks the client to simply try again
# (serialization failure 40001, deadlock 40P01): the statement was rolled back whole.
RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)
_RETRIES = 5
# What a statement can fail with besides PostgreSQL's own errors: a connection that
# dropped or was never made, a protocol-level refusal.
DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
# Errors that mean the connection itself is gone, whatever statement was running.
CONNECTION_LOST = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
)
# How long a statement waits for a pooled connection before giving up. Waiting is normal
# when many runs share a small pool (each statement holds a connection for one round
# trip); a minute without one means the pool is wedged or the server refuses to open
# more, and the run is better handed back than left to lose its lease silently.
_ACQUIRE_SECONDS = 60.0


# The pools (by id) whose exhaustion has been logged: once per pool is enough.
_WARNED_POOLS: set[int] = set()


def _pool_advice(max_pool: int) -> str:
    return (
        f"this process's pool holds at most max_pool={max_pool} connections "
        "(FORGEFLOW_MAX_POOL); every process's max_pool together must fit within "
        "PostgreSQL's max_connections, so lower max_pool or raise max_connections"
    )


class _Batching:
    """The combiners an executing store's runs share (see ``_batching``): their
    checkpoints and their ends, each combined into shared statements."""

    def __init__(
        self,
        checkpoints: Combiner[CheckpointEntry, bool],
        finishes: Combiner[FinishEntry, bool],
    ) -> None:
        self.checkpoints = checkpoints
        self.finishes = finishes


class StoreCore:
    """A pool, what statements run on (the pool or one connection), and the helpers
    that run a named statement there.

    A store made for executing runs (``engine=True``) raises ``EngineFault`` where the
    public one raises ``DatabaseError``: an error of forgeflow's own bookkeeping during
    a run is never the workflow's failure.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        db: Any = None,
        engine: bool = False,
        batching: _Batching | None = None,
        *,
        direct_dsn: str | None = None,
    ) -> None:
        self.pool = pool
        self.dsn = dsn
        # Where what needs a session of its own (LISTEN, migrations, advisory locks)
        # connects when the pool goes through a transaction pooler; None: ``dsn``.
        self.direct_dsn = direct_dsn
        # What statements run on: the pool, or one connection held by an executing run.
        self._db: Any = pool if db is None else db
        self._engine = engine
        # Shared by every store bound from this one: their runs' checkpoints and ends are
        # combined into shared statements (see _batching).
        self._batching = batching

    @property
    def closing(self) -> bool:
        """True once the pool is being closed: nothing sent from now on can succeed."""
        return bool(self.pool.is_closing())

    async def _acquire(self) -> Any:
        """A connection from the pool, or ``EngineFault`` saying why none could be had."""
        try:
            conn = await self.pool.acquire(timeout=_ACQUIRE_SECONDS)
        except (TimeoutError, *DRIVER_ERRORS) as exc:
            raise EngineFault("acquire a connection", self._unavailable(exc)) from exc
        return conn

    def _unavailable(self, exc: BaseException) -> BaseException:
        """``exc``, or when the pool could not hand out a connection at all, an error
        that says so and which setting to change (logged once per pool)."""
        if isinstance(exc, TimeoutError):
            why = f"no pooled connection came free within {_ACQUIRE_SECONDS:g} s"
        elif isinstance(exc, asyncpg.TooManyConnectionsError):
            why = f"PostgreSQL refused a new connection ({exc})"
        else:
            return exc
        max_pool = self.pool.get_max_size()
        if id(self.pool) not in _WARNED_POOLS:
            _WARNED_POOLS.add(id(self.pool))
            log.error("pool_unavailable", reason=why, max_pool=max_pool)
        return DatabaseError(f"{why}: {_pool_advice(max_pool)}")

    async def close(self) -> None:
        """Close the pool."""
        _WARNED_POOLS.discard(id(self.pool))
        await self.pool.close()

    async def _session(self) -> Any:
        """A connection whose session is the caller's until ``_end_session`` (advisory
        locks held across statements): a direct one when the pool goes through a pooler."""
        if self.direct_dsn is None:
            return await self.pool.acquire()
        return await self._connect_direct()

    async def _end_session(self, conn: Any) -> None:
        if self.direct_dsn is None:
            await self.pool.release(conn)
        else:
            await conn.close()

    async def _connect_direct(self) -> asyncpg.Connection:
        """A connection of its own, outside the pool: on ``direct_dsn`` when set."""
        settings = {"application_name": "forgeflow"}
        if self.direct_dsn is None:
            return await asyncpg.connect(self.dsn, server_settings=settings)
        try:
            return await asyncpg.connect(self.direct_dsn, server_settings=settings)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseError(
                f"cannot connect to PostgreSQL at listen_url (FORGEFLOW_LISTEN_URL): {exc}"
            ) from exc

    async def _call(self, method: str, name: str, *args: Any) -> Any:
        """Run statement ``name`` with ``db.<method>``; retry what PostgreSQL says to retry."""
        delay = 0.005
        for attempt in range(1, _RETRIES + 1):
            try:
                if self._db is not self.pool:
                    return await getattr(self._db, method)(Q[name], *args)
                async with self.pool.acquire(timeout=_ACQUIRE_SECONDS) as conn:
                    return await getattr(conn, method)(Q[name], *args)
            except RETRYABLE as exc:
                if attempt == _RETRIES:
                    raise self._wrap(name, exc) from exc
                log.info("statement_retried", statement=name, sqlstate=exc.sqlstate)
                await anyio.sleep(delay * (0.5 + random.random()))
                delay *= 2
            except (TimeoutError, *DRIVER_ERRORS) as exc:
                raise self._wrap(name, self._unavailable(exc)) from exc
        raise AssertionError("unreachable")

    def _wrap(self, name: str, exc: BaseException) -> BaseException:
        # A data exception (class 22) or a constraint violation (23) is about the values
        # sent, not the machinery: sending them again would fail again, so it is never
        # an engine fault (that would hand the run back and retry it forever).
        about_the_data = isinstance(exc, asyncpg.PostgresError) and str(
            exc.sqlstate or ""
        ).startswith(("22", "23"))
        if self._engine and not about_the_data:
            return EngineFault(name, exc)
        return DatabaseError(f"{name}: {exc}")

    async def _fetch(self, name: str, *args: Any) -> list[Record]:
        rows: list[Record] = await self._call("fetch", name, *args)
        return rows

    async def _fetchrow(self, name: str, *args: Any) -> Record | None:
        row: Record | None = await self._call("fetchrow", name, *args)
        return row

    async def _fetchval(self, name: str, *args: Any) -> Any:
        return await self._call("fetchval", name, *args)
