"""Queues with flow control: the ``Queue`` declaration and how workers claim from them.

The limits themselves are enforced by PostgreSQL in the claim (see ``claim_limited_runs``
in ``sql/queries.sql``); this module parses and declares them, and decides, for a
worker, which of its queues go through the limited claim.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio
import structlog

from ._durations import parse_duration
from ._store import Record, Store

__all__ = ["Queue", "QueueClaimer", "QueueState", "hold_reason", "parse_rate", "queue_states"]

log = structlog.get_logger("forgeflow.queues")

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*(ms|s|sec|m|min|h|hour|d|day)\s*$")
_UNIT = {"sec": "s", "min": "m", "hour": "h", "day": "d"}
_INT32 = 2**31 - 1
#: How often a worker re-reads which of its queues have limits (declared by others).
REFRESH_SECONDS = 10.0


def _positive(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if not 1 <= value <= _INT32:
        raise ValueError(f"{name}: must be between 1 and {_INT32}, got {value}")
    return value


def parse_rate(rate: str) -> tuple[int, float]:
    """Parse ``"100/min"``, ``"10/s"``, ``"5/2s"`` into (runs, period in seconds)."""
    if not isinstance(rate, str):
        raise ValueError(f"rate: expected a string like '100/min', got {rate!r}")
    match = _RATE.match(rate.lower())
    if match is None:
        raise ValueError(f"rate: {rate!r} is not a rate (use e.g. '100/min', '10/s', '5/2s')")
    count, amount, unit = int(match.group(1)), match.group(2), match.group(3)
    period = parse_duration(f"{amount or '1'}{_UNIT.get(unit, unit)}", field="rate")
    if count < 1 or count > _INT32:
        raise ValueError(f"rate: the number of runs must be between 1 and {_INT32} ({rate!r})")
    if period <= timedelta(0):
        raise ValueError(f"rate: the period must be positive ({rate!r})")
    return count, period.total_seconds()


@dataclass(frozen=True)
class Queue:
    """A named queue of runs and its limits, enforced across every worker."""

    name: str
    concurrency: int | None = None
    key_concurrency: int | None = None
    rate: str | None = None
    rate_limit: int | None = field(init=False, default=None, repr=False)
    rate_period: float | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or len(self.name) > 200:
            raise ValueError(f"name: expected a non-empty queue name, got {self.name!r}")
        _positive(self.concurrency, "concurrency")
        _positive(self.key_concurrency, "key_concurrency")
        if self.rate is not None:
            count, period = parse_rate(self.rate)
            object.__setattr__(self, "rate_limit", count)
            object.__setattr__(self, "rate_period", period)

    @property
    def limited(self) -> bool:
        """True when any limit is set."""
        return any(v is not None for v in (self.concurrency, self.key_concurrency, self.rate))


@dataclass
class QueueState:
    """What a queue holds right now: executing, claimable, delayed and limited runs."""

    name: str
    concurrency: int | None
    key_concurrency: int | None
    rate: str | None
    executing: int
    claimable: int
    delayed: int
    limited: int
    started_in_window: int
    top_keys: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for the CLI and the HTTP API)."""
        return dict(self.__dict__)


def rate_text(limit: int | None, period: float | None) -> str | None:
    """A stored rate back as text: ``20/1s``."""
    if limit is None or period is None:
        return None
    return f"{limit}/{period:g}s"


