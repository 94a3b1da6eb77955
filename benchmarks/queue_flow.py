"""Start-to-complete latency and throughput on limited queues, beside an unlimited one.

Everything runs in real worker processes (``_worker_proc.py``, the 3-step workflow).

Latency: each queue first gets a backlog of claimable runs of the same workflow spread
over 1,000 keys (100,000 by default), which its worker process (concurrency 10) keeps
executing. Runs are then started one at a time at priority 1 (the backlog is at 0), with
a key among the same 1,000, and timed from ``ff.start`` until ``ff.result`` returns: a
slot coming free, the claim among the backlog, three steps. The queues take turns block
by block.

- ``no limits``: ``Queue("bench_flow_plain")``
- ``limited``: ``Queue(concurrency=50, key_concurrency=1, rate="1000000/min")``

Throughput: 4 worker processes with concurrency 20 each (80 slots, so that a limit of 50
binds) execute N runs (1,000 by default; keys over 1,000) started by a few concurrent
starters, timed from the first start until every run is completed. The queues take
turns round by round, each with its own 4 processes started before its round:

- ``no limits``, ``concurrency=50``, ``concurrency=50, key_concurrency=1, rate=...``

    python benchmarks/queue_flow.py [--dsn DSN] [--backlog 100000] [--runs 200]
                                    [--throughput-runs 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import asyncpg
import queues
from _common import describe_server, dsn_argument, load_line, server_dsn, summary_ms
from _worker_proc import quiet_logs, registry, three_steps
from latency import COUNT_ENGINE, drain, worker_processes

from forgeflow import Forgeflow, Queue
from forgeflow._store import Store

KEYS = queues.KEYS
PLAIN = Queue("bench_flow_plain")
CONCURRENCY = Queue("bench_flow_conc", concurrency=50)
ALL = Queue("bench_flow_all", concurrency=50, key_concurrency=1, rate="1000000/min")
LATENCY_QUEUES = {"no limits": PLAIN, "limited (all three)": ALL}
THROUGHPUT_QUEUES = {
    "no limits": PLAIN,
    "concurrency=50": CONCURRENCY,
    "concurrency=50, key_concurrency=1, rate=1000000/min": ALL,
}
PROCESSES, WORKER_CONCURRENCY = 4, 20


async def prepare(dsn: str, backlog: int) -> None:
    """Empty the bench queues, declare their limits, give the latency queues a backlog."""
    store = await Store.open(dsn, min_size=1, max_size=1, migrate=False)
    try:
        await fill(store, backlog)
    finally:
        await store.close()


async def fill(store: Store, backlog: int) -> None:
    """``prepare`` on an open store."""
    await queues.fill(
        store,
        backlog,
        tuple(THROUGHPUT_QUEUES.values()),
        tuple(LATENCY_QUEUES.values()),
        (three_steps.name, three_steps.version),
        "1",
    )


async def latency(ff: Forgeflow, dsn: str, runs: int) -> dict[str, list[float]]:
    """Start-to-result times per latency queue, one idle worker process each."""
    counter = iter(range(10**9))

    async def one(queue: Queue) -> float:
        key = f"key-{next(counter) % KEYS}"
        began = time.perf_counter()
        run_id = await ff.start(three_steps, 1, queue=queue.name, priority=1, key=key)
        out = await ff.result(run_id, timeout=60)
        elapsed = time.perf_counter() - began
        assert out == 4, out
        return elapsed

    samples: dict[str, list[float]] = {label: [] for label in LATENCY_QUEUES}
    async with AsyncExitStack() as stack:
        for queue in LATENCY_QUEUES.values():
            await stack.enter_async_context(worker_processes(dsn, "forgeflow", queue.name, 1, 10))
        for queue in LATENCY_QUEUES.values():  # connections, prepared statements, caches
            for _ in range(20):
                await one(queue)
        block = 20
        for _ in range(max(1, runs // block)):
            for label, queue in LATENCY_QUEUES.items():
                for _ in range(block):
                    samples[label].append(await one(queue))
    return samples


async def throughput(
    ff: Forgeflow, dsn: str, n: int, rounds: int, starters: int
) -> dict[str, list[float]]:
    """Runs per second per throughput queue, 4 worker processes each, round by round."""

    def starter(queue: Queue) -> Callable[[int], Awaitable[str]]:
        async def start(i: int) -> str:
            return await ff.start(three_steps, i, queue=queue.name, key=f"key-{i % KEYS}")

        return start

    rates: dict[str, list[float]] = {label: [] for label in THROUGHPUT_QUEUES}
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(rounds):
            for label, queue in THROUGHPUT_QUEUES.items():
                async with worker_processes(
                    dsn, "forgeflow", queue.name, PROCESSES, WORKER_CONCURRENCY
                ):
                    await drain(conn, COUNT_ENGINE, starter(queue), 100, starters)  # warm up
                    spent = await drain(conn, COUNT_ENGINE, starter(queue), n, starters)
                rates[label].append(n / spent)
                print(f"  {label}: {n / spent:.0f} runs/s ({load_line()})", flush=True)
    finally:
        await conn.close()
    return rates


def print_latency(samples: dict[str, list[float]]) -> None:
    """The latency table, each queue beside the unlimited one."""
    base = summary_ms(samples["no limits"])
    print("| queue | p50 / p95 / mean ms | p50 minus no limits |")
    print("|---|---:|---:|")
    for label, values in samples.items():
        p50, p95, mean = summary_ms(values)
        print(f"| {label} | {p50:.2f} / {p95:.2f} / {mean:.2f} | {p50 - base[0]:+.2f} |")


def print_throughput(rates: dict[str, list[float]]) -> None:
    """The throughput table, each queue as a share of the unlimited one (medians)."""
    base = statistics.median(rates["no limits"])
    print("| queue | best / median runs/s | median / no limits |")
    print("|---|---:|---:|")
    for label, values in rates.items():
        median = statistics.median(values)
        print(f"| {label} | {max(values):.0f} / {median:.0f} | {median / base:.0%} |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dsn_argument(parser)
    parser.add_argument("--backlog", type=int, default=100_000, help="claimable runs per queue")
    parser.add_argument("--runs", type=int, default=200, help="latency samples per queue")
    parser.add_argument("--throughput-runs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds per queue")
    parser.add_argument("--starters", type=int, default=4, help="concurrent starting tasks")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    quiet_logs()
    dsn = await server_dsn(args.dsn)
    print(f"server: {await describe_server(dsn)}")
    backlog = 0 if args.skip_latency else args.backlog
    async with Forgeflow.connect(dsn, registry=registry) as ff:
        if not args.skip_latency:
            print(f"backlog of {backlog} claimable runs over {KEYS} keys per latency queue ...")
            await prepare(dsn, backlog)
            print(load_line())
            samples = await latency(ff, dsn, args.runs)
            print(load_line())
            print(f"\nstart -> result of one 3-step run among {backlog} claimable runs")
            print_latency(samples)
        await prepare(dsn, 0)  # what is left of the backlog would be taken first
        if not args.skip_throughput:
            print(f"\nthroughput: {args.throughput_runs} runs, {PROCESSES} worker processes")
            print(f"with concurrency {WORKER_CONCURRENCY} each, {args.rounds} round(s)")
            rates = await throughput(ff, dsn, args.throughput_runs, args.rounds, args.starters)
            print_throughput(rates)
    print(load_line())


if __name__ == "__main__":
    asyncio.run(main())
