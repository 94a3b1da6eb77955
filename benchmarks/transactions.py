"""A transactional step against the same statements in a bare transaction.

Each step moves money: an UPDATE of an account and an INSERT of a ledger entry, in one
transaction. The bare baseline runs BEGIN, those two statements and COMMIT on one
asyncpg connection; forgeflow runs them as ``ctx.transaction`` steps of one workflow,
whose transactions also write the step's checkpoint (with its lease check) before
COMMIT, in the same message as COMMIT: four round trips on both sides. Both run in this
one process, alternating round by round; the best and the median of the rounds are
printed, and this process's CPU time per step (the server's is not counted).

    python benchmarks/transactions.py [--dsn DSN] [--steps 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

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


async def bare(dsn: str, n: int) -> tuple[float, float]:
    """Seconds (wall, this process's CPU) for ``n`` bare transactions of the same
    statements on one connection."""
    conn = await asyncpg.connect(dsn)
    try:
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(n):
            async with conn.transaction():
                await move(conn, "bare", i)
        return time.perf_counter() - start, time.process_time() - cpu
    finally:
        await conn.close()


async def engine(ff: Forgeflow, n: int) -> tuple[float, float]:
    """Seconds (wall, this process's CPU) for ``ff.run`` of an ``n``-step transactional
    workflow in this process."""
    start, cpu = time.perf_counter(), time.process_time()
    await ff.run(many_transactions, n)
    return time.perf_counter() - start, time.process_time() - cpu


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
    bares: list[tuple[float, float]] = []
    engines: list[tuple[float, float]] = []
    async with Forgeflow.connect(dsn, registry=registry) as ff:
        await ff.pool.execute(SCHEMA)
        await engine(ff, 50)  # warm up pools and prepared statements
        await bare(dsn, 50)
        for _ in range(args.rounds):
            bares.append(await bare(dsn, args.steps))
            engines.append(await engine(ff, args.steps))
    per_step = 1000 / args.steps

    def figures(samples: list[tuple[float, float]]) -> tuple[float, float, float]:
        walls = [wall * per_step for wall, _ in samples]
        cpu = statistics.median(cpu for _, cpu in samples) * per_step
        return min(walls), statistics.median(walls), cpu

    b_best, b_median, b_cpu = figures(bares)
    e_best, e_median, e_cpu = figures(engines)
    print(f"\n{args.steps} steps (UPDATE + INSERT each), {args.rounds} rounds")
    print(f"{'':30}{'best ms/step':>14}{'median ms/step':>16}{'client CPU ms/step':>20}")
    print(f"{'bare transaction':30}{b_best:14.3f}{b_median:16.3f}{b_cpu:20.3f}")
    print(f"{'forgeflow transactional step':30}{e_best:14.3f}{e_median:16.3f}{e_cpu:20.3f}")
    print(
        f"ratio: best {e_best / b_best:.2f}x, median {e_median / b_median:.2f}x"
        "   (target: at most 1.2x)"
    )
    print(load_line())


if __name__ == "__main__":
    asyncio.run(main())
