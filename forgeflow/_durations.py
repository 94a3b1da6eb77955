"""Duration parsing: "30s", "5m", "1h", "7d", timedelta, or seconds."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["Duration", "format_duration", "parse_duration"]

Duration = str | timedelta | int | float

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")


def parse_duration(value: Duration, *, field: str = "duration") -> timedelta:
    """Turn "1h30m", "30s", a timedelta or a number of seconds into a timedelta."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(f"{field}: expected a duration, got a bool")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        pos, seconds = 0, 0.0
        for match in _PATTERN.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if not text or pos != len(text):
            raise ValueError(
                f"{field}: {value!r} is not a duration (use e.g. '30s', '5m', '1h', '7d')"
            )
    else:
        raise ValueError(f"{field}: expected a duration, got {type(value).__name__}")
    if seconds < 0:
        raise ValueError(f"{field}: a duration cannot be negative ({value!r})")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Write a timedelta the way durations are given: "90s" as "1m30s", "1d" as "1d"."""
    remaining = round(value.total_seconds() * 1000)
    if remaining == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    if remaining:
        parts.append(f"{remaining}ms")
    return "".join(parts)
