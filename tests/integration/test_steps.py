"""Steps: checkpointing, sync and async functions, names, timeouts, retries, optional
steps, unserializable results, ctx.parallel and the low-level API."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import pytest

from forgeflow import (
    Forgeflow,
    Registry,
    RetryPolicy,
    SerializationError,
    StepFailed,
    StepStatus,
    WorkflowContext,
    WorkflowFailed,
    WorkflowRecord,
    WorkflowStatus,
    workflow,
)
from tests.support import proc_core_workflows as crash
from tests.support.db import (
    create_side_effects,
    fetch_steps,
    side_effect_count,
    wait_for_step_status,
)
from tests.support.proc_core_clock import JumpingClock
from tests.support.proc_core_driver import kill, spawn, wait_while_alive


async def run_to_end(ff: Forgeflow, wf: Any, input: Any = None) -> WorkflowRecord:
    """Start and execute a run here; its final record (whatever the outcome)."""
    run_id = await ff.start(wf, input)
    await ff.drive(run_id)
    return await ff.status(run_id)


def steps_of(record: WorkflowRecord) -> dict[str, Any]:
    return {s.name: s for s in record.steps}


# -- executing and checkpointing -----------------------------------------------------------


async def test_sync_and_async_step_functions_both_run(ff: Forgeflow, registry: Registry) -> None:
    """A sync step function runs in a worker thread, an async one on the loop; both return."""
    loop_thread = threading.get_ident()

    def sync_step(x: int) -> list[Any]:
        return [x + 1, threading.get_ident() != loop_thread]

    async def async_step(x: int, *, times: int) -> list[Any]:
        return [x * times, threading.get_ident() == loop_thread]

    @workflow(version=1, registry=registry)
    async def both(ctx: WorkflowContext, n: int) -> list[Any]:
        return [
            await ctx.step("sync", sync_step, n),
            await ctx.step("async", async_step, n, times=3),
        ]

    assert await ff.run(both, 4) == [[5, True], [12, True]]


async def test_a_step_result_is_durable_before_the_workflow_continues(
    ff: Forgeflow, registry: Registry
) -> None:
    """When a step returns, its checkpoint is already committed and visible to others."""

    async def read_checkpoint(ctx: WorkflowContext) -> list[Any]:
        async with ctx.db().acquire() as conn:
            row = await conn.fetchrow(
                "SELECT status, result FROM forgeflow.workflow_steps"
                " WHERE run_id = $1 AND name = 'first'",
                ctx.run_id,
            )
        assert row is not None
        return [row["status"], row["result"]]

    @workflow(version=1, registry=registry)
    async def durable(ctx: WorkflowContext) -> list[Any]:
        await ctx.step("first", lambda: {"answer": 42})
        return await ctx.step("check", read_checkpoint, ctx)

    assert await ff.run(durable) == ["completed", '{"answer": 42}']


async def test_a_runner_is_awaitable_like_run(ff: Forgeflow, registry: Registry) -> None:
    """``await ctx.step(...)`` and ``await ctx.step(...).run()`` do the same thing."""

    @workflow(version=1, registry=registry)
    async def awaited(ctx: WorkflowContext) -> list[int]:
        return [await ctx.step("a", lambda: 1), await ctx.step("b", lambda: 2).run()]

    record = await run_to_end(ff, awaited)
    assert record.output == [1, 2]
    assert [s.name for s in record.steps] == ["a", "b"]


async def test_repeated_step_names_are_numbered_in_call_order(
    ff: Forgeflow, registry: Registry
) -> None:
    """Calling one step name three times checkpoints name, name#2 and name#3."""

    @workflow(version=1, registry=registry)
    async def loop(ctx: WorkflowContext) -> list[int]:
        return [await ctx.step("charge", lambda i=i: i * 10) for i in range(1, 4)]

    record = await run_to_end(ff, loop)
    assert record.output == [10, 20, 30]
    assert [(s.name, s.result) for s in record.steps] == [
        ("charge", 10),
        ("charge#2", 20),
        ("charge#3", 30),
    ]


