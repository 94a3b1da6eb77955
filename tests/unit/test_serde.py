"""JSON encoding of step results: readable JSON, a type tag, and typed decoding."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Awaitable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from forgeflow import SerializationError
from forgeflow._serde import decode_result, dumps, encode_result, error_info, loads, return_type


class Item(BaseModel):
    """A nested model."""

    sku: str
    price: Decimal


class Cart(BaseModel):
    """A model result with nested models and rich types."""

    id: uuid.UUID
    items: list[Item]
    created: dt.datetime


class Outer:
    class Inner(BaseModel):
        """A model nested in a class: found by its qualified name."""

        n: int


CART = Cart(
    id=uuid.UUID("0b5c6fd2-1c3b-4a7e-9f0a-2d8e7c6b5a41"),
    items=[Item(sku="A", price=Decimal("1.99")), Item(sku="B", price=Decimal("0.01"))],
    created=dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC),
)

ROUND_TRIPS: list[Any] = [
    CART,
    Outer.Inner(n=3),
    (1, "two", [3]),
    {1, 2, 3},
    frozenset({"x"}),
    dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC),
    dt.datetime(2024, 1, 1, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    dt.date(1999, 12, 31),
    dt.time(23, 59, 1, 5),
    dt.timedelta(days=2, microseconds=1),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Decimal("3.141592653589793238462643383279"),
    b"bytes",
    {"nested": {"list": [1, 2.5, None, True, "s"]}},
    [1, [2, [3]]],
    "text ✓",
    0,
    -(2**63),
    1.0e-9,
    True,
    None,
]


@pytest.mark.parametrize("value", ROUND_TRIPS, ids=lambda v: type(v).__name__)
def test_results_round_trip_with_their_type(value: Any) -> None:
    """Encoding then decoding gives back an equal value of the same type."""
    text, tag = encode_result(value, "step")
    back = decode_result(text, tag)
    assert back == value
    assert type(back) is type(value)


@pytest.mark.parametrize("value", ROUND_TRIPS, ids=lambda v: type(v).__name__)
def test_encoded_results_are_plain_json(value: Any) -> None:
    """The stored text is JSON any client can read (never pickle)."""
    text, _ = encode_result(value, "step")
    json.loads(text)


def test_models_are_tagged_with_their_import_path() -> None:
    """A model's tag names its module and qualified name; builtins need no tag."""
    assert encode_result(CART)[1] == f"model:{__name__}:Cart"
    assert encode_result(Outer.Inner(n=1))[1] == f"model:{__name__}:Outer.Inner"
    assert encode_result({"a": 1})[1] is None
    assert encode_result([1])[1] is None
    assert encode_result(dt.date(2024, 1, 1))[1] == "date"


def test_an_annotation_wins_over_the_tag() -> None:
    """Given a type, decoding validates against it (e.g. the elements of a tuple)."""
    when = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    text, tag = encode_result((when, uuid.UUID(int=1)))
    assert decode_result(text, tag) == (
        when.isoformat().replace("+00:00", "Z"),
        str(uuid.UUID(int=1)),
    )
    assert decode_result(text, tag, tuple[dt.datetime, uuid.UUID]) == (when, uuid.UUID(int=1))
    assert decode_result('[{"n": 1}]', None, list[Outer.Inner]) == [Outer.Inner(n=1)]


def test_an_unknown_tag_decodes_as_plain_json() -> None:
    """A tag this version does not know falls back to the JSON value."""
    assert decode_result('{"a": 1}', "something-new") == {"a": 1}
    assert decode_result(None, "model:x:Y") is None


def test_a_tag_that_names_something_other_than_a_model_is_refused() -> None:
    """Decoding never calls anything but a pydantic model validator."""
    with pytest.raises(TypeError, match="not name a pydantic model"):
        decode_result("{}", "model:os:system")


def test_an_unserializable_result_raises_serialization_error_naming_the_step() -> None:
    """Objects JSON cannot hold raise SerializationError with the step name and the type."""
    with pytest.raises(SerializationError) as caught:
        encode_result(threading.Lock(), "acquire_lock")
    assert caught.value.step == "acquire_lock"
    assert "'acquire_lock'" in str(caught.value)
    assert "lock" in str(caught.value)
    with pytest.raises(SerializationError):
        encode_result(b"\xff\xfe", "binary")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {"ratio": [1.0, -float("inf")]}])
def test_nan_and_infinity_raise_serialization_error(value: Any) -> None:
    """Non-finite floats, which PostgreSQL's jsonb refuses, are a SerializationError."""
    with pytest.raises(SerializationError, match=r"'ratio_step'.*NaN or Infinity"):
        encode_result(value, "ratio_step")


def test_text_that_mentions_nan_or_infinity_is_fine() -> None:
    """Only the JSON constants are refused, not strings that contain the words."""
    value = {"NaN": "Infinity and beyond", "note": "NaN"}
    assert decode_result(*encode_result(value, "s")) == value


def test_dumps_and_loads_are_json() -> None:
    """dumps writes JSON (models and dates included) and loads reads it back; None stays None."""
    assert json.loads(
        dumps({"when": dt.date(2024, 1, 2), "item": Item(sku="s", price=Decimal(1))})
    ) == {
        "when": "2024-01-02",
        "item": {"sku": "s", "price": "1"},
    }
    assert loads('{"a": [1]}') == {"a": [1]}
    assert loads(None) is None


def test_error_info_describes_an_exception() -> None:
    """error_info keeps the exception type and its message (the type when it has none)."""
    assert error_info(ValueError("bad")) == {"type": "ValueError", "message": "bad"}
    assert error_info(KeyError()) == {"type": "KeyError", "message": "KeyError"}


def sync_fn() -> tuple[int, str]:
    return (1, "a")


async def async_fn() -> Cart:
    return CART


def awaitable_fn() -> Awaitable[dt.date]:
    raise NotImplementedError


def untyped():  # type: ignore[no-untyped-def]
    return 1


def loose() -> Any:
    return 1


def nothing() -> None:
    return None


def test_return_type_reads_usable_annotations_only() -> None:
    """Concrete return annotations are used; missing, Any and None give None."""
    assert return_type(sync_fn) == tuple[int, str]
    assert return_type(async_fn) is Cart
    assert return_type(awaitable_fn) is dt.date
    assert return_type(untyped) is None
    assert return_type(loose) is None
    assert return_type(nothing) is None
    assert return_type(lambda: 1) is None


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(json_values)
def test_any_json_value_round_trips(value: Any) -> None:
    """Every JSON-shaped value survives encoding and decoding unchanged."""
    text, tag = encode_result(value, "s")
    assert decode_result(text, tag) == value
