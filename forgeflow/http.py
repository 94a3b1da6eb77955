"""forgeflow's HTTP API and dashboard: a Starlette app over a connected client.

``create_app(client)`` returns an ASGI app; serve it with uvicorn (``forgeflow serve``) or
mount it under a prefix of your own Starlette / FastAPI app. Every answer is JSON except
the dashboard and the page a person sees after clicking a hook link.

Who may call what:

* Trigger calls — ``POST /workflows/{name}/start``, ``POST /events/{event_type}`` and
  ``POST /hooks/{hook_id}`` — need a valid ``X-Forgeflow-Signature`` when ``secret`` is
  set (``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``, see :func:`sign`),
  or the admin token when one is set (that is how the dashboard approves hooks).
* Admin calls — listing and inspecting runs and hooks, cancelling, the live streams —
  need ``Authorization: Bearer <admin_token>`` when ``admin_token`` is set. Browsers
  cannot put headers on an ``EventSource``, so the two stream endpoints also accept the
  token as ``?access_token=``.
* ``GET /hooks/{hook_id}?decision=...`` is the link put in emails: a link cannot carry a
  signature, so the hook id itself (at least 128 random bits) is the credential, like a
  password-reset link. Pass ``hook_links=False`` to accept decisions only as POSTs.

The trigger calls and the hook links are rate limited (``rate_limit``, see
:class:`RateLimit`): per client address, and per hook id for the hook endpoints; a
request over a limit gets 429 with ``Retry-After`` before its body is read or any
database work is done.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from importlib import resources
from typing import Any

import anyio
import structlog
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._client import Forgeflow
from ._dashboard import pages
from ._dashboard.streams import ChangeFeed, EventStream
from ._http_limits import RateLimit, RateLimiter, RateLimitOption
from ._http_repair import repair_routes
from ._http_requests import (
    ApiError,
    HookBody,
    StartBody,
    check_text,
    decode_cursor,
    encode_cursor,
    invalid,
    parse_json,
    query_choice,
    query_limit,
)
from ._http_schedules import schedule_routes
from ._models import HookStatus, Outcome, WorkflowStatus
from .errors import (
    DatabaseError,
    ForgeflowError,
    ForkError,
    HookError,
    HookNotFound,
    IdempotencyConflict,
    InputValidationError,
    RunNotFound,
    ScheduleNotFound,
    WorkflowNotFound,
)

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_RATE_LIMIT",
    "SIGNATURE_HEADER",
    "RateLimit",
    "create_app",
    "sign",
]

log = structlog.get_logger("forgeflow.http")

SIGNATURE_HEADER = "X-Forgeflow-Signature"
DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_RATE_LIMIT = RateLimit()
Handler = Callable[[Request], Awaitable[Response]]


def sign(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Forgeflow-Signature`` value for ``body`` sent at ``timestamp`` (default now)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={_mac(secret, t, body)}"


def _mac(secret: str | bytes, t: int, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def _error(
    status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def classify(exc: ForgeflowError) -> ApiError:
    """The HTTP answer for a forgeflow error."""
    if isinstance(exc, InputValidationError):
        errors = [
            {"field": ".".join(["input", *(str(p) for p in e["loc"])]), "message": e["msg"]}
            for e in exc.errors
        ]
        return ApiError(422, "invalid_input", {"message": exc.message, "errors": errors})
    if isinstance(exc, WorkflowNotFound):
        return ApiError(422, "workflow_not_found", exc.message)
    if isinstance(exc, RunNotFound):
        return ApiError(404, "run_not_found", exc.message)
    if isinstance(exc, ScheduleNotFound):
        return ApiError(404, "schedule_not_found", exc.message)
    if isinstance(exc, IdempotencyConflict):
        return ApiError(409, "idempotency_conflict", exc.message)
    if isinstance(exc, ForkError):
        return ApiError(409, "fork_refused", {"message": exc.message, "step": exc.step})
    if isinstance(exc, HookError):
        code = {404: "hook_not_found", 409: "hook_already_used", 410: "hook_expired"}
        return ApiError(exc.status_code, code.get(exc.status_code, "hook_error"), exc.message)
    if isinstance(exc, DatabaseError):
        log.warning("http_database_error", error=exc.message)
        return ApiError(503, "database_unavailable", "the database failed; try again")
    raise exc


def _endpoint(fn: Handler) -> Handler:
    """Answer errors as JSON; only a genuine bug becomes a (logged) 500."""

    @wraps(fn)
    async def endpoint(request: Request) -> Response:
        try:
            try:
                return await fn(request)
            except ForgeflowError as exc:
                raise classify(exc) from exc
        except ApiError as exc:
            return _error(exc.status, exc.error, exc.detail, exc.headers)
        except Exception:
            log.exception("http_internal_error", method=request.method, path=request.url.path)
            return _error(500, "internal_error", "an unexpected error occurred; see the server log")

    return endpoint


# -- the application ----------------------------------------------------------------------


class _Api:
    """The endpoints, bound to one client and one security configuration."""

    def __init__(
        self,
        client: Forgeflow,
        *,
        secret: str | bytes | None,
        admin_token: str | None,
        max_body: int,
        signature_tolerance: float,
        hook_links: bool,
        limiter: RateLimiter | None,
    ) -> None:
        self.client = client
        self.secret = secret
        self.admin_token = admin_token
        self.max_body = max_body
        self.tolerance = signature_tolerance
        self.hook_links = hook_links
        self.limiter = limiter
        self.closing = anyio.Event()
        self.feed = ChangeFeed(client)

    def close_streams(self) -> None:
        """End every open event stream (a server shutting down calls this first)."""
        self.closing.set()

    # -- guards -------------------------------------------------------------------------

    def _has_admin_token(self, request: Request, *, query: bool = False) -> bool:
        assert self.admin_token is not None
        expected = self.admin_token.encode()
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            # Header values arrive decoded as latin-1: encoding back gives the raw bytes.
            return hmac.compare_digest(token.strip().encode("latin-1"), expected)
        token = request.query_params.get("access_token", "") if query else ""
        return bool(token) and hmac.compare_digest(token.encode("utf-8", "replace"), expected)

    def require_admin(self, request: Request, *, query: bool = False) -> None:
        """401 unless no admin token is configured or the request carries it."""
        if self.admin_token is None or self._has_admin_token(request, query=query):
            return
        raise ApiError(
            401,
            "unauthorized",
            "this endpoint needs Authorization: Bearer <token>",
            {"WWW-Authenticate": "Bearer"},
        )

    def require_signature(self, request: Request, body: bytes) -> None:
        """401 unless no secret is configured, the signature is valid, or the admin token."""
        if self.secret is None:
            return
        if self.admin_token is not None and self._has_admin_token(request):
            return
        header = request.headers.get(SIGNATURE_HEADER)
        if not header:
            raise ApiError(401, "signature_required", f"this endpoint needs {SIGNATURE_HEADER}")
        fields: dict[str, list[str]] = {}
        for part in header.split(","):
            key, _, value = part.strip().partition("=")
            fields.setdefault(key, []).append(value)
        stamp = fields.get("t", [""])[0]
        candidates = fields.get("v1", [])
        # A unix time in seconds has ten digits until the year 2286: anything longer (or not
        # plain digits) is no timestamp, and would overflow the float comparison below.
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12) or not candidates:
            raise ApiError(
                401, "signature_invalid", f"{SIGNATURE_HEADER}: expected t=<unix time>,v1=<hex>"
            )
        t = int(stamp)
        if abs(time.time() - t) > self.tolerance:
            raise ApiError(
                401,
                "signature_expired",
                f"the signature timestamp is more than {self.tolerance:g}s away",
            )
        expected = _mac(self.secret, t, body).encode()
        if not any(
            hmac.compare_digest(expected, c.encode("latin-1", "replace")) for c in candidates
        ):
            raise ApiError(401, "signature_invalid", "the signature does not match the body")

    async def limit(self, request: Request, hook_id: str | None = None) -> None:
        """429 with Retry-After when the request goes over a rate limit."""
        if self.limiter is None:
            return
        refusal = await self.limiter.check(request, hook_id)
        if refusal is None:
            return
        who = "from this client" if refusal.scope == "client" else "for this hook"
        raise ApiError(
            429,
            "rate_limited",
            {
                "message": f"too many requests {who}; retry in {refusal.retry_after}s",
                "scope": refusal.scope,
                "limit": refusal.limit,
                "retry_after": refusal.retry_after,
            },
            {"Retry-After": str(refusal.retry_after)},
        )

    async def read_body(self, request: Request) -> bytes:
        """The raw body; 413 as soon as it is known to exceed ``max_body``."""
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise ApiError(400, "bad_request", "invalid Content-Length")
            if int(declared) > self.max_body:
                raise ApiError(413, "body_too_large", {"limit": self.max_body})
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise ApiError(413, "body_too_large", {"limit": self.max_body})
            chunks.append(chunk)
        return b"".join(chunks)

    async def _object_body(self, request: Request, what: str) -> dict[str, Any]:
        raw = await self.read_body(request)
        self.require_signature(request, raw)
        value = parse_json(raw)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ApiError(422, "invalid_request", f"the body must be a JSON object ({what})")
        return value

    @staticmethod
    def _path(request: Request, name: str) -> str:
        return check_text(str(request.path_params[name]), name)

    # -- triggers -------------------------------------------------------------------------

    async def start(self, request: Request) -> Response:
        await self.limit(request)
        name = self._path(request, "name")
        body = await self._object_body(request, '{"input": ..., "version": null}')
        try:
            parsed = StartBody.model_validate(body)
        except ValidationError as exc:
            raise invalid(exc) from None
        key = request.headers.get("idempotency-key")
        if key is not None and not 1 <= len(check_text(key, "Idempotency-Key")) <= 255:
            raise ApiError(422, "invalid_request", "Idempotency-Key: 1 to 255 characters")
        run_id = await self.client.start(
            name, parsed.input, idempotency_key=key, version=parsed.version
        )
        return JSONResponse({"run_id": run_id, "status": "created"}, status_code=202)

    async def send_event(self, request: Request) -> Response:
        await self.limit(request)
        event_type = self._path(request, "event_type")
        payload = await self._object_body(request, "the event payload")
        resumed = await self.client.send_event(event_type, payload)
        return JSONResponse({"resumed": resumed})

    async def post_hook(self, request: Request) -> Response:
        await self.limit(request, str(request.path_params["hook_id"]))
        hook_id = self._path(request, "hook_id")
        body = await self._object_body(request, '{"decision": ..., "data": {...}}')
        try:
            parsed = HookBody.model_validate(body)
        except ValidationError as exc:
            raise invalid(exc) from None
        key = request.headers.get("idempotency-key")
        if key is not None:
            check_text(key, "Idempotency-Key")
        run_id = await self.client.resume_hook(
            hook_id, parsed.decision, parsed.data, idempotency_key=key
        )
        return JSONResponse(
            {"run_id": run_id, "hook_id": hook_id, "decision": parsed.decision.value}
        )

    async def hook_link(self, request: Request) -> Response:
        """The page behind a link in an email: ?decision=... takes the decision."""
        await self.limit(request, str(request.path_params["hook_id"]))
        if not self.hook_links:
            return pages.page(
                403, "Links are disabled", "Decisions on this server are taken through its API."
            )
        hook_id = str(request.path_params["hook_id"])
        params = request.query_params
        if request.method == "HEAD":
            # Link checkers and mail scanners send HEAD: it must never take a decision.
            return pages.page(200, "Decision link", "Open this link to take the decision.")
        try:
            check_text(hook_id, "hook_id")
            data: dict[str, Any] = {}
            for key in params:
                if key != "decision":
                    values = [check_text(v, key) for v in params.getlist(key)]
                    data[check_text(key, "query")] = values[0] if len(values) == 1 else values
            decision = params.get("decision")
            if decision is None:
                return await self._hook_choices(hook_id)
            if decision not in {o.value for o in Outcome}:
                return pages.page(
                    422, "Unknown decision", "The link asks for a decision this hook does not know."
                )
            await self.client.resume_hook(hook_id, decision, data)
        except ApiError as exc:
            return pages.page(exc.status, "Invalid link", str(exc.detail))
        except HookError as exc:
            return pages.hook_error(exc)
        return pages.recorded(decision)

    async def _hook_choices(self, hook_id: str) -> Response:
        try:
            record = await self.client.get_hook(hook_id)
        except HookNotFound:
            return pages.page(404, "Link not found", "This link is not valid.")
        return pages.choices(record)

    # -- admin ----------------------------------------------------------------------------

    async def list_runs(self, request: Request) -> Response:
        self.require_admin(request)
        status = query_choice(request, "status", WorkflowStatus, None)
        workflow = request.query_params.get("workflow") or None
        if workflow is not None:
            check_text(workflow, "workflow")
        limit = query_limit(request, 50, 500)
        cursor = request.query_params.get("cursor")
        before = decode_cursor(cursor) if cursor else None
        records = await self.client.list_runs(
            status=status, workflow=workflow, limit=limit + 1, before=before
        )
        page = records[:limit]
        next_cursor = None
        if len(records) > limit:
            next_cursor = encode_cursor(page[-1].created_at, page[-1].run_id)
        runs = [
            r.model_dump(mode="json", exclude={"steps", "hooks", "input", "output"}) for r in page
        ]
        return JSONResponse({"runs": runs, "next_cursor": next_cursor})

    async def get_run(self, request: Request) -> Response:
        self.require_admin(request)
        record = await self.client.status(self._path(request, "run_id"))
        return JSONResponse(record.model_dump(mode="json"))

    async def cancel(self, request: Request) -> Response:
        self.require_admin(request)
        record = await self.client.cancel(self._path(request, "run_id"))
        if record.is_terminal and not record.cancel_requested:
            raise ApiError(
                409, "run_finished", f"run {record.run_id} already ended {record.status.value}"
            )
        return JSONResponse(
            {"run_id": record.run_id, "status": record.status.value}, status_code=202
        )

    async def list_hooks(self, request: Request) -> Response:
        self.require_admin(request)
        status = query_choice(request, "status", HookStatus, "active", any_word="all")
        workflow = request.query_params.get("workflow") or None
        if workflow is not None:
            check_text(workflow, "workflow")
        hooks = await self.client.list_hooks(
            status=status, workflow=workflow, limit=query_limit(request, 500, 1000)
        )
        return JSONResponse(
            {"hooks": [h.model_dump(mode="json") for h in hooks], "count": len(hooks)}
        )

    async def list_queues(self, request: Request) -> Response:
        """Each queue's limits, executing, claimable, delayed and limited runs, top keys."""
        self.require_admin(request)
        states = await self.client.queues()
        return JSONResponse({"queues": [q.as_dict() for q in states], "count": len(states)})

    async def run_events(self, request: Request) -> Response:
        """Server-sent events: the run at each change, until it ends."""
        self.require_admin(request, query=True)
        run_id = self._path(request, "run_id")
        await self.client.status(run_id)  # 404 now rather than an empty stream

        async def source(emit: Callable[[str, Any], Awaitable[None]]) -> None:
            async for record in self.client.watch(run_id):
                await emit("run", record.model_dump(mode="json"))
            await emit("end", {"run_id": run_id})

        return EventStream(source, self.closing)

    async def changes(self, request: Request) -> Response:
        """Server-sent events: which runs changed, for live lists."""
        self.require_admin(request, query=True)
        return EventStream(self.feed.stream, self.closing)

    async def dashboard(self, request: Request) -> Response:
        return _static("index.html", "text/html; charset=utf-8")

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        types = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
        if name not in types:
            raise ApiError(404, "not_found", "no such file")
        return _static(name, types[name])


