"""Lifecycle events: logged through structlog and handed to user listeners."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

__all__ = ["EVENT_NAMES", "Emitter", "LifecycleEvent", "Listener"]

EVENT_NAMES = (
    "run_started",
    "step_completed",
    "step_failed",
    "run_suspended",
    "run_resumed",
    "compensation_ran",
    "run_cancelled",
    "run_finished",
)


@dataclass(frozen=True)
class LifecycleEvent:
    """Something that happened to a run: ``name`` is one of EVENT_NAMES."""

    name: str
    run_id: str
    workflow: str
    fields: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[LifecycleEvent], Awaitable[None] | None]

_LOUD = frozenset({"step_failed", "run_cancelled"})
_QUIET = frozenset({"step_completed", "compensation_ran"})


class Emitter:
    """Logs lifecycle events and calls listeners; a listener's error never breaks a run."""

    def __init__(self, listeners: Sequence[Listener] = ()) -> None:
        self.listeners = tuple(listeners)

    async def emit(
        self,
        log: structlog.typing.FilteringBoundLogger,
        name: str,
        run_id: str,
        workflow: str,
        **fields: Any,
    ) -> None:
        """Log ``name`` on ``log`` and pass it to every listener."""
        if name in _QUIET:
            log.debug(name, **fields)
        elif name in _LOUD:
            log.warning(name, **fields)
        else:
            log.info(name, **fields)
        if not self.listeners:
            return
        event = LifecycleEvent(name, run_id, workflow, fields)
        for listener in self.listeners:
            try:
                outcome = listener(event)
                if outcome is not None and inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log.exception("listener_failed", listener=getattr(listener, "__name__", "?"))
