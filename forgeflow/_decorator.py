"""The @workflow decorator: declares an ``async def`` as a versioned workflow.

Its overloads name ``WorkflowContext``, so that type checkers take a workflow's input and
output types from its function; it lives apart from the definitions and the registry,
which the context itself depends on.
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

from pydantic import TypeAdapter

from ._cron import ScheduleSpec
from ._definitions import Registry, WorkflowDefinition, default_registry
from ._durations import Duration, parse_duration
from ._queues import Queue
from .errors import ConfigurationError

if TYPE_CHECKING:
    from ._context import WorkflowContext

__all__ = ["workflow"]

I = TypeVar("I")  # noqa: E741 - the input type
O = TypeVar("O")  # noqa: E741 - the output type


def _enclosing_names(fn: Callable[..., Any], frame: types.FrameType | None) -> dict[str, Any]:
    """The names visible where ``fn`` is declared besides its module's globals."""
    names: dict[str, Any] = {}
    for var, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True):
        try:
            names[var] = cell.cell_contents
        except ValueError:  # a closure variable not assigned yet
            continue
    if frame is not None and frame.f_locals is not frame.f_globals:
        names.update(frame.f_locals)
    return names


def _type_hints(
    fn: Callable[..., Any], workflow_name: str, frame: types.FrameType | None
) -> dict[str, Any]:
    """The workflow function's annotations, resolved in the scope that declares it."""
    # With postponed annotations (PEP 563) the annotations are strings; a class defined
    # in the function that applies @workflow (a test, a factory) is not a module global,
    # so that function's locals are searched too, as Python itself would have done.
    try:
        return typing.get_type_hints(fn, localns=_enclosing_names(fn, frame))
    except NameError as exc:
        missing = exc.name or str(exc)
        raise ConfigurationError(
            f"workflow {workflow_name!r}: its annotations name {missing!r}, which is not "
            f"defined where the workflow is declared; define or import {missing!r} at "
            f"module level (not only under TYPE_CHECKING), or in the enclosing function "
            f"before @workflow is applied"
        ) from None


class _Decorator(Protocol):
    """What ``@workflow(...)`` returns: it keeps the workflow's input and output types."""

    @overload
    def __call__(
        self, fn: Callable[[WorkflowContext], Awaitable[O]], /
    ) -> WorkflowDefinition[None, O]: ...
    @overload
    def __call__(
        self, fn: Callable[[WorkflowContext, I], Awaitable[O]], /
    ) -> WorkflowDefinition[I, O]: ...
    @overload
    def __call__(self, fn: Callable[..., Awaitable[O]], /) -> WorkflowDefinition[Any, O]: ...


# The input type is taken from the function's second parameter, so that type checkers
# check what ``ff.start(wf, input)`` is given; a function that matches neither shape
# (a context annotated otherwise) keeps an unchecked input.
@overload
def workflow(fn: Callable[[WorkflowContext], Awaitable[O]], /) -> WorkflowDefinition[None, O]: ...
@overload
def workflow(fn: Callable[[WorkflowContext, I], Awaitable[O]], /) -> WorkflowDefinition[I, O]: ...
@overload
def workflow(fn: Callable[..., Awaitable[O]], /) -> WorkflowDefinition[Any, O]: ...
@overload
def workflow(
    *,
    version: int = 1,
    timeout: Duration = "24h",
    name: str | None = None,
    deprecated: bool = False,
    queue: Queue | str = "default",
    registry: Registry | None = None,
    max_recoveries: int = 10,
    schedule: str | None = None,
    timezone: str = "UTC",
    catchup: str = "latest",
) -> _Decorator: ...


def workflow(
    fn: Callable[..., Awaitable[O]] | None = None,
    /,
    *,
    version: int = 1,
    timeout: Duration = "24h",
    name: str | None = None,
    deprecated: bool = False,
    queue: Queue | str = "default",
    registry: Registry | None = None,
    max_recoveries: int = 10,
    schedule: str | None = None,
    timezone: str = "UTC",
    catchup: str = "latest",
) -> Any:
    """Declare an ``async def`` as a durable workflow with a version and a timeout.

    ``@workflow`` alone is ``@workflow(version=1)``; options are keyword arguments.
    ``schedule="*/15 * * * *"`` (with ``timezone=`` and ``catchup=``) also declares a
    schedule named after the workflow, which every worker keeps in the database.
    """
    if fn is not None and not callable(fn):
        raise TypeError(
            f"@workflow takes its options as keywords: write @workflow(version={fn!r})"
            if isinstance(fn, int) and not isinstance(fn, bool)
            else f"@workflow takes its options as keywords, got {fn!r} (e.g. @workflow(version=1))"
        )
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version: expected a positive integer, got {version!r}")
    limit = parse_duration(timeout, field="timeout")
    if limit <= timedelta(0):
        raise ValueError("timeout: must be positive")
    if (
        isinstance(max_recoveries, bool)
        or not isinstance(max_recoveries, int)
        or max_recoveries < 1
    ):
        raise ValueError(f"max_recoveries: expected a positive integer, got {max_recoveries!r}")
    if not isinstance(queue, Queue | str) or not queue:
        raise ValueError(f"queue: expected a Queue or a queue name, got {queue!r}")
    target = registry if registry is not None else default_registry
    if isinstance(queue, Queue):
        target.add_queue(queue)
    queue_name = queue.name if isinstance(queue, Queue) else queue
    spec = None if schedule is None else ScheduleSpec(schedule, timezone, catchup)
    # The frame applying the decorator: its locals are read when the function arrives.
    caller = sys._getframe(1)

    def decorate(fn: Callable[..., Awaitable[O]]) -> WorkflowDefinition[Any, O]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@workflow needs an async def, got {fn!r}")
        params = list(inspect.signature(fn).parameters.values())
        if not 1 <= len(params) <= 2:
            raise TypeError(f"{fn.__qualname__}: a workflow takes (ctx) or (ctx, input)")
        hints = _type_hints(fn, name or fn.__name__, caller)
        takes_input = len(params) == 2
        input_type = hints.get(params[1].name, Any) if takes_input else type(None)
        output_type = hints.get("return", Any)
        definition: WorkflowDefinition[Any, O] = WorkflowDefinition(
            fn=fn,
            name=name or fn.__name__,
            version=version,
            timeout=limit,
            deprecated=deprecated,
            queue=queue_name,
            max_recoveries=max_recoveries,
            input_type=input_type,
            output_type=output_type,
            takes_input=takes_input,
            input_adapter=TypeAdapter(input_type),
            output_adapter=TypeAdapter(output_type),
            schedule=spec,
            input_default=params[1].default if takes_input else inspect.Parameter.empty,
        )
        if spec is not None:
            definition.schedule_input()  # a scheduled workflow's input needs a default
        target.register(definition)
        return definition

    return decorate if fn is None else decorate(fn)
