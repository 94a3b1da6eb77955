"""forgeflow beside DBOS Transact on the same PostgreSQL server, in one process run.

Three scenarios, each with its floor; in each, the set-ups take turns round by round:

1. per step: a workflow of N trivial durable steps run in this process (forgeflow
   ``ctx.step`` via ``ff.run``, DBOS ``@DBOS.step`` in an ``@DBOS.workflow``), against
   one raw asyncpg single-row INSERT commit per step on one connection;
2. start -> result of a 3-step workflow through an idle worker in this process:
   forgeflow ``ff.start`` + ``ff.result`` with an ``ff.worker``; DBOS
   ``Queue.enqueue_async`` + ``get_result``, queue and result polled every 50 ms, and
   at DBOS's defaults (1 s each); against the raw asyncpg worker of ``latency.py``.
   Each engine's start that executes at once in the caller (``ff.run``,
   ``DBOS.start_workflow_async``) is shown too;
3. throughput: 100 runs of 10 steps at concurrency 100 in this process, steps/s, against
   100 tasks committing as many single-row INSERTs through a pool of 20.

DBOS comes from PyPI at the version pinned in ``requirements-peers.txt`` (it is no
dependency of forgeflow) and uses its async API throughout. Its system database is a
database of its own on the same server, named after forgeflow's with ``_dbos`` appended
(DBOS creates it when missing). Both engines use their default pools (20 connections).
DBOS's queue threads poll in this process throughout, so every set-up shares the CPU
with them alike (about 40 small queries a second).

    pip install -r benchmarks/requirements-peers.txt
    python benchmarks/peers.py [--dsn DSN] [--steps 300] [--rounds 3] [--runs 100]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from importlib.metadata import version
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from _common import describe_server, dsn_argument, load_line, server_dsn, summary_ms
from _worker_proc import prepare_raw_schema, quiet_logs
from latency import RawClient, raw_worker_task
from step_overhead import floor as insert_commits

from forgeflow import Forgeflow, Registry, WorkflowContext, workflow

try:
    from dbos import DBOS, Queue
except ImportError:  # pragma: no cover - depends on the install
    raise SystemExit(
        "DBOS is not installed: pip install -r benchmarks/requirements-peers.txt"
    ) from None

FAST_POLL = 0.05  # seconds; DBOS's default is 1.0 for a queue and for get_result
LAT_QUEUE, TP_QUEUE = "peers_lat", "peers_tp"
TP_RUNS, TP_STEPS = 100, 10
FLOOR_INSERT = (
    "INSERT INTO forgeflow_bench.step_floor (run, name, result) VALUES ($1, $2, $3::jsonb)"
)
Sample = tuple[float, float]  # seconds of wall time, seconds of this process's CPU
Sampler = Callable[[], Awaitable[Sample]]

registry = Registry()


async def noop(i: int) -> int:
    return i


@workflow(version=1, name="peers_steps", registry=registry)
async def ff_steps(ctx: WorkflowContext, n: int) -> int:
    """``n`` trivial steps in a row, each checkpointed."""
    total = 0
    for i in range(n):
        total += await ctx.step("s", noop, i)
    return total


@DBOS.step()
async def dbos_noop(i: int) -> int:
    return i


@DBOS.workflow()
async def dbos_steps(n: int) -> int:
    """DBOS's twin of ``ff_steps``."""
    total = 0
    for i in range(n):
        total += await dbos_noop(i)
    return total


def expect(n: int) -> int:
    """The output of an ``n``-step run."""
    return sum(range(n))


def dbos_system_url(dsn: str) -> str:
    """The DSN of DBOS's system database: forgeflow's database name plus ``_dbos``."""
    parts = urlsplit(dsn)
    name = parts.path.lstrip("/") or "postgres"
    return urlunsplit(parts._replace(path=f"/{name}_dbos"))


@asynccontextmanager
async def dbos_launched(dsn: str) -> AsyncIterator[dict[str, Queue]]:
    """DBOS launched in this event loop's thread (so its async workflows run on this loop)."""
    DBOS(
        config={
            "name": "forgeflow_peers",
            "application_version": "forgeflow-peers",  # one version across runs
            "system_database_url": dbos_system_url(dsn),
            "log_level": "WARNING",
        }
    )
    DBOS.launch()
    register = functools.partial(DBOS.register_queue_async, on_conflict="always_update")
    try:
        yield {
            "fast": await register("peers_lat_fast", polling_interval_sec=FAST_POLL),
            "default": await register("peers_lat_default"),
            "tp": await register(
                "peers_tp", worker_concurrency=TP_RUNS, polling_interval_sec=FAST_POLL
            ),
        }
    finally:
        DBOS.destroy()


