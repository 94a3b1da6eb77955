"""Moving engine time in wait tests, and waiting for a run to reach a state.

``ShiftedClock`` is the real clock plus an offset the test moves forward: timers that
are hours or days away come due at once, while leases (which use the database's own
clock) keep working as usual.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from forgeflow import Forgeflow, Registry, WorkflowRecord

__all__ = ["ShiftedClock", "advance", "clocked_client", "until"]


class ShiftedClock:
    """The wall clock shifted by an offset that only grows."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        """The current time plus the offset."""
        return datetime.now(UTC) + self.offset


@asynccontextmanager
async def clocked_client(
    dsn: str, registry: Registry, **options: Any
) -> AsyncIterator[tuple[Forgeflow, ShiftedClock]]:
    """A client whose engine time is a ShiftedClock the test can move."""
    clock = ShiftedClock()
    async with Forgeflow.connect(dsn, registry=registry, clock=clock, **options) as client:
        yield client, clock


async def advance(ff: Forgeflow, clock: ShiftedClock, by: timedelta) -> None:
    """Move engine time forward and nudge the workers to look for timers come due."""
    clock.offset += by
    async with ff.pool.acquire() as conn:
        await conn.execute("SELECT pg_notify('forgeflow_wakeup', '')")


async def until(
    ff: Forgeflow, run_id: str, condition: Callable[[WorkflowRecord], bool], within: float = 30
) -> WorkflowRecord:
    """The run's record (with steps and hooks) as soon as ``condition`` holds.

    It polls rather than follows notifications: a state the run passes through quickly
    and comes back to (waiting, running, waiting again) must not be missed.
    """
    with anyio.fail_after(within):
        while True:
            record = await ff.status(run_id)
            if condition(record):
                return record
            if record.is_terminal:
                raise AssertionError(f"run {run_id} ended {record.status} before the condition")
            await anyio.sleep(0.02)
