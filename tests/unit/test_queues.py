"""Queue declarations and start options: parsed and checked before anything is written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from forgeflow import Debounce, Queue, Registry, WorkflowContext, workflow
from forgeflow._queues import parse_rate
from forgeflow._start_options import CLOCK_SKEW, MAX_KEY_LENGTH, start_options

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100/min", (100, 60.0)),
        ("10/s", (10, 1.0)),
        ("5/2s", (5, 2.0)),
        ("20 / sec", (20, 1.0)),
        ("1000/h", (1000, 3600.0)),
        ("3/0.5s", (3, 0.5)),
        ("7/day", (7, 86400.0)),
    ],
)
def test_rates_parse_into_runs_per_period(text: str, expected: tuple[int, float]) -> None:
    """A rate is N runs per period: "100/min", "10/s", "5/2s"."""
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "10", "0/s", "-1/s", "10/0s", "10/fortnight", "1/s/s"])
def test_bad_rates_are_refused_naming_the_field(text: str) -> None:
    """A malformed or empty rate raises ValueError naming ``rate``."""
    with pytest.raises(ValueError, match=r"^rate:"):
        Queue("q", rate=text)


@pytest.mark.parametrize("field", ["concurrency", "key_concurrency"])
@pytest.mark.parametrize("value", [0, -3, 1.5, True, "5"])
def test_non_positive_or_non_integer_limits_are_refused(field: str, value: object) -> None:
    """Limits are positive integers; anything else names its field."""
    with pytest.raises(ValueError, match=f"^{field}:"):
        Queue("q", **{field: value})  # type: ignore[arg-type]


def test_a_queue_without_a_name_is_refused() -> None:
    """The name is required and not blank."""
    with pytest.raises(ValueError, match=r"^name:"):
        Queue("  ")


def test_a_queue_knows_whether_it_has_limits() -> None:
    """limited is true when any limit is set, and the rate is kept parsed."""
    assert not Queue("plain").limited
    limited = Queue("emails", concurrency=10, key_concurrency=1, rate="100/min")
    assert limited.limited
    assert (limited.rate_limit, limited.rate_period) == (100, 60.0)


def test_workflow_accepts_a_queue_or_a_name_and_registers_the_queue() -> None:
    """@workflow(queue=Queue) registers the queue in the workflow's registry."""
    registry = Registry()
    emails = Queue("emails", concurrency=2)

    @workflow(queue=emails, registry=registry)
    async def send(ctx: WorkflowContext) -> None:
        return None

    @workflow(queue="reports", registry=registry)
    async def report(ctx: WorkflowContext) -> None:
        return None

    assert (send.queue, report.queue) == ("emails", "reports")
    assert registry.queues() == [emails]
    assert registry.queue_names() == ["emails", "reports"]


def test_one_queue_name_cannot_be_declared_with_two_sets_of_limits() -> None:
    """Two different Queue objects under one name in a registry are refused."""
    registry = Registry()
    registry.add_queue(Queue("emails", concurrency=2))
    registry.add_queue(Queue("emails", concurrency=2))
    with pytest.raises(ValueError, match=r"^queue:"):
        registry.add_queue(Queue("emails", concurrency=3))


def test_start_options_default_to_claimable_now_at_priority_zero() -> None:
    """No options: claimable at once, priority 0, no key."""
    options = start_options(NOW)
    assert (options.runnable_at, options.priority, options.key) == (NOW, 0, None)


def test_delay_and_start_at_set_when_the_run_becomes_claimable() -> None:
    """delay= is relative to now; start_at= is a time-zone aware instant."""
    assert start_options(NOW, delay="5m").runnable_at == NOW + timedelta(minutes=5)
    later = NOW + timedelta(hours=2)
    assert start_options(NOW, start_at=later).runnable_at == later
    # Slightly in the past (clock skew): claimable now.
    assert start_options(NOW, start_at=NOW - timedelta(seconds=5)).runnable_at == NOW


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"priority": "high"}, "priority"),
        ({"priority": 1.5}, "priority"),
        ({"priority": True}, "priority"),
        ({"priority": 2**40}, "priority"),
        ({"key": ""}, "key"),
        ({"key": 42}, "key"),
        ({"key": "k" * (MAX_KEY_LENGTH + 1)}, "key"),
        ({"start_at": datetime(2030, 1, 1)}, "start_at"),
        ({"start_at": NOW - CLOCK_SKEW - timedelta(seconds=1)}, "start_at"),
        ({"start_at": "tomorrow"}, "start_at"),
        ({"start_at": NOW, "delay": "1s"}, "start_at"),
        ({"delay": "soon"}, "delay"),
        ({"delay": -1}, "delay"),
        ({"debounce": "key"}, "debounce"),
        ({"debounce": Debounce("k"), "delay": "1s"}, "debounce"),
    ],
)
def test_bad_start_options_raise_value_error_naming_the_field(
    options: dict[str, object], field: str
) -> None:
    """Each bad option names itself in the ValueError."""
    with pytest.raises(ValueError, match=f"^{field}:"):
        start_options(NOW, **options)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"key": ""}, "debounce.key"),
        ({"key": "k", "window": "0s"}, "debounce.window"),
        ({"key": "k", "window": "later"}, "debounce.window"),
        ({"key": "k", "window": "10s", "max_wait": "5s"}, "debounce.max_wait"),
    ],
)
def test_bad_debounce_settings_name_their_field(kwargs: dict[str, object], field: str) -> None:
    """Debounce checks its key, window and max_wait when built."""
    with pytest.raises(ValueError, match=f"^{field}:"):
        Debounce(**kwargs)  # type: ignore[arg-type]
