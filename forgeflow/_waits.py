"""Durable waits: sleeps, resume hooks, events, child workflows and polling."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ._durations import Duration, parse_duration
from ._journal import Checkpoint, StepRow
from ._models import Decision, Outcome, StepStatus
from ._records import hook_url
from ._runstate import RunContext
from ._serde import dumps, error_info, loads
from ._signals import LeaseLost, SuspendSignal
from .errors import ChildWorkflowFailed, EventTimeout, PollTimeout

if TYPE_CHECKING:
    from ._definitions import WorkflowDefinition
    from ._steps import StepRunner

__all__ = ["ChildHandle", "EventWait", "Hook"]

T = TypeVar("T")
_CHILD_NAMESPACE = uuid.UUID("5f0b6a43-2c1e-4d55-9a57-0e4f0c6d2b71")


def warn_past_deadline(ctx: RunContext, step: str, until: datetime | None) -> None:
    """Log ``wait_exceeds_deadline`` if a new wait would end after the run's deadline."""
    # The deadline wins: such a run is rolled back at its deadline, never reaching the
    # wait's own timeout (a hook's on_timeout, an event's timeout, a sleep's wake time).
    deadline = ctx.started_at + ctx.definition.timeout
    if until is not None and until > deadline:
        ctx.log.warning(
            "wait_exceeds_deadline",
            step=step,
            expires_at=until.isoformat(),
            deadline=deadline.isoformat(),
        )


# -- sleeping -------------------------------------------------------------------------


async def sleep(ctx: RunContext, duration: Duration, base: str) -> None:
    """Checkpoint the wake time once, then wait for it (in place or suspended)."""
    seconds = parse_duration(duration).total_seconds()
    await _sleep_to(ctx, base, lambda now: now + timedelta(seconds=seconds))


async def sleep_until(ctx: RunContext, when: datetime, base: str) -> None:
    """Like sleep, to an absolute timezone-aware time."""
    if when.tzinfo is None:
        raise ValueError("sleep_until: 'when' must be timezone-aware")
    await _sleep_to(ctx, base, lambda _now: when)


async def _sleep_to(ctx: RunContext, base: str, wake: Callable[[datetime], datetime]) -> None:
    name = ctx.next_name(base)
    row = ctx.journal.get(name)
    if row is not None and row.completed_at is not None:
        wake_at = row.completed_at
    else:
        ctx.before_new_work(name)
        now = ctx.clock.now()
        wake_at = wake(now)
        warn_past_deadline(ctx, name, wake_at)
        # The wake time is the checkpoint: a replay waits for what is left, never anew.
        await ctx.checkpoint(
            Checkpoint(
                name,
                "sleep",
                StepStatus.COMPLETED,
                dumps(wake_at),
                "datetime",
                started_at=now,
                completed_at=wake_at,
            )
        )
    ctx.journal.time = max(ctx.journal.time, wake_at)
    await ctx.wait_until(wake_at, {"kind": "sleep", "step": name})


# -- resume hooks ---------------------------------------------------------------------


class Hook:
    """A resume hook: send ``url`` to a person or system, then ``await wait()``."""

    def __init__(self, ctx: RunContext, hook_id: str, name: str) -> None:
        self._ctx = ctx
        self.id = hook_id
        self.name = name

    @property
    def url(self) -> str:
        """Where a decision is posted (GET with ?decision=… works from an email link)."""
        return hook_url(self._ctx.settings.base_url, self.id)

    def url_for(self, decision: str | Outcome) -> str:
        """A one-click link for ``decision`` (e.g. an Approve button in an email)."""
        return f"{self.url}?decision={Outcome(decision).value}"

    async def wait(self) -> Decision:
        """Activate the hook and suspend until a decision arrives or the timeout passes."""
        ctx = self._ctx
        step = ctx.next_name(self.name)
        row = ctx.journal.get(step)
        if row is not None and row.status == StepStatus.COMPLETED:
            ctx.journal.reached(row.completed_at)
            return Decision.model_validate_json(row.result or "{}")
        store, now = ctx.store, ctx.clock.now()
        while True:
            hook = await store.get_hook(self.id)
            if hook is None:
                raise LeaseLost()  # the run was deleted under us
            status = hook["status"]
            if status == "consumed":
                decision = Decision(outcome=hook["decision"], data=loads(hook["data"]) or {})
            elif status == "expired" or (
                status == "active" and hook["expires_at"] is not None and hook["expires_at"] <= now
            ):
                if status == "active" and not await store.expire_hook(self.id, now):
                    continue  # a decision won the race; read it
                decision = Decision(outcome=hook["on_timeout"], timed_out=True)
            elif status == "pending":
                await store.activate_hook(self.id, now)
                continue
            else:
                ctx.before_new_work(step)
                wait = {"kind": "hook", "step": step, "hook_id": self.id}
                raise SuspendSignal(hook["expires_at"], wait)
            break
        await ctx.checkpoint(
            Checkpoint(
                step,
                "wait",
                StepStatus.COMPLETED,
                decision.model_dump_json(),
                started_at=now,
                completed_at=now,
            )
        )
        ctx.journal.reached(now)
        await ctx.emit(
            "run_resumed", step=step, outcome=decision.outcome.value, timed_out=decision.timed_out
        )
        return decision


