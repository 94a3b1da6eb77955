"""Transactional steps: the step's writes and its checkpoint commit together, or neither.

The application's ledger lives in a schema of its own (``app``) of the test database, as a
user's tables would. Conflicts (40001, 40P01) are raised by PostgreSQL itself, from a
trigger on the ledger that fires a chosen number of times (a sequence counts them, since
whatever the failing transaction writes is rolled back with it).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import asyncpg
import pytest

from forgeflow import (
    Forgeflow,
    Registry,
    StepStatus,
    TransactionRunner,
    WorkflowContext,
    WorkflowFailed,
    WorkflowStatus,
    workflow,
)
from forgeflow._store import Store
from tests.support.db import connect_direct, direct
from tests.support.wire import ends_transaction, recording_proxy

LEDGER = """
CREATE SCHEMA app;
CREATE TABLE app.ledger (
    id      bigserial PRIMARY KEY,
    run_id  text NOT NULL,
    step    text NOT NULL,
    call    integer NOT NULL DEFAULT 0
);
CREATE TABLE app.conflicts (sqlstate text NOT NULL, times integer NOT NULL);
CREATE SEQUENCE app.conflicts_fired;
CREATE FUNCTION app.conflict() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE armed app.conflicts;
BEGIN
    SELECT * INTO armed FROM app.conflicts;
    IF FOUND AND nextval('app.conflicts_fired') <= armed.times THEN
        RAISE EXCEPTION 'injected conflict' USING ERRCODE = armed.sqlstate;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER conflict BEFORE INSERT ON app.ledger
    FOR EACH ROW EXECUTE FUNCTION app.conflict();
"""


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test database, with the application's ledger created."""
    conn = await connect_direct(dsn)
    await conn.execute(LEDGER)
    try:
        yield conn
    finally:
        await conn.close()


async def write(conn: asyncpg.Connection, run_id: str, step: str, call: int = 0) -> int:
    """The application's own write: one ledger row."""
    row_id: int = await conn.fetchval(
        "INSERT INTO app.ledger (run_id, step, call) VALUES ($1, $2, $3) RETURNING id",
        run_id,
        step,
        call,
    )
    return row_id


async def ledger(db: asyncpg.Connection, run_id: str) -> list[tuple[str, int]]:
    rows = await db.fetch("SELECT step, call FROM app.ledger WHERE run_id = $1 ORDER BY id", run_id)
    return [(r["step"], r["call"]) for r in rows]


async def checkpoints(db: asyncpg.Connection, run_id: str) -> dict[str, str]:
    rows = await db.fetch(
        "SELECT name, status FROM forgeflow.workflow_steps WHERE run_id = $1", run_id
    )
    return {r["name"]: r["status"] for r in rows}


async def arm(db: asyncpg.Connection, sqlstate: str, times: int) -> None:
    await db.execute("INSERT INTO app.conflicts VALUES ($1, $2)", sqlstate, times)


async def fired(db: asyncpg.Connection) -> int:
    row = await db.fetchrow("SELECT last_value, is_called FROM app.conflicts_fired")
    assert row is not None
    return int(row["last_value"]) if row["is_called"] else 0


# -- exactly once ----------------------------------------------------------------------


async def test_the_writes_and_the_checkpoint_commit_together(
    ff: Forgeflow, registry: Registry, db: asyncpg.Connection
) -> None:
    """A completed transactional step leaves its row and its checkpoint, both committed."""

    @workflow(version=1, registry=registry)
    async def one(ctx: WorkflowContext) -> int:
        return await ctx.transaction("debit", write, ctx.run_id, "debit")

    run_id = await ff.start(one)
    await ff.drive(run_id)
    assert await ledger(db, run_id) == [("debit", 0)]
    assert await checkpoints(db, run_id) == {"debit": "completed"}
    row_id = await db.fetchval("SELECT id FROM app.ledger WHERE run_id = $1", run_id)
    assert await ff.result(run_id) == row_id


