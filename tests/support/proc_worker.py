"""A worker in a process of its own, for tests that kill, pause or stop real processes.

Run as::

    python -m tests.support.proc_worker --dsn DSN --module MODULE --concurrency N \
        [--worker-id ID] [--lease S] [--queue Q ...] [--poll-interval S]

it imports MODULE (its ``@workflow`` definitions register in ``forgeflow.default_registry``),
connects, and runs a worker until SIGTERM or SIGINT, which stop it gracefully. It prints
``ready <worker id>`` on stdout once it claims runs, and ``stopping`` when a signal
arrived and the stop began; logs go to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys

import anyio
import structlog

from forgeflow import Forgeflow, default_registry


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="proc_worker")
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--module", action="append", required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--worker-id")
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--queue", action="append")
    parser.add_argument("--poll-interval", type=float, default=0.2)
    parser.add_argument("--grace", type=float, default=30.0)
    parser.add_argument("--sleep-threshold", type=float, default=60.0)
    parser.add_argument("--max-pool", type=int, default=20)
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Run one worker until a signal; then stop it and return."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with Forgeflow.connect(
            args.dsn,
            registry=default_registry,
            sleep_threshold=args.sleep_threshold,
            max_pool=args.max_pool,
        ) as client:
            worker = client.worker(
                concurrency=args.concurrency,
                queues=args.queue or None,
                lease=args.lease,
                poll_interval=args.poll_interval,
                grace=args.grace,
                worker_id=args.worker_id,
            )
            async with worker:
                print(f"ready {worker.worker_id}", flush=True)
                async for _ in signals:
                    break
                print("stopping", flush=True)
                await worker.stop()


def main(argv: list[str]) -> None:
    """Import the workflow modules, configure logging and serve."""
    args = parse_args(argv)
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelName(args.log_level.upper())
        ),
    )
    for module in args.module:
        importlib.import_module(module)
    anyio.run(serve, args)


if __name__ == "__main__":
    main(sys.argv[1:])
