"""RetryPolicy: how long to wait between attempts and which errors are retried."""

from __future__ import annotations

from datetime import timedelta

import pytest

from forgeflow import RetryPolicy


def test_delays_grow_by_the_backoff_factor() -> None:
    """The delay after attempt n is delay * backoff ** (n - 1)."""
    policy = RetryPolicy(attempts=5, delay="1s", backoff=2.0)
    assert [policy.delay_after(n) for n in range(1, 5)] == [1.0, 2.0, 4.0, 8.0]


def test_max_delay_caps_the_growth() -> None:
    """No delay exceeds max_delay."""
    policy = RetryPolicy(attempts=10, delay="500ms", backoff=3.0, max_delay="5s")
    assert [policy.delay_after(n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 5.0, 5.0]


def test_a_backoff_of_one_keeps_the_delay_constant() -> None:
    """backoff=1.0 retries at a fixed interval."""
    policy = RetryPolicy(delay=timedelta(seconds=3), backoff=1.0)
    assert {policy.delay_after(n) for n in range(1, 6)} == {3.0}


def test_a_zero_delay_retries_at_once() -> None:
    """delay=0 never waits."""
    assert RetryPolicy(delay=0).delay_after(3) == 0.0


def test_defaults_are_three_attempts_one_second_doubling() -> None:
    """RetryPolicy() tries three times, waiting 1 s then 2 s, for any Exception."""
    policy = RetryPolicy()
    assert policy.attempts == 3
    assert [policy.delay_after(1), policy.delay_after(2)] == [1.0, 2.0]
    assert policy.retry_on == (Exception,)


def test_retry_on_selects_the_errors_worth_retrying() -> None:
    """Only instances of retry_on (a class or a tuple) are retried."""
    single = RetryPolicy(retry_on=ConnectionError)  # type: ignore[arg-type]
    assert single.retry_on == (ConnectionError,)
    assert single.retries(ConnectionResetError())
    assert not single.retries(ValueError())
    several = RetryPolicy(retry_on=(KeyError, TimeoutError))
    assert several.retries(TimeoutError()) and several.retries(KeyError())
    assert not several.retries(RuntimeError())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"attempts": 0}, "attempts"),
        ({"backoff": 0.5}, "backoff"),
        ({"delay": "soon"}, "delay"),
        ({"max_delay": -1}, "max_delay"),
    ],
)
def test_invalid_policies_are_rejected(options: dict[str, object], message: str) -> None:
    """Fewer than one attempt, a shrinking backoff or a bad duration raise ValueError."""
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**options)  # type: ignore[arg-type]


def test_a_policy_is_immutable_and_comparable() -> None:
    """Policies are frozen values: equal options give equal policies."""
    assert RetryPolicy(attempts=2, delay="1s") == RetryPolicy(attempts=2, delay="1s")
    with pytest.raises(AttributeError):
        RetryPolicy().attempts = 5  # type: ignore[misc]