async def test_a_failing_step_rolls_its_writes_back(
    ff: Forgeflow, registry: Registry, db: asyncpg.Connection
) -> None:
    """A step whose function raises after writing leaves no row, and fails as usual."""

    async def write_then_fail(conn: asyncpg.Connection, run_id: str) -> None:
        await write(conn, run_id, "debit")
        raise RuntimeError("insufficient funds")

    @workflow(version=1, registry=registry)
    async def failing(ctx: WorkflowContext) -> None:
        await ctx.transaction("debit", write_then_fail, ctx.run_id).retry(attempts=2, delay=0)

    run_id = await ff.start(failing)
    await ff.drive(run_id)
    with pytest.raises(WorkflowFailed, match="insufficient funds"):
        await ff.result(run_id)
    assert await ledger(db, run_id) == []
    record = await ff.status(run_id)
    assert [(s.name, s.status, s.attempts) for s in record.steps] == [
        ("debit", StepStatus.FAILED, 2)
    ]


async def test_a_replayed_step_returns_its_checkpoint_without_running_again(
    ff: Forgeflow, registry: Registry, db: asyncpg.Connection
) -> None:
    """After a wait, the run replays from the top: the transactional step is not re-run."""
    calls: list[str] = []

    async def counted(conn: asyncpg.Connection, run_id: str, step: str) -> int:
        calls.append(step)
        return await write(conn, run_id, step)

    @workflow(version=1, registry=registry)
    async def waits(ctx: WorkflowContext) -> list[int]:
        first = await ctx.transaction("first", counted, ctx.run_id, "first")
        await ctx.wait_for_event("go", match={"run": ctx.run_id})
        again = await ctx.transaction("first", counted, ctx.run_id, "first#2")
        return [first, again]

    run_id = await ff.start(waits)
    async with anyio.create_task_group() as group:
        group.start_soon(ff.drive, run_id)
        async for record in ff.watch(run_id):
            if record.status == WorkflowStatus.WAITING:
                break
        await ff.send_event("go", {"run": run_id})
    assert calls == ["first", "first#2"]
    steps = await checkpoints(db, run_id)
    assert (steps["first"], steps["first#2"]) == ("completed", "completed")
    assert await ledger(db, run_id) == [("first", 0), ("first#2", 0)]
    assert len(await ff.result(run_id)) == 2


async def test_compensations_commit_with_their_mark(
    ff: Forgeflow, registry: Registry, db: asyncpg.Connection
) -> None:
    """A rolled-back saga's transactional compensations write once, marked compensated."""

    async def refund(conn: asyncpg.Connection, row_id: int) -> None:
        step = await conn.fetchval("SELECT step FROM app.ledger WHERE id = $1", row_id)
        await conn.execute(
            "INSERT INTO app.ledger (run_id, step) SELECT run_id, 'undo ' || step "
            "FROM app.ledger WHERE id = $1",
            row_id,
        )
        assert step is not None

    def declined() -> None:
        raise RuntimeError("declined")

    @workflow(version=1, registry=registry)
    async def saga(ctx: WorkflowContext) -> None:
        await ctx.transaction("debit", write, ctx.run_id, "debit").compensate(refund)
        await ctx.transaction("credit", write, ctx.run_id, "credit").compensate(refund)
        await ctx.step("notify", declined)

    run_id = await ff.start(saga)
    await ff.drive(run_id)
    assert (await ff.status(run_id)).status == WorkflowStatus.COMPENSATED
    assert await ledger(db, run_id) == [
        ("debit", 0),
        ("credit", 0),
        ("undo credit", 0),
        ("undo debit", 0),
    ]
    assert await checkpoints(db, run_id) == {
        "debit": "compensated",
        "credit": "compensated",
        "notify": "failed",
    }


async def test_a_failing_compensation_commits_nothing(
    ff: Forgeflow, registry: Registry, db: asyncpg.Connection
) -> None:
    """A compensation that raises after writing is rolled back and recorded as failed."""

    async def broken_refund(conn: asyncpg.Connection, row_id: int) -> None:
        await write(conn, "refund", "undo")
        raise RuntimeError("refund refused")

    def declined() -> None:
        raise RuntimeError("declined")

    @workflow(version=1, registry=registry)
    async def saga(ctx: WorkflowContext) -> None:
        await ctx.transaction("debit", write, ctx.run_id, "debit").compensate(broken_refund)
        await ctx.step("notify", declined)

    run_id = await ff.start(saga)
    await ff.drive(run_id)
    record = await ff.status(run_id)
    assert record.status == WorkflowStatus.FAILED
    assert await ledger(db, run_id) == [("debit", 0)]
    assert await ledger(db, "refund") == []
    assert (await checkpoints(db, run_id))["debit"] == "completed"


