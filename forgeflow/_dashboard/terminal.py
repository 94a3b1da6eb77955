"""The terminal views of the CLI: tables, and a run as a live step timeline."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from .._models import StepRecord, WorkflowRecord, WorkflowStatus

__all__ = ["Timeline", "brief", "dump", "out", "table", "ts", "waiting_on"]


def out(text: str = "", stream: TextIO | None = None) -> None:
    """Print a line to stdout (or ``stream``) at once."""
    print(text, file=stream or sys.stdout, flush=True)


def dump(value: Any) -> None:
    """Print ``value`` as one line of JSON."""
    out(json.dumps(value, ensure_ascii=False))


def ts(moment: datetime | None, *, short: bool = False) -> str:
    """A UTC timestamp (``short``: the time of day with milliseconds); "-" for None."""
    if moment is None:
        return "-"
    moment = moment.astimezone(UTC)
    if short:
        return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    return moment.strftime("%Y-%m-%d %H:%M:%S") + "Z"


def duration(start: datetime | None, end: datetime | None) -> str:
    """The time between two moments, in the most readable unit."""
    if start is None or end is None:
        return "-"
    seconds = (end - start).total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print rows as left-aligned columns under ``headers``."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        out("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def waiting_on(record: WorkflowRecord) -> str:
    """What a waiting run waits for, in words ("" if it does not wait)."""
    wait = record.wait if isinstance(record.wait, dict) else None
    if wait and wait.get("kind") == "no_worker" and not record.is_terminal:
        return str(wait.get("detail") or "no live worker can take this run")
    if record.status is not WorkflowStatus.WAITING or not wait:
        return ""
    kind = wait.get("kind")
    if kind == "hook":
        return f"decision on {wait.get('step')} (hook {wait.get('hook_id')})"
    if kind in ("sleep", "retry"):
        return f"{kind} until {ts(record.wake_at)}"
    if kind == "event":
        return f"event {wait.get('event_type')}"
    if kind == "child":
        return f"child run {wait.get('child_run_id')}"
    return str(kind or "")


def brief(record: WorkflowRecord) -> dict[str, Any]:
    """A run as JSON without its input, output, steps and hooks (for lists)."""
    return record.model_dump(mode="json", exclude={"steps", "hooks", "input", "output"})


class Timeline:
    """Prints a run as a step timeline, then (watching) one line per change."""

    def __init__(self) -> None:
        self._steps: dict[str, tuple[str, bool]] = {}
        self._hooks: set[str] = set()
        self._status: tuple[str, str] | None = None
        self._lines: list[tuple[datetime, str]] = []

    def header(self, record: WorkflowRecord) -> None:
        """The run's identity, status and times."""
        rows = [
            ("run", record.run_id),
            ("workflow", f"{record.workflow} v{record.version}"),
            (
                "status",
                record.status.value + (f" ({record.end_reason})" if record.end_reason else ""),
            ),
            ("created", ts(record.created_at)),
            ("started", ts(record.started_at)),
            ("ended", ts(record.completed_at)),
            ("duration", duration(record.started_at, record.completed_at)),
        ]
        if waiting_on(record):
            rows.append(("waiting", waiting_on(record)))
        if record.restarted_from:
            rows.append(("restarts", record.restarted_from))
        if record.forked_from:
            rows.append(("forked", f"{record.forked_from} from step {record.forked_from_step}"))
        if record.error:
            rows.append(("error", json.dumps(record.error, ensure_ascii=False)))
        if record.status is WorkflowStatus.COMPLETED:
            rows.append(("output", json.dumps(record.output, ensure_ascii=False)))
        for key, value in rows:
            out(f"{key:<9} {value}")

    def table(self, record: WorkflowRecord) -> None:
        """Every step: start, end, duration, attempts, and its compensation."""
        if not record.steps:
            out("\n(no steps yet)")
            return
        rows = []
        for step in record.steps:
            started = step.started_at or step.completed_at
            ended = ts(step.completed_at, short=True)
            if step.status.value == "waiting":
                ended = f"until {ts(step.wake_at)}"
            rows.append(
                [
                    step.name,
                    step.kind,
                    step.status.value,
                    ts(started, short=True),
                    ended,
                    duration(started, step.completed_at),
                    str(step.attempts),
                ]
            )
            if step.compensated_at is not None:
                outcome = "failed" if step.compensation_error else "compensated"
                rows.append(
                    [
                        f"  ↺ {step.name}",
                        "undo",
                        outcome,
                        ts(step.compensated_at, short=True),
                        "",
                        "",
                        "",
                    ]
                )
        out()
        table(["STEP", "KIND", "STATUS", "STARTED", "ENDED", "DURATION", "ATTEMPTS"], rows)

    def update(self, record: WorkflowRecord) -> None:
        """Print what changed since the previous record (everything, the first time)."""
        if self._status is None:
            out(f"run {record.run_id} ({record.workflow} v{record.version})")
        status = (record.status.value, waiting_on(record))
        for step in record.steps:
            self._step(step)
        for hook in record.hooks:
            if hook.status.value in ("consumed", "expired") and hook.hook_id not in self._hooks:
                self._hooks.add(hook.hook_id)
                decision = hook.decision.value if hook.decision else hook.on_timeout.value
                how = " (timed out)" if hook.status.value == "expired" else ""
                data = f" {json.dumps(hook.data, ensure_ascii=False)}" if hook.data else ""
                self._line(hook.resolved_at, f"hook {hook.name} decided {decision}{how}{data}")
        if status != self._status:
            when = record.completed_at if record.is_terminal else None
            self._line(when, self._status_text(record))
        self._status = status
        # What one record reveals happened at different moments: print it in time order
        # (a status line without a time of its own is now, after everything it follows).
        self._lines.sort(key=lambda line: line[0])
        for when, text in self._lines:
            out(f"{ts(when, short=True)}  {text}")
        self._lines.clear()

    def _step(self, step: StepRecord) -> None:
        key = (step.status.value, step.compensated_at is not None)
        if self._steps.get(step.name) == key:
            return
        previous = self._steps.get(step.name)
        self._steps[step.name] = key
        if previous is None or previous[0] != key[0]:
            started = step.started_at or step.completed_at
            extra = ""
            if step.completed_at is not None and step.kind == "step":
                extra = f" in {duration(started, step.completed_at)}"
            running = step.status.value == "running" and step.kind == "step"
            if running:
                extra += f" (attempt {step.attempts})"
            elif step.attempts > 1:
                extra += f" after {step.attempts} attempts"
            if step.status.value == "waiting" and step.wake_at is not None:
                extra += f" until {ts(step.wake_at)}"
            when = step.completed_at or started
            self._line(when, f"{step.kind} {step.name} {step.status.value}{extra}")
        if key[1] and (previous is None or not previous[1]):
            failed = " FAILED" if step.compensation_error else ""
            self._line(step.compensated_at, f"compensation of {step.name} ran{failed}")

    @staticmethod
    def _status_text(record: WorkflowRecord) -> str:
        text = record.status.value
        if waiting_on(record):
            text += f": {waiting_on(record)}"
        if record.end_reason:
            text += f" ({record.end_reason})"
        if record.is_terminal and record.error:
            error = record.error if isinstance(record.error, dict) else {}
            kind = error.get("error_type") or error.get("type")
            text += f": {kind + ': ' if kind else ''}{error.get('message', '')}"
        if record.status is WorkflowStatus.COMPLETED:
            text += f", output {json.dumps(record.output, ensure_ascii=False)}"
        return text

    def _line(self, when: datetime | None, text: str) -> None:
        self._lines.append((when or datetime.now(UTC), text))
