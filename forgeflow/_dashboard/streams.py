"""Server-sent event streams: one run's changes, and which runs changed at all."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

if TYPE_CHECKING:
    from .._client import Forgeflow

__all__ = ["ChangeFeed", "EventStream"]

Emit = Callable[[str, Any], Awaitable[None]]
Source = Callable[[Emit], Awaitable[None]]

# A comment line this often keeps proxies from closing an idle stream.
PING_SECONDS = 15.0


# The channels whose payload is a run id.
_NAMING_A_RUN = ("forgeflow_run_changed", "forgeflow_run_ended", "forgeflow_cancel")


class EventStream(Response):
    """A response sending ``event:``/``data:`` pairs from ``source``.

    It ends when the source returns, the client goes away, or ``closing`` is set (a
    server that shuts down would otherwise wait for every open dashboard).
    """

    media_type = "text/event-stream"

    def __init__(self, source: Source, closing: anyio.Event) -> None:
        # Like StreamingResponse, no body (and so no Content-Length) is set up front.
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._source = source
        self._closing = closing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        lock = anyio.Lock()

        async def write(chunk: str) -> None:
            async with lock:
                await send(
                    {"type": "http.response.body", "body": chunk.encode(), "more_body": True}
                )

        async def emit(event: str, data: Any) -> None:
            await write(f"event: {event}\ndata: {json.dumps(data)}\n\n")

        async with anyio.create_task_group() as group:

            async def produce() -> None:
                await self._source(emit)
                group.cancel_scope.cancel()

            async def until_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            async def until_closing() -> None:
                await self._closing.wait()
                group.cancel_scope.cancel()

            async def ping() -> None:
                while True:
                    await anyio.sleep(PING_SECONDS)
                    await write(": ping\n\n")

            await write(": connected\n\n")
            for task in (produce, until_disconnect, until_closing, ping):
                group.start_soon(task)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _Subscriber:
    def __init__(self) -> None:
        self.changed = anyio.Event()
        self.run_ids: set[str] = set()


class ChangeFeed:
    """Fans the client's notifications out to every open "which runs changed" stream."""

    def __init__(self, client: Forgeflow) -> None:
        self._client = client
        self._subscribers: set[_Subscriber] = set()
        self._attached = False

    def _on_notify(self, channel: str, payload: str) -> None:
        # Run changes and cancels carry a run id; wake-ups (a new run, a decision, an
        # event) carry a queue name, so they only say that something moved.
        run_id = payload if channel in _NAMING_A_RUN else None
        for subscriber in self._subscribers:
            if run_id:
                subscriber.run_ids.add(run_id)
            subscriber.changed.set()

    async def stream(self, emit: Emit) -> None:
        """Emit ``change`` events (``{"run_ids": [...]}``), at most a few per second."""
        notifications = self._client.runtime.notifications
        if not self._attached:
            notifications.on_any.append(self._on_notify)
            self._attached = True
        subscriber = _Subscriber()
        self._subscribers.add(subscriber)
        try:
            await notifications.start()
            await emit("ready", {})
            while True:
                with anyio.move_on_after(PING_SECONDS):
                    await subscriber.changed.wait()
                if not subscriber.changed.is_set():
                    await notifications.start()  # reconnects a LISTEN connection that dropped
                    continue
                subscriber.changed = anyio.Event()
                run_ids, subscriber.run_ids = subscriber.run_ids, set()
                await emit("change", {"run_ids": sorted(run_ids)})
                # Coalesce bursts (a worker finishing many steps) into one refresh.
                await anyio.sleep(0.2)
        finally:
            self._subscribers.discard(subscriber)
