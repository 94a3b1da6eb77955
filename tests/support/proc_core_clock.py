"""A clock that jumps forward to wake suspended runs, for replay tests in one process.

``JumpingClock`` reads the system clock plus an offset. Passed to a client together with
its ``on_event`` listener, it moves the offset past the wake-up time of any run that
suspends on a durable sleep, so ``ff.drive`` claims the run again at once and replays it
from the top in a fresh context, exactly as a worker would after the timer fired.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from forgeflow import LifecycleEvent

__all__ = ["JumpingClock"]


class JumpingClock:
    """System time plus an offset that grows whenever a run suspends until later."""

    def __init__(self) -> None:
        self.offset = timedelta(0)
        self.jumps = 0

    def now(self) -> datetime:
        """The shifted current time, timezone-aware."""
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        """Move time forward by ``delta``."""
        self.offset += delta

    def on_event(self, event: LifecycleEvent) -> None:
        """A lifecycle listener: a run suspended until ``wake_at`` makes time jump there."""
        if event.name != "run_suspended":
            return
        wake_at = datetime.fromisoformat(event.fields["wake_at"])
        gap = wake_at - self.now()
        if gap > timedelta(0):
            self.advance(gap + timedelta(milliseconds=1))
            self.jumps += 1