async def test_repeated_step_names_replay_in_call_order(dsn: str, registry: Registry) -> None:
    """On replay the numbered checkpoints are matched to the calls in the same order."""
    clock = JumpingClock()
    calls: list[int] = []

    @workflow(version=1, registry=registry)
    async def loop(ctx: WorkflowContext) -> list[int]:
        def item(i: int) -> int:
            calls.append(i)
            return i

        out = []
        for i in range(3):
            out.append(await ctx.step("item", item, i))
            await ctx.sleep("1h")
        return out

    async with Forgeflow.connect(
        dsn, registry=registry, clock=clock, listeners=[clock.on_event]
    ) as ff:
        assert await ff.run(loop) == [0, 1, 2]
    assert calls == [0, 1, 2]
    assert clock.jumps == 3


async def test_a_workflow_without_input_takes_only_the_context(
    ff: Forgeflow, registry: Registry
) -> None:
    """A workflow declared as (ctx) runs with no input and exposes its identity on ctx."""

    @workflow(version=3, registry=registry, name="identity")
    async def who(ctx: WorkflowContext) -> list[Any]:
        return [ctx.run_id, ctx.workflow_name, ctx.version, ctx.started_at.isoformat()]

    run_id = await ff.start(who)
    await ff.drive(run_id)
    record = await ff.status(run_id)
    assert record.started_at is not None
    assert await ff.result(run_id) == [run_id, "identity", 3, record.started_at.isoformat()]


async def test_idempotency_key_is_stable_per_run_and_step(
    ff: Forgeflow, registry: Registry
) -> None:
    """ctx.idempotency_key(step) is the same on every call in a run and differs by step."""

    @workflow(version=1, registry=registry)
    async def keys(ctx: WorkflowContext) -> list[str]:
        return [
            ctx.idempotency_key("charge"),
            ctx.idempotency_key("charge"),
            ctx.idempotency_key("refund"),
        ]

    run_id = await ff.start(keys)
    await ff.drive(run_id)
    first, again, other = await ff.result(run_id)
    assert first == again != other
    assert run_id in first and "charge" in first


# -- timeouts --------------------------------------------------------------------------


async def test_a_step_timeout_fails_the_attempt_with_step_timeout(
    ff: Forgeflow, registry: Registry
) -> None:
    """An attempt running past .timeout() is stopped; the step fails with StepTimeout recorded."""
    never = asyncio.Event()

    @workflow(version=1, registry=registry)
    async def slow(ctx: WorkflowContext) -> None:
        await ctx.step("wait_forever", never.wait).timeout("50ms")

    record = await run_to_end(ff, slow)
    step = steps_of(record)["wait_forever"]
    assert step.status is StepStatus.FAILED
    assert step.error["type"] == "StepTimeout"
    assert record.status is WorkflowStatus.FAILED
    assert record.end_reason == "failure"
    assert record.error["step"] == "wait_forever"
    assert "timed out" in record.error["message"]


async def test_a_timed_out_step_raises_step_failed_with_its_cause_in_the_workflow(
    ff: Forgeflow, registry: Registry
) -> None:
    """The workflow sees StepFailed whose error_type is StepTimeout, and may carry on."""
    never = asyncio.Event()

    @workflow(version=1, registry=registry)
    async def catches(ctx: WorkflowContext) -> list[Any]:
        try:
            await ctx.step("slow", never.wait).timeout(0.05)
        except StepFailed as exc:
            return [exc.step, exc.error_type, exc.attempts]
        return []

    assert await ff.run(catches) == ["slow", "StepTimeout", 1]


async def test_a_step_timeout_applies_to_each_retry_attempt(
    ff: Forgeflow, registry: Registry
) -> None:
    """With retries, every timed-out attempt counts, and a fast attempt then succeeds."""
    calls = Counter[str]()
    never = asyncio.Event()

    async def slow_then_fast() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            await never.wait()
        return "fast"

    @workflow(version=1, registry=registry)
    async def retried(ctx: WorkflowContext) -> str:
        return await ctx.step("call", slow_then_fast).timeout("30ms").retry(attempts=3, delay=0)

    record = await run_to_end(ff, retried)
    assert record.output == "fast"
    assert steps_of(record)["call"].attempts == 3


# -- retries ---------------------------------------------------------------------------


