"""The statements of repairing runs (restarts and forks), retention (purges and bulk
selections) and checking a deploy against the runs it would replay."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ._sql import QUERIES as Q
from ._store_core import DRIVER_ERRORS, Record, StoreCore

__all__ = ["RepairStatements"]


class RepairStatements(StoreCore):
    """Repairing runs, retention, checking a deploy."""

    async def run_source(self, run_id: str) -> Record | None:
        """What a restart or a fork of ``run_id`` needs from it."""
        return await self._fetchrow("run_source", run_id)

    async def fork_source_steps(self, run_id: str) -> list[Record]:
        """A run's checkpoints in completion order, with their compensation state."""
        return await self._fetch("fork_source_steps", run_id)

    async def live_worker_versions(self, workflow: str, within_seconds: float) -> list[int]:
        """The versions of ``workflow`` that workers seen lately can execute."""
        rows = await self._fetch("live_worker_versions", workflow, within_seconds)
        return sorted(int(r["version"]) for r in rows)

    async def insert_linked_run(
        self,
        run_id: str,
        workflow: str,
        version: int,
        queue: str,
        input_json: str,
        now: datetime,
        timeout_seconds: float,
        *,
        restarted_from: str | None = None,
        forked_from: str | None = None,
        forked_from_step: str | None = None,
        copy_steps: Sequence[str] = (),
    ) -> int:
        """Write a restart or a fork (with copies of ``copy_steps``); how many were copied."""
        args = (run_id, workflow, version, queue, input_json, now, timeout_seconds)
        lineage = (restarted_from, forked_from, forked_from_step, forked_from, list(copy_steps))
        row = await self._fetchrow("insert_linked_run", *args, *lineage)
        return 0 if row is None else int(row["copied"])

    async def purge_batch(
        self,
        cutoff: datetime,
        workflow: str | None,
        status: str | None,
        limit: int,
        after: tuple[datetime, str] | None,
        dry_run: bool,
    ) -> Record:
        """Delete (or count) one batch of finished run trees; see the query's comment."""
        at, rid = after if after else (None, None)
        args = (cutoff, workflow, status, limit, at, rid, dry_run)
        row = await self._fetchrow("purge_batch", *args)
        assert row is not None
        return row

    async def bulk_select_runs(
        self,
        workflow: str | None,
        status: str | None,
        since: datetime | None,
        until: datetime | None,
        limit: int,
    ) -> tuple[int, list[str]]:
        """How many runs match the filters, and the ids of the oldest ``limit`` of them."""
        row = await self._fetchrow("bulk_select_runs", workflow, status, since, until, limit)
        assert row is not None
        return int(row["matched"]), list(row["ids"])

    # -- checking a deploy -------------------------------------------------------------

    async def check_batch(
        self, keys: Sequence[str], after: str, limit: int
    ) -> tuple[list[Record], list[Record]]:
        """Up to ``limit`` unfinished runs of ``keys`` past id ``after``, and their checkpoints.

        Both come from one read-only snapshot, so a run and its steps always agree.
        """
        try:
            async with (
                self.pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                runs: list[Record] = await conn.fetch(Q["check_runs"], list(keys), after, limit)
                steps: list[Record] = (
                    await conn.fetch(Q["check_steps"], [r["id"] for r in runs]) if runs else []
                )
        except DRIVER_ERRORS as exc:
            raise self._wrap("check_runs", exc) from exc
        return runs, steps
