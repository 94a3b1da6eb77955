"""Cron arithmetic for schedules: validating a spec and planning which fire times to run.

Pure functions on top of ``cronsim``: nothing here touches the database. Fire times are
computed in the schedule's own time zone and handed out in UTC. Around a daylight-saving
change cronsim behaves like Debian's cron, which is what docs/schedules.md documents:

- a time that does not exist (02:30 on the spring-forward night in Europe/Paris) fires
  at the first minute after the gap (03:00);
- a time that occurs twice (02:30 on the fall-back night) fires once, at its first
  occurrence; schedules whose hour field is ``*`` keep firing every real hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

__all__ = [
    "CATCHUPS",
    "LATE_AFTER",
    "MAX_CATCHUP",
    "FirePlan",
    "ScheduleSpec",
    "next_fire_after",
    "plan_fires",
]

#: What a schedule does with fire times that were missed (first handled too late).
CATCHUPS = ("skip", "latest", "all")
#: A fire time first handled later than this after it is missed.
LATE_AFTER = timedelta(seconds=10)
#: The most missed fire times ``catchup="all"`` runs at once (the latest ones).
MAX_CATCHUP = 100


@dataclass(frozen=True)
class ScheduleSpec:
    """A validated cron expression, its time zone and its catch-up policy."""

    cron: str
    timezone: str = "UTC"
    catchup: str = "latest"

    def __post_init__(self) -> None:
        if not isinstance(self.cron, str) or len(self.cron.split()) != 5:
            raise ValueError(
                f"cron: expected five fields (minute hour day month weekday), got {self.cron!r}"
            )
        try:
            CronSim(self.cron, datetime(2000, 1, 1, tzinfo=UTC))
        except CronSimError as exc:
            raise ValueError(f"cron: invalid expression {self.cron!r}: {exc}") from None
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(
                f"timezone: unknown time zone {self.timezone!r} (use an IANA name such as "
                "'UTC' or 'Europe/Paris')"
            ) from None
        if self.catchup not in CATCHUPS:
            raise ValueError(
                f"catchup: expected one of {', '.join(CATCHUPS)}, got {self.catchup!r}"
            )

    @property
    def zone(self) -> ZoneInfo:
        """The schedule's time zone."""
        return ZoneInfo(self.timezone)


def next_fire_after(spec: ScheduleSpec, after: datetime) -> datetime:
    """The first fire time strictly after ``after``, in UTC."""
    found: datetime = next(CronSim(spec.cron, after.astimezone(spec.zone)))
    return found.astimezone(UTC)


@dataclass(frozen=True)
class FirePlan:
    """What handling a due schedule at some moment does."""

    #: The fire times that get a run, oldest first (UTC).
    fires: list[datetime]
    #: The fire times that were missed and get no run.
    skipped: int
    #: The schedule's next fire time after this handling.
    next_fire_at: datetime


def _due_times(spec: ScheduleSpec, since: datetime, now: datetime) -> list[datetime]:
    """Fire times in [since, now], newest first, at most MAX_CATCHUP + 2 of them.

    Walking backwards from now keeps a schedule that was down for a year from iterating
    over every minute of it: only the latest times can ever be run.
    """
    found: list[datetime] = []
    for t in CronSim(spec.cron, (now + timedelta(minutes=1)).astimezone(spec.zone), reverse=True):
        at = t.astimezone(UTC)
        if at > now:
            continue
        if at < since or len(found) > MAX_CATCHUP + 1:
            break
        found.append(at)
    return found


def plan_fires(spec: ScheduleSpec, next_fire_at: datetime, now: datetime) -> FirePlan:
    """Which of the fire times from ``next_fire_at`` up to ``now`` start a run."""
    due = _due_times(spec, next_fire_at, now)
    on_time = [t for t in due if now - t <= LATE_AFTER]
    missed = [t for t in due if now - t > LATE_AFTER]
    if spec.catchup == "skip":
        kept: list[datetime] = []
    elif spec.catchup == "latest":
        kept = missed[:1]
    else:
        kept = missed[:MAX_CATCHUP]
    fires = sorted(kept + on_time)
    # Times older than the walk reached are missed too; count them only roughly (cheaply).
    skipped = len(missed) - len(kept)
    return FirePlan(fires, skipped, next_fire_after(spec, now))
