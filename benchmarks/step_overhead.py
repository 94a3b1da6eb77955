"""Per-step cost of a 1,000-step workflow against the physical floor.

The floor is a raw asyncpg loop doing the same number of single-row INSERT commits on
the same server: one durable commit per step is the least any durable engine can do.
Both run in this one process, alternating, and the best of several rounds is kept.

    python benchmarks/step_overhead.py [--dsn DSN] [--steps 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import time

import asyncpg
import structlog

from forgeflow import Forgeflow, Registry, WorkflowContext, workflow

registry = Registry()
STEPS = 1000


async def noop(i: int) -> int:
    return i


@workflow(version=1, name="bench_steps", registry=registry)
async def many_steps(ctx: WorkflowContext, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.step("s", noop, i).run()
    return total


async def floor(dsn: str, n: int) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_floor (id bigserial PRIMARY KEY, "
                           "run text, name text, result jsonb)")
        stmt = await conn.prepare("INSERT INTO bench_floor (run, name, result) VALUES ($1, $2, $3::jsonb)")
        start = time.perf_counter()
        for i in range(n):
            await stmt.fetch("r", f"s#{i}", str(i))
        return time.perf_counter() - start
    finally:
        await conn.close()


async def engine(ff: Forgeflow, n: int) -> float:
    start = time.perf_counter()
    out = await ff.run(many_steps, n)
    elapsed = time.perf_counter() - start
    assert out == sum(range(n))
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", default=os.environ.get("FORGEFLOW_DATABASE_URL"))
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    async with Forgeflow.connect(args.dsn, registry=registry) as ff:
        dsn = ff._store.dsn
        floors, engines = [], []
        await engine(ff, 50)  # warm up pools and prepared statements
        await floor(dsn, 50)
        for _ in range(args.rounds):
            floors.append(await floor(dsn, args.steps))
            engines.append(await engine(ff, args.steps))
    f_ms = min(floors) / args.steps * 1000
    e_ms = min(engines) / args.steps * 1000
    print(f"server: {dsn.split('@')[-1]}")
    print(f"{'':24}{'best ms/step':>14}{'median ms/step':>16}")
    print(f"{'floor (INSERT commit)':24}{f_ms:14.3f}{statistics.median(floors) / args.steps * 1000:16.3f}")
    print(f"{'forgeflow step':24}{e_ms:14.3f}{statistics.median(engines) / args.steps * 1000:16.3f}")
    print(f"ratio (best): {e_ms / f_ms:.2f}x   ratio (median): "
          f"{statistics.median(engines) / statistics.median(floors):.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
