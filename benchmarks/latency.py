"""Start-to-complete latency and throughput of a 3-step workflow, beside raw asyncpg.

Latency: runs are started one at a time; each is timed from ``ff.start`` until
``ff.result`` returns its output, executed by an idle worker, either inside this process
(``ff.worker``) or in a worker process. The baseline does the same round trips with
raw asyncpg and nothing else: INSERT + NOTIFY to start, a LISTENing worker that claims
with SKIP LOCKED (UPDATE + NOTIFY), reads the run's checkpoints, commits one INSERT per
step and one UPDATE + NOTIFY to finish, and a client that LISTENs and reads the status.
The four set-ups are alive together (each on its own queue) and take turns, so that
drift on the machine falls on all of them alike.

In process: runs executed one after the other with ``ff.run`` in this process, beside
raw asyncpg sending the five commits such a run needs at the least (the start, one per
step, the finish) on one connection; runs per second.

Throughput: 1,000 runs started by a few concurrent starters while 1, then 2, worker
processes execute them; timed from the first start until every run is completed. The
raw baseline's worker processes take turns with forgeflow's, round by round.

    python benchmarks/latency.py [--dsn DSN] [--runs 300] [--throughput-runs 1000]
                                 [--rounds 3] [--concurrency 10] [--starters 4]
                                 [--waiting N] [--finished N] [--inprocess-runs 300]

``--waiting N`` first parks N runs of the same workflow on the latency queues, half
asleep on timers a year ahead, half waiting on an open approval hook, each with its
checkpoints, so that the claims and wake-up queries work among them, as in a system with
many runs waiting on approvals and timers. ``--finished N`` writes N completed runs with
three step rows each beside them, as a system keeps its history until purged. The raw
baseline's tables get as many rows of each kind. Each table is written by set-based
statements, then vacuumed and analyzed, and a checkpoint writes the fill out before
anything is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from _common import announce, dsn_argument, load_line, summary_ms
from _worker_proc import (
    RAW_CHANGED,
    RAW_FINISH,
    RAW_START,
    RAW_STATUS,
    RAW_STEP,
    RawWorker,
    prepare_raw_schema,
    quiet_logs,
    registry,
    three_steps,
)

from forgeflow import Forgeflow

WORKER_SCRIPT = Path(__file__).resolve().parent / "_worker_proc.py"
LOCAL, REMOTE = "bench_lat_local", "bench_lat_proc"
TP_ENGINE, TP_RAW = "bench_tp_forgeflow", "bench_tp_raw"


# -- worker processes ---------------------------------------------------------------------


@asynccontextmanager
async def worker_processes(
    dsn: str, mode: str, queue: str, count: int, concurrency: int
) -> AsyncIterator[None]:
    """``count`` worker processes of ``mode`` on ``queue``, ready when this enters."""
    procs: list[asyncio.subprocess.Process] = []
    try:
        for _ in range(count):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(WORKER_SCRIPT),
                "--dsn",
                dsn,
                "--mode",
                mode,
                "--queue",
                queue,
                "--concurrency",
                str(concurrency),
                stdout=asyncio.subprocess.PIPE,
            )
            procs.append(proc)
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if line.strip() != b"ready":
                raise RuntimeError(f"{mode} worker process did not start: {line!r}")
        yield
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@asynccontextmanager
async def raw_worker_task(dsn: str, queue: str, concurrency: int) -> AsyncIterator[None]:
    """The baseline's worker as a task of this process."""
    ready = asyncio.Event()
    task = asyncio.create_task(RawWorker(dsn, queue, concurrency).run(ready.set))
    await ready.wait()
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# -- the raw client -----------------------------------------------------------------------


class RawClient:
    """The baseline's client: INSERT + NOTIFY to start; LISTEN and read to await the end."""

    def __init__(self, pool: asyncpg.Pool, listener: asyncpg.Connection) -> None:
        self.pool = pool
        self.listener = listener
        self.waiters: dict[str, asyncio.Event] = {}

    @classmethod
    @asynccontextmanager
    async def connect(cls, dsn: str) -> AsyncIterator[RawClient]:
        pool = await asyncpg.create_pool(dsn, min_size=2, max_size=20)
        listener = await asyncpg.connect(dsn)
        client = cls(pool, listener)
        await listener.add_listener(RAW_CHANGED, client._changed)
        try:
            yield client
        finally:
            await listener.close()
            await pool.close()

    def _changed(self, _conn: Any, _pid: int, _channel: str, run_id: object) -> None:
        event = self.waiters.pop(str(run_id), None)
        if event is not None:
            event.set()

    async def start(self, queue: str, n: int) -> str:
        run_id = str(uuid.uuid4())
        await self.pool.fetchval(RAW_START, run_id, queue, str(n))
        return run_id

    async def result(self, run_id: str) -> int:
        while True:
            event = self.waiters.setdefault(run_id, asyncio.Event())
            row = await self.pool.fetchrow(RAW_STATUS, run_id)
            if row is not None and row["status"] == "completed":
                self.waiters.pop(run_id, None)
                return int(row["output"])
            await asyncio.wait_for(event.wait(), 30)