# -- the lease -------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["read committed", "serializable"])
async def test_a_stolen_lease_rolls_the_whole_transaction_back(
    ff: Forgeflow, registry: Registry, db: asyncpg.Connection, level: str
) -> None:
    """Another worker took the run while fn ran: its writes and checkpoint roll back, the
    run is not failed, and the next execution writes once (at any isolation level: a
    snapshot taken before the takeover does not hide it)."""
    inside, proceed = anyio.Event(), anyio.Event()
    calls = 0

    async def gated(conn: asyncpg.Connection, run_id: str) -> int:
        nonlocal calls
        calls += 1
        row_id = await write(conn, run_id, "debit", calls)
        if calls == 1:
            inside.set()
            await proceed.wait()
        return row_id

    @workflow(version=1, registry=registry)
    async def one(ctx: WorkflowContext) -> int:
        return await ctx.transaction("debit", gated, ctx.run_id).isolation(level)

    run_id = await ff.start(one)
    async with anyio.create_task_group() as group:
        group.start_soon(ff.drive, run_id)
        await inside.wait()
        # The thief's lease runs out at once, so that this process can take the run back.
        await db.execute(
            "UPDATE forgeflow.workflow_runs SET lease_owner = 'thief', "
            "lease_expires_at = now() + interval '200 milliseconds' WHERE id = $1",
            run_id,
        )
        proceed.set()
    assert calls >= 2
    assert await ledger(db, run_id) == [("debit", calls)]
    assert await checkpoints(db, run_id) == {"debit": "completed"}
    record = await ff.status(run_id)
    assert record.status == WorkflowStatus.COMPLETED
    assert record.error is None


async def test_a_worker_frozen_inside_fn_does_not_block_a_takeover(
    ff: Forgeflow, registry: Registry, db: asyncpg.Connection, dsn: str
) -> None:
    """While fn holds its transaction open, another worker claims the run without waiting;
    the frozen one's transaction is then refused at its checkpoint."""
    inside, proceed = anyio.Event(), anyio.Event()
    calls = 0

    async def frozen(conn: asyncpg.Connection, run_id: str) -> int:
        nonlocal calls
        calls += 1
        row_id = await write(conn, run_id, "debit", calls)
        if calls == 1:
            inside.set()
            await proceed.wait()
        return row_id

    @workflow(version=1, registry=registry)
    async def one(ctx: WorkflowContext) -> int:
        return await ctx.transaction("debit", frozen, ctx.run_id)

    run_id = await ff.start(one)
    other = await Store.open(direct(dsn), min_size=1, max_size=2, migrate=False)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(ff.drive, run_id)
            await inside.wait()
            await db.execute(
                "UPDATE forgeflow.workflow_runs SET lease_expires_at = now() - interval '1s' "
                "WHERE id = $1",
                run_id,
            )
            now = await db.fetchval("SELECT now()")
            with anyio.fail_after(10):  # a hang guard: the claim must not wait on fn
                claimed = await other.claim_run(run_id, "other-worker", 0.2, now)
            assert claimed is not None
            proceed.set()
    finally:
        await other.close()
    assert await ledger(db, run_id) == [("debit", 2)]
    assert (await ff.status(run_id)).status == WorkflowStatus.COMPLETED


# -- isolation, conflicts, timeouts, lost connections ----------------------------------


@pytest.mark.parametrize("level", [None, "repeatable read", "serializable"])
async def test_the_isolation_level_is_the_one_asked_for(
    ff: Forgeflow, registry: Registry, db: asyncpg.Connection, level: str | None
) -> None:
    """fn runs at the step's isolation level (read committed unless told otherwise)."""

    async def isolation(conn: asyncpg.Connection, run_id: str) -> str:
        await write(conn, run_id, "seen")
        value: str = await conn.fetchval("SHOW transaction_isolation")
        return value

    @workflow(version=1, registry=registry)
    async def shows(ctx: WorkflowContext) -> str:
        runner = ctx.transaction("show", isolation, ctx.run_id)
        return await (runner if level is None else runner.isolation(level))

    run_id = await ff.start(shows)
    await ff.drive(run_id)
    assert await ff.result(run_id) == (level or "read committed")
    assert await ledger(db, run_id) == [("seen", 0)]
    assert await checkpoints(db, run_id) == {"show": "completed"}


