"""A worker's connections are bounded by max_pool, whatever its concurrency."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest
from structlog.testing import capture_logs

from forgeflow import Forgeflow, Registry, WorkflowContext, WorkflowStatus, workflow
from forgeflow._signals import EngineFault
from forgeflow._store import Store
from forgeflow.errors import DatabaseError
from tests.support.db import connect_direct, direct, wait_for

OWN_CONNECTIONS = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND application_name = 'forgeflow'"
)


async def test_concurrency_200_runs_on_a_pool_of_6(dsn: str, registry: Registry) -> None:
    """300 runs with in-place sleeps and ctx.db() steps complete at concurrency 200 on a
    pool of 6, and the process never holds more than max_pool + 1 (LISTEN) connections."""

    async def query(ctx: WorkflowContext, n: int) -> int:
        value: int = await ctx.db().fetchval("SELECT $1::int + 1", n)
        return value

    @workflow(version=1, registry=registry)
    async def short(ctx: WorkflowContext, n: int) -> int:
        first = await ctx.step("query", query, ctx, n).run()
        if n % 3 == 0:
            await ctx.sleep(0.01)
        return await ctx.step("again", query, ctx, first).run()

    observer = await connect_direct(dsn, server_settings={"application_name": "observer"})
    progress = await connect_direct(dsn, server_settings={"application_name": "observer"})
    seen: list[int] = []
    # The server's own connections are counted: the client too connects to it directly
    # (behind PgBouncer they would be PgBouncer's, bounded by its pool instead).
    own = direct(dsn)
    try:
        async with Forgeflow.connect(own, registry=registry, min_pool=1, max_pool=6) as ff:
            run_ids = [await ff.start(short, n) for n in range(300)]

            async def sample(stop: anyio.Event) -> None:
                # Sampling pace only: nothing waits on these samples to proceed.
                while not stop.is_set():
                    seen.append(await observer.fetchval(OWN_CONNECTIONS))
                    await anyio.sleep(0.002)

            async def all_completed() -> bool:
                done = await progress.fetchval(
                    "SELECT count(*) FROM forgeflow.workflow_runs WHERE status = 'completed'"
                )
                return bool(done == len(run_ids))

            stop = anyio.Event()
            async with ff.worker(concurrency=200), anyio.create_task_group() as group:
                group.start_soon(sample, stop)
                await wait_for(all_completed, timeout=120, what="300 runs to complete")
                stop.set()
            records = [await ff.status(r) for r in run_ids[:10]]
    finally:
        await observer.close()
        await progress.close()
    assert {r.status for r in records} == {WorkflowStatus.COMPLETED}
    assert seen and max(seen) <= 6 + 1, f"connections seen: max {max(seen)}"
    # The worker did use its pool: more than the LISTEN connection was open meanwhile.
    assert max(seen) >= 2


@pytest.fixture
async def limited_dsn(dsn: str) -> AsyncIterator[str]:
    """The test's database reached through a role allowed only two connections (directly:
    it is the server that refuses a third)."""
    role = f"limited_{uuid.uuid4().hex[:8]}"
    admin = await connect_direct(dsn)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 2")
        parts = urlsplit(direct(dsn))
        host = parts.netloc.rsplit("@", 1)[-1]
        yield urlunsplit(parts._replace(netloc=f"{role}@{host}"))
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
        )
        await admin.execute(f"DROP ROLE {role}")
    finally:
        await admin.close()


async def test_a_refused_pool_at_start_names_the_settings(limited_dsn: str) -> None:
    """A pool whose first connections the server refuses fails to open with an error
    naming min_pool, max_pool and max_connections."""
    with pytest.raises(DatabaseError) as raised:
        await Store.open(limited_dsn, min_size=3, max_size=5, migrate=False)
    message = str(raised.value)
    assert "min_pool=3" in message and "max_pool=5" in message
    assert "max_connections" in message


async def test_a_refused_connection_during_a_run_is_an_engine_fault_logged_once(
    limited_dsn: str,
) -> None:
    """When the server refuses the pool a connection, an executing run's statement fails
    with an EngineFault (the run is handed back) whose cause names max_pool and
    max_connections, and the refusal is logged once, not per statement."""
    store = await Store.open(limited_dsn, min_size=1, max_size=4, migrate=False)
    try:
        engine = store.bind(store.pool)
        async with store.pool.acquire(), store.pool.acquire():
            with capture_logs() as logs:
                for _ in range(3):
                    with pytest.raises(EngineFault) as raised:
                        await engine.get_run("no-such-run")
                    message = str(raised.value.cause)
                    assert "max_pool=4" in message and "max_connections" in message
    finally:
        await store.close()
    assert [e["event"] for e in logs].count("pool_unavailable") == 1
