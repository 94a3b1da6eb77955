"""The engine clock: every timer, deadline and workflow time reads it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """Where the engine reads the current time (a test clock can move it)."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class SystemClock:
    """The real wall clock, in UTC."""

    __slots__ = ()

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        return datetime.now(UTC)
