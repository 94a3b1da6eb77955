"""The statements that lease runs to workers: claims (plain and within a queue's
limits), when to look again, the queues' limits and use, and the registry of live
workers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ._store_core import Record, StoreCore

__all__ = ["ClaimStatements"]

# How many times a limited claim is sent again after losing a race for a queue's row.
_CLAIM_RETRIES = 5


class ClaimStatements(StoreCore):
    """Claims, queues and workers."""

    async def claim_runs(
        self,
        now: datetime,
        queues: Sequence[str],
        keys: Sequence[tuple[str, int]],
        limit: int,
        worker: str,
        lease_seconds: float,
    ) -> list[Record]:
        """Lease up to ``limit`` runnable runs of the given (workflow, version) keys."""
        args = (now, list(queues), [f"{n}:{v}" for n, v in keys], limit, worker, lease_seconds)
        return await self._fetch("claim_runs", *args)

    async def claim_limited_runs(
        self,
        now: datetime,
        queues: Sequence[str],
        keys: Sequence[tuple[str, int]],
        limit: int,
        worker: str,
        lease_seconds: float,
    ) -> list[Record]:
        """Lease up to ``limit`` runs of limited queues, within their limits.

        One statement; when another claim on one of the queues committed after the
        statement's snapshot, it claims nothing there and is sent again (see
        ``claim_limited_runs`` in queries.sql), a bounded number of times.
        """
        names = [f"{n}:{v}" for n, v in keys]
        claimed: list[Record] = []
        for _ in range(_CLAIM_RETRIES):
            rows = await self._fetch(
                "claim_limited_runs",
                now,
                list(queues),
                names,
                limit - len(claimed),
                worker,
                lease_seconds,
            )
            claimed += [r for r in rows if r["id"] is not None]
            if rows[0]["locked_queues"] == rows[0]["limited_queues"] or len(claimed) >= limit:
                break
        return claimed

    async def next_limited_wake(
        self, now: datetime, queues: Sequence[str], keys: Sequence[tuple[str, int]]
    ) -> datetime | None:
        """When a limited queue's timer comes due or its rate window lets a start through."""
        workflows, versions = [n for n, _ in keys], [v for _, v in keys]
        value: datetime | None = await self._fetchval(
            "next_limited_wake", now, list(queues), workflows, versions
        )
        return value

    async def declare_queue(
        self,
        name: str,
        concurrency: int | None,
        key_concurrency: int | None,
        rate_limit: int | None,
        rate_period: float | None,
    ) -> None:
        """Create or update a queue's limits."""
        args = (name, concurrency, key_concurrency, rate_limit, rate_period)
        await self._fetch("declare_queue", *args)

    async def limited_queues(self, queues: Sequence[str]) -> list[str]:
        """Those of ``queues`` that have a limit."""
        return [r["name"] for r in await self._fetch("limited_queues", list(queues))]

    async def queue_stats(self, now: datetime) -> list[Record]:
        """Per queue: its limits and its executing, claimable, delayed, limited runs."""
        return await self._fetch("queue_stats", now)

    async def queue_top_keys(self, now: datetime, per_queue: int) -> list[Record]:
        """The busiest concurrency keys of each queue."""
        return await self._fetch("queue_top_keys", now, per_queue)

    async def queue_hold(self, queue: str, key: str | None, now: datetime) -> Record | None:
        """A limited queue's limits and their current use (None if it has none)."""
        return await self._fetchrow("queue_hold", queue, key, now)

    async def claim_run(
        self, run_id: str, worker: str, lease_seconds: float, now: datetime
    ) -> Record | None:
        """Lease one specific run if it is runnable and unleased."""
        return await self._fetchrow("claim_run", run_id, worker, lease_seconds, now)

    async def next_runnable_at(
        self, queues: Sequence[str], keys: Sequence[tuple[str, int]]
    ) -> datetime | None:
        """The earliest time a run this worker could execute becomes claimable."""
        workflows, versions = [n for n, _ in keys], [v for _, v in keys]
        names = [f"{n}:{v}" for n, v in keys]
        value: datetime | None = await self._fetchval(
            "next_runnable_at", list(queues), workflows, versions, names
        )
        return value

    # -- workers -----------------------------------------------------------------------

    async def register_worker(
        self, worker: str, queues: Sequence[str], workflows: Sequence[str], concurrency: int
    ) -> None:
        """Record a live worker and what it can execute."""
        await self._fetch("register_worker", worker, list(queues), list(workflows), concurrency)

    async def worker_heartbeat(self, worker: str) -> bool:
        """Mark a worker alive; False if it was forgotten (register it again)."""
        return bool(await self._fetchval("worker_heartbeat", worker))

    async def unregister_worker(self, worker: str) -> None:
        """Forget a worker that stops."""
        await self._fetch("unregister_worker", worker)

    async def live_workers_for(self, key: str, queue: str, within_seconds: float) -> int:
        """How many workers seen in the last ``within_seconds`` execute ``key`` on ``queue``."""
        return int(await self._fetchval("live_workers_for", key, queue, within_seconds))
