"""Helpers that run the real `forgeflow` entry point in subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = "tests/cli/app.py"


def executable() -> str:
    """The `forgeflow` console script installed next to this Python."""
    path = Path(sys.executable).parent / "forgeflow"
    if not path.exists():
        pytest.fail(f"the forgeflow console script is not installed at {path}: pip install -e .")
    return str(path)


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without forgeflow settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGEFLOW_")}
    env.update(extra)
    return env


@dataclass
class Result:
    """What a finished command gave back."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout parsed as JSON."""
        return json.loads(self.out)


async def forgeflow(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    """Run `forgeflow ARGS…` to its end."""
    proc = await asyncio.create_subprocess_exec(
        executable(),
        *args,
        cwd=ROOT,
        env=env or environment(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def spawn_worker(
    dsn: str,
    *args: str,
    out: IO[bytes],
    err: IO[bytes],
    env: dict[str, str] | None = None,
) -> asyncio.subprocess.Process:
    """Start `forgeflow worker tests/cli/app.py --dsn DSN ARGS…`, writing to ``out``/``err``."""
    return await asyncio.create_subprocess_exec(
        executable(),
        "worker",
        APP,
        "--dsn",
        dsn,
        *args,
        cwd=ROOT,
        env=env or environment(),
        stdout=out,
        stderr=err,
    )


async def stop(proc: asyncio.subprocess.Process, timeout: float = 60) -> int:
    """SIGTERM a long-running command and wait for its exit code."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
