"""OpenTelemetry spans for runs and steps (extra ``otel``).

Pass :class:`OpenTelemetryListener` as a lifecycle listener::

    from forgeflow.otel import OpenTelemetryListener

    async with Forgeflow.connect(listeners=[OpenTelemetryListener()]) as ff: ...

Each execution of a run (from ``run_started`` or ``run_resumed`` until it suspends or
finishes) becomes a span named ``forgeflow.run <workflow>``; each completed or failed
step becomes a child span ``forgeflow.step <name>`` covering its duration. A run that
waits for days therefore shows as several short spans sharing the ``forgeflow.run_id``
attribute, not one span held open across processes.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from ._events import LifecycleEvent

__all__ = ["OpenTelemetryListener"]

_ENDS = {"run_suspended", "run_finished"}


class OpenTelemetryListener:
    """A lifecycle listener that records runs and steps as OpenTelemetry spans."""

    def __init__(self, tracer_provider: Any = None) -> None:
        self._tracer = trace.get_tracer("forgeflow", tracer_provider=tracer_provider)
        self._runs: dict[str, Span] = {}

    def __call__(self, event: LifecycleEvent) -> None:
        """Turn one lifecycle event into span starts, ends or events."""
        name, fields = event.name, event.fields
        if name in ("run_started", "run_resumed") and event.run_id not in self._runs:
            self._runs[event.run_id] = self._tracer.start_span(
                f"forgeflow.run {event.workflow}",
                attributes={"forgeflow.run_id": event.run_id, "forgeflow.workflow": event.workflow},
            )
            return
        run_span = self._runs.get(event.run_id)
        if run_span is None:
            return
        if name in ("step_completed", "step_failed"):
            self._step(run_span, event)
        elif name in _ENDS:
            del self._runs[event.run_id]
            status = fields.get("status")
            if status is not None:
                run_span.set_attribute("forgeflow.status", str(status))
            if status in ("failed", "compensated"):
                run_span.set_status(Status(StatusCode.ERROR, str(fields.get("error") or status)))
            run_span.end()
        else:
            run_span.add_event(name, {k: str(v) for k, v in fields.items()})

    def _step(self, run_span: Span, event: LifecycleEvent) -> None:
        fields = event.fields
        end = time.time_ns()
        start = end - int(float(fields.get("duration_ms") or 0) * 1_000_000)
        context = trace.set_span_in_context(run_span)
        span = self._tracer.start_span(
            f"forgeflow.step {fields.get('step')}",
            context=context,
            start_time=start,
            attributes={
                "forgeflow.run_id": event.run_id,
                "forgeflow.step": str(fields.get("step")),
                "forgeflow.attempt": int(fields.get("attempts") or fields.get("attempt") or 1),
            },
        )
        if event.name == "step_failed":
            span.set_status(Status(StatusCode.ERROR, str(fields.get("error"))))
        span.end(end_time=end)
