"""Workflow definitions (what @workflow declares) and the registry of versions."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError

from ._cron import ScheduleSpec
from ._queues import Queue
from .errors import (
    DuplicateWorkflowError,
    InputValidationError,
    WorkflowNotFound,
)

__all__ = ["Registry", "WorkflowDefinition", "default_registry"]

I = TypeVar("I")  # noqa: E741 - the input type
O = TypeVar("O")  # noqa: E741 - the output type


@dataclass(frozen=True, eq=False)
class WorkflowDefinition(Generic[I, O]):
    """A registered workflow: its function, name, version, timeout and types."""

    fn: Callable[..., Awaitable[O]]
    name: str
    version: int
    timeout: timedelta
    deprecated: bool = False
    queue: str = "default"
    #: Consecutive executions that may end in a crash without any new checkpoint before
    #: the run is rolled back with RecoveryLimitExceeded (a step that kills its worker).
    max_recoveries: int = 10
    input_type: Any = None
    output_type: Any = None
    takes_input: bool = True
    input_adapter: TypeAdapter[Any] = field(repr=False, default=TypeAdapter(Any))
    output_adapter: TypeAdapter[Any] = field(repr=False, default=TypeAdapter(Any))
    #: The cron schedule declared on the decorator (a schedule named after the workflow).
    schedule: ScheduleSpec | None = None
    #: The default of the function's input parameter (``inspect.Parameter.empty`` if none).
    input_default: Any = field(repr=False, default=inspect.Parameter.empty)

    @property
    def key(self) -> tuple[str, int]:
        """(name, version): the identity of this definition."""
        return (self.name, self.version)

    def validate_input(self, value: Any) -> Any:
        """Validate ``value`` against the input type; raise InputValidationError naming fields."""
        if not self.takes_input and value is None:
            return None
        try:
            return self.input_adapter.validate_python(value)
        except ValidationError as exc:
            fields = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'input'}: {err['msg']}"
                for err in exc.errors()
            )
            raise InputValidationError(
                f"invalid input for workflow {self.name!r} v{self.version}: {fields}",
                errors=[{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()],
            ) from None

    def schedule_input(self, value: Any = None) -> str:
        """The JSON input a schedule starts runs with; ValueError naming ``input`` if none."""
        if value is None and self.takes_input:
            if self.input_default is not inspect.Parameter.empty:
                value = self.input_default
            else:
                try:
                    self.input_adapter.validate_python(None)
                except ValidationError:
                    raise ValueError(
                        f"input: workflow {self.name!r} takes an input without a default; "
                        "give the schedule an input= or the parameter a default"
                    ) from None
        return self.dump_input(self.validate_input(value))

    def dump_input(self, value: Any) -> str:
        """Serialize a validated input to JSON text."""
        return self.input_adapter.dump_json(value).decode()

    def load_input(self, text: str) -> Any:
        """Rebuild the typed input from its JSON text."""
        return self.input_adapter.validate_json(text)

    async def __call__(self, ctx: object, input: I) -> O:
        """Call the workflow function (the engine does this; users start runs instead)."""
        if self.takes_input:
            return await self.fn(ctx, input)
        return await self.fn(ctx)


class Registry:
    """Every version of every workflow known to this process."""

    def __init__(self) -> None:
        self._by_name: dict[str, dict[int, WorkflowDefinition[Any, Any]]] = {}
        self._queues: dict[str, Queue] = {}

    def add_queue(self, queue: Queue) -> Queue:
        """Declare a queue's limits here (workers serving it write them to the database)."""
        known = self._queues.get(queue.name)
        if known is not None and known != queue:
            raise ValueError(
                f"queue: {queue.name!r} is already declared with other limits ({known!r})"
            )
        self._queues[queue.name] = queue
        return queue

    def queues(self) -> list[Queue]:
        """The queues declared in this registry."""
        return list(self._queues.values())

    def queue_names(self) -> list[str]:
        """Every queue the registered workflows name, declared or not, sorted."""
        return sorted({d.queue for d in self.definitions()})

    def register(self, definition: WorkflowDefinition[Any, Any]) -> None:
        """Add a definition; raise DuplicateWorkflowError if (name, version) is taken."""
        versions = self._by_name.setdefault(definition.name, {})
        existing = versions.get(definition.version)
        if existing is not None and existing.fn is not definition.fn:
            raise DuplicateWorkflowError(
                f"workflow {definition.name!r} version {definition.version} is already "
                f"registered (by {existing.fn.__module__}.{existing.fn.__qualname__})"
            )
        versions[definition.version] = definition

    def get(self, name: str) -> WorkflowDefinition[Any, Any]:
        """The latest non-deprecated version of ``name``."""
        versions = self._by_name.get(name, {})
        live = [v for v in versions.values() if not v.deprecated]
        if not live:
            raise WorkflowNotFound(f"no workflow named {name!r} is registered")
        return max(live, key=lambda d: d.version)

    def get_version(self, name: str, version: int) -> WorkflowDefinition[Any, Any]:
        """Exactly ``version`` of ``name`` (deprecated versions included)."""
        versions = self._by_name.get(name, {})
        if version in versions:
            return versions[version]
        known = ", ".join(str(v) for v in sorted(versions)) or "none"
        raise WorkflowNotFound(
            f"workflow {name!r} version {version} is not registered (registered: {known})"
        )

    def find(self, name: str, version: int) -> WorkflowDefinition[Any, Any] | None:
        """``get_version`` that returns None instead of raising."""
        return self._by_name.get(name, {}).get(version)

    def definitions(self) -> list[WorkflowDefinition[Any, Any]]:
        """All registered definitions, every version."""
        return [d for versions in self._by_name.values() for d in versions.values()]

    def names(self) -> list[str]:
        """The registered workflow names."""
        return sorted(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_name.values())


default_registry = Registry()
