"""The only module that talks to PostgreSQL.

Each method runs one named statement from ``sql/queries.sql`` on the pool and returns
plain values or asyncpg records. Driver errors never leave this module unwrapped: they
become ``DatabaseError`` for the public API and ``EngineFault`` on a store made for
executing runs. It knows nothing of workflows, contexts or workers.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
import asyncpg
import structlog

from ._batching import CheckpointEntry, Combiner, FinishEntry
from ._journal import Checkpoint
from ._migrations import apply_migrations
from ._signals import EngineFault
from ._sql import QUERIES as Q
from .errors import DatabaseError

__all__ = ["ISOLATION_LEVELS", "Store", "StoreTransaction", "is_conflict"]

Record = asyncpg.Record
# How many times a limited claim is sent again after losing a race for a queue's row.
_CLAIM_RETRIES = 5
TERMINAL = ("completed", "compensated", "failed")
log = structlog.get_logger("forgeflow.store")


async def _no_reset(conn: asyncpg.Connection) -> None:
    # Pool connections never LISTEN, hold advisory locks or change settings, so the
    # default reset (one more round trip on every release) is skipped.
    return None


# Errors of a single statement that PostgreSQL asks the client to simply try again
# (serialization failure 40001, deadlock 40P01): the statement was rolled back whole.
_RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)
_RETRIES = 5
# What a statement can fail with besides PostgreSQL's own errors: a connection that
# dropped or was never made, a protocol-level refusal.
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
# Errors that mean the connection itself is gone, whatever statement was running.
_CONNECTION_LOST = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
)
#: The isolation levels a transactional step may ask for, by their SQL names.
ISOLATION_LEVELS = {
    "read committed": "read_committed",
    "repeatable read": "repeatable_read",
    "serializable": "serializable",
}
# How long a rollback may take before its connection is closed instead.
_ROLLBACK_SECONDS = 10.0
# How long a statement waits for a pooled connection before giving up. Waiting is normal
# when many runs share a small pool (each statement holds a connection for one round
# trip); a minute without one means the pool is wedged or the server refuses to open
# more, and the run is better handed back than left to lose its lease silently.
_ACQUIRE_SECONDS = 60.0


# The pools (by id) whose exhaustion has been logged: once per pool is enough.
_WARNED_POOLS: set[int] = set()


def _pool_settings(pgbouncer: bool) -> dict[str, str]:
    """Session settings of the pool's connections. JIT compilation is off: forgeflow's
    statements read a few rows each, but the planner's cost estimate for a claim grows
    with the backlog of due runs and can cross ``jit_above_cost``, where each claim
    would spend tens of milliseconds compiling. A pooler in transaction mode refuses
    startup settings, so behind one this is the role's setting (docs/operating.md)."""
    if pgbouncer:
        return {"application_name": "forgeflow"}
    return {"application_name": "forgeflow", "jit": "off"}


def _pool_advice(max_pool: int) -> str:
    return (
        f"this process's pool holds at most max_pool={max_pool} connections "
        "(FORGEFLOW_MAX_POOL); every process's max_pool together must fit within "
        "PostgreSQL's max_connections, so lower max_pool or raise max_connections"
    )