def test_an_unknown_isolation_level_is_refused() -> None:
    """A typo in the level raises ValueError naming the field."""
    runner: Any = object.__new__(TransactionRunner)
    with pytest.raises(ValueError, match="isolation"):
        TransactionRunner.isolation(runner, "snapshot")


@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])
async def test_conflicts_are_retried_without_counting_as_attempts(
    ff: Forgeflow, registry: Registry, db: asyncpg.Connection, sqlstate: str
) -> None:
    """Serialization failures and deadlocks retry the transaction: one row, attempt 1."""
    await arm(db, sqlstate, 3)

    @workflow(version=1, registry=registry)
    async def one(ctx: WorkflowContext) -> int:
        return await ctx.transaction("debit", write, ctx.run_id, "debit").isolation("serializable")

    run_id = await ff.start(one)
    await ff.drive(run_id)
    assert await fired(db) == 4
    assert await ledger(db, run_id) == [("debit", 0)]
    record = await ff.status(run_id)
    assert record.status == WorkflowStatus.COMPLETED
    assert [(s.name, s.attempts) for s in record.steps] == [("debit", 1)]


async def test_a_conflict_on_the_checkpoint_itself_is_retried(
    ff: Forgeflow, registry: Registry, db: asyncpg.Connection
) -> None:
    """A serializable step whose run row changed after its snapshot (a heartbeat, say)
    fails at the checkpoint with 40001 and is tried again, not failed nor abandoned."""
    calls = 0

    async def heartbeat_meanwhile(conn: asyncpg.Connection, run_id: str) -> int:
        nonlocal calls
        calls += 1
        row_id = await write(conn, run_id, "debit")
        if calls == 1:
            await db.execute(
                "UPDATE forgeflow.workflow_runs SET updated_at = now() WHERE id = $1", run_id
            )
        return row_id

    @workflow(version=1, registry=registry)
    async def one(ctx: WorkflowContext) -> int:
        return await ctx.transaction("debit", heartbeat_meanwhile, ctx.run_id).isolation(
            "serializable"
        )

    run_id = await ff.start(one)
    await ff.drive(run_id)
    assert calls == 2
    assert await ledger(db, run_id) == [("debit", 0)]
    record = await ff.status(run_id)
    assert record.status == WorkflowStatus.COMPLETED
    assert [(s.name, s.attempts) for s in record.steps] == [("debit", 1)]


async def test_a_timeout_cancels_the_running_statement(
    ff: Forgeflow, registry: Registry, db: asyncpg.Connection
) -> None:
    """.timeout() cancels the query in PostgreSQL, rolls back and returns the connection
    healthy; the step fails with StepTimeout like any step."""

    async def slow(conn: asyncpg.Connection, run_id: str) -> None:
        await write(conn, run_id, "before sleeping")
        await conn.execute("SELECT pg_sleep(600) /* forgeflow-tx-timeout */")

    @workflow(version=1, registry=registry)
    async def sleepy(ctx: WorkflowContext) -> str:
        await ctx.transaction("slow", slow, ctx.run_id).timeout(0.3).optional()
        return await ctx.transaction("after", lambda conn: conn.fetchval("SELECT 'healthy'"))

    run_id = await ff.start(sleepy)
    await ff.drive(run_id)
    assert await ff.result(run_id) == "healthy"
    sleeping = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
        "AND query LIKE '%forgeflow-tx-timeout%' AND pid <> pg_backend_pid()"
    )
    assert sleeping == 0
    idle_in_transaction = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND state LIKE 'idle in transaction%'"
    )
    assert idle_in_transaction == 0
    assert await ledger(db, run_id) == []
    record = await ff.status(run_id)
    skipped = next(s for s in record.steps if s.name == "slow")
    assert skipped.status == StepStatus.SKIPPED
    assert "timed out" in str(skipped.error)


