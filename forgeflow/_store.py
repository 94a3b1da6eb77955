"""The only code that talks to PostgreSQL: ``Store`` and the modules it is made of.

Each method runs one named statement from ``sql/queries.sql`` on the pool and returns
plain values or asyncpg records. Driver errors never leave the store unwrapped: they
become ``DatabaseError`` for the public API and ``EngineFault`` on a store made for
executing runs. It knows nothing of workflows, contexts or workers.

The statements are grouped by area, one class each, all on ``StoreCore``
(``_store_core``: the pool and the helpers that run a statement): runs
(``_store_runs``), claims, queues and workers (``_store_claims``), hooks, events and
children (``_store_waits``), repairs, retention and deploy checks (``_store_repair``),
schedules (``_store_schedules``) and transactional steps (``_store_tx``). This module
opens the pool and binds stores to connections.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import asyncpg

from ._batching import Combiner
from ._migrations import apply_migrations
from ._store_claims import ClaimStatements
from ._store_core import DRIVER_ERRORS, Record, _Batching
from ._store_repair import RepairStatements
from ._store_runs import RunStatements
from ._store_schedules import ScheduleStatements
from ._store_tx import ISOLATION_LEVELS, StoreTransaction, TransactionStatements, is_conflict
from ._store_waits import WaitStatements
from .errors import DatabaseError

__all__ = ["ISOLATION_LEVELS", "TERMINAL", "Record", "Store", "StoreTransaction", "is_conflict"]

TERMINAL = ("completed", "compensated", "failed")


async def _no_reset(conn: asyncpg.Connection) -> None:
    # Pool connections never LISTEN, hold advisory locks or change settings, so the
    # default reset (one more round trip on every release) is skipped.
    return None


def _pool_settings(pgbouncer: bool) -> dict[str, str]:
    """Session settings of the pool's connections. JIT compilation is off: forgeflow's
    statements read a few rows each, but the planner's cost estimate for a claim grows
    with the backlog of due runs and can cross ``jit_above_cost``, where each claim
    would spend tens of milliseconds compiling. A pooler in transaction mode refuses
    startup settings, so behind one this is the role's setting (docs/operating.md)."""
    if pgbouncer:
        return {"application_name": "forgeflow"}
    return {"application_name": "forgeflow", "jit": "off"}


class Store(
    RunStatements,
    ClaimStatements,
    WaitStatements,
    RepairStatements,
    ScheduleStatements,
    TransactionStatements,
):
    """PostgreSQL access for forgeflow: a pool and one method per named statement.

    A store made for executing runs (``bind(..., engine=True)``) raises ``EngineFault``
    where the public one raises ``DatabaseError`` (see ``StoreCore``).
    """

    def bind(self, conn: Any, *, engine: bool = True) -> Store:
        """A store whose statements all run on ``conn`` (the pool or one connection)."""
        return Store(self.pool, self.dsn, conn, engine, self._batching, direct_dsn=self.direct_dsn)

    def public(self) -> Store:
        """This store's connection (or pool), raising ``DatabaseError`` as the public API
        does rather than ``EngineFault``."""
        return self.bind(self._db, engine=False)

    def batching(self) -> Store:
        """This store, with the checkpoints and ends of the runs executed through it (and
        through every store bound from it) combined into shared statements."""
        # Their statements go on a pooled connection each time.
        sender = self.bind(self.pool)
        batching = _Batching(
            Combiner(
                sender.write_checkpoints,
                sender.write_checkpoint,
                lambda e: (e.run_id, e.checkpoint.name),
                "checkpoint_steps",
            ),
            Combiner(sender.write_finishes, sender.write_finish, lambda e: e.run_id, "finish_runs"),
        )
        return Store(
            self.pool, self.dsn, self._db, self._engine, batching, direct_dsn=self.direct_dsn
        )

    @asynccontextmanager
    async def held(self) -> AsyncIterator[Store]:
        """An engine store on one pooled connection, held until the block ends."""
        conn = await self._acquire()
        try:
            yield self.bind(conn)
        finally:
            with anyio.CancelScope(shield=True):
                await self.pool.release(conn)

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        min_size: int = 2,
        max_size: int = 20,
        migrate: bool = True,
        direct_dsn: str | None = None,
        pgbouncer: bool = False,
    ) -> Store:
        """Open a pool on ``dsn`` and, unless told not to, apply pending migrations.

        ``pgbouncer``: ``dsn`` goes through a transaction pooler, where a named prepared
        statement would outlive the server connection it was prepared on: statements
        are sent unnamed (parsed again each time). ``direct_dsn`` is then where LISTEN,
        migrations and advisory locks go.
        """
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                reset=_no_reset,
                server_settings=_pool_settings(pgbouncer),
                statement_cache_size=0 if pgbouncer else 100,
            )
        except asyncpg.TooManyConnectionsError as exc:
            # The pool opens min_pool connections at once: the server had no room for them.
            raise DatabaseError(
                f"cannot connect to PostgreSQL: {exc}: opening min_pool={min_size} "
                f"connections (FORGEFLOW_MIN_POOL) was refused; each process may open up "
                f"to max_pool={max_size} (FORGEFLOW_MAX_POOL), and every process's pool "
                "together must fit within PostgreSQL's max_connections"
            ) from exc
        except asyncpg.ProtocolViolationError as exc:
            if "startup parameter" not in str(exc):
                raise DatabaseError(f"cannot connect to PostgreSQL: {exc}") from exc
            # A pooler in transaction mode refuses the session settings sent at connect.
            raise DatabaseError(
                f"cannot connect to PostgreSQL: {exc}: database_url seems to go through "
                "a connection pooler such as PgBouncer; set pgbouncer=True "
                "(FORGEFLOW_PGBOUNCER=1) and listen_url (FORGEFLOW_LISTEN_URL) to a direct "
                "URL (docs/operating.md, Behind PgBouncer)"
            ) from exc
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseError(f"cannot connect to PostgreSQL: {exc}") from exc
        store = cls(pool, dsn, direct_dsn=direct_dsn)
        if migrate:
            await store.migrate()
        return store

    async def migrate(self) -> list[int]:
        """Apply pending migrations; returns the versions applied."""
        conn = await self._session()
        try:
            return await apply_migrations(conn)
        finally:
            with anyio.CancelScope(shield=True):
                await self._end_session(conn)

    async def listen(
        self, channels: Sequence[str], callback: Callable[[str, str], None]
    ) -> asyncpg.Connection:
        """A dedicated connection LISTENing on ``channels``; callback(channel, payload)."""
        conn = await self._connect_direct()
        for channel in channels:
            await conn.add_listener(channel, lambda _c, _pid, ch, payload: callback(ch, payload))
        return conn

    @asynccontextmanager
    async def exclusive(self, key: int) -> AsyncIterator[Store | None]:
        """A store on one connection holding advisory lock ``key``, or None if taken."""
        try:
            conn = await self._session()
        except DRIVER_ERRORS as exc:
            raise self._wrap("acquire a connection", exc) from exc
        try:
            held = self.bind(conn, engine=False)
            if not await held._fetchval("try_advisory_lock", key):
                yield None
                return
            try:
                yield held
            finally:
                # A connection that dropped released the lock with its session.
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await held._fetchval("advisory_unlock", key)
        finally:
            with anyio.CancelScope(shield=True):
                await self._end_session(conn)
