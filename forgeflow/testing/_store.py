"""The few statements only the test toolkit sends.

They are kept out of ``sql/queries.sql`` on purpose: that file is what the engine sends
in production, and none of these belongs there (moving a lease's expiry into the past
is how a test simulates a dead worker, never something a live system should do).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from ..errors import DatabaseError

__all__ = ["TestingStore"]

# The earliest moment after $1, up to $2, at which a run this env can execute becomes
# claimable: a sleep's or a retry's wake time, a hook or event timeout, a deadline.
NEXT_DUE = """
SELECT min(runnable_at) FROM forgeflow.workflow_runs
WHERE runnable_at > $1 AND runnable_at <= $2
  AND status NOT IN ('completed', 'compensated', 'failed')
  AND queue = ANY($3::text[])
  AND (workflow, version) IN (SELECT * FROM unnest($4::text[], $5::int[]))
"""

# A worker that died keeps its lease until the lease runs out; a test does not wait for
# that, it ends the lease at once. Leases are measured by the database's clock.
EXPIRE_LEASE = """
UPDATE forgeflow.workflow_runs
SET lease_expires_at = now() - interval '1 second'
WHERE id = $1 AND lease_owner = $2
RETURNING id
"""


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

    async def next_due(
        self,
        after: datetime,
        until: datetime,
        queues: Sequence[str],
        keys: Sequence[tuple[str, int]],
    ) -> datetime | None:
        """The first time in (after, until] at which one of these runs becomes claimable."""
        names, versions = [k[0] for k in keys], [k[1] for k in keys]
        value: datetime | None = await self._fetchval(
            NEXT_DUE, after, until, list(queues), names, versions
        )
        return value

    async def expire_lease(self, run_id: str, worker: str) -> bool:
        """End ``worker``'s lease on ``run_id`` now, as if it had run out."""
        return await self._fetchval(EXPIRE_LEASE, run_id, worker) is not None
