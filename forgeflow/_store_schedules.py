"""The statements of schedules: declared, listed, paused, fired."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ._store_core import Record, StoreCore

__all__ = ["ScheduleStatements"]


class ScheduleStatements(StoreCore):
    """Schedules, and the replay read that knows a scheduled run's fire time."""

    async def load_replay(self, run_id: str) -> tuple[list[Record], datetime | None]:
        """A run's checkpoints for replay and, if a schedule started it, its fire time."""
        rows = await self._fetch("load_replay", run_id)
        scheduled_at: datetime | None = rows[0]["scheduled_at"] if rows else None
        return [r for r in rows if r["name"] is not None], scheduled_at

    async def upsert_schedule(
        self,
        name: str,
        run: tuple[str, int, str, float],
        spec: tuple[str, str, str],
        input_json: str,
        source: str,
        next_fire_at: datetime,
        now: datetime,
    ) -> bool:
        """Create or update a schedule by name (and NOTIFY workers); False if unchanged.

        ``run`` is (workflow, version, queue, timeout seconds), ``spec`` (cron, time
        zone, catch-up).
        """
        args = (name, *run, *spec, input_json, source, next_fire_at, now)
        return await self._fetchrow("upsert_schedule", *args) is not None

    async def forget_declared_schedules(self, names: Sequence[str]) -> list[str]:
        """Delete the decorator schedules named ``names``; those deleted."""
        return [r["name"] for r in await self._fetch("forget_declared_schedules", list(names))]

    async def get_schedule(self, name: str) -> Record | None:
        """One schedule row."""
        return await self._fetchrow("get_schedule", name)

    async def list_schedules(self, name: str | None = None) -> list[Record]:
        """Schedules by name, each with its latest run's id, status and fire time."""
        return await self._fetch("list_schedules", name)

    async def pause_schedule(self, name: str, now: datetime) -> bool:
        """Pause a schedule; False if there is none by that name."""
        return await self._fetchrow("pause_schedule", name, now) is not None

    async def resume_schedule(self, name: str, next_fire_at: datetime, now: datetime) -> bool:
        """Unpause a paused schedule from ``next_fire_at``; False if it was not paused."""
        return await self._fetchrow("resume_schedule", name, next_fire_at, now) is not None

    async def delete_schedule(self, name: str) -> bool:
        """Delete a schedule; False if there is none by that name."""
        return await self._fetchrow("delete_schedule", name) is not None

    async def due_schedules(
        self, now: datetime, workflows: Sequence[str], limit: int
    ) -> list[Record]:
        """Unpaused schedules of ``workflows`` whose next fire time has come, oldest first."""
        return await self._fetch("due_schedules", now, list(workflows), limit)

    async def next_schedule_fire(self, workflows: Sequence[str]) -> datetime | None:
        """The earliest next fire time among the unpaused schedules of ``workflows``."""
        value: datetime | None = await self._fetchval("next_schedule_fire", list(workflows))
        return value

    async def fire_schedule(
        self,
        name: str,
        expected: datetime,
        next_fire_at: datetime,
        run: tuple[str, int, str, float],
        fires: Sequence[tuple[str, datetime, str]],
        now: datetime,
    ) -> list[str] | None:
        """Start one run per fire time and move the schedule on, atomically.

        ``run`` is (workflow, version, queue, timeout seconds); ``fires`` holds (run id,
        fire time, key). Returns the ids of the runs created, or None if the schedule's
        next fire time was no longer ``expected`` (another worker handled it).
        """
        workflow, version, queue, timeout = run
        ids, times, keys = [f[0] for f in fires], [f[1] for f in fires], [f[2] for f in fires]
        args = (name, expected, next_fire_at, workflow, version, queue, timeout, now)
        row = await self._fetchrow("fire_schedule", *args, ids, times, keys)
        if row is None or not row["claimed"]:
            return None
        return list(row["runs"])

    async def trigger_schedule(
        self,
        name: str,
        run_id: str,
        run: tuple[int, str, float] | None,
        now: datetime,
    ) -> bool:
        """Start one run of a schedule now; False if there is no schedule by that name.

        ``run`` is the (version, queue, timeout seconds) to start with; None takes those
        stored with the schedule.
        """
        version, queue, timeout = run if run is not None else (None, None, None)
        args = (name, run_id, version, queue, timeout, now)
        return await self._fetchrow("trigger_schedule", *args) is not None
