"""What executes runs in one process, bundled for the worker, the client and the tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ._clock import Clock
from ._context import EngineSettings
from ._definitions import Registry
from ._executor import Executor
from ._notify import Notifications
from ._store import Store

__all__ = ["Runtime"]


@dataclass(frozen=True)
class Runtime:
    """The store, registry, clock, executor and notifications a client runs on."""

    store: Store
    registry: Registry
    clock: Clock
    executor: Executor
    notifications: Notifications
    settings: EngineSettings
    #: How long finished runs are kept; workers delete older ones (None: forever).
    retention: timedelta | None = None

    def workflow_keys(self) -> list[tuple[str, int]]:
        """The (workflow, version) pairs this process can execute."""
        return [d.key for d in self.registry.definitions()]
