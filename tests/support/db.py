"""Database helpers for tests: wait for a condition, count side effects, read rows.

Every helper takes a ``target``: a DSN (a connection is opened for the call), an asyncpg
pool or an asyncpg connection. Waiting is done by polling the database with a deadline,
for the few cases where no event can be awaited (another process, a worker elsewhere).

The side-effect table (``test_side_effects``) lives in the ``public`` schema of the test
database, next to forgeflow's schema: a step calls ``record_side_effect`` when it really
runs, so a test can prove how many times each step's function was executed.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from forgeflow.testing._db import pgbouncer_from_env, server_from_env, with_database

__all__ = [
    "DEFAULT_TIMEOUT",
    "Target",
    "connect_direct",
    "connection",
    "count_rows",
    "create_database",
    "create_side_effects",
    "direct",
    "drop_database",
    "fetch_run",
    "fetch_steps",
    "record_side_effect",
    "side_effect_count",
    "side_effects",
    "wait_for",
    "wait_for_run_status",
    "wait_for_side_effect",
    "wait_for_step_status",
    "wait_for_value",
]

T = TypeVar("T")
Target = str | asyncpg.Pool | asyncpg.Connection

#: How long a helper waits for a condition before failing the test (a hang guard only).
DEFAULT_TIMEOUT = 30.0
_INTERVAL = 0.02


def direct(dsn: str) -> str:
    """``dsn`` reaching PostgreSQL itself, also when the suite runs through PgBouncer
    (``FORGEFLOW_TEST_PGBOUNCER_URL``): what a test observes or holds (server pids,
    session locks, LISTEN, its own prepared statements) is the server's business."""
    server = server_from_env()
    if server is None or pgbouncer_from_env() is None:
        return dsn
    return with_database(server, urlsplit(dsn).path.lstrip("/"))


async def connect_direct(dsn: str, **options: Any) -> asyncpg.Connection:
    """A test's own connection to the database of ``dsn``, straight to the server."""
    conn: asyncpg.Connection = await asyncpg.connect(direct(dsn), **options)
    return conn


@asynccontextmanager
async def connection(target: Target) -> AsyncIterator[Any]:
    """A connection for one call: opened from a DSN, acquired from a pool, or as given."""
    if isinstance(target, str):
        conn = await connect_direct(target)
        try:
            yield conn
        finally:
            await conn.close()
    elif isinstance(target, asyncpg.Pool):
        async with target.acquire() as pooled:
            yield pooled
    else:
        yield target


async def create_database(admin_dsn: str, template: str | None = None) -> str:
    """Create a database with a fresh name (a clone of ``template`` if given); its DSN."""
    name = f"forgeflow_t_{secrets.token_hex(6)}"
    clause = f' TEMPLATE "{template}"' if template else ""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await conn.close()
    return urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{name}"))


async def drop_database(admin_dsn: str, dsn: str) -> None:
    """Drop the database ``dsn`` points at, disconnecting whoever is still connected."""
    name = urlsplit(dsn).path.lstrip("/")
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def wait_for(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    what: str = "condition",
) -> T:
    """Call ``check`` until it returns a truthy value and return that value.

    Fails the test with an AssertionError naming ``what`` if it does not hold in time.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(_INTERVAL)


async def wait_for_value(
    target: Target, query: str, *args: Any, timeout: float = DEFAULT_TIMEOUT
) -> Any:
    """Run ``query`` (one value) until it returns something truthy; that value."""

    async def check() -> Any:
        async with connection(target) as conn:
            return await conn.fetchval(query, *args)

    return await wait_for(check, timeout=timeout, what=f"{query!r} {args!r}")


async def fetch_run(target: Target, run_id: str) -> dict[str, Any] | None:
    """The ``forgeflow.workflow_runs`` row of ``run_id`` as a dict, or None."""
    async with connection(target) as conn:
        row = await conn.fetchrow("SELECT * FROM forgeflow.workflow_runs WHERE id = $1", run_id)
    return None if row is None else dict(row)


async def fetch_steps(target: Target, run_id: str) -> dict[str, dict[str, Any]]:
    """The ``forgeflow.workflow_steps`` rows of ``run_id``, by step name."""
    async with connection(target) as conn:
        rows = await conn.fetch("SELECT * FROM forgeflow.workflow_steps WHERE run_id = $1", run_id)
    return {row["name"]: dict(row) for row in rows}


async def count_rows(target: Target, table: str, where: str = "true", *args: Any) -> int:
    """``SELECT count(*) FROM table WHERE where`` (table and where are trusted test text)."""
    async with connection(target) as conn:
        value: int = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {where}", *args)
    return value


async def wait_for_run_status(
    target: Target, run_id: str, *statuses: str, timeout: float = DEFAULT_TIMEOUT
) -> str:
    """Wait until the run's status is one of ``statuses``; the status reached."""
    query = "SELECT status FROM forgeflow.workflow_runs WHERE id = $1 AND status = ANY($2::text[])"

    async def check() -> str | None:
        async with connection(target) as conn:
            value: str | None = await conn.fetchval(query, run_id, list(statuses))
        return value

    return await wait_for(check, timeout=timeout, what=f"run {run_id} to be {statuses}")


async def wait_for_step_status(
    target: Target, run_id: str, step: str, *statuses: str, timeout: float = DEFAULT_TIMEOUT
) -> str:
    """Wait until the step's checkpoint has one of ``statuses``; the status reached."""
    query = (
        "SELECT status FROM forgeflow.workflow_steps"
        " WHERE run_id = $1 AND name = $2 AND status = ANY($3::text[])"
    )

    async def check() -> str | None:
        async with connection(target) as conn:
            value: str | None = await conn.fetchval(query, run_id, step, list(statuses))
        return value

    return await wait_for(check, timeout=timeout, what=f"step {step!r} to be {statuses}")


# -- side effects ------------------------------------------------------------------------


async def create_side_effects(target: Target) -> None:
    """Create the side-effect counter table (idempotent)."""
    async with connection(target) as conn:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS public.test_side_effects ("
            " key text PRIMARY KEY, calls integer NOT NULL)"
        )


async def record_side_effect(target: Target, key: str) -> int:
    """Count one real execution of ``key``; returns how many there have been, this one included."""
    async with connection(target) as conn:
        value: int = await conn.fetchval(
            "INSERT INTO public.test_side_effects AS s (key, calls) VALUES ($1, 1)"
            " ON CONFLICT (key) DO UPDATE SET calls = s.calls + 1 RETURNING calls",
            key,
        )
    return value


async def side_effect_count(target: Target, key: str) -> int:
    """How many times ``key`` was recorded (0 if never)."""
    async with connection(target) as conn:
        value: int | None = await conn.fetchval(
            "SELECT calls FROM public.test_side_effects WHERE key = $1", key
        )
    return value or 0


async def side_effects(target: Target) -> dict[str, int]:
    """Every recorded key and its count."""
    async with connection(target) as conn:
        rows = await conn.fetch("SELECT key, calls FROM public.test_side_effects")
    return {row["key"]: row["calls"] for row in rows}


async def wait_for_side_effect(
    target: Target, key: str, calls: int = 1, *, timeout: float = DEFAULT_TIMEOUT
) -> int:
    """Wait until ``key`` has been recorded at least ``calls`` times; the count."""

    async def check() -> int:
        count = await side_effect_count(target, key)
        return count if count >= calls else 0

    return await wait_for(check, timeout=timeout, what=f"side effect {key!r} x{calls}")
