"""How long `forgeflow check` takes over many runs in flight, beside reading their rows.

N runs of a workflow with five steps and a resume hook are written straight into
forgeflow's tables (as if a worker had executed each up to its hook: status waiting, six
checkpoints), then checked with ``await ff.check(registry)`` on the same code, which
replays every run in a sandbox. The floor is raw asyncpg reading the same runs and
checkpoints (the two statements the check sends per batch). Wall time is
``time.perf_counter``; CPU is this process's ``time.process_time`` over the same span.

    python benchmarks/check.py [--dsn DSN] [--runs 10000] [--rounds 3]

The benchmark's runs (workflow ``bench_check``) are deleted at each start and left in
the tables afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg
from _common import describe_server, dsn_argument, load_line, server_dsn
from _worker_proc import quiet_logs
from pydantic import BaseModel

from forgeflow import Forgeflow, Registry, WorkflowContext, workflow
from forgeflow._sql import QUERIES as Q

registry = Registry()
STEPS = ("validate", "price", "reserve", "invoice", "notify")


class Priced(BaseModel):
    order: int
    cents: int


def price(order: int) -> Priced:
    return Priced(order=order, cents=100 * order)


@workflow(version=1, name="bench_check", registry=registry)
async def bench_check(ctx: WorkflowContext, order: int) -> int:
    for name in STEPS:
        await ctx.step(name, price, order)
    await ctx.wait_for_hook("approval")
    return order


SEED = """
WITH runs AS (
    INSERT INTO forgeflow.workflow_runs
        (id, workflow, version, status, input, wait, timeout_seconds, created_at, started_at)
    SELECT 'bench-check-' || lpad(n::text, 8, '0'), 'bench_check', 1, 'waiting', n::text::jsonb,
           '{"kind": "hook", "step": "approval"}'::jsonb, 86400, now(), now()
    FROM generate_series(1, $1) n
    RETURNING id, input
)
INSERT INTO forgeflow.workflow_steps
    (run_id, name, kind, status, result, result_type, attempts, started_at, completed_at)
SELECT id, s.name, s.kind, 'completed',
       CASE WHEN s.kind = 'hook' THEN to_jsonb('webhook_' || id)
            ELSE jsonb_build_object('order', input, 'cents', 100 * input::text::int) END,
       NULL, 1, now() + s.i * interval '1 ms', now() + s.i * interval '1 ms'
FROM runs, (VALUES (1, 'validate', 'step'), (2, 'price', 'step'), (3, 'reserve', 'step'),
                   (4, 'invoice', 'step'), (5, 'notify', 'step'),
                   (6, 'hook:approval', 'hook')) AS s (i, name, kind)
"""


async def seed(dsn: str, runs: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM forgeflow.workflow_steps WHERE run_id LIKE 'bench-check-%'")
        await conn.execute("DELETE FROM forgeflow.workflow_runs WHERE workflow = 'bench_check'")
        await conn.execute(SEED, runs)
        await conn.execute("ANALYZE forgeflow.workflow_runs; ANALYZE forgeflow.workflow_steps")
    finally:
        await conn.close()


async def raw_read(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        after, total = "", 0
        while True:
            runs = await conn.fetch(Q["check_runs"], ["bench_check:1"], after, 2000)
            await conn.fetch(Q["check_steps"], [r["id"] for r in runs])
            total += len(runs)
            if len(runs) < 2000:
                return total
            after = runs[-1]["id"]
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dsn_argument(parser)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    quiet_logs()
    dsn = await server_dsn(args.dsn)
    async with Forgeflow.connect(dsn, registry=registry):
        pass  # migrate the schema if needed
    await seed(dsn, args.runs)
    print(await describe_server(dsn))
    print(load_line())
    raw: list[tuple[float, float]] = []
    checked: list[tuple[float, float]] = []
    async with Forgeflow.connect(dsn, registry=registry) as ff:
        for _ in range(args.rounds):
            start = time.perf_counter(), time.process_time()
            assert await raw_read(dsn) == args.runs
            raw.append((time.perf_counter() - start[0], time.process_time() - start[1]))
            start = time.perf_counter(), time.process_time()
            report = await ff.check(registry)
            checked.append((time.perf_counter() - start[0], time.process_time() - start[1]))
            assert len(report.runs) == args.runs and report.ok, report.problems[:3]
    print(f"\n{args.runs} waiting runs, 6 checkpoints each, best of {args.rounds}\n")
    print("| what | wall s | CPU s | per run |")
    print("|---|---|---|---|")
    for label, samples in (("raw asyncpg: read runs and steps", raw), ("`ff.check`", checked)):
        wall, cpu = min(samples)
        print(f"| {label} | {wall:.2f} | {cpu:.2f} | {wall / args.runs * 1e6:.0f} µs |")
    print()
    print(load_line())


if __name__ == "__main__":
    asyncio.run(main())
