"""Repairing runs (restarts and forks, one or many), bulk cancels, and purging old runs."""

from __future__ import annotations

from datetime import datetime

from ._client_core import ClientCore
from ._durations import Duration
from ._models import BulkResult, WorkflowStatus

__all__ = ["RepairingRuns"]


class RepairingRuns(ClientCore):
    """Repairing runs and keeping the database small."""

    async def restart(self, run_id: str, version: int | None = None) -> str:
        """Start the run's workflow again with its input (latest version unless given)."""
        return await self._repairs.restart(run_id, version)

    async def fork(self, run_id: str, from_step: str, version: int | None = None) -> str:
        """A new run reusing the checkpoints completed before ``from_step``; its id."""
        return await self._repairs.fork(run_id, from_step, version)

    async def purge(
        self,
        older_than: Duration,
        workflow: str | None = None,
        status: WorkflowStatus | str | None = None,
        dry_run: bool = False,
    ) -> int:
        """Delete runs that ended more than ``older_than`` ago, with all their rows; how many."""
        return await self._repairs.purge(older_than, workflow, status, dry_run)

    async def cancel_many(
        self,
        *,
        workflow: str | None = None,
        status: WorkflowStatus | str | None = None,
        since: datetime | Duration | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        dry_run: bool = False,
        all: bool = False,
    ) -> BulkResult:
        """Cancel the oldest ``limit`` runs matching the filters; what matched and acted."""
        return await self._repairs.cancel_many(
            workflow=workflow,
            status=status,
            since=since,
            until=until,
            limit=limit,
            dry_run=dry_run,
            everything=all,
        )

    async def restart_many(
        self,
        *,
        workflow: str | None = None,
        status: WorkflowStatus | str | None = None,
        since: datetime | Duration | None = None,
        until: datetime | None = None,
        version: int | None = None,
        limit: int = 1000,
        dry_run: bool = False,
        all: bool = False,
    ) -> BulkResult:
        """Restart the oldest ``limit`` runs matching the filters; what matched and acted."""
        return await self._repairs.restart_many(
            workflow=workflow,
            status=status,
            since=since,
            until=until,
            version=version,
            limit=limit,
            dry_run=dry_run,
            everything=all,
        )
