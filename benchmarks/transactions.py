"""A transactional step against the same statements in a bare transaction.

Each step moves money: an UPDATE of an account and an INSERT of a ledger entry, in one
transaction. The bare baseline runs BEGIN, those two statements and COMMIT on one
asyncpg connection; forgeflow runs them as ``ctx.transaction`` steps of one workflow,
whose transactions also write the step's checkpoint (with its lease check) before
COMMIT, in the same message as COMMIT: four round trips on both sides. Both run in this
one process in short batches, alternating batch by batch, so that both see the same
load; the best and the median batch are printed, with the CPU time per step of this
process and of the database's server processes (read from /proc when the server runs on
this machine). Each forgeflow batch is one run, so it also pays for starting and
finishing that run.

    python benchmarks/transactions.py [--dsn DSN] [--steps 200] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable

import asyncpg
from _common import describe_server, dsn_argument, load_line, server_dsn
from _worker_proc import quiet_logs

from forgeflow import Forgeflow, Registry, WorkflowContext, workflow

registry = Registry()

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS forgeflow_bench;
DROP TABLE IF EXISTS forgeflow_bench.tx_entries, forgeflow_bench.tx_accounts;
CREATE TABLE forgeflow_bench.tx_accounts (name text PRIMARY KEY, cents bigint NOT NULL);
CREATE TABLE forgeflow_bench.tx_entries (
    id bigserial PRIMARY KEY, account text NOT NULL, cents bigint NOT NULL
);
INSERT INTO forgeflow_bench.tx_accounts VALUES ('bare', 0), ('forgeflow', 0);
"""
UPDATE = "UPDATE forgeflow_bench.tx_accounts SET cents = cents + $2 WHERE name = $1"
INSERT = "INSERT INTO forgeflow_bench.tx_entries (account, cents) VALUES ($1, $2) RETURNING id"
# The server processes of this database's connections: this script's own and the pool's.
BACKENDS = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"


async def move(conn: asyncpg.Connection, account: str, cents: int) -> int:
    """The application's statements: the same in both columns."""
    await conn.execute(UPDATE, account, cents)
    entry: int = await conn.fetchval(INSERT, account, cents)
    return entry


@workflow(version=1, name="bench_transactions", registry=registry)
async def many_transactions(ctx: WorkflowContext, n: int) -> int:
    """``n`` transactional steps in a row."""
    last = 0
    for i in range(n):
        last = await ctx.transaction("move", move, "forgeflow", i)
    return last


class Sample:
    """One timed batch: wall seconds, this process's CPU seconds, the server's."""

    def __init__(self, wall: float, cpu: float, server: float | None) -> None:
        self.wall, self.cpu, self.server = wall, cpu, server


def backend_seconds(pids: list[int]) -> float | None:
    """CPU seconds used so far by these server processes (None if the server does not
    run on this machine, or its processes cannot be read)."""
    total = 0
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    except OSError:
        return None
    return total / os.sysconf("SC_CLK_TCK")


async def timed(pids: list[int], batch: Awaitable[None]) -> Sample:
    """Run ``batch``, measuring wall time, this process's CPU and the backends'."""
    server = backend_seconds(pids)
    start, cpu = time.perf_counter(), time.process_time()
    await batch
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    after = backend_seconds(pids)
    return Sample(wall, cpu, None if server is None or after is None else after - server)


async def bare(conn: asyncpg.Connection, n: int) -> None:
    """``n`` bare transactions of the same statements on one connection."""
    for i in range(n):
        async with conn.transaction():
            await move(conn, "bare", i)


async def engine(ff: Forgeflow, n: int) -> None:
    """``ff.run`` of an ``n``-step transactional workflow in this process."""
    await ff.run(many_transactions, n)


def report(name: str, samples: list[Sample], steps: int) -> tuple[float, float]:
    """Print one line of the table; (best, median) wall ms per step."""
    per_step = 1000 / steps
    walls = [s.wall * per_step for s in samples]
    cpu = sum(s.cpu for s in samples) * per_step / len(samples)
    known = [s.server for s in samples if s.server is not None]
    server = f"{sum(known) * per_step / len(known):10.3f}" if known else f"{'n/a':>10}"
    best, median = min(walls), statistics.median(walls)
    print(f"{name:30}{best:8.3f}{median:9.3f}{cpu:10.3f}{server}")
    return best, median


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dsn_argument(parser)
    parser.add_argument("--steps", type=int, default=200, help="steps per timed batch")
    parser.add_argument("--rounds", type=int, default=20, help="batches of each kind")
    args = parser.parse_args()
    quiet_logs()
    dsn = await server_dsn(args.dsn)
    print(f"server: {await describe_server(dsn)}")
    print(load_line())
    bares: list[Sample] = []
    engines: list[Sample] = []
    conn = await asyncpg.connect(dsn)
    try:
        async with Forgeflow.connect(dsn, registry=registry) as ff:
            await ff.pool.execute(SCHEMA)
            await engine(ff, 50)  # warm up pools and prepared statements
            await bare(conn, 50)
            pids = [r["pid"] for r in await conn.fetch(BACKENDS)]
            for _ in range(args.rounds):
                bares.append(await timed(pids, bare(conn, args.steps)))
                engines.append(await timed(pids, engine(ff, args.steps)))
    finally:
        await conn.close()
    print(f"\n{args.rounds} batches of {args.steps} steps each (UPDATE + INSERT per step)")
    print(f"{'ms per step':30}{'best':>8}{'median':>9}{'our CPU':>10}{'server':>10}")
    b_best, b_median = report("bare transaction", bares, args.steps)
    e_best, e_median = report("forgeflow transactional step", engines, args.steps)
    print(
        f"ratio: best {e_best / b_best:.2f}x, median {e_median / b_median:.2f}x"
        "   (target: at most 1.2x)"
    )
    print(load_line())


if __name__ == "__main__":
    asyncio.run(main())