async def create_hook(
    ctx: RunContext,
    name: str,
    timeout: Duration | None,
    on_timeout: str,
    metadata: Mapping[str, Any] | None,
    hook_id: str | None,
) -> Hook:
    """Persist a pending hook with an unguessable id (or the given template) once."""
    if on_timeout not in {o.value for o in Outcome}:
        raise ValueError(
            f"on_timeout: {on_timeout!r} is not one of {', '.join(o.value for o in Outcome)}"
        )
    step = ctx.next_name(f"hook:{name}")
    row = ctx.journal.get(step)
    if row is not None:
        return Hook(ctx, loads(row.result), name)
    fallback = Outcome(on_timeout).value
    seconds = None if timeout is None else parse_duration(timeout, field="timeout").total_seconds()
    ctx.before_new_work(step)
    if seconds is not None:
        warn_past_deadline(ctx, step, ctx.clock.now() + timedelta(seconds=seconds))
    if hook_id is None:
        new_id = f"webhook_{ctx.run_id}_{name}_{secrets.token_urlsafe(24)}"
    else:
        new_id = hook_id.format(run_id=ctx.run_id, name=name, random=secrets.token_urlsafe(24))
        if new_id in ("", ".", ".."):
            # Clients rewrite "." and ".." path segments even percent-encoded, and an
            # empty one names the hooks list: no hook URL could reach such an id.
            raise ValueError(f"hook_id: the template gives {new_id!r}, which no URL can name")
    ok = await ctx.store.insert_hook(
        ctx.run_id,
        ctx.worker_id,
        new_id,
        name,
        step,
        fallback,
        seconds,
        dumps(dict(metadata or {})),
        ctx.clock.now(),
    )
    if not ok:
        raise LeaseLost()
    ctx.journal.record(Checkpoint(step, "hook", StepStatus.COMPLETED, dumps(new_id)))
    return Hook(ctx, new_id, name)


# -- events ---------------------------------------------------------------------------


class EventWait:
    """Interest in an event, registered durably; ``await wait()`` returns its payload."""

    def __init__(self, ctx: RunContext, step: str, event_type: str) -> None:
        self._ctx = ctx
        self.step = step
        self.event_type = event_type

    async def wait(self) -> Any:
        """Suspend until the event arrives; EventTimeout if the timeout passes first."""
        ctx = self._ctx
        row = ctx.journal.get(self.step)
        if row is not None and row.completed_at is not None:
            ctx.journal.reached(row.completed_at)  # as when the wait ended: identical on replay
        if row is not None and row.status == StepStatus.COMPLETED:
            return loads(row.result)
        if row is not None and row.status == StepStatus.FAILED:
            raise EventTimeout(f"no {self.event_type!r} event arrived in time")
        store = ctx.store
        while True:
            now = ctx.clock.now()
            state = await store.get_event_wait(ctx.run_id, self.step)
            if state is None:
                raise LeaseLost()
            if state["status"] == "delivered":
                payload = state["payload"]
                await ctx.checkpoint(
                    Checkpoint(self.step, "event", StepStatus.COMPLETED, payload, completed_at=now)
                )
                ctx.journal.reached(now)
                await ctx.emit("run_resumed", step=self.step, event_type=self.event_type)
                return loads(payload)
            expires = state["expires_at"]
            if state["status"] == "expired" or (expires is not None and expires <= now):
                if state["status"] == "waiting" and not await store.expire_event_wait(
                    ctx.run_id, self.step
                ):
                    continue
                message = f"no {self.event_type!r} event arrived in time"
                error = dumps(error_info(EventTimeout(message)))
                await ctx.checkpoint(
                    Checkpoint(self.step, "event", StepStatus.FAILED, error=error, completed_at=now)
                )
                ctx.journal.reached(now)
                raise EventTimeout(message)
            ctx.before_new_work(self.step)
            raise SuspendSignal(
                expires, {"kind": "event", "step": self.step, "event_type": self.event_type}
            )


async def expect_event(
    ctx: RunContext,
    event_type: str,
    match: Mapping[str, Any] | None,
    timeout: Duration | None,
) -> EventWait:
    """Register the wait once; events sent from now on are kept for it."""
    step = ctx.next_name(f"event:{event_type}")
    if step not in ctx.journal:
        ctx.before_new_work(step)
        now = ctx.clock.now()
        expires = None if timeout is None else now + parse_duration(timeout, field="timeout")
        warn_past_deadline(ctx, step, expires)
        ok = await ctx.store.insert_event_wait(
            ctx.run_id, ctx.worker_id, step, event_type, dumps(dict(match or {})), now, expires
        )
        if not ok:
            raise LeaseLost()
        ctx.journal.record(Checkpoint(step, "event", StepStatus.RUNNING))
    return EventWait(ctx, step, event_type)


