"""Per-customer serial processing: one order per customer at a time, customers in parallel.

    python examples/per_customer_serial.py

Orders of three customers arrive interleaved on the queue `orders`, declared with
`key_concurrency=1`; each start passes the customer as its `key`. A worker with room for
10 runs executes them: runs of different customers overlap, runs of one customer never
do, so a customer's orders are applied to its account one after the other. A `priority`
moves an urgent order ahead of the backlog, and a `Debounce` collapses a burst of
"recompute the invoice" requests into one run with the latest input. Runs on the
embedded PostgreSQL under ./.forgeflow/ unless FORGEFLOW_DATABASE_URL is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

import structlog
from pydantic import BaseModel

from forgeflow import Debounce, Forgeflow, Queue, Registry, WorkflowContext, workflow

registry = Registry()
orders = Queue("orders", key_concurrency=1)


class Order(BaseModel):
    customer: str
    number: int


class Invoice(BaseModel):
    customer: str
    revision: int


# -- the outside world ----------------------------------------------------------------

started = time.monotonic()
timeline: list[tuple[str, str, float, float]] = []  # customer, order, start, end


async def apply_to_account(order: Order) -> str:
    """Applies an order to the customer's account: not safe to run twice at once."""
    begin = time.monotonic() - started
    await asyncio.sleep(0.2)
    end = time.monotonic() - started
    timeline.append((order.customer, f"#{order.number}", begin, end))
    return f"{order.customer} #{order.number}"


# -- the workflows --------------------------------------------------------------------


@workflow(version=1, timeout="10m", queue=orders, registry=registry)
async def process_order(ctx: WorkflowContext, order: Order) -> str:
    return await ctx.step("apply", apply_to_account, order).run()


@workflow(version=1, timeout="10m", queue="invoices", registry=registry)
async def recompute_invoice(ctx: WorkflowContext, invoice: Invoice) -> str:
    return f"invoice of {invoice.customer} at revision {invoice.revision}"


# -- running it -----------------------------------------------------------------------


def overlapping(a: tuple[str, str, float, float], b: tuple[str, str, float, float]) -> bool:
    return a[2] < b[3] and b[2] < a[3]


def most_at_once(entries: list[tuple[str, str, float, float]]) -> int:
    """The largest number of orders in progress at one instant."""
    edges = sorted([(e[2], 1) for e in entries] + [(e[3], -1) for e in entries])
    running = best = 0
    for _, change in edges:  # at equal times an end (-1) sorts before a start
        running += change
        best = max(best, running)
    return best


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
        run_ids = []
        for number in range(1, 4):
            for customer in ("acme", "globex", "initech"):
                order = Order(customer=customer, number=number)
                run_ids.append(await ff.start(process_order, order, key=customer))
        urgent = Order(customer="globex", number=99)
        run_ids.append(await ff.start(process_order, urgent, key="globex", priority=10))
        print(f"Started {len(run_ids)} orders for 3 customers (globex #99 with priority 10)")

        debounce = Debounce("invoice:acme", window="300ms", max_wait="5s")
        invoice_runs = set()
        for revision in range(1, 11):
            invoice = Invoice(customer="acme", revision=revision)
            invoice_runs.add(await ff.start(recompute_invoice, invoice, debounce=debounce))
        print(f"10 invoice requests for acme became {len(invoice_runs)} run(s)")

        async with ff.worker(concurrency=10):
            for run_id in run_ids:
                await ff.result(run_id, timeout=60)
            [invoice_run] = invoice_runs
            print(f"Invoice run: {await ff.result(invoice_run, timeout=60)}")

        for customer, number, begin, end in sorted(timeline, key=lambda t: t[2]):
            print(f"  {customer:<8} {number:<4} {begin:5.2f}s -> {end:5.2f}s")
        same = [
            (a, b)
            for i, a in enumerate(timeline)
            for b in timeline[i + 1 :]
            if a[0] == b[0] and overlapping(a, b)
        ]
        across = most_at_once(timeline)
        globex = [n for c, n, _, _ in sorted(timeline, key=lambda t: t[2]) if c == "globex"]
        print(f"globex order sequence: {' '.join(globex)}")
        print(f"Overlapping orders of one customer: {len(same)}")
        print(f"Most orders running at once: {across} (one per customer)")


if __name__ == "__main__":
    asyncio.run(main())