# -- latency ------------------------------------------------------------------------------


async def latency(ff: Forgeflow, raw: RawClient, dsn: str, runs: int, concurrency: int) -> None:
    async def engine(queue: str) -> float:
        start = time.perf_counter()
        out = await ff.result(await ff.start(three_steps, 1, queue=queue), timeout=30)
        elapsed = time.perf_counter() - start
        assert out == 4, out
        return elapsed

    async def baseline(queue: str) -> float:
        start = time.perf_counter()
        out = await raw.result(await raw.start(queue, 1))
        elapsed = time.perf_counter() - start
        assert out == 4, out
        return elapsed

    setups: dict[str, Callable[[], Awaitable[float]]] = {
        "raw asyncpg, worker task in this process": lambda: baseline(LOCAL),
        "forgeflow, ff.worker in this process": lambda: engine(LOCAL),
        "raw asyncpg, worker process": lambda: baseline(REMOTE),
        "forgeflow, worker process": lambda: engine(REMOTE),
    }
    samples: dict[str, list[float]] = {name: [] for name in setups}
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(raw_worker_task(dsn, LOCAL, concurrency))
        await stack.enter_async_context(ff.worker(concurrency=concurrency, queues=[LOCAL]))
        for mode in ("raw", "forgeflow"):
            await stack.enter_async_context(worker_processes(dsn, mode, REMOTE, 1, concurrency))
        for fn in setups.values():  # warm up connections, prepared statements, caches
            for _ in range(20):
                await fn()
        block = 25
        for _ in range(max(1, runs // block)):
            for name, fn in setups.items():
                for _ in range(block):
                    samples[name].append(await fn())

    print(
        f"\nLatency: start -> result of one 3-step run, idle worker, "
        f"{len(samples[next(iter(samples))])} runs each, started one at a time"
    )
    print(f"{'':44}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}")
    for name, values in samples.items():
        p50, p95, mean = summary_ms(values)
        print(f"{name:44}{p50:9.2f}{p95:9.2f}{mean:9.2f}")
    pairs = {"this process": (0, 1), "worker process": (2, 3)}
    names = list(samples)
    for where, (base, eng) in pairs.items():
        e50, e95, _ = summary_ms(samples[names[eng]])
        b50, b95, _ = summary_ms(samples[names[base]])
        print(
            f"forgeflow minus raw ({where}): p50 {e50 - b50:+.2f} ms, p95 {e95 - b95:+.2f} ms;"
            f" forgeflow/raw p50 {e50 / b50:.2f}, p95 {e95 / b95:.2f}"
        )
    print("target: forgeflow p50 under 10 ms")


# -- in process ---------------------------------------------------------------------------

INPROC_RAW = "bench_inproc_raw"


async def raw_in_process(conn: asyncpg.Connection, n: int) -> int:
    """The least a 3-step run costs: five commits (start, three steps, finish) in a row."""
    run_id = str(uuid.uuid4())
    await conn.fetchval(RAW_START, run_id, INPROC_RAW, str(n))
    value = n
    for name in ("one", "two", "three"):
        value += 1
        await conn.execute(RAW_STEP, run_id, name, str(value))
    await conn.fetchval(RAW_FINISH, run_id, str(value))
    return value


async def in_process(ff: Forgeflow, dsn: str, runs: int, rounds: int) -> None:
    """Runs/s of ``ff.run`` one after the other vs the five raw commits per run."""
    conn = await asyncpg.connect(dsn)
    rates: dict[str, list[float]] = {"raw asyncpg, 5 commits per run": [], "forgeflow, ff.run": []}

    async def rate(fn: Callable[[int], Awaitable[int]]) -> float:
        began = time.perf_counter()
        for i in range(runs):
            assert await fn(i) == i + 3
        return runs / (time.perf_counter() - began)

    async def engine(i: int) -> int:
        out: int = await ff.run(three_steps, i)
        return out

    async def baseline(i: int) -> int:
        return await raw_in_process(conn, i)

    try:
        await rate(baseline)  # warm up
        await rate(engine)
        for _ in range(rounds):
            for name, fn in zip(rates, (baseline, engine), strict=True):
                rates[name].append(await rate(fn))
    finally:
        await conn.close()
    print(f"\nIn process: {runs} 3-step runs one after the other, {rounds} rounds")
    print(f"{'':36}{'best runs/s':>13}{'median runs/s':>15}")
    for name, values in rates.items():
        print(f"{name:36}{max(values):13.0f}{statistics.median(values):15.0f}")
    raw, engine_rates = rates.values()
    print(
        f"forgeflow/raw (median): {statistics.median(engine_rates) / statistics.median(raw):.2f}"
        "   (target: at least 400 runs/s)"
    )


# -- throughput ---------------------------------------------------------------------------

COUNT_ENGINE = (
    "SELECT count(*) FROM forgeflow.workflow_runs "
    "WHERE id = ANY($1::text[]) AND status = 'completed'"
)
COUNT_RAW = (
    "SELECT count(*) FROM forgeflow_bench.runs WHERE id = ANY($1::text[]) AND status = 'completed'"
)


async def start_all(start: Callable[[int], Awaitable[str]], n: int, starters: int) -> list[str]:
    """Start ``n`` runs from ``starters`` concurrent tasks; their ids."""
    ids: list[str] = []

    async def starter(k: int) -> None:
        for i in range(k, n, starters):
            ids.append(await start(i))

    await asyncio.gather(*(starter(k) for k in range(starters)))
    return ids


async def drain(
    conn: asyncpg.Connection,
    count_sql: str,
    start: Callable[[int], Awaitable[str]],
    n: int,
    starters: int,
) -> float:
    """Seconds from the first start until all ``n`` runs are completed."""
    began = time.perf_counter()
    ids = await start_all(start, n, starters)
    while (done := await conn.fetchval(count_sql, ids)) < n:
        if time.perf_counter() - began > 600:
            raise TimeoutError(f"only {done} of {n} runs completed in 600 s")
        await asyncio.sleep(0.02)
    return time.perf_counter() - began


async def throughput(
    ff: Forgeflow,
    raw: RawClient,
    dsn: str,
    n: int,
    rounds: int,
    concurrency: int,
    starters: int,
) -> None:
    async def engine(i: int) -> str:
        return await ff.start(three_steps, i, queue=TP_ENGINE)

    async def baseline(i: int) -> str:
        return await raw.start(TP_RAW, i)

    print(
        f"\nThroughput: {n} runs started by {starters} concurrent starters, worker processes "
        f"with concurrency {concurrency} each, {rounds} round(s), timed first start -> "
        f"all completed"
    )
    print(f"{'':36}{'best runs/s':>13}{'median runs/s':>15}")
    conn = await asyncpg.connect(dsn)
    try:
        for workers in (1, 2):
            results: dict[str, list[float]] = {"raw": [], "forgeflow": []}
            async with (
                worker_processes(dsn, "raw", TP_RAW, workers, concurrency),
                worker_processes(dsn, "forgeflow", TP_ENGINE, workers, concurrency),
            ):
                await drain(conn, COUNT_RAW, baseline, 50, starters)  # warm up
                await drain(conn, COUNT_ENGINE, engine, 50, starters)
                for _ in range(rounds):
                    results["raw"].append(n / await drain(conn, COUNT_RAW, baseline, n, starters))
                    results["forgeflow"].append(
                        n / await drain(conn, COUNT_ENGINE, engine, n, starters)
                    )
            for name, rates in results.items():
                label = f"{name}, {workers} worker process{'es' if workers > 1 else ''}"
                print(f"{label:36}{max(rates):13.0f}{statistics.median(rates):15.0f}")
            share = statistics.median(results["forgeflow"]) / statistics.median(results["raw"])
            print(f"{'':36}forgeflow/raw (median): {share:.2f}")
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dsn_argument(parser)
    parser.add_argument("--runs", type=int, default=300, help="latency samples per set-up")
    parser.add_argument("--throughput-runs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds per set-up")
    parser.add_argument("--concurrency", type=int, default=10, help="runs per worker at once")
    parser.add_argument("--starters", type=int, default=4, help="concurrent starting tasks")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument(
        "--waiting", type=int, default=0, help="runs parked on far timers and open hooks"
    )
    parser.add_argument("--finished", type=int, default=0, help="completed runs written first")
    parser.add_argument("--inprocess-runs", type=int, default=300, help="ff.run runs per round")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    quiet_logs()
    dsn = await announce(args.dsn)
    await prepare_raw_schema(dsn)
    async with (
        Forgeflow.connect(dsn, registry=registry) as ff,
        RawClient.connect(dsn) as raw,
    ):
        if args.waiting or args.finished:
            await park(ff, args.waiting, args.finished)
        before = await history(ff)
        if not args.skip_latency:
            await latency(ff, raw, dsn, args.runs, args.concurrency)
        if args.inprocess_runs:
            await in_process(ff, dsn, args.inprocess_runs, args.rounds)
        if not args.skip_throughput:
            await throughput(
                ff, raw, dsn, args.throughput_runs, args.rounds, args.concurrency, args.starters
            )
        after = await history(ff)
        print(f"\nruns of {three_steps.name} in the database: {before} before, {after} after")
    print(load_line())


async def park(ff: Forgeflow, waiting: int, finished: int) -> None:
    """Fill the tables as a long-lived system would: ``waiting`` runs on the latency queues,
    half asleep on timers a year ahead, half waiting on an open approval hook (woken at
    their deadline, 400 days ahead, like a hook without a timeout), each with its
    checkpoints; and ``finished`` completed runs with their three step rows. The raw
    baseline's tables get as many rows of each (see ``park_raw``). Each table is written by
    one set-based statement per kind of run, then vacuumed and analyzed, and a checkpoint
    (when the role may) writes the fill out."""
    began = time.perf_counter()
    fill: list[tuple[str, tuple[object, ...]]] = []
    if waiting:
        fill += [
            (PARKED_RUNS, (three_steps.name, three_steps.version, LOCAL, REMOTE, waiting)),
            (PARKED_HOOKS, (three_steps.name, waiting)),
            (PARKED_STEPS, (waiting,)),
        ]
    if finished:
        fill += [
            (FINISHED_RUNS, (three_steps.name, three_steps.version, LOCAL, REMOTE, finished)),
            (FINISHED_STEPS, (finished,)),
        ]
    for sql, params in fill:
        await ff.pool.execute(sql, *params)
    await park_raw(ff, waiting, finished)
    for table in FILLED:
        await ff.pool.execute(f"VACUUM ANALYZE {table}")
    # Write the fill's dirty pages out now rather than while latencies are measured.
    with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
        await ff.pool.execute("CHECKPOINT")
    print(
        f"parked {waiting} waiting runs (half on timers, half on hooks) and {finished} "
        f"finished runs in forgeflow's tables and the raw baseline's (vacuumed, analyzed, "
        f"checkpointed) in {time.perf_counter() - began:.1f} s"
    )


def parked(count: str) -> str:
    """The waiting runs park writes, ``count`` of them: i, the run id (uuid-like, spread
    over the primary key as real ids are), whether it waits on a hook, when it started."""
    return f"""(
        SELECT i, md5('parked' || i)::uuid::text AS id, (i / 2) % 2 = 1 AS hook,
               now() - make_interval(secs => i) AS at
        FROM generate_series(1, {count}::int) AS i
    ) AS p"""


def finished_runs(count: str) -> str:
    """The finished runs park writes, ``count`` of them, as ``parked`` (without hooks)."""
    return f"""(
        SELECT i, md5('finished' || i)::uuid::text AS id,
               now() - interval '1 day' - make_interval(secs => i) AS at
        FROM generate_series(1, {count}::int) AS i
    ) AS f"""


# Run i of the waiting ones sleeps when i / 2 is even and waits on its hook otherwise;
# i % 2 is its queue. $1, $2: the workflow; $3, $4: the two queues; the last: how many.
PARKED_RUNS = f"""
INSERT INTO forgeflow.workflow_runs
    (id, workflow, version, queue, status, input, runnable_at, timeout_seconds, deadline,
     executions, created_at, started_at, updated_at, wait)
SELECT id, $1, $2, CASE WHEN i % 2 = 0 THEN $3 ELSE $4 END, 'waiting', '1',
       CASE WHEN hook THEN at + interval '400 days' ELSE at + interval '365 days' END,
       86400 * 400, at + interval '400 days', 1, at, at, at,
       CASE WHEN hook
            THEN jsonb_build_object('kind', 'hook', 'step', 'approval', 'hook_id', 'hook-' || id)
            ELSE '{{"kind": "sleep", "step": "sleep"}}' END
FROM {parked("$5")}
"""
PARKED_HOOKS = f"""
INSERT INTO forgeflow.hooks
    (id, run_id, workflow, name, step, status, on_timeout, created_at, activated_at)
SELECT 'hook-' || id, id, $1, 'approval', 'hook:approval', 'active', 'reject', at, at
FROM {parked("$2")}
WHERE hook
"""
PARKED_STEPS = f"""
INSERT INTO forgeflow.workflow_steps
    (run_id, name, kind, status, result, attempts, started_at, completed_at, execution)
SELECT id, s.name, s.kind, 'completed',
       CASE s.kind WHEN 'step' THEN '2'::jsonb
                   WHEN 'hook' THEN to_jsonb('hook-' || id)
                   ELSE to_jsonb(at + interval '365 days') END,
       1, at, CASE s.kind WHEN 'sleep' THEN at + interval '365 days' ELSE at END, 1
FROM {parked("$1")}
CROSS JOIN LATERAL (VALUES ('one', 'step'),
                           (CASE WHEN hook THEN 'hook:approval' ELSE 'sleep' END,
                            CASE WHEN hook THEN 'hook' ELSE 'sleep' END)) AS s(name, kind)
"""
# Completed over the days before, one a second, alternating queues.
FINISHED_RUNS = f"""
INSERT INTO forgeflow.workflow_runs
    (id, workflow, version, queue, status, input, output, runnable_at, timeout_seconds,
     deadline, executions, created_at, started_at, completed_at, updated_at)
SELECT id, $1, $2, CASE WHEN i % 2 = 0 THEN $3 ELSE $4 END, 'completed', '1', '4', NULL,
       86400, at + interval '1 day', 1, at, at, at + interval '5 milliseconds',
       at + interval '5 milliseconds'
FROM {finished_runs("$5")}
"""
FINISHED_STEPS = f"""
INSERT INTO forgeflow.workflow_steps
    (run_id, name, kind, status, result, attempts, started_at, completed_at, execution)
SELECT id, s.name, 'step', 'completed', to_jsonb(1 + s.k), 1,
       at + make_interval(secs => s.k / 1000.0), at + make_interval(secs => s.k / 1000.0), 1
FROM {finished_runs("$1")}
CROSS JOIN (VALUES ('one', 1), ('two', 2), ('three', 3)) AS s(name, k)
"""
FILLED = (
    "forgeflow.workflow_runs",
    "forgeflow.workflow_steps",
    "forgeflow.hooks",
    "forgeflow_bench.runs",
    "forgeflow_bench.steps",
)


async def park_raw(ff: Forgeflow, waiting: int, finished: int) -> None:
    """The same rows in the raw baseline's tables, so that both sides probe indexes of one
    size: ``waiting`` runs that are not runnable (the baseline has no timers or hooks, so
    they stay out of its partial claim index, as they would in any such design) with two
    step rows each, and ``finished`` completed runs with three."""
    await ff.pool.execute(
        """
        INSERT INTO forgeflow_bench.runs (id, queue, status, input, output, runnable, created_at)
        SELECT md5(kind || i)::uuid::text, CASE WHEN i % 2 = 0 THEN $1 ELSE $2 END, kind,
               '1', CASE WHEN kind = 'completed' THEN '4'::jsonb END, false,
               now() - make_interval(secs => i)
        FROM (VALUES ('waiting', $3::int), ('completed', $4::int)) AS k(kind, n)
        CROSS JOIN LATERAL generate_series(1, k.n) AS i
        """,
        LOCAL,
        REMOTE,
        waiting,
        finished,
    )
    await ff.pool.execute(
        """
        INSERT INTO forgeflow_bench.steps (run_id, name, result, completed_at)
        SELECT md5(kind || i)::uuid::text, s.name, to_jsonb(1 + s.k),
               now() - make_interval(secs => i)
        FROM (VALUES ('waiting', $1::int, 2), ('completed', $2::int, 3)) AS k(kind, n, steps)
        CROSS JOIN LATERAL generate_series(1, k.n) AS i
        CROSS JOIN (VALUES ('one', 1), ('two', 2), ('three', 3)) AS s(name, k)
        WHERE s.k <= k.steps
        """,
        waiting,
        finished,
    )


async def history(ff: Forgeflow) -> int:
    """How many runs of the benchmark's workflow the database holds (claims may scan them)."""
    count: int = await ff.pool.fetchval(
        "SELECT count(*) FROM forgeflow.workflow_runs WHERE workflow = $1", three_steps.name
    )
    return count


if __name__ == "__main__":
    asyncio.run(main())
