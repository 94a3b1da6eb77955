"""pytest fixtures for testing workflows against a real PostgreSQL.

Installed with forgeflow and loaded by pytest automatically (entry point ``forgeflow``;
``-p no:forgeflow`` turns it off). Nothing starts unless a test asks for a fixture:

- ``forgeflow_env``: a ``forgeflow.testing.WorkflowTestEnv`` on ``forgeflow_client``,
  its in-process worker running;
- ``forgeflow_client``: a ``forgeflow.Forgeflow`` connected to ``forgeflow_database``,
  on ``forgeflow_clock``, with ``sleep_threshold=0`` so that every sleep is a durable
  timer;
- ``forgeflow_clock``: the test's ``forgeflow.testing.ManualClock``;
- ``forgeflow_registry``: the registry the client executes from, by default
  ``forgeflow.default_registry`` (where ``@workflow`` registers); override this fixture
  in your ``conftest.py`` to use your own;
- ``forgeflow_database``: a DSN to a fresh database for one test, cloned from a migrated
  template and dropped afterwards;
- ``forgeflow_postgres`` (session): the server's admin DSN,
  ``FORGEFLOW_TEST_DATABASE_URL`` when set (any database on the server: the tests create
  their own next to it), else an embedded server started once for the session;
- ``forgeflow_template_database`` (session): the migrated template's name.

With ``FORGEFLOW_TEST_PGBOUNCER_URL`` set as well (a PgBouncer in transaction pooling
whose ``[databases]`` has a wildcard entry for that server), the databases are still
created on the server directly, but ``forgeflow_database`` hands out URLs through
PgBouncer, and for the session ``FORGEFLOW_PGBOUNCER=1`` and ``FORGEFLOW_LISTEN_URL``
(the server, direct) are set unless they already are.

The async fixtures need pytest-asyncio (any mode); they run on the loop your tests use.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from forgeflow import Forgeflow, Registry
    from forgeflow.testing import ManualClock, WorkflowTestEnv
    from forgeflow.testing._db import DatabasePool

try:
    from pytest_asyncio import fixture as async_fixture
except ImportError:  # pragma: no cover - depends on the install
    async_fixture = pytest.fixture  # type: ignore[assignment]


@pytest.fixture(scope="session")
def forgeflow_postgres() -> Iterator[str]:
    """An admin DSN for the PostgreSQL server the test databases are created on."""
    from forgeflow.testing._db import EmbeddedServer, server_from_env

    url = server_from_env()
    if url:
        yield url
        return
    server = EmbeddedServer()
    try:
        yield server.dsn
    finally:
        server.stop()


@pytest.fixture(scope="session")
def forgeflow_template_database(forgeflow_postgres: str) -> Iterator[str]:
    """The name of a database with forgeflow's schema, cloned by ``forgeflow_database``."""
    from forgeflow.testing._db import create_template, drop_database

    name = create_template(forgeflow_postgres)
    try:
        yield name
    finally:
        drop_database(forgeflow_postgres, name)


@pytest.fixture(scope="session")
def _forgeflow_database_pool(
    forgeflow_postgres: str, forgeflow_template_database: str
) -> Iterator[DatabasePool]:
    from forgeflow.testing._db import DatabasePool, pgbouncer_from_env, through_pgbouncer

    via = pgbouncer_from_env()
    pool = DatabasePool(forgeflow_postgres, forgeflow_template_database, via=via)
    try:
        with through_pgbouncer(forgeflow_postgres) if via else contextlib.nullcontext():
            yield pool
    finally:
        pool.close()


@pytest.fixture
def forgeflow_database(_forgeflow_database_pool: DatabasePool) -> Iterator[str]:
    """A DSN to a fresh, migrated database of this test's own (dropped afterwards)."""
    dsn = _forgeflow_database_pool.take()
    try:
        yield dsn
    finally:
        _forgeflow_database_pool.give_back(dsn)


@pytest.fixture
def forgeflow_registry() -> Registry:
    """The registry of the workflows under test; override it to use your own."""
    from forgeflow import default_registry

    return default_registry


@pytest.fixture
def forgeflow_clock() -> ManualClock:
    """The engine clock of this test: it stands still until the test moves it."""
    from forgeflow.testing import ManualClock

    return ManualClock()


@async_fixture
async def forgeflow_client(
    forgeflow_database: str, forgeflow_registry: Registry, forgeflow_clock: ManualClock
) -> AsyncIterator[Forgeflow]:
    """A client on this test's database and manual clock; every sleep is a durable timer."""
    from forgeflow import Forgeflow

    async with Forgeflow.connect(
        forgeflow_database,
        registry=forgeflow_registry,
        clock=forgeflow_clock,
        sleep_threshold=0,
        migrate=False,
    ) as client:
        yield client


@async_fixture
async def forgeflow_env(forgeflow_client: Forgeflow) -> AsyncIterator[WorkflowTestEnv]:
    """A WorkflowTestEnv on ``forgeflow_client``, its in-process worker running."""
    from forgeflow.testing import WorkflowTestEnv

    async with WorkflowTestEnv(forgeflow_client) as env:
        yield env
