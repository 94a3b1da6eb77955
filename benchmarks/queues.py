"""Claim latency on limited queues beside the unlimited claim, on a large backlog.

Five queues each get the same backlog of claimable runs spread over 1,000 keys (100,000
runs in all by default): one without limits, taken by the plain claim (``claim_runs``),
and four with limits, taken by the limited claim (``claim_limited_runs``: one statement
that also counts what the limits need and bumps the queue's row):

- ``concurrency``: ``Queue(concurrency=50)``
- ``key``: ``Queue(key_concurrency=1)``
- ``rate``: ``Queue(rate="1000000/min")`` (never reached: its window is bounded at each claim)
- ``all three``: ``concurrency=50, key_concurrency=1, rate="1000000/min"``

Each sample is one worker's claim of one run (``Store.claim_runs`` or
``Store.claim_limited_runs``, as a worker calls them), timed with ``time.perf_counter``;
the claimed run is then ended with one untimed UPDATE, so that every queue stays in a
steady state (a few runs executing, the backlog claimable). Samples take turns across the
queues so that the machine's other load falls on all alike.

PostgreSQL plans a prepared statement anew at each execution for as long as its custom
plans look cheaper than its generic one; planning the limited claim costs more than
running it. The claim reads its list of queues through a sub-select so that its generic
plan is chosen and reused. Beside it, each limited queue is also claimed with the
statement as it was before (the list compared directly, so each claim is planned anew):
the rows marked "planned each time". The table ends with how often PostgreSQL used a
generic or a custom plan for each (``pg_prepared_statements``).

    python benchmarks/queues.py [--dsn DSN] [--runs 20000] [--samples 500]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from _common import describe_server, dsn_argument, load_line, server_dsn, summary_ms
from _worker_proc import quiet_logs

from forgeflow import Queue
from forgeflow._sql import QUERIES
from forgeflow._store import Store

WORKFLOW = ("bench_queue_job", 1)
QUEUES = {
    "no limits": Queue("bench_q_plain"),
    "concurrency=50": Queue("bench_q_conc", concurrency=50),
    "key_concurrency=1": Queue("bench_q_key", key_concurrency=1),
    "rate=1000000/min": Queue("bench_q_rate", rate="1000000/min"),
    "all three": Queue("bench_q_all", concurrency=50, key_concurrency=1, rate="1000000/min"),
}
REPLANNED = " (planned each time)"
# The limited claim as it was: the list of queues compared directly.
CLAIM_REPLANNED = QUERIES["claim_limited_runs"].replace(
    "ANY(ARRAY(SELECT unnest($2::text[])))", "ANY($2::text[])"
)
PLAN_COUNTS = """
SELECT generic_plans, custom_plans FROM pg_prepared_statements
WHERE statement = $1
"""
KEYS = 1000
END = """
UPDATE forgeflow.workflow_runs
SET status = 'completed', lease_owner = NULL, lease_expires_at = NULL, runnable_at = NULL,
    completed_at = now()
WHERE id = $1
"""


async def fill(
    store: Store,
    runs: int,
    queues: Sequence[Queue] = tuple(QUEUES.values()),
    filled: Sequence[Queue] | None = None,
    workflow: tuple[str, int] = WORKFLOW,
    input_json: str = "{}",
) -> None:
    """Empty ``queues``, declare them, and give each of ``filled`` (default: all of them)
    ``runs`` claimable runs of ``workflow`` over ``KEYS`` keys."""
    await store.pool.execute(
        "DELETE FROM forgeflow.workflow_runs WHERE queue = ANY($1::text[])",
        [q.name for q in queues],
    )
    now = datetime.now(UTC)
    for queue in queues:
        await store.declare_queue(
            queue.name,
            queue.concurrency,
            queue.key_concurrency,
            queue.rate_limit,
            queue.rate_period,
        )
    for queue in queues if filled is None else filled:
        for start in range(0, runs, 5000):
            batch = [
                (str(uuid.uuid4()), input_json, None, now, 0, f"key-{i % KEYS}")
                for i in range(start, min(start + 5000, runs))
            ]
            await store.insert_runs(*workflow, queue.name, now, 3600.0, batch)
    await store.pool.execute("ANALYZE forgeflow.workflow_runs")


async def sample(store: Store, queue: Queue, replanned: bool = False) -> float:
    """One claim of one run on ``queue``; its duration in seconds. ``replanned``: the
    limited claim sent as a single statement with PostgreSQL's default plan choice."""
    now = datetime.now(UTC)
    names = [f"{n}:{v}" for n, v in [WORKFLOW]]
    begin = time.perf_counter()
    if replanned:
        found = await store.pool.fetch(CLAIM_REPLANNED, now, [queue.name], names, 1, "bench", 30.0)
        rows = [r for r in found if r["id"] is not None]
    elif queue.limited:
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
    args = parser.parse_args()
    quiet_logs()
    dsn = await server_dsn(args.dsn)
    print(await describe_server(dsn))
    await (await Store.open(dsn, min_size=1, max_size=1)).close()  # migrate
    store = await Store.open(dsn, min_size=1, max_size=1, migrate=False)
    try:
        print(f"filling {len(QUEUES)} queues with {args.runs} runs each over {KEYS} keys ...")
        await fill(store, args.runs)
        print(load_line())
        variants = [(label, queue, False) for label, queue in QUEUES.items()]
        variants += [(label + REPLANNED, q, True) for label, q in QUEUES.items() if q.limited]
        timings: dict[str, list[float]] = {label: [] for label, _, _ in variants}
        for round_ in range(args.warmup + args.samples):
            for label, queue, replanned in variants:
                spent = await sample(store, queue, replanned)
                if round_ >= args.warmup:
                    timings[label].append(spent)
        print(load_line())
        async with store.pool.acquire() as conn:
            plans = {
                label: await conn.fetchrow(PLAN_COUNTS, text)
                for label, text in (
                    ("limited claim", QUERIES["claim_limited_runs"]),
                    ("limited claim, planned each time", CLAIM_REPLANNED),
                    ("claim without limits", QUERIES["claim_runs"]),
                )
            }
    finally:
        await store.close()
    base = summary_ms(timings["no limits"])
    print(f"\nclaim of one run, {args.samples} samples per queue, milliseconds")
    print("| queue | p50 / p95 / mean | p50 minus no limits |")
    print("|---|---:|---:|")
    for label, values in timings.items():
        p50, p95, mean = summary_ms(values)
        print(f"| {label} | {p50:.3f} / {p95:.3f} / {mean:.3f} | {p50 - base[0]:+.3f} |")
    print("\nplans used (one connection) (generic / custom)")
    for label, row in plans.items():
        counts = "not prepared here" if row is None else f"{row[0]} / {row[1]}"
        print(f"- {label}: {counts}")


if __name__ == "__main__":
    asyncio.run(main())
