"""What a worker reads per claim pass or wake-up is bounded by what it returns, not by
how many runs wait: checked on the plans of its queries over a million waiting runs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from forgeflow._sql import QUERIES as Q
from forgeflow._store import Store
from tests.support.db import connect_direct, direct

WAITING = 1_000_000
# Far more than the few runs each query returns, far fewer than the waiting runs.
MAX_ROWS_READ = 200
MAX_BUFFERS = 400
# Runs of a rate-limited queue first claimed inside the window of the claim measured.
STARTED = 5_000
NOW = datetime(2030, 1, 1, tzinfo=UTC)
KEYS = ["timers:1", "timers:2"]


@pytest.fixture
async def crowded(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """The test's database with a million runs waiting on far-future timers or hooks, a
    few due, a few executing, a limited queue, a rate-limited one, and one whose rate
    window holds thousands of first claims."""
    conn = await connect_direct(dsn)
    try:
        await conn.execute(
            """
            INSERT INTO forgeflow.workflow_runs
                (id, workflow, version, queue, status, input, runnable_at,
                 timeout_seconds, created_at, started_at)
            SELECT 'wait-' || i, 'timers', 1 + i % 2,
                   CASE WHEN i % 4 = 0 THEN 'limited' ELSE 'default' END, 'waiting', '{}',
                   CASE WHEN i % 3 = 0 THEN NULL
                        ELSE $1::timestamptz + make_interval(days => 1 + i % 300) END,
                   86400, $1::timestamptz - interval '1 day', $1::timestamptz - interval '1 day'
            FROM generate_series(1, $2) AS i
            """,
            NOW,
            WAITING,
        )
        await conn.execute(
            """
            INSERT INTO forgeflow.workflow_runs
                (id, workflow, version, queue, input, runnable_at, timeout_seconds,
                 created_at, lease_owner, lease_expires_at, status)
            SELECT 'due-' || q || '-' || i, 'timers', 1, q, '{}',
                   $1::timestamptz - interval '1 second', 60, $1::timestamptz,
                   CASE WHEN i <= 2 THEN 'w' END,
                   CASE WHEN i <= 2 THEN now() + interval '1 minute' END,
                   CASE WHEN i <= 2 THEN 'running' ELSE 'created' END
            FROM generate_series(1, 5) AS i, unnest(ARRAY['default', 'limited']) AS q
            """,
            NOW,
        )
        await conn.execute(
            "INSERT INTO forgeflow.queues (name, concurrency, rate_limit, rate_period_seconds)"
            " VALUES ('limited', 3, 100, 3600), ('rated', NULL, 1000000, 3600)"
        )
        await start_in_window(conn)
        # As autovacuum would soon: the runs that start_in_window claimed and ended leave
        # dead entries in the claim index, and whether a scan has marked them dead yet
        # moved the buffer counts below by hundreds from one run to the next.
        await conn.execute("VACUUM ANALYZE forgeflow.workflow_runs")
        await conn.execute("ANALYZE forgeflow.queues")
        yield conn
    finally:
        await conn.close()


async def start_in_window(conn: asyncpg.Connection) -> None:
    """Queue 'rated': STARTED runs first claimed ten minutes before NOW (inside its hour-long
    rate window) by limited claims and ended, and a few claimable ones."""
    await conn.execute(
        """
        INSERT INTO forgeflow.workflow_runs
            (id, workflow, version, queue, input, runnable_at, timeout_seconds, created_at)
        SELECT 'rated-' || i, 'timers', 1, 'rated', '{}',
               $1::timestamptz - interval '1 hour', 86400, $1::timestamptz - interval '1 hour'
        FROM generate_series(1, $2 + 5) AS i
        """,
        NOW,
        STARTED,
    )
    claimed = 0
    while claimed < STARTED:
        rows = await conn.fetch(
            Q["claim_limited_runs"],
            NOW - timedelta(minutes=10),
            ["rated"],
            KEYS,
            min(500, STARTED - claimed),
            "w",
            30.0,
        )
        ids = [r["id"] for r in rows if r["id"] is not None]
        claimed += len(ids)
        await conn.execute(
            "UPDATE forgeflow.workflow_runs SET status = 'completed', lease_owner = NULL,"
            " lease_expires_at = NULL, runnable_at = NULL WHERE id = ANY($1::text[])",
            ids,
        )


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


async def explain(conn: asyncpg.Connection, name: str, *args: Any) -> dict[str, Any]:
    """The executed plan of statement ``name`` (rolled back, so claims claim nothing)."""
    tr = conn.transaction()
    await tr.start()
    try:
        raw = await conn.fetchval(
            f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {Q[name]}", *args, column=0
        )
    finally:
        await tr.rollback()
    plan: dict[str, Any] = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return plan


async def explain_generic(
    conn: asyncpg.Connection, name: str, types: str, values: str
) -> dict[str, Any]:
    """The executed plan of statement ``name`` as its reused generic plan runs it (the
    plan a worker gets once PostgreSQL stops planning the statement at each execution);
    ``values`` are its arguments as SQL literals."""
    tr = conn.transaction()
    await tr.start()
    try:
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE generic_{name} ({types}) AS {Q[name]}")
        raw = await conn.fetchval(
            f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE generic_{name} ({values})"
        )
    finally:
        await tr.rollback()
        await conn.execute(f"DEALLOCATE generic_{name}")  # PREPARE outlives the rollback
    plan: dict[str, Any] = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return plan


def assert_bounded(name: str, plan: dict[str, Any]) -> None:
    runs = [n for n in nodes(plan) if n.get("Relation Name") == "workflow_runs"]
    scans = {n["Node Type"] for n in runs}
    assert "Seq Scan" not in scans, f"{name} scans workflow_runs: {scans}"
    assert "Bitmap Heap Scan" not in scans or all(
        n["Actual Rows"] * n["Actual Loops"] <= MAX_ROWS_READ for n in runs
    ), f"{name} reads a bitmap of workflow_runs"
    read = sum(
        (n["Actual Rows"] + n.get("Rows Removed by Filter", 0)) * max(n["Actual Loops"], 1)
        for n in runs
    )
    assert read <= MAX_ROWS_READ, f"{name} reads {read} rows of workflow_runs"
    buffers = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
    assert buffers <= MAX_BUFFERS, f"{name} touches {buffers} buffers"


async def test_worker_queries_are_bounded_among_a_million_waiting_runs(
    crowded: asyncpg.Connection,
) -> None:
    """next_runnable_at and next_limited_wake read a few index entries per queue and
    workflow version; claims read the due and executing runs of their queues; heartbeat
    the worker's own leases; a retention batch its batch; never the waiting runs."""
    plan = await explain(
        crowded, "next_runnable_at", ["default"], ["timers", "timers"], [1, 2], KEYS
    )
    assert_bounded("next_runnable_at", plan)
    plan = await explain(
        crowded, "next_limited_wake", NOW, ["limited"], ["timers", "timers"], [1, 2]
    )
    assert_bounded("next_limited_wake", plan)

    # Both claims probe each priority on their own (the runnable_at bound is not a range
    # condition behind the priority column of the claim index): they read the due and
    # executing runs only, never the waiting ones.
    plan = await explain(crowded, "claim_runs", NOW, ["default"], KEYS, 10, "w2", 30.0)
    assert_bounded("claim_runs", plan)
    plan = await explain(crowded, "claim_limited_runs", NOW, ["limited"], KEYS, 10, "w2", 30.0)
    assert_bounded("claim_limited_runs", plan)
    # Both claims are written so that PostgreSQL reuses their generic plans: those plans
    # must be as bounded as the ones made for the values at hand.
    types = "timestamptz, text[], text[], int, text, float8"
    for name, queue in (("claim_runs", "default"), ("claim_limited_runs", "limited")):
        values = f"'{NOW.isoformat()}', '{{{queue}}}', '{{{','.join(KEYS)}}}', 10, 'w2', 30.0"
        plan = await explain_generic(crowded, name, types, values)
        assert_bounded(f"{name} (generic plan)", plan)
    # A rate far from reached is bounded from the queue's ledger of first claims, not by
    # counting the thousands of runs started in its window.
    plan = await explain(crowded, "claim_limited_runs", NOW, ["rated"], KEYS, 10, "w2", 30.0)
    assert_bounded("claim_limited_runs (rate window)", plan)
    values = f"'{NOW.isoformat()}', '{{rated}}', '{{{','.join(KEYS)}}}', 10, 'w2', 30.0"
    plan = await explain_generic(crowded, "claim_limited_runs", types, values)
    assert_bounded("claim_limited_runs (rate window, generic plan)", plan)

    plan = await explain(crowded, "heartbeat", "w", ["due-default-1", "due-default-2"], 30.0)
    assert_bounded("heartbeat", plan)
    plan = await explain(
        crowded, "purge_batch", NOW - timedelta(days=30), None, None, 100, None, None, True
    )
    assert_bounded("purge_batch", plan)
    plan = await explain(crowded, "next_schedule_fire", ["timers"])
    assert plan["Shared Hit Blocks"] + plan["Shared Read Blocks"] <= MAX_BUFFERS


