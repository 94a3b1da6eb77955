"""A separate process for crash and concurrency tests, plus helpers to start and kill it.

Run as ``python -m tests.support.proc_core_driver drive DSN RUN_ID`` it connects with the
crash workflows' registry and executes the run until it ends (or until the test kills
it); ``connect DSN`` only connects, which applies the migrations.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

__all__ = ["DRIVER_LEASE", "kill", "spawn", "wait_while_alive"]

#: The lease the driver holds: after a kill, the run can be taken over this much later.
DRIVER_LEASE = "3s"
_ROOT = Path(__file__).resolve().parents[2]


async def spawn(*args: str) -> asyncio.subprocess.Process:
    """Start this module as a process with ``args`` (e.g. "drive", dsn, run_id)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.proc_core_driver",
        *args,
        cwd=_ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_while_alive(
    proc: asyncio.subprocess.Process, check: Callable[[], Awaitable[Any]], what: str
) -> Any:
    """Wait for ``check`` to hold, failing at once (with its stderr) if ``proc`` exits."""
    from tests.support.db import wait_for

    async def probe() -> Any:
        if proc.returncode is not None:
            err = await proc.stderr.read() if proc.stderr else b""
            raise AssertionError(f"driver exited {proc.returncode}: {err.decode()[-2000:]}")
        return await check()

    return await wait_for(probe, what=what)


async def kill(proc: asyncio.subprocess.Process) -> int:
    """SIGKILL ``proc`` and reap it; its return code."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGKILL)
    code = await proc.wait()
    if proc.stderr is not None:
        await proc.stderr.read()
    return code


async def _drive(dsn: str, run_id: str) -> None:
    from forgeflow import Forgeflow
    from tests.support.proc_core_workflows import registry

    async with Forgeflow.connect(dsn, registry=registry, lease=DRIVER_LEASE) as ff:
        await ff.drive(run_id)


async def _connect(dsn: str) -> None:
    from forgeflow import Forgeflow, Registry

    async with Forgeflow.connect(dsn, registry=Registry()):
        pass


def main(argv: list[str]) -> None:
    """Entry point of the driver process."""
    command, *rest = argv
    if command == "drive":
        asyncio.run(_drive(*rest))
    elif command == "connect":
        asyncio.run(_connect(*rest))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
