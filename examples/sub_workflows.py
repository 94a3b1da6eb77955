"""Sub-workflow orchestration: a parent run that starts and waits for child runs.

    python examples/sub_workflows.py

`fulfil_order` runs `reserve_stock` as a child and waits for its output
(`ctx.run_child`), then starts `charge_customer` and `book_courier` together
(`ctx.start_child`) and joins both handles. A `send_gift_card` child fails; the parent
catches `ChildWorkflowFailed` and goes on without it. An analytics child is started
`detached=True`: the parent neither waits for it nor cancels it. Each child is a run of
its own, with its own checkpoints and compensations; while the parent waits for a child it
is suspended and holds no worker. Runs on the embedded PostgreSQL under ./.forgeflow/
unless FORGEFLOW_DATABASE_URL is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import structlog
from pydantic import BaseModel

from forgeflow import ChildWorkflowFailed, Forgeflow, Registry, WorkflowContext, workflow

registry = Registry()


class Order(BaseModel):
    id: str
    customer: str
    items: list[str]
    total_cents: int


class Reservation(BaseModel):
    id: str
    items: list[str]


class Payment(BaseModel):
    id: str
    amount_cents: int


class Booking(BaseModel):
    tracking: str


class OrderSummary(BaseModel):
    order_id: str
    reservation: str
    payment: str
    tracking: str
    gift_card: bool


# -- child workflows --------------------------------------------------------------------


async def reserve(order: Order) -> Reservation:
    print(f"  [child reserve_stock]   reserved {', '.join(order.items)}")
    return Reservation(id=f"res_{order.id}", items=order.items)


@workflow(version=1, timeout="10m", registry=registry)
async def reserve_stock(ctx: WorkflowContext, order: Order) -> Reservation:
    return await ctx.step("reserve", reserve, order).run()


async def charge(order: Order) -> Payment:
    print(f"  [child charge_customer] charged {order.total_cents / 100:.2f} EUR")
    return Payment(id=f"pay_{order.id}", amount_cents=order.total_cents)


@workflow(version=1, timeout="10m", registry=registry)
async def charge_customer(ctx: WorkflowContext, order: Order) -> Payment:
    return await ctx.step("charge", charge, order).run()


async def book(order: Order) -> Booking:
    print(f"  [child book_courier]    courier booked for {order.id}")
    return Booking(tracking=f"TRK-{order.id}")


@workflow(version=1, timeout="10m", registry=registry)
async def book_courier(ctx: WorkflowContext, order: Order) -> Booking:
    return await ctx.step("book", book, order).run()


async def issue_gift_card(customer: str) -> str:
    print(f"  [child send_gift_card]  gift card service is down for {customer}")
    raise RuntimeError("gift card service unavailable")


@workflow(version=1, timeout="10m", registry=registry)
async def send_gift_card(ctx: WorkflowContext, customer: str) -> str:
    return await ctx.step("issue", issue_gift_card, customer).run()


async def track(order_id: str) -> None:
    print(f"  [child record_analytics] order {order_id} recorded (detached)")


@workflow(version=1, timeout="10m", registry=registry)
async def record_analytics(ctx: WorkflowContext, order_id: str) -> None:
    await ctx.step("track", track, order_id).run()


# -- the parent -----------------------------------------------------------------------


@workflow(version=1, timeout="1h", registry=registry)
async def fulfil_order(ctx: WorkflowContext, order: Order) -> OrderSummary:
    reservation = await ctx.run_child(reserve_stock, order)

    payment_run = await ctx.start_child(charge_customer, order)
    courier_run = await ctx.start_child(book_courier, order)
    await ctx.start_child(record_analytics, order.id, detached=True)
    payment = await payment_run.result()
    booking = await courier_run.result()

    try:
        await ctx.run_child(send_gift_card, order.customer)
        gift_card = True
    except ChildWorkflowFailed as exc:
        ctx.log.warning("gift_card_skipped", child_run_id=exc.run_id, child_status=exc.status)
        gift_card = False

    return OrderSummary(
        order_id=order.id,
        reservation=reservation.id,
        payment=payment.id,
        tracking=booking.tracking,
        gift_card=gift_card,
    )


# -- running it -----------------------------------------------------------------------


def configure_logging() -> None:
    """Engine events (run_started, run_suspended, run_finished, ...) go to stderr."""
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
    async with (
        Forgeflow.connect(registry=registry) as ff,
        ff.worker(concurrency=4, poll_interval="200ms"),
    ):
        order = Order(
            id="ord_7", customer="ivan@example.com", items=["lamp", "desk"], total_cents=18900
        )
        print(f"Fulfilling {order.id} through child workflows")
        run_id = await ff.start(fulfil_order, order)
        summary = await ff.result(run_id, timeout="60s")
        print(
            f"\nParent completed: reservation={summary.reservation} "
            f"payment={summary.payment} tracking={summary.tracking} "
            f"gift_card={summary.gift_card}"
        )

        record = await ff.status(run_id)
        print(f"Parent run {run_id} status: {record.status.value}")
        for step in record.steps:
            print(f"  step {step.name:<28} {step.status.value}")
        children = [r for r in await ff.list_runs(limit=50) if r.parent_run_id == run_id]
        for child in sorted(children, key=lambda r: r.created_at):
            detached = " (detached)" if child.detached else ""
            print(f"  child {child.workflow:<17} {child.status.value}{detached}")


if __name__ == "__main__":
    asyncio.run(main())
