"""Bank transfer: transactional steps whose writes commit with their checkpoints.

    python examples/bank_transfer.py

The accounts live in the application's own schema (``bank``) of the database forgeflow
uses. Debit and credit are ``ctx.transaction`` steps: each one's UPDATE and ledger INSERT
commit in the same transaction as the step's checkpoint, so a crash can never leave a
debit without its checkpoint (debited twice on replay) or a checkpoint without its debit.
Their compensations (refund, reverse the credit) commit with their own marks the same
way. The first transfer goes through; the second is refused by the closed account at the
credit, so the debit is refunded. Runs on the embedded PostgreSQL under ./.forgeflow/
unless FORGEFLOW_DATABASE_URL is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import asyncpg
import structlog
from pydantic import BaseModel

from forgeflow import Forgeflow, Registry, WorkflowContext, WorkflowFailed, workflow

registry = Registry()

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS bank;
CREATE TABLE IF NOT EXISTS bank.accounts (
    name    text PRIMARY KEY,
    cents   bigint NOT NULL CHECK (cents >= 0),
    open    boolean NOT NULL DEFAULT true
);
CREATE TABLE IF NOT EXISTS bank.entries (
    id        bigserial PRIMARY KEY,
    transfer  text NOT NULL,
    account   text NOT NULL REFERENCES bank.accounts,
    cents     bigint NOT NULL,
    memo      text NOT NULL
);
"""


class Transfer(BaseModel):
    source: str
    target: str
    cents: int


class Entry(BaseModel):
    id: int
    account: str
    cents: int


class AccountClosed(Exception):
    """The account does not take new entries."""


# -- the application's own statements ------------------------------------------------


async def post(
    conn: asyncpg.Connection, transfer: str, account: str, cents: int, memo: str
) -> Entry:
    """Move ``cents`` on ``account`` (negative: debit) and write the ledger entry."""
    is_open = await conn.fetchval(
        "UPDATE bank.accounts SET cents = cents + $2 WHERE name = $1 RETURNING open",
        account,
        cents,
    )
    if not is_open:
        raise AccountClosed(f"account {account!r} is closed")
    entry_id = await conn.fetchval(
        "INSERT INTO bank.entries (transfer, account, cents, memo) VALUES ($1, $2, $3, $4) "
        "RETURNING id",
        transfer,
        account,
        cents,
        memo,
    )
    print(f"  [bank] {memo:<9} {account:<6} {cents / 100:+8.2f} EUR (entry {entry_id})")
    return Entry(id=entry_id, account=account, cents=cents)


async def debit(conn: asyncpg.Connection, transfer: str, account: str, cents: int) -> Entry:
    return await post(conn, transfer, account, -cents, "debit")


async def credit(conn: asyncpg.Connection, transfer: str, account: str, cents: int) -> Entry:
    return await post(conn, transfer, account, cents, "credit")


async def reverse(conn: asyncpg.Connection, entry: Entry) -> None:
    """The compensation of a debit or a credit: the opposite entry, in its own transaction."""
    transfer = await conn.fetchval("SELECT transfer FROM bank.entries WHERE id = $1", entry.id)
    await conn.execute(
        "UPDATE bank.accounts SET cents = cents - $2 WHERE name = $1", entry.account, entry.cents
    )
    await conn.execute(
        "INSERT INTO bank.entries (transfer, account, cents, memo) VALUES ($1, $2, $3, 'reversal')",
        transfer,
        entry.account,
        -entry.cents,
    )
    amount = -entry.cents / 100
    print(f"  [bank] UNDO: reversed entry {entry.id} on {entry.account} ({amount:+.2f} EUR)")


# -- the workflow ---------------------------------------------------------------------


@workflow(version=1, timeout="10m", registry=registry)
async def bank_transfer(ctx: WorkflowContext, input: Transfer) -> list[int]:
    out = await (
        ctx.transaction("debit", debit, ctx.run_id, input.source, input.cents)
        .compensate(reverse)
        .run()
    )
    into = await (
        ctx.transaction("credit", credit, ctx.run_id, input.target, input.cents)
        .isolation("serializable")
        .compensate(reverse)
        .run()
    )
    return [out.id, into.id]


# -- running it -----------------------------------------------------------------------


def configure_logging() -> None:
    """Engine events (run_started, step_completed, ...) go to stderr."""
    level = os.environ.get("FORGEFLOW_LOG_LEVEL", "INFO").upper()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


async def main() -> None:
    configure_logging()
    async with Forgeflow.connect(registry=registry) as ff:
        await ff.pool.execute(SCHEMA)
        await ff.pool.execute(
            "INSERT INTO bank.accounts (name, cents, open) VALUES "
            "('alice', 10000, true), ('bob', 0, true), ('carol', 0, false) "
            "ON CONFLICT (name) DO UPDATE SET cents = excluded.cents, open = excluded.open"
        )
        print("Transfer 1: alice -> bob, 25.00 EUR")
        entries = await ff.run(bank_transfer, Transfer(source="alice", target="bob", cents=2500))
        print(f"Transfer 1 done: entries {entries}")

        print("\nTransfer 2: alice -> carol (closed), 10.00 EUR")
        run_id = await ff.start(bank_transfer, Transfer(source="alice", target="carol", cents=1000))
        await ff.drive(run_id)
        try:
            await ff.result(run_id)
        except WorkflowFailed as exc:
            print(f"Transfer 2 rolled back: {exc}")
        record = await ff.status(run_id)
        print(f"  status: {record.status.value}")
        for step in record.steps:
            print(f"  step {step.name:<7} {step.status.value}")

        balances = await ff.pool.fetch("SELECT name, cents FROM bank.accounts ORDER BY name")
        print("\nBalances: " + ", ".join(f"{r['name']} {r['cents'] / 100:.2f}" for r in balances))


if __name__ == "__main__":
    asyncio.run(main())
