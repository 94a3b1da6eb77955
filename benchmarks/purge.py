"""Purging many finished runs while a worker executes new ones; table bloat afterwards.

Fills a scratch database with ``--runs`` finished runs of 5 steps each (written with
``generate_series``, ended two days ago), then measures the start -> result latency of
new 3-step runs, started at a steady pace and executed by an in-process worker, first
with nothing else going on ("before"), then while ``ff.purge(older_than="1d")`` deletes
every old run ("during"). Prints the purge rate, both latency distributions and the
on-disk size of the tables and indexes before the purge, after it, and after a plain
VACUUM.

    python benchmarks/purge.py [--dsn DSN] [--runs 100000] [--pace 20] [--before 10]

The database named by ``--dsn`` is only used to create (and drop) a scratch database.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
from _common import describe_server, dsn_argument, load_line, server_dsn, summary_ms

from forgeflow import Forgeflow, Registry, WorkflowContext, workflow

SIZES = """
SELECT c.relname AS name, pg_total_relation_size(c.oid) AS total,
       pg_relation_size(c.oid) AS heap, pg_indexes_size(c.oid) AS indexes,
       s.n_dead_tup AS dead
FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.relnamespace = 'forgeflow'::regnamespace
  AND c.relname IN ('workflow_runs', 'workflow_steps', 'hooks', 'event_waits')
ORDER BY c.relname
"""

FILL = """
INSERT INTO forgeflow.workflow_runs
    (id, workflow, version, status, input, output, timeout_seconds, created_at, started_at,
     completed_at)
SELECT 'old-' || n, 'old', 1, 'completed', '{"n": 1}', '"done"', 3600,
       now() - interval '3 days', now() - interval '3 days', now() - interval '2 days'
FROM generate_series($1::int, $2::int) n;
"""

FILL_STEPS = """
INSERT INTO forgeflow.workflow_steps
    (run_id, name, status, result, attempts, started_at, completed_at)
SELECT 'old-' || n, 'step' || k, 'completed', '{"value": "some result"}', 1,
       now() - interval '3 days', now() - interval '2 days'
FROM generate_series($1::int, $2::int) n, generate_series(1, 5) k;
"""


def with_database(dsn: str, name: str) -> str:
    """``dsn`` pointing at database ``name``."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


async def fill(dsn: str, runs: int) -> float:
    """Write ``runs`` finished runs with 5 steps each; seconds taken."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        for low in range(1, runs + 1, 50_000):
            high = min(low + 49_999, runs)
            await conn.execute(FILL, low, high)
            await conn.execute(FILL_STEPS, low, high)
        await conn.execute("ANALYZE forgeflow.workflow_runs; ANALYZE forgeflow.workflow_steps")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def sizes(dsn: str) -> dict[str, dict[str, int]]:
    """Size in bytes (total, heap, indexes) and dead tuples of each table."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_force_next_flush()")
        rows = await conn.fetch(SIZES)
    finally:
        await conn.close()
    return {r["name"]: dict(r) for r in rows}


async def vacuum(dsn: str) -> None:
    """A plain VACUUM of forgeflow's tables (what autovacuum would do)."""
    conn = await asyncpg.connect(dsn)
    try:
        for table in ("workflow_runs", "workflow_steps", "hooks", "event_waits"):
            await conn.execute(f"VACUUM forgeflow.{table}")
    finally:
        await conn.close()


async def paced_runs(
    ff: Forgeflow, wf: Any, pace: float, until: anyio.Event | float
) -> list[float]:
    """Start a run every 1/pace s until ``until`` (an event, or a number of seconds)."""
    latencies: list[float] = []

    async def one() -> None:
        started = time.perf_counter()
        run_id = await ff.start(wf, 1)
        await ff.result(run_id, timeout=120)
        latencies.append(time.perf_counter() - started)

    end = time.perf_counter() + until if isinstance(until, float) else None
    async with anyio.create_task_group() as group:
        while True:
            if end is not None and time.perf_counter() >= end:
                break
            if isinstance(until, anyio.Event) and until.is_set():
                break
            group.start_soon(one)
            await anyio.sleep(1 / pace)
    return latencies


def mb(value: int) -> str:
    """Bytes as MB."""
    return f"{value / 1e6:,.1f} MB"


async def main() -> None:
    """Fill, measure before and during the purge, report sizes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dsn_argument(parser)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--pace", type=float, default=20.0, help="new runs started per second")
    parser.add_argument("--before", type=float, default=10.0, help="seconds measured before")
    args = parser.parse_args()
    admin_dsn = await server_dsn(args.dsn)
    name = f"forgeflow_bench_purge_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(admin_dsn, name)
    try:
        print(await describe_server(dsn))
        print(load_line())
        registry = Registry()

        @workflow(version=1, registry=registry, name="fresh")
        async def fresh(ctx: WorkflowContext, n: int) -> int:
            a = await ctx.step("a", lambda: n + 1).run()
            b = await ctx.step("b", lambda: a + 1).run()
            return await ctx.step("c", lambda: b + 1).run()

        async with Forgeflow.connect(dsn, registry=registry) as ff:
            filled = await fill(dsn, args.runs)
            print(f"filled {args.runs:,} finished runs x 5 steps in {filled:.1f}s")
            start_sizes = await sizes(dsn)
            async with ff.worker(concurrency=10, poll_interval="50ms"):
                before = await paced_runs(ff, fresh, args.pace, args.before)
                done = anyio.Event()
                result: dict[str, float] = {}

                async def purge() -> None:
                    started = time.perf_counter()
                    result["deleted"] = await ff.purge(older_than="1d")
                    result["seconds"] = time.perf_counter() - started
                    done.set()

                async with anyio.create_task_group() as group:
                    group.start_soon(purge)
                    during = await paced_runs(ff, fresh, args.pace, done)
            after_sizes = await sizes(dsn)
            await vacuum(dsn)
            vacuumed = await sizes(dsn)
        report(args, before, during, result, start_sizes, after_sizes, vacuumed)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def report(
    args: argparse.Namespace,
    before: list[float],
    during: list[float],
    result: dict[str, float],
    start: dict[str, dict[str, int]],
    after: dict[str, dict[str, int]],
    vacuumed: dict[str, dict[str, int]],
) -> None:
    """Print the figures as markdown tables."""
    rate = result["deleted"] / result["seconds"]
    print(
        f"\npurge: {int(result['deleted']):,} runs in {result['seconds']:.1f}s = {rate:,.0f} runs/s"
    )
    print("\n| new 3-step runs | samples | p50 ms | p95 ms | mean ms |")
    print("|---|---|---|---|---|")
    for label, values in (("before the purge", before), ("during the purge", during)):
        p50, p95, mean = summary_ms(values)
        print(f"| {label} | {len(values)} | {p50:.1f} | {p95:.1f} | {mean:.1f} |")
    ratio = summary_ms(during)[1] / summary_ms(before)[1]
    print(f"\np95 during / before: {ratio:.2f}x")
    print("\n| table | before purge | after purge (dead tuples) | after VACUUM |")
    print("|---|---|---|---|")
    for table in sorted(start):
        print(
            f"| {table} | {mb(start[table]['total'])} "
            f"(indexes {mb(start[table]['indexes'])}) | {mb(after[table]['total'])} "
            f"({after[table]['dead']:,}) | {mb(vacuumed[table]['total'])} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
