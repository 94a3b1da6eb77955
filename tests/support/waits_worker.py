"""A forgeflow worker in a process of its own, for tests that SIGKILL it.

    python -m tests.support.waits_worker --dsn DSN --module MODULE [--concurrency N]
        [--lease 30s]

It executes the workflows of ``MODULE.registry`` until SIGTERM (a graceful stop) or
until it is killed. ``spawn`` and ``kill`` start and end one from a test.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import sys
from pathlib import Path

import anyio

__all__ = ["kill", "spawn"]

_ROOT = Path(__file__).resolve().parents[2]


async def spawn(
    dsn: str, module: str, *, lease: str = "30s", env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    """Start a worker process on ``dsn`` for the workflows of ``module``."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.waits_worker",
        "--dsn",
        dsn,
        "--module",
        module,
        "--lease",
        lease,
        cwd=_ROOT,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def kill(proc: asyncio.subprocess.Process) -> int:
    """SIGKILL the worker (no cleanup of any kind) and reap it; its return code."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGKILL)
    return await proc.wait()


async def _main(args: argparse.Namespace) -> None:
    from forgeflow import Forgeflow

    registry = importlib.import_module(args.module).registry
    async with (
        Forgeflow.connect(args.dsn, registry=registry, lease=args.lease) as ff,
        ff.worker(concurrency=args.concurrency, lease=args.lease, poll_interval="200ms"),
    ):
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break


def main() -> None:
    """Parse the command line and run the worker until it is stopped."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.waits_worker")
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--module", required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lease", default="30s")
    anyio.run(_main, parser.parse_args())


if __name__ == "__main__":
    main()
