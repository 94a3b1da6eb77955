"""Replay: a run executed again returns its checkpoints instead of running its steps.

The first group kills a real process (SIGKILL) in the middle of a run and executes the
run again in the test process; the second replays in one process, through a durable
sleep whose timer a jumping clock fires at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from pydantic import BaseModel

from forgeflow import Forgeflow, Registry, StepStatus, WorkflowContext, WorkflowRecord, workflow
from tests.support import proc_core_workflows as crash
from tests.support.db import (
    create_database,
    create_side_effects,
    drop_database,
    fetch_run,
    side_effect_count,
    side_effects,
)
from tests.support.proc_core_clock import JumpingClock
from tests.support.proc_core_driver import kill, spawn, wait_while_alive

# -- a run whose process is killed mid-run -----------------------------------------------


@dataclass
class Recovered:
    """What a crashed-then-recovered run left behind."""

    output: dict[str, Any]
    counts: dict[str, int]
    killed_with: int
    status_after_kill: str
    record: WorkflowRecord


@pytest.fixture(scope="module")
async def recovered(pg_server: str, template_db: str) -> AsyncIterator[Recovered]:
    """crash_replay killed while its "block" step is in flight, then executed here."""
    dsn = await create_database(pg_server, template_db)
    try:
        await create_side_effects(dsn)
        async with Forgeflow.connect(dsn, registry=crash.registry) as ff:
            run_id = await ff.start(crash.crash_replay, dsn)
            proc = await spawn("drive", dsn, run_id)

            async def blocked() -> int:
                return await side_effect_count(dsn, "block")

            await wait_while_alive(proc, blocked, "the block step to start")
            killed_with = await kill(proc)
            row = await fetch_run(dsn, run_id)
            assert row is not None
            await ff.drive(run_id)
            output = await ff.result(run_id)
            record = await ff.status(run_id)
        yield Recovered(output, await side_effects(dsn), killed_with, row["status"], record)
    finally:
        await drop_database(pg_server, dsn)


async def test_a_killed_run_is_continued_from_its_last_checkpoint(recovered: Recovered) -> None:
    """A run whose process was SIGKILLed mid-run completes when executed again."""
    assert recovered.killed_with == -9
    assert recovered.status_after_kill == "running"
    assert recovered.record.status == "completed"
    assert recovered.record.executions == 2
    assert recovered.output["numbers"] == [1, 2, 3]


async def test_steps_completed_before_the_crash_ran_exactly_once(recovered: Recovered) -> None:
    """No step completed before the crash has its function called again on replay."""
    counts = recovered.counts
    assert {k: counts[k] for k in ("create_profile", "stamp", "pair", "observe")} == {
        "create_profile": 1,
        "stamp": 1,
        "pair": 1,
        "observe": 1,
    }
    assert counts["finish"] == 1


async def test_the_step_in_flight_at_the_crash_runs_again(recovered: Recovered) -> None:
    """The step that had not checkpointed when the process died is executed again."""
    assert recovered.counts["block"] == 2
    steps = {s.name: s for s in recovered.record.steps}
    assert steps["block"].status is StepStatus.COMPLETED
    assert steps["block"].result == "block done"


async def test_results_keep_their_types_when_replayed_after_a_crash(recovered: Recovered) -> None:
    """A pydantic model, a datetime and a tuple come back as such from their checkpoints."""
    assert recovered.output["profile"] == ["Profile", True]
    assert recovered.output["when"] == ["datetime", True]
    assert recovered.output["pair"] == ["tuple", True]


async def test_determinism_helpers_repeat_their_values_after_a_crash(
    recovered: Recovered,
) -> None:
    """workflow_time, uuid4, random and elapsed return on replay what they returned before."""
    assert recovered.output["marks_identical"] is True


# -- replay in one process, through a durable sleep ------------------------------------


@pytest.fixture
async def jumping(dsn: str, registry: Registry) -> AsyncIterator[tuple[Forgeflow, JumpingClock]]:
    """A client whose durable sleeps end at once, so the run is replayed right away."""
    clock = JumpingClock()
    async with Forgeflow.connect(
        dsn, registry=registry, clock=clock, listeners=[clock.on_event]
    ) as client:
        yield client, clock


class Address(BaseModel):
    """A nested model in a step result."""

    city: str
    zip: str


class Customer(BaseModel):
    """A model step result."""

    id: UUID
    name: str
    address: Address
    balance: Decimal
    joined: datetime


CUSTOMER = Customer(
    id=UUID("12345678-1234-5678-1234-567812345678"),
    name="Ada",
    address=Address(city="London", zip="N1"),
    balance=Decimal("10.25"),
    joined=datetime(2023, 1, 2, 3, 4, 5, 600000, tzinfo=UTC),
)

EXPECTED: dict[str, Any] = {
    "model": CUSTOMER,
    "models": [CUSTOMER, CUSTOMER.model_copy(update={"name": "Grace"})],
    "datetime": datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
    "date": date(2024, 2, 29),
    "time": time(12, 30, 1),
    "timedelta": timedelta(hours=1, microseconds=5),
    "uuid": UUID("87654321-4321-8765-4321-876543218765"),
    "decimal": Decimal("3.14159265358979323846"),
    "tuple": (1, "two", 3.0),
    "set": {1, 2, 3},
    "frozenset": frozenset({"a", "b"}),
    "bytes": b"raw bytes",
    "dict": {"a": [1, 2, {"b": None}], "c": True},
    "list": [1, "x", None, 2.5],
    "int": 2**62,
    "float": 0.1,
    "str": "héllo ✓",
    "bool": False,
    "none": None,
}


def customers() -> list[Customer]:
    return list(EXPECTED["models"])


def typed_pair() -> tuple[datetime, UUID]:
    return (EXPECTED["datetime"], EXPECTED["uuid"])


async def test_typed_results_round_trip_through_replay(
    jumping: tuple[Forgeflow, JumpingClock], registry: Registry
) -> None:
    """Models, dates, UUIDs, decimals, tuples, sets, bytes and builtins replay with their types."""
    ff, clock = jumping
    calls: Counter[str] = Counter()

    def produce(key: str) -> Any:
        calls[key] += 1
        return EXPECTED[key]

    @workflow(version=1, registry=registry)
    async def typed(ctx: WorkflowContext) -> dict[str, bool]:
        values = {key: await ctx.step(key, produce, key) for key in EXPECTED if key != "models"}
        values["models"] = await ctx.step("models", customers)
        await ctx.sleep("1h")
        return {
            key: type(value) is type(EXPECTED[key]) and value == EXPECTED[key]
            for key, value in values.items()
        }

    output = await ff.run(typed)
    assert clock.jumps == 1
    assert output == dict.fromkeys(EXPECTED, True)
    assert set(calls.values()) == {1}


async def test_a_step_return_annotation_types_its_replayed_result(
    jumping: tuple[Forgeflow, JumpingClock], registry: Registry
) -> None:
    """A step annotated ``-> tuple[datetime, UUID]`` replays its elements as datetime and UUID."""
    ff, clock = jumping

    @workflow(version=1, registry=registry)
    async def annotated(ctx: WorkflowContext) -> list[str]:
        when, ident = await ctx.step("pair", typed_pair)
        await ctx.sleep("1h")
        return [type(when).__name__, type(ident).__name__]

    assert await ff.run(annotated) == ["datetime", "UUID"]
    assert clock.jumps == 1


class Marks(BaseModel):
    """The values of the determinism helpers at one point of a run."""

    time: datetime
    uuids: list[UUID]
    randoms: list[float]
    elapsed: timedelta


def marks(ctx: WorkflowContext) -> Marks:
    return Marks(
        time=ctx.workflow_time(),
        uuids=[ctx.uuid4(), ctx.uuid4()],
        randoms=[ctx.random(), ctx.random()],
        elapsed=ctx.elapsed(),
    )


def keep(value: Marks) -> Marks:
    return value


async def test_determinism_helpers_are_identical_across_replay(
    jumping: tuple[Forgeflow, JumpingClock], registry: Registry
) -> None:
    """Each helper returns on replay exactly what it returned at that point the first time."""
    ff, clock = jumping

    @workflow(version=1, registry=registry)
    async def deterministic(ctx: WorkflowContext) -> list[bool]:
        await ctx.step("first", lambda: 1)
        before = marks(ctx)
        recorded_before = await ctx.step("record_before", keep, before)
        await ctx.sleep("1h")
        after = marks(ctx)
        recorded_after = await ctx.step("record_after", keep, after)
        await ctx.sleep("1h")
        return [recorded_before == before, recorded_after == after, before != after]

    assert await ff.run(deterministic) == [True, True, True]
    assert clock.jumps == 2


async def test_workflow_time_is_the_time_of_the_latest_checkpoint(
    ff: Forgeflow, registry: Registry
) -> None:
    """workflow_time() is the completion time of the last step, not the wall clock."""

    @workflow(version=1, registry=registry)
    async def timed(ctx: WorkflowContext) -> list[datetime]:
        start = ctx.workflow_time()
        await ctx.step("one", lambda: 1)
        return [start, ctx.workflow_time(), ctx.workflow_time()]

    run_id = await ff.start(timed)
    await ff.drive(run_id)
    start, after_one, again = await ff.result(run_id)
    record = await ff.status(run_id)
    assert start == record.started_at
    assert after_one == again == record.steps[0].completed_at


async def test_uuid4_and_random_differ_between_runs(ff: Forgeflow, registry: Registry) -> None:
    """The seeded helpers are per run: two runs of one workflow get different values."""

    @workflow(version=1, registry=registry)
    async def seeded(ctx: WorkflowContext) -> list[str]:
        return [str(ctx.uuid4()), repr(ctx.random())]

    first = await ff.run(seeded)
    second = await ff.run(seeded)
    assert first[0] != second[0]
    assert first[1] != second[1]
    assert UUID(first[0]).version == 4


async def test_a_replayed_run_does_not_call_completed_steps(
    jumping: tuple[Forgeflow, JumpingClock], registry: Registry, dsn: str
) -> None:
    """On replay in a fresh context, only the steps after the last checkpoint execute."""
    ff, _ = jumping
    calls: list[str] = []

    def call(name: str, value: int) -> int:
        calls.append(name)
        return value

    @workflow(version=1, registry=registry)
    async def counted(ctx: WorkflowContext) -> int:
        a = await ctx.step("a", call, "a", 1)
        b = await ctx.step("b", call, "b", 2)
        await ctx.sleep("2h")
        c = await ctx.step("c", call, "c", 3)
        return a + b + c

    run_id = await ff.start(counted)
    await ff.drive(run_id)
    assert await ff.result(run_id) == 6
    assert calls == ["a", "b", "c"]
    row = await fetch_run(dsn, run_id)
    assert row is not None and row["executions"] == 2
