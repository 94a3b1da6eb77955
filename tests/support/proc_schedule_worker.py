"""A worker process on a shared file clock, for the schedule tests that kill workers.

Run as ``python -m tests.support.proc_schedule_worker --dsn DSN --clock-file PATH
--worker-id ID``. Its registry holds ``every_minute`` (a decorator schedule ``* * * * *``
with ``catchup="all"``). Engine time is the ISO timestamp in PATH, which the test moves
forward (then NOTIFYs ``forgeflow_schedules`` so that every scheduler looks again): all
workers read the same time, so ten minutes of schedule time take a few seconds.
It prints ``ready <worker id>`` once it serves, and runs until killed or signalled.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from datetime import datetime
from pathlib import Path

import anyio
import structlog

from forgeflow import Forgeflow, Registry, WorkflowContext, workflow

registry = Registry()


@workflow(version=1, registry=registry, schedule="* * * * *", catchup="all")
async def every_minute(ctx: WorkflowContext) -> str:
    """Returns its fire time."""
    assert ctx.scheduled_at is not None
    return ctx.scheduled_at.isoformat()


class FileClock:
    """The time written in a file (by the test), timezone-aware."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def now(self) -> datetime:
        """The time in the file."""
        return datetime.fromisoformat(self.path.read_text())


async def serve(args: argparse.Namespace) -> None:
    """Run one worker until a signal."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with Forgeflow.connect(
            args.dsn, registry=registry, clock=FileClock(Path(args.clock_file)), max_pool=5
        ) as client:
            worker = client.worker(concurrency=4, lease=1.0, worker_id=args.worker_id)
            async with worker:
                print(f"ready {worker.worker_id}", flush=True)
                async for _ in signals:
                    break
                print("stopping", flush=True)
                await worker.stop()


def main(argv: list[str]) -> None:
    """Parse the command line, configure logging, serve."""
    parser = argparse.ArgumentParser(prog="proc_schedule_worker")
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--clock-file", required=True)
    parser.add_argument("--worker-id", required=True)
    args = parser.parse_args(argv)
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    anyio.run(serve, args)


if __name__ == "__main__":
    main(sys.argv[1:])
