"""Test databases: a real PostgreSQL server, a migrated template, a fresh clone per test.

The server is the one at FORGEFLOW_TEST_DATABASE_URL when set (any database on it; the
tests create their own), else an embedded server started for this session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from forgeflow import Forgeflow, Registry
from forgeflow.testing._db import with_database

__all__ = ["with_database"]


# The suite uses the pytest plugin forgeflow ships (forgeflow.pytest_plugin): the server,
# the migrated template and the per-test clones are the ones users' own suites get.


@pytest.fixture(scope="session")
def pg_server(forgeflow_postgres: str) -> str:
    """An admin DSN for a real PostgreSQL server."""
    return forgeflow_postgres


@pytest.fixture(scope="session")
def template_db(forgeflow_template_database: str) -> str:
    """A database with forgeflow's schema, used as the template of every test database."""
    return forgeflow_template_database


@pytest.fixture
def dsn(forgeflow_database: str) -> str:
    """A fresh database for one test, cloned from the migrated template."""
    return forgeflow_database


@pytest.fixture
def registry() -> Registry:
    """A registry of its own for each test's workflows."""
    return Registry()


@pytest.fixture
async def ff(dsn: str, registry: Registry) -> AsyncIterator[Forgeflow]:
    """A client connected to the test's database."""
    async with Forgeflow.connect(dsn, registry=registry) as client:
        yield client
