"""Fuzzing every route: no method, path, query, header or body makes the API answer 5xx.

Hypothesis builds requests for every route the app declares (so new routes are fuzzed
without editing this file) and for paths near them, against two live servers: one
open, one with a signing secret and an admin token. Some requests carry a valid
signature or token so that they get past the guards into the handlers. The servers have
rate limits high enough never to trip, so every request reaches the code behind them
while the limiter still sees each one; the limits themselves are tested in
test_rate_limits.py.

The number of cases is the "http-fuzz" settings profile below (2,000 by default;
FORGEFLOW_HTTP_FUZZ_EXAMPLES raises it for a longer local run).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from forgeflow import Forgeflow, Registry
from forgeflow.http import SIGNATURE_HEADER, RateLimit, sign
from tests.support.db import create_database, drop_database

from .helpers import SECRET, TOKEN, cursor_of
from .server import LiveServer, served, until_status
from .workflows import define

EXAMPLES = int(os.environ.get("FORGEFLOW_HTTP_FUZZ_EXAMPLES", "2000"))
settings.register_profile(
    "http-fuzz",
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("http-fuzz")
GENEROUS = RateLimit(per_client="1000000/min", per_hook="1000000/min")
ANY_METHOD = st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"])


@dataclass
class Targets:
    """The fuzzed servers and ids of real runs and hooks to aim requests at."""

    open: LiveServer
    guarded: LiveServer
    routes: list[tuple[str, list[str]]]
    known: list[str]


@pytest.fixture(scope="module")
async def targets(pg_server: str, template_db: str) -> AsyncIterator[Targets]:
    """Both servers on a database of their own, with a waiting and a finished run in it."""
    dsn = await create_database(pg_server, template_db)
    registry = Registry()
    define(registry)
    try:
        async with (
            Forgeflow.connect(dsn, registry=registry) as ff,
            served(dsn, registry, rate_limit=GENEROUS) as open_server,
            served(dsn, registry, secret=SECRET, admin_token=TOKEN, rate_limit=GENEROUS) as guarded,
        ):
            waiting = await until_status(ff, await ff.start("approval", {"title": "t"}), "waiting")
            done = await ff.start("double", 2)
            await ff.result(done, timeout=30)
            app = open_server._app
            assert app is not None
            routes = [
                (route.path, sorted(route.methods or []))
                for route in app.routes
                if isinstance(route, Route)
            ]
            known = [waiting.run_id, waiting.hooks[0].hook_id, done, "approval", "double"]
            yield Targets(open_server, guarded, routes, known)
    finally:
        await drop_database(pg_server, dsn)


# -- strategies --------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=60,
).map(str.strip)
nasty_text = st.sampled_from(
    ["", " ", "%00", "%ff", "%2F", "..", "%2e%2e", "\u00e9", "\U0001f600", "x" * 3000, "a/b"]
)
timestamps = st.sampled_from(
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2024-01-01T00:00:00+00:00"]
)


def segments(known: list[str]) -> st.SearchStrategy[str]:
    """A path segment: a real id or name, something odd, or any text, percent-encoded."""
    text = st.sampled_from(known) | nasty_text | st.text(max_size=40)
    return text.map(lambda s: quote(s, safe="%") if s != "" else s)


# Query cursors: forged ones holding times, ids or nested JSON, and plain junk.
cursors = (
    st.builds(lambda at, run: cursor_of([at, run]), timestamps | st.text(max_size=30), st.text())
    | json_values.map(cursor_of)
    | st.integers(1, 3000).map(lambda n: cursor_of(None, raw=b"[" * n))
    | st.text(max_size=50)
)
# Query strings built from the parameters the API reads, and others.
query_params = st.lists(
    st.tuples(
        st.sampled_from(
            ["status", "workflow", "limit", "cursor", "decision", "access_token", "note"]
        )
        | st.text(max_size=10),
        st.sampled_from(
            ["approve", "reject", "waiting", "active", "all", "completed", "0", "-1", "10", TOKEN]
        )
        | st.integers(-(10**20), 10**20).map(str)
        | cursors
        | st.text(max_size=40),
    ),
    max_size=5,
)
# Request bodies: the shapes the API expects, any JSON, broken JSON and raw bytes.
shaped_bodies = st.fixed_dictionaries(
    {},
    optional={
        "input": json_values | st.fixed_dictionaries({"title": st.text(max_size=20)}),
        "version": st.none() | st.integers(-5, 5) | json_scalars,
        "decision": st.sampled_from(["approve", "reject", "escalate", "maybe"])
        | st.text(max_size=8),
        "data": json_values,
        "from_step": st.text(max_size=10),
    },
)
bodies = (
    (shaped_bodies | json_values).map(lambda v: json.dumps(v).encode())
    | st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n)
    | st.binary(max_size=200)
    | st.just(b"")
)
signatures = st.sampled_from(["none", "valid", "valid", "junk"]) | st.integers(
    -(10**40), 10**400
).map(lambda t: f"t={t},v1=00")


def requests(targets: Targets) -> st.SearchStrategy[dict[str, Any]]:
    """Requests for ``targets``' routes, built from strategies validated once."""
    return _requests(st.sampled_from(targets.routes), segments(targets.known))


