"""Steps per second of many concurrent runs in one worker, beside the floor of single-row commits.

100 runs of 10 trivial steps are started while no worker runs; then a worker with
concurrency 100 starts in this process and executes them all. Steps per second count
from the first run's start to the last run's end (both taken from lifecycle events in
this process), and the process's CPU time over the same span gives the CPU per step.

The floor is raw asyncpg doing what an engine without batching must do at least: one
single-row INSERT commit per step, from 100 concurrent tasks on a pool of 20 connections.
Engine and floor rounds alternate in this one process run.

    python benchmarks/throughput.py [--dsn DSN] [--runs 100] [--steps 10] [--rounds 5]
                                    [--concurrency 100] [--uvloop] [--profile]

``--profile`` runs the engine rounds under cProfile and prints where the CPU went, per
step; ``--uvloop`` runs everything on uvloop's event loop (the ``uvloop`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import time
from typing import Any

import asyncpg
from _common import describe_server, dsn_argument, load_line, server_dsn
from _worker_proc import quiet_logs

from forgeflow import Forgeflow, LifecycleEvent, Registry, WorkflowContext, workflow

registry = Registry()


async def noop(i: int) -> int:
    return i


@workflow(version=1, name="bench_throughput", registry=registry)
async def ten_steps(ctx: WorkflowContext, n: int) -> int:
    """``n`` trivial steps in a row, each checkpointed."""
    total = 0
    for i in range(n):
        total += await ctx.step("s", noop, i).run()
    return total


class Timing:
    """The first run_started and the last run_finished of a round, and the CPU between."""

    def __init__(self, runs: int) -> None:
        self.runs = runs
        self.finished = 0
        self.first = 0.0
        self.cpu_first = 0.0
        self.last = 0.0
        self.cpu_last = 0.0
        self.done = asyncio.Event()

    def __call__(self, event: LifecycleEvent) -> None:
        if event.name == "run_started" and not self.first:
            self.first, self.cpu_first = time.perf_counter(), time.process_time()
        elif event.name == "run_finished":
            self.finished += 1
            if self.finished == self.runs:
                self.last, self.cpu_last = time.perf_counter(), time.process_time()
                self.done.set()


class Listener:
    """Hands events to the current round's timing."""

    timing: Timing | None = None

    def __call__(self, event: LifecycleEvent) -> None:
        if self.timing is not None:
            self.timing(event)


async def engine_round(
    ff: Forgeflow, listener: Listener, runs: int, steps: int, concurrency: int, prof: Any
) -> tuple[float, float]:
    """(steps/s, CPU µs per step) for ``runs`` runs executed by one worker."""
    for _ in range(runs):
        await ff.start(ten_steps, steps)
    timing = listener.timing = Timing(runs)
    if prof is not None:
        prof.enable()
    async with ff.worker(concurrency=concurrency, poll_interval=0.05):
        await timing.done.wait()
    if prof is not None:
        prof.disable()
    listener.timing = None
    total = runs * steps
    elapsed = timing.last - timing.first
    return total / elapsed, (timing.cpu_last - timing.cpu_first) / total * 1e6


async def floor_round(pool: asyncpg.Pool, tasks: int, commits: int) -> tuple[float, float]:
    """(commits/s, CPU µs per commit): ``tasks`` tasks doing ``commits`` single-row
    INSERT commits each, every one on a connection taken from the pool for it."""
    sql = "INSERT INTO forgeflow_bench.step_floor (run, name, result) VALUES ($1, $2, $3::jsonb)"

    async def task(t: int) -> None:
        for i in range(commits):
            async with pool.acquire() as conn:
                await conn.execute(sql, f"r{t}", f"s#{i}", str(i))

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(task(t) for t in range(tasks)))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return tasks * commits / elapsed, cpu / (tasks * commits) * 1e6


def _area(file: str, name: str) -> str:
    """Which part of the stack a profiled function belongs to."""
    if file == "~":  # a built-in: the socket and selector calls are system calls
        return (
            "system calls"
            if name.startswith(("<method 'send'", "<method 'recv'", "<method 'poll'"))
            else "built-ins"
        )
    for area in ("forgeflow", "asyncpg", "anyio", "structlog", "pydantic", "asyncio", "uvloop"):
        if f"/{area}/" in file:
            return area
    return "other Python"