async def test_retry_succeeds_on_a_later_attempt_and_records_the_count(
    ff: Forgeflow, registry: Registry
) -> None:
    """A step failing twice then succeeding under attempts=3 completes with attempts == 3."""
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"attempt {len(calls)}")
        return "ok"

    @workflow(version=1, registry=registry)
    async def retrying(ctx: WorkflowContext) -> str:
        return await ctx.step("flaky", flaky).retry(attempts=3, delay="1ms", backoff=1.0).run()

    record = await run_to_end(ff, retrying)
    assert record.output == "ok"
    step = steps_of(record)["flaky"]
    assert (step.status, step.attempts, step.error) == (StepStatus.COMPLETED, 3, None)


async def test_retry_gives_up_after_its_attempts(ff: Forgeflow, registry: Registry) -> None:
    """A step that keeps failing is called exactly `attempts` times, then fails the run."""
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise ValueError(f"failure {len(calls)}")

    @workflow(version=1, registry=registry)
    async def giving_up(ctx: WorkflowContext) -> None:
        await ctx.step("broken", broken).retry(RetryPolicy(attempts=2, delay=0))

    record = await run_to_end(ff, giving_up)
    assert len(calls) == 2
    step = steps_of(record)["broken"]
    assert (step.status, step.attempts) == (StepStatus.FAILED, 2)
    assert step.error == {"type": "ValueError", "message": "failure 2"}
    assert record.status is WorkflowStatus.FAILED
    assert "after 2 attempt(s)" in record.error["message"]


async def test_retry_on_limits_which_errors_are_retried(ff: Forgeflow, registry: Registry) -> None:
    """An error outside retry_on fails the step at once, without another attempt."""
    calls: list[int] = []

    def wrong() -> None:
        calls.append(1)
        raise KeyError("not retryable")

    @workflow(version=1, registry=registry)
    async def selective(ctx: WorkflowContext) -> None:
        await ctx.step("wrong", wrong).retry(attempts=5, delay=0, retry_on=ValueError)

    record = await run_to_end(ff, selective)
    assert len(calls) == 1
    assert steps_of(record)["wrong"].attempts == 1


async def test_each_failed_attempt_is_checkpointed_before_the_next(
    ff: Forgeflow, registry: Registry
) -> None:
    """While attempt n runs, the database already holds n-1 failed attempts and the last error."""
    seen: list[Any] = []

    async def inspect_self(ctx: WorkflowContext) -> str:
        async with ctx.db().acquire() as conn:
            row = await conn.fetchrow(
                "SELECT status, attempts, error->>'message' AS message"
                " FROM forgeflow.workflow_steps WHERE run_id = $1 AND name = 'probe'",
                ctx.run_id,
            )
        seen.append(None if row is None else tuple(row))
        if len(seen) < 3:
            raise RuntimeError(f"attempt {len(seen)}")
        return "done"

    @workflow(version=1, registry=registry)
    async def probing(ctx: WorkflowContext) -> str:
        return await ctx.step("probe", inspect_self, ctx).retry(attempts=3, delay=0)

    assert await ff.run(probing) == "done"
    assert seen == [None, ("running", 1, "attempt 1"), ("running", 2, "attempt 2")]


async def test_attempt_counts_survive_a_crash(dsn: str) -> None:
    """After the process dies mid-retry, only the attempts not yet recorded remain."""
    await create_side_effects(dsn)
    async with Forgeflow.connect(dsn, registry=crash.registry) as ff:
        run_id = await ff.start(crash.crash_retry)
        proc = await spawn("drive", dsn, run_id)

        async def second_attempt() -> bool:
            return await side_effect_count(dsn, "flaky") >= 2

        await wait_while_alive(proc, second_attempt, "the second attempt to start")
        assert await kill(proc) == -9
        before = await fetch_steps(dsn, run_id)
        assert (before["flaky"]["status"], before["flaky"]["attempts"]) == ("running", 1)

        await ff.drive(run_id)
        record = await ff.status(run_id)
    # One failed attempt was recorded and one was lost with the process: of the three
    # attempts only two were left, not three again.
    assert await side_effect_count(dsn, "flaky") == 4
    step = steps_of(record)["flaky"]
    assert (step.status, step.attempts) == (StepStatus.FAILED, 3)
    assert step.error["message"] == "flaky call 4 failed"
    assert record.status is WorkflowStatus.FAILED


# -- optional steps --------------------------------------------------------------------


