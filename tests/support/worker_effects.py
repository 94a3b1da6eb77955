"""An ordered log of what steps and compensations really did, and gates that hold them.

Steps of the worker tests' workflows append to ``worker_effects`` (in the test database)
through ``ctx.db()``: a ``start`` row when an attempt begins, a ``done`` row when its
side effect is made (the step returns that row's id, so the checkpoint names the attempt
that completed), an ``undo`` row per compensation. Rows are numbered in commit order, so
a test can prove that nothing ran again after its checkpoint.

A ``Gate`` is a PostgreSQL advisory lock the test holds: a step that passes the gate
blocks, in whatever process it runs, until the test opens it.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

import asyncpg

__all__ = [
    "DDL",
    "Gate",
    "create_effects",
    "effects",
    "pass_gate",
    "record",
]

DDL = """
CREATE TABLE IF NOT EXISTS public.worker_effects (
    id     bigserial PRIMARY KEY,
    run_id text NOT NULL,
    step   text NOT NULL,
    event  text NOT NULL,
    pid    integer NOT NULL,
    info   jsonb,
    at     timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


async def create_effects(pool: Any) -> None:
    """Create the effects table in the test database (idempotent)."""
    await pool.execute(DDL)


async def record(pool: Any, run_id: str, step: str, event: str, info: str | None = None) -> int:
    """Append one effect (committed at once); its id."""
    value: int = await pool.fetchval(
        "INSERT INTO public.worker_effects (run_id, step, event, pid, info)"
        " VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING id",
        run_id,
        step,
        event,
        os.getpid(),
        info,
    )
    return value


async def effects(pool: Any, run_id: str | None = None) -> list[dict[str, Any]]:
    """The effects (of one run, or all), in the order they were made."""
    rows = await pool.fetch(
        "SELECT * FROM public.worker_effects WHERE $1::text IS NULL OR run_id = $1 ORDER BY id",
        run_id,
    )
    return [dict(r) for r in rows]


async def pass_gate(pool: Any, key: int) -> None:
    """Block until the gate ``key`` is open (returns at once if no test holds it)."""
    # One statement, its lock released when its transaction ends: behind PgBouncer in
    # transaction pooling a session lock could stay behind on a shared server connection.
    await pool.execute("SELECT pg_advisory_xact_lock_shared($1)", key)


class Gate:
    """An advisory lock held by the test in a transaction of its own: ``open()`` ends it.

    Transaction-scoped, so that it holds through PgBouncer in transaction pooling too
    (the transaction keeps its server connection until it ends).
    """

    def __init__(self, dsn: str, key: int) -> None:
        self.dsn = dsn
        self.key = key
        self._conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> Gate:
        self._conn = await asyncpg.connect(self.dsn)
        await self._conn.execute("BEGIN")
        await self._conn.execute("SELECT pg_advisory_xact_lock($1)", self.key)
        return self

    async def open(self) -> None:
        """Let every step waiting at this gate through (and any that comes later)."""
        if self._conn is not None:
            await self._conn.execute("COMMIT")
            await self._conn.close()
            self._conn = None

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.open()
