"""Per-step cost of a 1,000-step workflow against the physical floor.

The floor is a raw asyncpg loop doing the same number of single-row INSERT commits on
the same server: one durable commit per step is the least any durable engine can do.
Both run in this one process, alternating round by round; the best and the median of
the rounds are printed.

    python benchmarks/step_overhead.py [--dsn DSN] [--steps 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import asyncpg
from _common import describe_server, dsn_argument, load_line, server_dsn
from _worker_proc import quiet_logs

from forgeflow import Forgeflow, Registry, WorkflowContext, workflow

registry = Registry()


async def noop(i: int) -> int:
    return i


@workflow(version=1, name="bench_steps", registry=registry)
async def many_steps(ctx: WorkflowContext, n: int) -> int:
    """``n`` trivial steps in a row, each checkpointed."""
    total = 0
    for i in range(n):
        total += await ctx.step("s", noop, i).run()
    return total


async def floor(dsn: str, n: int) -> tuple[float, float]:
    """Seconds and CPU seconds for ``n`` single-row INSERT commits on one connection."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE SCHEMA IF NOT EXISTS forgeflow_bench; "
            "CREATE TABLE IF NOT EXISTS forgeflow_bench.step_floor "
            "(id bigserial PRIMARY KEY, run text, name text, result jsonb)"
        )
        stmt = await conn.prepare(
            "INSERT INTO forgeflow_bench.step_floor (run, name, result) VALUES ($1, $2, $3::jsonb)"
        )
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(n):
            await stmt.fetch("r", f"s#{i}", str(i))
        return time.perf_counter() - start, time.process_time() - cpu
    finally:
        await conn.close()


async def engine(ff: Forgeflow, n: int) -> tuple[float, float]:
    """Seconds and CPU seconds for ``ff.run`` of an ``n``-step workflow in this process."""
    start, cpu = time.perf_counter(), time.process_time()
    out = await ff.run(many_steps, n)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert out == sum(range(n))
    return elapsed, cpu


async def marker_cost(n: int) -> float:
    """Microseconds per step for tracking the attempt that may be shown as running."""
    # What every step attempt pays for being shown as running once it is slow: it is
    # noted as in flight and forgotten when it ends. One watcher per execution does the
    # rest; no timer, no task and no statement per step unless the step is slow.
    from datetime import UTC, datetime

    from forgeflow import WorkflowContext

    ctx: Any = WorkflowContext.__new__(WorkflowContext)
    ctx._in_flight, ctx._watcher = {}, object()
    now = datetime.now(UTC)
    start = time.perf_counter()
    for _ in range(n):
        ctx.attempt_started("s", 1, now)
        ctx.attempt_ended("s")
    return (time.perf_counter() - start) / n * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dsn_argument(parser)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    quiet_logs()
    dsn = await server_dsn(args.dsn)
    print(f"server: {await describe_server(dsn)}")
    print(load_line())
    floors: list[tuple[float, float]] = []
    engines: list[tuple[float, float]] = []
    async with Forgeflow.connect(dsn, registry=registry) as ff:
        await engine(ff, 50)  # warm up pools and prepared statements
        await floor(dsn, 50)
        for _ in range(args.rounds):
            floors.append(await floor(dsn, args.steps))
            engines.append(await engine(ff, args.steps))
    per_step = 1000 / args.steps
    f_wall, e_wall = [w for w, _ in floors], [w for w, _ in engines]
    f_best, f_median = min(f_wall) * per_step, statistics.median(f_wall) * per_step
    e_best, e_median = min(e_wall) * per_step, statistics.median(e_wall) * per_step
    print(f"\n{args.steps}-step workflow, {args.rounds} rounds")
    print(f"{'':28}{'best ms/step':>14}{'median ms/step':>16}")
    print(f"{'floor (INSERT commit)':28}{f_best:14.3f}{f_median:16.3f}")
    print(f"{'forgeflow step':28}{e_best:14.3f}{e_median:16.3f}")
    print(
        f"ratio to the floor: best {e_best / f_best:.2f}x, median {e_median / f_median:.2f}x"
        "   (target: at most 1.5x)"
    )
    # CPU time is what other work on the machine moves least: the engine's own cost.
    f_cpu = statistics.median(c for _, c in floors) * per_step * 1000
    e_cpu = statistics.median(c for _, c in engines) * per_step * 1000
    print(f"CPU of this process per step (median): floor {f_cpu:.0f} µs, forgeflow {e_cpu:.0f} µs")
    marker = min([await marker_cost(100_000) for _ in range(3)])
    print(f"of which tracking attempts to show running steps: {marker:.3f} us/step")
    print(load_line())


if __name__ == "__main__":
    asyncio.run(main())
