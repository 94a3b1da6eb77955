"""JSON encoding of inputs, outputs and step results (never pickle).

A result is stored as plain JSON, readable with psql, plus a short type tag for the
values JSON would otherwise flatten (pydantic models, tuples, dates, UUIDs). On replay
the declared return type of the step function wins; the tag is the fallback.
"""

from __future__ import annotations

import datetime as dt
import decimal
import importlib
import json
import typing
import uuid
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import pydantic_core
from pydantic import BaseModel, TypeAdapter

from .errors import SerializationError

__all__ = ["decode_result", "dumps", "encode_result", "error_info", "loads", "return_type"]

_SCALARS = (str, int, float, bool, type(None))
_TAGGED: dict[type, str] = {
    tuple: "tuple",
    set: "set",
    frozenset: "frozenset",
    dt.datetime: "datetime",
    dt.date: "date",
    dt.time: "time",
    dt.timedelta: "timedelta",
    uuid.UUID: "uuid",
    decimal.Decimal: "decimal",
    bytes: "bytes",
}
_BY_TAG: dict[str, type] = {tag: cls for cls, tag in _TAGGED.items()}


def dumps(value: Any) -> str:
    """Encode a value to JSON text (pydantic models, dataclasses, dates, UUIDs included)."""
    return pydantic_core.to_json(value).decode()


def loads(text: str | None) -> Any:
    """Decode JSON text (None stays None)."""
    return None if text is None else json.loads(text)


def encode_result(value: Any, step: str = "") -> tuple[str, str | None]:
    """Encode a step result to (JSON text, type tag); SerializationError if it cannot."""
    cls = type(value)
    if cls in _SCALARS or cls is dict or cls is list:
        tag = None
    elif isinstance(value, BaseModel):
        tag = f"model:{cls.__module__}:{cls.__qualname__}"
    else:
        tag = _TAGGED.get(cls)
    try:
        text = pydantic_core.to_json(value).decode()
    except pydantic_core.PydanticSerializationError as exc:
        raise SerializationError(
            f"step {step!r}: its result of type {cls.__name__} cannot be stored as JSON ({exc})",
            step=step,
        ) from None
    # NaN and Infinity are written as bare constants, which PostgreSQL's jsonb refuses; the
    # substring test keeps the strict parse off the hot path for ordinary results.
    if ("NaN" in text or "Infinity" in text) and not _is_strict_json(text):
        raise SerializationError(
            f"step {step!r}: its result contains NaN or Infinity, which JSON cannot hold",
            step=step,
        )
    return text, tag


def _is_strict_json(text: str) -> bool:
    def refuse(constant: str) -> Any:
        raise ValueError(constant)

    try:
        json.loads(text, parse_constant=refuse)
    except ValueError:
        return False
    return True


def decode_result(text: str | None, tag: str | None, annotation: Any = None) -> Any:
    """Rebuild a checkpointed result, typed by the step's return annotation or its tag."""
    if text is None:
        return None
    if annotation is not None:
        return _adapter(annotation).validate_json(text)
    if tag is None:
        return json.loads(text)
    if tag.startswith("model:"):
        return _model_class(tag).model_validate_json(text)
    cls = _BY_TAG.get(tag)
    if cls is None:
        return json.loads(text)
    return _adapter(cls).validate_json(text)


def return_type(fn: Callable[..., Any]) -> Any:
    """The concrete return annotation of ``fn``, or None when absent or too loose to use."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        return None
    ann = hints.get("return")
    if ann is None or ann is Any or ann is type(None):
        return None
    origin = typing.get_origin(ann)
    if origin is not None and getattr(origin, "__name__", "") in {"Awaitable", "Coroutine"}:
        args = typing.get_args(ann)
        ann = args[-1] if args else None
    if ann is Any or isinstance(ann, typing.TypeVar):
        return None
    return ann


def error_info(exc: BaseException) -> dict[str, Any]:
    """The JSON description of an exception kept in checkpoints and run records."""
    return {"type": type(exc).__name__, "message": str(exc) or type(exc).__name__}


@lru_cache(maxsize=512)
def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


@lru_cache(maxsize=512)
def _model_class(tag: str) -> type[BaseModel]:
    # Only classes that are pydantic models are accepted, so a tampered tag cannot make
    # replay call anything but a model validator.
    _, module, qualname = tag.split(":", 2)
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, BaseModel)):
        raise TypeError(f"{tag!r} does not name a pydantic model")
    return obj
