"""OpenTelemetry spans built from lifecycle events."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from forgeflow import LifecycleEvent
from forgeflow.otel import OpenTelemetryListener


def test_a_run_execution_and_its_steps_become_nested_spans() -> None:
    """run_started..run_finished is one span; each step is a child span with its duration."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    listener = OpenTelemetryListener(tracer_provider=provider)

    listener(LifecycleEvent("run_started", "r1", "billing"))
    listener(
        LifecycleEvent("step_completed", "r1", "billing", {"step": "charge", "duration_ms": 5})
    )
    listener(LifecycleEvent("step_failed", "r1", "billing", {"step": "mail", "error": "smtp"}))
    listener(LifecycleEvent("run_finished", "r1", "billing", {"status": "compensated"}))

    spans = {s.name: s for s in exporter.get_finished_spans()}
    run = spans["forgeflow.run billing"]
    charge = spans["forgeflow.step charge"]
    assert charge.parent is not None and charge.parent.span_id == run.context.span_id
    assert charge.end_time - charge.start_time == 5_000_000
    assert not spans["forgeflow.step mail"].status.is_ok
    assert run.attributes is not None and run.attributes["forgeflow.status"] == "compensated"
    assert not run.status.is_ok