def print_profile(prof: cProfile.Profile, steps: int) -> None:
    """Where the engine rounds spent their CPU, in µs per step: by area, then by function."""
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values())
    print(f"\nCPU profile of the engine rounds: {total / steps * 1e6:.1f} µs per step")
    print("(cProfile's own overhead included: read the shares)")
    areas: dict[str, float] = {}
    for (file, _line, name), (_cc, _nc, tt, _ct, _callers) in stats.items():
        area = _area(file, name)
        areas[area] = areas.get(area, 0.0) + tt
    for area, tt in sorted(areas.items(), key=lambda kv: kv[1], reverse=True):
        print(f"  {area:16}{tt / steps * 1e6:8.1f} µs/step{tt / total:8.1%}")
    print(f"\n{'own µs/step':>12}{'cum µs/step':>13}{'share':>8}  function")
    rows = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)
    for (file, line, name), (_cc, _nc, tt, ct, _callers) in rows[:25]:
        where = "/".join(file.rsplit("/", 2)[-2:])
        own, cum = tt / steps * 1e6, ct / steps * 1e6
        print(f"{own:12.2f}{cum:13.2f}{tt / total:8.1%}  {name} {where}:{line}")


Rows = list[tuple[float, float]]


async def session(args: argparse.Namespace, rounds: int, prof: Any) -> tuple[Rows, Rows]:
    """``rounds`` floor and engine rounds, alternating, on the running event loop."""
    dsn = await server_dsn(args.dsn)
    listener = Listener()
    pool = await asyncpg.create_pool(dsn, min_size=20, max_size=20)
    await pool.execute(
        "CREATE SCHEMA IF NOT EXISTS forgeflow_bench; "
        "CREATE TABLE IF NOT EXISTS forgeflow_bench.step_floor "
        "(id bigserial PRIMARY KEY, run text, name text, result jsonb)"
    )
    engine: Rows = []
    floor: Rows = []
    try:
        async with Forgeflow.connect(dsn, registry=registry, listeners=[listener]) as ff:
            await engine_round(ff, listener, 20, args.steps, args.concurrency, None)  # warm up
            await floor_round(pool, 20, args.steps)
            for _ in range(rounds):
                floor.append(await floor_round(pool, args.runs, args.steps))
                engine.append(
                    await engine_round(ff, listener, args.runs, args.steps, args.concurrency, prof)
                )
    finally:
        await pool.close()
    return floor, engine


def print_rows(label: str, rows: Rows) -> None:
    """One line of the table: best and median rate, median CPU per item."""
    rates = [r for r, _ in rows]
    cpu = statistics.median(c for _, c in rows)
    print(f"{label:44}{max(rates):10.0f}{statistics.median(rates):11.0f}{cpu:13.1f}")


async def describe(args: argparse.Namespace) -> None:
    """The server line."""
    print(f"server: {await describe_server(await server_dsn(args.dsn))}")


def run(args: argparse.Namespace, loop: str, rounds: int, prof: Any) -> tuple[Rows, Rows]:
    """``session`` on a fresh event loop of the kind named."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(session(args, rounds, prof))
    return asyncio.run(session(args, rounds, prof))


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dsn_argument(parser)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    parser.add_argument(
        "--compare-loops", action="store_true", help="alternate asyncio and uvloop, round by round"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the engine rounds")
    args = parser.parse_args()
    quiet_logs()
    asyncio.run(describe(args))
    print(load_line())
    # CPU time, not wall time: waiting for PostgreSQL is not where the CPU goes.
    prof = cProfile.Profile(time.process_time) if args.profile else None
    loops = (
        ["asyncio", "uvloop"] if args.compare_loops else ["uvloop" if args.uvloop else "asyncio"]
    )
    results: dict[str, tuple[Rows, Rows]] = {loop: ([], []) for loop in loops}
    if len(loops) == 1:
        results[loops[0]] = run(args, loops[0], args.rounds, prof)
    else:
        for _ in range(args.rounds):
            for loop in loops:
                floor, engine = run(args, loop, 1, prof)
                results[loop][0].extend(floor)
                results[loop][1].extend(engine)
    print(
        f"\n{args.runs} runs x {args.steps} steps, concurrency {args.concurrency}, one worker; "
        f"{args.rounds} rounds"
    )
    print(f"{'':44}{'best /s':>10}{'median /s':>11}{'CPU µs each':>13}")
    for loop, (floor, engine) in results.items():
        print_rows(f"floor: single-row commits, pool of 20 ({loop})", floor)
        print_rows(f"forgeflow: steps ({loop})", engine)
        ratio = statistics.median(r for r, _ in engine) / statistics.median(r for r, _ in floor)
        print(f"  forgeflow / floor (medians, {loop}): {ratio:.2f}x   (target: >= 10,000 steps/s)")
    print(load_line())
    if prof is not None:
        print_profile(prof, args.runs * args.steps * args.rounds * len(loops))


if __name__ == "__main__":
    cli()
