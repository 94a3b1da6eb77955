"""forgeflow's HTTP app served for real: uvicorn on 127.0.0.1 in a thread, plus a worker.

The server thread has its own event loop and its own client, exactly like a
``forgeflow serve`` process; tests talk to it over TCP with httpx or a browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import anyio
import anyio.to_thread
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from forgeflow import Forgeflow, Registry
from forgeflow.http import create_app

__all__ = ["LiveServer", "ShiftedClock", "until_status"]


class ShiftedClock:
    """The wall clock plus an offset a test can move forward (for expiries)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        """The shifted current time."""
        return datetime.now(UTC) + self.offset


class LiveServer:
    """``create_app`` served by uvicorn on 127.0.0.1 with a worker, in a thread."""

    def __init__(
        self,
        dsn: str,
        registry: Registry,
        *,
        worker: bool = True,
        clock: ShiftedClock | None = None,
        mount: str = "",
        **options: Any,
    ) -> None:
        self._dsn = dsn
        self._registry = registry
        self._worker = worker
        self._clock = clock
        self._mount = mount
        # Every test client comes from 127.0.0.1, so the default rate limits would count
        # the whole suite as one client: servers run without them unless a test asks.
        self._options = {"rate_limit": None, **options}
        # Created as TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose protocol
        # says TCP, and without it every response waits out the client's delayed ACK (40 ms).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.bind(("127.0.0.1", 0))
        port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}{mount}"
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._server: uvicorn.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._app: Starlette | None = None
        self._thread = threading.Thread(target=self._main, name="forgeflow-http", daemon=True)

    async def start(self) -> None:
        """Start serving; returns once the socket accepts requests."""
        self._thread.start()
        await anyio.to_thread.run_sync(self._ready.wait, 60)
        if self._error is not None:
            raise self._error
        assert self._ready.is_set(), "the HTTP server did not start"

    async def stop(self) -> None:
        """Close the event streams, stop the server and its worker, join the thread."""
        if self._loop is not None and self._app is not None:
            api = self._app.state.forgeflow
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                self._loop.call_soon_threadsafe(api.close_streams)
        if self._server is not None:
            self._server.should_exit = True
        await anyio.to_thread.run_sync(self._thread.join, 60)
        assert not self._thread.is_alive(), "the HTTP server did not stop"
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
        finally:
            self._sock.close()
            self._ready.set()

    async def _serve(self) -> None:
        options: dict[str, Any] = {"clock": self._clock} if self._clock else {}
        async with Forgeflow.connect(
            self._dsn, registry=self._registry, base_url=self.url, **options
        ) as ff:
            app = create_app(ff, **self._options)
            served: Any = app
            if self._mount:
                served = Starlette(routes=[Mount(self._mount, app=app)])
            config = uvicorn.Config(
                served,
                lifespan="off",
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=5,
            )
            server = uvicorn.Server(config)
            config.load()
            server.lifespan = config.lifespan_class(config)
            self._server, self._loop, self._app = server, asyncio.get_running_loop(), app
            worker = ff.worker(concurrency=8) if self._worker else contextlib.nullcontext()
            async with worker:
                await server.startup(sockets=[self._sock])
                self._ready.set()
                await server.main_loop()
                await server.shutdown(sockets=[self._sock])


async def until_status(ff: Forgeflow, run_id: str, *statuses: str, timeout: float = 30) -> Any:
    """The run's record once its status is one of ``statuses`` (followed with watch)."""
    with anyio.fail_after(timeout):
        watch = cast(AsyncGenerator[Any, None], ff.watch(run_id))
        async with contextlib.aclosing(watch) as records:
            async for record in records:
                if record.status.value in statuses:
                    return record
    raise AssertionError(f"run {run_id} ended {record.status.value}, not in {statuses}")


@contextlib.asynccontextmanager
async def served(dsn: str, registry: Registry, **options: Any) -> AsyncIterator[LiveServer]:
    """A started LiveServer, stopped on exit."""
    server = LiveServer(dsn, registry, **options)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
