"""Workflows shared by crash tests and the driver process they kill.

Each step counts its real executions in the side-effect table (tests.support.db), so a
test can tell which functions ran again after the crash. A step that must be "in flight"
when the driver is killed blocks forever on its first execution only: the test waits for
that first execution to be counted, kills the driver, and executes the run again itself.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
from pydantic import BaseModel

from forgeflow import Registry, WorkflowContext, workflow
from tests.support.db import record_side_effect

__all__ = [
    "Marks",
    "Profile",
    "crash_compensation",
    "crash_replay",
    "crash_retry",
    "registry",
]

registry = Registry()


class Profile(BaseModel):
    """A step result that must come back as a model after the crash."""

    user_id: int
    email: str
    credit: Decimal


class Marks(BaseModel):
    """What the determinism helpers returned before the crash."""

    time: datetime
    uuid: UUID
    random: float
    elapsed: timedelta


async def _block_forever() -> None:
    await asyncio.Event().wait()


async def create_profile(pool: asyncpg.Pool, email: str) -> Profile:
    await record_side_effect(pool, "create_profile")
    return Profile(user_id=7, email=email, credit=Decimal("12.50"))


async def stamp(pool: asyncpg.Pool) -> datetime:
    await record_side_effect(pool, "stamp")
    return datetime(2024, 5, 17, 9, 30, 15, 123456).astimezone()


def make_pair(dsn: str) -> tuple[int, str]:
    # A sync step: it runs in a worker thread, so it records through its own loop.
    asyncio.run(record_side_effect(dsn, "pair"))
    return (3, "three")


async def observe(pool: asyncpg.Pool, marks: Marks) -> Marks:
    await record_side_effect(pool, "observe")
    return marks


async def block_once(pool: asyncpg.Pool, key: str) -> str:
    if await record_side_effect(pool, key) == 1:
        await _block_forever()
    return f"{key} done"


async def finish(pool: asyncpg.Pool) -> list[int]:
    await record_side_effect(pool, "finish")
    return [1, 2, 3]


@workflow(version=1, registry=registry)
async def crash_replay(ctx: WorkflowContext, dsn: str) -> dict[str, Any]:
    """Four typed steps, the determinism helpers, then a step the crash interrupts."""
    pool = ctx.db()
    profile = await ctx.step("create_profile", create_profile, pool, "ada@example.com")
    when = await ctx.step("stamp", stamp, pool)
    pair = await ctx.step("pair", make_pair, dsn)
    marks = Marks(
        time=ctx.workflow_time(), uuid=ctx.uuid4(), random=ctx.random(), elapsed=ctx.elapsed()
    )
    observed = await ctx.step("observe", observe, pool, marks)
    await ctx.step("block", block_once, pool, "block")
    numbers = await ctx.step("finish", finish, pool)
    return {
        "profile": [type(profile).__name__, profile.credit == Decimal("12.50")],
        "when": [
            type(when).__name__,
            when == datetime(2024, 5, 17, 9, 30, 15, 123456).astimezone(),
        ],
        "pair": [type(pair).__name__, pair == (3, "three")],
        "numbers": numbers,
        "marks_identical": observed == marks,
    }


async def flaky(pool: asyncpg.Pool) -> str:
    calls = await record_side_effect(pool, "flaky")
    if calls == 2:
        await _block_forever()
    raise RuntimeError(f"flaky call {calls} failed")


@workflow(version=1, registry=registry)
async def crash_retry(ctx: WorkflowContext) -> str:
    """One step with three attempts whose second attempt is interrupted by the crash."""
    return await ctx.step("flaky", flaky, ctx.db()).retry(attempts=3, delay=0).run()


async def create(pool: asyncpg.Pool, key: str) -> str:
    await record_side_effect(pool, key)
    return f"{key}-id"


async def fail(pool: asyncpg.Pool) -> None:
    await record_side_effect(pool, "charge")
    raise RuntimeError("card declined")


@workflow(version=1, registry=registry)
async def crash_compensation(ctx: WorkflowContext) -> None:
    """Three compensated steps, then a failure; the second compensation is interrupted."""
    pool = ctx.db()

    async def undo(key: str) -> None:
        if await record_side_effect(pool, key) == 1 and key == "undo_b":
            await _block_forever()

    async def undo_a(_: str) -> None:
        await undo("undo_a")

    async def undo_b(_: str) -> None:
        await undo("undo_b")

    async def undo_c(_: str) -> None:
        await undo("undo_c")

    await ctx.step("a", create, pool, "a").compensate(undo_a)
    await ctx.step("b", create, pool, "b").compensate(undo_b)
    await ctx.step("c", create, pool, "c").compensate(undo_c)
    await ctx.step("charge", fail, pool)