async def test_an_optional_step_failure_returns_its_default_and_the_run_completes(
    ff: Forgeflow, registry: Registry
) -> None:
    """A failing optional step is recorded as skipped and returns its default."""
    undone: list[str] = []

    def send_email() -> str:
        raise ConnectionError("smtp down")

    @workflow(version=1, registry=registry)
    async def tolerant(ctx: WorkflowContext) -> list[Any]:
        user = await ctx.step("create_user", lambda: "u1").compensate(undone.append)
        sent = await ctx.step("send_email", send_email).optional(default="not sent")
        nothing = await ctx.step("notify", send_email).optional()
        return [user, sent, nothing]

    record = await run_to_end(ff, tolerant)
    assert record.status is WorkflowStatus.COMPLETED
    assert record.output == ["u1", "not sent", None]
    steps = steps_of(record)
    assert steps["send_email"].status is StepStatus.SKIPPED
    assert steps["send_email"].error == {"type": "ConnectionError", "message": "smtp down"}
    assert steps["create_user"].status is StepStatus.COMPLETED
    assert undone == []


async def test_an_optional_step_is_retried_before_it_is_skipped(
    ff: Forgeflow, registry: Registry
) -> None:
    """An optional step with retries uses them all before returning its default."""
    calls: list[int] = []

    def failing() -> int:
        calls.append(1)
        raise RuntimeError("no")

    @workflow(version=1, registry=registry)
    async def tolerant(ctx: WorkflowContext) -> int:
        return await ctx.step("s", failing).retry(attempts=2, delay=0).optional(default=-1)

    record = await run_to_end(ff, tolerant)
    assert record.output == -1
    assert len(calls) == 2
    assert steps_of(record)["s"].attempts == 2


# -- serialization ---------------------------------------------------------------------


async def test_an_unserializable_result_fails_the_step_naming_it(
    ff: Forgeflow, registry: Registry
) -> None:
    """A result that is not JSON fails its step (no retry) with an error naming the step."""
    calls: list[int] = []

    def make_lock() -> Any:
        calls.append(1)
        return threading.Lock()

    @workflow(version=1, registry=registry)
    async def leaky(ctx: WorkflowContext) -> None:
        await ctx.step("make_lock", make_lock).retry(attempts=3, delay=0)

    with pytest.raises(WorkflowFailed) as caught:
        await ff.run(leaky)
    assert "make_lock" in str(caught.value)
    assert len(calls) == 1
    record = await ff.status(caught.value.run_id)
    step = steps_of(record)["make_lock"]
    assert step.status is StepStatus.FAILED
    assert step.error["type"] == "SerializationError"
    assert "'make_lock'" in step.error["message"]


async def test_an_unserializable_result_raises_serialization_error_in_the_workflow(
    ff: Forgeflow, registry: Registry
) -> None:
    """The workflow can tell a serialization failure from others by StepFailed.error_type."""

    @workflow(version=1, registry=registry)
    async def leaky(ctx: WorkflowContext) -> list[Any]:
        try:
            await ctx.step("bad", object)
        except StepFailed as exc:
            return [exc.step, exc.error_type]
        return []

    assert await ff.run(leaky) == ["bad", "SerializationError"]


async def test_a_nan_result_fails_the_step_naming_it(ff: Forgeflow, registry: Registry) -> None:
    """A float NaN, which JSON cannot hold, fails its step with SerializationError."""

    @workflow(version=1, registry=registry)
    async def ratio(ctx: WorkflowContext) -> None:
        await ctx.step("ratio", lambda: {"value": float("nan")})

    record = await run_to_end(ff, ratio)
    assert record.status is WorkflowStatus.FAILED
    assert record.error["step"] == "ratio"
    step = steps_of(record)["ratio"]
    assert step.error["type"] == "SerializationError"
    assert "'ratio'" in step.error["message"]


# -- ctx.parallel ----------------------------------------------------------------------


