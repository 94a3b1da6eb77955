"""The few statements only the test toolkit sends.

They are kept out of ``sql/queries.sql`` on purpose: that file is what the engine sends
in production, and none of these belongs there (moving a lease's expiry into the past
is how a test simulates a dead worker, never something a live system should do).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from ..errors import DatabaseError

__all__ = ["Stop", "TestingStore"]

# Whether a run it can execute is claimable at $1 already, and the next moment the env
# must stop at, in (after, until]: the earliest moment a run it
# can execute becomes claimable (a sleep's or a retry's wake time, a hook or event
# timeout, a deadline) or the next fire time of an unpaused schedule of a workflow it runs ($6),
# with the schedules due by then (up to $7 of them, oldest first; none when only a run
# wakes up earlier), so that they are fired without reading them again.
NEXT_STOP = """
WITH now_runnable AS (
    -- What the env's claim (claim_runs) at $1 would find.
    SELECT EXISTS (
        SELECT 1 FROM forgeflow.workflow_runs r
        WHERE r.runnable_at <= $1
          AND (r.lease_expires_at IS NULL OR r.lease_expires_at < now())
          AND r.queue = ANY($3::text[])
          AND (r.workflow, r.version) IN (SELECT * FROM unnest($4::text[], $5::int[]))
          AND NOT EXISTS (SELECT 1 FROM forgeflow.queues l
                          WHERE l.name = r.queue AND l.limited)
    ) AS runnable
), runs AS (
    SELECT min(runnable_at) AS at FROM forgeflow.workflow_runs
    WHERE runnable_at > $1 AND runnable_at <= $2
      AND status NOT IN ('completed', 'compensated', 'failed')
      AND queue = ANY($3::text[])
      AND (workflow, version) IN (SELECT * FROM unnest($4::text[], $5::int[]))
), fires AS (
    SELECT min(next_fire_at) AS at FROM forgeflow.schedules
    WHERE NOT paused AND workflow = ANY($6::text[])
), stop AS (
    SELECT CASE WHEN f.at <= $2 AND (r.at IS NULL OR f.at < r.at) THEN f.at ELSE r.at END AS at
    FROM runs r, fires f
)
SELECT stop.at AS stop, (SELECT runnable FROM now_runnable) AS runnable_now,
       d.name, d.workflow, d.cron, d.timezone, d.catchup, d.next_fire_at
FROM stop LEFT JOIN LATERAL (
    SELECT s.name, s.workflow, s.cron, s.timezone, s.catchup, s.next_fire_at
    FROM forgeflow.schedules s
    WHERE NOT s.paused AND s.workflow = ANY($6::text[]) AND s.next_fire_at <= stop.at
    ORDER BY s.next_fire_at
    LIMIT $7
) d ON true
"""

# A worker that died keeps its lease until the lease runs out; a test does not wait for
# that, it ends the lease at once. Leases are measured by the database's clock.
EXPIRE_LEASE = """
UPDATE forgeflow.workflow_runs
SET lease_expires_at = now() - interval '1 second'
WHERE id = $1 AND lease_owner = $2
RETURNING id
"""


class Stop(NamedTuple):
    """Where ``advance`` goes next (``TestingStore.next_stop``)."""

    #: A run is claimable at the current time: run it before moving the clock.
    runnable_now: bool
    #: The next wake-up or fire time inside the window, if any.
    at: datetime | None
    #: The schedule rows due by ``at``, oldest first.
    schedules: list[asyncpg.Record]


class TestingStore:
    """The test toolkit's statements, on a client's pool."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def _fetchval(self, query: str, *args: Any) -> Any:
        try:
            return await self.pool.fetchval(query, *args)
        except asyncpg.PostgresError as exc:
            raise DatabaseError(f"forgeflow.testing: {exc}") from exc

    async def next_stop(
        self,
        after: datetime,
        until: datetime,
        queues: Sequence[str],
        keys: Sequence[tuple[str, int]],
        workflows: Sequence[str],
        limit: int,
    ) -> Stop:
        """Whether a run is claimable at ``after`` already, the first run wake-up or
        schedule fire time in (after, until], and the schedules of ``workflows`` due by
        then (at most ``limit``)."""
        names, versions = [k[0] for k in keys], [k[1] for k in keys]
        args = (after, until, list(queues), names, versions, list(workflows), limit)
        try:
            rows = await self.pool.fetch(NEXT_STOP, *args)
        except asyncpg.PostgresError as exc:
            raise DatabaseError(f"forgeflow.testing: {exc}") from exc
        first = rows[0]
        schedules = [r for r in rows if r["name"] is not None]
        return Stop(first["runnable_now"], first["stop"], schedules)

    async def expire_lease(self, run_id: str, worker: str) -> bool:
        """End ``worker``'s lease on ``run_id`` now, as if it had run out."""
        return await self._fetchval(EXPIRE_LEASE, run_id, worker) is not None
