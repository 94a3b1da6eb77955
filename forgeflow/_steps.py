"""StepRunner, the fluent builder for one checkpointed step, and RetryPolicy."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import anyio
import anyio.to_thread

from ._durations import Duration, parse_duration
from ._journal import Checkpoint
from ._models import StepStatus
from ._serde import decode_result, dumps, encode_result, error_info, loads, return_type
from .errors import DatabaseError, SerializationError, StepFailed, StepTimeout

if TYPE_CHECKING:
    from ._runstate import RunContext

__all__ = ["RetryPolicy", "StepRunner", "invoke"]

T = TypeVar("T")
D = TypeVar("D")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how fast a failing step is tried again."""

    attempts: int = 3
    delay: Duration = "1s"
    backoff: float = 2.0
    max_delay: Duration | None = None
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    _delay_s: float = field(init=False, repr=False, default=0.0)
    _max_s: float | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts: must be at least 1")
        if self.backoff < 1:
            raise ValueError("backoff: must be at least 1.0")
        if isinstance(self.retry_on, type):
            object.__setattr__(self, "retry_on", (self.retry_on,))
        object.__setattr__(
            self, "_delay_s", parse_duration(self.delay, field="delay").total_seconds()
        )
        if self.max_delay is not None:
            cap = parse_duration(self.max_delay, field="max_delay").total_seconds()
            object.__setattr__(self, "_max_s", cap)

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        delay = self._delay_s * self.backoff ** (attempt - 1)
        return delay if self._max_s is None else min(delay, self._max_s)

    def retries(self, exc: BaseException) -> bool:
        """True if ``exc`` is worth another attempt under this policy."""
        return isinstance(exc, self.retry_on)


