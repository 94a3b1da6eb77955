"""A three-step saga of transactional steps writing to an application ledger.

Each step (and each compensation) inserts one ledger row in its transaction, notes on a
connection of its own that it wrote (``app.wrote``, committed at once, so it survives
the transaction), then lingers a little before returning: a worker killed meanwhile dies
between the step's writes and its COMMIT. ``fail`` makes the run roll back after its
third step, so that the compensations are exercised too.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Awaitable, Callable

import anyio
import asyncpg
from pydantic import BaseModel

from forgeflow import WorkflowContext, workflow

__all__ = ["LEDGER", "LedgerSpec", "ledger_saga"]

STEPS = ("debit", "fee", "credit")

LEDGER = """
CREATE SCHEMA IF NOT EXISTS app;
CREATE TABLE app.ledger (
    id      bigserial PRIMARY KEY,
    run_id  text NOT NULL,
    step    text NOT NULL,
    kind    text NOT NULL CHECK (kind IN ('do', 'undo')),
    attempt uuid NOT NULL UNIQUE
);
CREATE TABLE app.wrote (
    attempt uuid PRIMARY KEY, run_id text NOT NULL, step text NOT NULL, pid integer NOT NULL
);
"""


class LedgerSpec(BaseModel):
    """What the run does: roll back after its third step or not."""

    fail: bool = False
    #: the longest a step lingers between its writes and its COMMIT, in seconds
    linger: float = 0.02


async def _entry(
    conn: asyncpg.Connection, pool: asyncpg.Pool, run_id: str, step: str, kind: str, linger: float
) -> int:
    attempt = uuid.uuid4()
    row_id: int = await conn.fetchval(
        "INSERT INTO app.ledger (run_id, step, kind, attempt) VALUES ($1, $2, $3, $4) RETURNING id",
        run_id,
        step,
        kind,
        attempt,
    )
    # On another connection, committed at once: the write happened, whatever becomes of
    # the transaction. The worker's pid lets a test kill it right there.
    await pool.execute(
        "INSERT INTO app.wrote VALUES ($1, $2, $3, $4)", attempt, run_id, step, os.getpid()
    )
    await anyio.sleep(random.random() * linger)
    return row_id


async def do(
    conn: asyncpg.Connection, pool: asyncpg.Pool, run_id: str, step: str, linger: float
) -> int:
    """A forward step: one 'do' row."""
    return await _entry(conn, pool, run_id, step, "do", linger)


def undo_of(
    pool: asyncpg.Pool, run_id: str, step: str, linger: float
) -> Callable[[asyncpg.Connection, int], Awaitable[None]]:
    """The compensation of ``step``: one 'undo' row."""

    async def undo(conn: asyncpg.Connection, _row_id: int) -> None:
        await _entry(conn, pool, run_id, step, "undo", linger)

    return undo


@workflow(version=1, name="ledger_saga")
async def ledger_saga(ctx: WorkflowContext, spec: LedgerSpec) -> list[int]:
    """Three transactional steps with transactional compensations; maybe a failure."""
    rows = []
    for step in STEPS:
        runner = ctx.transaction(step, do, ctx.db(), ctx.run_id, step, spec.linger)
        rows.append(await runner.compensate(undo_of(ctx.db(), ctx.run_id, step, spec.linger)))
    if spec.fail:
        await ctx.step("notify", _refuse)
    return rows


def _refuse() -> None:
    raise RuntimeError("the transfer was refused")