async def test_a_lost_connection_is_an_engine_fault_not_a_failure(
    ff: Forgeflow, registry: Registry, db: asyncpg.Connection
) -> None:
    """The transaction's connection dies in fn: the run is handed back and continued, not
    rolled back; the step's writes exist once."""
    calls = 0

    async def killed(conn: asyncpg.Connection, run_id: str) -> int:
        nonlocal calls
        calls += 1
        row_id = await write(conn, run_id, "debit", calls)
        if calls == 1:
            # The server's pid, asked in the transaction (which keeps its server
            # connection): behind PgBouncer the client's own pid is not the server's.
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            await db.execute("SELECT pg_terminate_backend($1)", pid)
            await conn.fetchval("SELECT 1")
        return row_id

    @workflow(version=1, registry=registry)
    async def one(ctx: WorkflowContext) -> int:
        try:
            return await ctx.transaction("debit", killed, ctx.run_id)
        except Exception:  # an engine fault is not the step's error: never caught here
            return -1

    run_id = await ff.start(one)
    await ff.drive(run_id)
    assert calls == 2
    assert await ledger(db, run_id) == [("debit", 2)]
    record = await ff.status(run_id)
    assert record.status == WorkflowStatus.COMPLETED
    assert await ff.result(run_id) != -1


# -- what goes over the wire -----------------------------------------------------------


async def test_a_step_and_its_compensation_add_one_round_trip_to_the_users_statements(
    dsn: str, registry: Registry, db: asyncpg.Connection
) -> None:
    """Recorded at the connection, a transactional step is BEGIN, fn's own statements,
    then one message carrying the lease-checked checkpoint and COMMIT; a compensation
    the same: no savepoint, no separate lease check or COMMIT."""

    async def debit(conn: asyncpg.Connection, run_id: str) -> str:
        await conn.execute(f"INSERT INTO app.ledger (run_id, step) VALUES ('{run_id}', 'debit')")
        return "debited"

    async def refund(conn: asyncpg.Connection, result: str) -> None:
        await conn.execute(f"INSERT INTO app.ledger (run_id, step) VALUES ('{result}', 'refund')")

    def declined() -> None:
        raise RuntimeError("declined")

    @workflow(version=1, registry=registry)
    async def saga(ctx: WorkflowContext) -> None:
        for _ in range(3):
            await ctx.transaction("debit", debit, ctx.run_id).compensate(refund)
        await ctx.step("notify", declined)

    async with (
        recording_proxy(dsn) as (proxied, wire),
        Forgeflow.connect(proxied, registry=registry) as ff,
    ):
        run_id = await ff.start(saga)
        await ff.drive(run_id)
        assert (await ff.status(run_id)).status == WorkflowStatus.COMPENSATED
    assert await ledger(db, run_id) == [("debit", 0)] * 3
    assert await ledger(db, "debited") == [("refund", 0)] * 3
    for marker, function in [("'debit')", "checkpoint_"), ("'refund')", "compensated_")]:
        transactions = wire.transactions(marker)
        # BEGIN, fn's statement, the checkpoint with COMMIT: for each of the 3 steps.
        assert [len(t) for t in transactions] == [3, 3, 3]
        for begin, statement, last in transactions:
            assert begin.startswith("BEGIN ISOLATION LEVEL READ COMMITTED")
            assert marker in statement
            assert f"forgeflow.{function}in_transaction(" in last
            assert ends_transaction(last)


async def test_savepoints_and_awkward_results_on_the_runs_connection(
    ff: Forgeflow, registry: Registry, db: asyncpg.Connection
) -> None:
    """fn may open savepoints with conn.transaction(), step after step on the run's one
    connection; results holding quotes, backslashes and any text are checkpointed as
    returned (the checkpoint's values travel as SQL literals)."""
    awkward = {"text": "it's \\ a \\' back'slash\" é 😀 $1 E'x' -- /*", "n": [1, 2.5, None]}

    async def nested(conn: asyncpg.Connection, run_id: str, step: str) -> dict[str, Any]:
        async with conn.transaction():
            await write(conn, run_id, step)
        try:
            async with conn.transaction():
                await write(conn, run_id, "undone")
                raise LookupError("rolled back to the savepoint")
        except LookupError:
            pass
        return awkward

    @workflow(version=1, registry=registry)
    async def two(ctx: WorkflowContext) -> list[dict[str, Any]]:
        first = await ctx.transaction("first", nested, ctx.run_id, "first")
        second = await ctx.transaction("second", nested, ctx.run_id, "second")
        return [first, second]

    run_id = await ff.start(two)
    await ff.drive(run_id)
    assert await ff.result(run_id) == [awkward, awkward]
    assert await ledger(db, run_id) == [("first", 0), ("second", 0)]
    saved = await db.fetch(
        "SELECT result FROM forgeflow.workflow_steps WHERE run_id = $1 ORDER BY name", run_id
    )
    assert [json.loads(r["result"]) for r in saved] == [awkward, awkward]