async def commits(db: asyncpg.Connection | asyncpg.Pool, run: str, n: int) -> None:
    """``n`` single-row INSERT commits: the least ``n`` durable steps can cost."""
    for i in range(n):
        await db.execute(FLOOR_INSERT, run, f"s#{i}", str(i))


async def timed(work: Awaitable[object], expected: object) -> Sample:
    """Wall and CPU seconds ``work`` took (CPU of all this process's threads); its result
    checked."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = await work
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert out == expected, (out, expected)
    return wall, cpu


def medians(values: list[Sample]) -> Sample:
    """The median wall time and the median CPU time of ``values``."""
    return statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)


async def interleave(
    setups: Mapping[str, Sampler], rounds: int, blocks: Mapping[str, int] | None = None
) -> dict[str, list[Sample]]:
    """Samples of each set-up, taking turns in blocks after one warm-up sample each."""
    for sample in setups.values():
        await sample()
    samples: dict[str, list[Sample]] = {name: [] for name in setups}
    for _ in range(rounds):
        for name, sample in setups.items():
            for _ in range((blocks or {}).get(name, 1)):
                samples[name].append(await sample())
    return samples


def heading(title: str) -> None:
    """A scenario's title and the load average before its samples."""
    print(f"\n{title}\n{load_line()}", flush=True)


# -- 1. per-step overhead -------------------------------------------------------------------


async def per_step(ff: Forgeflow, dsn: str, n: int, rounds: int) -> None:
    """Scenario 1: ms per step of an ``n``-step workflow run in this process."""
    conn = await asyncpg.connect(dsn)
    setups: dict[str, Sampler] = {
        "floor: one INSERT commit per step": lambda: timed(commits(conn, "r", n), None),
        "forgeflow: ctx.step (ff.run)": lambda: timed(ff.run(ff_steps, n), expect(n)),
        "DBOS: @DBOS.step (workflow called)": lambda: timed(dbos_steps(n), expect(n)),
    }
    heading(f"Per step: a {n}-step workflow, {rounds} rounds")
    try:
        samples = await interleave(setups, rounds)
    finally:
        await conn.close()
    print(f"{'':52}  best ms   median ms   x floor   CPU ms")
    base = medians(samples[next(iter(setups))])[0]
    for name, values in samples.items():
        (median, cpu), best = medians(values), min(v[0] for v in values)
        ms = 1000 / n
        print(f"{name:52}{best * ms:9.3f}{median * ms:12.3f}{median / base:9.2f}x{cpu * ms:9.3f}")
    print(load_line())


# -- 2. start -> result through an idle worker ----------------------------------------------