_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def _static(name: str, media_type: str) -> Response:
    text = resources.files("forgeflow._dashboard").joinpath(name).read_text("utf-8")
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if media_type.startswith("text/html"):
        headers["Content-Security-Policy"] = _CSP
    return Response(text, media_type=media_type, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    return _error(
        exc.status_code,
        codes.get(exc.status_code, "http_error"),
        exc.detail,
        dict(exc.headers) if exc.headers else None,
    )


def create_app(
    client: Forgeflow,
    *,
    secret: str | bytes | None = None,
    admin_token: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    signature_tolerance: float = 300,
    hook_links: bool = True,
    rate_limit: RateLimitOption = DEFAULT_RATE_LIMIT,
) -> Starlette:
    """The HTTP API and dashboard for ``client``; mount it under any prefix.

    ``secret`` makes trigger calls (start, events, hook POSTs) require an
    ``X-Forgeflow-Signature`` no older than ``signature_tolerance`` seconds;
    ``admin_token`` protects everything that reads or cancels runs; bodies larger than
    ``max_body`` bytes are refused with 413. ``rate_limit`` caps the start, event and
    hook endpoints (429 with ``Retry-After``): a :class:`RateLimit`, a per-client rate
    such as ``"60/min"``, or ``None`` / ``False`` for no limit. ``secret`` and
    ``admin_token`` default to the client's settings (``FORGEFLOW_SECRET``,
    ``FORGEFLOW_ADMIN_TOKEN``).
    """
    if max_body < 1:
        raise ValueError("max_body: must be positive")
    api = _Api(
        client,
        secret=secret or client.settings.secret or None,
        admin_token=admin_token or client.settings.admin_token or None,
        max_body=max_body,
        signature_tolerance=signature_tolerance,
        hook_links=hook_links,
        limiter=RateLimiter.from_option(rate_limit),
    )
    e = _endpoint
    routes = [
        Route("/", e(api.dashboard), methods=["GET"]),
        Route("/_dashboard/{name}", e(api.asset), methods=["GET"]),
        Route("/workflows/{name}/start", e(api.start), methods=["POST"]),
        Route("/runs", e(api.list_runs), methods=["GET"]),
        Route("/runs/changes", e(api.changes), methods=["GET"]),
        *repair_routes(api, e),
        Route("/runs/{run_id}", e(api.get_run), methods=["GET"]),
        Route("/runs/{run_id}/cancel", e(api.cancel), methods=["POST"]),
        Route("/runs/{run_id}/events", e(api.run_events), methods=["GET"]),
        Route("/hooks", e(api.list_hooks), methods=["GET"]),
        Route("/queues", e(api.list_queues), methods=["GET"]),
        # Hook ids may hold any character: hook.url escapes "/" as %2F, which servers
        # decode before routing, so the id is matched as a path (the rest of the URL).
        Route("/hooks/{hook_id:path}", e(api.hook_link), methods=["GET"]),
        Route("/hooks/{hook_id:path}", e(api.post_hook), methods=["POST"]),
        Route("/events/{event_type}", e(api.send_event), methods=["POST"]),
        *schedule_routes(client, api.require_admin, e),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.forgeflow = api
    return app
