"""Crash in the middle and recovery: a worker is killed mid-run, another one finishes it.

    python examples/crash_recovery.py

Starts a worker in a separate process and an order-fulfilment run of five steps. While
the third step runs, the worker is killed with SIGKILL: no cleanup, no goodbye, exactly
like a machine losing power. A second worker process is started; once the first one's
lease expires (one second here) it takes the run over, replays the two completed steps
from their checkpoints without calling them, runs the interrupted step again and
finishes the rest. The step log printed at the end, written by the steps themselves,
shows that no completed step ran twice.

Runs on the embedded PostgreSQL under ./.forgeflow/ unless FORGEFLOW_DATABASE_URL is set;
the worker processes are handed the same DSN. The script starts itself as the worker
(``--worker DSN``), so it needs nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import anyio
import structlog

from forgeflow import Forgeflow, WorkflowContext, workflow

STEPS = ("reserve_stock", "charge_card", "pack_parcel", "book_courier", "send_receipt")
KILL_DURING = "pack_parcel"
LEASE = "1s"  # how long a dead worker's run waits before another worker may take it

LOG_TABLE = """
CREATE TABLE IF NOT EXISTS crash_recovery_log (
    id     bigserial PRIMARY KEY,
    run_id text NOT NULL,
    step   text NOT NULL,
    event  text NOT NULL,
    pid    integer NOT NULL
)
"""


# -- the workflow ---------------------------------------------------------------------


async def perform(ctx: WorkflowContext, step: str) -> str:
    """One step of the order: logs when it starts and when its work is done."""
    db = ctx.db()
    insert = "INSERT INTO crash_recovery_log (run_id, step, event, pid) VALUES ($1, $2, $3, $4)"
    await db.execute(insert, ctx.run_id, step, "started", os.getpid())
    await asyncio.sleep(0.3)  # the real work: an API call, a label printer, ...
    await db.execute(insert, ctx.run_id, step, "finished", os.getpid())
    return f"{step} done by process {os.getpid()}"


@workflow(version=1, timeout="10m", name="crash_recovery_order")
async def fulfil_order(ctx: WorkflowContext, order_id: str) -> list[str]:
    return [await ctx.step(step, perform, ctx, step).run() for step in STEPS]


# -- the worker process -----------------------------------------------------------------


async def serve(dsn: str) -> None:
    """Run a worker until SIGTERM; say "ready" on stdout once it claims runs."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with (
            Forgeflow.connect(dsn) as ff,
            ff.worker(concurrency=1, lease=LEASE, poll_interval="100ms"),
        ):
            print("ready", flush=True)
            async for _ in signals:
                break  # leaving the block stops the worker gracefully


async def start_worker(dsn: str) -> asyncio.subprocess.Process:
    """Start this script as a worker process and wait until it is ready."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--worker", dsn, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if line.strip() != b"ready":
        raise SystemExit(f"the worker did not start (exit code {await proc.wait()})")
    return proc


# -- the demonstration ------------------------------------------------------------------


async def wait_until_started(ff: Forgeflow, run_id: str, step: str) -> None:
    query = "SELECT count(*) FROM crash_recovery_log WHERE run_id = $1 AND step = $2"
    # The log is a plain table (nothing notifies about it): look at it until the row is there.
    while not await ff.pool.fetchval(query, run_id, step):  # noqa: ASYNC110
        await asyncio.sleep(0.02)


async def main() -> None:
    configure_logging()
    async with Forgeflow.connect() as ff:
        await ff.pool.execute(LOG_TABLE)
        first = await start_worker(ff.dsn)
        print(f"worker 1 started (pid {first.pid})")
        run_id = await ff.start(fulfil_order, "order-42")
        print(f"run {run_id} started: {' -> '.join(STEPS)}")

        await wait_until_started(ff, run_id, KILL_DURING)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        print(f"worker 1 killed with SIGKILL in the middle of {KILL_DURING!r}")

        second = await start_worker(ff.dsn)
        print(f"worker 2 started (pid {second.pid}); it takes over once the lease expires")
        output = await ff.result(run_id, timeout=60)
        second.send_signal(signal.SIGTERM)
        await second.wait()

        rows = await ff.pool.fetch(
            "SELECT step, event, pid FROM crash_recovery_log WHERE run_id = $1 ORDER BY id",
            run_id,
        )
        workers = {first.pid: "worker 1", second.pid: "worker 2"}
        print("\nstep log (written by the steps as they ran):")
        for row in rows:
            print(f"  {row['step']:<14} {row['event']:<9} {workers[row['pid']]}")
        print("\nresult:")
        for line in output:
            print(f"  {line}")

        finished = [row["step"] for row in rows if row["event"] == "finished"]
        started = [row["step"] for row in rows if row["event"] == "started"]
        if finished != list(STEPS):
            raise SystemExit(f"unexpected step log: {finished}")
        again = sorted({step for step in started if started.count(step) > 1})
        print(f"\nevery step finished exactly once; started again after the crash: {again}")
        print("(only a step still in flight when its worker died may run again: make such")
        print(" steps idempotent, e.g. with ctx.idempotency_key(step) for external calls)")


def configure_logging() -> None:
    """Engine events go to stderr (FORGEFLOW_LOG_LEVEL, default WARNING)."""
    level = os.environ.get("FORGEFLOW_LOG_LEVEL", "WARNING").upper()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        configure_logging()
        anyio.run(serve, sys.argv[2])
    else:
        asyncio.run(main())
