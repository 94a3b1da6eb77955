"""Retention: workers delete finished runs older than the configured retention.

Every worker started with a retention runs this service; the passes themselves are made
by one worker at a time, whichever holds the advisory lock when its timer fires (the
others skip that pass). A pass deletes in small batches (see ``purge_batch``), so that
workers executing runs never wait long on it.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus

from ._durations import Duration, format_duration
from ._repair import Repairs
from ._runtime import Runtime
from ._settings import Settings

__all__ = [
    "FIRST_PASS_WITHIN",
    "PASS_EVERY",
    "Retention",
    "parse_retention",
    "retention_service",
]

log = structlog.get_logger("forgeflow.retention")

# Any constant works; it only has to be the same in every forgeflow process.
_LOCK_ID = 0x466F7267654743  # "ForgeGC"
#: The first pass starts this many seconds (at most) after the worker starts; the delay
#: is random so that workers started together do not all reach for the lock at once.
FIRST_PASS_WITHIN = 5.0
#: Later passes come this often (give or take a random tenth).
PASS_EVERY = 300.0


class Retention:
    """Deletes runs that ended more than ``retention`` ago, one worker at a time."""

    def __init__(self, repairs: Repairs, retention: timedelta, worker_id: str) -> None:
        self._repairs = repairs
        self.retention = retention
        self._log = log.bind(worker=worker_id, retention=format_duration(retention))

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Make a pass soon after starting, then every few minutes, until cancelled."""
        task_status.started()
        delay = random.uniform(0.5, FIRST_PASS_WITHIN)
        while True:
            await anyio.sleep(delay)
            try:
                await self.run_pass()
            except Exception as exc:
                # A failed pass is retried at the next one; the worker goes on serving.
                self._log.warning("retention_failed", error=str(exc))
            delay = PASS_EVERY * random.uniform(0.9, 1.1)

    async def run_pass(self) -> int | None:
        """One pass if this worker gets the lock: how many runs it deleted, else None."""
        store = self._repairs.store
        async with store.exclusive(_LOCK_ID) as held:
            if held is None:
                self._log.info("retention_skipped", reason="another worker holds the lock")
                return None
            started = anyio.current_time()
            deleted = await self._repairs.purge(self.retention, store=held)
            elapsed_ms = round((anyio.current_time() - started) * 1000)
            self._log.info("retention_pass", deleted=deleted, duration_ms=elapsed_ms)
            return deleted


def parse_retention(value: Duration) -> timedelta:
    """A retention given to a worker, checked like the setting (at least 1 h)."""
    return Settings().replace(retention=value).retention or timedelta(0)


def retention_service(runtime: Runtime, retention: timedelta, worker_id: str) -> Any:
    """The ``serve`` function of a worker's retention service, for ``TaskGroup.start``."""
    repairs = Repairs(runtime.store, runtime.registry, runtime.clock)
    return Retention(repairs, retention, worker_id).serve