async def test_forgeflow_connections_never_jit_compile(dsn: str) -> None:
    """The pool's sessions run with JIT off: a claim's cost estimate grows with the
    backlog of due runs, and past ``jit_above_cost`` each claim would compile for tens
    of milliseconds to read a handful of rows."""
    store = await Store.open(direct(dsn), min_size=1, max_size=1, migrate=False)
    try:
        async with store.pool.acquire() as conn:
            assert await conn.fetchval("SHOW jit") == "off"
    finally:
        await store.close()


async def test_claims_settle_on_their_generic_plans_among_a_million_waiting_runs(
    crowded: asyncpg.Connection,
) -> None:
    """After the five executions PostgreSQL plans for their values, each claim reuses one
    generic plan instead of planning again at every claim (planning a claim costs more
    than running it)."""
    tr = crowded.transaction()
    await tr.start()
    try:
        for name, queue in (("claim_runs", "default"), ("claim_limited_runs", "limited")):
            statement = await crowded.prepare(Q[name])
            for _ in range(8):
                await statement.fetch(NOW, [queue], KEYS, 1, "w2", 30.0)
            generic = await crowded.fetchval(
                "SELECT generic_plans FROM pg_prepared_statements WHERE statement = $1", Q[name]
            )
            assert generic >= 3, f"{name} was planned again at each execution"
    finally:
        await tr.rollback()