async def test_parallel_runs_steps_concurrently_and_returns_results_in_order(
    ff: Forgeflow, registry: Registry
) -> None:
    """Each parallel step waits for all the others to start, so none finishes alone."""
    started: list[str] = []
    everyone = asyncio.Event()

    async def meet(name: str, delay_rank: int) -> str:
        started.append(name)
        if len(started) == 3:
            everyone.set()
        await everyone.wait()
        for _ in range(delay_rank):
            await asyncio.sleep(0)
        return name.upper()

    @workflow(version=1, registry=registry)
    async def fan_out(ctx: WorkflowContext) -> list[str]:
        return await ctx.parallel(
            ctx.step("a", meet, "a", 3).timeout("20s"),
            ctx.step("b", meet, "b", 0).timeout("20s"),
            ctx.step("c", meet, "c", 1).timeout("20s"),
        )

    record = await run_to_end(ff, fan_out)
    assert record.output == ["A", "B", "C"]
    assert {s.name: s.status for s in record.steps} == dict.fromkeys("abc", StepStatus.COMPLETED)


async def test_a_failing_parallel_step_lets_its_siblings_finish_and_compensates_them(
    ff: Forgeflow, registry: Registry
) -> None:
    """A sibling still running when another parallel step fails completes and is undone."""
    undone: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")

    async def slower(ctx: WorkflowContext) -> str:
        await wait_for_step_status(ctx.db(), ctx.run_id, "bad", "failed")
        return "ok"

    @workflow(version=1, registry=registry)
    async def fan_out(ctx: WorkflowContext) -> None:
        await ctx.parallel(
            ctx.step("ok", slower, ctx).compensate(undone.append),
            ctx.step("bad", boom),
        )

    record = await run_to_end(ff, fan_out)
    assert record.status is WorkflowStatus.COMPENSATED
    assert record.error["step"] == "bad"
    assert undone == ["ok"]
    assert steps_of(record)["ok"].status is StepStatus.COMPENSATED


# -- the low-level API -----------------------------------------------------------------


async def test_the_low_level_api_supports_a_manual_retry_loop(
    ff: Forgeflow, registry: Registry
) -> None:
    """record_step_start/failure/complete checkpoint each attempt of a hand-written loop."""
    answers = iter([RuntimeError("busy"), RuntimeError("still busy"), {"verified": True}])

    @workflow(version=1, registry=registry)
    async def manual(ctx: WorkflowContext, document: str) -> list[Any]:
        attempts = []
        while not ctx.is_step_completed("verify"):
            attempt = await ctx.record_step_start("verify", input={"document": document})
            attempts.append(attempt)
            answer = next(answers)
            if isinstance(answer, Exception):
                await ctx.record_step_failure("verify", answer)
            else:
                await ctx.record_step_complete("verify", answer)
        return [attempts, ctx.get_step_result("verify")]

    run_id = await ff.start(manual, "passport.pdf")
    await ff.drive(run_id)
    assert await ff.result(run_id) == [[1, 2, 3], {"verified": True}]
    record = await ff.status(run_id)
    step = steps_of(record)["verify"]
    assert (step.status, step.attempts, step.result) == (
        StepStatus.COMPLETED,
        3,
        {"verified": True},
    )
    rows = await fetch_steps(ff.pool, run_id)
    assert rows["verify"]["input"] == '{"document": "passport.pdf"}'


async def test_a_recorded_failure_is_kept_with_its_message(
    ff: Forgeflow, registry: Registry
) -> None:
    """record_step_failure stores the error (an exception or a text) on the step."""

    @workflow(version=1, registry=registry)
    async def failing(ctx: WorkflowContext) -> bool:
        await ctx.record_step_start("a")
        await ctx.record_step_failure("a", ValueError("bad value"))
        await ctx.record_step_start("b")
        await ctx.record_step_failure("b", "plain text")
        return ctx.is_step_completed("a")

    record = await run_to_end(ff, failing)
    assert record.output is False
    steps = steps_of(record)
    assert steps["a"].status is StepStatus.FAILED
    assert steps["a"].error == {"type": "ValueError", "message": "bad value"}
    assert steps["b"].error["message"] == "plain text"


async def test_low_level_checkpoints_are_skipped_on_replay(dsn: str, registry: Registry) -> None:
    """After replay is_step_completed is true and get_step_result returns the typed result."""
    clock = JumpingClock()
    calls: list[int] = []

    @workflow(version=1, registry=registry)
    async def manual(ctx: WorkflowContext) -> list[Any]:
        if not ctx.is_step_completed("lookup"):
            calls.append(1)
            await ctx.record_step_start("lookup")
            await ctx.record_step_complete("lookup", (1, "one"))
        await ctx.sleep("1h")
        plain = ctx.get_step_result("lookup")
        typed = ctx.get_step_result("lookup", type=tuple[float, str])
        missing = ctx.get_step_result("never_ran")
        return [type(plain).__name__, plain, type(typed[0]).__name__, missing]

    async with Forgeflow.connect(
        dsn, registry=registry, clock=clock, listeners=[clock.on_event]
    ) as ff:
        run_id = await ff.start(manual)
        await ff.drive(run_id)
        record = await ff.status(run_id)
    assert clock.jumps == 1
    assert calls == [1]
    assert record.output == ["tuple", [1, "one"], "float", None]


