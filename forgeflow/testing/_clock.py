"""ManualClock: engine time that moves only when a test moves it."""

from __future__ import annotations

from datetime import UTC, datetime

from .._durations import Duration, parse_duration

__all__ = ["ManualClock"]


class ManualClock:
    """A clock for tests: it reads the real time once, then stands still until moved.

    Hand it to a client (``Forgeflow.connect(..., clock=ManualClock())``) and every
    engine time reads it: timers, retry delays, hook and event timeouts, workflow
    deadlines, ``ctx.workflow_time()``. It never goes backwards. Leases are the one
    exception: they are measured by the database's own clock, so that a test clock
    can never make a live worker's lease look expired.
    """

    __slots__ = ("_now",)

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("ManualClock: 'start' must be timezone-aware")
        self._now = start if start is not None else datetime.now(UTC)

    def now(self) -> datetime:
        """The current (test) time, timezone-aware."""
        return self._now

    def set(self, when: datetime) -> None:
        """Move the clock to ``when``; ValueError if that is in its past."""
        if when.tzinfo is None:
            raise ValueError("ManualClock.set: 'when' must be timezone-aware")
        if when < self._now:
            raise ValueError(f"ManualClock.set: {when} is before the clock's {self._now}")
        self._now = when

    def advance(self, duration: Duration) -> datetime:
        """Move the clock forward by ``duration`` ("2h", a timedelta, seconds); the new time.

        This only moves the time. ``WorkflowTestEnv.advance`` also runs what comes due.
        """
        self._now += parse_duration(duration, field="duration")
        return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self._now.isoformat()})"
