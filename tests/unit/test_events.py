"""Lifecycle events: logged through structlog and handed to listeners that cannot break runs."""

from __future__ import annotations

import structlog
from structlog.testing import capture_logs

from forgeflow import LifecycleEvent, WorkflowStatus
from forgeflow._events import EVENT_NAMES, Emitter


async def test_an_event_is_logged_and_given_to_every_listener() -> None:
    """emit logs the event with its fields and passes one LifecycleEvent to each listener."""
    seen: list[LifecycleEvent] = []
    awaited: list[str] = []

    async def async_listener(event: LifecycleEvent) -> None:
        awaited.append(event.name)

    emitter = Emitter([seen.append, async_listener])
    with capture_logs() as logs:
        log = structlog.get_logger("test").bind(run_id="r1", workflow="w")
        await emitter.emit(log, "step_completed", "r1", "w", step="charge", attempts=2)
    assert seen == [LifecycleEvent("step_completed", "r1", "w", {"step": "charge", "attempts": 2})]
    assert awaited == ["step_completed"]
    assert logs == [
        {
            "event": "step_completed",
            "run_id": "r1",
            "workflow": "w",
            "step": "charge",
            "attempts": 2,
            "log_level": "debug",
        }
    ]


async def test_a_failing_listener_is_logged_and_the_others_still_run() -> None:
    """A listener that raises is logged as listener_failed; later listeners still get the event."""
    later: list[str] = []

    def broken(event: LifecycleEvent) -> None:
        raise RuntimeError("bug in listener")

    emitter = Emitter([broken, lambda e: later.append(e.name)])
    with capture_logs() as logs:
        log = structlog.get_logger("test").bind(run_id="r1", workflow="w")
        await emitter.emit(log, "run_finished", "r1", "w", status="completed")
    assert later == ["run_finished"]
    failures = [entry for entry in logs if entry["event"] == "listener_failed"]
    assert len(failures) == 1
    assert failures[0]["listener"] == "broken"
    assert failures[0]["run_id"] == "r1"


async def test_failures_and_cancels_are_logged_as_warnings() -> None:
    """step_failed and run_cancelled are warnings; run_started is info."""
    emitter = Emitter()
    with capture_logs() as logs:
        log = structlog.get_logger("test")
        for name in ("step_failed", "run_cancelled", "run_started"):
            await emitter.emit(log, name, "r", "w")
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("step_failed", "warning"),
        ("run_cancelled", "warning"),
        ("run_started", "info"),
    ]


def test_the_documented_event_names() -> None:
    """The lifecycle events are the eight the design names."""
    assert EVENT_NAMES == (
        "run_started",
        "step_completed",
        "step_failed",
        "run_suspended",
        "run_resumed",
        "compensation_ran",
        "run_cancelled",
        "run_finished",
    )


def test_terminal_statuses() -> None:
    """Only completed, compensated and failed are terminal."""
    assert {s.value for s in WorkflowStatus if s.is_terminal} == {
        "completed",
        "compensated",
        "failed",
    }
