"""Fixtures for the HTTP tests: live servers and httpx clients for them.

Most tests only look at the runs they start themselves, so they share one database and
two servers for the whole package (``shared_*``; modules opt in by overriding ``ff`` and
``http``), which keeps the suite fast. Tests that count everything in the database or
need special server options get a fresh database and server (``server``, ``serve``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from forgeflow import Forgeflow, Registry
from tests.support.db import create_database, drop_database

from .helpers import SECRET, TOKEN
from .server import LiveServer, served
from .workflows import Workflows, define

Serve = Callable[..., Awaitable[LiveServer]]


@pytest.fixture
def workflows(registry: Registry) -> Workflows:
    """The test workflows, in this test's registry."""
    return define(registry)


@pytest.fixture
async def serve(dsn: str, registry: Registry, workflows: Workflows) -> AsyncIterator[Serve]:
    """Start a live server with the given create_app options (stopped after the test)."""
    servers: list[LiveServer] = []

    async def start(**options: Any) -> LiveServer:
        server = LiveServer(dsn, registry, **options)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def server(serve: Serve) -> LiveServer:
    """A live server with the default options (no secret, no admin token)."""
    return await serve()


@pytest.fixture
async def http(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client for ``server``."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="package")
async def shared_database(pg_server: str, template_db: str) -> AsyncIterator[str]:
    """One database for the servers shared by the request-checking tests."""
    dsn = await create_database(pg_server, template_db)
    yield dsn
    await drop_database(pg_server, dsn)


@pytest.fixture(scope="package")
def shared_registry() -> Registry:
    """The test workflows, for the shared servers and client."""
    registry = Registry()
    define(registry)
    return registry


@pytest.fixture(scope="package")
async def shared_ff(shared_database: str, shared_registry: Registry) -> AsyncIterator[Forgeflow]:
    """A client of the shared database."""
    async with Forgeflow.connect(shared_database, registry=shared_registry) as client:
        yield client


@pytest.fixture(scope="package")
async def shared_server(
    shared_database: str, shared_registry: Registry
) -> AsyncIterator[LiveServer]:
    """A server without secret or token, with a worker, on the shared database."""
    async with served(shared_database, shared_registry) as server:
        yield server


@pytest.fixture(scope="package")
async def shared_guarded_server(
    shared_database: str, shared_registry: Registry
) -> AsyncIterator[LiveServer]:
    """A server with a signing secret and an admin token, on the shared database."""
    async with served(shared_database, shared_registry, secret=SECRET, admin_token=TOKEN) as server:
        yield server


@pytest.fixture
async def shared_http(shared_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client for the shared server."""
    async with httpx.AsyncClient(base_url=shared_server.url, timeout=30) as client:
        yield client


@pytest.fixture
async def shared_guarded_http(
    shared_guarded_server: LiveServer,
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client (sending no credentials by itself) for the shared guarded server."""
    async with httpx.AsyncClient(base_url=shared_guarded_server.url, timeout=30) as client:
        yield client
