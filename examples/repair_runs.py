"""Repairing runs: fork a failed run onto the fixed version, restart one, purge old ones.

    python examples/repair_runs.py

Version 1 of an invoicing workflow has a bug in its third step ("render"): every run
fails there. Version 2 fixes it. The failed run is forked from "render" onto version 2:
the steps before it ("load_customer", "compute_total") are not executed again, their
checkpointed results are reused, and the fork completes. Then the same failed run is
restarted (every step runs again), a bulk dry run counts what a bulk restart would
touch, and a purge deletes the old failed run.
Runs on the embedded PostgreSQL under ./.forgeflow/ unless FORGEFLOW_DATABASE_URL is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import structlog

from forgeflow import Forgeflow, Registry, WorkflowContext, WorkflowFailed, workflow

registry = Registry()
calls: dict[str, int] = {}


def called(name: str) -> None:
    calls[name] = calls.get(name, 0) + 1
    print(f"  running {name} (call {calls[name]})")


def load_customer(customer_id: str) -> dict[str, str]:
    called("load_customer")
    return {"id": customer_id, "currency": "EUR"}


def compute_total(lines: list[float]) -> float:
    called("compute_total")
    return round(sum(lines), 2)


def render_v1(customer: dict[str, str], total: float) -> str:
    called("render v1")
    raise RuntimeError("render: unsupported currency format")  # the bug


def render_v2(customer: dict[str, str], total: float) -> str:
    called("render v2")
    return f"invoice for {customer['id']}: {total:.2f} {customer['currency']}"


@workflow(version=1, registry=registry, name="invoice")
async def invoice_v1(ctx: WorkflowContext, customer_id: str) -> str:
    customer = await ctx.step("load_customer", load_customer, customer_id).run()
    total = await ctx.step("compute_total", compute_total, [10.0, 32.5]).run()
    return await ctx.step("render", render_v1, customer, total).run()


# The fix: the same steps, in the same order, with the same names; only "render" changed.
@workflow(version=2, registry=registry, name="invoice")
async def invoice_v2(ctx: WorkflowContext, customer_id: str) -> str:
    customer = await ctx.step("load_customer", load_customer, customer_id).run()
    total = await ctx.step("compute_total", compute_total, [10.0, 32.5]).run()
    return await ctx.step("render", render_v2, customer, total).run()


def configure_logging() -> None:
    """Engine events go to stderr."""
    level = os.environ.get("FORGEFLOW_LOG_LEVEL", "WARNING").upper()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


async def main() -> None:
    configure_logging()
    async with Forgeflow.connect(registry=registry) as ff:
        print("Version 1 in production:")
        try:
            await ff.run(invoice_v1, "cus_42")
        except WorkflowFailed as exc:
            failed = exc.run_id
            print(f"run {failed} failed: {exc.error.get('message')}")

        print("\nVersion 2 deployed; fork the failed run from 'render':")
        fork_id = await ff.fork(failed, from_step="render", version=2)
        await ff.drive(fork_id)
        print(f"fork output: {await ff.result(fork_id)}")
        record = await ff.status(fork_id)
        print(f"fork lineage: forked from {record.forked_from} at {record.forked_from_step}")
        print(f"load_customer ran {calls['load_customer']} time(s) in all")

        print("\nRestart the failed run instead (every step runs again):")
        restart_id = await ff.restart(failed)
        await ff.drive(restart_id)
        print(f"restart output: {await ff.result(restart_id)}")

        dry = await ff.restart_many(workflow="invoice", status="failed", dry_run=True)
        print(f"\nbulk restart dry run: {dry.matched} matched, {dry.acted} acted")

        # Retention would do this by itself with Forgeflow.connect(retention="30d").
        await ff.pool.execute(
            "UPDATE forgeflow.workflow_runs SET completed_at = now() - interval '40 days'"
            " WHERE id = $1",
            failed,
        )
        print(f"purged {await ff.purge(older_than='30d', workflow='invoice')} old run(s)")


if __name__ == "__main__":
    asyncio.run(main())
