"""Helpers for testing your own workflows against a real database.

A workflow that waits 72 hours for an approval and then sleeps for a week is tested in
milliseconds by moving the engine's clock instead of waiting:

```python
from datetime import timedelta

async def test_unanswered_document_is_rolled_back(forgeflow_env):
    run_id = await forgeflow_env.start(document_approval, doc)
    await forgeflow_env.run_until_waiting(run_id)     # waits on the hook
    await forgeflow_env.advance(timedelta(hours=72))   # nobody answered
    assert await forgeflow_env.compensations(run_id) == ["reserve_slot"]
```

- ``ManualClock`` is engine time that moves only when told to;
- ``WorkflowTestEnv`` executes runs in-process on such a clock: ``advance`` fires what
  falls due in order, ``approve`` / ``reject`` / ``escalate`` answer hooks, ``steps``
  and ``compensations`` tell what ran, ``fail_step`` and ``crash_after`` inject
  failures and worker crashes;
- the pytest plugin (installed with forgeflow: ``forgeflow.pytest_plugin``) gives the
  fixtures ``forgeflow_database``, ``forgeflow_client`` and ``forgeflow_env``;
- ``fire_timers`` makes the durable sleeps of waiting runs due now, for tests that run
  real workers on the real clock.

Production code is untouched by all of this: the engine reads its time from whatever
clock its client was given, and the env injects failures by handing the executor a
subclass of ``WorkflowContext``, so no test-only check sits on the engine's path.
"""

from __future__ import annotations

from datetime import datetime

from .._client import Forgeflow
from ._clock import ManualClock
from ._context import InjectedFailure, SimulatedCrash
from ._env import StepSummary, WorkflowTestEnv

__all__ = [
    "InjectedFailure",
    "ManualClock",
    "SimulatedCrash",
    "StepSummary",
    "WorkflowTestEnv",
    "fire_timers",
]


async def fire_timers(
    client: Forgeflow, run_id: str | None = None, *, to: datetime | None = None
) -> list[str]:
    """Make the timers of waiting runs due now (or at ``to``); returns those runs' ids.

    Timers are durable sleeps (``ctx.sleep``, ``ctx.sleep_until``, the pauses of
    ``ctx.poll``) and the delays between retries of a step; timeouts (hooks, events, the
    workflow's own deadline) are left alone. With ``run_id`` only that run's timer is
    moved, otherwise every waiting run's. The checkpointed wake time moves with the run,
    so the replay does not sleep again, and workers are notified so that an idle one
    picks the runs up without polling. A timer due before ``to`` keeps its earlier time;
    a run that is not waiting on a timer (but on a hook, an event or a child) is neither
    touched nor returned:

    ```python
    run_id = await ff.start(send_reminder, user_id)
    ...                                # the run reaches ctx.sleep("2d") and waits
    await fire_timers(ff, run_id)      # the two days are over
    assert await ff.result(run_id, timeout=10) == "reminded"
    ```
    """
    if to is not None and to.tzinfo is None:
        raise ValueError("fire_timers: 'to' must be timezone-aware")
    return await client.fire_timers(run_id, to)
