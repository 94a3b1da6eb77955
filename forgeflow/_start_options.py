"""The options of ``start`` and ``start_many``, checked before anything is written."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ._durations import Duration, parse_duration

__all__ = ["CLOCK_SKEW", "MAX_KEY_LENGTH", "Debounce", "StartOptions", "start_options"]

#: How far in the past a ``start_at`` may lie (clocks of different machines disagree).
CLOCK_SKEW = timedelta(seconds=60)
#: The longest concurrency or debounce key accepted.
MAX_KEY_LENGTH = 256
_INT32 = 2**31 - 1


def _key(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: expected a non-empty string, got {value!r}")
    if len(value) > MAX_KEY_LENGTH:
        raise ValueError(f"{name}: at most {MAX_KEY_LENGTH} characters, got {len(value)}")
    return value


@dataclass(frozen=True)
class Debounce:
    """Collapse bursts of starts with one key into one run, started ``window`` after the
    last of them, and no later than ``max_wait`` after the first."""

    key: str
    window: Duration = "5s"
    max_wait: Duration | None = None

    def __post_init__(self) -> None:
        _key(self.key, "debounce.key")
        if parse_duration(self.window, field="debounce.window") <= timedelta(0):
            raise ValueError("debounce.window: must be positive")
        if self.max_wait is not None:
            limit = parse_duration(self.max_wait, field="debounce.max_wait")
            if limit < parse_duration(self.window):
                raise ValueError("debounce.max_wait: must be at least the window")

    @property
    def window_delta(self) -> timedelta:
        """The window as a timedelta."""
        return parse_duration(self.window)

    @property
    def max_wait_delta(self) -> timedelta | None:
        """max_wait as a timedelta, or None when unbounded."""
        return None if self.max_wait is None else parse_duration(self.max_wait)


@dataclass(frozen=True)
class StartOptions:
    """Checked start options: when the run becomes claimable, its priority and key."""

    runnable_at: datetime
    priority: int
    key: str | None
    debounce: Debounce | None


def start_options(
    now: datetime,
    *,
    priority: Any = 0,
    key: Any = None,
    start_at: Any = None,
    delay: Any = None,
    debounce: Any = None,
) -> StartOptions:
    """Check the options of a start; ValueError naming the first bad field."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError(f"priority: expected an int, got {priority!r}")
    if not -_INT32 <= priority <= _INT32:
        raise ValueError(f"priority: must be between {-_INT32} and {_INT32}, got {priority}")
    _key(key, "key")
    if start_at is not None and delay is not None:
        raise ValueError("start_at: give either start_at or delay, not both")
    if debounce is not None:
        if not isinstance(debounce, Debounce):
            raise ValueError(f"debounce: expected a Debounce, got {debounce!r}")
        if start_at is not None or delay is not None:
            raise ValueError("debounce: a debounced run starts after its window; no start_at")
    runnable_at = now
    if start_at is not None:
        if not isinstance(start_at, datetime):
            raise ValueError(f"start_at: expected a datetime, got {start_at!r}")
        if start_at.tzinfo is None or start_at.utcoffset() is None:
            raise ValueError("start_at: needs a time zone (a naive datetime is ambiguous)")
        if start_at < now - CLOCK_SKEW:
            raise ValueError(f"start_at: {start_at.isoformat()} is in the past")
        runnable_at = max(start_at, now)
    elif delay is not None:
        runnable_at = now + parse_duration(delay, field="delay")
    return StartOptions(runnable_at=runnable_at, priority=priority, key=key, debounce=debounce)
