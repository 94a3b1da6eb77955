"""Reading HTTP requests for forgeflow's API: bodies, query parameters and cursors.

Everything here turns bad input into an :class:`ApiError` (a 4xx with a stable error
code), so that no request can make the app answer 5xx.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError
from starlette.requests import Request

from ._models import HookStatus, Outcome, WorkflowStatus

__all__ = [
    "MAX_CURSOR",
    "MAX_DEPTH",
    "ApiError",
    "HookBody",
    "StartBody",
    "check_text",
    "decode_cursor",
    "encode_cursor",
    "invalid",
    "parse_json",
    "query_choice",
    "query_limit",
]

MAX_DEPTH = 100  # JSON nesting accepted in bodies; deeper values cannot be stored reliably
MAX_CURSOR = 1024  # characters; the cursors handed out are about a hundred


class ApiError(Exception):
    """An answer other than success: HTTP status, a stable error code and details."""

    def __init__(
        self, status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers


class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: Any = None
    version: StrictInt | None = Field(default=None, ge=1)


class HookBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Outcome
    data: dict[str, Any] | None = None


def invalid(exc: ValidationError) -> ApiError:
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
        for e in exc.errors()
    ]
    return ApiError(422, "invalid_request", {"errors": errors})


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> Any:
    """Parse a request body; 400 if it is not JSON, 422 if it holds what cannot be stored."""
    if not raw.strip():
        return None
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    _check_storable(value)
    return value


def _check_storable(value: Any) -> None:
    # PostgreSQL's jsonb refuses NUL characters and non-finite numbers, and lone
    # surrogates cannot be encoded: refuse them here rather than fail in the database.
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ApiError(422, "invalid_request", f"JSON nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            check_text(item, "body")
        elif isinstance(item, float) and not math.isfinite(item):
            raise ApiError(422, "invalid_request", "numbers must be finite")
        elif isinstance(item, dict):
            for key, inner in item.items():
                check_text(key, "body")
                stack.append((inner, depth + 1))
        elif isinstance(item, list):
            stack.extend((inner, depth + 1) for inner in item)


def check_text(text: str, field: str) -> str:
    if "\x00" in text:
        raise ApiError(422, "invalid_request", f"{field}: NUL characters are not allowed")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(422, "invalid_request", f"{field}: not valid Unicode text") from None
    return text


def query_limit(request: Request, default: int, maximum: int) -> int:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= maximum:
        message = f"an integer from 1 to {maximum}"
        raise ApiError(422, "invalid_request", {"errors": [{"field": "limit", "message": message}]})
    return value


def encode_cursor(created_at: datetime, run_id: str) -> str:
    """An opaque cursor naming the position after ``(created_at, run_id)``."""
    raw = json.dumps([created_at.isoformat(), run_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Undo :func:`encode_cursor`; 400 for anything it did not produce."""
    invalid = ApiError(400, "invalid_cursor", "cursor: not a cursor returned by this API")
    # Cursors this API hands out are short: a long one is forged, and refusing it before
    # decoding keeps huge or deeply nested JSON away from the parser.
    if len(cursor) > MAX_CURSOR:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, run_id = json.loads(raw)
        when = datetime.fromisoformat(at)
        if when.tzinfo is None or not isinstance(run_id, str):
            raise ValueError("incomplete cursor")
        # In UTC, as PostgreSQL compares it: a time near the ends of Python's range
        # (0001-01-01T00:00:00+14:00) overflows here rather than in the database.
        return when.astimezone(UTC), check_text(run_id, "cursor")
    except (ValueError, TypeError, OverflowError, RecursionError, binascii.Error):
        raise invalid from None


def query_choice(
    request: Request,
    name: str,
    allowed: type[WorkflowStatus] | type[HookStatus],
    default: str | None,
    any_word: str | None = None,
) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if any_word is not None and raw == any_word:
        return None
    values = [s.value for s in allowed]
    if raw not in values:
        options = ", ".join(values + ([any_word] if any_word else []))
        raise ApiError(
            422, "invalid_request", {"errors": [{"field": name, "message": f"one of {options}"}]}
        )
    return raw
