"""The statements of a run's durable waits: hooks, events and child runs."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from ._sql import QUERIES as Q
from ._store_core import DRIVER_ERRORS, Record, StoreCore
from .errors import DatabaseError

__all__ = ["WaitStatements"]


class WaitStatements(StoreCore):
    """Hooks, event waits and children."""

    async def insert_hook(
        self,
        run_id: str,
        worker: str,
        hook_id: str,
        name: str,
        step: str,
        on_timeout: str,
        timeout_seconds: float | None,
        metadata_json: str,
        now: datetime,
    ) -> bool:
        """Create a pending hook and its checkpoint in one statement; False if lease lost."""
        args = (run_id, worker, hook_id, name, step, on_timeout, timeout_seconds, metadata_json)
        try:
            return await self._db.fetchval(Q["insert_hook"], *args, now) is not None
        except asyncpg.UniqueViolationError as exc:
            # The workflow's own hook_id template collided: its error, not the engine's.
            raise DatabaseError(f"a hook with id {hook_id!r} already exists") from exc
        except DRIVER_ERRORS as exc:
            raise self._wrap("insert_hook", exc) from exc

    async def get_hook(self, hook_id: str) -> Record | None:
        """One hook row."""
        return await self._fetchrow("get_hook", hook_id)

    async def activate_hook(self, hook_id: str, now: datetime) -> bool:
        """pending → active, starting its timeout; False if it was not pending."""
        return await self._fetchrow("activate_hook", hook_id, now) is not None

    async def expire_hook(self, hook_id: str, now: datetime) -> bool:
        """active → expired when past expires_at; False if it was decided first."""
        return await self._fetchrow("expire_hook", hook_id, now) is not None

    async def resolve_hook(
        self,
        hook_id: str,
        decision: str,
        data_json: str,
        now: datetime,
        idempotency_key: str | None,
    ) -> str | None:
        """Consume a hook with a decision and wake its run; the run id, or None if refused."""
        args = (hook_id, decision, data_json, now, idempotency_key)
        row = await self._fetchrow("resolve_hook", *args)
        return None if row is None else row["run_id"]

    async def list_hooks(
        self, status: str | None, workflow: str | None, limit: int
    ) -> list[Record]:
        """Hooks, oldest first, optionally filtered."""
        return await self._fetch("list_hooks", status, workflow, limit)

    # -- events and children ---------------------------------------------------------

    async def insert_event_wait(
        self,
        run_id: str,
        worker: str,
        step: str,
        event_type: str,
        match_json: str,
        now: datetime,
        expires_at: datetime | None,
    ) -> bool:
        """Declare a run's interest in an event; False if the lease is gone."""
        args = (run_id, worker, step, event_type, match_json, now, expires_at)
        return await self._fetchval("insert_event_wait", *args) is not None

    async def get_event_wait(self, run_id: str, step: str) -> Record | None:
        """The state of one event wait."""
        return await self._fetchrow("get_event_wait", run_id, step)

    async def expire_event_wait(self, run_id: str, step: str) -> bool:
        """waiting → expired; False if an event was delivered first."""
        return await self._fetchrow("expire_event_wait", run_id, step) is not None

    async def send_event(self, event_type: str, payload_json: str, now: datetime) -> int:
        """Deliver an event to every matching wait and wake their runs; returns how many."""
        row = await self._fetchrow("send_event", event_type, payload_json, now)
        return int(row[0]) if row else 0

    async def insert_child(
        self,
        run_id: str,
        worker: str,
        child_id: str,
        workflow: str,
        version: int,
        queue: str | None,
        input_json: str,
        step: str,
        detached: bool,
        now: datetime,
        timeout_seconds: float,
    ) -> bool:
        """Create a child run and the parent's checkpoint in one statement."""
        args = (run_id, worker, child_id, workflow, version, queue, input_json, step, detached)
        return await self._fetchrow("insert_child", *args, now, timeout_seconds) is not None