class Store:
    """PostgreSQL access for forgeflow: a pool and one method per named statement.

    A store made for executing runs (``bind(..., engine=True)``) raises ``EngineFault``
    where the public one raises ``DatabaseError``: an error of forgeflow's own
    bookkeeping during a run is never the workflow's failure.
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
        batching = _Batching(self.bind(self.pool))
        return Store(
            self.pool, self.dsn, self._db, self._engine, batching, direct_dsn=self.direct_dsn
        )

    @property
    def closing(self) -> bool:
        """True once the pool is being closed: nothing sent from now on can succeed."""
        return bool(self.pool.is_closing())

    @asynccontextmanager
    async def held(self) -> AsyncIterator[Store]:
        """An engine store on one pooled connection, held until the block ends."""
        conn = await self._acquire()
        try:
            yield self.bind(conn)
        finally:
            with anyio.CancelScope(shield=True):
                await self.pool.release(conn)

    async def _acquire(self) -> Any:
        """A connection from the pool, or ``EngineFault`` saying why none could be had."""
        try:
            conn = await self.pool.acquire(timeout=_ACQUIRE_SECONDS)
        except (TimeoutError, *_DRIVER_ERRORS) as exc:
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
            except _DRIVER_ERRORS as exc:
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
                if isinstance(exc, _CONNECTION_LOST) or _closed(conn):
                    raise EngineFault("transaction", exc) from exc
                raise
            if tx.sent:
                _forget(tr)
                return
            try:
                await tr.commit()
            except _DRIVER_ERRORS as exc:
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

    async def close(self) -> None:
        """Close the pool."""
        _WARNED_POOLS.discard(id(self.pool))
        await self.pool.close()

    async def migrate(self) -> list[int]:
        """Apply pending migrations; returns the versions applied."""
        conn = await self._session()
        try:
            return await apply_migrations(conn)
        finally:
            with anyio.CancelScope(shield=True):
                await self._end_session(conn)

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

    async def listen(
        self, channels: Sequence[str], callback: Callable[[str, str], None]
    ) -> asyncpg.Connection:
        """A dedicated connection LISTENing on ``channels``; callback(channel, payload)."""
        conn = await self._connect_direct()
        for channel in channels:
            await conn.add_listener(channel, lambda _c, _pid, ch, payload: callback(ch, payload))
        return conn

    # -- generic helpers -------------------------------------------------------------

    async def _call(self, method: str, name: str, *args: Any) -> Any:
        """Run statement ``name`` with ``db.<method>``; retry what PostgreSQL says to retry."""
        delay = 0.005
        for attempt in range(1, _RETRIES + 1):
            try:
                if self._db is not self.pool:
                    return await getattr(self._db, method)(Q[name], *args)
                async with self.pool.acquire(timeout=_ACQUIRE_SECONDS) as conn:
                    return await getattr(conn, method)(Q[name], *args)
            except _RETRYABLE as exc:
                if attempt == _RETRIES:
                    raise self._wrap(name, exc) from exc
                log.info("statement_retried", statement=name, sqlstate=exc.sqlstate)
                await anyio.sleep(delay * (0.5 + random.random()))
                delay *= 2
            except (TimeoutError, *_DRIVER_ERRORS) as exc:
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

    # -- runs ------------------------------------------------------------------------

    async def insert_run(
        self,
        run_id: str,
        workflow: str,
        version: int,
        queue: str,
        input_json: str,
        idempotency_key: str | None,
        now: datetime,
        timeout_seconds: float,
        runnable_at: datetime | None = None,
        priority: int = 0,
        concurrency_key: str | None = None,
    ) -> tuple[str, str, bool]:
        """Write a new run (and NOTIFY workers); returns (run id, its workflow, created).

        When the idempotency key is taken, nothing is written and the id and workflow
        returned are those of the run holding the key.
        """
        args = (run_id, workflow, version, queue, input_json, idempotency_key, now)
        extra = (runnable_at or now, priority, concurrency_key)
        while True:
            row = await self._fetchrow("insert_run", *args, timeout_seconds, *extra)
            if row is not None:
                return row["id"], workflow, True
            existing = await self._fetchrow("run_by_idempotency_key", idempotency_key)
            # None only if the run holding the key was deleted in between: insert again.
            if existing is not None:
                return existing["id"], existing["workflow"], False

    async def insert_claimed_run(
        self,
        run_id: str,
        workflow: str,
        version: int,
        queue: str,
        input_json: str,
        idempotency_key: str | None,
        now: datetime,
        timeout_seconds: float,
        options: tuple[int, str | None],
        worker: str,
        lease_seconds: float,
    ) -> Record | None:
        """Write a new run already leased to ``worker``, as ``claim_run`` returns it;
        None (nothing written) when the idempotency key is taken.

        ``options`` is (priority, concurrency key).
        """
        args = (run_id, workflow, version, queue, input_json, idempotency_key, now)
        lease = (worker, lease_seconds)
        return await self._fetchrow("insert_claimed_run", *args, timeout_seconds, *options, *lease)

    async def insert_runs(
        self,
        workflow: str,
        version: int,
        queue: str,
        now: datetime,
        timeout_seconds: float,
        runs: Sequence[tuple[str, str, str | None, datetime, int, str | None]],
    ) -> list[tuple[str, bool, str | None]]:
        """Write a batch of runs in one statement: (id, input, idempotency key, runnable
        at, priority, key) each; returns (run id, created, conflicting workflow) in order.

        When any key is used by a run of another workflow, nothing is written and that
        workflow is named on the rows concerned.
        """
        ids, inputs, ikeys, at, priorities, keys = ([run[i] for run in runs] for i in range(6))
        rows = await self._fetch(
            "insert_runs",
            ids,
            workflow,
            version,
            queue,
            inputs,
            ikeys,
            now,
            timeout_seconds,
            at,
            priorities,
            keys,
        )
        return [(r["id"], r["created"], r["conflict"]) for r in rows]

    async def debounce_run(
        self,
        run_id: str,
        workflow: str,
        version: int,
        queue: str,
        input_json: str,
        debounce_key: str,
        now: datetime,
        timeout_seconds: float,
        runnable_at: datetime,
        priority: int,
        concurrency_key: str | None,
        latest: datetime | None,
    ) -> tuple[str, bool]:
        """Create the pending run of a debounce key, or update the one still pending;
        returns (run id, created)."""
        args = (run_id, workflow, version, queue, input_json, debounce_key, now)
        rest = (timeout_seconds, runnable_at, priority, concurrency_key, latest)
        row = await self._fetchrow("debounce_run", *args, *rest)
        assert row is not None  # an upsert always returns its row
        return row["id"], row["created"]

    async def claim_runs(
        self,
        now: datetime,
        queues: Sequence[str],
        keys: Sequence[tuple[str, int]],
        limit: int,
        worker: str,
        lease_seconds: float,
    ) -> list[Record]:
        """Lease up to ``limit`` runnable runs of the given (workflow, version) keys."""
        args = (now, list(queues), [f"{n}:{v}" for n, v in keys], limit, worker, lease_seconds)
        return await self._fetch("claim_runs", *args)

    async def claim_limited_runs(
        self,
        now: datetime,
        queues: Sequence[str],
        keys: Sequence[tuple[str, int]],
        limit: int,
        worker: str,
        lease_seconds: float,
    ) -> list[Record]:
        """Lease up to ``limit`` runs of limited queues, within their limits.

        One statement; when another claim on one of the queues committed after the
        statement's snapshot, it claims nothing there and is sent again (see
        ``claim_limited_runs`` in queries.sql), a bounded number of times.
        """
        names = [f"{n}:{v}" for n, v in keys]
        claimed: list[Record] = []
        for _ in range(_CLAIM_RETRIES):
            rows = await self._fetch(
                "claim_limited_runs",
                now,
                list(queues),
                names,
                limit - len(claimed),
                worker,
                lease_seconds,
            )
            claimed += [r for r in rows if r["id"] is not None]
            if rows[0]["locked_queues"] == rows[0]["limited_queues"] or len(claimed) >= limit:
                break
        return claimed

    async def next_limited_wake(
        self, now: datetime, queues: Sequence[str], keys: Sequence[tuple[str, int]]
    ) -> datetime | None:
        """When a limited queue's timer comes due or its rate window lets a start through."""
        workflows, versions = [n for n, _ in keys], [v for _, v in keys]
        value: datetime | None = await self._fetchval(
            "next_limited_wake", now, list(queues), workflows, versions
        )
        return value

    async def declare_queue(
        self,
        name: str,
        concurrency: int | None,
        key_concurrency: int | None,
        rate_limit: int | None,
        rate_period: float | None,
    ) -> None:
        """Create or update a queue's limits."""
        args = (name, concurrency, key_concurrency, rate_limit, rate_period)
        await self._fetch("declare_queue", *args)

    async def limited_queues(self, queues: Sequence[str]) -> list[str]:
        """Those of ``queues`` that have a limit."""
        return [r["name"] for r in await self._fetch("limited_queues", list(queues))]

    async def queue_stats(self, now: datetime) -> list[Record]:
        """Per queue: its limits and its executing, claimable, delayed, limited runs."""
        return await self._fetch("queue_stats", now)

    async def queue_top_keys(self, now: datetime, per_queue: int) -> list[Record]:
        """The busiest concurrency keys of each queue."""
        return await self._fetch("queue_top_keys", now, per_queue)

    async def queue_hold(self, queue: str, key: str | None, now: datetime) -> Record | None:
        """A limited queue's limits and their current use (None if it has none)."""
        return await self._fetchrow("queue_hold", queue, key, now)

    async def claim_run(
        self, run_id: str, worker: str, lease_seconds: float, now: datetime
    ) -> Record | None:
        """Lease one specific run if it is runnable and unleased."""
        return await self._fetchrow("claim_run", run_id, worker, lease_seconds, now)

    async def next_runnable_at(
        self, queues: Sequence[str], keys: Sequence[tuple[str, int]]
    ) -> datetime | None:
        """The earliest time a run this worker could execute becomes claimable."""
        workflows, versions = [n for n, _ in keys], [v for _, v in keys]
        names = [f"{n}:{v}" for n, v in keys]
        value: datetime | None = await self._fetchval(
            "next_runnable_at", list(queues), workflows, versions, names
        )
        return value

    async def load_steps(self, run_id: str) -> list[Record]:
        """The checkpoints of a run, for replay."""
        return await self._fetch("load_steps", run_id)

    async def checkpoint_step(
        self, run_id: str, worker: str, checkpoint: Checkpoint
    ) -> bool | None:
        """Write a checkpoint if ``worker`` holds the lease: cancel_requested, or None if not.

        Durable when it returns; combined with other runs' checkpoints into one statement
        when this store batches and a write is already in flight.
        """
        entry = CheckpointEntry(run_id, worker, checkpoint)
        if self._batching is None:
            return await self.write_checkpoint(entry)
        return await self._batching.checkpoints.write(entry, self.write_checkpoint)

    async def write_checkpoint(self, entry: CheckpointEntry) -> bool | None:
        """``checkpoint_step`` as a statement of its own, never combined."""
        c = entry.checkpoint
        value: bool | None = await self._fetchval(
            "checkpoint_step",
            entry.run_id,
            entry.worker,
            c.name,
            c.kind,
            c.status.value,
            c.result,
            c.result_type,
            c.error,
            c.attempts,
            c.started_at,
            c.completed_at,
            c.input,
        )
        return value

    async def write_checkpoints(self, entries: Sequence[CheckpointEntry]) -> dict[str, bool]:
        """Write many runs' checkpoints in one statement, each under its own run's lease:
        cancel_requested by run id, for the runs whose lease held."""
        rows = await self._fetch("checkpoint_steps", json.dumps([_row(e) for e in entries]))
        return {r["id"]: r["cancel_requested"] for r in rows}

    async def mark_compensated(
        self, run_id: str, worker: str, step: str, at: datetime, error: str | None
    ) -> bool:
        """Record a compensation's outcome on its step; False if the lease is gone."""
        return await self._fetchval("mark_compensated", run_id, worker, at, error, step) is not None

    async def heartbeat(
        self, worker: str, run_ids: Sequence[str], lease_seconds: float
    ) -> set[str]:
        """Extend the leases of ``run_ids``; returns those still held."""
        rows = await self._fetch("heartbeat", worker, list(run_ids), lease_seconds)
        return {r["id"] for r in rows}

    async def suspend_run(
        self, run_id: str, worker: str, wait_json: str, wake_at: datetime | None, now: datetime
    ) -> bool:
        """Park a run as waiting until ``wake_at`` or a wake-up; False if refused."""
        row = await self._fetchrow("suspend_run", run_id, worker, wait_json, wake_at, now)
        return row is not None

    async def release_run(self, run_id: str, worker: str, now: datetime) -> bool:
        """Give a run back so that another worker continues it at once."""
        return await self._fetchrow("release_run", run_id, worker, now) is not None

    async def park_for_children(
        self, run_id: str, worker: str, wait_json: str, now: datetime
    ) -> bool:
        """Release a cancelled run until its attached children end; False if none is live."""
        return await self._fetchrow("park_for_children", run_id, worker, wait_json, now) is not None

    async def start_compensation(
        self, run_id: str, worker: str, reason: str, error_json: str | None
    ) -> bool:
        """Mark a run as compensating, keeping why; False if the lease is gone."""
        row = await self._fetchrow("start_compensation", run_id, worker, reason, error_json)
        return row is not None

    async def finish_run(
        self,
        run_id: str,
        worker: str,
        status: str,
        output_json: str | None,
        error_json: str | None,
        reason: str | None,
        now: datetime,
        *,
        alone: bool = False,
    ) -> bool:
        """Write a terminal status and wake a waiting parent; False if the lease is gone.

        ``alone``: the run has no parent, so that a lighter statement may end it (it
        refuses a run with open hooks or event waits, which the full one then ends).
        Combined with other runs' ends into one statement when this store batches and
        an end is already being written.
        """
        entry = FinishEntry(run_id, worker, status, output_json, error_json, reason, now, alone)
        if self._batching is None:
            return await self.write_finish(entry) is not None
        return await self._batching.finishes.write(entry, self.write_finish) is not None

    async def write_finish(self, entry: FinishEntry) -> bool | None:
        """``finish_run`` as a statement of its own: True, or None if the lease is gone."""
        args = entry[:7]
        if entry.alone and await self._fetchrow("finish_run_alone", *args) is not None:
            return True
        row = await self._fetchrow("finish_run", *args)
        return None if row is None else True

    async def write_finishes(self, entries: Sequence[FinishEntry]) -> dict[str, bool]:
        """End many runs in one statement, each under its own run's lease: True by run id,
        for the runs whose lease held."""
        given = [[*e[:6], e.at.isoformat()] for e in entries]
        rows = await self._fetch("finish_runs", json.dumps(given))
        return {r["id"]: True for r in rows}

    async def request_cancel(
        self, run_id: str, now: datetime, *, include_run: bool = True
    ) -> list[str]:
        """Flag a run (unless told not to) and its attached descendants; those flagged."""
        rows = await self._fetch("request_cancel", run_id, now, include_run)
        return [r["id"] for r in rows]

    async def watch_run(self, run_id: str, seconds: float) -> bool:
        """Ask checkpoints of ``run_id`` to NOTIFY for the next ``seconds``."""
        return await self._fetchrow("watch_run", run_id, seconds) is not None

    async def wake_run(self, run_id: str, now: datetime) -> bool:
        """Make a non-terminal run claimable now."""
        return await self._fetchrow("wake_run", run_id, now) is not None

    async def fire_timers(self, run_id: str | None, at: datetime) -> list[str]:
        """Make waiting runs' sleep and retry timers due at ``at``; the runs moved."""
        rows = await self._fetch("fire_timers", run_id, at, at.isoformat())
        return [r["id"] for r in rows]

    async def get_run(self, run_id: str) -> Record | None:
        """One run row."""
        return await self._fetchrow("get_run", run_id)

    async def get_run_steps(self, run_id: str) -> list[Record]:
        """A run's steps in completion order."""
        return await self._fetch("get_run_steps", run_id)

    async def get_run_hooks(self, run_id: str) -> list[Record]:
        """A run's hooks."""
        return await self._fetch("get_run_hooks", run_id)

    async def live_children(self, run_id: str) -> list[str]:
        """The attached children of a run that have not ended."""
        return [r["id"] for r in await self._fetch("live_children", run_id)]

    async def get_run_outcome(self, run_id: str) -> Record | None:
        """A run's status, output and error."""
        return await self._fetchrow("get_run_outcome", run_id)

    async def list_runs(
        self,
        status: str | None,
        workflow: str | None,
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Record]:
        """Runs newest first, optionally filtered, keyset-paginated by (created_at, id)."""
        at, rid = before if before else (None, None)
        return await self._fetch("list_runs", status, workflow, at, rid, limit)

    # -- hooks -----------------------------------------------------------------------

    async def insert_hook(
        self,
        run_id: str,
        worker: str,
        hook_id: str,
        name: str,
        step: str,
        on_timeout: str,
        timeout_seconds: float | None,
        metadata_json: str,
        now: datetime,
    ) -> bool:
        """Create a pending hook and its checkpoint in one statement; False if lease lost."""
        args = (run_id, worker, hook_id, name, step, on_timeout, timeout_seconds, metadata_json)
        try:
            return await self._db.fetchval(Q["insert_hook"], *args, now) is not None
        except asyncpg.UniqueViolationError as exc:
            # The workflow's own hook_id template collided: its error, not the engine's.
            raise DatabaseError(f"a hook with id {hook_id!r} already exists") from exc
        except _DRIVER_ERRORS as exc:
            raise self._wrap("insert_hook", exc) from exc

    async def get_hook(self, hook_id: str) -> Record | None:
        """One hook row."""
        return await self._fetchrow("get_hook", hook_id)

    async def activate_hook(self, hook_id: str, now: datetime) -> bool:
        """pending → active, starting its timeout; False if it was not pending."""
        return await self._fetchrow("activate_hook", hook_id, now) is not None

    async def expire_hook(self, hook_id: str, now: datetime) -> bool:
        """active → expired when past expires_at; False if it was decided first."""
        return await self._fetchrow("expire_hook", hook_id, now) is not None

    async def resolve_hook(
        self,
        hook_id: str,
        decision: str,
        data_json: str,
        now: datetime,
        idempotency_key: str | None,
    ) -> str | None:
        """Consume a hook with a decision and wake its run; the run id, or None if refused."""
        args = (hook_id, decision, data_json, now, idempotency_key)
        row = await self._fetchrow("resolve_hook", *args)
        return None if row is None else row["run_id"]

    async def list_hooks(
        self, status: str | None, workflow: str | None, limit: int
    ) -> list[Record]:
        """Hooks, oldest first, optionally filtered."""
        return await self._fetch("list_hooks", status, workflow, limit)

    # -- events and children ---------------------------------------------------------

    async def insert_event_wait(
        self,
        run_id: str,
        worker: str,
        step: str,
        event_type: str,
        match_json: str,
        now: datetime,
        expires_at: datetime | None,
    ) -> bool:
        """Declare a run's interest in an event; False if the lease is gone."""
        args = (run_id, worker, step, event_type, match_json, now, expires_at)
        return await self._fetchval("insert_event_wait", *args) is not None

    async def get_event_wait(self, run_id: str, step: str) -> Record | None:
        """The state of one event wait."""
        return await self._fetchrow("get_event_wait", run_id, step)

    async def expire_event_wait(self, run_id: str, step: str) -> bool:
        """waiting → expired; False if an event was delivered first."""
        return await self._fetchrow("expire_event_wait", run_id, step) is not None

    async def send_event(self, event_type: str, payload_json: str, now: datetime) -> int:
        """Deliver an event to every matching wait and wake their runs; returns how many."""
        row = await self._fetchrow("send_event", event_type, payload_json, now)
        return int(row[0]) if row else 0

    async def insert_child(
        self,
        run_id: str,
        worker: str,
        child_id: str,
        workflow: str,
        version: int,
        queue: str | None,
        input_json: str,
        step: str,
        detached: bool,
        now: datetime,
        timeout_seconds: float,
    ) -> bool:
        """Create a child run and the parent's checkpoint in one statement."""
        args = (run_id, worker, child_id, workflow, version, queue, input_json, step, detached)
        return await self._fetchrow("insert_child", *args, now, timeout_seconds) is not None

    # -- workers -----------------------------------------------------------------------

    async def register_worker(
        self, worker: str, queues: Sequence[str], workflows: Sequence[str], concurrency: int
    ) -> None:
        """Record a live worker and what it can execute."""
        await self._fetch("register_worker", worker, list(queues), list(workflows), concurrency)

    async def worker_heartbeat(self, worker: str) -> bool:
        """Mark a worker alive; False if it was forgotten (register it again)."""
        return bool(await self._fetchval("worker_heartbeat", worker))

    async def unregister_worker(self, worker: str) -> None:
        """Forget a worker that stops."""
        await self._fetch("unregister_worker", worker)

    async def live_workers_for(self, key: str, queue: str, within_seconds: float) -> int:
        """How many workers seen in the last ``within_seconds`` execute ``key`` on ``queue``."""
        return int(await self._fetchval("live_workers_for", key, queue, within_seconds))

    # -- repairing runs and retention ----------------------------------------------------

    async def run_source(self, run_id: str) -> Record | None:
        """What a restart or a fork of ``run_id`` needs from it."""
        return await self._fetchrow("run_source", run_id)

    async def fork_source_steps(self, run_id: str) -> list[Record]:
        """A run's checkpoints in completion order, with their compensation state."""
        return await self._fetch("fork_source_steps", run_id)

    async def live_worker_versions(self, workflow: str, within_seconds: float) -> list[int]:
        """The versions of ``workflow`` that workers seen lately can execute."""
        rows = await self._fetch("live_worker_versions", workflow, within_seconds)
        return sorted(int(r["version"]) for r in rows)

    async def insert_linked_run(
        self,
        run_id: str,
        workflow: str,
        version: int,
        queue: str,
        input_json: str,
        now: datetime,
        timeout_seconds: float,
        *,
        restarted_from: str | None = None,
        forked_from: str | None = None,
        forked_from_step: str | None = None,
        copy_steps: Sequence[str] = (),
    ) -> int:
        """Write a restart or a fork (with copies of ``copy_steps``); how many were copied."""
        args = (run_id, workflow, version, queue, input_json, now, timeout_seconds)
        lineage = (restarted_from, forked_from, forked_from_step, forked_from, list(copy_steps))
        row = await self._fetchrow("insert_linked_run", *args, *lineage)
        return 0 if row is None else int(row["copied"])

    async def purge_batch(
        self,
        cutoff: datetime,
        workflow: str | None,
        status: str | None,
        limit: int,
        after: tuple[datetime, str] | None,
        dry_run: bool,
    ) -> Record:
        """Delete (or count) one batch of finished run trees; see the query's comment."""
        at, rid = after if after else (None, None)
        args = (cutoff, workflow, status, limit, at, rid, dry_run)
        row = await self._fetchrow("purge_batch", *args)
        assert row is not None
        return row

    async def bulk_select_runs(
        self,
        workflow: str | None,
        status: str | None,
        since: datetime | None,
        until: datetime | None,
        limit: int,
    ) -> tuple[int, list[str]]:
        """How many runs match the filters, and the ids of the oldest ``limit`` of them."""
        row = await self._fetchrow("bulk_select_runs", workflow, status, since, until, limit)
        assert row is not None
        return int(row["matched"]), list(row["ids"])

    @asynccontextmanager
    async def exclusive(self, key: int) -> AsyncIterator[Store | None]:
        """A store on one connection holding advisory lock ``key``, or None if taken."""
        try:
            conn = await self._session()
        except _DRIVER_ERRORS as exc:
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

    # -- checking a deploy -------------------------------------------------------------

    async def check_batch(
        self, keys: Sequence[str], after: str, limit: int
    ) -> tuple[list[Record], list[Record]]:
        """Up to ``limit`` unfinished runs of ``keys`` past id ``after``, and their checkpoints.

        Both come from one read-only snapshot, so a run and its steps always agree.
        """
        try:
            async with (
                self.pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                runs: list[Record] = await conn.fetch(Q["check_runs"], list(keys), after, limit)
                steps: list[Record] = (
                    await conn.fetch(Q["check_steps"], [r["id"] for r in runs]) if runs else []
                )
        except _DRIVER_ERRORS as exc:
            raise self._wrap("check_runs", exc) from exc
        return runs, steps

    # -- schedules ---------------------------------------------------------------------

    async def load_replay(self, run_id: str) -> tuple[list[Record], datetime | None]:
        """A run's checkpoints for replay and, if a schedule started it, its fire time."""
        rows = await self._fetch("load_replay", run_id)
        scheduled_at: datetime | None = rows[0]["scheduled_at"] if rows else None
        return [r for r in rows if r["name"] is not None], scheduled_at

    async def upsert_schedule(
        self,
        name: str,
        run: tuple[str, int, str, float],
        spec: tuple[str, str, str],
        input_json: str,
        source: str,
        next_fire_at: datetime,
        now: datetime,
    ) -> bool:
        """Create or update a schedule by name (and NOTIFY workers); False if unchanged.

        ``run`` is (workflow, version, queue, timeout seconds), ``spec`` (cron, time
        zone, catch-up).
        """
        args = (name, *run, *spec, input_json, source, next_fire_at, now)
        return await self._fetchrow("upsert_schedule", *args) is not None

    async def forget_declared_schedules(self, names: Sequence[str]) -> list[str]:
        """Delete the decorator schedules named ``names``; those deleted."""
        return [r["name"] for r in await self._fetch("forget_declared_schedules", list(names))]

    async def get_schedule(self, name: str) -> Record | None:
        """One schedule row."""
        return await self._fetchrow("get_schedule", name)

    async def list_schedules(self, name: str | None = None) -> list[Record]:
        """Schedules by name, each with its latest run's id, status and fire time."""
        return await self._fetch("list_schedules", name)

    async def pause_schedule(self, name: str, now: datetime) -> bool:
        """Pause a schedule; False if there is none by that name."""
        return await self._fetchrow("pause_schedule", name, now) is not None

    async def resume_schedule(self, name: str, next_fire_at: datetime, now: datetime) -> bool:
        """Unpause a paused schedule from ``next_fire_at``; False if it was not paused."""
        return await self._fetchrow("resume_schedule", name, next_fire_at, now) is not None

    async def delete_schedule(self, name: str) -> bool:
        """Delete a schedule; False if there is none by that name."""
        return await self._fetchrow("delete_schedule", name) is not None

    async def due_schedules(
        self, now: datetime, workflows: Sequence[str], limit: int
    ) -> list[Record]:
        """Unpaused schedules of ``workflows`` whose next fire time has come, oldest first."""
        return await self._fetch("due_schedules", now, list(workflows), limit)

    async def next_schedule_fire(self, workflows: Sequence[str]) -> datetime | None:
        """The earliest next fire time among the unpaused schedules of ``workflows``."""
        value: datetime | None = await self._fetchval("next_schedule_fire", list(workflows))
        return value

    async def fire_schedule(
        self,
        name: str,
        expected: datetime,
        next_fire_at: datetime,
        run: tuple[str, int, str, float],
        fires: Sequence[tuple[str, datetime, str]],
        now: datetime,
    ) -> list[str] | None:
        """Start one run per fire time and move the schedule on, atomically.

        ``run`` is (workflow, version, queue, timeout seconds); ``fires`` holds (run id,
        fire time, key). Returns the ids of the runs created, or None if the schedule's
        next fire time was no longer ``expected`` (another worker handled it).
        """
        workflow, version, queue, timeout = run
        ids, times, keys = [f[0] for f in fires], [f[1] for f in fires], [f[2] for f in fires]
        args = (name, expected, next_fire_at, workflow, version, queue, timeout, now)
        row = await self._fetchrow("fire_schedule", *args, ids, times, keys)
        if row is None or not row["claimed"]:
            return None
        return list(row["runs"])

    async def trigger_schedule(
        self,
        name: str,
        run_id: str,
        run: tuple[int, str, float] | None,
        now: datetime,
    ) -> bool:
        """Start one run of a schedule now; False if there is no schedule by that name.

        ``run`` is the (version, queue, timeout seconds) to start with; None takes those
        stored with the schedule.
        """
        version, queue, timeout = run if run is not None else (None, None, None)
        args = (name, run_id, version, queue, timeout, now)
        return await self._fetchrow("trigger_schedule", *args) is not None


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
        except _DRIVER_ERRORS as exc:
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
        if isinstance(current, _RETRYABLE):
            return True
        if getattr(current, "sqlstate", None) in ("40001", "40P01"):
            return True
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException) and is_conflict(orig):
            return True
        cause = current.cause if isinstance(current, EngineFault) else current.__cause__
        current = cause
    return False


