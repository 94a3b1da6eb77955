"""A run's lease as the worker holding it knows it: a deadline on the monotonic clock."""

from __future__ import annotations

import time

__all__ = ["Lease"]


class Lease:
    """The lease of one run held by one worker, valid until a local monotonic deadline.

    The deadline is counted from the moment the claim (or the latest successful
    heartbeat) was *sent*, so it always falls before the database's own expiry: a worker
    that was paused, starved or partitioned past it knows, without asking the database,
    that another worker may already be executing the run, and starts no new work.
    """

    __slots__ = ("deadline", "handing_back", "run_id", "seconds", "worker_id")

    def __init__(self, run_id: str, worker_id: str, seconds: float, sent_at: float) -> None:
        self.run_id = run_id
        self.worker_id = worker_id
        self.seconds = seconds
        self.deadline = sent_at + seconds
        #: Set while the execution gives the run back (a release, a durable wait, a
        #: parent parking for its children): once that statement commits, the run can be
        #: claimed again, by this worker too, before the execution has quite ended; such a
        #: claim starts a new execution, unlike the renewal of a lease that ran out.
        self.handing_back = False

    def renewed(self, sent_at: float) -> None:
        """A heartbeat sent at ``sent_at`` (monotonic) extended the lease in the database."""
        self.deadline = max(self.deadline, sent_at + self.seconds)

    # Every step asks, twice, so this reads CLOCK_MONOTONIC itself: the clock the claim's
    # send time was read from (anyio.current_time(), the loop's time: time.monotonic()
    # on asyncio, and on uvloop the same clock cached once per loop iteration, so never
    # ahead of it), which makes any difference err towards expiring early. Asking the
    # running loop instead costs a getpid() system call per call on CPython 3.11.
    @property
    def expired(self) -> bool:
        """True once the lease may have run out in the database."""
        return time.monotonic() >= self.deadline

    def remaining(self) -> float:
        """Seconds left before the lease may run out (negative once it has)."""
        return self.deadline - time.monotonic()
