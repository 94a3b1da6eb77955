"""A simulated week of a */15 schedule with forgeflow.testing: wall time per simulated day.

    python benchmarks/schedules.py [--dsn DSN] [--rounds 3]

A decorator schedule ``*/15 * * * *`` is advanced through seven days with
``WorkflowTestEnv.advance`` on a fresh migrated database: 672 fire times, each starting
and completing one run. The figure is the wall time of the ``advance`` call divided by
seven; the target is under 1 s per simulated day.

Databases made by ``forgeflow.testing`` commit without waiting for the WAL flush
(``synchronous_commit=off``, set on the database). Each round measures the week on such
a database and, beside it, on one set back to ``synchronous_commit=on`` (what a test
run against a database of its own would see), taking turns.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta

import asyncpg
from _common import describe_server, dsn_argument, load_line, server_dsn
from _worker_proc import quiet_logs

from forgeflow import Registry, WorkflowContext, workflow
from forgeflow.testing import ManualClock, WorkflowTestEnv
from forgeflow.testing._db import create_template, drop_database

registry = Registry()


@workflow(version=1, registry=registry, schedule="*/15 * * * *")
async def sync_accounts(ctx: WorkflowContext) -> str:
    assert ctx.scheduled_at is not None
    return ctx.scheduled_at.isoformat()


async def one_week(dsn: str) -> tuple[float, int]:
    """Seconds of wall time for seven simulated days, and the runs completed."""
    clock = ManualClock(datetime(2024, 6, 3, 0, 0, 1, tzinfo=UTC))
    async with WorkflowTestEnv.connect(dsn, registry=registry, clock=clock) as env:
        began = time.perf_counter()
        await env.advance(timedelta(days=7))
        elapsed = time.perf_counter() - began
        done = await env.client.pool.fetchval(
            "SELECT count(*) FROM forgeflow.workflow_runs WHERE status = 'completed'"
        )
    return elapsed, int(done)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dsn_argument(parser)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    quiet_logs()
    dsn = await server_dsn(args.dsn)
    print(f"server: {await describe_server(dsn)}")
    print(load_line())
    per_day: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for sync, days in per_day.items():
            database = await asyncio.to_thread(create_template, dsn)
            try:
                conn = await asyncpg.connect(dsn)
                try:
                    await conn.execute(
                        f'ALTER DATABASE "{database}" SET synchronous_commit = {sync}'
                    )
                finally:
                    await conn.close()
                elapsed, runs = await one_week(template_dsn(dsn, database))
            finally:
                await asyncio.to_thread(drop_database, dsn, database)
            assert runs == 672, runs
            days.append(elapsed / 7)
    print("| a week of */15 (672 runs), synchronous_commit | best / median s per day |")
    print("|---|---:|")
    for sync, days in per_day.items():
        print(f"| {sync} | {min(days):.3f} / {statistics.median(days):.3f} |")
    print(load_line())


def template_dsn(dsn: str, database: str) -> str:
    """``dsn`` pointing at ``database``."""
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{database}"


if __name__ == "__main__":
    asyncio.run(main())