class _Batching:
    """The combiners an executing store's runs share (see ``_batching``); their
    statements go on a pooled connection each time, through ``sender``."""

    def __init__(self, sender: Store) -> None:
        self.checkpoints: Combiner[CheckpointEntry, bool] = Combiner(
            sender.write_checkpoints,
            sender.write_checkpoint,
            lambda e: (e.run_id, e.checkpoint.name),
            "checkpoint_steps",
        )
        self.finishes: Combiner[FinishEntry, bool] = Combiner(
            sender.write_finishes, sender.write_finish, lambda e: e.run_id, "finish_runs"
        )


def _row(entry: CheckpointEntry) -> list[Any]:
    """One row of checkpoint_steps' JSON parameter (times in ISO form: exact to the µs)."""
    c = entry.checkpoint
    return [
        entry.run_id,
        entry.worker,
        c.name,
        c.kind,
        c.status.value,
        c.result,
        c.result_type,
        c.error,
        c.attempts,
        None if c.started_at is None else c.started_at.isoformat(),
        None if c.completed_at is None else c.completed_at.isoformat(),
        c.input,
    ]


async def _roll_back(conn: Any, tr: Any) -> BaseException | None:
    """Roll ``tr`` back (shielded, bounded); the error if it failed (the connection is
    then closed, so that the pool never hands out one stuck in a transaction)."""
    error: BaseException | None = None
    with anyio.move_on_after(_ROLLBACK_SECONDS, shield=True) as scope:
        try:
            await tr.rollback()
        except _DRIVER_ERRORS as exc:
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
