"""Fixtures for the CLI tests: a `forgeflow worker` process on the test's database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .runner import spawn_worker, stop


@pytest.fixture
async def worker(dsn: str, tmp_path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """`forgeflow worker tests/cli/app.py` running against the test's database."""
    log = (tmp_path / "worker.log").open("wb")
    proc = await spawn_worker(dsn, "--concurrency", "4", out=log, err=log)
    try:
        yield proc
    finally:
        await stop(proc)
        log.close()