class StepRunner(Generic[T]):
    """One step, configured fluently, executed (or replayed) by ``run()`` or ``await``."""

    __slots__ = (
        "_compensation",
        "_ctx",
        "_default",
        "_fn",
        "_optional",
        "_ran",
        "_retry",
        "_timeout",
        "args",
        "kwargs",
        "name",
    )

    def __init__(
        self,
        ctx: RunContext,
        name: str,
        fn: Callable[..., T | Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self._ctx = ctx
        self.name = name
        self._fn = fn
        self.args = args
        self.kwargs = kwargs
        self._timeout: float | None = None
        self._retry: RetryPolicy | None = None
        self._compensation: Callable[[T], Any] | None = None
        self._optional = False
        self._default: Any = None
        self._ran = False

    def __del__(self) -> None:
        # Like a coroutine never awaited: `ctx.step(...)` without `await` or `.run()` is a
        # step that silently never happens, so say so where the user will look.
        if not getattr(self, "_ran", True) and not sys.is_finalizing():
            self._ctx.log.warning(
                "step_never_run",
                step=self.name,
                hint="await the step runner, or call its .run()",
            )

    def timeout(self, duration: Duration) -> StepRunner[T]:
        """Fail an attempt with StepTimeout once it runs longer than ``duration``."""
        self._timeout = parse_duration(duration, field="timeout").total_seconds()
        return self

    def retry(
        self,
        policy: RetryPolicy | None = None,
        *,
        attempts: int = 3,
        delay: Duration = "1s",
        backoff: float = 2.0,
        max_delay: Duration | None = None,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
    ) -> StepRunner[T]:
        """Try again on failure, with durable attempt counts and exponential backoff."""
        if policy is None:
            if isinstance(retry_on, type):
                retry_on = (retry_on,)
            policy = RetryPolicy(attempts, delay, backoff, max_delay, retry_on)
        self._retry = policy
        return self

    def compensate(self, fn: Callable[[T], Any]) -> StepRunner[T]:
        """Register ``fn(result)`` to undo this step if the run is rolled back."""
        self._compensation = fn
        return self

    @overload
    def optional(self) -> StepRunner[T | None]: ...
    @overload
    def optional(self, default: D) -> StepRunner[T | D]: ...
    def optional(self, default: Any = None) -> StepRunner[Any]:
        """On failure, record it and return ``default`` instead of failing the run."""
        self._optional = True
        self._default = default
        return self

    async def run(self) -> T:
        """Execute the step, or return its checkpointed result on replay."""
        self._ran = True
        ctx = self._ctx
        row = ctx.journal.get(self.name)
        attempts = 0
        retry_at: datetime | None = None
        if row is not None:
            status = row.status
            if status == "completed" or status == "compensated":
                return self._replayed(row)
            if status == "skipped":
                return self._default  # type: ignore[no-any-return]
            if status == "failed":
                error = loads(row.error) or {}
                raise StepFailed(
                    error.get("message"),
                    step=self.name,
                    attempts=row.attempts,
                    error_type=error.get("type"),
                )
            attempts = row.attempts
            pending = (loads(row.error) or {}).get("retry_at")
            retry_at = datetime.fromisoformat(pending) if pending else None
        ctx.before_new_work(self.name)
        if retry_at is not None:
            await ctx.wait_until(retry_at, {"kind": "retry", "step": self.name})
        return await self._attempts(attempts)

    def __await__(self) -> Generator[Any, None, T]:
        return self.run().__await__()

    def _replayed(self, row: Any) -> T:
        # The declared return type wins over the stored tag: a tag says only "tuple" or
        # names a model class that may not be importable where the run is replayed.
        ann = return_type(self._fn)
        value: T = decode_result(row.result, row.result_type, ann)
        ctx = self._ctx
        ctx.journal.reached(row.completed_at)
        if self._compensation is not None:
            done = row.status == StepStatus.COMPENSATED
            ctx.journal.push_compensation(self.name, self._compensation, value, done)
        return value

    async def _attempts(self, attempt: int) -> T:
        ctx = self._ctx
        clock = ctx.clock
        while True:
            attempt += 1
            # Every attempt is new work: none starts past the lease or after a cancel.
            ctx.before_new_work(self.name)
            started = clock.now()
            ctx.attempt_started(self.name, attempt, started)
            try:
                value: T = await invoke(self._fn, self.args, self.kwargs, self._timeout, self.name)
                text, tag = encode_result(value, self.name)
            except Exception as exc:
                ctx.attempt_ended(self.name)
                delay = self._retry_delay(exc, attempt)
                if delay is not None:
                    await self._retry_later(exc, attempt, started, delay)
                    continue
                return await self._failed(exc, attempt, started)
            except BaseException:
                ctx.attempt_ended(self.name)
                raise
            ctx.attempt_ended(self.name)
            completed = clock.now()
            try:
                await ctx.checkpoint(
                    Checkpoint(
                        self.name,
                        "step",
                        StepStatus.COMPLETED,
                        text,
                        tag,
                        None,
                        attempt,
                        started,
                        completed,
                    )
                )
            except DatabaseError as exc:
                # PostgreSQL refused the result itself (a data exception: a NUL character
                # in a string, a number jsonb cannot hold). Trying again cannot help: the
                # step fails like any result that cannot be stored.
                problem = SerializationError(
                    f"step {self.name!r}: its result cannot be stored: {exc.message}",
                    step=self.name,
                )
                return await self._failed(problem, attempt, started)
            ctx.journal.reached(completed)
            if self._compensation is not None:
                ctx.journal.push_compensation(self.name, self._compensation, value)
            await ctx.emit(
                "step_completed",
                step=self.name,
                attempts=attempt,
                duration_ms=round((completed - started).total_seconds() * 1000, 3),
            )
            return value

    def _retry_delay(self, exc: Exception, attempt: int) -> float | None:
        """Seconds to wait before attempt ``attempt + 1`` after ``exc``; None when the
        step has failed (no policy, attempts spent, an error the policy does not retry,
        or a result that cannot be stored, which no retry can change)."""
        policy = self._retry
        if (
            isinstance(exc, SerializationError)
            or policy is None
            or attempt >= policy.attempts
            or not policy.retries(exc)
        ):
            return None
        return policy.delay_after(attempt)

    async def _retry_later(
        self, exc: Exception, attempt: int, started: datetime, delay: float
    ) -> None:
        ctx = self._ctx
        retry_at = ctx.clock.now() + timedelta(seconds=delay)
        error = {**error_info(exc), "retry_at": retry_at.isoformat()}
        await ctx.checkpoint(
            Checkpoint(
                self.name,
                "step",
                StepStatus.RUNNING,
                error=dumps(error),
                attempts=attempt,
                started_at=started,
            )
        )
        await ctx.emit(
            "step_failed",
            step=self.name,
            attempt=attempt,
            will_retry=True,
            error=error["message"],
            retry_in_s=delay,
        )
        await ctx.wait_until(retry_at, {"kind": "retry", "step": self.name})

    async def _failed(self, exc: Exception, attempt: int, started: datetime) -> T:
        ctx = self._ctx
        error = error_info(exc)
        status = StepStatus.SKIPPED if self._optional else StepStatus.FAILED
        await ctx.checkpoint(
            Checkpoint(
                self.name,
                "step",
                status,
                error=dumps(error),
                attempts=attempt,
                started_at=started,
                completed_at=ctx.clock.now(),
            )
        )
        await ctx.emit(
            "step_failed",
            step=self.name,
            attempt=attempt,
            will_retry=False,
            optional=self._optional,
            error=error["message"],
        )
        if self._optional:
            return self._default  # type: ignore[no-any-return]
        message = f"step {self.name!r} failed after {attempt} attempt(s): {error['message']}"
        raise StepFailed(
            message, step=self.name, attempts=attempt, error_type=error["type"]
        ) from exc


async def invoke(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout: float | None = None,
    name: str = "",
) -> Any:
    """Call a sync (in a worker thread) or async function, within ``timeout`` seconds."""
    if timeout is None:
        return await _call(fn, args, kwargs)
    try:
        with anyio.fail_after(timeout):
            return await _call(fn, args, kwargs, abandon=True)
    except TimeoutError:
        raise StepTimeout(f"step {name!r} timed out after {timeout:g}s", step=name) from None


async def _call(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], abandon: bool = False
) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await fn(*args, **kwargs)
    # A thread cannot be interrupted: under a step timeout it is abandoned (left to finish
    # in the background) so that the attempt fails on time, instead of the timeout being
    # ignored until the function returns.
    result = await anyio.to_thread.run_sync(partial(fn, *args, **kwargs), abandon_on_cancel=abandon)
    if inspect.isawaitable(result):
        result = await result
    return result
