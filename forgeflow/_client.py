"""Forgeflow: the client that starts, inspects, cancels and resumes runs.

The client's methods are grouped by area, one class each, all on ``ClientCore``
(``_client_core``: the store, registry, clock, settings and the executor and
notifications shared by the runs it starts): starting runs (``_client_start``),
reading and awaiting them (``_client_read``), cancelling, waking, hooks and events
(``_client_hooks``), repairs and retention (``_client_repair``), schedules
(``_client_schedules``), and executing runs here (``_client_run``). This module
connects and puts them together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from ._client_hooks import ChangingRuns
from ._client_read import ReadingRuns
from ._client_repair import RepairingRuns
from ._client_run import ExecutingRuns
from ._client_schedules import ScheduleMethods
from ._client_start import StartingRuns
from ._clock import Clock
from ._definitions import Registry
from ._durations import Duration
from ._embedded import embedded_dsn
from ._events import Listener
from ._settings import Settings, direct_url
from ._store import Store

__all__ = ["Forgeflow"]


class Forgeflow(
    ExecutingRuns,
    StartingRuns,
    ReadingRuns,
    ChangingRuns,
    RepairingRuns,
    ScheduleMethods,
):
    """A connection to forgeflow's database: start and manage runs, host workers."""

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        dsn: str | None = None,
        *,
        settings: Settings | None = None,
        registry: Registry | None = None,
        base_url: str | None = None,
        listeners: Sequence[Listener] = (),
        clock: Clock | None = None,
        sleep_threshold: Duration | None = None,
        lease: Duration | None = None,
        retention: Duration | None = None,
        min_pool: int | None = None,
        max_pool: int | None = None,
        listen_url: str | None = None,
        pgbouncer: bool | None = None,
        migrate: bool = True,
    ) -> AsyncIterator[Forgeflow]:
        """Connect (DSN, else FORGEFLOW_DATABASE_URL, else the embedded server) and migrate.

        Arguments left as None come from ``settings`` when given, else from the
        ``FORGEFLOW_*`` environment variables, else from the defaults (see ``Settings``).
        """
        given: dict[str, Any] = {
            "database_url": dsn,
            "base_url": base_url,
            "sleep_threshold": sleep_threshold,
            "lease": lease,
            "retention": retention,
            "min_pool": min_pool,
            "max_pool": max_pool,
            "listen_url": listen_url,
            "pgbouncer": pgbouncer,
        }
        resolved = Settings.load(**given) if settings is None else settings.replace(**given)
        url = resolved.database_url or await embedded_dsn()
        store = await Store.open(
            url,
            min_size=resolved.min_pool,
            max_size=resolved.max_pool,
            migrate=migrate,
            direct_dsn=direct_url(resolved.listen_url, url),
            pgbouncer=resolved.pgbouncer,
        )
        client = cls(store, settings=resolved, registry=registry, listeners=listeners, clock=clock)
        try:
            yield client
        finally:
            await client.close()
