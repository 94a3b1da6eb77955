"""Duration parsing: the strings, timedeltas and numbers every timeout and delay accepts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forgeflow import parse_duration
from forgeflow._durations import format_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("250ms", timedelta(milliseconds=250)),
        ("1.5s", timedelta(seconds=1.5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d 2h 3m 4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("  10M ", timedelta(minutes=10)),
        ("0s", timedelta(0)),
    ],
)
def test_duration_strings_are_parsed(text: str, expected: timedelta) -> None:
    """Unit suffixes ms, s, m, h, d and w combine and ignore spaces and case."""
    assert parse_duration(text) == expected


def test_timedeltas_and_numbers_are_accepted() -> None:
    """A timedelta is kept as is and a number is a count of seconds."""
    assert parse_duration(timedelta(minutes=2)) == timedelta(minutes=2)
    assert parse_duration(45) == timedelta(seconds=45)
    assert parse_duration(0.5) == timedelta(milliseconds=500)


@pytest.mark.parametrize("bad", ["", "abc", "5", "5x", "s", "1h 30", "-1s", "1h-", "1..5s"])
def test_malformed_strings_are_rejected_with_an_example(bad: str) -> None:
    """A string that is not a duration raises ValueError showing valid forms."""
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [-1, -0.5, timedelta(seconds=-1)])
def test_negative_durations_are_rejected(bad: float | timedelta) -> None:
    """A negative number or timedelta raises ValueError."""
    with pytest.raises(ValueError, match="negative"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [True, None, [1], {"s": 1}])
def test_other_types_are_rejected(bad: object) -> None:
    """Booleans and non-duration types raise ValueError instead of being coerced."""
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(bad)  # type: ignore[arg-type]


def test_the_field_name_is_in_the_message() -> None:
    """The error names the option that held the bad value."""
    with pytest.raises(ValueError, match=r"^timeout: "):
        parse_duration("soon", field="timeout")


@given(
    st.integers(0, 400),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
    st.integers(0, 999),
)
def test_combined_units_add_up(days: int, hours: int, minutes: int, seconds: int, ms: int) -> None:
    """Any combination of units equals the sum of its parts."""
    text = f"{days}d{hours}h{minutes}m{seconds}s{ms}ms"
    expected = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds, milliseconds=ms)
    assert abs(parse_duration(text) - expected) < timedelta(microseconds=2)


@given(st.integers(min_value=0, max_value=10**10))
def test_a_formatted_duration_parses_back_to_itself(ms: int) -> None:
    """format_duration writes durations in the syntax parse_duration reads, to the ms."""
    value = timedelta(milliseconds=ms)
    assert parse_duration(format_duration(value)) == value


def test_durations_are_formatted_in_their_largest_units() -> None:
    """90 s reads "1m30s", a day "1d", nothing "0s"."""
    assert format_duration(timedelta(seconds=90)) == "1m30s"
    assert format_duration(timedelta(days=1)) == "1d"
    assert format_duration(timedelta(0)) == "0s"