# -- child workflows ------------------------------------------------------------------


class ChildHandle(Generic[T]):
    """A started child run; ``await result()`` waits for it without holding a worker."""

    def __init__(
        self, ctx: RunContext, run_id: str, definition: WorkflowDefinition[Any, T]
    ) -> None:
        self._ctx = ctx
        self.run_id = run_id
        self.definition = definition

    async def result(self) -> T:
        """The child's output; ChildWorkflowFailed if it was rolled back or failed."""
        ctx = self._ctx
        step = ctx.next_name(f"join:{self.definition.name}")
        row = ctx.journal.get(step)
        if row is None or row.status not in (StepStatus.COMPLETED, StepStatus.FAILED):
            row = await self._await_child(step)
        ctx.journal.reached(row.completed_at)  # as when the child ended: identical on replay
        if row.status == StepStatus.FAILED:
            error = loads(row.error) or {}
            raise ChildWorkflowFailed(
                error.get("message"), run_id=self.run_id, status=error.get("status", "failed")
            )
        output: T = self.definition.output_adapter.validate_json(row.result or "null")
        return output

    async def _await_child(self, step: str) -> StepRow:
        ctx = self._ctx
        outcome = await ctx.store.get_run_outcome(self.run_id)
        if outcome is None:
            raise LeaseLost()
        status, now = outcome["status"], ctx.clock.now()
        if status == "completed":
            await ctx.checkpoint(
                Checkpoint(step, "child", StepStatus.COMPLETED, outcome["output"], completed_at=now)
            )
        elif status in ("compensated", "failed"):
            cause = loads(outcome["error"]) or {}
            message = (
                f"child workflow {self.definition.name!r} ({self.run_id}) ended "
                f"{status}: {cause.get('message', '')}"
            )
            error = {"type": "ChildWorkflowFailed", "message": message, "status": status}
            await ctx.checkpoint(
                Checkpoint(step, "child", StepStatus.FAILED, error=dumps(error), completed_at=now)
            )
        else:
            ctx.before_new_work(step)
            raise SuspendSignal(None, {"kind": "child", "step": step, "child_run_id": self.run_id})
        ctx.journal.reached(now)
        row = ctx.journal.get(step)
        assert row is not None  # just written
        return row


async def start_child(
    ctx: RunContext,
    workflow: WorkflowDefinition[Any, T] | str,
    input: Any,
    detached: bool,
    version: int | None,
) -> ChildHandle[T]:
    """Create the child run and the parent's checkpoint in one statement, once."""
    if isinstance(workflow, str):
        definition = (
            ctx.registry.get(workflow)
            if version is None
            else ctx.registry.get_version(workflow, version)
        )
    else:
        definition = workflow
    step = ctx.next_name(f"child:{definition.name}")
    row = ctx.journal.get(step)
    if row is not None:
        return ChildHandle(ctx, loads(row.result), definition)
    ctx.before_new_work(step)
    value = definition.validate_input(input)
    child_id = str(uuid.uuid5(_CHILD_NAMESPACE, f"{ctx.run_id}/{step}"))
    ok = await ctx.store.insert_child(
        ctx.run_id,
        ctx.worker_id,
        child_id,
        definition.name,
        definition.version,
        definition.queue,
        definition.dump_input(value),
        step,
        detached,
        ctx.clock.now(),
        definition.timeout.total_seconds(),
    )
    if not ok:
        raise LeaseLost()
    ctx.journal.record(Checkpoint(step, "child", StepStatus.COMPLETED, dumps(child_id)))
    return ChildHandle(ctx, child_id, definition)


# -- polling --------------------------------------------------------------------------


class PollingContext(RunContext, Protocol):
    """A run context that also makes steps (polling's attempts are ordinary steps)."""

    def step(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> StepRunner[Any]:
        """A checkpointed step calling ``fn(*args, **kwargs)``."""
        ...


async def poll(
    ctx: PollingContext,
    name: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    until: Callable[[Any], bool],
    interval: Duration,
    timeout: Duration,
    max_attempts: int,
) -> Any:
    """Each attempt is a checkpointed step and each pause a durable sleep."""
    pause = parse_duration(interval, field="interval")
    limit = parse_duration(timeout, field="timeout")
    if max_attempts < 1:
        raise ValueError("max_attempts: must be at least 1")
    deadline: datetime | None = None
    for attempt in range(1, max_attempts + 1):
        value = await ctx.step(name, fn, *args).run()
        if until(value):
            return value
        if deadline is None:
            deadline = ctx.workflow_time() + limit
        if attempt == max_attempts:
            raise PollTimeout(f"poll {name!r}: condition not met after {attempt} attempts")
        if ctx.workflow_time() + pause > deadline:
            raise PollTimeout(f"poll {name!r}: condition not met within {limit}")
        await sleep(ctx, pause, f"{name}:wait")
    raise AssertionError("unreachable")
