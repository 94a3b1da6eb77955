"""Helpers for testing your own workflows against a real database.

Durable waits make workflows hard to test by waiting: a run that sleeps for two days
would keep a test busy for two days. ``fire_timers`` makes such timers due now, so the
workers that hold nothing for the run (in this process or any other) continue it at
once, exactly as they would when the time came::

    from forgeflow.testing import fire_timers

    run_id = await ff.start(send_reminder, user_id)
    ...                               # the run reaches ctx.sleep("2d") and waits
    await fire_timers(ff, run_id)      # the two days are over
    assert await ff.result(run_id, timeout=10) == "reminded"

Timers are durable sleeps (``ctx.sleep``, ``ctx.sleep_until``, the pauses of
``ctx.poll``) and the delays between retries of a step. Timeouts (hooks, events, the
workflow's own deadline) are not timers in this sense and are left alone.
"""

from __future__ import annotations

from datetime import datetime

from ._client import Forgeflow

__all__ = ["fire_timers"]


async def fire_timers(
    client: Forgeflow, run_id: str | None = None, *, to: datetime | None = None
) -> list[str]:
    """Make the timers of waiting runs due now (or at ``to``); returns those runs' ids.

    With ``run_id`` only that run's timer is moved, otherwise every waiting run's. The
    checkpointed wake time moves with the run, so the replay does not sleep again, and
    workers are notified so that an idle one picks the runs up without polling. A timer
    due before ``to`` keeps its earlier time; a run that is not waiting on a timer (but
    on a hook, an event or a child) is neither touched nor returned.
    """
    when = client._clock.now() if to is None else to
    if when.tzinfo is None:
        raise ValueError("fire_timers: 'to' must be timezone-aware")
    return await client._store.fire_timers(run_id, when)