@st.composite
def _requests(
    draw: st.DrawFn,
    routes: st.SearchStrategy[tuple[str, list[str]]],
    segment: st.SearchStrategy[str],
) -> dict[str, Any]:
    """One request: a route (or a path near one), method, query, headers and body."""
    template, methods = draw(routes)
    path = template
    while "{" in path:
        head, _, rest = path.partition("{")
        path = head + draw(segment) + rest.partition("}")[2]
    path = draw(
        st.sampled_from(
            [path, path, path, path + "/", path + "/extra", "/" + path.strip("/").split("/")[0]]
        )
    )
    method = draw(st.sampled_from(methods) | ANY_METHOD)
    body = draw(bodies) if method in {"POST", "PUT", "PATCH"} else b""
    headers: dict[str, bytes] = {}
    signature = draw(signatures)
    if signature == "valid":
        headers[SIGNATURE_HEADER] = sign(SECRET, body).encode()
    elif signature == "junk":
        headers[SIGNATURE_HEADER] = draw(header_text).encode("latin-1")
    elif signature != "none":
        headers[SIGNATURE_HEADER] = signature.encode()
    auth = draw(st.sampled_from(["none", "valid", "wrong"]))
    if auth == "valid":
        headers["Authorization"] = f"Bearer {TOKEN}".encode()
    elif auth == "wrong":
        headers["Authorization"] = draw(header_text).encode("latin-1")
    for name in ("Idempotency-Key", "Content-Type", "X-Forwarded-For", "Accept"):
        if draw(st.booleans()):
            headers[name] = draw(header_text).encode("latin-1")
    return {
        "method": method,
        "url": path,
        "params": draw(query_params),
        "headers": headers,
        "content": body,
        "guarded": draw(st.booleans()),
    }


# -- the test ----------------------------------------------------------------------------

KNOWN_BAD = [
    {"method": "GET", "url": "/runs", "params": [("cursor", c)], "content": b"", "headers": {}}
    for c in (
        cursor_of(["0001-01-01T00:00:00+14:00", "run"]),
        cursor_of(None, raw=b"[" * 40_000),
    )
] + [
    {
        "method": "POST",
        "url": path,
        "params": [],
        "content": b"{}",
        "headers": {SIGNATURE_HEADER: f"t={'9' * 400},v1=00".encode()},
    }
    for path in ("/workflows/double/start", "/hooks/webhook_x", "/events/e")
]


def send(http: httpx.Client, request: dict[str, Any]) -> int:
    """Send ``request`` and return its status, leaving event streams after their headers."""
    with http.stream(
        request["method"],
        request["url"],
        params=request["params"],
        headers=request["headers"],
        content=request["content"],
    ) as response:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.read()
        return response.status_code


@pytest.mark.timeout(600)
def test_no_request_answers_5xx(targets: Targets) -> None:
    """Thousands of generated requests over every route: each answer is below 500."""
    cases = 0
    started = time.monotonic()
    with (
        httpx.Client(base_url=targets.open.url, timeout=30) as open_http,
        httpx.Client(base_url=targets.guarded.url, timeout=30) as guarded_http,
    ):

        @FUZZ
        @given(requests(targets))
        def one(request: dict[str, Any]) -> None:
            nonlocal cases
            cases += 1
            http = guarded_http if request["guarded"] else open_http
            status = send(http, request)
            assert status < 500, (status, request)

        for known in KNOWN_BAD:
            for http in (open_http, guarded_http):
                assert send(http, known) < 500, known
        one()
    elapsed = time.monotonic() - started
    print(f"http fuzz: {cases} requests in {elapsed:.1f}s")
    assert cases >= FUZZ.max_examples