async def test_record_step_complete_refuses_an_unserializable_result(
    ff: Forgeflow, registry: Registry
) -> None:
    """record_step_complete raises SerializationError naming the step."""

    @workflow(version=1, registry=registry)
    async def manual(ctx: WorkflowContext) -> str:
        await ctx.record_step_start("keep")
        try:
            await ctx.record_step_complete("keep", object())
        except SerializationError as exc:
            return exc.step
        return ""

    assert await ff.run(manual) == "keep"


async def test_run_compensation_runs_the_registered_compensations_now(
    ff: Forgeflow, registry: Registry
) -> None:
    """ctx.run_compensation() undoes completed steps in reverse and the run may continue."""
    undone: list[Any] = []

    @workflow(version=1, registry=registry)
    async def rollback(ctx: WorkflowContext) -> list[Any]:
        await ctx.step("reserve", lambda: "seat-1").compensate(undone.append)
        await ctx.step("hold", lambda: "hold-9").compensate(undone.append)
        failures = await ctx.run_compensation()
        again = await ctx.run_compensation()
        await ctx.step("after", lambda: None)
        return [len(failures), len(again)]

    record = await run_to_end(ff, rollback)
    assert record.status is WorkflowStatus.COMPLETED
    assert record.output == [0, 0]
    assert undone == ["hold-9", "seat-1"]
    steps = steps_of(record)
    assert steps["reserve"].status is StepStatus.COMPENSATED
    assert steps["hold"].status is StepStatus.COMPENSATED
    assert steps["after"].status is StepStatus.COMPLETED


async def test_run_compensation_reports_compensations_that_failed(
    ff: Forgeflow, registry: Registry
) -> None:
    """A failing compensation is returned by run_compensation, the others still run."""
    undone: list[Any] = []

    def cannot_undo(_: Any) -> None:
        raise RuntimeError("refund refused")

    @workflow(version=1, registry=registry)
    async def rollback(ctx: WorkflowContext) -> list[str]:
        await ctx.step("first", lambda: 1).compensate(undone.append)
        await ctx.step("second", lambda: 2).compensate(cannot_undo)
        return [str(e) for e in await ctx.run_compensation()]

    record = await run_to_end(ff, rollback)
    assert record.output == ["refund refused"]
    assert undone == [1]
    steps = steps_of(record)
    assert steps["second"].compensation_error["message"] == "refund refused"


async def test_a_short_retry_delay_waits_in_place_without_suspending(
    ff: Forgeflow, registry: Registry
) -> None:
    """A retry delay below the sleep threshold keeps the run (one execution, no suspension)."""
    calls: list[int] = []

    def twice() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first")
        return len(calls)

    @workflow(version=1, registry=registry)
    async def waits(ctx: WorkflowContext) -> int:
        return await ctx.step("twice", twice).retry(attempts=2, delay="10ms")

    record = await run_to_end(ff, waits)
    assert record.output == 2
    assert record.executions == 1


async def test_a_long_retry_delay_suspends_the_run_until_the_next_attempt(
    dsn: str, registry: Registry
) -> None:
    """A retry delay above the sleep threshold releases the run; the attempt count carries on."""
    clock = JumpingClock()
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first")
        return "second"

    @workflow(version=1, registry=registry)
    async def patient(ctx: WorkflowContext) -> str:
        return await ctx.step("flaky", flaky).retry(attempts=2, delay="2h")

    async with Forgeflow.connect(
        dsn, registry=registry, clock=clock, listeners=[clock.on_event]
    ) as ff:
        record = await run_to_end(ff, patient)
    assert record.output == "second"
    assert clock.jumps == 1
    assert record.executions == 2
    assert steps_of(record)["flaky"].attempts == 2
