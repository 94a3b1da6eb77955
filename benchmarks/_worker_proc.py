"""The benchmarks' 3-step workflow, its raw asyncpg twin, and a worker process for either.

    python benchmarks/_worker_proc.py --dsn DSN --queue Q [--mode forgeflow|raw]
                                      [--concurrency 10]

The process prints "ready" on stdout once it listens for work, then executes runs of
queue Q until SIGTERM or SIGINT. ``--mode forgeflow`` runs ``ff.worker``; ``--mode raw``
runs the baseline: the same round trips a forgeflow run costs (claim with SKIP LOCKED,
read the checkpoints, one INSERT commit per step, one UPDATE commit with NOTIFY to
finish), written directly with asyncpg, with none of the engine around them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog

from forgeflow import Forgeflow, Registry, WorkflowContext, workflow

registry = Registry()


async def add_one(n: int) -> int:
    return n + 1


@workflow(version=1, name="bench_three_steps", registry=registry)
async def three_steps(ctx: WorkflowContext, n: int) -> int:
    """The workflow the latency and throughput figures are about: three trivial steps."""
    a = await ctx.step("one", add_one, n)
    b = await ctx.step("two", add_one, a)
    return await ctx.step("three", add_one, b)


def quiet_logs() -> None:
    """Keep structlog's console output to warnings so that printing is not measured."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


# -- the raw asyncpg baseline -----------------------------------------------------------

RAW_WAKEUP = "forgeflow_bench_wakeup"
RAW_CHANGED = "forgeflow_bench_changed"

RAW_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS forgeflow_bench;
CREATE TABLE IF NOT EXISTS forgeflow_bench.runs (
    id         text PRIMARY KEY,
    queue      text NOT NULL,
    status     text NOT NULL DEFAULT 'created',
    input      jsonb NOT NULL,
    output     jsonb,
    owner      text,
    runnable   boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS runs_claim_idx ON forgeflow_bench.runs (queue, created_at)
    WHERE runnable;
CREATE TABLE IF NOT EXISTS forgeflow_bench.steps (
    run_id       text NOT NULL,
    name         text NOT NULL,
    result       jsonb,
    completed_at timestamptz NOT NULL,
    PRIMARY KEY (run_id, name)
);
"""

RAW_START = """
INSERT INTO forgeflow_bench.runs (id, queue, input) VALUES ($1, $2, $3::jsonb)
RETURNING pg_notify('forgeflow_bench_wakeup', queue)
"""

RAW_CLAIM = """
WITH c AS (
    SELECT id FROM forgeflow_bench.runs WHERE runnable AND queue = $2
    ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED
)
UPDATE forgeflow_bench.runs r SET status = 'running', owner = $1, runnable = false
FROM c WHERE r.id = c.id
RETURNING r.id, r.input, pg_notify('forgeflow_bench_changed', r.id)
"""

RAW_LOAD = "SELECT name, result FROM forgeflow_bench.steps WHERE run_id = $1"

RAW_STEP = """
INSERT INTO forgeflow_bench.steps (run_id, name, result, completed_at)
VALUES ($1, $2, $3::jsonb, clock_timestamp())
"""

RAW_FINISH = """
UPDATE forgeflow_bench.runs SET status = 'completed', output = $2::jsonb, owner = NULL
WHERE id = $1
RETURNING pg_notify('forgeflow_bench_changed', id)
"""

RAW_STATUS = "SELECT status, output FROM forgeflow_bench.runs WHERE id = $1"


async def prepare_raw_schema(dsn: str) -> None:
    """Create (or empty) the baseline's tables."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(RAW_SCHEMA)
        await conn.execute("TRUNCATE forgeflow_bench.runs, forgeflow_bench.steps")
    finally:
        await conn.close()


async def raw_execute(conn: Any, run_id: str, input_json: str) -> None:
    """One run of the baseline on one connection: read checkpoints, 3 steps, finish."""
    await conn.fetch(RAW_LOAD, run_id)
    value = int(input_json)
    for name in ("one", "two", "three"):
        value = await add_one(value)
        await conn.execute(RAW_STEP, run_id, name, str(value))
    await conn.fetchval(RAW_FINISH, run_id, str(value))


class RawWorker:
    """The baseline's worker: claim loop, bounded concurrency, LISTEN for wake-ups."""

    def __init__(self, dsn: str, queue: str, concurrency: int) -> None:
        self.dsn = dsn
        self.queue = queue
        self.concurrency = concurrency
        self.worker_id = f"raw:{os.getpid()}:{id(self):x}"
        self.wake = asyncio.Event()
        self.active: set[asyncio.Task[None]] = set()

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        if payload == self.queue:
            self.wake.set()

    async def run(self, ready: Callable[[], None]) -> None:
        """Execute runs of the queue until cancelled."""
        pool = await asyncpg.create_pool(self.dsn, min_size=2, max_size=self.concurrency + 1)
        listener = await asyncpg.connect(self.dsn)
        await listener.add_listener(RAW_WAKEUP, self._notified)
        try:
            ready()
            await self._loop(pool)
        finally:
            for task in self.active:
                task.cancel()
            await asyncio.gather(*self.active, return_exceptions=True)
            await listener.close()
            await pool.close()

    async def _loop(self, pool: asyncpg.Pool) -> None:
        while True:
            self.wake.clear()
            free = self.concurrency - len(self.active)
            rows: list[Any] = []
            if free > 0:
                rows = await pool.fetch(RAW_CLAIM, self.worker_id, self.queue, free)
                for row in rows:
                    task = asyncio.create_task(self._execute(pool, row["id"], row["input"]))
                    self.active.add(task)
                    task.add_done_callback(self._done)
                if rows and len(rows) == free:
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 1.0)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.active.discard(task)
        self.wake.set()

    async def _execute(self, pool: asyncpg.Pool, run_id: str, input_json: str) -> None:
        async with pool.acquire() as conn:
            await raw_execute(conn, run_id, input_json)


# -- the process --------------------------------------------------------------------------


async def serve(dsn: str, mode: str, queue: str, concurrency: int) -> None:
    """Run one worker of ``mode`` until SIGTERM/SIGINT, printing "ready" when it listens."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def ready() -> None:
        print("ready", flush=True)

    if mode == "raw":
        task = asyncio.create_task(RawWorker(dsn, queue, concurrency).run(ready))
        await stop.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return
    async with (
        Forgeflow.connect(dsn, registry=registry) as ff,
        ff.worker(concurrency=concurrency, queues=[queue], grace="5s"),
    ):
        ready()
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--mode", choices=("forgeflow", "raw"), default="forgeflow")
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    quiet_logs()
    asyncio.run(serve(args.dsn, args.mode, args.queue, args.concurrency))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