async def latency(
    ff: Forgeflow, raw: RawClient, dsn: str, queues: dict[str, Queue], runs: int
) -> None:
    """Scenario 2: start -> result of one 3-step run at a time."""

    async def dbos_queued(queue: Queue, poll: float | None) -> int:
        handle = await queue.enqueue_async(dbos_steps, 3)
        if poll is None:
            return await handle.get_result()
        return await handle.get_result(polling_interval_sec=poll)

    async def dbos_started() -> int:
        return await (await DBOS.start_workflow_async(dbos_steps, 3)).get_result()

    async def ff_queued() -> int:
        return await ff.result(await ff.start(ff_steps, 3, queue=LAT_QUEUE), timeout=30)

    async def raw_queued() -> int:
        return await raw.result(await raw.start(LAT_QUEUE, 0))  # three steps adding one

    default = "DBOS: Queue, polled at its default 1 s"
    setups: dict[str, Sampler] = {
        "raw asyncpg: worker task in this process": lambda: timed(raw_queued(), 3),
        "forgeflow: ff.start + ff.result, ff.worker": lambda: timed(ff_queued(), 3),
        "DBOS: Queue.enqueue_async, polled every 50 ms": lambda: timed(
            dbos_queued(queues["fast"], FAST_POLL), 3
        ),
        default: lambda: timed(dbos_queued(queues["default"], None), 3),
        "forgeflow: ff.run (executes in the caller)": lambda: timed(ff.run(ff_steps, 3), 3),
        "DBOS: start_workflow_async (in the caller)": lambda: timed(dbos_started(), 3),
    }
    block = 10
    heading(
        "Start -> result of a 3-step run, idle worker in this process, one run at a time "
        f"({runs} runs each, {max(1, runs // block)} at DBOS's default polling)"
    )
    async with (
        raw_worker_task(dsn, LAT_QUEUE, 10),
        ff.worker(concurrency=10, queues=[LAT_QUEUE]),
    ):
        blocks = dict.fromkeys(setups, block) | {default: 1}
        samples = await interleave(setups, max(1, runs // block), blocks)
    print(f"{'':52}   p50 ms    p95 ms   mean ms  p50 x raw   CPU ms")
    base = summary_ms([v[0] for v in samples[next(iter(setups))]])[0]
    for name, values in samples.items():
        p50, p95, mean = summary_ms([v[0] for v in values])
        cpu = medians(values)[1] * 1000
        print(f"{name:52}{p50:9.2f}{p95:10.2f}{mean:10.2f}{p50 / base:10.2f}x{cpu:9.2f}")
    print(load_line())


# -- 3. throughput --------------------------------------------------------------------------


async def throughput(ff: Forgeflow, dsn: str, queues: dict[str, Queue], rounds: int) -> None:
    """Scenario 3: steps/s of 100 runs x 10 steps started at once, concurrency 100."""
    total = TP_RUNS * TP_STEPS
    pool = await asyncpg.create_pool(dsn, min_size=20, max_size=20)

    async def floor() -> None:
        await asyncio.gather(*(commits(pool, f"tp{k}", TP_STEPS) for k in range(TP_RUNS)))

    async def ff_worker() -> list[int]:
        starts = (ff.start(ff_steps, TP_STEPS, queue=TP_QUEUE) for _ in range(TP_RUNS))
        ids = await asyncio.gather(*starts)
        return await asyncio.gather(*(ff.result(run_id, timeout=300) for run_id in ids))

    async def dbos_queue() -> list[int]:
        starts = (queues["tp"].enqueue_async(dbos_steps, TP_STEPS) for _ in range(TP_RUNS))
        handles = await asyncio.gather(*starts)
        return await asyncio.gather(
            *(h.get_result(polling_interval_sec=FAST_POLL) for h in handles)
        )

    async def dbos_started() -> list[int]:
        starts = (DBOS.start_workflow_async(dbos_steps, TP_STEPS) for _ in range(TP_RUNS))
        handles = await asyncio.gather(*starts)
        return await asyncio.gather(*(h.get_result() for h in handles))

    outputs = [expect(TP_STEPS)] * TP_RUNS
    setups: dict[str, Sampler] = {
        f"floor: {TP_RUNS} tasks, INSERT commits, pool of 20": lambda: timed(floor(), None),
        f"forgeflow: ff.worker(concurrency={TP_RUNS})": lambda: timed(ff_worker(), outputs),
        "DBOS: Queue, polled every 50 ms": lambda: timed(dbos_queue(), outputs),
        "DBOS: start_workflow_async (in the caller)": lambda: timed(dbos_started(), outputs),
    }
    heading(
        f"Throughput: {TP_RUNS} runs x {TP_STEPS} steps started at once, concurrency "
        f"{TP_RUNS} in this process, {rounds} rounds"
    )
    try:
        async with ff.worker(concurrency=TP_RUNS, queues=[TP_QUEUE]):
            samples = await interleave(setups, rounds)
    finally:
        await pool.close()
    print(f"{'':52}best steps/s  median steps/s  x floor  CPU ms/step")
    base = total / medians(samples[next(iter(setups))])[0]
    for name, values in samples.items():
        (wall, cpu), best = medians(values), total / min(v[0] for v in values)
        median = total / wall
        print(f"{name:52}{best:12.0f}{median:16.0f}{median / base:8.2f}x{cpu * 1000 / total:13.3f}")
    print(load_line())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dsn_argument(parser)
    parser.add_argument("--steps", type=int, default=300, help="steps of the per-step workflow")
    parser.add_argument("--rounds", type=int, default=3, help="per-step and throughput rounds")
    parser.add_argument("--runs", type=int, default=100, help="latency samples per set-up")
    args = parser.parse_args()
    quiet_logs()
    dsn = await server_dsn(args.dsn)
    print(f"server: {await describe_server(dsn)}")
    print(f"forgeflow {version('forgeflow')}, DBOS Transact {version('dbos')}")
    print(load_line())
    await prepare_raw_schema(dsn)
    await insert_commits(dsn, 1)  # creates the floor's table
    async with (
        Forgeflow.connect(dsn, registry=registry) as ff,
        RawClient.connect(dsn) as raw,
        dbos_launched(dsn) as queues,
    ):
        await per_step(ff, dsn, args.steps, args.rounds)
        await latency(ff, raw, dsn, queues, args.runs)
        await throughput(ff, dsn, queues, args.rounds)


if __name__ == "__main__":
    asyncio.run(main())