class QueueClaimer:
    """Claims for a worker: limited queues through the locking claim, others as before."""

    def __init__(self, store: Store, queues: Sequence[str]) -> None:
        self.store = store
        self.queues = list(queues)
        self.limited: list[str] = []
        self._checked = float("-inf")

    @property
    def unlimited(self) -> list[str]:
        """The served queues without limits (as last read)."""
        return [q for q in self.queues if q not in self.limited]

    async def start(self, declared: Sequence[Queue]) -> None:
        """Write the limits of the declared queues this worker serves, then read which
        served queues are limited (some may be declared by other processes only)."""
        for queue in declared:
            if queue.name in self.queues:
                await self.store.declare_queue(
                    queue.name,
                    queue.concurrency,
                    queue.key_concurrency,
                    queue.rate_limit,
                    queue.rate_period,
                )
        await self.refresh(force=True)
        log.info("queues_served", queues=self.queues, limited=self.limited)

    async def refresh(self, force: bool = False) -> None:
        """Re-read which served queues have limits, at most every few seconds."""
        if not force and anyio.current_time() - self._checked < REFRESH_SECONDS:
            return
        self.limited = sorted(await self.store.limited_queues(self.queues))
        self._checked = anyio.current_time()

    async def claim(
        self,
        now: datetime,
        keys: Sequence[tuple[str, int]],
        free: int,
        worker: str,
        lease_seconds: float,
    ) -> list[Record]:
        """Lease up to ``free`` runs: limited queues first (they never take more than
        their limits allow, so they cannot starve the others), then the rest."""
        await self.refresh()
        rows: list[Record] = []
        if self.limited:
            rows = await self.store.claim_limited_runs(
                now, self.limited, keys, free, worker, lease_seconds
            )
        if len(rows) < free and self.unlimited:
            rows += await self.store.claim_runs(
                now, self.unlimited, keys, free - len(rows), worker, lease_seconds
            )
        return rows

    async def next_wake(self, keys: Sequence[tuple[str, int]], now: datetime) -> datetime | None:
        """The earliest time a claim could find something new, freed slots aside."""
        found = []
        if self.unlimited:
            found.append(await self.store.next_runnable_at(self.unlimited, keys))
        if self.limited:
            found.append(await self.store.next_limited_wake(now, self.limited, keys))
        times = [t for t in found if t is not None]
        return min(times) if times else None


async def queue_states(store: Store, now: datetime, top_keys: int = 5) -> list[QueueState]:
    """Every queue with limits or unfinished runs, and what it holds right now."""
    keys: dict[str, list[dict[str, Any]]] = {}
    for row in await store.queue_top_keys(now, top_keys):
        keys.setdefault(row["queue"], []).append(
            {
                "key": row["concurrency_key"],
                "executing": row["executing"],
                "claimable": row["claimable"],
            }
        )
    return [
        QueueState(
            name=row["name"],
            concurrency=row["concurrency"],
            key_concurrency=row["key_concurrency"],
            rate=rate_text(row["rate_limit"], row["rate_period_seconds"]),
            executing=row["executing"],
            claimable=row["claimable"],
            delayed=row["delayed"],
            limited=row["limited"],
            started_in_window=row["started_in_window"],
            top_keys=keys.get(row["name"], []),
        )
        for row in await store.queue_stats(now)
    ]


async def hold_reason(store: Store, row: Any, now: datetime) -> dict[str, str] | None:
    """Why a claimable, unleased run is not executing, if a queue limit holds it."""
    hold = await store.queue_hold(row["queue"], row["concurrency_key"], now)
    if hold is None:
        return None
    name = hold["name"]
    if hold["concurrency"] is not None and hold["executing"] >= hold["concurrency"]:
        detail = f"{hold['executing']}/{hold['concurrency']} executing"
    elif (
        hold["key_concurrency"] is not None
        and row["concurrency_key"] is not None
        and hold["key_executing"] >= hold["key_concurrency"]
    ):
        detail = (
            f"key {row['concurrency_key']!r} {hold['key_executing']}/"
            f"{hold['key_concurrency']} executing"
        )
    elif (
        hold["rate_limit"] is not None
        and row["started_at"] is None
        and hold["started_in_window"] >= hold["rate_limit"]
    ):
        rate = rate_text(hold["rate_limit"], hold["rate_period_seconds"])
        detail = f"rate {rate}: {hold['started_in_window']} started in the last window"
    else:
        return None
    return {"kind": "queue_limit", "queue": name, "detail": f"held by queue {name}: {detail}"}
