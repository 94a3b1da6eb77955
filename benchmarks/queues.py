"""Claim latency on limited queues beside the unlimited claim, on a large backlog.

Five queues each get the same backlog of claimable runs spread over 1,000 keys (100,000
runs in all by default): one without limits, taken by the plain claim (``claim_runs``),
and four with limits, taken by the limited claim (``claim_limited_runs``: one statement
that also counts what the limits need and bumps the queue's row):

- ``concurrency``: ``Queue(concurrency=50)``
- ``key``: ``Queue(key_concurrency=1)``
- ``rate``: ``Queue(rate="1000000/min")`` (never reached: the window is counted each time)
- ``all three``: ``concurrency=50, key_concurrency=1, rate="1000000/min"``

Each sample is one worker's claim of one run (``Store.claim_runs`` or
``Store.claim_limited_runs``, as a worker calls them), timed with ``time.perf_counter``;
the claimed run is then ended with one untimed UPDATE, so that every queue stays in a
steady state (a few runs executing, the backlog claimable). Samples take turns across the
queues so that the machine's other load falls on all alike.

With ``--generic-plans`` the script's connections run with
``plan_cache_mode=force_generic_plan``: PostgreSQL otherwise plans these claims anew at
each execution (it keeps finding custom plans cheaper), and planning is most of what the
limited claim costs beyond the plain one.

    python benchmarks/queues.py [--dsn DSN] [--runs 20000] [--samples 500] [--generic-plans]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime

import asyncpg
from _common import describe_server, dsn_argument, load_line, server_dsn, summary_ms
from _worker_proc import quiet_logs

from forgeflow import Queue
from forgeflow._store import Store

WORKFLOW = ("bench_queue_job", 1)
QUEUES = {
    "no limits": Queue("bench_q_plain"),
    "concurrency=50": Queue("bench_q_conc", concurrency=50),
    "key_concurrency=1": Queue("bench_q_key", key_concurrency=1),
    "rate=1000000/min": Queue("bench_q_rate", rate="1000000/min"),
    "all three": Queue("bench_q_all", concurrency=50, key_concurrency=1, rate="1000000/min"),
}
KEYS = 1000
END = """
UPDATE forgeflow.workflow_runs
SET status = 'completed', lease_owner = NULL, lease_expires_at = NULL, runnable_at = NULL,
    completed_at = now()
WHERE id = $1
"""


async def fill(store: Store, runs: int) -> None:
    """Empty the bench queues, declare them, and give each ``runs`` claimable runs."""
    names = [q.name for q in QUEUES.values()]
    await store.pool.execute(
        "DELETE FROM forgeflow.workflow_runs WHERE queue = ANY($1::text[])", names
    )
    now = datetime.now(UTC)
    for queue in QUEUES.values():
        await store.declare_queue(
            queue.name,
            queue.concurrency,
            queue.key_concurrency,
            queue.rate_limit,
            queue.rate_period,
        )
        for start in range(0, runs, 5000):
            batch = [
                (str(uuid.uuid4()), "{}", None, now, 0, f"key-{i % KEYS}")
                for i in range(start, min(start + 5000, runs))
            ]
            await store.insert_runs(WORKFLOW[0], WORKFLOW[1], queue.name, now, 3600.0, batch)
    await store.pool.execute("ANALYZE forgeflow.workflow_runs")


async def sample(store: Store, queue: Queue) -> float:
    """One claim of one run on ``queue``; its duration in seconds."""
    now = datetime.now(UTC)
    begin = time.perf_counter()
    if queue.limited:
        rows = await store.claim_limited_runs(now, [queue.name], [WORKFLOW], 1, "bench", 30.0)
    else:
        rows = await store.claim_runs(now, [queue.name], [WORKFLOW], 1, "bench", 30.0)
    elapsed = time.perf_counter() - begin
    assert len(rows) == 1, f"{queue.name}: claimed {len(rows)} runs"
    await store.pool.execute(END, rows[0]["id"])
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dsn_argument(parser)
    parser.add_argument("--runs", type=int, default=20000, help="claimable runs per queue")
    parser.add_argument("--samples", type=int, default=500, help="claims timed per queue")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument(
        "--generic-plans", action="store_true", help="plan_cache_mode=force_generic_plan"
    )
    args = parser.parse_args()
    quiet_logs()
    dsn = await server_dsn(args.dsn)
    print(await describe_server(dsn))
    await (await Store.open(dsn, min_size=1, max_size=1)).close()  # migrate
    settings = {"plan_cache_mode": "force_generic_plan"} if args.generic_plans else {}
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2, server_settings=settings)
    store = Store(pool, dsn)
    print(f"plan_cache_mode: {'force_generic_plan' if args.generic_plans else 'auto'}")
    try:
        print(f"filling {len(QUEUES)} queues with {args.runs} runs each over {KEYS} keys ...")
        await fill(store, args.runs)
        print(load_line())
        timings: dict[str, list[float]] = {label: [] for label in QUEUES}
        for round_ in range(args.warmup + args.samples):
            for label, queue in QUEUES.items():
                spent = await sample(store, queue)
                if round_ >= args.warmup:
                    timings[label].append(spent)
        print(load_line())
    finally:
        await store.close()
    base = summary_ms(timings["no limits"])
    print(f"\nclaim of one run, {args.samples} samples per queue, milliseconds")
    print("| queue | p50 / p95 / mean | p50 minus no limits |")
    print("|---|---:|---:|")
    for label, values in timings.items():
        p50, p95, mean = summary_ms(values)
        print(f"| {label} | {p50:.3f} / {p95:.3f} / {mean:.3f} | {p50 - base[0]:+.3f} |")


if __name__ == "__main__":
    asyncio.run(main())
