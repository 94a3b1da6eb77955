"""Changing runs from outside: cancelling, waking, resolving hooks, sending events and
firing timers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog

from ._client_core import ClientCore
from ._models import HookRecord, Outcome, WorkflowRecord
from ._records import hook_record
from ._serde import dumps
from .errors import HookAlreadyUsed, HookExpired, HookNotFound

__all__ = ["ChangingRuns"]

log = structlog.get_logger("forgeflow.client")


class ChangingRuns(ClientCore):
    """Cancelling and waking runs, hooks and events."""

    async def cancel(self, run_id: str) -> WorkflowRecord:
        """Request cancellation: the run (and attached children) compensate in reverse."""
        await self._store.request_cancel(run_id, self._clock.now())
        return await self._brief(run_id)

    async def resume(self, run_id: str) -> bool:
        """Make a waiting or stuck run claimable now; False if it has ended."""
        if await self._store.wake_run(run_id, self._clock.now()):
            return True
        await self._brief(run_id)
        return False

    async def resume_hook(
        self,
        hook_id: str,
        decision: Outcome | str = "approve",
        data: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> str:
        """Give a hook its decision and wake its run; returns the run id."""
        outcome = Outcome(decision).value
        now = self._clock.now()
        run_id = await self._store.resolve_hook(
            hook_id, outcome, dumps(dict(data or {})), now, idempotency_key
        )
        if run_id is not None:
            log.info("hook_resumed", hook_id=hook_id, run_id=run_id, decision=outcome)
            return run_id
        hook = await self._store.get_hook(hook_id)
        if hook is None:
            raise HookNotFound(f"no resume hook with id {hook_id!r}")
        if hook["status"] == "consumed":
            same = (
                idempotency_key is not None
                and hook["idempotency_key"] == idempotency_key
                and hook["decision"] == outcome
            )
            if same:
                return str(hook["run_id"])
            raise HookAlreadyUsed(f"hook {hook_id!r} already received {hook['decision']!r}")
        # Expired by its timeout, or closed early because its run ended (resolved_at).
        when = min(t for t in (hook["expires_at"], hook["resolved_at"]) if t is not None)
        raise HookExpired(f"hook {hook_id!r} expired at {when}")

    async def get_hook(self, hook_id: str) -> HookRecord:
        """One hook, with its state, decision and url; HookNotFound if there is none."""
        row = await self._store.get_hook(hook_id)
        if row is None:
            raise HookNotFound(f"no resume hook with id {hook_id!r}")
        return hook_record(row, self.settings.base_url, self._clock.now())

    async def fire_timers(self, run_id: str | None = None, at: datetime | None = None) -> list[str]:
        """Make due at ``at`` (default now) the sleep and retry timers of waiting runs."""
        when = self._clock.now() if at is None else at
        if when.tzinfo is None:
            raise ValueError("at: must be timezone-aware")
        return await self._store.fire_timers(run_id, when)

    async def list_hooks(
        self, status: str | None = "active", workflow: str | None = None, limit: int = 500
    ) -> list[Any]:
        """Hooks (the suspensions view), each with is_expired and its url."""
        rows = await self._store.list_hooks(status, workflow, limit)
        now = self._clock.now()
        return [hook_record(r, self.settings.base_url, now) for r in rows]

    async def send_event(self, event_type: str, payload: Mapping[str, Any] | None = None) -> int:
        """Deliver an event to every run waiting for it with a matching filter; how many."""
        count = await self._store.send_event(
            event_type, dumps(dict(payload or {})), self._clock.now()
        )
        log.info("event_sent", event_type=event_type, resumed=count)
        return count
