"""RunContext: what steps, waits and transactional steps use of the run they belong to.

``WorkflowContext`` hands itself to ``StepRunner``, ``TransactionRunner`` and the waits.
They see it through this protocol, so that none of them imports the context module
(which imports them): the dependencies point one way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from datetime import datetime

    from ._clock import Clock
    from ._definitions import Registry, WorkflowDefinition
    from ._journal import Checkpoint, Journal
    from ._lease import Lease
    from ._store import Store

__all__ = ["EngineSettings", "RunContext"]


class EngineSettings(NamedTuple):
    """Engine knobs shared by the client, the executor and the workers."""

    sleep_threshold: float = 60.0
    lease_seconds: float = 30.0
    base_url: str = "http://localhost:8000"
    #: Seconds a step attempt runs before a 'running' checkpoint shows it (off the hot path).
    running_after: float = 1.0


class RunContext(Protocol):
    """The engine side of one execution of a run, as steps and waits use it."""

    run_id: str
    started_at: datetime
    #: A structlog logger bound to the run.
    log: Any
    journal: Journal
    store: Store
    clock: Clock
    lease: Lease
    worker_id: str
    settings: EngineSettings
    registry: Registry
    definition: WorkflowDefinition[Any, Any]
    cancel_requested: bool

    def next_name(self, name: str) -> str:
        """The checkpoint name of the next use of ``name`` (``name#2`` on its second)."""
        ...

    def before_new_work(self, step: str | None = None) -> None:
        """Raise the signal that stops the run here if it may not do anything new."""
        ...

    async def checkpoint(self, checkpoint: Checkpoint) -> None:
        """Write ``checkpoint`` under the lease (LeaseLost if the lease is gone)."""
        ...

    async def wait_until(self, when: datetime, wait: dict[str, Any]) -> None:
        """Wait in place until ``when``, or suspend the run with ``wait`` if it is far."""
        ...

    async def emit(self, name: str, **fields: Any) -> None:
        """Log lifecycle event ``name`` and call the listeners."""
        ...

    def attempt_started(self, name: str, attempt: int, started: datetime) -> None:
        """Note that attempt ``attempt`` of step ``name`` is running."""
        ...

    def attempt_ended(self, name: str) -> None:
        """Note that the attempt of step ``name`` in flight has ended."""
        ...

    def request_cancel(self) -> None:
        """Stop before new work: a cancel was requested."""
        ...

    def workflow_time(self) -> datetime:
        """The time of the latest checkpoint reached."""
        ...
