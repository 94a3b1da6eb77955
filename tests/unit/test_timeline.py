"""The CLI's run views: `status --watch` lines in time order with decisions and output,
and the reason a run is not taken shown in words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from forgeflow import HookRecord, StepRecord, WorkflowRecord
from forgeflow._dashboard.terminal import Timeline, waiting_on

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def record(status: str, steps: list[StepRecord], **fields: object) -> WorkflowRecord:
    return WorkflowRecord.model_validate(
        {
            "run_id": "r1",
            "workflow": "approval",
            "version": 1,
            "queue": "default",
            "status": status,
            "created_at": T0,
            "started_at": T0,
            "steps": steps,
            **fields,
        }
    )


def step(name: str, kind: str, status: str, start: float, end: float | None) -> StepRecord:
    return StepRecord(
        name=name,
        kind=kind,
        status=status,  # type: ignore[arg-type]
        started_at=at(start),
        completed_at=None if end is None else at(end),
    )


def hook(decided: float) -> HookRecord:
    return HookRecord.model_validate(
        {
            "hook_id": "h1",
            "run_id": "r1",
            "workflow": "approval",
            "name": "manager",
            "step": "hook:manager",
            "status": "consumed",
            "on_timeout": "reject",
            "decision": "approve",
            "data": {"by": "dana"},
            "created_at": at(1),
            "resolved_at": at(decided),
        }
    )


def test_watch_prints_a_records_changes_in_time_order_then_the_decision_and_output(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Steps are printed by time whatever their order; a decision and the output appear."""
    timeline = Timeline()
    later = step("send", "step", "completed", 5, 6)
    earlier = step("prepare", "step", "completed", 0, 1)
    waiting = step("sleep", "sleep", "waiting", 2, None)
    waiting.wake_at = at(4)
    timeline.update(record("waiting", [later, earlier, waiting]))
    first = capsys.readouterr().out.splitlines()
    assert first[0] == "run r1 (approval v1)"
    assert [line.split("  ", 1)[1] for line in first[1:]] == [
        "step prepare completed in 1.0 s",
        "sleep sleep waiting until 2026-01-05 09:00:04Z",
        "step send completed in 1.0 s",
        "waiting",
    ]
    woke = step("sleep", "sleep", "completed", 2, 4)
    done = record(
        "completed",
        [earlier, woke, later],
        hooks=[hook(3)],
        output={"ok": True},
        completed_at=at(7),
    )
    timeline.update(done)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        '09:00:03.000  hook manager decided approve {"by": "dana"}',
        "09:00:04.000  sleep sleep completed",
        '09:00:07.000  completed, output {"ok": true}',
    ]


def test_a_run_no_worker_can_take_says_why_in_words() -> None:
    """The no_worker reason, kept in the record's wait, is what the views print."""
    detail = "no live worker executes approval v1 on queue 'default'"
    stuck = record("created", [], wait={"kind": "no_worker", "detail": detail})
    assert waiting_on(stuck) == detail
    assert waiting_on(record("completed", [], wait={"kind": "no_worker"})) == ""


def test_a_running_step_line_names_its_attempt(capsys: pytest.CaptureFixture[str]) -> None:
    """A running step is printed with the attempt it is on."""
    running = step("charge", "step", "running", 0, None)
    running.attempts = 2
    Timeline().update(record("running", [running]))
    assert "step charge running (attempt 2)" in capsys.readouterr().out
