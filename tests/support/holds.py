"""Holding a checkpoint statement in flight with a real lock in PostgreSQL.

The test inserts the row of a run's next checkpoint in a transaction it keeps open: the
checkpoint statement for that row then waits in the server for that transaction, as for
any conflicting insert, having checked the run's lease already. The row is rolled back
at the end, so it never becomes visible.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from tests.support.db import connect_direct, wait_for

HOLD_STEP = (
    "INSERT INTO forgeflow.workflow_steps (run_id, name, status) VALUES ($1, $2, 'running')"
    " ON CONFLICT DO NOTHING RETURNING name"
)


@asynccontextmanager
async def step_held(dsn: str, run_id: str, step: str = "first") -> AsyncIterator[int]:
    """Hold the checkpoint of ``run_id``'s step ``step`` until the block ends; yields the
    pid of the backend holding it."""
    conn = await connect_direct(dsn)
    try:
        tr = conn.transaction()
        await tr.start()
        assert await conn.fetchval(HOLD_STEP, run_id, step) == step
        try:
            yield conn.get_server_pid()
        finally:
            await tr.rollback()
    finally:
        await conn.close()


async def waiting_checkpoint(pool: asyncpg.Pool) -> int:
    """Wait until a checkpoint statement waits for a lock; its backend's pid."""
    # Matched on the named statement's leading comment too: pg_stat_activity keeps only
    # the first kilobyte of a statement's text.
    query = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND (query LIKE '%INSERT INTO forgeflow.workflow_steps%'"
        " OR query LIKE '-- checkpoint_step%')"
    )

    async def check() -> int | None:
        value: int | None = await pool.fetchval(query)
        return value

    return await wait_for(check, what="a checkpoint statement waiting for a lock")
