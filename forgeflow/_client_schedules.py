"""Schedules: creating, listing, pausing, resuming, deleting and triggering them."""

from __future__ import annotations

from typing import Any

from ._client_core import ClientCore
from ._definitions import WorkflowDefinition
from ._schedules import ScheduleRecord

__all__ = ["ScheduleMethods"]


class ScheduleMethods(ClientCore):
    """Schedules."""

    async def schedule(
        self,
        name: str,
        workflow: WorkflowDefinition[Any, Any] | str,
        *,
        cron: str,
        input: Any = None,
        timezone: str = "UTC",
        catchup: str = "latest",
    ) -> ScheduleRecord:
        """Create or update the stored schedule ``name``; ValueError naming a bad field."""
        definition = self._definition(workflow, None)
        return await self._schedules.create(
            name, definition, cron=cron, input=input, timezone=timezone, catchup=catchup
        )

    async def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule (decorator and stored), by name, with its next fire and last run."""
        return await self._schedules.list()

    async def get_schedule(self, name: str) -> ScheduleRecord:
        """One schedule; ScheduleNotFound if there is none by that name."""
        return await self._schedules.get(name)

    async def pause_schedule(self, name: str) -> ScheduleRecord:
        """Stop a schedule firing until it is resumed."""
        return await self._schedules.pause(name)

    async def resume_schedule(self, name: str) -> ScheduleRecord:
        """Let a paused schedule fire again, from its next future fire time."""
        return await self._schedules.resume(name)

    async def delete_schedule(self, name: str) -> None:
        """Delete a schedule; its runs stay."""
        await self._schedules.delete(name)

    async def trigger_schedule(self, name: str) -> str:
        """Start one run of a schedule now (``ctx.scheduled_at`` is now); its run id."""
        return await self._schedules.trigger(name)
